"""Score a pool with a trained classifier: MC-dropout probabilities and embeddings; evaluation metrics.

:func:`score_items` gives what :func:`learning.strategies.rank` needs: ``probs`` (n, C) -- the mean of ``T``
MC-dropout passes (Gal & Ghahramani 2016: the network in eval mode, only its dropout layers sampling) --,
``mc_probs`` (T, n, C) and ``embeddings`` (n, d), the penultimate features with dropout off.
:func:`evaluate` computes the metrics :func:`learning.core.train.train_model` reports.

Items are lists of ``{"image": np.ndarray, "label": ...}`` (decoded frames) or a :class:`Prepared` batch from
:func:`prepare_items` (the eval transforms already applied, e.g. a pool scored every round).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from .nets import validate_config
from .transforms import eval_transforms


@dataclass(frozen=True, eq=False)
class Prepared:
    """Items after :func:`eval_transforms`: ``images`` (n, C, *spatial) float32, ``labels`` (n,) ints for
    classification or (n, 1, *spatial) masks for segmentation, or ``None`` when unlabelled."""

    images: torch.Tensor
    labels: torch.Tensor | None

    def __len__(self) -> int:
        return int(self.images.shape[0])


@dataclass(frozen=True, eq=False)
class ScoreResult:
    """``probs`` (n, C) float64, mean over passes; ``mc_probs`` (T, n, C); ``embeddings`` (n, d) float32."""

    probs: np.ndarray
    mc_probs: np.ndarray
    embeddings: np.ndarray


@contextlib.contextmanager
def no_meta() -> Iterator[None]:
    """Run MONAI transforms on plain tensors (no ``MetaTensor`` bookkeeping: several times faster).

    MONAI's switch is process-wide; it is restored on exit.
    """
    from monai.data import get_track_meta, set_track_meta

    before = get_track_meta()
    set_track_meta(False)
    try:
        yield
    finally:
        set_track_meta(before)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device`` as a ``torch.device``; ``None`` picks CUDA when available, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def prepare_items(items: Sequence[Mapping[str, Any]] | Prepared, config: Mapping[str, Any]) -> Prepared:
    """Apply :func:`eval_transforms` to every item once and stack the results (labels when all have one)."""
    if isinstance(items, Prepared):
        return items
    cfg = validate_config(config)
    if len(items) == 0:
        return Prepared(torch.empty((0, cfg["in_channels"], *cfg["input_size"])), None)
    transform = eval_transforms(cfg)
    with no_meta():
        out = [transform(dict(item)) for item in items]
    images = torch.stack([torch.as_tensor(o["image"], dtype=torch.float32) for o in out])
    labels = None
    if all(o.get("label") is not None for o in out):
        if cfg["task"] == "classification":
            labels = torch.as_tensor([int(o["label"]) for o in out], dtype=torch.long)
        else:
            labels = torch.stack([torch.as_tensor(o["label"]).long() for o in out])
    return Prepared(images, labels)


def _batches(n: int, batch_size: int) -> Iterator[slice]:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for start in range(0, n, batch_size):
        yield slice(start, min(n, start + batch_size))


def _dropouts(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]


def _flip(x: torch.Tensor) -> torch.Tensor:
    return torch.flip(x, dims=(-1,))


def _softmax64(logits: torch.Tensor) -> np.ndarray:
    p = torch.softmax(logits.float(), dim=-1).double().cpu().numpy()
    return p / p.sum(axis=-1, keepdims=True)


@torch.no_grad()
def score_items(
    model: nn.Module,
    items: Sequence[Mapping[str, Any]] | Prepared,
    *,
    config: Mapping[str, Any],
    mc_passes: int = 8,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    tta: bool = False,
    seed: int | None = None,
) -> ScoreResult:
    """MC-dropout probabilities and embeddings of ``items`` for a :class:`~learning.core.nets.Classifier`.

    The model runs in eval mode (batch-norm statistics frozen) with only its dropout layers sampling, for
    ``mc_passes`` passes (``T = 1``: one deterministic pass, dropout off). When all dropout sits between the
    features and the head (every network of :func:`build_network`), the backbone runs once and only
    ``dropout -> head`` is resampled over the whole pool's features: the same distribution at a fraction of
    the cost, and the masks (given ``seed``) do not depend on ``batch_size``. ``tta`` averages each pass
    over the image and its flip along the last axis (embeddings too). ``seed`` makes the dropout masks
    reproducible (the global torch RNG is left as it was). The model's train/eval mode is restored afterwards.
    """
    cfg = validate_config(config)
    if cfg["task"] != "classification":
        raise ValueError("score_items scores classifiers; segmentation models are evaluated with evaluate()")
    for attr in ("features", "dropout", "head"):
        if not hasattr(model, attr):
            raise ValueError(f"model must be a learning.core.nets.Classifier (missing .{attr})")
    if isinstance(mc_passes, bool) or not isinstance(mc_passes, int) or mc_passes < 1:
        raise ValueError(f"mc_passes must be an int >= 1, got {mc_passes!r}")
    dev = resolve_device(device)
    prepared = prepare_items(items, cfg)
    n = len(prepared)
    was_training = model.training
    model.to(dev).eval()
    inner = _dropouts(model.features)
    passes = mc_passes if mc_passes > 1 else 1
    rng_ctx = (
        torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else [])
        if seed is not None
        else contextlib.nullcontext()
    )
    mc = np.empty((passes, n, int(model.head.out_features)), dtype=np.float64)
    n_views = 2 if tta else 1
    try:
        with rng_ctx:
            if seed is not None:
                torch.manual_seed(seed)
            feats: list[list[torch.Tensor]] = [[] for _ in range(n_views)]
            for sl in _batches(n, batch_size):
                x = prepared.images[sl].to(dev, non_blocking=True)
                for v, view in enumerate([x, _flip(x)][:n_views]):
                    feats[v].append(model.embed(view))
            width = int(model.num_features)
            pooled = [torch.cat(f) if f else torch.empty((0, width), device=dev) for f in feats]
            embeddings = (sum(pooled) / n_views).float().cpu().numpy()
            for t in range(passes):
                if passes > 1:
                    model.dropout.train()
                    for m in inner:
                        m.train()
                # dropout inside the backbone: full stochastic passes, batch by batch
                if inner and passes > 1:
                    for sl in _batches(n, batch_size):
                        x = prepared.images[sl].to(dev, non_blocking=True)
                        views = [x, _flip(x)][:n_views]
                        mc[t, sl] = np.mean([_softmax64(model(v)) for v in views], axis=0)
                else:  # one mask draw over the whole pool: independent of batch_size
                    mc[t] = np.mean([_softmax64(model.head(model.dropout(f))) for f in pooled], axis=0)
                model.eval()
    finally:
        model.train(was_training)
    probs = mc.mean(axis=0)
    return ScoreResult(
        probs=probs / probs.sum(axis=-1, keepdims=True) if n else probs, mc_probs=mc, embeddings=embeddings
    )


def classification_metrics(labels: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    """``auc`` (binary ROC AUC, or macro one-vs-rest for C > 2; ``None`` when the labels hold a single class),
    ``recall`` (per class; ``None`` for a class absent from the labels), ``balanced_accuracy`` (mean of the
    defined recalls), ``accuracy``, ``val_loss`` (mean cross-entropy), ``n`` and ``class_counts``."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(labels, dtype=np.int64).ravel()
    p = np.asarray(probs, dtype=np.float64)
    n, C = p.shape
    if y.shape[0] != n:
        raise ValueError(f"{y.shape[0]} labels for {n} predictions")
    counts = np.bincount(y, minlength=C)[:C] if n else np.zeros(C, dtype=np.int64)
    pred = p.argmax(axis=1)
    present = np.flatnonzero(counts)
    auc: float | None = None
    if present.size >= 2:
        if C == 2:
            auc = float(roc_auc_score(y, p[:, 1]))
        else:  # macro one-vs-rest over the classes present (a missing class has no ROC curve)
            auc = float(np.mean([roc_auc_score(y == c, p[:, c]) for c in present]))
    recall = [float(np.mean(pred[y == c] == c)) if counts[c] else None for c in range(C)]
    defined = [r for r in recall if r is not None]
    loss = float(-np.mean(np.log(np.clip(p[np.arange(n), y], 1e-7, 1.0)))) if n else math.nan
    return {
        "auc": auc,
        "recall": recall,
        "balanced_accuracy": float(np.mean(defined)) if defined else None,
        "accuracy": float(np.mean(pred == y)) if n else None,
        "val_loss": loss,
        "n": int(n),
        "class_counts": counts.astype(int).tolist(),
    }


