"""Per-case consensus (votes, ordinal, masks) and each reader's agreement with the consensus."""

import math

import numpy as np
import pytest
from statsmodels.stats import inter_rater
from statsmodels.stats.proportion import proportion_confint

from annotation.agreement import (
    MultiChoiceVote,
    Vote,
    agreement_with_consensus,
    case_agreement,
    cohen_kappa,
    majority_vote,
    mask_majority,
    mask_staple,
    multi_choice_vote,
    ordinal_consensus,
)


def disc(shape=(48, 48), centre=(24, 24), radius=10) -> np.ndarray:
    yy, xx = np.indices(shape)
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


# --- label votes ---------------------------------------------------------------------------------------


def test_majority_vote():
    assert majority_vote(["benign", "malignant", "benign"]) == Vote("benign", False, pytest.approx(2 / 3))
    assert majority_vote(["a", "a", "a"]) == Vote("a", False, 1.0)
    assert majority_vote([1, 2, 3]) == Vote(None, True, pytest.approx(1 / 3))
    assert majority_vote(["a", "b", None]) == Vote(None, True, 0.5)  # the missing reading is not a vote
    assert majority_vote(["a", "b", "b", "a", "c"]) == Vote(None, True, 0.4)
    assert majority_vote([2, float("nan"), 2]) == Vote(2, False, 1.0)
    with pytest.raises(ValueError, match="all missing"):
        majority_vote([None, None])
    with pytest.raises(ValueError, match="sequence"):
        majority_vote("abc")
    with pytest.raises(ValueError, match="unhashable"):
        majority_vote([{"a"}, {"a"}])


def test_case_agreement():
    assert case_agreement(["a", "a", "a"]) == 1.0
    assert case_agreement(["a", "a", "b"]) == pytest.approx(1 / 3)
    assert case_agreement(["a", "b", "c"]) == 0.0
    assert case_agreement(["a", "a", "b", "b"]) == pytest.approx(2 / 6)
    assert case_agreement(["a", None, "a"]) == 1.0
    with pytest.raises(ValueError, match="at least two"):
        case_agreement(["a", None])


def test_multi_choice_vote():
    vote = multi_choice_vote([{"nodule", "effusion"}, {"nodule"}, {"effusion", "mass"}])
    assert vote.selected == {"nodule", "effusion"}
    assert vote.support == {
        "nodule": pytest.approx(2 / 3),
        "effusion": pytest.approx(2 / 3),
        "mass": pytest.approx(1 / 3),
    }
    assert vote.tied == frozenset()
    four = multi_choice_vote([["a"], ["a", "b"], [], None, ["b", "a"]])  # 4 answered; a 3/4, b 2/4
    assert four == MultiChoiceVote(
        selected=frozenset({"a"}), support={"a": 0.75, "b": 0.5}, tied=frozenset({"b"})
    )
    assert multi_choice_vote([["a"], ["a", "b"], ["b"]], threshold=0.7).selected == frozenset()
    with pytest.raises(ValueError, match="threshold"):
        multi_choice_vote([["a"]], threshold=1.0)
    with pytest.raises(ValueError, match="collection of options"):
        multi_choice_vote(["ab", ["a"]])
    with pytest.raises(ValueError, match="no reader answered"):
        multi_choice_vote([None, None])


def test_ordinal_consensus():
    assert ordinal_consensus([2, 3, 5]) == 3.0
    assert ordinal_consensus([2, 3, 5, None]) == 3.0
    assert ordinal_consensus([1, 2, 4, 5]) == 3.0
    assert ordinal_consensus([2, 3, 5], method="mean") == pytest.approx(10 / 3)
    with pytest.raises(ValueError, match="numeric"):
        ordinal_consensus(["mild", "severe"])
    with pytest.raises(ValueError, match="method"):
        ordinal_consensus([1, 2], method="mode")


# --- mask consensus ------------------------------------------------------------------------------------


