"""Rare-class-aware selection: get the cases most likely to belong to rare classes in front of readers early.

Rare diseases are the point of the platform, and pure uncertainty sampling under heavy class imbalance mostly
re-labels the majority class near a poorly placed boundary. Following the imbalance-aware active-learning
literature (Ertekin et al., "Learning on the Border", CIKM 2007; Aggarwal et al., "Active Learning for Imbalanced
Datasets", WACV 2020; Kothawade et al., "SIMILAR", NeurIPS 2021 -- rare-class targeting), the score is each case's
probability of a rare class weighted by the inverse class prior (a likelihood ratio against the base rate),
mixed with a little predictive entropy. Ranking by it only needs the model to be better than chance at *ordering*
cases, not calibrated, so even a weak model surfaces rare cases far above their base rate. Near-duplicates among
the top candidates are then pushed back by a locally radius-capped k-centre pass over the embeddings (Sener &
Savarese 2018), so one rare-looking series does not fill the whole batch.
"""

from __future__ import annotations

import math

import numpy as np

from ._validation import (
    RngLike,
    check_budget,
    check_class_prior,
    check_embeddings,
    check_fraction,
    check_labelled,
    check_probs,
    check_rare_classes,
)
from .diversity import min_sq_dists
from .ranking import Ranking, rank_by_score
from .uncertainty import _entropy

#: A class is rare when its prior is below min(RARE_PRIOR_THRESHOLD, 0.5 / C).
RARE_PRIOR_THRESHOLD = 0.2
#: Near-duplicate test: closer to a chosen case than DUPLICATE_FACTOR x the distance to the
#: DUPLICATE_NEIGHBOURS-th nearest candidate (so groups of up to that many images of one series are caught).
DUPLICATE_NEIGHBOURS = 5
DUPLICATE_FACTOR = 0.5
#: Only this many leading positions are de-duplicated (the candidate distance matrix is quadratic).
DEDUP_HEAD = 1000


def population_prior(labelled_counts, pool_probs: np.ndarray) -> np.ndarray:
    """An estimate of the whole population's class ratio: labelled cases count as their labels, unlabelled
    ones as the model's predicted probabilities.

    The labelled histogram alone is biased by the strategy's own picks: a strategy that hunts a rare class
    soon labels so many of it that the class no longer looks rare, and stops hunting. This estimate hardly moves
    as cases get labelled, but it leans on the model: a class-weighted model over-predicts the rare class, and
    on PneumoniaMNIST (bench/active_learning.py --prior population) that made it look common. The platform
    uses the labels no strategy chose instead (learning.services); this stays for comparison.
    """
    counts = np.asarray(labelled_counts, dtype=np.float64)
    p = check_probs(pool_probs)
    if counts.ndim != 1 or counts.shape[0] != p.shape[1] or (counts < 0).any():
        raise ValueError(f"labelled_counts must be {p.shape[1]} non-negative counts, got {counts.tolist()}")
    total = counts + p.sum(axis=0)
    return total / total.sum()


def rare_classes_from_prior(class_prior: np.ndarray, threshold: float = RARE_PRIOR_THRESHOLD) -> np.ndarray:
    """Indices of the classes whose prior is below ``min(threshold, 0.5 / C)``: rare in absolute terms and at
    most half of an even share, so ten balanced classes at 10% each are not all "rare". May be empty.

    ``class_prior`` may be probabilities or counts (a zero count makes that class rare).
    """
    prior = np.asarray(class_prior, dtype=np.float64)
    if prior.ndim != 1:
        raise ValueError(f"class_prior must be 1-D (one entry per class), got shape {prior.shape}")
    prior = check_class_prior(prior, prior.shape[0])
    return np.flatnonzero(prior < min(float(threshold), 0.5 / prior.shape[0])).astype(np.intp)


def score_rare_class(
    probs: np.ndarray,
    class_prior: np.ndarray | None = None,
    rare_classes: np.ndarray | None = None,
    *,
    uncertainty_weight: float = 0.25,
) -> np.ndarray:
    """Per-case rare-class score in [0, 1]: ``(1 - w) * R / max(R) + w * H / log C``.

    ``R_i = sum_{c in rare} p_ic / prior_c`` (probability of a rare class relative to its base rate: rarer
    classes count more) and ``H`` the predictive entropy, with ``w = uncertainty_weight``. Rare classes are
    ``rare_classes`` if given, else derived from ``class_prior`` (:func:`rare_classes_from_prior`), else the
    single rarest class. Without ``class_prior`` the prior is estimated as the mean predicted probability.
    """
    p = check_probs(probs)
    C = p.shape[1]
    w = check_fraction(uncertainty_weight, "uncertainty_weight")
    prior = check_class_prior(p.mean(axis=0) if class_prior is None else class_prior, C)
    if rare_classes is not None:
        rare = check_rare_classes(rare_classes, C)
    else:
        rare = rare_classes_from_prior(prior)
        if rare.size == 0:
            rare = np.array([int(np.argmin(prior))], dtype=np.intp)
    r = (p[:, rare] / prior[rare]).sum(axis=1)
    r_max = r.max() if r.size else 0.0
    r_norm = r / r_max if r_max > 0 else np.zeros_like(r)
    return (1.0 - w) * r_norm + w * _entropy(p) / math.log(C)


