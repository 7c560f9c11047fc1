"""Requesting an export, who may, and recording a finished snapshot as a version.

Who may export (a project role; administrators act as leads everywhere):

- project leads: any export, identified or de-identified, consensus cases or every case with a read;
- data scientists: de-identified exports of consensus cases (an identified export, or one holding the reads of
  cases still being read or adjudicated, is the lead's to make: the API's own rule for what a data scientist
  sees);
- radiologists and adjudicators: none (403); someone outside the project: 404.

The content of an export depends only on its request and the data, never on who asked, so an identical
request on unchanged data returns the existing version to anyone allowed to ask for it.
"""

import uuid
from datetime import date

from django.db import transaction
from django.db.models import Max

from annotation.exports.datalist import DEFAULT_SPLIT
from annotation.models import LabelSchema, Project, ProjectRole
from annotation.models_export import Export
from annotation.selectors import require_role
from core.audit import audit_record
from core.errors import OkapiError, PermissionDenied
from core.jobs import job_create
from core.models import Job
from imaging import storage

EXPORTERS = (ProjectRole.LEAD, ProjectRole.DATA_SCIENTIST)
IDENTIFIED = (ProjectRole.LEAD,)
CASE_SETS = ("consensus", "all")
IMAGE_FORMATS = ("nifti", "dicom", "both")
MAX_LICENCE = 2000
MAX_SERIES = 10_000


def _date(value, field: str, errors: dict) -> str:
    if value in (None, ""):
        return ""
    text = str(value).replace("-", "")
    try:
        date(int(text[:4]), int(text[4:6]), int(text[6:8]))
        if len(text) != 8:
            raise ValueError
    except ValueError:
        errors[field] = "a date, YYYY-MM-DD or YYYYMMDD"
        return ""
    return text


def _fraction(value, field: str, errors: dict) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        errors[field] = "a fraction from 0 to below 1"
        return 0.0
    return round(float(value), 6)


def export_params(raw: dict, *, project: Project) -> dict:
    """The request normalised (every key present, defaults filled, lists sorted): what the export's hash and
    its reuse are keyed on. Raises OkapiError("invalid") naming each bad field."""
    errors: dict[str, str] = {}
    known = {"cases", "schema_version", "series_uids", "modality", "date_from", "date_to", "deidentified",
             "images", "split", "licence"}
    unknown = set(raw) - known
    if unknown:
        errors["request"] = f"unknown fields: {', '.join(sorted(unknown))}"
    cases = raw.get("cases") or "consensus"
    if cases not in CASE_SETS:
        errors["cases"] = f"one of {', '.join(CASE_SETS)}"
    images = raw.get("images") or "nifti"
    if images not in IMAGE_FORMATS:
        errors["images"] = f"one of {', '.join(IMAGE_FORMATS)}"
    version = raw.get("schema_version")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int)
                                or not LabelSchema.objects.filter(project=project, version=version).exists()):
        errors["schema_version"] = "a label schema version of this project"
    series = raw.get("series_uids") or []
    if not isinstance(series, list) or len(series) > MAX_SERIES or not all(isinstance(s, str) for s in series):
        errors["series_uids"] = f"a list of at most {MAX_SERIES} SeriesInstanceUIDs"
        series = []
    split_raw = raw.get("split") or {}
    split = dict(DEFAULT_SPLIT)
    if not isinstance(split_raw, dict) or set(split_raw) - set(DEFAULT_SPLIT):
        errors["split"] = "an object with validation, test (fractions) and seed (an integer)"
    else:
        for key in ("validation", "test"):
            if key in split_raw:
                split[key] = _fraction(split_raw[key], f"split.{key}", errors)
        seed = split_raw.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
            errors["split.seed"] = "an integer from 0 to 2^32 - 1"
        split["seed"] = seed
        if split["validation"] + split["test"] >= 1:
            errors["split"] = "validation + test must leave cases for training"
    deidentified = raw.get("deidentified", True)
    if not isinstance(deidentified, bool):
        errors["deidentified"] = "true or false"
    licence = raw.get("licence") or ""
    if not isinstance(licence, str) or len(licence) > MAX_LICENCE:
        errors["licence"] = f"text of at most {MAX_LICENCE} characters"
        licence = ""
    modality = raw.get("modality") or ""
    if not isinstance(modality, str):
        errors["modality"] = "one modality code, such as CT"
        modality = ""
    date_from = _date(raw.get("date_from"), "date_from", errors)
    date_to = _date(raw.get("date_to"), "date_to", errors)
    if date_from and date_to and date_from > date_to:
        errors["date_to"] = "on or after date_from"
    out = {
        "cases": cases, "schema_version": version, "series_uids": sorted(set(series)),
        "modality": modality.strip().upper()[:16], "date_from": date_from, "date_to": date_to,
        "deidentified": deidentified, "images": images, "split": split, "licence": licence.strip(),
    }
    if errors:
        raise OkapiError("invalid", "the export request is not valid", detail=errors)
    return out


