"""Active-learning benchmark: simulated readers on PneumoniaMNIST, every strategy against random, paired by seed.

Run from the repository root (see bench/README.md)::

    .venv/bin/python bench/active_learning.py [--out FILE] [--seeds 5] [--rounds 8] [--budget 20] [--quick]

Readers are simulated by the dataset's known labels. Pool = (a subsample of) the train split, validation = a
stratified subsample of the val split (early stopping only), final metric = ROC AUC on the whole test split.
Each seed draws one pool and one random cold-start seed set, shared by every strategy; then ``--rounds`` rounds:
train ``smallcnn`` from scratch on the labelled set (class-weighted), score the unlabelled pool (MC dropout,
embeddings), rank with ``learning.strategies.rank`` and label the top ``--budget``. Two settings: ``natural``
(the class ratio as is, ~26% normal) and ``rare5`` (the pool subsampled so that class 0, "normal" -- the
minority class of this dataset -- is 5%; strategies get the labelled class histogram as ``class_prior``, and
``hybrid_seedprior`` runs the default strategy with the random seed set's histogram as ``class_prior`` instead).
Prints per setting and strategy the area under the learning curve, the final AUC, the labels needed to reach
random's final AUC and the rare cases put in front of readers, as values and as ratios to random, then exactly
one ``RESULT active_learning key=value ...`` line.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, result_line, write_json  # noqa: E402

sys.path.insert(0, str(REPO))

DATA = REPO.parent / "shared" / "data" / "classification" / "pneumoniamnist_28_full.npz"
ALL_STRATEGIES = ("random", "entropy", "margin", "bald", "coreset", "badge", "rare_class", "hybrid")
SETTINGS = ("natural", "rare5")
RARE_CLASS = 0  # "normal": the minority class of PneumoniaMNIST (~26% of the train split)
DEFAULT = "hybrid"
VARIANT = "hybrid_seedprior"  # the default strategy with the seed set's (unbiased) class histogram as prior
DEFINITIONS = {
    "alc": "area under the learning curve (test ROC AUC vs labels, trapezoid) divided by the label range: the mean "
    "AUC over the range; alc_ratio = strategy mean / random mean",
    "final_auc": "test ROC AUC of the model trained on all labels of the last round (mean over seeds)",
    "labels_to_random_auc_ratio": "labels at which the strategy's mean curve first reaches random's mean final AUC "
    "(linear interpolation between rounds), divided by random's final label count; NaN: not reached",
    "rare_found_ratio": "class-0 (normal) cases in the labelled set at the final budget, seed set included, mean "
    "over seeds, divided by random's; rare_selected_* leave the shared seed set out",
    "noise_check": "paired (by seed) test-AUC difference to random at every round after the seed set: "
    "below_random_beyond_noise when mean + 2 SE < 0 (the brief's rule); below_random_t_test_at with Student's t "
    "critical value for seeds - 1 degrees of freedom instead of 2; not_above_random_at lists rounds with "
    "mean - 2 SE < 0 (not significantly above random)",
    "collapse": "the strategy selected no rare case at all (beyond the seed set) for some seed",
}


def ap_default_out() -> str:
    return "/tmp/active_learning.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=ap_default_out(), help="full results as JSON")
    ap.add_argument(
        "--plots", default=None, help="folder for the PNG learning curves (default: next to --out)"
    )
    ap.add_argument("--seeds", type=int, default=5, help="paired repetitions (each: one pool, one seed set)")
    ap.add_argument("--rounds", type=int, default=8, help="selection rounds after the seed set")
    ap.add_argument("--budget", type=int, default=20, help="labels per round")
    ap.add_argument("--seed-size", type=int, default=20, help="random cold-start labels")
    ap.add_argument("--strategies", default=",".join(ALL_STRATEGIES), help="comma-separated; random is added")
    ap.add_argument("--settings", default=",".join(SETTINGS), help="natural, rare5 or both")
    ap.add_argument("--pool-size", type=int, default=2000, help="pool subsampled from the train split")
    ap.add_argument("--rare-share", type=float, default=0.05, help="share of class 0 in the rare5 pool")
    ap.add_argument("--val-size", type=int, default=200, help="stratified subsample of the val split")
    ap.add_argument("--epochs", type=int, default=12, help="max epochs per training")
    ap.add_argument("--patience", type=int, default=3, help="early-stopping patience (epochs)")
    ap.add_argument("--min-epoch-size", type=int, default=160, help="samples drawn per epoch at least")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--width", type=int, default=8, help="smallcnn width (channels of the first block)")
    ap.add_argument("--dropout", type=float, default=0.3)
    ap.add_argument("--mc-passes", type=int, default=8)
    ap.add_argument("--augment", action=argparse.BooleanOptionalAction, default=False, help="train-time aug")
    ap.add_argument(
        "--hybrid",
        default="",
        help="hybrid parameters, e.g. rare_fraction=0.5,explore_fraction=0.2 (default: the registry's defaults)",
    )
    ap.add_argument(
        "--prior",
        choices=("seed", "population", "labelled"),
        default="seed",
        help="class_prior: the class ratio of the random seed set's labels (what the platform passes: the labels "
        "no strategy chose), or labels plus the model's probabilities for the pool, or (rare5 only) the "
        "histogram of all labelled cases (biased by the strategy's own picks)",
    )
    ap.add_argument(
        "--seed-prior-variant",
        action=argparse.BooleanOptionalAction,
        default=True,
        help=f"in rare5, also run '{VARIANT}': the default strategy given the seed set's class histogram as "
        "class_prior instead of the labelled one (the labelled histogram is biased by the strategy's own picks)",
    )
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument(
        "--reanalyse",
        metavar="JSON",
        default=None,
        help="no training: re-summarise the runs of an earlier JSON",
    )
    ap.add_argument("--quick", action="store_true", help="smoke test: 2 seeds, 3 rounds, random + hybrid")
    args = ap.parse_args(argv)
    if args.quick:
        args.seeds, args.rounds, args.strategies = 2, 3, "random,hybrid"
    names = [s.strip() for s in args.strategies.split(",") if s.strip()]
    args.strategy_list = ["random", *[s for s in dict.fromkeys(names) if s != "random"]]
    args.setting_list = [s.strip() for s in args.settings.split(",") if s.strip()]
    for s in args.setting_list:
        if s not in SETTINGS:
            ap.error(f"unknown setting {s!r}; valid: {', '.join(SETTINGS)}")
    args.hybrid_params = {}
    for part in filter(None, (p.strip() for p in args.hybrid.split(","))):
        key, _, value = part.partition("=")
        try:
            args.hybrid_params[key.strip()] = float(value)
        except ValueError:
            args.hybrid_params[key.strip()] = value.strip()
    return args


# ------------------------------------------------------------------------------------------------ simulation


def make_pool(setting: str, labels: np.ndarray, size: int, rare_share: float, rng: np.random.Generator):
    """Indices into the train split: ``natural`` a uniform subsample, ``rare5`` class 0 at ``rare_share``."""
    if setting == "natural":
        return np.sort(rng.choice(labels.size, min(size, labels.size), replace=False))
    rare_idx, common_idx = np.flatnonzero(labels == RARE_CLASS), np.flatnonzero(labels != RARE_CLASS)
    n_rare = max(1, round(rare_share * size))
    n_common = min(size - n_rare, common_idx.size)
    n_rare = min(n_rare, rare_idx.size, max(1, round(rare_share / (1 - rare_share) * n_common)))
    idx = np.concatenate(
        [rng.choice(rare_idx, n_rare, replace=False), rng.choice(common_idx, n_common, replace=False)]
    )
    return np.sort(idx)


def stratified(labels: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    if size >= labels.size:
        return np.arange(labels.size)
    parts = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        parts.append(rng.choice(members, max(1, round(size * members.size / labels.size)), replace=False))
    return np.sort(np.concatenate(parts))


class Simulator:
    def __init__(self, args: argparse.Namespace) -> None:
        import torch

        from learning.core import prepare_items

        torch.set_num_threads(args.threads)
        self.args = args
        data = np.load(DATA)
        self.train_images, self.train_labels = data["train_images"], data["train_labels"].ravel().astype(int)
        val_images, val_labels = data["val_images"], data["val_labels"].ravel().astype(int)
        test_images, test_labels = data["test_images"], data["test_labels"].ravel().astype(int)
        self.config = {
            "version": 1,
            "task": "classification",
            "network": "smallcnn",
            "spatial_dims": 2,
            "in_channels": 1,
            "num_classes": 2,
            "dropout": args.dropout,
            "input_size": [28, 28],
            "width": args.width,
            "balance": "weights",
            "augment": args.augment,
        }
        vi = stratified(val_labels, args.val_size, np.random.default_rng(12345))
        self.val = prepare_items([{"image": val_images[i], "label": val_labels[i]} for i in vi], self.config)
        self.test = prepare_items(
            [{"image": im, "label": y} for im, y in zip(test_images, test_labels, strict=True)], self.config
        )
        self.train_prepared = prepare_items([{"image": im} for im in self.train_images], self.config)
        self.test_labels = test_labels
        self.timers = {"train": 0.0, "score": 0.0, "rank": 0.0, "test": 0.0}
        self.trainings = 0

    def train(self, pool_idx: np.ndarray, labelled: np.ndarray, train_seed: int):
        """Train on the labelled pool positions; returns (model, test metrics)."""
        from learning.core import evaluate, model_from_state, train_model

        a = self.args
        items = [
            {"image": self.train_images[pool_idx[i]], "label": int(self.train_labels[pool_idx[i]])}
            for i in labelled
        ]
        t0 = time.perf_counter()
        result = train_model(
            self.config,
            items,
            self.val,
            epochs=a.epochs,
            batch_size=a.batch_size,
            lr=a.lr,
            patience=a.patience,
            seed=train_seed,
            device="cpu",
            min_epoch_size=a.min_epoch_size,
        )
        model = model_from_state(self.config, result.state_dict)
        t1 = time.perf_counter()
        metrics = evaluate(model, self.test, self.config, batch_size=256, device="cpu")
        self.timers["train"] += t1 - t0
        self.timers["test"] += time.perf_counter() - t1
        self.trainings += 1
        return model, metrics, result.best_epoch

    def score(self, model, pool_idx: np.ndarray, seed: int):
        from learning.core import Prepared, score_items

        t0 = time.perf_counter()
        prepared = Prepared(self.train_prepared.images[pool_idx], None)
        out = score_items(
            model,
            prepared,
            config=self.config,
            mc_passes=self.args.mc_passes,
            batch_size=256,
            device="cpu",
            seed=seed,
        )
        self.timers["score"] += time.perf_counter() - t0
        return out

    def select(self, name, scores, labelled, y_pool, budget, rng, setting, seed_size):
        """Pool positions of the next ``budget`` labels chosen by strategy ``name``."""
        from learning.strategies import population_prior, rank, select_hybrid

        t0 = time.perf_counter()
        n = y_pool.size
        mask = np.ones(n, dtype=bool)
        mask[labelled] = False
        unl = np.flatnonzero(mask)
        prior = None
        if name == VARIANT and setting == "rare5":
            prior = np.bincount(y_pool[labelled[:seed_size]], minlength=2)
        elif name == "random":
            pass
        elif self.args.prior == "seed":
            # what the platform passes (learning.services.round_run): the class ratio of the labels no ranking
            # strategy chose (here the random seed set), an unbiased estimate of the population's
            prior = np.bincount(y_pool[labelled[:seed_size]], minlength=2)
        elif self.args.prior == "population":
            prior = population_prior(np.bincount(y_pool[labelled], minlength=2), scores.probs[unl])
        elif setting == "rare5":
            prior = np.bincount(y_pool[labelled], minlength=2)
        if name == VARIANT:
            name = DEFAULT
        if name == "random":
            ranking = rank("random", embeddings=np.zeros((unl.size, 1)), budget=budget, rng=rng)
        elif name == "hybrid" and self.args.hybrid_params:
            ranking = select_hybrid(
                scores.probs[unl],
                scores.embeddings[unl],
                scores.embeddings[labelled],
                budget,
                rng,
                prior,
                **self.args.hybrid_params,
            )
        else:
            ranking = rank(
                name,
                probs=scores.probs[unl],
                mc_probs=scores.mc_probs[:, unl],
                embeddings=scores.embeddings[unl],
                labelled_embeddings=scores.embeddings[labelled],
                budget=budget,
                rng=rng,
                class_prior=prior,
            )
        self.timers["rank"] += time.perf_counter() - t0
        picked = unl[np.asarray(ranking.order)[:budget]]
        return picked, ranking.sources

    def run_seed(self, setting: str, seed: int, strategies: list[str], bar) -> dict[str, dict]:
        a = self.args
        rng = np.random.default_rng([seed, SETTINGS.index(setting)])
        pool_idx = make_pool(setting, self.train_labels, a.pool_size, a.rare_share, rng)
        y_pool = self.train_labels[pool_idx]
        seed_set = rng.choice(pool_idx.size, a.seed_size, replace=False)
        model0, metrics0, best0 = self.train(pool_idx, seed_set, train_seed=1000 * seed)
        bar.update(1)
        scores0 = None
        runs: dict[str, dict] = {}
        for s_i, name in enumerate(strategies):
            labelled = seed_set.copy()
            curve = {
                "labels": [int(labelled.size)],
                "test_auc": [metrics0["auc"]],
                "test_balanced_accuracy": [metrics0["balanced_accuracy"]],
                "rare_labelled": [int((y_pool[labelled] == RARE_CLASS).sum())],
                "best_epoch": [best0],
                "sources_rare_hits": [],
            }
            model = model0
            for r in range(1, a.rounds + 1):
                scores = None
                if name != "random":
                    if r == 1:  # the seed-set model and its scores are shared by every strategy
                        if scores0 is None:
                            scores0 = self.score(model0, pool_idx, seed=1000 * seed)
                        scores = scores0
                    else:
                        scores = self.score(model, pool_idx, seed=1000 * seed + r)
                srng = np.random.default_rng([seed, SETTINGS.index(setting), s_i, r])
                picked, sources = self.select(
                    name, scores, labelled, y_pool, a.budget, srng, setting, a.seed_size
                )
                if sources is not None:
                    hits: dict[str, list[int]] = {}
                    for src, idx in zip(sources, picked, strict=True):
                        h = hits.setdefault(src, [0, 0])
                        h[0] += int(y_pool[idx] == RARE_CLASS)
                        h[1] += 1
                    curve["sources_rare_hits"].append(hits)
                labelled = np.concatenate([labelled, picked])
                model, metrics, best = self.train(pool_idx, labelled, train_seed=1000 * seed + r)
                bar.update(1)
                curve["labels"].append(int(labelled.size))
                curve["test_auc"].append(metrics["auc"])
                curve["test_balanced_accuracy"].append(metrics["balanced_accuracy"])
                curve["rare_labelled"].append(int((y_pool[labelled] == RARE_CLASS).sum()))
                curve["best_epoch"].append(best)
            curve["pool_size"] = int(pool_idx.size)
            curve["pool_rare"] = int((y_pool == RARE_CLASS).sum())
            runs[name] = curve
        return runs


# ------------------------------------------------------------------------------------------------ analysis


def alc(labels: np.ndarray, auc: np.ndarray) -> float:
    """Area under the learning curve (trapezoid), normalised by the label range: a mean AUC over the range."""
    return float(np.trapezoid(auc, labels) / (labels[-1] - labels[0]))


def labels_to_reach(labels: np.ndarray, curve: np.ndarray, target: float) -> float:
    """Labels at which ``curve`` first reaches ``target`` (linear interpolation between rounds), NaN if never."""
    for i in range(curve.size):
        if curve[i] >= target:
            if i == 0:
                return float(labels[0])
            x0, x1, y0, y1 = labels[i - 1], labels[i], curve[i - 1], curve[i]
            return float(x0 + (target - y0) / (y1 - y0) * (x1 - x0)) if y1 > y0 else float(x1)
    return math.nan


def summarise(results: dict[str, dict[str, list[dict]]]) -> dict:
    from scipy.stats import t as student_t
    from scipy.stats import ttest_1samp

    summary: dict[str, dict] = {}
    for setting, per_strategy in results.items():
        strategies = list(per_strategy)
        labels = np.asarray(per_strategy["random"][0]["labels"], dtype=float)
        auc = {s: np.array([run["test_auc"] for run in per_strategy[s]], dtype=float) for s in strategies}
        rare = {
            s: np.array([run["rare_labelled"] for run in per_strategy[s]], dtype=float) for s in strategies
        }
        n_seeds = auc["random"].shape[0]
        alcs = {s: np.array([alc(labels, row) for row in auc[s]]) for s in strategies}
        target = float(auc["random"][:, -1].mean())
        rand_labels = float(labels[-1])
        t_crit = float(student_t.ppf(0.975, n_seeds - 1)) if n_seeds > 1 else math.nan
        out: dict[str, dict] = {}
        for s in strategies:
            diff = auc[s] - auc["random"]  # paired by seed, (seeds, points)
            se = (
                diff.std(axis=0, ddof=1) / math.sqrt(n_seeds) if n_seeds > 1 else np.full(labels.size, np.nan)
            )
            mean_diff = diff.mean(axis=0)
            after = slice(1, None)  # point 0 is the shared seed-set model: identical for every strategy
            below_sig = np.flatnonzero((mean_diff + 2 * se)[after] < 0) + 1
            not_above = np.flatnonzero((mean_diff - 2 * se)[after] < 0) + 1
            below_t = np.flatnonzero((mean_diff + t_crit * se)[after] < 0) + 1
            found = rare[s][:, -1] - rare[s][:, 0]  # rare cases the strategy itself put in front of readers
            reach = labels_to_reach(labels, auc[s].mean(axis=0), target)
            alc_diff = alcs[s] - alcs["random"]
            out[s] = {
                "alc_mean": float(alcs[s].mean()),
                "alc_std": float(alcs[s].std(ddof=1)) if n_seeds > 1 else math.nan,
                "alc_ratio": float(alcs[s].mean() / alcs["random"].mean()),
                "alc_paired_diff": float(alc_diff.mean()),
                "alc_paired_diff_se": float(alc_diff.std(ddof=1) / math.sqrt(n_seeds))
                if n_seeds > 1
                else math.nan,
                "final_auc_mean": float(auc[s][:, -1].mean()),
                "final_auc_std": float(auc[s][:, -1].std(ddof=1)) if n_seeds > 1 else math.nan,
                "final_auc_ratio": float(auc[s][:, -1].mean() / auc["random"][:, -1].mean()),
                "labels_to_random_final_auc": reach,
                "labels_to_random_final_auc_ratio": reach / rand_labels
                if not math.isnan(reach)
                else math.nan,
                "rare_labelled_final_mean": float(rare[s][:, -1].mean()),
                "rare_labelled_final_ratio": float(
                    rare[s][:, -1].mean() / max(rare["random"][:, -1].mean(), 1e-9)
                ),
                "rare_selected_mean": float(found.mean()),
                "rare_selected_ratio": float(
                    found.mean() / max((rare["random"][:, -1] - rare["random"][:, 0]).mean(), 1e-9)
                ),
                "collapsed_seeds": [int(i) for i in np.flatnonzero(found == 0)],
                "collapsed": bool((found == 0).any()),
                "auc_curve_mean": auc[s].mean(axis=0).tolist(),
                "auc_curve_std": (
                    auc[s].std(axis=0, ddof=1) if n_seeds > 1 else np.zeros(labels.size)
                ).tolist(),
                "rare_curve_mean": rare[s].mean(axis=0).tolist(),
                "paired_diff_vs_random": mean_diff.tolist(),
                "paired_diff_se": se.tolist(),
                "below_random_beyond_noise_at": [int(labels[i]) for i in below_sig],
                "below_random_beyond_noise": bool(below_sig.size),
                "not_above_random_at": [int(labels[i]) for i in not_above],
                "below_random_t_test_at": [int(labels[i]) for i in below_t],
                "alc_paired_t_p_two_sided": float(ttest_1samp(alc_diff, 0.0).pvalue)
                if n_seeds > 1 and np.ptp(alc_diff) > 0
                else math.nan,
            }
        summary[setting] = {
            "labels": labels.astype(int).tolist(),
            "seeds": int(n_seeds),
            "t_critical_975": t_crit,
            "random_final_auc_target": target,
            "strategies": out,
        }
    return summary


def fmt(x: float, digits: int = 3) -> str:
    return "n/r" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def print_table(summary: dict) -> None:
    for setting, block in summary.items():
        print(
            f"\n== {setting}: labels {block['labels'][0]}..{block['labels'][-1]}, "
            f"random's final AUC {block['random_final_auc_target']:.3f}"
        )
        head = (
            f"{'strategy':<16} {'ALC':>6} {'xrand':>6} {'finalAUC':>9} {'xrand':>6} {'labels->rand':>12} {'xrand':>6} "
            f"{'rare':>6} {'xrand':>6} {'below?':>7} {'collapse':>8}"
        )
        print(head)
        for s, r in block["strategies"].items():
            reach = r["labels_to_random_final_auc"]
            print(
                f"{s:<16} {r['alc_mean']:6.3f} {r['alc_ratio']:6.3f} {r['final_auc_mean']:9.3f} "
                f"{r['final_auc_ratio']:6.3f} {('not reached' if math.isnan(reach) else f'{reach:.0f}'):>12} "
                f"{fmt(r['labels_to_random_final_auc_ratio'], 2):>6} {r['rare_labelled_final_mean']:6.1f} "
                f"{r['rare_labelled_final_ratio']:6.2f} {('YES' if r['below_random_beyond_noise'] else 'no'):>7} "
                f"{('YES' if r['collapsed'] else 'no'):>8}"
            )


def plot(summary: dict, results: dict, folder: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for setting, block in summary.items():
        labels = np.asarray(block["labels"])
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
        for s in block["strategies"]:
            runs = results[setting][s]
            for ax, key in zip(axes, ("test_auc", "rare_labelled"), strict=True):
                arr = np.array([run[key] for run in runs], dtype=float)
                mean, std = arr.mean(axis=0), arr.std(axis=0, ddof=1) if arr.shape[0] > 1 else 0 * arr[0]
                style = (
                    {"lw": 2.5, "color": "black"}
                    if s == DEFAULT
                    else ({"ls": "--", "color": "grey"} if s == "random" else {})
                )
                line = ax.plot(labels, mean, marker="o", ms=3, label=s, **style)[0]
                ax.fill_between(labels, mean - std, mean + std, alpha=0.12, color=line.get_color())
        axes[0].set(
            xlabel="labels", ylabel="test ROC AUC", title=f"{setting}: test AUC (mean ± std over seeds)"
        )
        axes[1].set(
            xlabel="labels",
            ylabel=f"class {RARE_CLASS} (normal) cases labelled",
            title=f"{setting}: rare-class cases put in front of readers",
        )
        axes[0].legend(fontsize=8, loc="lower right")
        for ax in axes:
            ax.grid(alpha=0.3)
        fig.tight_layout()
        path = folder / f"active_learning_{setting}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(str(path))
    return paths


def headline(summary: dict) -> dict[str, object]:
    """Headline figures: the default strategy, its seed-prior variant, the best other strategy (by ALC), random."""
    out: dict[str, object] = {}
    for setting, block in summary.items():
        st = block["strategies"]
        others = [s for s in st if s not in ("random", DEFAULT, VARIANT)]
        best = max(others, key=lambda s: st[s]["alc_mean"]) if others else None
        if best is not None:
            out[f"best_other_{setting}"] = best
        named = [(n, n) for n in (DEFAULT, VARIANT) if n in st] + ([(best, "best_other")] if best else [])
        for name, prefix in named:
            r = st[name]
            out[f"{prefix}_alc_ratio_{setting}"] = round(r["alc_ratio"], 4)
            out[f"{prefix}_final_auc_{setting}"] = round(r["final_auc_mean"], 4)
            out[f"{prefix}_labels_to_random_auc_ratio_{setting}"] = round(
                r["labels_to_random_final_auc_ratio"], 3
            )
            out[f"{prefix}_rare_found_ratio_{setting}"] = round(r["rare_labelled_final_ratio"], 3)
            out[f"{prefix}_below_random_{setting}"] = int(r["below_random_beyond_noise"])
            out[f"{prefix}_below_random_t_{setting}"] = int(bool(r["below_random_t_test_at"]))
            out[f"{prefix}_collapsed_{setting}"] = int(r["collapsed"])
        out[f"random_final_auc_{setting}"] = round(st["random"]["final_auc_mean"], 4)
        out[f"random_rare_found_{setting}"] = round(st["random"]["rare_labelled_final_mean"], 2)
        for name in (DEFAULT, VARIANT):
            if name in st:
                out[f"{name}_rare_found_{setting}"] = round(st[name]["rare_labelled_final_mean"], 2)
    return out


def main(argv: list[str] | None = None) -> int:
    from tqdm import tqdm

    args = parse_args(argv)
    if args.reanalyse:
        out = Path(args.out) if args.out != ap_default_out() else Path(args.reanalyse)
        return reanalyse(Path(args.reanalyse), out, Path(args.plots) if args.plots else None)
    started = time.perf_counter()
    sim = Simulator(args)
    per_setting = {
        setting: args.strategy_list
        + (
            [VARIANT]
            if setting == "rare5" and args.seed_prior_variant and DEFAULT in args.strategy_list
            else []
        )
        for setting in args.setting_list
    }
    total = sum(args.seeds * (1 + len(names) * args.rounds) for names in per_setting.values())
    results: dict[str, dict[str, list[dict]]] = {
        s: {name: [] for name in per_setting[s]} for s in per_setting
    }
    with tqdm(total=total, desc="trainings", unit="model", file=sys.stderr, dynamic_ncols=True) as bar:
        for setting in args.setting_list:
            for seed in range(args.seeds):
                bar.set_postfix_str(f"{setting} seed {seed}")
                runs = sim.run_seed(setting, seed, per_setting[setting], bar)
                for name, curve in runs.items():
                    results[setting][name].append(curve)
    config = {
        k: v
        for k, v in vars(args).items()
        if k not in ("strategy_list", "setting_list", "strategies", "settings", "reanalyse")
    }
    config.update(
        {
            "strategies": per_setting,
            "settings": args.setting_list,
            "data": str(DATA),
            "rare_class": RARE_CLASS,
            "rare_class_name": "normal",
            "model_config": sim.config,
            "pool": "per seed: a uniform subsample of the train split (natural), or class 0 subsampled to "
            "rare_share of the pool (rare5); the same pool and random seed set for every strategy of a seed",
            "validation": f"stratified subsample of the val split ({len(sim.val)} images, fixed), early stopping only",
            "test": f"whole test split ({len(sim.test)} images): the reported ROC AUC",
            "training": "smallcnn from scratch every round, inverse-frequency class weights, AdamW, early stopping "
            "on validation AUC; the training seed depends on (seed, round) only, so strategies share it",
            "class_prior": (
                "labelled class histogram"
                if args.prior == "labelled"
                else "class histogram of the random seed set only (unbiased estimate of the pool's class ratio)"
            )
            + ", passed to every strategy in rare5 only (used by hybrid and rare_class); none in natural; "
            f"{VARIANT} always uses the seed set's histogram",
            "hybrid_params": args.hybrid_params or "registry defaults",
        }
    )
    timing = {
        "total_s": time.perf_counter() - started,
        "trainings": sim.trainings,
        **{f"{k}_s": v for k, v in sim.timers.items()},
        "cpu_count": os.cpu_count(),
    }
    return finish(config, results, timing, Path(args.out), Path(args.plots) if args.plots else None)


def finish(config: dict, results: dict, timing: dict, out_path: Path, plots_dir: Path | None) -> int:
    """Summarise, print the table, plot, write the JSON and print the RESULT line."""
    summary = summarise(results)
    print_table(summary)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    plots = plot(summary, results, plots_dir or out_path.parent)
    flags = {
        setting: {
            "default_strategy": DEFAULT,
            "default_below_random_beyond_noise": block["strategies"]
            .get(DEFAULT, {})
            .get("below_random_beyond_noise"),
            "default_below_random_at_labels": block["strategies"]
            .get(DEFAULT, {})
            .get("below_random_beyond_noise_at"),
            "default_below_random_t_test_at_labels": block["strategies"]
            .get(DEFAULT, {})
            .get("below_random_t_test_at"),
            "default_not_above_random_at_labels": block["strategies"]
            .get(DEFAULT, {})
            .get("not_above_random_at"),
            "collapsed_strategies": [s for s, r in block["strategies"].items() if r["collapsed"]],
            "strategies_below_random_beyond_noise": [
                s for s, r in block["strategies"].items() if r["below_random_beyond_noise"]
            ],
        }
        for setting, block in summary.items()
    }
    head = headline(summary)
    report = {
        "config": config,
        "definitions": DEFINITIONS,
        "summary": summary,
        "flags": flags,
        "runs": results,
        "timing": timing,
        "plots": plots,
        "result": head,
    }
    write_json(out_path, report)
    print(
        f"\nJSON: {out_path}\nplots: {', '.join(plots)}\n{timing['trainings']} trainings in {timing['total_s']:.0f} s"
    )
    for setting, f in flags.items():
        print(
            f"{setting}: default below random beyond noise (2 SE): {f['default_below_random_beyond_noise']} "
            f"{f['default_below_random_at_labels']}, (t): {f['default_below_random_t_test_at_labels']}; "
            f"collapsed strategies: {f['collapsed_strategies'] or 'none'}"
        )
    print(result_line("active_learning", head))
    return 0


def reanalyse(path: Path, out_path: Path, plots_dir: Path | None) -> int:
    """Recompute the summary, plots and RESULT line from the runs stored in an earlier JSON (no training)."""
    import json

    report = json.loads(path.read_text())
    config = {k: v for k, v in report["config"].items() if k not in DEFINITIONS}
    config["reanalysed_from"] = str(path)
    return finish(config, report["runs"], report["timing"], out_path, plots_dir)


if __name__ == "__main__":
    sys.exit(main())
