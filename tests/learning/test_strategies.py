"""Active-learning strategies (learning.strategies): behaviour on small hand-made pools, and input validation."""

import dataclasses
import math

import numpy as np
import pytest

from learning.strategies import (
    DEFAULT_STRATEGY,
    STRATEGIES,
    Ranking,
    badge_embeddings,
    order_with_jitter,
    rank,
    rare_classes_from_prior,
    score_bald,
    score_entropy,
    score_least_confidence,
    score_margin,
    score_rare_class,
    select_badge,
    select_cold_start,
    select_coreset,
    select_hybrid,
    select_random,
    select_rare_class,
)

# ---------------------------------------------------------------------------------------------------- fixtures


def imbalanced_pool(
    seed: int,
    *,
    n: int = 2000,
    rare: int = 100,
    separation: float = 1.2,
    d: int = 16,
    rare_layout: str = "spread",
):
    """Binary pool with ``rare``/``n`` positives and a weak model: logit = -2.5 + separation * y + N(0, 1).

    ``rare_layout``: ``"spread"`` (embeddings unrelated to the class) or ``"tight"`` (all rare cases in one
    tight embedding cluster, as a real rare class often is).
    """
    rng = np.random.default_rng(seed)
    y = np.zeros(n, dtype=int)
    y[rng.choice(n, rare, replace=False)] = 1
    p_rare = 1.0 / (1.0 + np.exp(-(-2.5 + separation * y + rng.normal(size=n))))
    X = rng.normal(size=(n, d))
    if rare_layout == "tight":
        X[y == 1] = 5.0 + 0.05 * rng.normal(size=(rare, d))
    return y, np.column_stack([1.0 - p_rare, p_rare]), X


def auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC by the rank-sum formula (no ties in continuous scores)."""
    ranks = np.empty(len(score))
    ranks[np.argsort(score)] = np.arange(1, len(score) + 1)
    pos = y == 1
    return float((ranks[pos].sum() - pos.sum() * (pos.sum() + 1) / 2) / (pos.sum() * (~pos).sum()))


def blobs(sizes, *, d: int = 2, spread: float = 0.3, gap: float = 20.0, seed: int = 0):
    """Well-separated Gaussian blobs on a line; returns (X, blob id per row, blob centres)."""
    rng = np.random.default_rng(seed)
    centres = np.array([[gap * i] + [0.0] * (d - 1) for i in range(len(sizes))])
    X = np.vstack([c + spread * rng.normal(size=(s, d)) for c, s in zip(centres, sizes, strict=True)])
    return X, np.repeat(np.arange(len(sizes)), sizes), centres


# ---------------------------------------------------------------------------------------------------- uncertainty


def test_entropy_ranks_uniform_rows_first():
    probs = np.array([[0.9, 0.05, 0.05], [1 / 3, 1 / 3, 1 / 3], [0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    scores = score_entropy(probs)
    assert scores[1] == pytest.approx(math.log(3))
    assert scores[3] == 0.0  # 0 log 0 = 0, no NaN
    assert list(rank("entropy", probs=probs, budget=None).order) == [1, 2, 0, 3]


def test_least_confidence_is_one_minus_max():
    probs = np.array([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25]])
    assert score_least_confidence(probs) == pytest.approx([0.3, 0.6])


def test_margin_picks_the_smallest_gap_where_entropy_would_not():
    probs = np.array([[0.6, 0.2, 0.2], [0.45, 0.44, 0.11], [0.4, 0.3, 0.3]])
    assert score_margin(probs) == pytest.approx([0.6, 0.99, 0.9])
    assert rank("margin", probs=probs, budget=1).order[0] == 1
    assert rank("entropy", probs=probs, budget=1).order[0] == 2  # the flatter row, not the closest call


def test_bald_is_zero_when_passes_agree_and_high_when_they_disagree_confidently():
    agree_uncertain = [[0.5, 0.5]] * 4  # every pass unsure the same way: aleatoric, BALD 0
    agree_confident = [[0.99, 0.01]] * 4
    disagree = [[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]  # each pass sure, passes contradict
    mild = [[0.7, 0.3], [0.3, 0.7], [0.7, 0.3], [0.3, 0.7]]
    mc = np.stack([agree_uncertain, agree_confident, disagree, mild], axis=1)  # (T=4, n=4, C=2)
    scores = score_bald(mc)
    assert scores[0] == pytest.approx(0.0, abs=1e-12) and scores[1] == pytest.approx(0.0, abs=1e-12)
    assert scores[2] == pytest.approx(math.log(2))
    assert 0 < scores[3] < scores[2]
    assert list(rank("bald", mc_probs=mc, budget=2).order) == [2, 3]
    # Entropy of the mean cannot tell the aleatoric row 0 from the epistemic row 2: both are flat on average.
    assert score_entropy(mc.mean(axis=0))[0] == pytest.approx(score_entropy(mc.mean(axis=0))[2])


def test_bald_of_a_single_pass_is_zero():
    assert np.all(score_bald(np.array([[[0.5, 0.5], [0.9, 0.1]]])) == 0.0)


# ---------------------------------------------------------------------------------------------------- random


def test_random_is_distinct_reproducible_and_capped():
    a = select_random(50, 20, 7)
    assert len(set(a.order.tolist())) == 20 and a.scores is None
    assert np.array_equal(a.order, select_random(50, 20, np.random.default_rng(7)).order)
    assert sorted(select_random(5, 99, 0).order.tolist()) == [0, 1, 2, 3, 4]
    assert select_random(0, 3, 0).order.size == 0


# ---------------------------------------------------------------------------------------------------- core-set


def test_coreset_picks_the_far_away_outlier_first():
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(size=(30, 2)), [[100.0, 100.0]]])
    ranking = select_coreset(X, labelled_embeddings=np.zeros((1, 2)), budget=3)
    assert ranking.order[0] == 30
    assert ranking.scores[30] == pytest.approx(100 * math.sqrt(2))


def test_coreset_without_labels_starts_at_the_most_typical_case():
    X = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [10.0, 0.0]])  # mean (3.25, 0): closest is row 2
    order = select_coreset(X, None, 2).order
    assert list(order) == [2, 3]


def test_coreset_never_picks_duplicates():
    X = np.repeat(np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 7.0]]), 4, axis=0)  # 3 places, 4 copies each
    three = select_coreset(X, None, 3).order
    assert sorted(three // 4) == [0, 1, 2]  # one per place: a copy of a picked case is never "far"
    everything = select_coreset(X, np.zeros((1, 2)), None).order
    assert sorted(everything.tolist()) == list(range(12))


def test_coreset_matches_a_brute_force_k_centre_greedy():
    rng = np.random.default_rng(3)
    X, L = rng.normal(size=(60, 5)), rng.normal(size=(4, 5))
    ranking = select_coreset(X, L, 15)
    centres, expected = list(L), []
    for _ in range(15):
        dist = [
            min(np.linalg.norm(x - c) for c in centres) if i not in expected else -1 for i, x in enumerate(X)
        ]
        expected.append(int(np.argmax(dist)))
        centres.append(X[expected[-1]])
    assert ranking.order.tolist() == expected
    gains = ranking.scores[ranking.order]
    assert np.all(np.diff(gains) <= 1e-12)  # farthest-first: the covering radius never grows


# ---------------------------------------------------------------------------------------------------- BADGE


def test_badge_embeddings_are_outer_products_and_vanish_when_confident():
    probs = np.array([[1.0, 0.0, 0.0], [0.2, 0.5, 0.3]])
    emb = np.array([[1.0, 2.0], [3.0, -1.0]])
    g = badge_embeddings(probs, emb)
    assert g.shape == (2, 6)
    assert np.allclose(g[0], 0.0)
    assert np.allclose(g[1], np.outer([-0.2, 0.5, -0.3], [3.0, -1.0]).ravel())


def _badge_pool():
    rng = np.random.default_rng(0)
    confident = rng.normal(size=(20, 4))
    group_b = np.array([5.0, 0, 0, 0]) + 0.01 * rng.normal(size=(5, 4))
    group_c = np.array([0, 5.0, 0, 0]) + 0.01 * rng.normal(size=(5, 4))
    probs = np.vstack([np.tile([0.99, 0.01], (20, 1)), np.tile([0.5, 0.5], (10, 1))])
    return probs, np.vstack([confident, group_b, group_c]), np.array([0] * 20 + [1] * 5 + [2] * 5)


def test_badge_prefers_uncertain_and_diverse_points():
    probs, emb, group = _badge_pool()
    covered_both = 0
    for seed in range(30):
        ranking = select_badge(probs=probs, embeddings=emb, budget=3, rng=seed)
        picked = group[ranking.order]
        assert len(set(ranking.order.tolist())) == 3
        assert picked[0] in (1, 2)  # the largest gradient: uncertain with a large embedding
        assert (picked == 1).sum() <= 1 and (picked == 2).sum() <= 1  # never two of one near-identical group
        covered_both += 1 in picked and 2 in picked
    assert covered_both >= 27  # random sampling covers both uncertain groups ~11% of the time


def test_badge_implicit_gradients_match_explicit_ones_and_return_distinct_indices():
    probs, emb, _ = _badge_pool()
    implicit = select_badge(probs=probs, embeddings=emb, budget=8, rng=5)
    explicit = select_badge(badge_embeddings(probs, emb), 8, 5)
    assert np.array_equal(implicit.order, explicit.order)
    assert np.allclose(implicit.scores, np.linalg.norm(badge_embeddings(probs, emb), axis=1))
    full = select_badge(probs=probs, embeddings=emb, budget=None, rng=1).order  # exhausts D^2 mass
    assert sorted(full.tolist()) == list(range(30))


# ---------------------------------------------------------------------------------------------------- cold start


def test_cold_start_picks_one_typical_case_per_blob_largest_first():
    X, blob, centres = blobs([40, 25, 15, 8])
    X = np.vstack([X, [[0.0, 2.0]]])  # an outlier of blob 0: atypical, must not be its representative
    blob = np.append(blob, 0)
    ranking = select_cold_start(X, 4, rng=0)
    assert blob[ranking.order].tolist() == [0, 1, 2, 3]  # one per blob, ordered by cluster size
    for idx in ranking.order:
        members = np.flatnonzero(blob == blob[idx])
        assert idx == members[np.argmin(np.linalg.norm(X[members] - X[members].mean(axis=0), axis=1))]
    assert ranking.scores[ranking.order[0]] == pytest.approx(41 / len(X))


def test_cold_start_is_reproducible_and_handles_budget_at_or_above_the_pool():
    X, _, _ = blobs([10, 10, 10], seed=2)
    assert np.array_equal(select_cold_start(X, 5, 3).order, select_cold_start(X, 5, 3).order)
    assert sorted(select_cold_start(X, 100, 0).order.tolist()) == list(range(30))
    duplicated = np.repeat(np.array([[0.0, 0.0], [9.0, 9.0]]), 5, axis=0)  # 2 distinct points, budget 4
    assert len(set(select_cold_start(duplicated, 4, 0).order.tolist())) == 4


# ---------------------------------------------------------------------------------------------------- rare class


def test_rare_classes_from_prior():
    assert rare_classes_from_prior(np.array([0.95, 0.05])).tolist() == [1]
    assert rare_classes_from_prior(np.full(10, 0.1)).tolist() == []  # balanced: nothing is rare
    assert rare_classes_from_prior(np.array([30, 20, 0])).tolist() == [2]  # counts; unseen class is rare


def test_rare_score_weights_rarer_classes_more():
    probs = np.array([[0.8, 0.2, 0.0], [0.7, 0.0, 0.3], [0.98, 0.01, 0.01]])
    scores = score_rare_class(probs, np.array([0.89, 0.01, 0.10]), uncertainty_weight=0.0)
    assert np.argmax(scores) == 0  # p=0.2 of a 1% class beats p=0.3 of a 10% class
    assert scores[0] == pytest.approx(1.0)


def test_rare_class_surfaces_at_least_four_times_the_rare_cases_random_does():
    found, by_chance, aucs = [], [], []
    for seed in range(6):
        y, probs, X = imbalanced_pool(seed)
        aucs.append(auc(y, probs[:, 1]))
        found.append(y[select_rare_class(probs, 100, np.array([0.95, 0.05]), embeddings=X).order].sum())
        by_chance.append(y[select_random(len(y), 100, seed).order].sum())
    assert 0.7 < np.mean(aucs) < 0.85  # the model really is weak
    assert np.mean(found) >= 4 * np.mean(by_chance)


def test_rare_class_keeps_rare_cases_that_cluster_tightly_in_embedding_space():
    # Class-mates close together are not duplicates: de-duplication must not throw the rare class away.
    found = [
        y[select_rare_class(p, 100, np.array([0.95, 0.05]), embeddings=X).order].sum()
        for y, p, X in (imbalanced_pool(seed, rare_layout="tight") for seed in range(4))
    ]
    assert np.mean(found) >= 4 * 5  # 5 = expected rare cases in a random 100 of this pool


def test_rare_class_pushes_near_duplicate_images_of_one_case_back():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 8)) * 3
    X[1:5] = X[0] + 0.001 * rng.normal(size=(4, 8))  # rows 0-4: five images of one series
    p = np.full(40, 0.02)
    p[0:5] = 0.9  # the series looks most rare
    p[10], p[11] = 0.6, 0.5  # two other, distinct rare-looking cases
    probs = np.column_stack([1 - p, p])
    with_embeddings = select_rare_class(probs, 3, np.array([0.95, 0.05]), embeddings=X).order
    assert with_embeddings.tolist() == [0, 10, 11]
    assert select_rare_class(probs, 3, np.array([0.95, 0.05])).order.tolist() == [0, 1, 2]  # score order only
    labelled = select_rare_class(probs, 2, np.array([0.95, 0.05]), embeddings=X, labelled_embeddings=X[:1])
    assert labelled.order.tolist() == [10, 11]  # copies of an already-labelled case wait too


# ---------------------------------------------------------------------------------------------------- hybrid


def test_hybrid_from_a_cold_start_without_rare_labels_still_finds_rare_cases():
    found, by_chance = [], []
    for seed in range(6):
        y, probs, X = imbalanced_pool(seed)
        seed_labels = X[np.flatnonzero(y == 0)[:20]]  # 20 labelled cases, none rare
        ranking = select_hybrid(probs, X, seed_labels, 100, seed, class_prior=np.array([0.95, 0.05]))
        found.append(y[ranking.order].sum())
        by_chance.append(y[select_random(len(y), 100, seed).order].sum())
        assert (
            ranking.sources[0] == "rare" and "explore" in ranking.sources and "uncertainty" in ranking.sources
        )
    assert np.mean(found) >= 3 * np.mean(by_chance)


def test_hybrid_never_collapses_with_an_uninformative_model():
    X, blob, _ = blobs([30, 30, 30, 30], seed=1)
    flat = np.full((len(X), 2), 0.5)  # an untrained model: every case equally (un)certain
    ranking = select_hybrid(flat, X, None, 8, 0)
    assert sorted(set(blob[ranking.order].tolist())) == [0, 1, 2, 3]  # the queue spans the data
    assert ranking.sources.count("explore") == 4  # half the budget explores while nothing is labelled
    forced = select_hybrid(flat, X, X[:1], 8, 0, explore_fraction=0.0)
    assert "explore" in forced.sources  # always at least one exploratory case


def test_hybrid_explores_regions_the_labelled_set_has_not_covered():
    X, blob, _ = blobs([50, 50, 3], seed=4)
    probs = np.tile([0.6, 0.4], (len(X), 1))
    probs[blob == 0] = [0.5, 0.5]  # the model is most uncertain inside the already-labelled blob
    labelled = X[blob == 0][:10]
    ranking = select_hybrid(probs, X, labelled, 5, 0, explore="kcenter")
    explored = ranking.order[[s == "explore" for s in ranking.sources]]
    assert np.all(blob[explored] != 0)
    assert "rare" not in ranking.sources  # no class prior: no rare share


def test_hybrid_explores_by_default_with_a_uniform_sample_not_the_outliers():
    X, blob, _ = blobs([100, 100, 3], seed=4)  # blob 2: three far-away outliers
    probs = np.tile([0.6, 0.4], (len(X), 1))
    labelled = X[blob == 0][:10]
    outliers = kcenter = 0
    for seed in range(20):
        ranking = select_hybrid(probs, X, labelled, 10, seed)  # 2 explore, 8 uncertainty
        explored = ranking.order[[s == "explore" for s in ranking.sources]]
        assert len(explored) == 2 and len(set(ranking.order.tolist())) == 10
        outliers += int(np.sum(blob[explored] == 2))
        by_cover = select_hybrid(probs, X, labelled, 10, seed, explore="kcenter")
        kcenter += int(np.sum(blob[by_cover.order[[s == "explore" for s in by_cover.sources]]] == 2))
    assert kcenter >= 15  # coverage runs to the outliers first
    assert outliers <= 6  # a uniform sample meets them at their share (3 of 203 cases: ~0.6 of 40 picks)
    again = select_hybrid(probs, X, labelled, 10, 7)
    assert again.order.tolist() == select_hybrid(probs, X, labelled, 10, 7).order.tolist()  # seeded
    with pytest.raises(ValueError, match="explore"):
        select_hybrid(probs, X, labelled, 10, 7, explore="outliers")


def test_hybrid_budget_edges_and_interleaving():
    y, probs, X = imbalanced_pool(0, n=300, rare=15)
    prior = np.array([0.95, 0.05])
    full = select_hybrid(probs, X, X[:5], 10_000, 0, class_prior=prior)
    assert sorted(full.order.tolist()) == list(range(300))
    ranking = select_hybrid(probs, X, X[:5], 10, 0, class_prior=prior)  # 5 rare, 3 uncertainty, 2 explore
    assert [ranking.sources.count(s) for s in ("rare", "uncertainty", "explore")] == [5, 3, 2]
    assert set(ranking.sources[:4]) >= {"rare", "uncertainty"}  # every prefix already mixes the parts
    assert select_hybrid(probs, X, None, 1, 0, class_prior=prior).sources == ("explore",)
    assert select_hybrid(probs, X, X[:5], 1, 0, class_prior=prior).sources == ("rare",)


# ---------------------------------------------------------------------------------------------------- jitter


def test_order_with_jitter_only_permutes_the_top_k():
    order = np.arange(100, 120)
    heads = set()
    for seed in range(20):
        out = order_with_jitter(order, 5, np.random.default_rng(seed))
        assert sorted(out[:5].tolist()) == list(range(100, 105))
        assert np.array_equal(out[5:], order[5:])
        heads.add(tuple(out[:5].tolist()))
    assert len(heads) > 5  # really shuffled
    assert np.array_equal(order, np.arange(100, 120))  # input untouched
    assert np.array_equal(order_with_jitter(order, 0, 1), order)
    assert sorted(order_with_jitter(order[:3], 10, 1).tolist()) == [100, 101, 102]


# ---------------------------------------------------------------------------------------------------- registry


def test_every_registered_strategy_returns_a_distinct_ranking_of_the_budget():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet([1.0, 1.0, 0.2], size=60)
    mc = rng.dirichlet([1.0, 1.0, 0.2], size=(5, 60))
    X = rng.normal(size=(60, 4))
    assert DEFAULT_STRATEGY in STRATEGIES
    for name in STRATEGIES:
        ranking = rank(
            name,
            probs=probs,
            mc_probs=mc,
            embeddings=X,
            labelled_embeddings=X[:3],
            budget=12,
            rng=1,
            class_prior=np.array([0.45, 0.45, 0.10]),
        )
        assert isinstance(ranking, Ranking) and ranking.strategy == name
        assert len(ranking) == 12 and len(set(ranking.order.tolist())) == 12
        assert ranking.scores is None or ranking.scores.shape == (60,)


def test_every_strategy_handles_an_empty_pool_and_a_zero_budget():
    rng = np.random.default_rng(1)
    probs, X = rng.dirichlet([1.0, 1.0], size=20), rng.normal(size=(20, 3))
    for name in STRATEGIES:
        empty = rank(
            name,
            probs=np.zeros((0, 2)),
            mc_probs=np.zeros((2, 0, 2)),
            embeddings=np.zeros((0, 3)),
            budget=5,
            rng=0,
            class_prior=np.array([0.9, 0.1]),
        )
        none = rank(
            name,
            probs=probs,
            mc_probs=np.stack([probs] * 2),
            embeddings=X,
            budget=0,
            rng=0,
            class_prior=np.array([0.9, 0.1]),
        )
        assert len(empty) == 0 and len(none) == 0, name


def test_ranking_is_immutable():
    ranking = rank("entropy", probs=np.array([[0.5, 0.5], [0.9, 0.1]]), budget=None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ranking.strategy = "x"
    with pytest.raises(ValueError):
        ranking.order[0] = 1
    with pytest.raises(ValueError, match="repeat"):
        Ranking(order=np.array([1, 1]), scores=None, strategy="x")


def test_rank_uses_the_mc_mean_when_only_mc_probs_are_given():
    mc = np.array([[[0.9, 0.1], [0.5, 0.5]], [[0.7, 0.3], [0.5, 0.5]]])
    assert rank("entropy", mc_probs=mc, budget=1).order.tolist() == [1]


# ---------------------------------------------------------------------------------------------------- errors


def test_rank_errors_name_the_problem():
    probs = np.array([[0.5, 0.5], [0.9, 0.1]])
    with pytest.raises(ValueError, match="unknown strategy 'nope'.*bald.*hybrid"):
        rank("nope", probs=probs, budget=1)
    with pytest.raises(ValueError, match="missing required input: mc_probs"):
        rank("bald", probs=probs, budget=1)
    with pytest.raises(ValueError, match="missing required input: embeddings"):
        rank("coreset", probs=probs, budget=1)
    with pytest.raises(ValueError, match="probs"):
        rank("hybrid", embeddings=np.zeros((2, 3)), budget=1)
    with pytest.raises(ValueError, match="pool size"):
        rank("hybrid", probs=probs, embeddings=np.zeros((3, 2)), budget=1)
    with pytest.raises(ValueError, match="pool size"):
        rank("random", budget=1)


@pytest.mark.parametrize(
    ("probs", "message"),
    [
        (np.array([[2.0, -1.0], [0.3, 0.7]]), "negative"),
        (np.array([[3.2, 0.1], [0.3, 0.7]]), "above 1"),
        (np.array([[0.6, 0.6], [0.3, 0.7]]), "sum to 1"),
        (np.array([[np.nan, 0.5], [0.3, 0.7]]), "NaN"),
        (np.array([0.5, 0.5]), "2-D"),
        (np.array([[1.0], [1.0]]), "2 classes"),
    ],
)
def test_bad_probabilities_are_rejected(probs, message):
    with pytest.raises(ValueError, match=message):
        score_entropy(probs)


def test_other_bad_inputs_are_rejected():
    probs = np.array([[0.5, 0.5], [0.9, 0.1]])
    with pytest.raises(ValueError, match="3-D"):
        score_bald(probs)
    with pytest.raises(ValueError, match="budget must be >= 0"):
        rank("entropy", probs=probs, budget=-1)
    with pytest.raises(TypeError, match="budget"):
        rank("entropy", probs=probs, budget=1.5)
    with pytest.raises(ValueError, match="2 rows but the pool has 3"):
        select_hybrid(np.tile([0.5, 0.5], (3, 1)), np.zeros((2, 2)), None, 1)
    with pytest.raises(ValueError, match="3 features but the pool embeddings have 2"):
        select_coreset(np.zeros((4, 2)), np.zeros((1, 3)), 2)
    with pytest.raises(ValueError, match="either grad_embeddings or"):
        select_badge(np.zeros((2, 4)), 1, probs=probs, embeddings=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="missing"):
        select_badge(budget=1, probs=probs)
    with pytest.raises(ValueError, match="one entry per class"):
        select_rare_class(probs, 1, np.array([0.5, 0.3, 0.2]))
    with pytest.raises(ValueError, match=r"rare_classes must be in \[0, 2\)"):
        select_rare_class(probs, 1, rare_classes=np.array([2]))
    with pytest.raises(ValueError, match="rare_fraction"):
        select_hybrid(probs, np.zeros((2, 2)), None, 1, rare_fraction=1.5)
    with pytest.raises(TypeError, match="rng"):
        select_random(3, 1, rng="seed")
    with pytest.raises(ValueError, match="top_k"):
        order_with_jitter(np.arange(4), -1)
    with pytest.raises(ValueError, match="integer"):
        order_with_jitter(np.array([0.5, 1.5]), 1)


def test_population_prior_counts_labels_and_the_models_view_of_the_pool():
    from learning.strategies import population_prior, rare_classes_from_prior

    # A strategy that hunted the rare class: 30 of 60 labelled cases are rare, far above its 5% prevalence.
    counts = np.array([30, 30])
    pool = np.tile([0.03, 0.97], (940, 1))
    prior = population_prior(counts, pool)
    assert prior.sum() == pytest.approx(1.0)
    assert prior[0] == pytest.approx((30 + 0.03 * 940) / 1000)
    assert list(rare_classes_from_prior(prior)) == [0]  # still rare: the hunt does not switch itself off
    assert list(rare_classes_from_prior(counts)) == []  # the labelled histogram alone would say "balanced"
    with pytest.raises(ValueError, match="counts"):
        population_prior([1, 2, 3], pool)
