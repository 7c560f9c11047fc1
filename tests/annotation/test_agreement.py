"""Categorical agreement: percent agreement, Cohen's and Fleiss' kappa.

Checked against published worked examples and against statsmodels' implementation (the reference package);
the standard errors also against simulation.
"""

import math

import numpy as np
import pytest
from statsmodels.stats import inter_rater
from statsmodels.stats.proportion import proportion_confint

from annotation.agreement import (
    Estimate,
    cohen_kappa,
    fleiss_kappa,
    pairwise_cohen_kappa,
    percent_agreement,
    wilson_interval,
)

# Fleiss (1971), Table 1: 30 patients, 6 psychiatrists each, 5 diagnoses (1 depression, 2 personality
# disorder, 3 schizophrenia, 4 neurosis, 5 other), as raw ratings (R irr's `diagnoses` data set).
DIAGNOSES = np.array(
    [
        [4, 4, 4, 4, 4, 4], [2, 2, 2, 5, 5, 5], [2, 3, 3, 3, 3, 5], [5, 5, 5, 5, 5, 5], [2, 2, 2, 4, 4, 4],
        [1, 1, 3, 3, 3, 3], [3, 3, 3, 3, 5, 5], [1, 1, 3, 3, 3, 4], [1, 1, 4, 4, 4, 4], [5, 5, 5, 5, 5, 5],
        [1, 4, 4, 4, 4, 4], [1, 2, 4, 4, 4, 4], [2, 2, 2, 3, 3, 3], [1, 4, 4, 4, 4, 4], [2, 2, 4, 4, 4, 5],
        [3, 3, 3, 3, 3, 5], [1, 1, 1, 4, 5, 5], [1, 1, 1, 1, 1, 2], [2, 2, 4, 4, 4, 4], [1, 3, 3, 5, 5, 5],
        [5, 5, 5, 5, 5, 5], [2, 4, 4, 4, 4, 4], [2, 2, 4, 5, 5, 5], [1, 1, 4, 4, 4, 4], [1, 4, 4, 4, 4, 5],
        [2, 2, 2, 2, 2, 4], [1, 1, 1, 1, 5, 5], [2, 2, 4, 4, 4, 4], [1, 3, 3, 3, 3, 3], [5, 5, 5, 5, 5, 5],
    ]
)  # fmt: skip

# Wikipedia, "Fleiss' kappa", worked example: 10 subjects, 14 raters, 5 categories (counts per category).
WIKIPEDIA_FLEISS = np.array(
    [
        [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
    ]
)  # fmt: skip

# SAS/STAT documentation's two-reader 3x3 example (rows: reader A, columns: reader B), with SAS's printout.
SAS_TABLE = np.array([[0, 4, 1], [0, 8, 0], [0, 1, 5]])

# R irr's `anxiety` data set (20 subjects, 3 raters, scores 1-6), in column order.
ANXIETY = np.array(
    [3, 3, 3, 4, 5, 5, 2, 3, 5, 2, 2, 6, 1, 5, 2, 2, 1, 2, 4, 3, 3, 6, 4, 6, 2, 4, 2, 4, 3, 3,
     2, 3, 3, 3, 2, 2, 1, 3, 3, 4, 2, 1, 4, 4, 3, 2, 1, 6, 1, 1, 1, 2, 3, 3, 1, 1, 3, 3, 2, 2]
).reshape(20, 3, order="F")  # fmt: skip


def table_to_pairs(table) -> tuple[list[int], list[int]]:
    """Expand a two-reader contingency table into the readers' label lists."""
    a, b = [], []
    for i, row in enumerate(np.asarray(table)):
        for j, count in enumerate(row):
            a += [i] * int(count)
            b += [j] * int(count)
    return a, b


def contingency(a, b, cats) -> np.ndarray:
    index = {c: i for i, c in enumerate(cats)}
    table = np.zeros((len(cats), len(cats)))
    for x, y in zip(a, b, strict=True):
        table[index[x], index[y]] += 1
    return table


# --- percent agreement and the Wilson interval -------------------------------------------------------


def test_percent_agreement_by_hand():
    ratings = [
        ["a", "a", "a"],  # 3 of 3 pairs agree
        ["a", "a", "b"],  # 1 of 3
        ["a", "b", "c"],  # 0 of 3
        [None, "b", "b"],  # 1 of 1
        ["c", None, float("nan")],  # one rating: skipped
    ]
    est = percent_agreement(ratings)
    assert est.n == 4
    assert est.value == pytest.approx((1 + 1 / 3 + 0 + 1) / 4)
    assert est.ci_low < est.value < est.ci_high


def test_percent_agreement_two_readers_is_the_wilson_interval_of_statsmodels():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 3, size=57)
    b = np.where(rng.random(57) < 0.7, a, rng.integers(0, 3, size=57))
    est = percent_agreement(np.column_stack([a, b]))
    hits = int((a == b).sum())
    low, high = proportion_confint(hits, 57, alpha=0.05, method="wilson")
    assert est.value == pytest.approx(hits / 57)
    assert (est.ci_low, est.ci_high) == pytest.approx((low, high), abs=1e-12)