def test_mask_majority_two_of_three():
    agreed, other = disc(), disc(centre=(20, 30), radius=6)
    assert np.array_equal(mask_majority([agreed, other, agreed]), agreed)
    assert np.array_equal(mask_majority({"a": agreed, "b": agreed, "c": np.zeros_like(agreed)}), agreed)
    # Two readers: strict majority is the intersection.
    assert np.array_equal(mask_majority([agreed, other]), agreed & other)
    with pytest.raises(ValueError, match="same shape"):
        mask_majority([agreed, np.zeros((3, 3))])
    with pytest.raises(ValueError, match="no masks"):
        mask_majority([])


def test_mask_staple_identical_masks_is_the_mask():
    m = np.zeros((6, 32, 32), dtype=bool)
    m[2:5, 8:20, 10:24] = True
    result = mask_staple([m, m, m])
    assert np.array_equal(result.mask, m)
    assert result.sensitivity == (1.0, 1.0, 1.0) and result.specificity == (1.0, 1.0, 1.0)
    empty = mask_staple([np.zeros((8, 8))] * 3)
    assert not empty.mask.any() and all(math.isnan(s) for s in empty.sensitivity)


def test_mask_staple_two_agreeing_readers_outweigh_the_third():
    agreed = disc()
    outlier = disc(radius=14)  # marks a larger region around the same lesion
    result = mask_staple({"a": agreed, "b": agreed, "c": outlier})
    assert np.array_equal(result.mask, agreed)
    assert result.probability.shape == agreed.shape
    assert result.sensitivity[:2] == pytest.approx((1.0, 1.0))
    assert result.specificity[2] < result.specificity[0]
    # A voxel STAPLE calls foreground has probability >= threshold, and only those.
    assert np.array_equal(
        mask_staple([agreed, agreed, outlier], threshold=0.9).mask, result.probability >= 0.9
    )


# --- readers against the consensus ---------------------------------------------------------------------


def test_agreement_with_consensus():
    rng = np.random.default_rng(4)
    truth = rng.integers(0, 3, size=50)
    ratings = np.column_stack(
        [np.where(rng.random(50) < p, truth, rng.integers(0, 3, size=50)) for p in (0.9, 0.7, 0.5)]
    ).astype(object)
    ratings[3, 1] = None
    votes = [majority_vote(row) for row in ratings]
    consensus = [v.value for v in votes]  # ties stay None: not adjudicated yet
    result = agreement_with_consensus(ratings, consensus, ["ann", "bob", "cy"])
    assert set(result) == {"ann", "bob", "cy"}
    for j, name in enumerate(["ann", "bob", "cy"]):
        keep = [i for i in range(50) if ratings[i, j] is not None and consensus[i] is not None]
        hits = sum(ratings[i, j] == consensus[i] for i in keep)
        prop = result[name].proportion
        assert (prop.value, prop.n) == (pytest.approx(hits / len(keep)), len(keep))
        assert (prop.ci_low, prop.ci_high) == pytest.approx(
            proportion_confint(hits, len(keep), method="wilson")
        )
        table = np.zeros((3, 3))
        for i in keep:
            table[ratings[i, j], consensus[i]] += 1
        assert result[name].kappa.value == pytest.approx(inter_rater.cohens_kappa(table).kappa, abs=1e-12)
    # The most accurate reader agrees best with the consensus.
    assert result["ann"].kappa.value > result["cy"].kappa.value


def test_agreement_with_consensus_weighted_and_edge_cases():
    ratings = [[1, 3], [2, 2], [3, None], [1, 1]]
    consensus = [1, 2, 3, None]
    result = agreement_with_consensus(ratings, consensus, ["a", "b"], weights="linear", categories=[1, 2, 3])
    assert result["a"].proportion.value == 1.0 and result["a"].kappa.value == pytest.approx(1.0)
    assert result["b"].kappa == cohen_kappa([3, 2], [1, 2], weights="linear", categories=[1, 2, 3])
    nobody = agreement_with_consensus([[1, None]], [1], ["a", "b"])["b"]
    assert nobody.proportion.n == 0 and math.isnan(nobody.kappa.value)
    with pytest.raises(ValueError, match="consensus has 1 labels for 4 cases"):
        agreement_with_consensus(ratings, [1], ["a", "b"])
