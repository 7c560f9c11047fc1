"""Mask agreement: Dice and HD95 on shapes with known answers, and against brute-force references."""

import math

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial import distance

from annotation.agreement import dice, hausdorff95, pairwise_mask_agreement


def square(shape=(40, 40), top=10, left=10, size=10) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[top : top + size, left : left + size] = True
    return mask


def brute_force_hd95(a: np.ndarray, b: np.ndarray, spacing) -> float:
    """HD95 from first principles: boundary voxels found by looking at each face-neighbour (outside the
    array counts as background), all pairwise distances in mm, pooled 95th percentile."""

    def boundary(mask):
        padded = np.pad(mask, 1)
        inner = np.ones_like(mask)
        for axis in range(mask.ndim):
            for step in (-1, 1):
                inner &= np.roll(padded, step, axis=axis)[tuple(slice(1, -1) for _ in range(mask.ndim))]
        return np.argwhere(mask & ~inner) * np.asarray(spacing)

    pa, pb = boundary(a), boundary(b)
    d = distance.cdist(pa, pb)
    return float(np.percentile(np.concatenate([d.min(axis=1), d.min(axis=0)]), 95))


def blob(rng, shape, sigma=3.0) -> np.ndarray:
    """A random smooth shape: thresholded Gaussian-filtered noise."""
    field = ndimage.gaussian_filter(rng.normal(size=shape), sigma)
    return field > np.percentile(field, 75)


def test_dice_known_values():
    a, b = square(), square(left=13)  # 10x10 squares overlapping in 10x7
    assert dice(a, b) == pytest.approx(2 * 70 / 200)
    assert dice(a, a) == 1.0
    assert dice(a, np.zeros_like(a)) == 0.0
    assert dice(np.zeros((4, 4)), np.zeros((4, 4))) == 1.0  # both empty: agreement


@pytest.mark.parametrize("seed", range(3))
def test_dice_matches_scipy(seed):
    rng = np.random.default_rng(seed)
    a, b = blob(rng, (12, 30, 30)), blob(rng, (12, 30, 30))
    assert dice(a, b) == pytest.approx(1 - distance.dice(a.ravel(), b.ravel()), abs=1e-12)
    assert dice(a.astype(np.uint8), b.astype(float)) == pytest.approx(dice(a, b))


def test_hd95_shifted_squares():
    a, b = square(), square(left=13)
    assert hausdorff95(a, b) == pytest.approx(3.0)
    assert hausdorff95(a, b, spacing=2.0) == pytest.approx(6.0)
    assert hausdorff95(a, b, spacing=(1.0, 2.0)) == pytest.approx(6.0)  # the shift is along axis 1
    assert hausdorff95(a, b, spacing=(2.0, 1.0)) == pytest.approx(3.0)
    assert hausdorff95(a, a) == 0.0


def test_hd95_shifted_cubes_3d_with_anisotropic_spacing():
    a = np.zeros((20, 30, 30), dtype=bool)
    a[5:13, 10:20, 10:20] = True
    b = np.roll(a, 2, axis=0)  # 2 slices further along z
    assert hausdorff95(a, b, spacing=(2.5, 0.7, 0.7)) == pytest.approx(5.0)


def test_hd95_ignores_a_few_stray_voxels_unlike_the_maximum():
    a = np.zeros((60, 60), dtype=bool)
    a[10:40, 10:40] = True
    b = a.copy()
    b[55, 55] = True  # one speck far away
    assert hausdorff95(a, b) == pytest.approx(0.0)
    assert brute_force_hd95(a, b, (1, 1)) == pytest.approx(0.0)


def test_hd95_empty_masks():
    assert hausdorff95(np.zeros((5, 5)), np.zeros((5, 5))) == 0.0
    assert hausdorff95(square(), np.zeros((40, 40))) == math.inf
    assert hausdorff95(np.zeros((40, 40)), square()) == math.inf


@pytest.mark.parametrize("seed", range(4))
def test_hd95_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    shape = (10, 24, 24) if seed % 2 else (40, 40)
    spacing = (3.0, 0.8, 0.8) if seed % 2 else (0.5, 1.25)
    a, b = blob(rng, shape), blob(rng, shape)
    assert hausdorff95(a, b, spacing) == pytest.approx(brute_force_hd95(a, b, spacing), abs=1e-9)


def test_mask_validation():
    with pytest.raises(ValueError, match="same shape"):
        dice(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="binary"):
        dice(np.array([[0, 2], [1, 0]]), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="2-D or 3-D"):
        hausdorff95(np.zeros(5), np.zeros(5))
    with pytest.raises(ValueError, match="one value per axis"):
        hausdorff95(square(), square(), spacing=(1, 1, 1))
    with pytest.raises(ValueError, match="positive"):
        hausdorff95(square(), square(), spacing=(1, 0))


def test_pairwise_mask_agreement():
    masks = {"ann": square(), "bob": square(left=13), "cy": square()}
    result = pairwise_mask_agreement(masks, spacing=(0.5, 0.5))
    assert list(result) == [("ann", "bob"), ("ann", "cy"), ("bob", "cy")]
    assert result[("ann", "bob")] == {"dice": pytest.approx(0.7), "hd95": pytest.approx(1.5)}
    assert result[("ann", "cy")] == {"dice": 1.0, "hd95": 0.0}
    with pytest.raises(ValueError, match="at least two"):
        pairwise_mask_agreement({"ann": square()})
    with pytest.raises(ValueError, match="same shape"):
        pairwise_mask_agreement({"ann": square(), "bob": np.zeros((3, 3))})