@pytest.mark.parametrize(("count", "n"), [(0, 10), (10, 10), (7, 23), (1, 1)])
def test_wilson_interval_matches_statsmodels(count, n):
    assert wilson_interval(count, n, 0.9) == pytest.approx(
        proportion_confint(count, n, alpha=0.1, method="wilson"), abs=1e-12
    )


def test_percent_agreement_rejects_bad_input():
    with pytest.raises(ValueError, match="2-D"):
        percent_agreement(["a", "b"])
    with pytest.raises(ValueError, match="no case has two or more ratings"):
        percent_agreement([["a", None], [None, "b"]])
    with pytest.raises(ValueError, match="rectangular|2-D"):
        percent_agreement([["a", "b"], ["a"]])


# --- Cohen's kappa -------------------------------------------------------------------------------------


def test_cohen_kappa_wikipedia_example():
    # Wikipedia "Cohen's kappa": 50 grant proposals, yes/yes 20, yes/no 5, no/yes 10, no/no 15 -> 0.4.
    a = ["yes"] * 25 + ["no"] * 25
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert cohen_kappa(a, b).value == pytest.approx(0.4)


def test_cohen_kappa_sas_example_published_values():
    a, b = table_to_pairs(SAS_TABLE)
    simple = cohen_kappa(a, b)
    assert (simple.value, simple.se, simple.ci_low, simple.ci_high) == pytest.approx(
        (0.4842, 0.1380, 0.2137, 0.7547), abs=5e-5
    )
    weighted = cohen_kappa(a, b, weights="linear")
    assert (weighted.value, weighted.se, weighted.ci_low, weighted.ci_high) == pytest.approx(
        (0.4701, 0.1457, 0.1845, 0.7558), abs=5e-5
    )
    assert simple.n == weighted.n == 19


@pytest.mark.parametrize(
    ("weights", "expected"), [(None, -0.006289308), ("linear", 0.1459075), ("quadratic", 0.2520325)]
)
def test_cohen_kappa_matches_r_irr_on_anxiety(weights, expected):
    # irr::kappa2(anxiety[, 2:3], "unweighted" / "equal" / "squared"); irr, like us, spaces the weights by
    # the position of the levels actually used (level 5 is unused by these two raters).
    assert cohen_kappa(ANXIETY[:, 1], ANXIETY[:, 2], weights=weights).value == pytest.approx(
        expected, abs=1e-7
    )


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
def test_cohen_kappa_matches_statsmodels(seed, weights):
    rng = np.random.default_rng(seed)
    n, k = rng.integers(20, 200), rng.integers(2, 6)
    a = rng.integers(0, k, size=n)
    b = np.where(rng.random(n) < rng.uniform(0.3, 0.9), a, rng.integers(0, k, size=n))
    cats = sorted(set(a) | set(b))
    ref = inter_rater.cohens_kappa(contingency(a, b, cats), wt=weights)
    est = cohen_kappa(a.tolist(), b.tolist(), weights=weights)
    assert est.value == pytest.approx(ref.kappa, abs=1e-12)
    assert est.se == pytest.approx(ref.std_kappa, abs=1e-12)
    assert est.ci_low == pytest.approx(max(-1.0, ref.kappa_low), abs=1e-12)
    assert est.ci_high == pytest.approx(min(1.0, ref.kappa_upp), abs=1e-12)
    assert est.n == n


