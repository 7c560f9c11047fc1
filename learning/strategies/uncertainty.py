"""Uncertainty sampling scores: higher means more informative to label.

All take the model's class probabilities for the unlabelled pool (the mean over MC-dropout passes where the
model uses them) and return one score per case.

- Least confidence, margin and entropy: Settles, "Active Learning Literature Survey" (2009), section 3.1.
- BALD: Houlsby et al., "Bayesian Active Learning for Classification and Preference Learning" (2011), with the
  MC-dropout estimate of Gal, Islam & Ghahramani, "Deep Bayesian Active Learning with Image Data" (ICML 2017).
"""

from __future__ import annotations

import numpy as np

from ._validation import RngLike, check_budget, check_mc_probs, check_probs
from .ranking import Ranking, rank_by_score


def _entropy(p: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) along the last axis, with 0 log 0 = 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p), 0.0)
    return -terms.sum(axis=-1)


def score_least_confidence(probs: np.ndarray) -> np.ndarray:
    """Least confidence (Settles 2009): ``1 - max_c p(c|x)``; in [0, 1 - 1/C], highest for a flat row."""
    p = check_probs(probs)
    return 1.0 - p.max(axis=1)


def score_margin(probs: np.ndarray) -> np.ndarray:
    """Margin sampling (Scheffer et al. 2001; Settles 2009): ``1 - (p_top1 - p_top2)``.

    The smallest gap between the two most likely classes is the most informative, so the score is one minus
    the gap: in [0, 1], 1 when the top two classes tie.
    """
    p = check_probs(probs)
    top2 = np.sort(p, axis=1)[:, -2:]
    return 1.0 - (top2[:, 1] - top2[:, 0])


def score_entropy(probs: np.ndarray) -> np.ndarray:
    """Predictive entropy (Shannon 1948; Settles 2009): ``-sum_c p log p`` in nats, max ``log C``."""
    return _entropy(check_probs(probs))


def score_bald(mc_probs: np.ndarray) -> np.ndarray:
    """BALD (Houlsby et al. 2011; Gal et al. 2017): mutual information between prediction and model weights.

    ``I = H[mean_t p_t] - mean_t H[p_t]`` over T stochastic (MC-dropout) passes ``mc_probs`` of shape (T, n, C).
    It is zero when all passes agree (whatever their own entropy) and largest when passes are individually
    confident but disagree with each other: epistemic uncertainty that labelling can reduce. Clipped at 0
    against round-off.
    """
    p = check_mc_probs(mc_probs)
    return np.maximum(_entropy(p.mean(axis=0)) - _entropy(p).mean(axis=0), 0.0)


_SCORERS = {
    "least_confidence": score_least_confidence,
    "margin": score_margin,
    "entropy": score_entropy,
}


def select_uncertain(
    probs: np.ndarray, budget: int | None, *, method: str = "entropy", rng: RngLike = None
) -> Ranking:
    """The ``budget`` highest-scoring cases under ``method`` (``least_confidence``, ``margin``, ``entropy``).

    Pure top-k uncertainty sampling (Settles 2009). Ties keep pool order. ``rng`` is accepted for a uniform
    signature and unused: the result is deterministic.
    """
    if method not in _SCORERS:
        raise ValueError(f"unknown uncertainty method {method!r}; valid: {sorted(_SCORERS)}")
    scores = _SCORERS[method](probs)
    k = check_budget(budget, scores.shape[0])
    return Ranking(order=rank_by_score(scores, k), scores=scores, strategy=method)


def select_bald(mc_probs: np.ndarray, budget: int | None, rng: RngLike = None) -> Ranking:
    """The ``budget`` cases with the highest BALD mutual information (Houlsby et al. 2011; Gal et al. 2017)."""
    scores = score_bald(mc_probs)
    k = check_budget(budget, scores.shape[0])
    return Ranking(order=rank_by_score(scores, k), scores=scores, strategy="bald")
