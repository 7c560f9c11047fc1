"""Reads of the archive scoped to what the user may see: anything else is 404, never 403 (no existence leak)."""

from django.db.models import QuerySet

from core.errors import NotFound
from imaging.access import study_access_filter, visible_studies
from imaging.models import Instance, Series, Study


def studies_for(user) -> QuerySet[Study]:
    return visible_studies(user)


def series_for(user) -> QuerySet[Series]:
    condition = study_access_filter(user)
    qs = Series.objects.all()
    return qs if condition is None else qs.filter(study__in=Study.objects.filter(condition).values("pk"))


def instances_for(user) -> QuerySet[Instance]:
    condition = study_access_filter(user)
    qs = Instance.objects.all()
    return qs if condition is None else qs.filter(series__study__in=Study.objects.filter(condition).values("pk"))


def get_study_for(user, study_uid: str) -> Study:
    study = studies_for(user).filter(study_uid=study_uid).first()
    if study is None:
        raise NotFound(f"no study {study_uid} that you may see")
    return study


def get_series_for(user, study_uid: str, series_uid: str) -> Series:
    series = (series_for(user).select_related("study")
              .filter(series_uid=series_uid, study__study_uid=study_uid).first())
    if series is None:
        raise NotFound(f"no series {series_uid} in study {study_uid} that you may see")
    return series


def get_instance_for(user, study_uid: str, series_uid: str, sop_uid: str, *, fields: tuple[str, ...] = ()):
    """One instance (or, with ``fields``, a dict of those columns) in one query, access check included."""
    qs = instances_for(user).filter(sop_uid=sop_uid, series__series_uid=series_uid,
                                    series__study__study_uid=study_uid)
    found = qs.values(*fields).first() if fields else qs.select_related("series__study").first()
    if found is None:
        raise NotFound(f"no instance {sop_uid} in series {series_uid} of study {study_uid} that you may see")
    return found


def metadata_texts(user, *, study_uid: str, series_uid: str | None = None) -> list[str]:
    """Stored DICOM JSON texts of the instances of a study or series, in series and instance order."""
    qs = instances_for(user).filter(series__study__study_uid=study_uid)
    if series_uid is not None:
        qs = qs.filter(series__series_uid=series_uid)
    texts = list(qs.order_by("series__series_number", "series_id", "instance_number", "id")
                 .values_list("metadata", flat=True))
    if not texts:
        what = f"series {series_uid} of study {study_uid}" if series_uid else f"study {study_uid}"
        raise NotFound(f"no {what} that you may see")
    return texts
