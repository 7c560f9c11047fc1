"""Active learning: a project's model settings, immutable model versions, per-case scores and ranking rounds."""

from django.conf import settings
from django.db import models

from annotation.models import Case, Project
from core.models import Job


class LearningConfig(models.Model):
    """What a project learns: the target question, the network (a versioned learning.core config), training
    settings, and the default strategy and budget of a round."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="learning")
    target = models.CharField(max_length=64, help_text="key of the single-choice or yes/no question learned")
    model_config = models.JSONField(help_text="learning.core.nets config: task, network, spatial_dims, ...")
    epochs = models.PositiveIntegerField(default=20)
    batch_size = models.PositiveIntegerField(default=32)
    learning_rate = models.FloatField(default=1e-3)
    patience = models.PositiveIntegerField(default=5)
    validation_fraction = models.FloatField(default=0.2)
    mc_passes = models.PositiveIntegerField(default=8)
    strategy = models.CharField(max_length=32, default="hybrid")
    budget = models.PositiveIntegerField(default=20)
    auto_round_after = models.PositiveIntegerField(
        default=0, help_text="run a round (train, score, rank) after this many new consensus labels; 0: never")
    updated_at = models.DateTimeField(auto_now=True)


class ModelVersion(models.Model):
    """One training run's result, immutable once written. Created only when training has finished; promoted
    (the project's current model) only when its validation metric is recorded. One version per training job,
    so a retried job never makes a second."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="model_versions")
    version = models.PositiveIntegerField()
    job = models.OneToOneField(Job, on_delete=models.PROTECT, related_name="model_version")
    config = models.JSONField(help_text="model config and training settings used")
    weights = models.CharField(max_length=300, help_text="storage key of the state dict")
    weights_sha256 = models.CharField(max_length=64)
    metrics = models.JSONField(default=dict, help_text="validation metrics of the kept epoch")
    history = models.JSONField(default=list)
    data = models.JSONField(default=dict, help_text="cases used for training and validation, and their labels")
    labels_used = models.PositiveIntegerField()
    promoted = models.BooleanField(default=False)
    parent = models.ForeignKey("self", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "-version"]
        constraints = [models.UniqueConstraint(fields=["project", "version"], name="modelversion_unique")]


class CaseScore(models.Model):
    """A model version's view of one unlabelled case: probabilities, MC-dropout passes, an embedding."""

    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="scores")
    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="scores")
    probs = models.JSONField()
    mc_probs = models.JSONField(help_text="T x C probabilities of the stochastic passes")
    embedding = models.BinaryField(help_text="float32 vector")
    entropy = models.FloatField()
    bald = models.FloatField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["model_version", "case"], name="casescore_unique")]


class Round(models.Model):
    """One ranking of a project's unlabelled cases: strategy, budget, the model it used, what it chose."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="rounds")
    number = models.PositiveIntegerField()
    strategy = models.CharField(max_length=32)
    budget = models.PositiveIntegerField()
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, null=True, blank=True,
                                      related_name="rounds")
    job = models.OneToOneField(Job, on_delete=models.PROTECT, null=True, blank=True, related_name="round")
    labels_used = models.PositiveIntegerField(default=0)
    ranking = models.JSONField(default=list, help_text="case ids in the order readers will see them")
    metrics = models.JSONField(default=dict, help_text="the model version's validation metrics")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "number"]
        constraints = [models.UniqueConstraint(fields=["project", "number"], name="round_unique")]
