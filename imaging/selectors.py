"""Reads of the archive scoped to what the user may see: anything else is 404, never 403 (no existence leak)."""

from dataclasses import dataclass

from django.conf import settings
from django.db import connection
from django.db.models import QuerySet
from django.dispatch import receiver

from core.cache import TTLCache
from core.errors import NotFound
from core.signals import auth_changed
from imaging.access import can_see_series, hidden_series_filter, study_access_filter, visible_studies
from imaging.dicom.pixels import PixelIndex
from imaging.models import Instance, Series, Study


def studies_for(user) -> QuerySet[Study]:
    return visible_studies(user)


def series_for(user) -> QuerySet[Series]:
    condition, hidden = study_access_filter(user), hidden_series_filter(user)
    qs = Series.objects.all()
    if condition is not None:
        qs = qs.filter(study__in=Study.objects.filter(condition).values("pk"))
    return qs if hidden is None else qs.exclude(pk__in=Series.objects.filter(hidden).values("pk"))


def instances_for(user) -> QuerySet[Instance]:
    condition, hidden = study_access_filter(user), hidden_series_filter(user)
    qs = Instance.objects.all()
    if condition is not None:
        qs = qs.filter(series__study__in=Study.objects.filter(condition).values("pk"))
    return qs if hidden is None else qs.exclude(series__in=Series.objects.filter(hidden).values("pk"))


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


@dataclass(frozen=True)
class FrameSource:
    """Where an instance's frames are: everything the frame endpoint needs, nothing it must parse again."""

    file: str
    transfer_syntax_uid: str
    pixel_index: PixelIndex | None


# Instances never change once stored: their frame sources never expire (only an LRU bound).
_frame_sources = TTLCache(float("inf"), size=100_000)
_FRAME_SOURCE_SQL = (
    "SELECT i.file, i.transfer_syntax_uid, i.pixel_index FROM imaging_instance i"
    " JOIN imaging_series se ON se.id = i.series_id JOIN imaging_study st ON st.id = se.study_id"
    " WHERE i.sop_uid = %s AND se.series_uid = %s AND st.study_uid = %s"
)


def get_frame_source_for(user, study_uid: str, series_uid: str, sop_uid: str) -> FrameSource:
    """The frame source of an instance the user may see (the hot path of viewing: an admin costs no query,
    anyone else one query for the access check); 404 otherwise.

    Instances are immutable once stored, so their sources are cached per process; whatever deletes an
    instance must call :func:`forget_frame_sources`.
    """
    key = (study_uid, series_uid, sop_uid)
    source = _frame_sources.get(key)
    if source is None:
        with connection.cursor() as cursor:
            cursor.execute(_FRAME_SOURCE_SQL, [sop_uid, series_uid, study_uid])
            row = cursor.fetchone()
        if row is not None:
            file, syntax, index = row
            source = FrameSource(file, syntax, PixelIndex.from_json(index) if index else None)
            _frame_sources.put(key, source)
    if source is None or not _may_see(user, study_uid, series_uid):
        raise NotFound(f"no instance {sop_uid} in series {series_uid} of study {study_uid} that you may see")
    return source


def forget_frame_sources() -> None:
    """Drop cached frame sources (after instances are deleted)."""
    _frame_sources.clear()


_access = TTLCache(settings.OKAPI_AUTH_CACHE_SECONDS, size=50_000)


def _may_see(user, study_uid: str, series_uid: str) -> bool:
    """Access to one series, remembered (if granted) for OKAPI_AUTH_CACHE_SECONDS: the frame hot path.
    Only grants are remembered: a series hidden now may become visible, never the reverse."""
    if user.is_admin:
        return True
    key = (user.pk, study_uid, series_uid)
    if _access.get(key):
        return True
    allowed = (visible_studies(user).filter(study_uid=study_uid).exists()
               and can_see_series(user, study_uid, series_uid))
    if allowed:
        _access.put(key, True)
    return allowed


@receiver(auth_changed)
def _forget_access(**kwargs) -> None:
    _access.clear()
