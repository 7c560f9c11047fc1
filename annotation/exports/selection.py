"""What an export holds: its cases, their image series and reads, and the pseudonyms that name them.

Reads only. Cases are taken in id order and read one at a time by the builder (memory does not grow with the
project); everything here is deterministic for unchanged data, so the same request gives the same content.
"""

import hashlib
import hmac
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Exists, F, OuterRef, Q, QuerySet

from annotation.models import Case, CaseState, LabelSchema, Project, Read, ReadState
from annotation.segmentation import SEG_SOP_CLASS_UIDS
from imaging.models import Instance, Series

NON_IMAGE_MODALITIES = ("SEG", "SR", "PR", "KO", "RTSTRUCT", "RTPLAN", "RTDOSE", "DOC", "REG", "FID")


def deid_secret() -> str:
    return settings.OKAPI_DEID_SECRET or settings.SECRET_KEY


def pseudonym(kind: str, project_id: int, key) -> str:
    """A stable pseudonym (``case-…``, ``reader-…``): a keyed hash of the project and the row id under the
    site's de-identification secret, so it is the same in every version and mode, and cannot be reversed
    without the secret."""
    message = f"okapi-export\x00{kind}\x00{project_id}\x00{key}".encode()
    return f"{kind}-{hmac.new(deid_secret().encode(), message, hashlib.sha256).hexdigest()[:10]}"


def export_schema(project: Project, version: int | None) -> LabelSchema | None:
    """The schema an export describes: the requested version, else the project's latest."""
    qs = LabelSchema.objects.filter(project=project)
    if version is not None:
        return qs.filter(version=version).first()
    return qs.order_by("-version").first()


def submitted_reads(request: dict) -> QuerySet[Read]:
    qs = Read.objects.filter(state=ReadState.SUBMITTED)
    if request["schema_version"] is not None:
        qs = qs.filter(schema__version=request["schema_version"])
    return qs


def _image_series_q() -> Q:
    images = (Instance.objects.filter(series=OuterRef("pk"), rows__isnull=False)
              .exclude(sop_class_uid__in=SEG_SOP_CLASS_UIDS))
    return Q(Exists(images)) & ~Q(modality__in=NON_IMAGE_MODALITIES)


def _series_filter_q(request: dict, prefix: str) -> Q:
    q = Q()
    if request["series_uids"]:
        q &= Q(**{f"{prefix}series_uid__in": request["series_uids"]})
    if request["modality"]:
        q &= Q(**{f"{prefix}modality": request["modality"]})
    return q


def export_cases(project: Project, request: dict) -> QuerySet[Case]:
    """The cases an export holds, in id order: consensus cases, or every case with a submitted read
    (``cases: all``), restricted by schema version (a read made under it), study date and series."""
    qs = Case.objects.filter(project=project)
    if request["cases"] == "consensus":
        qs = qs.filter(state=CaseState.CONSENSUS)
    qs = qs.filter(Exists(submitted_reads(request).filter(case=OuterRef("pk"))))
    if request["date_from"]:
        qs = qs.filter(study__study_date__gte=request["date_from"])
    if request["date_to"]:
        qs = qs.filter(study__study_date__lte=request["date_to"])
    if request["series_uids"] or request["modality"]:
        wanted = Series.objects.filter(_series_filter_q(request, ""))
        qs = qs.filter(Q(series__isnull=False, series__in=wanted) |
                       Q(series__isnull=True, study__in=wanted.values("study")))
    return (qs.select_related("study", "series").defer("study__attributes", "series__attributes")
            .order_by("id"))


@dataclass(frozen=True)
class CaseSeries:
    series: Series
    label: str  # series-01, ...: its place among the case's image series (by series number, then UID)


def case_series(case: Case, request: dict) -> list[CaseSeries]:
    """The image series of a case (its one series, or every image series of its study; SEG, SR and other
    non-image series left out), each with a stable label, then narrowed by the request's series filter."""
    qs = Series.objects.filter(pk=case.series_id) if case.series_id else Series.objects.filter(study=case.study)
    qs = (qs.filter(_image_series_q()).defer("attributes")
          .order_by(F("series_number").asc(nulls_last=True), "series_uid"))
    labelled = [CaseSeries(s, f"series-{i + 1:02d}") for i, s in enumerate(qs)]
    if request["series_uids"]:
        labelled = [c for c in labelled if c.series.series_uid in request["series_uids"]]
    if request["modality"]:
        labelled = [c for c in labelled if c.series.modality == request["modality"]]
    return labelled


def series_images(series: Series) -> list[Instance]:
    """The image instances of a series (not its SEG objects), in instance order."""
    return list(Instance.objects.filter(series=series, rows__isnull=False)
                .exclude(sop_class_uid__in=SEG_SOP_CLASS_UIDS).only("id", "file", "sop_uid", "instance_number")
                .order_by("instance_number", "id"))


def case_reads(case: Case, request: dict) -> list[Read]:
    """The case's submitted reads (latest version of each) that the request covers."""
    return list(submitted_reads(request).filter(case=case).select_related("reader", "schema", "segmentation")
                .defer("segmentation__metadata", "segmentation__pixel_index").order_by("id"))


def consensus_segmentation(case: Case) -> Instance | None:
    """The consensus DICOM SEG of a case that has one."""
    uid = (case.consensus or {}).get("segmentation") if case.state == CaseState.CONSENSUS else None
    return Instance.objects.filter(sop_uid=uid).only("id", "file", "sop_uid").first() if uid else None
