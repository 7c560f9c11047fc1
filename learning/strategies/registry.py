"""One entry point for every strategy: ``rank(name, ...)`` with a uniform keyword signature.

The platform stores a strategy *name* per project and calls :func:`rank` with whatever model outputs it has;
strategies take what they need and a missing input is a clear ``ValueError`` rather than an ``AttributeError``
deep inside numpy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from ._validation import RngLike, as_rng, check_mc_probs
from .badge import select_badge
from .diversity import select_cold_start, select_coreset, select_random
from .hybrid import select_hybrid
from .ranking import Ranking
from .rare import select_rare_class
from .uncertainty import select_bald, select_uncertain

#: The strategy new projects use (see :func:`select_hybrid`).
DEFAULT_STRATEGY = "hybrid"


class Strategy(Protocol):
    def __call__(
        self,
        *,
        probs: np.ndarray | None,
        mc_probs: np.ndarray | None,
        embeddings: np.ndarray | None,
        labelled_embeddings: np.ndarray | None,
        budget: int | None,
        rng: np.random.Generator,
        class_prior: np.ndarray | None,
    ) -> Ranking: ...


def _pool_size(**inputs: np.ndarray | None) -> int:
    for name in ("probs", "embeddings"):
        if inputs.get(name) is not None:
            return int(np.shape(inputs[name])[0])
    if inputs.get("mc_probs") is not None:
        return int(np.shape(inputs["mc_probs"])[1])
    raise ValueError("strategy 'random' needs the pool size: pass probs, mc_probs or embeddings")


def _random(*, budget, rng, **inputs) -> Ranking:
    return select_random(_pool_size(**inputs), budget, rng)


def _uncertain(method: str) -> Strategy:
    def run(*, probs, budget, rng, **_) -> Ranking:
        return select_uncertain(probs, budget, method=method, rng=rng)

    run.__name__ = f"_{method}"
    return run


def _bald(*, mc_probs, budget, rng, **_) -> Ranking:
    return select_bald(mc_probs, budget, rng)


def _coreset(*, embeddings, labelled_embeddings, budget, **_) -> Ranking:
    return select_coreset(embeddings, labelled_embeddings, budget)


def _badge(*, probs, embeddings, budget, rng, **_) -> Ranking:
    return select_badge(budget=budget, rng=rng, probs=probs, embeddings=embeddings)


def _rare_class(*, probs, embeddings, labelled_embeddings, budget, rng, class_prior, **_) -> Ranking:
    return select_rare_class(
        probs, budget, class_prior, embeddings=embeddings, labelled_embeddings=labelled_embeddings, rng=rng
    )


def _cold_start(*, embeddings, budget, rng, **_) -> Ranking:
    return select_cold_start(embeddings, budget, rng)


def _hybrid(*, probs, embeddings, labelled_embeddings, budget, rng, class_prior, **_) -> Ranking:
    return select_hybrid(probs, embeddings, labelled_embeddings, budget, rng, class_prior)


#: Name -> strategy, all called with the same keywords (see :class:`Strategy`); use :func:`rank`.
STRATEGIES: dict[str, Strategy] = {
    "random": _random,
    "least_confidence": _uncertain("least_confidence"),
    "margin": _uncertain("margin"),
    "entropy": _uncertain("entropy"),
    "bald": _bald,
    "coreset": _coreset,
    "badge": _badge,
    "rare_class": _rare_class,
    "cold_start": _cold_start,
    "hybrid": _hybrid,
}

#: Inputs each strategy cannot do without. ``probs`` may be supplied as ``mc_probs`` (their mean is used).
REQUIRED_INPUTS: dict[str, tuple[str, ...]] = {
    "random": (),
    "least_confidence": ("probs",),
    "margin": ("probs",),
    "entropy": ("probs",),
    "bald": ("mc_probs",),
    "coreset": ("embeddings",),
    "badge": ("probs", "embeddings"),
    "rare_class": ("probs",),
    "cold_start": ("embeddings",),
    "hybrid": ("probs", "embeddings"),
}


def rank(
    name: str,
    *,
    probs: np.ndarray | None = None,
    mc_probs: np.ndarray | None = None,
    embeddings: np.ndarray | None = None,
    labelled_embeddings: np.ndarray | None = None,
    budget: int | None,
    rng: RngLike = None,
    class_prior: np.ndarray | None = None,
) -> Ranking:
    """Run the strategy ``name`` on the unlabelled pool and return its :class:`Ranking`.

    ``probs`` (n, C) mean class probabilities; ``mc_probs`` (T, n, C) MC-dropout passes (Gal et al. 2017) --
    when only these are given, their mean stands in for ``probs``; ``embeddings`` (n, d) pool features;
    ``labelled_embeddings`` (m, d) features of already-labelled cases; ``budget`` how many cases to rank
    (``None``: the whole pool; more than the pool: all of it); ``rng`` a generator or seed for the stochastic
    strategies; ``class_prior`` class frequencies or counts for the rare-class-aware strategies.

    Raises ``ValueError`` for an unknown name (listing the valid ones), a missing required input (naming it),
    or inputs that disagree on the pool size.
    """
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; valid strategies: {', '.join(sorted(STRATEGIES))}")
    if probs is None and mc_probs is not None and "probs" in REQUIRED_INPUTS[name]:
        probs = check_mc_probs(mc_probs).mean(axis=0)
    given = {"probs": probs, "mc_probs": mc_probs, "embeddings": embeddings}
    missing = [key for key in REQUIRED_INPUTS[name] if given[key] is None]
    if missing:
        hint = " (mc_probs can stand in for probs)" if "probs" in missing else ""
        raise ValueError(f"strategy {name!r} is missing required input: {', '.join(missing)}{hint}")
    sizes = {}
    for key, value in given.items():
        axis = 1 if key == "mc_probs" else 0
        if value is not None and np.ndim(value) > axis:
            sizes[key] = int(np.shape(value)[axis])
    if len(set(sizes.values())) > 1:
        raise ValueError(f"inputs disagree on the pool size: {sizes}")
    fn: Callable[..., Ranking] = STRATEGIES[name]
    return fn(
        probs=probs,
        mc_probs=mc_probs,
        embeddings=embeddings,
        labelled_embeddings=labelled_embeddings,
        budget=budget,
        rng=as_rng(rng),
        class_prior=class_prior,
    )
