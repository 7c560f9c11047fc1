"""The active-learning loop: train a model version on consensus labels, score the unlabelled cases, rank them.

Tasks (learning.tasks) call these with a job id; the job row carries progress. A model version is written only
after training has finished, with its weights already in storage, and promoted only when its validation metric
is recorded; one version per job, so a retried job (its worker died) never makes two.
"""

import hashlib
import io
import logging
import math
import os
import tempfile

import numpy as np
import torch
from django.conf import settings
from django.db import transaction
from django.db.models import Max

from annotation.models import Case, Project
from core.errors import OkapiError
from core.events import group_for, send_event
from core.jobs import job_create, job_progress
from core.models import Job
from imaging import storage
from learning.core.nets import build_network, validate_config
from learning.core.score import score_items
from learning.core.train import model_from_state, train_model
from learning.data import case_image, labelled_cases, unlabelled_cases
from learning.models import CaseScore, LearningConfig, ModelVersion, Round
from learning.strategies import STRATEGIES, rank, score_bald, score_entropy

log = logging.getLogger("okapi.learning")
SPLIT_SEED = 20261122
CONFIG_FIELDS = ("target", "model_config", "epochs", "batch_size", "learning_rate", "patience",
                 "validation_fraction", "mc_passes", "strategy", "budget", "auto_round_after")


