"""Networks chosen by name from a small versioned config (pure torch/MONAI; no Django).

A model config is a plain dict, stored with each trained model so that its weights can be rebuilt later::

    {"version": 1, "task": "classification", "network": "smallcnn", "spatial_dims": 2, "in_channels": 1,
     "num_classes": 2, "dropout": 0.2, "input_size": [28, 28]}

Classifiers are always wrapped in :class:`Classifier` (``features`` -> ``dropout`` -> ``head``), whatever the
backbone, so MC dropout (dropout on the penultimate features) and embeddings (``embed``) work the same way for
every network. Weights are always randomly initialised: nothing is ever downloaded.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

CONFIG_VERSION = 1
TASKS = ("classification", "segmentation")
CLASSIFIERS = ("densenet121", "resnet18", "resnet10", "smallcnn")
SEGMENTERS = ("unet",)
NETWORKS = CLASSIFIERS + SEGMENTERS
INTENSITY_MODES = ("scale", "normalize")
BALANCE_MODES = ("weights", "sampler", "none")

#: Keys every config must have.
REQUIRED_KEYS = ("version", "task", "network", "spatial_dims", "in_channels", "num_classes", "input_size")
#: Optional keys and their defaults (``window`` has no default: absent means no windowing).
OPTIONAL_DEFAULTS: dict[str, Any] = {
    "dropout": 0.2,
    "intensity": "scale",  # without a window: "scale" (min-max to [0, 1]) or "normalize" (z-score)
    "balance": "weights",  # classification: inverse-frequency loss weights, a weighted sampler, or none
    "augment": True,  # light augmentation in train_transforms
    "width": 16,  # smallcnn: channels of the first block (then 2x, 4x)
    "channels": [16, 32, 64],  # unet
    "strides": [2, 2],  # unet
    "num_res_units": 1,  # unet
}
OPTIONAL_KEYS = (*OPTIONAL_DEFAULTS, "window")

# Minimum input edge per network: DenseNet-121 halves the resolution 5 times (stem conv, max-pool, three
# transitions whose 2x2 average pooling fails on a 1-pixel map), so it needs at least 32 pixels per axis.
_MIN_EDGE = {"densenet121": 32, "resnet18": 8, "resnet10": 8, "smallcnn": 8}


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def validate_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Check a model config and return a copy with the optional keys filled in; ``ValueError`` if invalid."""
    if not isinstance(config, Mapping):
        raise ValueError(f"config must be a dict, not {type(config).__name__}")
    missing = [key for key in REQUIRED_KEYS if key not in config]
    if missing:
        raise ValueError(f"config is missing required key(s): {', '.join(missing)}")
    unknown = sorted(set(config) - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS))
    if unknown:
        valid = ", ".join((*REQUIRED_KEYS, *OPTIONAL_KEYS))
        raise ValueError(f"config has unknown key(s): {', '.join(unknown)}; valid keys: {valid}")
    cfg = {**OPTIONAL_DEFAULTS, **dict(config)}
    if cfg["version"] != CONFIG_VERSION:
        raise ValueError(
            f"unsupported config version {cfg['version']!r}; this code reads version {CONFIG_VERSION}"
        )
    if cfg["task"] not in TASKS:
        raise ValueError(f"unknown task {cfg['task']!r}; valid: {', '.join(TASKS)}")
    if cfg["network"] not in NETWORKS:
        raise ValueError(f"unknown network {cfg['network']!r}; valid: {', '.join(NETWORKS)}")
    if cfg["task"] == "classification" and cfg["network"] not in CLASSIFIERS:
        raise ValueError(f"network {cfg['network']!r} is not a classifier; valid: {', '.join(CLASSIFIERS)}")
    if cfg["task"] == "segmentation" and cfg["network"] not in SEGMENTERS:
        raise ValueError(f"network {cfg['network']!r} cannot segment; valid: {', '.join(SEGMENTERS)}")
    if cfg["spatial_dims"] not in (2, 3) or not _is_int(cfg["spatial_dims"]):
        raise ValueError(f"spatial_dims must be 2 or 3, got {cfg['spatial_dims']!r}")
    dims = int(cfg["spatial_dims"])
    if not _is_int(cfg["in_channels"]) or cfg["in_channels"] < 1:
        raise ValueError(f"in_channels must be a positive int, got {cfg['in_channels']!r}")
    if not _is_int(cfg["num_classes"]) or cfg["num_classes"] < 2:
        raise ValueError(
            f"num_classes must be an int >= 2 (segmentation counts the background), got {cfg['num_classes']!r}"
        )
    size = cfg["input_size"]
    if isinstance(size, str | bytes) or not isinstance(size, Sequence) or len(size) != dims:
        raise ValueError(f"input_size must list {dims} sizes (one per spatial dim), got {size!r}")
    if not all(_is_int(s) and s >= 1 for s in size):
        raise ValueError(f"input_size must hold positive ints, got {size!r}")
    cfg["input_size"] = [int(s) for s in size]
    min_edge = _MIN_EDGE.get(cfg["network"], 1)
    if min(cfg["input_size"]) < min_edge:
        raise ValueError(
            f"network {cfg['network']!r} needs input_size >= {min_edge} on every axis, got {cfg['input_size']}"
        )
    if not _is_number(cfg["dropout"]) or not 0.0 <= float(cfg["dropout"]) < 1.0:
        raise ValueError(f"dropout must be a number in [0, 1), got {cfg['dropout']!r}")
    if cfg["intensity"] not in INTENSITY_MODES:
        raise ValueError(f"intensity must be one of {', '.join(INTENSITY_MODES)}, got {cfg['intensity']!r}")
    if cfg["balance"] not in BALANCE_MODES:
        raise ValueError(f"balance must be one of {', '.join(BALANCE_MODES)}, got {cfg['balance']!r}")
    if not isinstance(cfg["augment"], bool):
        raise ValueError(f"augment must be true or false, got {cfg['augment']!r}")
    if not _is_int(cfg["width"]) or cfg["width"] < 1:
        raise ValueError(f"width must be a positive int, got {cfg['width']!r}")
    window = cfg.get("window")
    if window is not None:
        if not isinstance(window, Mapping) or set(window) != {"center", "width"}:
            raise ValueError(f"window must be {{'center': c, 'width': w}}, got {window!r}")
        if not all(_is_number(window[k]) and math.isfinite(window[k]) for k in ("center", "width")):
            raise ValueError(f"window center and width must be finite numbers, got {window!r}")
        if window["width"] <= 0:
            raise ValueError(f"window width must be > 0, got {window['width']!r}")
        cfg["window"] = {"center": float(window["center"]), "width": float(window["width"])}
    if cfg["network"] == "unet":
        channels, strides = cfg["channels"], cfg["strides"]
        if (
            not isinstance(channels, Sequence)
            or len(channels) < 2
            or not all(_is_int(c) and c > 0 for c in channels)
        ):
            raise ValueError(f"channels must list at least 2 positive ints, got {channels!r}")
        if (
            not isinstance(strides, Sequence)
            or len(strides) != len(channels) - 1
            or not all(_is_int(s) and s > 0 for s in strides)
        ):
            raise ValueError(
                f"strides must list len(channels) - 1 = {len(channels) - 1} positive ints, got {strides!r}"
            )
        factor = math.prod(strides)
        if any(s % factor for s in cfg["input_size"]):
            raise ValueError(
                f"unet input_size {cfg['input_size']} must be divisible by prod(strides) = {factor}"
            )
        if not _is_int(cfg["num_res_units"]) or cfg["num_res_units"] < 0:
            raise ValueError(f"num_res_units must be a non-negative int, got {cfg['num_res_units']!r}")
        cfg["channels"], cfg["strides"] = [int(c) for c in channels], [int(s) for s in strides]
    return cfg


