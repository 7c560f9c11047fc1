"""Consensus of several readers on one case, and how each reader agrees with the consensus.

A campaign's consensus rule decides, case by case, whether the readers' labels settle the case or send it
to adjudication: ``majority_vote`` reports ties, ``case_agreement`` the share of agreeing reader pairs that
a per-case threshold can be set on. Masks are combined voxelwise (``mask_majority``) or by STAPLE
(Warfield, Zou & Wells 2004, IEEE TMI 23:903-921), which weighs each reader by an estimated sensitivity
and specificity.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from numbers import Real
from typing import Any, Literal

import numpy as np
import SimpleITK as sitk

from ._common import (
    Estimate,
    as_label_matrix,
    as_label_vector,
    check_reader_names,
    is_missing,
    ordered_categories,
    wilson_interval,
)
from .categorical import Weights, cohen_kappa
from .masks import as_mask

__all__ = [
    "Vote",
    "MultiChoiceVote",
    "StapleResult",
    "ReaderAgreement",
    "majority_vote",
    "multi_choice_vote",
    "ordinal_consensus",
    "mask_majority",
    "mask_staple",
    "case_agreement",
    "agreement_with_consensus",
]


@dataclass(frozen=True)
class Vote:
    """Outcome of a majority vote on one case.

    ``value`` is the most-voted label, or ``None`` on a tie (``tie`` is then True and the case goes to
    adjudication). ``agreement`` is the share of the votes cast that went to the most-voted label(s).
    """

    value: Any
    tie: bool
    agreement: float


@dataclass(frozen=True)
class MultiChoiceVote:
    """Outcome of a per-option vote on a multiple-choice question.

    ``selected``: options chosen by more than the threshold share of readers. ``support``: for every
    option any reader chose, the share of readers who chose it. ``tied``: options exactly at the threshold
    (say 2 of 4 readers at 0.5), which a rule may send to adjudication.
    """

    selected: frozenset
    support: dict[Any, float]
    tied: frozenset


@dataclass(frozen=True)
class StapleResult:
    """STAPLE consensus: the thresholded ``mask``, the voxelwise foreground ``probability`` and, per reader
    in input order, the estimated ``sensitivity`` and ``specificity`` (nan where undefined)."""

    mask: np.ndarray
    probability: np.ndarray
    sensitivity: tuple[float, ...]
    specificity: tuple[float, ...]


@dataclass(frozen=True)
class ReaderAgreement:
    """One reader against the consensus: ``proportion`` of cases where they gave the consensus label (Wilson
    interval) and Cohen's ``kappa`` against the consensus (asymptotic interval)."""

    proportion: Estimate
    kappa: Estimate


def _votes(labels: Any) -> list[Any]:
    votes = [x for x in as_label_vector(labels) if not is_missing(x)]
    if not votes:
        raise ValueError("no labels to vote on (all missing)")
    return votes


def majority_vote(labels: Sequence[Any]) -> Vote:
    """The label most readers gave to one case (plurality); a tie for first place gives no value.

    Args:
        labels: one label per reader, ``None``/NaN for a reader who gave none (ignored).
    """
    votes = _votes(labels)
    ranked = Counter(votes).most_common()
    top = ranked[0][1]
    leaders = [label for label, count in ranked if count == top]
    agreement = top / len(votes)
    if len(leaders) > 1:
        return Vote(value=None, tie=True, agreement=agreement)
    return Vote(value=leaders[0], tie=False, agreement=agreement)


def multi_choice_vote(selections: Sequence[Iterable[Any] | None], threshold: float = 0.5) -> MultiChoiceVote:
    """Per-option majority for a question where each reader may tick several options.

    Args:
        selections: one collection of chosen options per reader (an empty one means "none of them"),
            ``None`` for a reader who did not answer (ignored).
        threshold: an option is selected when the share of readers who chose it is strictly above this.
    """
    if not 0 <= threshold < 1:
        raise ValueError(f"threshold must be in [0, 1), got {threshold!r}")
    if isinstance(selections, str | bytes) or not isinstance(selections, Iterable):
        raise ValueError("selections must be a sequence with one collection of options per reader")
    answered = []
    for i, s in enumerate(selections):
        if s is None:
            continue
        if isinstance(s, str | bytes) or not isinstance(s, Iterable):
            raise ValueError(f"selection {i} must be a collection of options (a set or list), got {s!r}")
        answered.append(set(s))
    if not answered:
        raise ValueError("no reader answered")
    counts = Counter(option for chosen in answered for option in chosen)
    support = {option: count / len(answered) for option, count in counts.items()}
    # Compare with a tolerance so that 2/4 counts as exactly 0.5 whatever the float rounding.
    tied = frozenset(o for o, s in support.items() if math.isclose(s, threshold, abs_tol=1e-12))
    selected = frozenset(o for o, s in support.items() if s > threshold and o not in tied)
    return MultiChoiceVote(selected=selected, support=support, tied=tied)


def ordinal_consensus(values: Sequence[Any], method: Literal["median", "mean"] = "median") -> float:
    """Consensus of numeric ordinal or continuous readings of one case (missing ones ignored).

    The median is the sound summary of an ordinal scale; with an even number of readers it is the midpoint
    of the two middle values and may fall between scale levels. ``'mean'`` suits interval-scale values.
    """
    if method not in ("median", "mean"):
        raise ValueError(f"method must be 'median' or 'mean', got {method!r}")
    votes = _votes(values)
    bad = [v for v in votes if not isinstance(v, Real) or isinstance(v, bool)]
    if bad:
        raise ValueError(f"ordinal consensus needs numeric values, got {bad[:3]!r}")
    nums = [float(v) for v in votes]
    return float(statistics.median(nums) if method == "median" else statistics.fmean(nums))


