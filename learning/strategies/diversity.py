"""Diversity and exploration: random, k-centre greedy (core-set) and the cold-start k-means selection.

- Core-set / k-centre greedy: Sener & Savarese, "Active Learning for Convolutional Neural Networks: A Core-Set
  Approach" (ICLR 2018); the greedy farthest-first traversal is Gonzalez (1985), a 2-approximation of k-centre.
- Cold start by clustering: pick typical (near a centroid) and diverse (one per cluster) cases before any label
  exists, as in Hacohen et al., "Active Learning on a Budget" (TypiClust, ICML 2022) and the k-means seeding
  used by Zhdanov, "Diverse mini-batch Active Learning" (2019).
"""

from __future__ import annotations

import numpy as np

from ._validation import RngLike, as_rng, check_budget, check_embeddings, check_labelled
from .ranking import Ranking

#: Largest number of float64 entries a temporary distance block may hold (~128 MB).
_BLOCK = 1 << 24


def sq_dists_to(X: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances from every row of ``X`` to the point ``x`` (exact, no cancellation)."""
    diff = X - x
    return np.einsum("ij,ij->i", diff, diff)


def min_sq_dists(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """For each row of ``X``, the squared distance to the nearest row of ``Y`` (``inf`` when ``Y`` is empty).

    Computed block-wise so that neither an (n, m) nor an (n, m, d) array is built for large pools.
    """
    out = np.full(X.shape[0], np.inf)
    if Y.shape[0] == 0 or X.shape[0] == 0:
        return out
    xx = np.einsum("ij,ij->i", X, X)
    step = max(1, _BLOCK // max(X.shape[0], 1))
    for start in range(0, Y.shape[0], step):
        Yb = Y[start : start + step]
        d2 = xx[:, None] + np.einsum("ij,ij->i", Yb, Yb)[None, :] - 2.0 * (X @ Yb.T)
        np.minimum(out, d2.min(axis=1), out=out)
    return np.maximum(out, 0.0)


def closest_to_mean(X: np.ndarray) -> int:
    """Index of the row nearest the mean: the most typical case when nothing is known yet."""
    return int(np.argmin(sq_dists_to(X, X.mean(axis=0))))


def greedy_cover(
    X: np.ndarray, budget: int, *, centres: np.ndarray | None = None, first: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """k-centre greedy (Gonzalez 1985; Sener & Savarese 2018): farthest-first traversal of the rows of ``X``.

    At each step pick the unselected row farthest from its nearest ``centres`` row (already-labelled cases)
    or previously picked row. When nothing is covered yet, the first pick is ``first`` (default: the row
    closest to the mean). Selected rows are masked, so the result never repeats an index, even with
    duplicated rows (once everything is covered, remaining rows follow in index order).
    Returns ``(order, gains)``: the picked row indices and each one's covering distance when it was picked
    (for a first pick with nothing covered: its distance to the mean).
    """
    n = X.shape[0]
    budget = min(budget, n)
    d2 = min_sq_dists(X, centres) if centres is not None else np.full(n, np.inf)
    selected = np.zeros(n, dtype=bool)
    order = np.empty(budget, dtype=np.intp)
    gains = np.empty(budget)
    for step in range(budget):
        if step == 0 and np.isinf(d2).all():
            idx = closest_to_mean(X) if first is None else int(first)
            gain = float(np.sqrt(sq_dists_to(X[idx : idx + 1], X.mean(axis=0))[0]))
        else:
            masked = np.where(selected, -np.inf, d2)
            idx = int(np.argmax(masked))
            gain = float(np.sqrt(masked[idx]))
        order[step], gains[step] = idx, gain
        selected[idx] = True
        np.minimum(d2, sq_dists_to(X, X[idx]), out=d2)
    return order, gains


def select_random(n: int, budget: int | None, rng: RngLike = None) -> Ranking:
    """Uniform random sampling without replacement: the baseline every strategy must beat (Settles 2009).

    Returns ``budget`` distinct indices of a pool of ``n`` cases in random order (all of them when ``budget``
    is ``None`` or exceeds ``n``); ``scores`` is ``None``.
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise ValueError(f"n must be a non-negative int (the pool size), got {n!r}")
    k = check_budget(budget, int(n))
    return Ranking(order=as_rng(rng).permutation(int(n))[:k], scores=None, strategy="random")


def select_coreset(
    embeddings: np.ndarray, labelled_embeddings: np.ndarray | None, budget: int | None
) -> Ranking:
    """Core-set selection by k-centre greedy (Sener & Savarese, ICLR 2018), Euclidean distance.

    Repeatedly picks the pool case farthest from its nearest labelled-or-already-picked case, so the picks
    cover the embedding space. Without labelled embeddings the first pick is the case closest to the mean.
    ``scores[i]`` is the covering distance of case ``i``: for picked cases the distance at the moment they were
    picked, for the others the distance to the nearest labelled-or-picked case at the end. Deterministic.
    Cost O(n * budget * d); ``budget=None`` orders the whole pool (quadratic in n).
    """
    X = check_embeddings(embeddings)
    labelled = check_labelled(labelled_embeddings, X.shape[1])
    k = check_budget(budget, X.shape[0])
    order, gains = greedy_cover(X, k, centres=labelled if labelled.shape[0] else None)
    covered = np.vstack([labelled, X[order]])
    scores = np.sqrt(min_sq_dists(X, covered)) if covered.shape[0] else np.zeros(X.shape[0])
    scores[order] = gains
    return Ranking(order=order, scores=scores, strategy="coreset")


def kmeans_pp_init(X: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding (Arthur & Vassilvitskii 2007): indices of ``k`` distinct rows, D^2-sampled.

    Falls back to a uniform draw among unchosen rows when every remaining row coincides with a chosen one.
    """
    n = X.shape[0]
    chosen = [int(rng.integers(n))]
    d2 = sq_dists_to(X, X[chosen[0]])
    mask = np.zeros(n, dtype=bool)
    mask[chosen[0]] = True
    for _ in range(1, k):
        weights = np.where(mask, 0.0, d2)
        total = weights.sum()
        idx = int(rng.choice(n, p=weights / total)) if total > 0 else int(rng.choice(np.flatnonzero(~mask)))
        chosen.append(idx)
        mask[idx] = True
        np.minimum(d2, sq_dists_to(X, X[idx]), out=d2)
    return np.asarray(chosen, dtype=np.intp)


def _assign(X: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid of each row and the squared distance to it, block-wise over rows."""
    n = X.shape[0]
    labels = np.empty(n, dtype=np.intp)
    best = np.empty(n)
    cc = np.einsum("ij,ij->i", centroids, centroids)
    step = max(1, _BLOCK // max(centroids.shape[0], 1))
    for start in range(0, n, step):
        Xb = X[start : start + step]
        d2 = np.einsum("ij,ij->i", Xb, Xb)[:, None] + cc[None, :] - 2.0 * (Xb @ centroids.T)
        labels[start : start + step] = d2.argmin(axis=1)
        best[start : start + step] = np.maximum(d2.min(axis=1), 0.0)
    return labels, best


def kmeans(
    X: np.ndarray,
    k: int,
    rng: np.random.Generator,
    *,
    n_init: int | None = None,
    max_iter: int = 50,
    tol: float = 1e-4,
) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means with k-means++ seeding, best of ``n_init`` runs by inertia: ``(centroids, labels)``.

    ``n_init`` defaults to 3 for small problems (n * k <= 1e6) and 1 otherwise (k-means++ seeding is already
    O(log k)-competitive). A run stops when the labels no longer change, or the inertia improves by less than
    ``tol`` (relative), or after ``max_iter`` iterations. An empty cluster is re-seeded with the row farthest
    from its centroid, so every cluster keeps a member.
    """
    n, d = X.shape
    if n_init is None:
        n_init = 3 if n * k <= 1_000_000 else 1
    best: tuple[float, np.ndarray, np.ndarray] | None = None
    for _ in range(n_init):
        centroids = X[kmeans_pp_init(X, k, rng)].copy()
        labels = np.full(n, -1, dtype=np.intp)
        previous = np.inf
        for _ in range(max_iter):
            new_labels, d2 = _assign(X, centroids)
            for c in np.setdiff1d(np.arange(k), new_labels):
                far = int(np.argmax(d2))
                new_labels[far], d2[far] = c, 0.0
            inertia = float(d2.sum())
            converged = np.array_equal(new_labels, labels) or previous - inertia <= tol * inertia
            labels, previous = new_labels, inertia
            counts = np.bincount(labels, minlength=k)
            sums = np.stack([np.bincount(labels, weights=X[:, j], minlength=k) for j in range(d)], axis=1)
            centroids = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], centroids)
            if converged:
                break
        labels, d2 = _assign(X, centroids)
        inertia = float(d2.sum())
        if best is None or inertia < best[0]:
            best = (inertia, centroids, labels)
    assert best is not None
    return best[1], best[2]


def select_cold_start(embeddings: np.ndarray, budget: int | None, rng: RngLike = None) -> Ranking:
    """Round 0, no labels yet: typical and diverse cases (TypiClust, Hacohen et al. 2022; Zhdanov 2019).

    Clusters the pool embeddings into ``budget`` clusters with k-means (k-means++ seeding, seeded by ``rng``),
    takes from each cluster the member nearest its centroid (typicality: no outliers, no corrupt scans), and
    orders the picks by cluster size, largest first, so the first labels cover the bulk of the data.
    ``scores[i]`` is the fraction of the pool in case ``i``'s cluster. If k-means leaves fewer distinct
    representatives than the budget (duplicated embeddings), the rest is filled by k-centre greedy.
    When the budget covers the whole pool, the whole pool is ordered by k-centre greedy from the mean.
    """
    X = check_embeddings(embeddings)
    n = X.shape[0]
    k = check_budget(budget, n)
    if k == 0:
        return Ranking(order=np.empty(0, dtype=np.intp), scores=np.zeros(n), strategy="cold_start")
    if k >= n:
        order, _ = greedy_cover(X, n)
        return Ranking(order=order, scores=np.full(n, 1.0 / n), strategy="cold_start")
    centroids, labels = kmeans(X, k, as_rng(rng))
    sizes = np.bincount(labels, minlength=k)
    d2 = np.einsum("ij,ij->i", X - centroids[labels], X - centroids[labels])
    reps, rep_sizes = [], []
    for c in np.flatnonzero(sizes):
        members = np.flatnonzero(labels == c)
        reps.append(int(members[np.argmin(d2[members])]))
        rep_sizes.append(int(sizes[c]))
    by_size = np.lexsort((np.asarray(reps), -np.asarray(rep_sizes)))  # size desc, then pool index
    order = np.asarray(reps, dtype=np.intp)[by_size]
    if order.size < k:
        rest = np.setdiff1d(np.arange(n), order)
        extra, _ = greedy_cover(X[rest], k - order.size, centres=X[order])
        order = np.concatenate([order, rest[extra]])
    return Ranking(order=order, scores=sizes[labels] / n, strategy="cold_start")
