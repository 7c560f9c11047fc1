"""Shared pieces of the agreement statistics: the Estimate result, missing-value handling, Wilson intervals.

Nothing here imports Django: the statistics are plain functions of arrays, testable without a database.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

__all__ = ["Estimate", "wilson_interval"]


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its confidence interval.

    ``value`` is ``nan`` where the statistic is undefined for the data (for example a kappa when every
    reader used one and the same category, so that chance agreement is 1). ``ci_low``/``ci_high`` are
    ``None`` when no interval was computed (or none can be). ``n`` is the number of items the estimate
    rests on (cases, case pairs or units, as each function documents). ``se`` is the standard error
    where the method has one (asymptotic formulas), else ``None``.
    """

    value: float
    ci_low: float | None
    ci_high: float | None
    n: int
    se: float | None = None


def is_missing(x: Any) -> bool:
    """True for the missing-rating markers: ``None`` and floating-point NaN (also ``pandas.NA``-like NaNs)."""
    if x is None:
        return True
    if isinstance(x, float | np.floating):
        return math.isnan(x)
    return False


def as_label_matrix(ratings: Any, name: str = "ratings") -> np.ndarray:
    """``ratings`` as a 2-D object array (one Python object per cell), so str and int labels both survive.

    Raises ValueError for anything that is not a non-empty rectangular 2-D table.
    """
    try:
        arr = np.asarray(ratings, dtype=object)
    except ValueError as exc:  # ragged nested lists
        raise ValueError(f"{name} must be a rectangular 2-D table: {exc}") from None
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (got {arr.ndim} dimension(s), shape {arr.shape})")
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    for x in arr.flat:
        if not is_missing(x) and not isinstance(x, Hashable):
            raise ValueError(f"{name} holds an unhashable label {x!r}; labels must be str, int or float")
    return arr


def as_label_vector(labels: Any, name: str = "labels") -> list[Any]:
    """``labels`` as a flat list of Python objects; ValueError unless it is 1-D."""
    if isinstance(labels, str | bytes):
        raise ValueError(f"{name} must be a sequence of labels, not a single string")
    try:
        arr = np.asarray(list(labels) if not isinstance(labels, np.ndarray) else labels, dtype=object)
    except TypeError:
        raise ValueError(f"{name} must be a sequence of labels (got {type(labels).__name__})") from None
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (got shape {arr.shape})")
    for x in arr:
        if not is_missing(x) and not isinstance(x, Hashable):
            raise ValueError(f"{name} holds an unhashable label {x!r}; labels must be str, int or float")
    return list(arr)


def ordered_categories(
    labels: Iterable[Any], categories: Sequence[Any] | None, name: str = "labels", need_order: bool = True
) -> list:
    """The category list: ``categories`` if given (every observed label must be in it), else the observed
    labels sorted (their order matters for weighted statistics).

    Labels that cannot be sorted together (say str and int mixed) need an explicit ``categories`` when
    ``need_order``; otherwise (nominal statistics) they are kept in order of first appearance.
    """
    observed = list(dict.fromkeys(x for x in labels if not is_missing(x)))
    if categories is not None:
        cats = list(categories)
        if len(set(cats)) != len(cats):
            raise ValueError(f"categories has duplicates: {cats!r}")
        unknown = set(observed) - set(cats)
        if unknown:
            raise ValueError(f"{name} holds labels not in categories: {sorted(map(repr, unknown))}")
        return cats
    try:
        return sorted(observed)
    except TypeError:
        if not need_order:
            return observed
        raise ValueError(
            f"{name} mixes label types that cannot be ordered ({sorted({type(x).__name__ for x in observed})}); "
            "pass categories= to give the order"
        ) from None


def normal_quantile(confidence: float) -> float:
    """The two-sided standard-normal critical value for ``confidence`` (1.959964 for 0.95)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    return float(stats.norm.ppf(0.5 + confidence / 2))


def wilson_interval(successes: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion ``successes / n``.

    ``successes`` may be fractional: it is the sum of per-case proportions when a mean of [0, 1]-valued
    per-case scores is treated as a proportion (see ``percent_agreement``).
    """
    if n <= 0:
        raise ValueError(f"a Wilson interval needs n >= 1, got {n}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must lie in [0, n={n}], got {successes}")
    z = normal_quantile(confidence)
    p = successes / n
    z2n = z * z / n
    centre = (p + z2n / 2) / (1 + z2n)
    half = z / (1 + z2n) * math.sqrt(p * (1 - p) / n + z2n / (4 * n))
    # Rounding can push the bounds a hair outside [0, 1] when p is 0 or 1.
    return max(0.0, centre - half), min(1.0, centre + half)


def check_reader_names(reader_names: Sequence[str], n_readers: int) -> list[str]:
    """``reader_names`` as a list, one distinct name per column of the ratings."""
    names = list(reader_names)
    if len(names) != n_readers:
        raise ValueError(f"got {len(names)} reader names for {n_readers} reader columns")
    if len(set(names)) != len(names):
        raise ValueError(f"reader names must be distinct: {names!r}")
    return names