def _mask_stack(masks: Sequence[Any] | Mapping[str, Any]) -> np.ndarray:
    """Readers' masks as a (n_readers, *shape) bool array; ValueError unless all are binary and alike."""
    items = list(masks.items()) if isinstance(masks, Mapping) else list(enumerate(masks))
    if not items:
        raise ValueError("no masks given")
    arrays = [as_mask(m, f"mask {name!r}") for name, m in items]
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ValueError(f"all masks must have the same shape, got {sorted(shapes)}")
    return np.stack(arrays)


def mask_majority(masks: Sequence[Any] | Mapping[str, Any]) -> np.ndarray:
    """Voxelwise strict majority: a voxel is foreground when more than half of the readers marked it.

    With an even number of readers a half-half voxel is background (with two readers this is their
    intersection). Accepts a sequence of masks or ``{reader_name: mask}``.
    """
    stack = _mask_stack(masks)
    return 2 * stack.sum(axis=0) > stack.shape[0]


def mask_staple(masks: Sequence[Any] | Mapping[str, Any], threshold: float = 0.5) -> StapleResult:
    """STAPLE consensus of the readers' masks (SimpleITK's ``STAPLEImageFilter``).

    Args:
        masks: a sequence of masks or ``{reader_name: mask}`` (sensitivity/specificity follow its order).
        threshold: the consensus mask is ``probability >= threshold``.

    When all masks are identical STAPLE has nothing to estimate (and SimpleITK returns NaN for an empty or
    full image), so the common mask is returned with sensitivity/specificity 1 (nan where undefined: no
    foreground, or no background, at all).
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
    stack = _mask_stack(masks)
    n_readers = stack.shape[0]
    if np.all(stack == stack[0]):
        common = stack[0].copy()
        sens = 1.0 if common.any() else math.nan
        spec = 1.0 if not common.all() else math.nan
        return StapleResult(common, common.astype(float), (sens,) * n_readers, (spec,) * n_readers)
    staple = sitk.STAPLEImageFilter()
    staple.SetForegroundValue(1)
    probability = sitk.GetArrayFromImage(
        staple.Execute([sitk.GetImageFromArray(m.astype(np.uint8)) for m in stack])
    )
    if np.isnan(probability).any():
        raise ValueError("STAPLE did not produce a probability map (NaN); check the masks")
    return StapleResult(
        mask=probability >= threshold,
        probability=probability,
        sensitivity=tuple(float(s) for s in staple.GetSensitivity()),
        specificity=tuple(float(s) for s in staple.GetSpecificity()),
    )


def case_agreement(labels: Sequence[Any]) -> float:
    """Share of reader pairs who gave one case the same label (missing labels ignored).

    1.0 when all readers agree; with three readers 2-against-1 gives 1/3. A campaign can send a case to
    adjudication when this falls below a threshold.
    """
    votes = _votes(labels)
    if len(votes) < 2:
        raise ValueError(f"case agreement needs labels from at least two readers, got {len(votes)}")
    m = len(votes)
    return sum(c * (c - 1) for c in Counter(votes).values()) / (m * (m - 1))


def agreement_with_consensus(
    ratings: Any,
    consensus: Sequence[Any],
    reader_names: Sequence[str],
    weights: Weights = None,
    categories: Sequence[Any] | None = None,
    confidence: float = 0.95,
) -> dict[str, ReaderAgreement]:
    """How well each reader matches the consensus labels.

    Args:
        ratings: (n_cases, n_readers) table of labels, ``None``/NaN for missing.
        consensus: one consensus label per case, ``None``/NaN where there is none (say, a tie not yet
            adjudicated); such cases are left out.
        reader_names: one name per column of ``ratings``.
        weights: kappa weights, as for ``cohen_kappa``.
        categories: the ordered label set; default: every label in ``ratings`` and ``consensus``, sorted.
        confidence: level of the intervals.

    Returns:
        ``{reader_name: ReaderAgreement}``. Both estimates have ``n`` = cases the reader labelled that have a
        consensus; a reader with none gets nan estimates with n = 0. Note that a reader's own label took part
        in a majority consensus, which inflates both figures (most with few readers).
    """
    table = as_label_matrix(ratings)
    names = check_reader_names(reader_names, table.shape[1])
    target = as_label_vector(consensus, "consensus")
    if len(target) != table.shape[0]:
        raise ValueError(f"consensus has {len(target)} labels for {table.shape[0]} cases")
    cats = ordered_categories(
        [*table.flat, *target], categories, "ratings and consensus", need_order=weights is not None
    )
    result: dict[str, ReaderAgreement] = {}
    for j, name in enumerate(names):
        pairs = [
            (x, c)
            for x, c in zip(table[:, j], target, strict=True)
            if not is_missing(x) and not is_missing(c)
        ]
        if not pairs:
            empty = Estimate(value=math.nan, ci_low=None, ci_high=None, n=0)
            result[name] = ReaderAgreement(proportion=empty, kappa=empty)
            continue
        n = len(pairs)
        hits = sum(1 for x, c in pairs if x == c)
        low, high = wilson_interval(hits, n, confidence)
        proportion = Estimate(value=hits / n, ci_low=low, ci_high=high, n=n)
        kappa = cohen_kappa(
            [x for x, _ in pairs],
            [c for _, c in pairs],
            weights=weights,
            categories=cats,
            confidence=confidence,
        )
        result[name] = ReaderAgreement(proportion=proportion, kappa=kappa)
    return result
