"""Who may see which study: the one place that answers it, and the hook project membership plugs into.

Admins see every study. Anyone else sees the studies they stored themselves (a lead's upload) and those a
registered provider grants. ``annotation`` registers a provider for project membership, so that imaging never
imports annotation (imports flow learning -> annotation -> imaging -> core).
"""

from collections.abc import Callable

from django.db.models import Q, QuerySet

from imaging.models import Series, Study

StudyAccessProvider = Callable[[object], Q]
_providers: list[StudyAccessProvider] = []
SeriesHider = Callable[[object], Q | None]
_hiders: list[SeriesHider] = []


def register_study_access(provider: StudyAccessProvider) -> None:
    """Add a provider: a function user -> Q over Study naming the studies it grants that user."""
    if provider not in _providers:
        _providers.append(provider)


def study_access_filter(user) -> Q | None:
    """A Q over Study for what ``user`` may see; None means everything (admins)."""
    if user.is_admin:
        return None
    condition = Q(owner=user)
    for provider in _providers:
        condition |= provider(user)
    return condition


def visible_studies(user) -> QuerySet[Study]:
    """The studies ``user`` may see."""
    if user is None or not user.is_authenticated:
        return Study.objects.none()
    condition = study_access_filter(user)
    return Study.objects.all() if condition is None else Study.objects.filter(condition)


def can_see_study_pk(user, study_pk: int) -> bool:
    """Whether ``user`` may see the study with this primary key."""
    if user is None or not user.is_authenticated:
        return False
    return user.is_admin or visible_studies(user).filter(pk=study_pk).exists()


def register_series_hider(hider: SeriesHider) -> None:
    """Add a hider: a function user -> Q over Series naming series of visible studies that ``user`` may not
    see (annotation hides other readers' segmentations while a case is open), or None to hide nothing."""
    if hider not in _hiders:
        _hiders.append(hider)


def hidden_series_filter(user) -> Q | None:
    """A Q over Series for what ``user`` may not see although its study is visible; None: nothing hidden."""
    if user is None or user.is_admin:
        return None
    condition = None
    for hider in _hiders:
        q = hider(user)
        if q is not None:
            condition = q if condition is None else condition | q
    return condition


def can_see_series(user, study_uid: str, series_uid: str) -> bool:
    """Whether a series of a study ``user`` may see is hidden from them."""
    hidden = hidden_series_filter(user)
    return hidden is None or not Series.objects.filter(
        hidden, series_uid=series_uid, study__study_uid=study_uid).exists()
