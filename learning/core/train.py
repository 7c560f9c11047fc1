"""Train a network from a config on labelled items (pure torch/MONAI; no Django).

:func:`train_model` trains a classifier (cross-entropy; inverse-frequency class weights or a weighted sampler
for rare classes) or a segmentation UNet (Dice + cross-entropy), evaluates the held-out validation items after
every epoch, keeps the best epoch's weights and stops early when the monitored metric has not improved for
``patience`` epochs. The monitored metric is the validation ROC AUC (classification) or Dice (segmentation); when
it is undefined (a validation set with a single class, or no foreground anywhere) the validation loss is used.
The validation items are never trained on. On the CPU the same seed gives bit-identical weights.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, RandomSampler, WeightedRandomSampler

from .nets import build_network, validate_config
from .score import Prepared, evaluate, no_meta, prepare_items, resolve_device
from .transforms import train_transforms

ProgressFn = Callable[[int, float, float | None], None]


@dataclass(eq=False)
class TrainResult:
    """``state_dict``: the best epoch's weights (CPU tensors); ``metrics``: validation metrics of that epoch
    (plus ``monitor``, ``best_epoch``, ``epochs_run``, ``stopped_early``); ``history``: one dict per epoch;
    ``best_epoch``: 1-based (the last epoch when there is no validation set); ``class_counts``: training items
    per class (voxels per class for segmentation); ``class_weights``: the loss weights used (or ``None``)."""

    state_dict: dict[str, torch.Tensor]
    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    best_epoch: int
    class_counts: list[int]
    class_weights: list[float] | None = field(default=None)


def class_weights(counts: Sequence[int] | np.ndarray) -> np.ndarray:
    """Inverse-frequency ("balanced") weights ``n / (C * n_c)``: a rare class weighs more, an even split gives 1.

    A class with no training item gets the weight of a class with one (it never enters the loss anyway).
    """
    c = np.asarray(counts, dtype=np.float64)
    if c.ndim != 1 or c.size < 2 or (c < 0).any():
        raise ValueError(f"counts must be non-negative, one per class (>= 2), got {counts!r}")
    total = max(c.sum(), 1.0)
    return total / (c.size * np.maximum(c, 1.0))


def model_from_state(config: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor]) -> nn.Module:
    """Rebuild a trained network: :func:`build_network` then ``load_state_dict`` (eval mode)."""
    model = build_network(config)
    model.load_state_dict(state_dict)
    return model.eval()


def _check_int(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


class _ListDataset(torch.utils.data.Dataset):
    def __init__(self, data: Sequence[Mapping[str, Any]], transform: Callable) -> None:
        # Deterministic steps once (like monai.data.CacheDataset), random steps every epoch.
        from monai.transforms import Compose, Randomizable

        steps = list(transform.transforms)
        first_random = next((i for i, t in enumerate(steps) if isinstance(t, Randomizable)), len(steps))
        head, self.tail = Compose(steps[:first_random]), Compose(steps[first_random:])
        self.tail.set_random_state(seed=int(torch.randint(0, 2**31 - 1, ()).item()))
        self.cached = [head(dict(item)) for item in data]

    def __len__(self) -> int:
        return len(self.cached)

    def __getitem__(self, i: int) -> dict[str, Any]:
        out = self.tail(dict(self.cached[i]))
        return {k: v for k, v in out.items() if k in ("image", "label")}


def _loader(
    dataset: torch.utils.data.Dataset,
    batch_size: int,
    sampler_weights: np.ndarray | None,
    generator: torch.Generator,
    epoch_size: int,
) -> DataLoader:
    drop_last = epoch_size > batch_size and epoch_size % batch_size == 1  # a batch of one breaks batch norm
    if sampler_weights is not None:
        sampler: torch.utils.data.Sampler = WeightedRandomSampler(
            torch.as_tensor(sampler_weights, dtype=torch.double),
            num_samples=epoch_size,
            replacement=True,
            generator=generator,
        )
    else:  # epoch_size > n: several shuffled passes over the items
        sampler = RandomSampler(dataset, replacement=False, num_samples=epoch_size, generator=generator)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last, num_workers=0)


def _monitor(task: str, metrics: dict[str, Any]) -> str:
    """The metric early stopping follows: AUC / Dice, or the validation loss when that is undefined."""
    key = "auc" if task == "classification" else "dice"
    return key if metrics.get(key) is not None else "val_loss"


def train_model(
    config: Mapping[str, Any],
    train_items: Sequence[Mapping[str, Any]],
    val_items: Sequence[Mapping[str, Any]] | Prepared | None,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    patience: int | None,
    seed: int,
    device: str | torch.device | None = None,
    progress: ProgressFn | None = None,
    init_state: Mapping[str, torch.Tensor] | None = None,
    weight_decay: float = 1e-4,
    min_delta: float = 1e-4,
    min_epoch_size: int = 0,
) -> TrainResult:
    """Train ``build_network(config)`` on ``train_items``; keep the weights of the best validation epoch.

    ``train_items``: ``{"image": np.ndarray, "label": int}`` (classification) or ``{"image", "label": mask}``
    (segmentation, integer class per pixel). ``val_items``: held-out items (or :class:`Prepared`), used only to
    pick the epoch and stop early; without them every epoch runs and the last one is kept. ``patience``: epochs
    without an improvement of more than ``min_delta`` before stopping (``None``: never stop early).
    ``config["balance"]``: ``"weights"`` (inverse-frequency cross-entropy weights), ``"sampler"`` (a
    ``WeightedRandomSampler`` drawing classes evenly) or ``"none"``. AdamW with ``lr``/``weight_decay``; mixed
    precision (autocast + GradScaler) only on CUDA. ``init_state`` warm-starts from earlier weights.
    ``min_epoch_size``: an epoch draws at least this many samples (several shuffled passes over a small labelled
    set), so a 20-label round still gets enough gradient steps between validations.
    ``progress(epoch, train_loss, val_metric)`` is called after every epoch (``val_metric``: the monitored
    validation metric, ``None`` without validation). Deterministic on the CPU for a given ``seed``; the
    global torch RNG is left as it was.
    """
    cfg = validate_config(config)
    epochs = _check_int(epochs, "epochs", 1)
    batch_size = _check_int(batch_size, "batch_size", 1)
    if patience is not None:
        patience = _check_int(patience, "patience", 1)
    if not (isinstance(lr, int | float) and math.isfinite(lr) and lr >= 0):
        raise ValueError(f"lr must be a finite number >= 0, got {lr!r}")
    min_epoch_size = _check_int(min_epoch_size, "min_epoch_size", 0)
    if len(train_items) == 0:
        raise ValueError("train_items is empty")
    task, n_cls = cfg["task"], cfg["num_classes"]
    dev = resolve_device(device)
    use_amp = dev.type == "cuda"

    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []), no_meta():
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        model = build_network(cfg)
        if init_state is not None:
            model.load_state_dict(init_state)
        model.to(dev)
        val = prepare_items(val_items, cfg) if val_items is not None and len(val_items) else None
        if val is not None and val.labels is None:
            raise ValueError("val_items must be labelled")
        dataset = _ListDataset(train_items, train_transforms(cfg))

        weights_used: list[float] | None = None
        sampler_weights = None
        if task == "classification":
            labels = np.asarray([int(item["label"]) for item in train_items])
            if labels.min() < 0 or labels.max() >= n_cls:
                raise ValueError(f"labels must be in [0, {n_cls}), got {sorted(set(labels.tolist()))}")
            counts = np.bincount(labels, minlength=n_cls)
            loss_weight = None
            if cfg["balance"] == "weights":
                w = class_weights(counts)
                weights_used = w.tolist()
                loss_weight = torch.as_tensor(w, dtype=torch.float32, device=dev)
            elif cfg["balance"] == "sampler":
                sampler_weights = 1.0 / np.maximum(counts[labels], 1)
            loss_fn: nn.Module = nn.CrossEntropyLoss(weight=loss_weight)
        else:
            from monai.losses import DiceCELoss

            masks = np.concatenate([np.asarray(o["label"]).ravel() for o in dataset.cached]).astype(np.int64)
            counts = np.bincount(masks, minlength=n_cls)[:n_cls]
            loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)

        loader = _loader(dataset, batch_size, sampler_weights, generator, max(len(dataset), min_epoch_size))
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
        autocast = (
            torch.autocast(device_type="cuda", dtype=torch.float16) if use_amp else contextlib.nullcontext()
        )

        history: list[dict[str, Any]] = []
        best_value, best_epoch, best_state, best_metrics = -math.inf, 0, None, {}
        monitor = None
        stale = 0
        for epoch in range(1, epochs + 1):
            started = time.perf_counter()
            model.train()
            total, seen = 0.0, 0
            for batch in loader:
                x = batch["image"].to(dev, non_blocking=True)
                y = batch["label"].to(dev, non_blocking=True)
                if task == "classification":
                    y = y.long().view(-1)
                optimizer.zero_grad(set_to_none=True)
                with autocast:
                    out = model(x)
                loss = loss_fn(out.float(), y)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                total += float(loss.detach()) * x.shape[0]
                seen += x.shape[0]
            train_loss = total / max(seen, 1)
            entry: dict[str, Any] = {"epoch": epoch, "train_loss": train_loss}
            value = None
            if val is not None:
                metrics = evaluate(model, val, cfg, device=dev)
                if monitor is None:  # fixed for the run: the validation set does not change
                    monitor = _monitor(task, metrics)
                value = -float(metrics["val_loss"]) if monitor == "val_loss" else float(metrics[monitor])
                entry.update({f"val_{k}" if not k.startswith("val_") else k: v for k, v in metrics.items()})
            entry["seconds"] = time.perf_counter() - started
            history.append(entry)
            improved = val is None or value > best_value + min_delta
            if improved:
                best_value, best_epoch, stale = (value if value is not None else -math.inf), epoch, 0
                best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
                best_metrics = copy.deepcopy(metrics) if val is not None else {}
            else:
                stale += 1
            if progress is not None:
                shown = None if value is None else (-value if monitor == "val_loss" else value)
                progress(epoch, train_loss, shown)
            if patience is not None and val is not None and stale >= patience:
                break

    assert best_state is not None
    best_metrics.update(
        {
            "monitor": monitor,
            "best_epoch": best_epoch,
            "epochs_run": len(history),
            "stopped_early": len(history) < epochs,
        }
    )
    return TrainResult(
        state_dict=best_state,
        metrics=best_metrics,
        history=history,
        best_epoch=best_epoch,
        class_counts=[int(c) for c in counts],
        class_weights=weights_used,
    )
