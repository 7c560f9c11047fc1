"""Input checks shared by the strategies: shapes, probabilities, budgets and random generators.

Every public strategy calls these first, so that a malformed model output fails loudly with a message naming
the argument instead of producing a silently wrong ranking.
"""

from __future__ import annotations

import numbers

import numpy as np

#: Rows of a probability matrix must sum to 1 within this tolerance (float32 softmax outputs drift by ~1e-6).
PROB_ATOL = 1e-3

RngLike = np.random.Generator | int | None


def as_rng(rng: RngLike) -> np.random.Generator:
    """A ``numpy.random.Generator`` from a generator, a seed, or ``None`` (fresh entropy)."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or (isinstance(rng, numbers.Integral) and not isinstance(rng, bool)):
        return np.random.default_rng(rng)
    raise TypeError(f"rng must be a numpy.random.Generator, an int seed or None, not {type(rng).__name__}")


def _check_prob_rows(arr: np.ndarray, name: str) -> np.ndarray:
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    if arr.size and arr.min() < -PROB_ATOL:
        raise ValueError(f"{name} contains negative probabilities (min {arr.min():.4g})")
    if arr.size and arr.max() > 1 + PROB_ATOL:
        raise ValueError(f"{name} contains probabilities above 1 (max {arr.max():.4g})")
    sums = arr.sum(axis=-1)
    bad = np.argwhere(np.abs(sums - 1.0) > PROB_ATOL)
    if bad.size:
        where = tuple(int(i) for i in bad[0])
        raise ValueError(
            f"{name} rows must sum to 1 (within {PROB_ATOL}); row {where if len(where) > 1 else where[0]} "
            f"sums to {sums[tuple(bad[0])]:.6g} (pass probabilities, not logits)"
        )
    arr = np.clip(arr, 0.0, 1.0)
    return arr / arr.sum(axis=-1, keepdims=True)


def check_probs(probs: object, name: str = "probs") -> np.ndarray:
    """``probs`` as a float64 (n, C) array with C >= 2 whose rows are probability vectors."""
    arr = np.asarray(probs, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n, C), got shape {arr.shape}")
    if arr.shape[1] < 2:
        raise ValueError(f"{name} needs at least 2 classes, got shape {arr.shape}")
    return _check_prob_rows(arr, name)


def check_mc_probs(mc_probs: object, name: str = "mc_probs") -> np.ndarray:
    """``mc_probs`` as a float64 (T, n, C) array of T stochastic passes, T >= 1 and C >= 2."""
    arr = np.asarray(mc_probs, dtype=np.float64)
    if arr.ndim != 3:
        raise ValueError(f"{name} must be 3-D (T passes, n, C), got shape {arr.shape}")
    if arr.shape[0] < 1:
        raise ValueError(f"{name} needs at least one pass, got shape {arr.shape}")
    if arr.shape[2] < 2:
        raise ValueError(f"{name} needs at least 2 classes, got shape {arr.shape}")
    return _check_prob_rows(arr, name)


def check_embeddings(
    embeddings: object, name: str = "embeddings", *, n: int | None = None, d: int | None = None
) -> np.ndarray:
    """``embeddings`` as a finite float64 (n, d) array; ``n``/``d`` when given must match."""
    arr = np.asarray(embeddings, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n, d), got shape {arr.shape}")
    if arr.shape[1] < 1:
        raise ValueError(f"{name} needs at least one feature, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} rows but the pool has {n} cases")
    if d is not None and arr.shape[1] != d:
        raise ValueError(f"{name} has {arr.shape[1]} features but the pool embeddings have {d}")
    return arr


def check_labelled(labelled_embeddings: object, d: int) -> np.ndarray:
    """Embeddings of already-labelled cases as (m, d); ``None`` or an empty array means m = 0."""
    if labelled_embeddings is None:
        return np.empty((0, d), dtype=np.float64)
    arr = np.asarray(labelled_embeddings, dtype=np.float64)
    if arr.size == 0:
        return np.empty((0, d), dtype=np.float64)
    return check_embeddings(arr, "labelled_embeddings", d=d)


def check_budget(budget: object, n: int) -> int:
    """The number of cases to select: a non-negative int, capped at the pool size; ``None`` means all."""
    if budget is None:
        return n
    if isinstance(budget, bool) or not isinstance(budget, numbers.Integral):
        raise TypeError(f"budget must be an int or None, not {type(budget).__name__}")
    if budget < 0:
        raise ValueError(f"budget must be >= 0, got {budget}")
    return min(int(budget), n)


def check_fraction(value: object, name: str) -> float:
    """A fraction in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number in [0, 1], not {type(value).__name__}")
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return float(value)


def check_class_prior(class_prior: object, n_classes: int) -> np.ndarray:
    """Class frequencies (probabilities or counts) as a smoothed probability vector of length ``n_classes``.

    Counts are accepted so that the labelled-set histogram can be passed directly; a class with a zero count is
    floored at 1e-3 (then renormalised), so it reads as very rare instead of producing an infinite weight.
    """
    arr = np.asarray(class_prior, dtype=np.float64)
    if arr.ndim != 1 or arr.shape[0] != n_classes:
        raise ValueError(f"class_prior must have one entry per class ({n_classes}), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or arr.min() < 0:
        raise ValueError("class_prior must be finite and non-negative")
    if arr.sum() <= 0:
        raise ValueError("class_prior must not be all zeros")
    arr = np.maximum(arr / arr.sum(), 1e-3)
    return arr / arr.sum()


def check_rare_classes(rare_classes: object, n_classes: int) -> np.ndarray:
    """Class indices as a sorted, de-duplicated int array, each in ``[0, n_classes)``, at least one."""
    arr = np.atleast_1d(np.asarray(rare_classes))
    if arr.size == 0:
        raise ValueError("rare_classes must name at least one class")
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"rare_classes must be class indices (ints), got {rare_classes!r}")
    if arr.min() < 0 or arr.max() >= n_classes:
        raise ValueError(f"rare_classes must be in [0, {n_classes}), got {arr.tolist()}")
    return np.unique(arr).astype(np.intp)