def test_cohen_kappa_se_matches_simulation():
    # The asymptotic (non-null) SE should match the spread of kappa over repeated samples from one
    # population; 3000 samples of 120 cases from a fixed joint distribution with kappa around 0.5.
    rng = np.random.default_rng(11)
    joint = np.array([[0.30, 0.05, 0.02], [0.06, 0.25, 0.04], [0.03, 0.05, 0.20]])
    cells = rng.multinomial(120, joint.ravel(), size=3000).reshape(-1, 3, 3)
    kappas, ses = [], []
    for table in cells:
        est = cohen_kappa(*table_to_pairs(table), weights="linear", categories=[0, 1, 2])
        kappas.append(est.value)
        ses.append(est.se)
    assert np.std(kappas) == pytest.approx(np.mean(ses), rel=0.05)


def test_cohen_kappa_missing_cases_and_categories():
    a = ["mild", "severe", None, "moderate", "mild", float("nan"), "severe", "moderate"]
    b = ["mild", "moderate", "mild", "moderate", "severe", "mild", "severe", "moderate"]
    order = ["mild", "moderate", "severe"]
    est = cohen_kappa(a, b, weights="quadratic", categories=order)
    assert est.n == 6
    kept = [0, 1, 3, 4, 6, 7]
    ref = inter_rater.cohens_kappa(
        contingency([a[i] for i in kept], [b[i] for i in kept], order), wt="quadratic"
    )
    assert est.value == pytest.approx(ref.kappa)
    # An unused level inside the scale changes the spacing of the weights, hence weighted kappa (one at
    # an end only rescales all disagreement weights alike, which kappa is invariant to).
    wider = cohen_kappa(a, b, weights="quadratic", categories=["mild", "moderate", "marked", "severe"])
    assert cohen_kappa(a, b, weights="quadratic", categories=[*order, "critical"]).value == pytest.approx(
        est.value
    )
    assert wider.value != pytest.approx(est.value)


def test_cohen_kappa_perfect_and_undefined():
    perfect = cohen_kappa([1, 2, 3, 1], [1, 2, 3, 1])
    assert perfect.value == 1.0 and perfect.se == pytest.approx(0.0) and perfect.ci_high == 1.0
    same = cohen_kappa(["normal"] * 5, ["normal"] * 5)
    assert math.isnan(same.value) and same.ci_low is None and same.n == 5


