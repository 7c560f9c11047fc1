"""BADGE: Batch Active learning by Diverse Gradient Embeddings (Ash et al., ICLR 2020).

Each pool case gets the gradient of the cross-entropy loss with respect to the last layer, taking the model's own
prediction as the label: ``g = (onehot(argmax p) - p) (outer) e`` for penultimate embedding ``e``. Its norm grows
with uncertainty (and with the embedding's magnitude) and its direction encodes what the case would teach, so
k-means++ seeding over ``g`` picks a batch that is both uncertain and diverse.

The (n, C * d) gradient matrix is never built when ``probs`` and ``embeddings`` are given: for outer products
``<a_i (x) e_i, a_j (x) e_j> = <a_i, a_j> <e_i, e_j>``, so squared distances factor into O(C + d) per pair.
"""

from __future__ import annotations

import numpy as np

from ._validation import RngLike, as_rng, check_budget, check_embeddings, check_probs
from .diversity import sq_dists_to
from .ranking import Ranking


def _badge_coefficients(p: np.ndarray) -> np.ndarray:
    """``onehot(argmax p) - p`` for each row (the last-layer gradient factor, up to sign)."""
    a = -p.copy()
    a[np.arange(p.shape[0]), p.argmax(axis=1)] += 1.0
    return a


def badge_embeddings(probs: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
    """Hypothetical gradient embeddings of BADGE (Ash et al. 2020): rows ``(onehot(argmax p) - p) (x) e``.

    ``probs`` (n, C), ``embeddings`` (n, d) -> (n, C * d), row ``i`` the flattened outer product. A confident
    case (p close to one-hot) has a near-zero gradient; an uncertain one a large gradient.
    """
    p = check_probs(probs)
    e = check_embeddings(embeddings, n=p.shape[0])
    a = _badge_coefficients(p)
    return (a[:, :, None] * e[:, None, :]).reshape(p.shape[0], -1)


def _kmeanspp_select(
    n: int, budget: int, norms2: np.ndarray, dist2_to, rng: np.random.Generator
) -> np.ndarray:
    """k-means++ seeding as in the BADGE reference code: first the largest-norm point, then D^2 sampling.

    ``dist2_to(j)`` returns squared distances from every point to point ``j``. Chosen points are masked; when
    every remaining point coincides with a chosen one (all D^2 = 0) the rest are taken by gradient norm.
    """
    order = np.empty(budget, dtype=np.intp)
    if budget == 0:
        return order
    chosen = np.zeros(n, dtype=bool)
    first = int(np.argmax(norms2))
    order[0], chosen[first] = first, True
    d2 = np.maximum(dist2_to(first), 0.0)
    for step in range(1, budget):
        w = np.where(chosen, 0.0, d2)
        total = w.sum()
        if total > 1e-12 * max(float(norms2.max()), 1e-300):
            idx = int(rng.choice(n, p=w / total))
        else:
            rest = np.flatnonzero(~chosen)
            idx = int(rest[np.argmax(norms2[rest])])
        order[step], chosen[idx] = idx, True
        np.minimum(d2, np.maximum(dist2_to(idx), 0.0), out=d2)
    return order


def select_badge(
    grad_embeddings: np.ndarray | None = None,
    budget: int | None = None,
    rng: RngLike = None,
    *,
    probs: np.ndarray | None = None,
    embeddings: np.ndarray | None = None,
) -> Ranking:
    """BADGE batch selection (Ash et al., ICLR 2020): k-means++ seeding over gradient embeddings.

    Pass either precomputed ``grad_embeddings`` (n, D) (e.g. from :func:`badge_embeddings`, or real
    last-layer gradients) or both ``probs`` (n, C) and ``embeddings`` (n, d), in which case the gradient
    embeddings are used implicitly without materialising them. The first pick is the largest gradient (the
    most uncertain-and-salient case), the next ones are D^2-sampled with ``rng``, so the batch mixes
    uncertainty (large gradients lie far from everything) with diversity (no two picks in the same place).
    ``scores[i]`` is the gradient norm of case ``i``. Returns distinct indices.
    """
    if grad_embeddings is not None and (probs is not None or embeddings is not None):
        raise ValueError("pass either grad_embeddings or (probs, embeddings), not both")
    gen = as_rng(rng)
    if grad_embeddings is not None:
        G = check_embeddings(grad_embeddings, "grad_embeddings")
        norms2 = np.einsum("ij,ij->i", G, G)

        def dist2_to(j: int) -> np.ndarray:
            return sq_dists_to(G, G[j])
    else:
        missing = [name for name, v in (("probs", probs), ("embeddings", embeddings)) if v is None]
        if missing:
            raise ValueError(f"BADGE needs grad_embeddings or both probs and embeddings; missing: {missing}")
        p = check_probs(probs)
        e = check_embeddings(embeddings, n=p.shape[0])
        a = _badge_coefficients(p)
        a2, e2 = np.einsum("ij,ij->i", a, a), np.einsum("ij,ij->i", e, e)
        norms2 = a2 * e2

        def dist2_to(j: int) -> np.ndarray:
            return norms2 + norms2[j] - 2.0 * (a @ a[j]) * (e @ e[j])

    n = norms2.shape[0]
    k = check_budget(budget, n)
    order = _kmeanspp_select(n, k, norms2, dist2_to, gen)
    return Ranking(order=order, scores=np.sqrt(norms2), strategy="badge")
