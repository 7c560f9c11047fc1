#!/usr/bin/env python
"""Scoring throughput: cases per second that a round scores (MC dropout, probabilities and embeddings), for a
2D and a 3D model, on the CPU and on a GPU when one is present.

Peer, measured in the same run: naive MC dropout, i.e. T full forward passes with dropout sampling, which is
what scoring costs without learning.core.score's shortcut (the backbone once, only dropout -> head resampled).
Inputs are real images: PneumoniaMNIST chest X-rays (2D) and volumes cut from the real 192-slice MR (3D).

    .venv/bin/python bench/scoring.py --out bench/results/scoring.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pydicom
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"

from learning.core.nets import build_network, validate_config  # noqa: E402
from learning.core.score import prepare_items, score_items  # noqa: E402

SETTINGS = {
    "2d": {"version": 1, "task": "classification", "network": "densenet121", "spatial_dims": 2, "in_channels": 1,
           "num_classes": 2, "input_size": [64, 64], "dropout": 0.2},
    "3d": {"version": 1, "task": "classification", "network": "resnet10", "spatial_dims": 3, "in_channels": 1,
           "num_classes": 2, "input_size": [48, 48, 48], "dropout": 0.2},
}


def images_2d(n: int) -> list[dict]:
    data = np.load(DATA / "classification" / "pneumoniamnist_28_full.npz")
    imgs = data["train_images"]
    return [{"image": imgs[i % len(imgs)].astype(np.float32)} for i in range(n)]


def images_3d(n: int) -> list[dict]:
    folder = DATA / "dicom" / "series" / "mr_brain_sag_mprage_siemens_skyra_192sl"
    files = sorted(folder.iterdir())
    vol = np.stack([pydicom.dcmread(f).pixel_array.astype(np.float32) for f in files])  # (192, 256, 256)
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):  # different real sub-volumes, resized by the eval transforms
        z, y, x = rng.integers(0, 64), rng.integers(0, 96), rng.integers(0, 96)
        out.append({"image": vol[z:z + 128, y:y + 160, x:x + 160].copy()})
    return out


def naive_mc(model: torch.nn.Module, prepared, passes: int, batch: int, device) -> float:
    """T full stochastic forward passes (dropout on, batch norm frozen); returns seconds."""
    model.eval()
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.train()
    t0 = time.perf_counter()
    with torch.no_grad():
        for start in range(0, len(prepared), batch):
            x = prepared.images[start:start + batch].to(device)
            for _ in range(passes):
                torch.softmax(model(x), dim=1)
                model.embed(x)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def measure(name: str, items: list[dict], passes: int, batch: int, device: torch.device,
            naive_cases: int) -> dict:
    cfg = validate_config(SETTINGS[name])
    torch.manual_seed(0)
    model = build_network(cfg).to(device)
    t0 = time.perf_counter()
    prepared = prepare_items(items, cfg)
    prep_s = time.perf_counter() - t0
    score_items(model, prepare_items(items[:batch], cfg), config=cfg, mc_passes=passes, batch_size=batch,
                device=device, seed=0)  # warm-up
    t0 = time.perf_counter()
    out = score_items(model, prepared, config=cfg, mc_passes=passes, batch_size=batch, device=device, seed=0)
    if device.type == "cuda":
        torch.cuda.synchronize()
    okapi_s = time.perf_counter() - t0
    # The peer is slow: time it on the first few batches and compare per case.
    n_naive = min(len(items), naive_cases)
    naive_s = naive_mc(model, prepare_items(items[:n_naive], cfg), passes, batch, device) * len(items) / n_naive
    n = len(items)
    return {"model": cfg["network"], "spatial_dims": cfg["spatial_dims"], "input_size": cfg["input_size"],
            "cases": n, "mc_passes": passes, "batch": batch, "device": str(device),
            "preprocess_s": round(prep_s, 3), "okapi_s": round(okapi_s, 3), "naive_s": round(naive_s, 3),
            "cases_per_s": round(n / okapi_s, 2), "naive_cases_per_s": round(n / naive_s, 2),
            "naive_cases_timed": n_naive, "ratio": round(naive_s / okapi_s, 3), "probs_shape": list(out.probs.shape),
            "embedding_dim": int(out.embeddings.shape[1])}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="full JSON results")
    ap.add_argument("--cases-2d", type=int, default=512)
    ap.add_argument("--cases-3d", type=int, default=16)
    ap.add_argument("--passes", type=int, default=8)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    res = {"config": {**vars(args), "out": str(args.out) if args.out else None}, "torch": torch.__version__,
           "machine": platform.platform(), "cpu_threads": torch.get_num_threads(),
           "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None, "results": {}}
    for name, items, batch, naive in (("2d", images_2d(args.cases_2d), 64, 64),
                                      ("3d", images_3d(args.cases_3d), 4, 4)):
        print(f"scoring {name} on {device} ...", flush=True)
        res["results"][name] = r = measure(name, items, args.passes, batch, device, naive)
        print(f"  {r['model']} {r['input_size']}: {r['cases_per_s']} cases/s "
              f"(naive MC dropout {r['naive_cases_per_s']}/s, x{r['ratio']})", flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=2))
    r2, r3 = res["results"]["2d"], res["results"]["3d"]
    dev = "gpu" if device.type == "cuda" else "cpu"
    print(f"RESULT scoring device={dev} cases_per_s_2d={r2['cases_per_s']} cases_per_s_3d={r3['cases_per_s']} "
          f"naive_cases_per_s_2d={r2['naive_cases_per_s']} naive_cases_per_s_3d={r3['naive_cases_per_s']} "
          f"ratio_2d={r2['ratio']} ratio_3d={r3['ratio']} mc_passes={args.passes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
