"""Saving reads: drafts, submissions and corrections, each an immutable new version.

A save names the version it was based on (``base_version``); if the read has moved on since (another tab,
another device), the save is refused with 409 and the current version, never silently lost. Every save locks
the case row, so a submission and the case's consensus are decided one at a time.
"""

from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from annotation.models import (
    Assignment,
    Case,
    CaseState,
    ClaimState,
    LabelSchema,
    Membership,
    ProjectRole,
    Read,
    ReadState,
    ReadVersion,
)
from annotation.schema import SchemaError, validate_read
from annotation.services.claims import slots_taken
from annotation.services.consensus import case_evaluate
from annotation.services.projects import current_schema
from core.audit import audit_record
from core.errors import OkapiError
from core.events import group_for, send_event_on_commit
from core.models import User
from imaging.models import Instance

MAX_SECONDS_PER_SAVE = 24 * 3600


def _check_claim(case: Case, reader: User, now) -> Assignment:
    """The reader's slot on the case: held, or expired but still free (nobody took it meanwhile)."""
    assignment = Assignment.objects.select_for_update().filter(case=case, reader=reader).first()
    if assignment is None or assignment.state == ClaimState.RELEASED:
        raise OkapiError("not_assigned", "this case is not assigned to you: take it with \"next case\" first",
                         status=409)
    if assignment.state == ClaimState.CLAIMED and assignment.expires_at and assignment.expires_at <= now:
        if slots_taken(case.pk, now=now, exclude_reader=reader) >= case.project.reads_per_case:
            raise OkapiError("claim_expired", "your claim on this case expired and its reads were taken by "
                             "other readers; your draft is kept but can no longer be submitted", status=409)
    return assignment


def read_save(*, case: Case, reader: User, answers: dict, submit: bool, base_version: int | None,
              confidence: int | None = None, free_text: str = "", time_spent_seconds: float = 0.0,
              segmentation: Instance | None = None, keep_segmentation: bool = True) -> ReadVersion:
    """Save a new version of ``reader``'s read of ``case``: a draft, or (``submit``) the finished read.

    A submitted read can be corrected (a new submitted version) until the case has its consensus. When the
    case's k-th read is submitted, consensus is evaluated in the same transaction.
    """
    if not isinstance(time_spent_seconds, int | float) or not 0 <= time_spent_seconds <= MAX_SECONDS_PER_SAVE:
        raise OkapiError("invalid", "the read is not valid",
                         detail={"time_spent_seconds": f"seconds from 0 to {MAX_SECONDS_PER_SAVE}"})
    now = timezone.now()
    with transaction.atomic():
        case = (Case.objects.select_for_update(of=("self",)).select_related("project", "study")
                .annotate(_reader=Exists(Membership.objects.filter(project=OuterRef("project_id"), user=reader,
                                                                   role=ProjectRole.RADIOLOGIST)))
                .get(pk=case.pk))
        if not case._reader:
            raise OkapiError("not_a_reader", "you are not a reader (radiologist) of this project", status=403)
        if case.state == CaseState.CONSENSUS:
            raise OkapiError("case_closed", "this case has its consensus: reads can no longer change", status=409)
        assignment = _check_claim(case, reader, now)
        read = Read.objects.select_for_update().filter(case=case, reader=reader).first()
        current = read.version if read is not None else 0
        if (base_version or 0) != current:
            raise OkapiError("version_conflict", f"this read was saved elsewhere meanwhile: you edited version "
                             f"{base_version or 0}, the current one is {current}; reload it and save again",
                             detail={"current_version": current}, status=409)
        if read is not None and read.state == ReadState.SUBMITTED and not submit:
            raise OkapiError("conflict", "a submitted read is corrected by submitting a new version, not by a "
                             "draft", status=409)
        if case.state == CaseState.ADJUDICATION and (read is None or read.state != ReadState.SUBMITTED):
            raise OkapiError("case_closed", "this case already has all its reads", status=409)
        schema: LabelSchema | None = current_schema(case.project)
        if schema is None:
            raise OkapiError("no_schema", "this project has no label schema yet", status=409)
        try:
            clean = validate_read(schema.definition, answers=answers, confidence=confidence,
                                  free_text=free_text, complete=submit)
        except SchemaError as exc:
            raise OkapiError("invalid_read", "the read does not match the project's label schema",
                             detail=exc.errors) from None
        if segmentation is None and keep_segmentation and read is not None:
            segmentation = read.segmentation
        first_submission = submit and (read is None or read.state != ReadState.SUBMITTED)
        state = ReadState.SUBMITTED if submit else ReadState.DRAFT
        if read is None:
            read = Read(case=case, reader=reader, version=0, created_at=now)
        read.version = current + 1
        read.state, read.answers, read.confidence = state, clean, confidence
        read.free_text, read.schema, read.segmentation, read.updated_at = free_text or "", schema, segmentation, now
        read.time_spent_seconds = (read.time_spent_seconds or 0.0) + float(time_spent_seconds)
        if first_submission:
            read.submitted_at = now
        read.save()
        version = ReadVersion.objects.create(
            read=read, version=read.version, state=state, answers=clean, confidence=confidence,
            free_text=read.free_text, time_spent_seconds=float(time_spent_seconds), segmentation=segmentation,
            schema=schema)
        if submit:
            assignment.state, assignment.submitted_at = ClaimState.SUBMITTED, now
            assignment.save(update_fields=["state", "submitted_at"])
        if first_submission:
            case.reads_submitted += 1
            case.save(update_fields=["reads_submitted", "updated_at"])
        audit_record(user=reader, action="read_submit" if submit else "read_save", object_type="read",
                     object_id=str(read.pk), study_uid=case.study.study_uid,
                     detail={"case": case.pk, "version": read.version})
        # Leads hear that a read happened, never what it says (their dashboard fetches what they may see).
        send_event_on_commit(group_for("project", case.project_id), {
            "type": "read", "case": case.pk, "reader": reader.username, "state": state, "version": read.version,
            "reads_submitted": case.reads_submitted})
        if submit and case.reads_submitted >= case.project.reads_per_case:
            case_evaluate(case)
    return version
