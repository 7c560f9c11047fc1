"""Active-learning ranking strategies for Okapi, as pure numpy functions (no Django, no torch).

Inputs are model outputs for the unlabelled pool -- ``probs`` (n, C), ``mc_probs`` (T, n, C), ``embeddings``
(n, d) -- and, for diversity methods, ``labelled_embeddings`` (m, d). Each selection returns a :class:`Ranking`:
pool indices best first, plus per-case scores. Use :func:`rank` with a name from :data:`STRATEGIES`; the
platform default is ``"hybrid"`` (:func:`select_hybrid`).
"""

from .badge import badge_embeddings, select_badge
from .diversity import select_cold_start, select_coreset, select_random
from .hybrid import select_hybrid
from .ranking import Ranking, order_with_jitter
from .rare import population_prior, rare_classes_from_prior, score_rare_class, select_rare_class
from .registry import DEFAULT_STRATEGY, REQUIRED_INPUTS, STRATEGIES, rank
from .uncertainty import (
    score_bald,
    score_entropy,
    score_least_confidence,
    score_margin,
    select_bald,
    select_uncertain,
)

__all__ = [
    "population_prior",
    "DEFAULT_STRATEGY",
    "REQUIRED_INPUTS",
    "STRATEGIES",
    "Ranking",
    "badge_embeddings",
    "order_with_jitter",
    "rank",
    "rare_classes_from_prior",
    "score_bald",
    "score_entropy",
    "score_least_confidence",
    "score_margin",
    "score_rare_class",
    "select_badge",
    "select_bald",
    "select_cold_start",
    "select_coreset",
    "select_hybrid",
    "select_random",
    "select_rare_class",
    "select_uncertain",
]
