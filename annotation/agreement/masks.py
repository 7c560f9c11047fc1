"""Agreement between segmentation masks: Dice overlap and the 95th-percentile Hausdorff distance.

Masks are binary numpy arrays (bool, or numbers that are all 0 or 1), 2-D or 3-D, in array (z, y, x)
order; ``spacing`` gives the voxel size along each array axis in millimetres, in the same order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import combinations
from typing import Any

import numpy as np
from scipy import ndimage

__all__ = ["dice", "hausdorff95", "pairwise_mask_agreement"]


def as_mask(mask: Any, name: str = "mask") -> np.ndarray:
    """``mask`` as a 2-D or 3-D bool array; ValueError for other shapes or for values other than 0/1."""
    arr = np.asarray(mask)
    if arr.ndim not in (2, 3):
        raise ValueError(f"{name} must be a 2-D or 3-D array, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    if arr.dtype == bool:
        return arr
    if not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{name} must be a bool or numeric array, got dtype {arr.dtype}")
    if not np.all((arr == 0) | (arr == 1)):
        # A label map (0, 1, 2, ...) passed by mistake would otherwise be silently binarised.
        raise ValueError(f"{name} must be binary (only 0 and 1), got values {np.unique(arr)[:5].tolist()}...")
    return arr.astype(bool)


def _same_shape(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"masks must have the same shape, got {a.shape} and {b.shape}")


def _as_spacing(spacing: float | Sequence[float] | None, ndim: int) -> tuple[float, ...]:
    """Voxel spacing, one positive length per axis (a scalar means isotropic; None means 1)."""
    if spacing is None:
        return (1.0,) * ndim
    values = [float(spacing)] * ndim if np.isscalar(spacing) else [float(s) for s in spacing]  # type: ignore[union-attr]
    if len(values) != ndim:
        raise ValueError(f"spacing needs one value per axis ({ndim}), got {len(values)}")
    if not all(math.isfinite(s) and s > 0 for s in values):
        raise ValueError(f"spacing must be positive and finite, got {values}")
    return tuple(values)


def dice(a: Any, b: Any) -> float:
    """Dice similarity coefficient 2|A and B| / (|A| + |B|) of two binary masks of the same shape.

    Two empty masks agree perfectly (1.0): both readers said "nothing to segment".
    """
    ma, mb = as_mask(a, "a"), as_mask(b, "b")
    _same_shape(ma, mb)
    total = int(ma.sum()) + int(mb.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(ma, mb).sum()) / total


def _surface(mask: np.ndarray) -> np.ndarray:
    """Voxels of the mask with at least one face-neighbour outside it (the array border counts as outside)."""
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure=structure, border_value=0)


def hausdorff95(a: Any, b: Any, spacing: float | Sequence[float] | None = None) -> float:
    """95th percentile of the symmetric surface distances between two binary masks, in mm.

    The surface distances are, for every surface voxel of A, the distance to the nearest surface voxel of
    B, and vice versa; both sets are pooled and their 95th percentile (linear interpolation) is returned.
    Distances come from Euclidean distance transforms that honour the voxel ``spacing``, so they are
    exact distances between voxel centres. The percentile makes the measure robust to a few stray voxels,
    unlike the plain Hausdorff distance (the maximum).

    Both masks empty: 0.0 (agreement). One empty and the other not: ``inf`` (no surface to measure to).
    """
    ma, mb = as_mask(a, "a"), as_mask(b, "b")
    _same_shape(ma, mb)
    sampling = _as_spacing(spacing, ma.ndim)
    empty_a, empty_b = not ma.any(), not mb.any()
    if empty_a and empty_b:
        return 0.0
    if empty_a or empty_b:
        return math.inf
    surf_a, surf_b = _surface(ma), _surface(mb)
    # distance_transform_edt measures to the nearest zero, so invert the surfaces: each voxel's value is then
    # its distance to the nearest surface voxel of the other mask.
    to_b = ndimage.distance_transform_edt(~surf_b, sampling=sampling)
    to_a = ndimage.distance_transform_edt(~surf_a, sampling=sampling)
    distances = np.concatenate([to_b[surf_a], to_a[surf_b]])
    return float(np.percentile(distances, 95))


def pairwise_mask_agreement(
    masks: Mapping[str, Any], spacing: float | Sequence[float] | None = None
) -> dict[tuple[str, str], dict[str, float]]:
    """Dice and HD95 for every pair of readers' masks of one case.

    Args:
        masks: ``{reader_name: mask}``, at least two, all of the same shape.
        spacing: voxel size along each array axis in mm (see ``hausdorff95``).

    Returns:
        ``{(name_i, name_j): {"dice": float, "hd95": float}}`` for i < j in the mapping's order.
    """
    if not isinstance(masks, Mapping):
        raise ValueError("masks must be a mapping {reader_name: mask}")
    if len(masks) < 2:
        raise ValueError(f"pairwise agreement needs masks from at least two readers, got {len(masks)}")
    arrays = {name: as_mask(m, f"mask of {name!r}") for name, m in masks.items()}
    shapes = {arr.shape for arr in arrays.values()}
    if len(shapes) > 1:
        raise ValueError(f"all masks must have the same shape, got {sorted(shapes)}")
    return {
        (i, j): {"dice": dice(arrays[i], arrays[j]), "hd95": hausdorff95(arrays[i], arrays[j], spacing)}
        for i, j in combinations(arrays, 2)
    }