def dice_per_class(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> list[float | None]:
    """Mean Dice per foreground class over images (label maps (n, 1, *spatial)); an image where a class is
    absent from both prediction and target is skipped for that class; ``None`` when skipped everywhere."""
    pred, target = pred.reshape(pred.shape[0], -1), target.reshape(target.shape[0], -1)
    out: list[float | None] = []
    for c in range(1, num_classes):
        a, b = pred == c, target == c
        inter = (a & b).sum(dim=1).double()
        total = (a.sum(dim=1) + b.sum(dim=1)).double()
        valid = total > 0
        out.append(float((2 * inter[valid] / total[valid]).mean()) if bool(valid.any()) else None)
    return out


@torch.no_grad()
def evaluate(
    model: nn.Module,
    items: Sequence[Mapping[str, Any]] | Prepared,
    config: Mapping[str, Any],
    *,
    batch_size: int = 64,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Metrics of ``model`` (deterministic eval-mode pass) on labelled ``items``.

    Classification: :func:`classification_metrics`. Segmentation: ``dice`` (mean over foreground classes),
    ``dice_per_class`` and ``val_loss`` (Dice + cross-entropy, as trained).
    """
    cfg = validate_config(config)
    prepared = prepare_items(items, cfg)
    if prepared.labels is None:
        raise ValueError("evaluate needs labelled items")
    dev = resolve_device(device)
    was_training = model.training
    model.to(dev).eval()
    try:
        if cfg["task"] == "classification":
            probs = [
                _softmax64(model(prepared.images[sl].to(dev))) for sl in _batches(len(prepared), batch_size)
            ]
            p = np.concatenate(probs) if probs else np.empty((0, cfg["num_classes"]))
            return classification_metrics(prepared.labels.numpy(), p)
        from monai.losses import DiceCELoss

        loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
        preds, losses = [], []
        for sl in _batches(len(prepared), batch_size):
            logits = model(prepared.images[sl].to(dev)).float()
            target = prepared.labels[sl].to(dev)
            losses.append(float(loss_fn(logits, target)) * (sl.stop - sl.start))
            preds.append(logits.argmax(dim=1, keepdim=True).cpu())
        per_class = dice_per_class(torch.cat(preds), prepared.labels, cfg["num_classes"])
        defined = [d for d in per_class if d is not None]
        return {
            "dice": float(np.mean(defined)) if defined else None,
            "dice_per_class": per_class,
            "val_loss": float(sum(losses) / max(len(prepared), 1)),
            "n": len(prepared),
        }
    finally:
        model.train(was_training)
