"""Krippendorff's alpha: published worked examples and the `krippendorff` package as the reference."""

import math

import krippendorff
import numpy as np
import pytest

from annotation.agreement import krippendorff_alpha

nan = np.nan

# Krippendorff (2011) "Computing Krippendorff's Alpha-Reliability", section C: 4 observers x 12 units.
KRIPPENDORFF_2011 = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
    [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan],
]

# Wikipedia "Krippendorff's alpha", computational example: 3 coders x 15 units.
WIKIPEDIA_ALPHA = [
    [nan, nan, nan, nan, nan, 3, 4, 1, 2, 1, 1, 3, 3, nan, 3],
    [1, nan, 2, 1, 3, 3, 4, 3, nan, nan, nan, nan, nan, nan, nan],
    [nan, nan, 2, 1, 3, 4, 4, nan, 2, 1, 1, 3, 3, nan, 4],
]

LEVELS = ["nominal", "ordinal", "interval", "ratio"]


@pytest.mark.parametrize(
    ("level", "published"), [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849), ("ratio", 0.797)]
)
def test_krippendorff_2011_example(level, published):
    est = krippendorff_alpha(KRIPPENDORFF_2011, level)
    assert est.value == pytest.approx(published, abs=5e-4)
    assert est.value == pytest.approx(
        krippendorff.alpha(reliability_data=KRIPPENDORFF_2011, level_of_measurement=level), abs=1e-12
    )
    assert est.n == 11  # unit 12 has a single value: not pairable
    assert est.ci_low is None and est.ci_high is None


@pytest.mark.parametrize(("level", "published"), [("nominal", 0.691), ("interval", 0.811)])
def test_wikipedia_example(level, published):
    est = krippendorff_alpha(WIKIPEDIA_ALPHA, level)
    assert est.value == pytest.approx(published, abs=5e-4)
    assert est.n == 12  # units 1, 2 and 14 have fewer than two values


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("level", LEVELS)
def test_matches_krippendorff_package_on_random_data_with_missing_values(seed, level):
    rng = np.random.default_rng(seed)
    n_readers, n_units = rng.integers(2, 6), rng.integers(10, 80)
    truth = rng.integers(1, 6, size=n_units)
    data = np.where(
        rng.random((n_readers, n_units)) < 0.6, truth, rng.integers(1, 6, size=(n_readers, n_units))
    )
    data = data.astype(float)
    data[rng.random(data.shape) < 0.25] = nan
    expected = krippendorff.alpha(reliability_data=data, level_of_measurement=level)
    assert krippendorff_alpha(data, level).value == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("level", ["interval", "ratio"])
def test_matches_package_on_continuous_values(level):
    rng = np.random.default_rng(42)
    truth = rng.gamma(4.0, 2.0, size=50)
    data = truth + rng.normal(0, 1.5, size=(3, 50))
    data = np.abs(data)
    data[rng.random(data.shape) < 0.15] = nan
    expected = krippendorff.alpha(reliability_data=data, level_of_measurement=level)
    assert krippendorff_alpha(data, level).value == pytest.approx(expected, abs=1e-10)


def test_string_labels_nominal_and_ordinal_with_value_order():
    codes = np.array(KRIPPENDORFF_2011)
    names = np.array(["very low", "low", "mid", "high", "very high"], dtype=object)
    labels = [[None if math.isnan(x) else names[int(x) - 1] for x in row] for row in codes]
    assert krippendorff_alpha(labels, "nominal").value == pytest.approx(0.743421052631579, abs=1e-12)
    ordinal = krippendorff_alpha(labels, "ordinal", values=list(names))
    assert ordinal.value == pytest.approx(krippendorff_alpha(KRIPPENDORFF_2011, "ordinal").value, abs=1e-12)
    with pytest.raises(ValueError, match="values="):
        krippendorff_alpha(labels, "ordinal")
    with pytest.raises(ValueError, match="numeric"):
        krippendorff_alpha(labels, "interval")


def test_perfect_agreement_and_undefined():
    assert krippendorff_alpha([[1, 2, 3], [1, 2, 3]], "interval").value == 1.0
    same = krippendorff_alpha([[1, 1, 1], [1, 1, nan]])
    assert math.isnan(same.value) and same.n == 2


def test_bootstrap_interval_is_reproducible_and_brackets_the_estimate():
    rng = np.random.default_rng(0)
    truth = rng.integers(1, 5, size=60)
    data = np.where(rng.random((3, 60)) < 0.7, truth, rng.integers(1, 5, size=(3, 60))).astype(float)
    est = krippendorff_alpha(data, "ordinal", ci=True, n_boot=500, seed=1)
    assert est.ci_low < est.value < est.ci_high
    assert krippendorff_alpha(data, "ordinal", ci=True, n_boot=500, seed=1) == est
    assert krippendorff_alpha(data, "ordinal", ci=True, n_boot=500, seed=2) != est
    # Four times the units: the interval should shrink by about half.
    wide = est.ci_high - est.ci_low
    big = np.tile(data, 4)
    narrow = krippendorff_alpha(big, "ordinal", ci=True, n_boot=500, seed=1)
    assert 0.3 * wide < narrow.ci_high - narrow.ci_low < 0.7 * wide


def test_bootstrap_equals_explicit_resampling_of_units():
    # The implementation reweights units instead of copying them; resampling columns for real and
    # handing each replicate to the reference package must give the same percentiles.
    rng = np.random.default_rng(9)
    truth = rng.integers(1, 4, size=30)
    data = np.where(rng.random((3, 30)) < 0.7, truth, rng.integers(1, 4, size=(3, 30))).astype(float)
    est = krippendorff_alpha(data, "nominal", ci=True, n_boot=200, seed=3, confidence=0.9)
    draws = np.random.default_rng(3).multinomial(30, np.full(30, 1 / 30), size=200)
    reps = [
        krippendorff.alpha(np.repeat(data, counts, axis=1), level_of_measurement="nominal")
        for counts in draws
    ]
    assert (est.ci_low, est.ci_high) == pytest.approx(tuple(np.percentile(reps, [5, 95])), abs=1e-12)


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="level"):
        krippendorff_alpha(KRIPPENDORFF_2011, "circular")
    with pytest.raises(ValueError, match="two or more readers"):
        krippendorff_alpha([[1, nan], [nan, 2]])
    with pytest.raises(ValueError, match="2-D"):
        krippendorff_alpha([1, 2, 3])
    with pytest.raises(ValueError, match="no values"):
        krippendorff_alpha([[nan, nan], [None, None]])
    with pytest.raises(ValueError, match="non-negative"):
        krippendorff_alpha([[-1, 2], [1, 2]], "ratio")
    with pytest.raises(ValueError, match="n_boot"):
        krippendorff_alpha(KRIPPENDORFF_2011, ci=True, n_boot=1)
    with pytest.raises(ValueError, match="not in values"):
        krippendorff_alpha([[1, 2], [1, 3]], "ordinal", values=[1, 2])