def test_cohen_kappa_rejects_bad_input():
    with pytest.raises(ValueError, match="same length|one label per case"):
        cohen_kappa([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="weights"):
        cohen_kappa([1, 2], [1, 2], weights="cubic")
    with pytest.raises(ValueError, match="not in categories"):
        cohen_kappa([1, 2], [1, 3], categories=[1, 2])
    with pytest.raises(ValueError, match="no case was labelled by both"):
        cohen_kappa([1, None], [None, 2])
    with pytest.raises(ValueError, match="categories="):
        cohen_kappa([1, "a"], ["a", 1], weights="linear")
    # Unweighted kappa is nominal: labels that cannot be ordered are fine.
    assert cohen_kappa([1, "a", "a", 1], ["a", 1, "a", 1]).value == pytest.approx(0.0)


def test_pairwise_cohen_kappa_uses_the_cases_both_read():
    rng = np.random.default_rng(5)
    truth = rng.integers(0, 3, size=60)
    ratings = np.column_stack(
        [np.where(rng.random(60) < 0.75, truth, rng.integers(0, 3, size=60)) for _ in range(3)]
    ).astype(object)
    ratings[rng.random(ratings.shape) < 0.2] = None
    result = pairwise_cohen_kappa(ratings, ["ann", "bob", "cy"], weights="linear")
    assert list(result) == [("ann", "bob"), ("ann", "cy"), ("bob", "cy")]
    for (i, j), (ni, nj) in zip([(0, 1), (0, 2), (1, 2)], result, strict=True):
        both = [r for r in ratings if r[i] is not None and r[j] is not None]
        ref = inter_rater.cohens_kappa(
            contingency([r[i] for r in both], [r[j] for r in both], [0, 1, 2]), wt="linear"
        )
        assert result[(ni, nj)].n == len(both)
        assert result[(ni, nj)].value == pytest.approx(ref.kappa, abs=1e-12)
        assert result[(ni, nj)].se == pytest.approx(ref.std_kappa, abs=1e-12)


def test_pairwise_cohen_kappa_pair_without_overlap_and_bad_names():
    ratings = [["a", None, "a"], [None, "b", "b"], ["a", None, "a"]]
    result = pairwise_cohen_kappa(ratings, ["r1", "r2", "r3"])
    assert result[("r1", "r2")].n == 0 and math.isnan(result[("r1", "r2")].value)
    assert result[("r1", "r3")].n == 2
    with pytest.raises(ValueError, match="reader names"):
        pairwise_cohen_kappa(ratings, ["r1", "r2"])
    with pytest.raises(ValueError, match="distinct"):
        pairwise_cohen_kappa(ratings, ["r1", "r1", "r2"])


# --- Fleiss' kappa -------------------------------------------------------------------------------------


def test_fleiss_kappa_fleiss_1971_example():
    est = fleiss_kappa(DIAGNOSES)
    assert est.value == pytest.approx(0.430, abs=5e-4)  # Fleiss (1971)
    assert est.value == pytest.approx(0.4302445, abs=1e-7)  # irr::kappam.fleiss(diagnoses)
    assert est.value / est.se == pytest.approx(17.65183, abs=1e-5)  # its z, from the FNL (1979) SE
    assert est.n == 30
    table, _ = inter_rater.aggregate_raters(DIAGNOSES)
    assert est.value == pytest.approx(inter_rater.fleiss_kappa(table), abs=1e-12)
    assert fleiss_kappa(table=table) == est


def test_fleiss_kappa_wikipedia_example():
    est = fleiss_kappa(table=WIKIPEDIA_FLEISS)
    assert est.value == pytest.approx(0.210, abs=5e-4)
    assert est.value == pytest.approx(inter_rater.fleiss_kappa(WIKIPEDIA_FLEISS), abs=1e-12)
    assert est.n == 10
    assert est.ci_low < est.value < est.ci_high


@pytest.mark.parametrize("seed", range(5))
def test_fleiss_kappa_matches_statsmodels_on_labels(seed):
    rng = np.random.default_rng(seed)
    labels = np.array(["benign", "malignant", "uncertain", "normal"])
    truth = rng.integers(0, 4, size=80)
    codes = np.column_stack(
        [np.where(rng.random(80) < 0.6, truth, rng.integers(0, 4, size=80)) for _ in range(4)]
    )
    est = fleiss_kappa(labels[codes])
    assert est.value == pytest.approx(
        inter_rater.fleiss_kappa(inter_rater.aggregate_raters(codes)[0]), abs=1e-12
    )


def test_fleiss_kappa_two_readers_is_scotts_pi():
    rng = np.random.default_rng(2)
    a = rng.integers(0, 3, size=100)
    b = np.where(rng.random(100) < 0.5, a, rng.integers(0, 3, size=100))
    p_obs = np.mean(a == b)
    pooled = np.bincount(np.concatenate([a, b]), minlength=3) / 200
    scott = (p_obs - (pooled**2).sum()) / (1 - (pooled**2).sum())
    assert fleiss_kappa(np.column_stack([a, b])).value == pytest.approx(scott, abs=1e-12)


def test_fleiss_kappa_null_se_matches_simulation():
    # Under chance-only agreement, the FNL (1979) SE is the spread of kappa over repeated samples.
    rng = np.random.default_rng(7)
    p = np.array([0.5, 0.3, 0.2])
    tables = rng.multinomial(4, p, size=(2000, 60))
    estimates = [fleiss_kappa(table=t) for t in tables]
    assert np.std([e.value for e in estimates]) == pytest.approx(np.mean([e.se for e in estimates]), rel=0.05)


def test_fleiss_kappa_rejects_unequal_ratings_naming_the_case():
    ratings = [["a", "a", "b"], ["b", "b", "b"], ["a", None, "b"]]
    with pytest.raises(ValueError, match="case 2 has 2 ratings"):
        fleiss_kappa(ratings)
    with pytest.raises(ValueError, match="case 1"):
        fleiss_kappa(table=[[2, 1], [1, 1]])
    with pytest.raises(ValueError, match="either ratings or table"):
        fleiss_kappa()
    with pytest.raises(ValueError, match="either ratings or table"):
        fleiss_kappa([["a", "b"]], table=[[1, 1]])
    with pytest.raises(ValueError, match="whole counts"):
        fleiss_kappa(table=[[1.5, 0.5]])
    with pytest.raises(ValueError, match="at least two ratings"):
        fleiss_kappa([["a"], ["b"]])


def test_fleiss_kappa_all_one_category_is_undefined():
    est = fleiss_kappa([["x", "x"], ["x", "x"]])
    assert math.isnan(est.value) and est.ci_low is None and est.n == 2


def test_estimate_is_frozen():
    est = Estimate(value=0.5, ci_low=0.4, ci_high=0.6, n=10)
    with pytest.raises(AttributeError):
        est.value = 0.7  # type: ignore[misc]