@transaction.atomic
def learning_configure(*, project: Project, **fields) -> LearningConfig:
    """Set what a project learns and how (validated: the target question, the network config, the strategy)."""
    from learning.data import target_classes

    unknown = set(fields) - set(CONFIG_FIELDS)
    if unknown:
        raise OkapiError("invalid", f"unknown settings: {', '.join(sorted(unknown))}")
    config = LearningConfig.objects.filter(project=project).first() or LearningConfig(project=project)
    for key, value in fields.items():
        setattr(config, key, value)
    errors = {}
    if not isinstance(config.model_config or {}, dict):
        raise OkapiError("invalid", "the learning settings are not valid",
                         detail={"model_config": "an object: task, network, spatial_dims, input_size, ..."})
    if not config.target:
        errors["target"] = "required: the single-choice or yes/no question to learn"
    else:
        try:
            classes = target_classes(project, config.target)
            config.model_config = {**(config.model_config or {}), "num_classes": len(classes)}
        except OkapiError as exc:
            errors["target"] = exc.message
    try:
        config.model_config = validate_config({"version": 1, "in_channels": 1, **(config.model_config or {})})
    except ValueError as exc:
        errors["model_config"] = str(exc)
    if config.strategy not in STRATEGIES:
        errors["strategy"] = f"one of {', '.join(sorted(STRATEGIES))}"
    if not 0 < config.validation_fraction < 1:
        errors["validation_fraction"] = "between 0 and 1"
    for key in ("epochs", "batch_size", "patience", "mc_passes", "budget"):  # a 0 fails the round in the worker
        value = getattr(config, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            errors[key] = "a whole number, 1 or more"
    if not (isinstance(config.learning_rate, int | float) and math.isfinite(config.learning_rate)
            and config.learning_rate > 0):
        errors["learning_rate"] = "a number above 0"
    if errors:
        raise OkapiError("invalid", "the learning settings are not valid", detail=errors)
    config.save()
    return config


def _config(project: Project) -> LearningConfig:
    config = LearningConfig.objects.filter(project=project).first()
    if config is None:
        raise OkapiError("not_configured", "this project has no learning settings yet (target and model)",
                         status=409)
    return config


def _split(labels: list[int], fraction: float) -> tuple[list[int], list[int]]:
    """Stratified, seeded train/validation split of item indices; validation never trains."""
    rng = np.random.default_rng(SPLIT_SEED)
    train, val = [], []
    for cls in sorted(set(labels)):
        idx = [i for i, y in enumerate(labels) if y == cls]
        rng.shuffle(idx)
        n_val = int(round(len(idx) * fraction)) if len(idx) >= 2 else 0
        val += idx[:n_val]
        train += idx[n_val:]
    return sorted(train), sorted(val)


def _state_bytes(state: dict) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def _load_state(version: ModelVersion) -> dict:
    with storage.open_file(version.weights) as fh:
        return torch.load(io.BytesIO(fh.read()), map_location="cpu", weights_only=True)


def load_model(version: ModelVersion) -> torch.nn.Module:
    """A model version's network with its stored weights."""
    return model_from_state(version.config["model"], _load_state(version))


def _images(cases: list[Case], dims: int, cache: dict[int, np.ndarray] | None, *, keep: bool = True
            ) -> list[np.ndarray]:
    """Decoded images of cases, taken from ``cache`` (case pk -> image) when there, and added to it with
    ``keep`` (training keeps the labelled cases' images for the round's scoring; scoring keeps nothing)."""
    cache = {} if cache is None else cache
    out = []
    for c in cases:
        image = cache.get(c.pk)
        if image is None:
            image = case_image(c, dims)
            if keep:
                cache[c.pk] = image
        out.append(image)
    return out


def train_run(*, job: Job, images: dict[int, np.ndarray] | None = None) -> ModelVersion:
    """Train a new model version of the job's project on its consensus labels (idempotent per job)."""
    existing = ModelVersion.objects.filter(job=job).first()
    if existing is not None:  # a retry of a job whose version was already written
        return existing
    project = Project.objects.get(pk=job.params["project"])
    config = _config(project)
    cases, labels, classes = labelled_cases(project, config.target)
    if len(cases) < 2 or len(set(labels)) < 2:
        raise OkapiError("not_enough_labels", f"training needs consensus labels of at least two classes; this "
                         f"project has {len(cases)} labelled cases", status=409)
    model_config = config.model_config
    dims = model_config.get("spatial_dims", 2)
    pictures = _images(cases, dims, images)
    train_idx, val_idx = _split(labels, config.validation_fraction)
    items = [{"image": img, "label": y} for img, y in zip(pictures, labels, strict=True)]
    parent = ModelVersion.objects.filter(project=project, promoted=True).order_by("-version").first()
    init = _load_state(parent) if parent is not None and parent.config.get("model") == model_config else None

    def progress(epoch: int, loss: float, metric: float | None) -> None:
        job_progress(job_id=job.pk, progress=0.05 + 0.9 * epoch / config.epochs,
                     message=f"epoch {epoch}/{config.epochs}: loss {loss:.4f}"
                     + (f", validation {metric:.4f}" if metric is not None else ""))
        send_event(group_for("project", project.pk), {"type": "training", "job": str(job.pk), "epoch": epoch,
                                                      "loss": round(loss, 5), "val_metric": metric})

    result = train_model(model_config, [items[i] for i in train_idx], [items[i] for i in val_idx] or None,
                         epochs=config.epochs, batch_size=config.batch_size, lr=config.learning_rate,
                         patience=config.patience, seed=SPLIT_SEED, progress=progress, init_state=init)
    blob = _state_bytes(result.state_dict)
    digest = hashlib.sha256(blob).hexdigest()
    key = f"models/project-{project.pk}/{job.pk}-{digest[:16]}.pt"
    with tempfile.NamedTemporaryFile(dir=settings.FILE_UPLOAD_TEMP_DIR, delete=False) as fh:
        fh.write(blob)
    try:
        storage.put_file(fh.name, key, move=True)  # the weights exist before the row that names them
    finally:
        if os.path.exists(fh.name):
            os.unlink(fh.name)
    metric = result.metrics.get("auc")
    recorded = metric is not None and not (isinstance(metric, float) and np.isnan(metric))
    with transaction.atomic():
        Project.objects.select_for_update().get(pk=project.pk)
        existing = ModelVersion.objects.filter(job=job).first()
        if existing is not None:
            return existing
        number = (ModelVersion.objects.filter(project=project).aggregate(v=Max("version"))["v"] or 0) + 1
        if recorded:
            ModelVersion.objects.filter(project=project, promoted=True).update(promoted=False)
        version = ModelVersion.objects.create(
            project=project, version=number, job=job, weights=key, weights_sha256=digest,
            config={"model": model_config, "epochs": config.epochs, "batch_size": config.batch_size,
                    "learning_rate": config.learning_rate, "patience": config.patience,
                    "validation_fraction": config.validation_fraction, "classes": classes, "seed": SPLIT_SEED},
            metrics=_jsonable(result.metrics), history=_jsonable(result.history),
            data={"train": [cases[i].pk for i in train_idx], "validation": [cases[i].pk for i in val_idx],
                  "labels": {str(c.pk): y for c, y in zip(cases, labels, strict=True)}},
            labels_used=len(cases), promoted=recorded, parent=parent)
    return version


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def score_run(*, version: ModelVersion, cases: list[Case], job: Job | None = None, batch: int = 64,
              images: dict[int, np.ndarray] | None = None) -> int:
    """Score cases with a model version (MC dropout): probabilities, passes, embedding, entropy, BALD."""
    config = _config(version.project)
    model = load_model(version)
    dims = version.config["model"].get("spatial_dims", 2)
    done = 0
    for start in range(0, len(cases), batch):
        chunk = cases[start:start + batch]
        items = [{"image": img} for img in _images(chunk, dims, images, keep=False)]
        out = score_items(model, items, config=version.config["model"], mc_passes=config.mc_passes,
                          seed=SPLIT_SEED)  # on CUDA when there is one
        ent, bald = score_entropy(out.probs), score_bald(out.mc_probs)
        rows = [CaseScore(model_version=version, case=c, probs=out.probs[i].round(6).tolist(),
                          mc_probs=out.mc_probs[:, i].round(6).tolist(),
                          embedding=out.embeddings[i].astype(np.float32).tobytes(), entropy=float(ent[i]),
                          bald=float(bald[i])) for i, c in enumerate(chunk)]
        with transaction.atomic():
            CaseScore.objects.filter(model_version=version, case__in=chunk).delete()  # a retry rescoring
            CaseScore.objects.bulk_create(rows)
        done += len(chunk)
        if job is not None:
            job_progress(job_id=job.pk, progress=0.5 + 0.4 * done / max(len(cases), 1),
                         message=f"scored {done}/{len(cases)} cases")
    return done


def round_create(*, project: Project, user, strategy: str | None = None, budget: int | None = None) -> Job:
    """Queue a round (train on the consensus labels, score, rank) as a job; 202 material."""
    config = _config(project)
    strategy = strategy or config.strategy
    if strategy not in STRATEGIES:
        raise OkapiError("invalid", f"unknown strategy {strategy!r}", detail={"allowed": sorted(STRATEGIES)})
    budget = budget or config.budget
    if not isinstance(budget, int) or budget < 1:
        raise OkapiError("invalid", "budget is a positive number of cases", detail={"budget": budget})
    from learning.tasks import queue_round

    job = job_create(kind="learning_round", user=user, params={"project": project.pk, "strategy": strategy,
                                                                "budget": budget})
    transaction.on_commit(lambda: queue_round(job))
    return job


def round_run(*, job: Job) -> Round:
    """Train (when there are labels of two classes), score every case, rank the unlabelled ones, and order the
    "next case" queue by the ranking. Round 0 (no labels yet) ranks by a cold start on embeddings."""
    existing = Round.objects.filter(job=job).first()
    if existing is not None:
        return existing
    project = Project.objects.get(pk=job.params["project"])
    config = _config(project)
    strategy, budget = job.params["strategy"], int(job.params["budget"])
    labelled, labels, classes = labelled_cases(project, config.target)
    version = None
    images: dict[int, np.ndarray] = {}  # the labelled cases are decoded once, for training and for scoring
    if len(set(labels)) >= 2:
        version = train_run(job=job, images=images)
    pool = unlabelled_cases(project)
    if not pool:
        raise OkapiError("nothing_to_rank", "every case of this project has its consensus", status=409)
    if version is None:
        strategy = "cold_start"  # no model can be trained yet: typical, diverse cases first
        embeddings = _untrained_embeddings(config, pool)
        probs = mc_probs = labelled_embeddings = None
    else:
        score_run(version=version, cases=pool + labelled, job=job, images=images)
        scores = {s.case_id: s for s in CaseScore.objects.filter(model_version=version)}
        probs = np.array([scores[c.pk].probs for c in pool])
        mc_probs = np.array([scores[c.pk].mc_probs for c in pool]).transpose(1, 0, 2)
        embeddings = np.stack([np.frombuffer(scores[c.pk].embedding, np.float32) for c in pool])
        labelled_embeddings = np.stack([np.frombuffer(scores[c.pk].embedding, np.float32) for c in labelled])
    prior = _class_prior(project, labelled, labels, len(classes))
    ranking = rank(strategy, probs=probs, mc_probs=mc_probs, embeddings=embeddings,
                   labelled_embeddings=labelled_embeddings, budget=min(budget, len(pool)),
                   rng=np.random.default_rng(SPLIT_SEED), class_prior=prior)
    order = [pool[i].pk for i in ranking.order]
    with transaction.atomic():
        Project.objects.select_for_update().get(pk=project.pk)
        existing = Round.objects.filter(job=job).first()
        if existing is not None:
            return existing
        low = min(Case.objects.filter(project=project).values_list("priority", flat=True))
        for position, case_id in enumerate(order):  # ranked cases first, in ranking order
            Case.objects.filter(pk=case_id).update(priority=low - len(order) + position)
        number = (Round.objects.filter(project=project).aggregate(n=Max("number"))["n"] or 0) + 1
        round_ = Round.objects.create(project=project, number=number, strategy=strategy, budget=budget,
                                      model_version=version, job=job, labels_used=len(labelled), ranking=order,
                                      metrics=version.metrics if version else {}, created_by=job.created_by)
    send_event(group_for("project", project.pk), {"type": "round", "round": number, "strategy": strategy,
                                                  "ranked": len(order)})
    return round_


def _class_prior(project: Project, labelled: list[Case], labels: list[int], n_classes: int) -> np.ndarray | None:
    """The class ratio of the labels that no ranking strategy chose (upload order, random or cold-start picks):
    an unbiased estimate of the population's. The whole labelled histogram is biased by the strategy's own
    picks: hunting a rare class soon makes it look common, and the hunt switches itself off
    (bench/active_learning.py measured 2-3x random's rare cases that way, against ~5x with this prior)."""
    if not labels:
        return None
    chosen: set[int] = set()
    for ranking in Round.objects.filter(project=project).exclude(strategy__in=["random", "cold_start"]) \
            .values_list("ranking", flat=True):
        chosen.update(ranking)
    unbiased = [y for case, y in zip(labelled, labels, strict=True) if case.pk not in chosen]
    return np.bincount(unbiased or labels, minlength=n_classes)


def _untrained_embeddings(config: LearningConfig, cases: list[Case]) -> np.ndarray:
    """Embeddings of a randomly initialised network (no downloads): a fixed random projection of the images
    that still groups similar images, enough to pick typical and diverse cases before any label exists."""
    torch.manual_seed(SPLIT_SEED)
    model = build_network(config.model_config)
    dims = config.model_config.get("spatial_dims", 2)
    out = score_items(model, [{"image": case_image(c, dims)} for c in cases], config=config.model_config,
                      mc_passes=1, seed=SPLIT_SEED)
    return out.embeddings


def learning_curve(project: Project) -> list[dict]:
    """Per round: labels used and the model's validation metrics (AUC, per-class recall)."""
    return [{"round": r.number, "strategy": r.strategy, "labels": r.labels_used,
             "model_version": r.model_version.version if r.model_version else None,
             "auc": (r.metrics or {}).get("auc"), "metrics": r.metrics, "created_at": r.created_at.isoformat()}
            for r in Round.objects.filter(project=project).select_related("model_version").order_by("number")]


def learning_curve_png(project: Project) -> bytes:
    """The learning curve (validation AUC against labels used) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [p for p in learning_curve(project) if p["auc"] is not None]
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    if points:
        ax.plot([p["labels"] for p in points], [p["auc"] for p in points], marker="o")
        for p in points:
            ax.annotate(p["strategy"], (p["labels"], p["auc"]), fontsize=7, textcoords="offset points",
                        xytext=(0, 6), ha="center")
    else:
        ax.text(0.5, 0.5, "no trained round yet", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("consensus labels used")
    ax.set_ylabel("validation AUC")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(f"{project.name}: learning curve")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
