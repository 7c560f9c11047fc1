"""A reader's DICOM SEG stored into the archive (STOW-RS from the viewer, or an upload) joins their read.

Registered with ``imaging.hooks.register_after_store`` (annotation.apps), so it runs inside the transaction that
stores the SEG: the SEG and the read version that links it are committed together, and the SEG is hidden from
the other readers (annotation.access) from the moment it exists. A SEG from a reader that cannot be attached
(no open claim on a case of that study, labels not in the schema, a closed case) is refused with the reason:
stored unattached, it would be visible to every other reader of the study.
"""


from annotation.models import Assignment, CaseState, ClaimState, Membership, ProjectRole, Read, ReadState
from annotation.segmentation import (
    SEG_SOP_CLASS_UIDS,
    InvalidSegmentation,
    referenced_series_uid,
    seg_segments,
)
from annotation.services.masks import read_dataset, target_series
from annotation.services.projects import current_schema
from annotation.services.reads import read_save
from core.errors import OkapiError
from imaging.dicom.instance import InvalidInstance

# OkapiError codes of read_save and the checks here -> ingest's failure codes (STOW-RS FailureReason)
_CODES = {"not_a_reader": "permission_denied", "not_assigned": "permission_denied", "claim_expired": "conflict",
          "case_closed": "conflict", "version_conflict": "conflict", "conflict": "conflict"}


def _refuse(reason: str, code: str, prepared) -> InvalidInstance:
    return InvalidInstance(reason, code=_CODES.get(code, code), sop_instance_uid=prepared.sop_instance_uid,
                           sop_class_uid=prepared.sop_class_uid)


def seg_attach_stored(instance, prepared, *, user, source: str) -> None:
    """Attach a newly stored SEG from ``user`` to their read of the case of its study they hold a claim on,
    as a new read version (same answers, this segmentation). Other instances, and SEGs from trusted sources
    (user None) or from people who read no case of the study (a lead's import), are left alone."""
    if user is None or prepared.sop_class_uid not in SEG_SOP_CLASS_UIDS:
        return
    slots = list(Assignment.objects.filter(reader=user, case__study__study_uid=prepared.study_uid)
                 .exclude(state=ClaimState.RELEASED).exclude(case__state=CaseState.CONSENSUS)
                 .select_related("case__project", "case__study", "case__series").order_by("-claimed_at", "-id"))
    if not slots:
        if Membership.objects.filter(user=user, role=ProjectRole.RADIOLOGIST,
                                     project__cases__study__study_uid=prepared.study_uid).exists():
            raise _refuse("a reader's segmentation is saved on a case they are reading: you hold no open "
                          "claim on a case of this study (take it with \"next case\" first)",
                          "permission_denied", prepared)
        return
    try:
        ds = read_dataset(instance, pixels=False)
        referenced = referenced_series_uid(ds)
        labels = {segment.label for segment in seg_segments(ds)}
    except InvalidSegmentation as exc:
        raise _refuse(f"not a segmentation Okapi can attach to a read: {exc.reason}", "invalid_segmentation",
                      prepared) from None
    # The case the SEG was drawn on: the one of the referenced series if a case is a single series.
    slot = next((s for s in slots if s.case.series_id and s.case.series.series_uid == referenced), None)
    slot = slot or next((s for s in slots if s.case.series_id is None), slots[0])
    case = slot.case
    try:
        target_series(case, referenced)
        schema = current_schema(case.project)
        allowed = [item["name"] for item in (schema.definition.get("segments", []) if schema else [])]
        if not allowed:
            raise OkapiError("invalid_segmentation", "this project's schema has no segmentation labels")
        unknown = labels - set(allowed)
        if unknown:
            raise OkapiError("invalid_segmentation", f"segment labels not in the project's schema: "
                             f"{', '.join(sorted(unknown))} (allowed: {', '.join(allowed)})")
        read = Read.objects.filter(case=case, reader=user).first()
        read_save(case=case, reader=user, answers=read.answers if read else {},
                  submit=bool(read and read.state == ReadState.SUBMITTED),
                  base_version=read.version if read else 0, confidence=read.confidence if read else None,
                  free_text=read.free_text if read else "", segmentation=instance)
    except OkapiError as exc:
        raise _refuse(exc.message, exc.code, prepared) from None
