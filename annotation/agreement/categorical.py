"""Agreement on categorical and ordinal labels: percent agreement, Cohen's kappa, Fleiss' kappa.

Ratings tables are (n_cases, n_readers): one row per case, one column per reader, ``None``/NaN where a
reader did not read the case. Labels may be str or int.

References
----------
Cohen J. (1960) A coefficient of agreement for nominal scales. Educ Psychol Meas 20:37-46.
Cohen J. (1968) Weighted kappa. Psychol Bull 70:213-220.
Fleiss JL, Cohen J, Everitt BS. (1969) Large sample standard errors of kappa and weighted kappa.
    Psychol Bull 72:323-327.
Fleiss JL. (1971) Measuring nominal scale agreement among many raters. Psychol Bull 76:378-382.
Fleiss JL, Nee JCM, Landis JR. (1979) Large sample variance of kappa in the case of different sets of
    raters. Psychol Bull 86:974-977.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from itertools import combinations
from typing import Any, Literal

import numpy as np

from ._common import (
    Estimate,
    as_label_matrix,
    as_label_vector,
    check_reader_names,
    is_missing,
    normal_quantile,
    ordered_categories,
    wilson_interval,
)

__all__ = ["percent_agreement", "cohen_kappa", "pairwise_cohen_kappa", "fleiss_kappa"]

Weights = Literal["linear", "quadratic"] | None


def _pair_agreement(counts: Sequence[int]) -> float:
    """Proportion of agreeing reader pairs among ``sum(counts)`` ratings of one case (counts per label)."""
    m = sum(counts)
    return sum(c * (c - 1) for c in counts) / (m * (m - 1))


def percent_agreement(ratings: Any, confidence: float = 0.95) -> Estimate:
    """Mean over cases of the proportion of reader pairs that gave the same label.

    Args:
        ratings: (n_cases, n_readers) table of labels, ``None``/NaN for missing. Cases with fewer than
            two ratings say nothing about agreement and are skipped.
        confidence: level of the interval.

    Returns:
        Estimate with ``n`` = number of cases used. The interval is the Wilson score interval with the
        mean as the proportion and the number of cases as the count. With two readers the per-case score
        is a Bernoulli outcome and this is the usual Wilson interval; with more readers the per-case score
        lies in [0, 1], whose variance is at most p(1 - p), so the interval is (asymptotically) conservative.
    """
    table = as_label_matrix(ratings)
    scores = []
    for row in table:
        counts = Counter(x for x in row if not is_missing(x))
        if sum(counts.values()) >= 2:
            scores.append(_pair_agreement(list(counts.values())))
    if not scores:
        raise ValueError("no case has two or more ratings: percent agreement is undefined")
    n = len(scores)
    value = float(np.mean(scores))
    low, high = wilson_interval(min(value * n, n), n, confidence)  # min(): guard against float rounding
    return Estimate(value=value, ci_low=low, ci_high=high, n=n)


def _agreement_weights(k: int, weights: Weights) -> np.ndarray:
    """k x k agreement weights (1 on the diagonal) for categories at equally spaced ordinal positions."""
    if weights is None or k == 1:  # a single category has nothing to weigh
        return np.eye(k)
    dist = np.abs(np.subtract.outer(np.arange(k), np.arange(k))) / (k - 1)
    if weights == "linear":
        return 1.0 - dist
    if weights == "quadratic":
        return 1.0 - dist**2
    raise ValueError(f"weights must be None, 'linear' or 'quadratic', got {weights!r}")


def _kappa_from_table(table: np.ndarray, w: np.ndarray, confidence: float) -> Estimate:
    """Cohen's (weighted) kappa of a k x k contingency table with its asymptotic SE and normal CI.

    The variance is the large-sample, non-null formula of Fleiss, Cohen & Everitt (1969); with identity
    weights it reduces to their unweighted formula, so one expression serves both.
    """
    n = int(table.sum())
    p = table / n
    row = p.sum(axis=1)  # reader a's marginal distribution
    col = p.sum(axis=0)  # reader b's marginal distribution
    p_obs = float((w * p).sum())
    p_exp = float((w * np.outer(row, col)).sum())
    if math.isclose(p_exp, 1.0, abs_tol=1e-12):
        # Both readers used one and the same category throughout: chance agreement is total, kappa is 0/0.
        return Estimate(value=math.nan, ci_low=None, ci_high=None, n=n)
    kappa = (p_obs - p_exp) / (1 - p_exp)
    w_row = w @ col  # mean weight of row category i against reader b's distribution
    w_col = row @ w  # mean weight of column category j against reader a's distribution
    term = (p * (w - np.add.outer(w_row, w_col) * (1 - kappa)) ** 2).sum()
    var = (term - (kappa - p_exp * (1 - kappa)) ** 2) / (n * (1 - p_exp) ** 2)
    se = math.sqrt(max(var, 0.0))  # rounding can make a zero variance (perfect agreement) slightly negative
    half = normal_quantile(confidence) * se
    # Kappa lives in [-1, 1]; a normal interval around a value near 1 would poke past it.
    return Estimate(value=kappa, ci_low=max(-1.0, kappa - half), ci_high=min(1.0, kappa + half), n=n, se=se)


def cohen_kappa(
    a: Sequence[Any],
    b: Sequence[Any],
    weights: Weights = None,
    categories: Sequence[Any] | None = None,
    confidence: float = 0.95,
) -> Estimate:
    """Cohen's kappa (unweighted, or linear/quadratic weighted) between two readers.

    Args:
        a, b: the two readers' labels, case by case (same length); a case missing (``None``/NaN) in
            either is left out.
        weights: ``None`` for unweighted kappa; ``'linear'`` (Cicchetti-Allison) or ``'quadratic'``
            (Fleiss-Cohen) agreement weights for ordinal labels. Weights depend on the position of each
            label in ``categories``, with positions equally spaced.
        categories: the ordered label set. Default: the labels either reader used, sorted. Giving the
            full scale matters for weighted kappa when levels inside the scale were never used (an unused level
            changes the spacing of the weights).
        confidence: level of the interval.

    Returns:
        Estimate with ``n`` = number of cases both readers labelled and ``se`` the asymptotic standard
        error (Fleiss, Cohen & Everitt 1969, not the null-hypothesis SE). The interval is
        kappa +/- z * se, clipped to [-1, 1]. ``value`` is nan when chance agreement is 1.
    """
    if weights not in (None, "linear", "quadratic"):
        raise ValueError(f"weights must be None, 'linear' or 'quadratic', got {weights!r}")
    xa, xb = as_label_vector(a, "a"), as_label_vector(b, "b")
    if len(xa) != len(xb):
        raise ValueError(f"a and b must have one label per case each (got {len(xa)} and {len(xb)})")
    pairs = [(x, y) for x, y in zip(xa, xb, strict=True) if not is_missing(x) and not is_missing(y)]
    if not pairs:
        raise ValueError("no case was labelled by both readers")
    cats = ordered_categories([v for pair in pairs for v in pair], categories, need_order=weights is not None)
    index = {c: i for i, c in enumerate(cats)}
    table = np.zeros((len(cats), len(cats)))
    for x, y in pairs:
        table[index[x], index[y]] += 1
    return _kappa_from_table(table, _agreement_weights(len(cats), weights), confidence)


def pairwise_cohen_kappa(
    ratings: Any,
    reader_names: Sequence[str],
    weights: Weights = None,
    categories: Sequence[Any] | None = None,
    confidence: float = 0.95,
) -> dict[tuple[str, str], Estimate]:
    """Cohen's kappa for every pair of readers, over the cases both read.

    Args:
        ratings: (n_cases, n_readers) table of labels, ``None``/NaN for missing.
        reader_names: one name per column.
        weights, confidence: as for ``cohen_kappa``.
        categories: the ordered label set; default: every label in the whole table, sorted, so that the
            weights of all pairs refer to the same scale.

    Returns:
        ``{(name_i, name_j): Estimate}`` for i < j in column order. A pair that shares no case gets
        ``Estimate(nan, None, None, n=0)`` rather than an error: partial overlap is normal in a campaign.
    """
    table = as_label_matrix(ratings)
    names = check_reader_names(reader_names, table.shape[1])
    cats = ordered_categories(table.flat, categories, "ratings", need_order=weights is not None)
    result: dict[tuple[str, str], Estimate] = {}
    for i, j in combinations(range(len(names)), 2):
        both = [
            not is_missing(x) and not is_missing(y) for x, y in zip(table[:, i], table[:, j], strict=True)
        ]
        if not any(both):
            result[(names[i], names[j])] = Estimate(value=math.nan, ci_low=None, ci_high=None, n=0)
            continue
        result[(names[i], names[j])] = cohen_kappa(
            table[:, i], table[:, j], weights=weights, categories=cats, confidence=confidence
        )
    return result


def _count_table(ratings: Any) -> np.ndarray:
    """Subject x category counts from an (n_cases, n_readers) label table, requiring equal counts per case."""
    table = as_label_matrix(ratings)
    # Fleiss' kappa is nominal: the column order of categories is irrelevant, so take them as first seen.
    cats = list(dict.fromkeys(x for x in table.flat if not is_missing(x)))
    index = {c: i for i, c in enumerate(cats)}
    counts = np.zeros((table.shape[0], len(cats)))
    expected = None
    for case, row in enumerate(table):
        labels = [x for x in row if not is_missing(x)]
        if expected is None:
            expected = len(labels)
        elif len(labels) != expected:
            raise ValueError(
                f"case {case} has {len(labels)} ratings but case 0 has {expected}: Fleiss' kappa needs the "
                "same number of ratings for every case (drop or complete the case)"
            )
        for x in labels:
            counts[case, index[x]] += 1
    return counts


def _check_count_table(table: Any) -> np.ndarray:
    """A user-given subject x category count table, checked: whole non-negative counts, equal row sums."""
    try:
        counts = np.asarray(table, dtype=float)
    except (TypeError, ValueError):
        raise ValueError("table must be a numeric (n_cases, n_categories) array of counts") from None
    if counts.ndim != 2 or counts.size == 0:
        raise ValueError(
            f"table must be a non-empty 2-D (n_cases, n_categories) array, got shape {counts.shape}"
        )
    if not np.all(np.isfinite(counts)) or np.any(counts < 0) or np.any(counts != np.round(counts)):
        raise ValueError("table must hold non-negative whole counts")
    totals = counts.sum(axis=1)
    bad = np.flatnonzero(totals != totals[0])
    if bad.size:
        raise ValueError(
            f"case {bad[0]} has {totals[bad[0]]:g} ratings but case 0 has {totals[0]:g}: Fleiss' kappa needs "
            "the same number of ratings for every case"
        )
    return counts


def fleiss_kappa(ratings: Any = None, *, table: Any = None, confidence: float = 0.95) -> Estimate:
    """Fleiss' kappa for many readers on nominal labels, with the Fleiss, Nee & Landis (1979) SE.

    Args:
        ratings: (n_cases, n_readers) table of labels, ``None``/NaN for missing. Every case must have the
            same number of ratings (the readers may differ from case to case); otherwise ValueError
            naming the first case that differs.
        table: alternatively (keyword only), the (n_cases, n_categories) table of how many readers put
            each case in each category.
        confidence: level of the interval.

    Returns:
        Estimate with ``n`` = number of cases. ``se`` is the large-sample standard error of Fleiss, Nee &
        Landis (1979), which corrects the one printed in Fleiss (1971). It is derived under the hypothesis
        of chance-only agreement (it is the SE behind the usual z test, as in R's ``irr::kappam.fleiss``);
        the interval kappa +/- z * se (clipped to [-1, 1]) is the customary approximation around it.
        ``value`` is nan when every rating falls in one category.
    """
    if (ratings is None) == (table is None):
        raise ValueError("pass either ratings or table=, not both or neither")
    counts = _count_table(ratings) if table is None else _check_count_table(table)
    n_cases = counts.shape[0]
    m = counts[0].sum()  # ratings per case
    if m < 2:
        raise ValueError(f"each case needs at least two ratings for Fleiss' kappa (got {m:g})")
    p_cat = counts.sum(axis=0) / (n_cases * m)  # share of all ratings in each category
    p_case = ((counts * counts).sum(axis=1) - m) / (m * (m - 1))  # agreeing pairs within each case
    p_bar = float(p_case.mean())
    p_exp = float((p_cat**2).sum())
    if math.isclose(p_exp, 1.0, abs_tol=1e-12):
        return Estimate(value=math.nan, ci_low=None, ci_high=None, n=n_cases)
    kappa = (p_bar - p_exp) / (1 - p_exp)
    # FNL (1979): var = 2 / (N m (m - 1)) * [(sum p_j q_j)^2 - sum p_j q_j (q_j - p_j)] / (sum p_j q_j)^2
    pq = p_cat * (1 - p_cat)
    s = pq.sum()
    var = 2.0 / (n_cases * m * (m - 1)) * (s**2 - (pq * ((1 - p_cat) - p_cat)).sum()) / s**2
    se = math.sqrt(max(var, 0.0))
    half = normal_quantile(confidence) * se
    return Estimate(
        value=kappa, ci_low=max(-1.0, kappa - half), ci_high=min(1.0, kappa + half), n=n_cases, se=se
    )
