"""The result type shared by every strategy, and helpers that turn scores into an order readers pull from."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._validation import RngLike, as_rng


def _frozen(arr: np.ndarray) -> np.ndarray:
    out = np.array(arr, copy=True)
    out.setflags(write=False)
    return out


@dataclass(frozen=True, eq=False)
class Ranking:
    """What a strategy hands back: the pool indices to show readers, best first.

    ``order``   int array of pool indices (distinct), of length ``budget`` (or the whole pool when no budget).
    ``scores``  float array aligned with the pool (``scores[i]`` belongs to pool case ``i``), or ``None`` for
                strategies without a per-case score (random). For greedy selections (k-centre, BADGE) the score
                is documented per strategy and need not be monotone along ``order``.
    ``strategy`` the registry name of the strategy that produced it.
    ``sources`` optional, aligned with ``order``: which part of a composite strategy picked each case
                (e.g. ``"rare"``, ``"uncertainty"``, ``"explore"`` for the hybrid), for audit and display.

    The arrays are copied and made read-only, so a ranking cannot be changed after it has been handed out.
    """

    order: np.ndarray
    scores: np.ndarray | None
    strategy: str
    sources: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        order = np.asarray(self.order)
        if order.ndim != 1:
            raise ValueError(f"order must be 1-D, got shape {order.shape}")
        if order.size and not np.issubdtype(order.dtype, np.integer):
            raise ValueError(f"order must hold integer pool indices, got dtype {order.dtype}")
        order = order.astype(np.intp)
        if np.unique(order).size != order.size:
            raise ValueError("order must not repeat a pool index")
        object.__setattr__(self, "order", _frozen(order))
        if self.scores is not None:
            scores = np.asarray(self.scores, dtype=np.float64)
            if scores.ndim != 1:
                raise ValueError(f"scores must be 1-D (aligned with the pool), got shape {scores.shape}")
            if order.size and order.max() >= scores.shape[0]:
                raise ValueError("order refers to pool indices beyond the scores")
            object.__setattr__(self, "scores", _frozen(scores))
        if self.sources is not None:
            sources = tuple(str(s) for s in self.sources)
            if len(sources) != order.size:
                raise ValueError("sources must have one entry per position of order")
            object.__setattr__(self, "sources", sources)

    def __len__(self) -> int:
        return int(self.order.size)


def rank_by_score(scores: np.ndarray, budget: int) -> np.ndarray:
    """Indices of the ``budget`` highest scores, highest first; ties keep pool order (lower index first)."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")[:budget].astype(np.intp)


def order_with_jitter(order: np.ndarray, top_k: int, rng: RngLike = None) -> np.ndarray:
    """Shuffle only the head of a ranking, so concurrent readers do not all pull the same case.

    When several readers ask for work at once, handing each the exact top case makes them collide (or forces a
    lock); randomising among the top few keeps the queue near-optimal while spreading readers. Deliberately
    never shuffles the whole pool: entries beyond ``top_k`` keep their place, so the strategy's priorities hold.

    Returns a new array: a random permutation of ``order[:top_k]`` followed by ``order[top_k:]`` unchanged.
    ``top_k`` larger than the ranking shuffles the whole (short) ranking; ``top_k`` of 0 or 1 returns a copy.
    """
    arr = np.asarray(order)
    if arr.ndim != 1:
        raise ValueError(f"order must be 1-D, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"order must hold integer pool indices, got dtype {arr.dtype}")
    if isinstance(top_k, bool) or not isinstance(top_k, int | np.integer):
        raise TypeError(f"top_k must be an int, not {type(top_k).__name__}")
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0, got {top_k}")
    out = arr.copy()
    k = min(int(top_k), out.size)
    if k > 1:
        out[:k] = out[:k][as_rng(rng).permutation(k)]
    return out