def _pairwise_dists(X: np.ndarray) -> np.ndarray:
    """Euclidean distance matrix of the rows of ``X`` (small: used on the candidate set only)."""
    xx = np.einsum("ij,ij->i", X, X)
    return np.sqrt(np.maximum(xx[:, None] + xx[None, :] - 2.0 * (X @ X.T), 0.0))


def deduplicate(
    X: np.ndarray,
    weights: np.ndarray,
    budget: int,
    *,
    centres: np.ndarray | None = None,
    neighbours: int = DUPLICATE_NEIGHBOURS,
    factor: float = DUPLICATE_FACTOR,
) -> tuple[np.ndarray, int]:
    """Greedy weighted selection that pushes near-duplicates of already chosen (or labelled) rows to the back.

    Each step picks the unselected row maximising ``w_i * min(1, dist_i / (factor * s_i))``, where
    ``dist_i`` is the distance to the nearest chosen-or-``centres`` row and ``s_i`` the row's local spacing:
    its distance to its ``neighbours``-th nearest row of ``X``. This is k-centre greedy (Sener & Savarese
    2018) capped at a local radius: rows farther than the radius go in pure weight order, and only rows much
    closer to a chosen one than to their ordinary neighbours -- several images of one series or patient --
    lose their place. A local (not global) radius matters: the cases of one rare class often form a tight
    cluster, and a global radius would wrongly treat them all as duplicates of the first. Ties (e.g. exact
    duplicates, gain 0) go by weight. Returns ``budget`` distinct row indices and how many of them had to be
    near-duplicates (penalised) because nothing else was left.
    """
    n = X.shape[0]
    budget = min(budget, n)
    if budget == 0:
        return np.empty(0, dtype=np.intp), 0
    D = _pairwise_dists(X)
    spacing = np.sort(D, axis=1)[:, min(neighbours, n - 1)] * factor
    dist = (
        np.sqrt(min_sq_dists(X, centres)) if centres is not None and centres.shape[0] else np.full(n, np.inf)
    )
    w = np.asarray(weights, dtype=np.float64)
    selected = np.zeros(n, dtype=bool)
    order = np.empty(budget, dtype=np.intp)
    penalised = 0
    for step in range(budget):
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.minimum(np.where(spacing > 0, dist / spacing, np.where(dist > 0, np.inf, 0.0)), 1.0)
        gain = w * (ratio + 1e-9)
        gain[selected] = -np.inf
        idx = int(np.argmax(gain))
        order[step], selected[idx] = idx, True
        penalised += bool(ratio[idx] < 1.0)
        np.minimum(dist, D[idx], out=dist)
    return order, penalised


def select_rare_class(
    probs: np.ndarray,
    budget: int | None,
    class_prior: np.ndarray | None = None,
    rare_classes: np.ndarray | None = None,
    *,
    embeddings: np.ndarray | None = None,
    labelled_embeddings: np.ndarray | None = None,
    uncertainty_weight: float = 0.25,
    candidate_factor: float = 3.0,
    rng: RngLike = None,
) -> Ranking:
    """Rare-class-first selection (inverse-prior-weighted rare probability + entropy, then de-duplication).

    1. Score every case with :func:`score_rare_class` (rare classes from ``rare_classes``, else from
       ``class_prior``, else the rarest by mean prediction).
    2. Keep the ``candidate_factor * budget`` best-scoring candidates.
    3. If ``embeddings`` are given, order ``budget`` of them with :func:`deduplicate`: score order, except
       that near-duplicates of a case already picked or labelled (``labelled_embeddings``) drop back, so one
       rare-looking series cannot fill the batch. Without embeddings the top ``budget`` by score are taken.
       If near-duplicates were all that was left, the candidate set is doubled (up to three times) and the
       step repeated. Only the first ``DEDUP_HEAD`` positions are de-duplicated; a longer ranking continues in
       score order.

    ``order`` is best first (rare-looking cases at the front); ``scores`` is the step-1 score of every case.
    Deterministic: ``rng`` is accepted for a uniform signature.
    """
    scores = score_rare_class(probs, class_prior, rare_classes, uncertainty_weight=uncertainty_weight)
    n = scores.shape[0]
    k = check_budget(budget, n)
    if not candidate_factor >= 1.0:
        raise ValueError(f"candidate_factor must be >= 1, got {candidate_factor}")
    if embeddings is None:
        if labelled_embeddings is not None:
            raise ValueError("labelled_embeddings given without the pool's embeddings")
        return Ranking(order=rank_by_score(scores, k), scores=scores, strategy="rare_class")
    X = check_embeddings(embeddings, n=n)
    labelled = check_labelled(labelled_embeddings, X.shape[1])
    head = min(k, DEDUP_HEAD)
    size = max(head, math.ceil(candidate_factor * head))
    for attempt in range(4):  # near-duplicates had to fill the batch: widen the candidate set and retry
        cand = rank_by_score(scores, min(n, size))
        picked, penalised = deduplicate(X[cand], scores[cand], head, centres=labelled)
        if not penalised or cand.size >= n or attempt == 3:
            break
        size *= 2
    order = cand[picked]
    if k > head:
        rest = np.ones(n, dtype=bool)
        rest[order] = False
        by_score = rank_by_score(scores, n)
        order = np.concatenate([order, by_score[rest[by_score]][: k - head]])
    return Ranking(order=order, scores=scores, strategy="rare_class")