def check_may_export(roles: set[str], request: dict) -> None:
    """403 for a member who may not make this export (see the module docstring)."""
    require_role(roles, *EXPORTERS, action="export its dataset")
    if not request["deidentified"] and not roles & set(IDENTIFIED):
        raise PermissionDenied("only project leads and administrators may export identified data; ask for a "
                               "de-identified export (deidentified: true)")
    if request["cases"] == "all" and not roles & set(IDENTIFIED):
        raise PermissionDenied("only project leads may export the reads of cases without consensus; ask for "
                               "consensus cases (cases: consensus)")


def may_download(roles: set[str], export: Export) -> bool:
    """Whether a member with ``roles`` may see and download this export."""
    if not roles & set(EXPORTERS):
        return False
    return export.deidentified or bool(roles & set(IDENTIFIED))


def export_request(*, user, project: Project, roles: set[str], raw: dict) -> Job:
    """Queue the build of an export; returns the job (202). Progress: the job API and /ws/jobs/{id}."""
    request = export_params(raw, project=project)
    check_may_export(roles, request)
    with transaction.atomic():
        job = job_create(kind="export", params={"project": project.pk, "request": request}, user=user)
        audit_record(user=user, action="export_request", object_type="project", object_id=str(project.pk),
                     detail={"job": str(job.pk), "deidentified": request["deidentified"]})
        from annotation.tasks import queue_export

        transaction.on_commit(lambda: queue_export(job))
    return job


def export_register(*, project: Project, content_hash: str, archive: str, size: int, sha256: str, request: dict,
                    schema_version: int | None, summary: dict, user=None, job_id=None) -> tuple[Export, bool]:
    """Record a built archive as the project's next version, or return the version that already has this
    content (the caller deletes its archive). Returns (export, reused). The archive is stored before the row is
    written; a failure between the two deletes the stored file, so no row points at a partial archive."""
    existing = Export.objects.filter(project=project, content_hash=content_hash).first()
    if existing is not None:
        return existing, True
    key = f"exports/{project.pk}/{content_hash}/{uuid.uuid4().hex}.zip"  # unique: a racing twin has its own
    storage.put_file(archive, key, move=True)
    try:
        with transaction.atomic():
            Project.objects.select_for_update().filter(pk=project.pk).first()  # one version number at a time
            existing = Export.objects.filter(project=project, content_hash=content_hash).first()
            if existing is None:
                version = (Export.objects.filter(project=project).aggregate(v=Max("version"))["v"] or 0) + 1
                export = Export.objects.create(
                    project=project, version=version, content_hash=content_hash, file=key, size=size,
                    sha256=sha256, request=request, deidentified=request["deidentified"],
                    schema_version=schema_version, summary=summary, created_by=user if user and user.pk else None,
                    job_id=job_id)
                audit_record(user=user, action="export_create", object_type="export", object_id=str(export.pk),
                             detail={"project": project.pk, "version": version, "content_hash": content_hash})
                return export, False
    except BaseException:
        storage.delete_file(key)
        raise
    storage.delete_file(key)  # an identical export finished first: keep its archive, drop this copy
    return existing, True
