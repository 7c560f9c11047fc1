"""Krippendorff's alpha for any number of readers, missing readings and four levels of measurement.

Computed through the coincidence matrix, following Krippendorff K. (2011) "Computing Krippendorff's
Alpha-Reliability" (Annenberg School for Communication, University of Pennsylvania) and Krippendorff K.
(2019) "Content Analysis", 4th ed., ch. 12:

    o_ck = sum over units u of  (n_uc * n_uk - [c == k] * n_uc) / (m_u - 1)
    alpha = 1 - D_o / D_e = 1 - (n - 1) * sum_ck o_ck d2_ck / sum_ck n_c n_k d2_ck

where n_uc counts the readers who gave value c to unit u, m_u = sum_c n_uc (units with m_u < 2 are not
pairable and drop out), n_c = sum_k o_ck, n = sum_c n_c, and d2 is the squared difference function of the
level of measurement.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Real
from typing import Any, Literal

import numpy as np

from ._common import Estimate, as_label_matrix, is_missing

__all__ = ["krippendorff_alpha"]

Level = Literal["nominal", "ordinal", "interval", "ratio"]
_LEVELS = ("nominal", "ordinal", "interval", "ratio")


def _domain(cells: list, level: str, values: Sequence[Any] | None) -> tuple[list, np.ndarray | None]:
    """The value domain (column order of the coincidence matrix) and, for interval/ratio, the numbers.

    Ordinal and nominal only need the order (ordinal) or identity (nominal) of values; interval and ratio
    need numbers.
    """
    observed = list(dict.fromkeys(cells))
    if values is not None:
        if level in ("interval", "ratio"):
            raise ValueError(
                "values= orders labels for the nominal/ordinal levels; interval and ratio need numbers"
            )
        domain = list(values)
        if len(set(domain)) != len(domain):
            raise ValueError(f"values has duplicates: {domain!r}")
        known = set(domain)
        unknown = [v for v in observed if v not in known]
        if unknown:
            raise ValueError(f"reliability_data holds values not in values=: {unknown!r}")
        return domain, None
    if level == "nominal":
        return observed, None
    non_numeric = [v for v in observed if not isinstance(v, Real) or isinstance(v, bool)]
    if non_numeric:
        hint = " (pass values= with the ordered labels)" if level == "ordinal" else ""
        raise ValueError(f"the {level} level needs numeric values, got {non_numeric[:3]!r}{hint}")
    domain = sorted(observed)
    numbers = np.asarray(domain, dtype=float)
    if level == "ratio" and np.any(numbers < 0):
        raise ValueError("the ratio level needs non-negative values (a true zero)")
    return domain, numbers


def _squared_differences(level: str, n_c: np.ndarray, numbers: np.ndarray | None) -> np.ndarray:
    """The V x V matrix of squared differences d2_ck for the level of measurement."""
    v = len(n_c)
    if level == "nominal":
        return 1.0 - np.eye(v)
    if level == "ordinal":
        # Ordinal distance between c and k: the number of values "between" them in the pooled data, i.e.
        # sum_{g=c..k} n_g - (n_c + n_k) / 2 (Krippendorff 2011, with ranks in the domain's order).
        cum = np.cumsum(n_c)
        lo, hi = np.minimum.outer(np.arange(v), np.arange(v)), np.maximum.outer(np.arange(v), np.arange(v))
        between = cum[hi] - cum[lo] + n_c[lo]
        return (between - np.add.outer(n_c, n_c) / 2) ** 2
    assert numbers is not None
    diff = np.subtract.outer(numbers, numbers)
    if level == "interval":
        return diff**2
    total = np.add.outer(numbers, numbers)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(total == 0, 0.0, diff / np.where(total == 0, 1.0, total))
    return ratio**2


def _alpha(counts: np.ndarray, unit_weights: np.ndarray, level: str, numbers: np.ndarray | None) -> float:
    """Alpha from the (pairable units x values) count matrix, each unit counted ``unit_weights`` times.

    Weights let the bootstrap resample units without copying the matrix.
    """
    m = counts.sum(axis=1)
    scale = unit_weights / (m - 1)
    coincidence = (counts * scale[:, None]).T @ counts - np.diag(scale @ counts)
    n_c = coincidence.sum(axis=1)
    n = n_c.sum()
    d2 = _squared_differences(level, n_c, numbers)
    expected = float(n_c @ d2 @ n_c)
    if expected <= 0:
        return math.nan  # a single value in the data: no disagreement is possible, alpha is 0/0
    return float(1.0 - (n - 1) * (coincidence * d2).sum() / expected)


def krippendorff_alpha(
    reliability_data: Any,
    level: Level = "nominal",
    *,
    values: Sequence[Any] | None = None,
    ci: bool = False,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Estimate:
    """Krippendorff's alpha reliability coefficient.

    Args:
        reliability_data: (n_readers, n_units) table, Krippendorff's orientation (readers in rows, the
            transpose of the other functions' ratings tables), ``None``/NaN where a reader gave no value.
        level: ``'nominal'``, ``'ordinal'``, ``'interval'`` or ``'ratio'``. Non-nominal levels need numbers,
            except that ordinal labels of any type may be ordered by ``values``.
        values: optional ordered value domain for the nominal/ordinal levels (e.g.
            ``["mild", "moderate", "severe"]``); every value in the data must be in it.
        ci: also compute a percentile bootstrap interval, resampling units with replacement.
        n_boot: number of bootstrap replicates.
        seed: seed of the bootstrap's random generator (the interval is reproducible).
        confidence: level of the interval.

    Returns:
        Estimate with ``n`` = number of pairable units (units with values from at least two readers) and
        ``value`` nan when the data hold a single value (alpha is then undefined). ``ci_low``/``ci_high``
        are None unless ``ci``; replicates where alpha is undefined are left out of the percentiles.
    """
    if level not in _LEVELS:
        raise ValueError(f"level must be one of {_LEVELS}, got {level!r}")
    if ci and (not isinstance(n_boot, int) or n_boot < 2):
        raise ValueError(f"n_boot must be an integer >= 2, got {n_boot!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    data = as_label_matrix(reliability_data, "reliability_data")
    cells = [x for x in data.flat if not is_missing(x)]
    if not cells:
        raise ValueError("reliability_data holds no values")
    domain, numbers = _domain(cells, level, values)
    index = {v: i for i, v in enumerate(domain)}

    counts = np.zeros((data.shape[1], len(domain)))
    for reader_row in data:
        for unit, x in enumerate(reader_row):
            if not is_missing(x):
                counts[unit, index[x]] += 1
    counts = counts[counts.sum(axis=1) >= 2]  # only pairable units enter the coincidence matrix
    n_units = counts.shape[0]
    if n_units == 0:
        raise ValueError("no unit has values from two or more readers: alpha is undefined")

    value = _alpha(counts, np.ones(n_units), level, numbers)
    if not ci:
        return Estimate(value=value, ci_low=None, ci_high=None, n=n_units)

    rng = np.random.default_rng(seed)
    # A multinomial draw of how often each unit is picked is the same as resampling units with replacement.
    draws = rng.multinomial(n_units, np.full(n_units, 1.0 / n_units), size=n_boot).astype(float)
    replicates = np.array([_alpha(counts, w, level, numbers) for w in draws])
    replicates = replicates[np.isfinite(replicates)]
    if replicates.size == 0:
        return Estimate(value=value, ci_low=None, ci_high=None, n=n_units)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(replicates, [tail, 100 - tail])
    return Estimate(value=value, ci_low=float(low), ci_high=float(high), n=n_units)