class Classifier(nn.Module):
    """``head(dropout(features(x)))``: any backbone reduced to a feature vector, then dropout, then a linear head.

    ``embed(x)`` returns the penultimate features ``(n, num_features)`` (dropout off in eval mode) used for
    diversity-based selection; MC dropout turns only ``dropout`` (and any dropout inside the backbone) on.
    """

    def __init__(self, features: nn.Module, num_features: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.features = features
        self.dropout = nn.Dropout(p=dropout)
        self.head = nn.Linear(num_features, num_classes)
        self.num_features = num_features
        self.num_classes = num_classes

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.features(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.embed(x)))


def _conv(dims: int) -> type[nn.Module]:
    return nn.Conv2d if dims == 2 else nn.Conv3d


def _bn(dims: int) -> type[nn.Module]:
    return nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d


def _small_cnn_features(dims: int, in_channels: int, width: int) -> tuple[nn.Module, int]:
    """Three conv-BN-ReLU blocks (width, 2 width, 4 width channels), max-pooled, then global average pooling.

    About 24k parameters at width 16 (6k at width 8): trains on 28x28 images in seconds on a CPU.
    """
    conv, bn = _conv(dims), _bn(dims)
    pool = nn.MaxPool2d if dims == 2 else nn.MaxPool3d
    gap = nn.AdaptiveAvgPool2d if dims == 2 else nn.AdaptiveAvgPool3d
    layers: list[nn.Module] = []
    c_in = in_channels
    for i, c_out in enumerate((width, 2 * width, 4 * width)):
        layers += [conv(c_in, c_out, kernel_size=3, padding=1, bias=False), bn(c_out), nn.ReLU(inplace=True)]
        if i < 2:
            layers.append(pool(2, ceil_mode=True))
        c_in = c_out
    layers += [gap(1), nn.Flatten(1)]
    return nn.Sequential(*layers), c_in


