"""MONAI dictionary transforms (keys ``image`` and, for segmentation, ``label``) from decoded numpy frames.

Both pipelines: channel first -> intensity (a window ``{"center", "width"}`` mapped to [0, 1] with clipping,
else per-image min-max scaling or z-score normalisation) -> resize to ``input_size`` -> tensors. Training adds
light augmentation (random flip along the last axis, small random affine). Deterministic steps come first, so a
``monai.data.CacheDataset`` caches them once and only the random steps run every epoch.

Classification labels (ints) pass through untouched; segmentation masks get a channel axis, nearest-neighbour
resizing and the same spatial augmentation as the image.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.transforms import (
    Compose,
    EnsureTyped,
    MapTransform,
    NormalizeIntensityd,
    RandAffined,
    RandFlipd,
    Resized,
    ScaleIntensityd,
    ScaleIntensityRanged,
)

from .nets import validate_config


class ChannelFirstd(MapTransform):
    """Give every keyed array a leading channel axis, whatever layout a decoded frame comes in.

    ``(*spatial)`` -> ``(1, *spatial)``; ``(*spatial, c)`` with a trailing colour axis (c in 1..4, or equal to
    ``in_channels``) -> ``(c, *spatial)``; ``(c, *spatial)`` is kept. For the ``image`` key, an RGB(A) frame
    fed to a 1-channel network is converted to grey (mean of R, G, B). Images become float32; masks keep their
    values. Unlike MONAI's ``EnsureChannelFirstd`` this needs no metadata: the platform hands over bare arrays.
    """

    def __init__(self, keys, spatial_dims: int, in_channels: int, image_key: str = "image") -> None:
        super().__init__(keys)
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.image_key = image_key

    def _channel_first(self, arr: np.ndarray, key: Hashable) -> np.ndarray:
        dims = self.spatial_dims
        if arr.ndim == dims:
            return arr[None]
        if arr.ndim != dims + 1:
            raise ValueError(
                f"{key}: expected {dims} spatial axes with an optional channel axis, got shape {arr.shape}"
            )
        if arr.shape[0] in (1, self.in_channels):
            return arr
        if arr.shape[-1] in (1, 3, 4, self.in_channels):
            return np.moveaxis(arr, -1, 0)
        return arr

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            arr = d[key]
            arr = arr.detach().cpu().numpy() if isinstance(arr, torch.Tensor) else np.asarray(arr)
            arr = self._channel_first(arr, key)
            if key == self.image_key:
                arr = arr.astype(np.float32, copy=False)
                if arr.shape[0] != self.in_channels:
                    if self.in_channels == 1 and arr.shape[0] in (3, 4):
                        arr = arr[:3].mean(axis=0, keepdims=True)
                    else:
                        raise ValueError(
                            f"{key} has {arr.shape[0]} channels but the network expects {self.in_channels}"
                        )
            d[key] = np.ascontiguousarray(arr)
        return d


def _keys(cfg: dict) -> list[str]:
    return ["image", "label"] if cfg["task"] == "segmentation" else ["image"]


def _deterministic(cfg: dict) -> list:
    keys = _keys(cfg)
    steps: list = [ChannelFirstd(keys, cfg["spatial_dims"], cfg["in_channels"])]
    window = cfg.get("window")
    if window is not None:
        lo, hi = window["center"] - window["width"] / 2.0, window["center"] + window["width"] / 2.0
        steps.append(ScaleIntensityRanged("image", a_min=lo, a_max=hi, b_min=0.0, b_max=1.0, clip=True))
    elif cfg["intensity"] == "normalize":
        steps.append(NormalizeIntensityd("image", channel_wise=True))
    else:
        steps.append(ScaleIntensityd("image", minv=0.0, maxv=1.0))
    linear = "bilinear" if cfg["spatial_dims"] == 2 else "trilinear"
    modes = [linear, "nearest"][: len(keys)]
    steps.append(
        Resized(keys, spatial_size=cfg["input_size"], mode=modes, anti_aliasing=[True, False][: len(keys)])
    )
    return steps


def _to_tensors(cfg: dict) -> list:
    steps: list = [EnsureTyped("image", dtype=torch.float32, track_meta=False)]
    if cfg["task"] == "segmentation":
        steps.append(EnsureTyped("label", dtype=torch.long, track_meta=False))
    return steps


def eval_transforms(config: Mapping[str, Any]) -> Compose:
    """Deterministic preprocessing for validation, scoring and inference."""
    cfg = validate_config(config)
    return Compose([*_deterministic(cfg), *_to_tensors(cfg)])


def train_transforms(config: Mapping[str, Any]) -> Compose:
    """:func:`eval_transforms` plus light augmentation (unless ``config["augment"]`` is false).

    Random flip of the last spatial axis (p = 0.5) and a random affine (p = 0.5: rotation up to ~6 degrees,
    scaling +-10%, shift up to 6% of the size, border padding), masks with nearest-neighbour interpolation.
    Call ``.set_random_state(seed)`` on the result for reproducible augmentation.
    """
    cfg = validate_config(config)
    steps = _deterministic(cfg)
    if cfg["augment"]:
        keys = _keys(cfg)
        dims = cfg["spatial_dims"]
        linear = "bilinear"  # grid_sample's "bilinear" is trilinear in 3D
        steps += [
            RandFlipd(keys, prob=0.5, spatial_axis=dims - 1),
            RandAffined(
                keys,
                prob=0.5,
                spatial_size=cfg["input_size"],
                rotate_range=0.1 if dims == 2 else (0.1, 0.1, 0.1),
                scale_range=[0.1] * dims,
                translate_range=[0.06 * s for s in cfg["input_size"]],
                mode=[linear, "nearest"][: len(keys)],
                padding_mode="border",
                cache_grid=True,
            ),
        ]
    return Compose([*steps, *_to_tensors(cfg)])