def build_network(config: Mapping[str, Any]) -> nn.Module:
    """The network a (validated) config names, randomly initialised (seed torch first for reproducibility).

    Classification: a :class:`Classifier` around ``smallcnn`` (ours), MONAI ``DenseNet121`` or MONAI
    ``resnet10``/``resnet18`` (``pretrained=False``). Segmentation: MONAI ``UNet`` with ``num_classes`` output
    channels (background included) and ``dropout``.
    """
    from monai.networks import nets as mnets

    cfg = validate_config(config)
    dims, c_in, n_cls = cfg["spatial_dims"], cfg["in_channels"], cfg["num_classes"]
    name = cfg["network"]
    if name == "unet":
        return mnets.UNet(
            spatial_dims=dims,
            in_channels=c_in,
            out_channels=n_cls,
            channels=cfg["channels"],
            strides=cfg["strides"],
            num_res_units=cfg["num_res_units"],
            dropout=float(cfg["dropout"]),
        )
    if name == "smallcnn":
        features, d = _small_cnn_features(dims, c_in, cfg["width"])
    elif name == "densenet121":
        dense = mnets.DenseNet121(spatial_dims=dims, in_channels=c_in, out_channels=n_cls)
        # DenseNet's class_layers are relu -> pool -> flatten -> out: keep all but the linear layer.
        features = nn.Sequential(
            dense.features, dense.class_layers.relu, dense.class_layers.pool, nn.Flatten(1)
        )
        d = dense.class_layers.out.in_features
    else:  # resnet10 / resnet18, without their fc layer (feed_forward=False): pooled features
        factory = mnets.resnet10 if name == "resnet10" else mnets.resnet18
        features = factory(
            pretrained=False, spatial_dims=dims, n_input_channels=c_in, num_classes=n_cls, feed_forward=False
        )
        d = features.in_planes  # channels after layer4 (block_inplanes[-1] x block expansion)
    return Classifier(features, int(d), n_cls, float(cfg["dropout"]))
