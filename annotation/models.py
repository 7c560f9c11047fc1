"""Campaigns (projects), their label schemas, cases, claims, reads and consensus.

A read is never overwritten: each save is a new ReadVersion, and Read holds a copy of the latest one so that
lists and statistics need no subquery. Consensus and adjudication are recorded on the case with their source.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q

from imaging.models import Instance, Series, Study


class ProjectRole(models.TextChoices):
    LEAD = "lead", "Project lead"
    RADIOLOGIST = "radiologist", "Radiologist"
    ADJUDICATOR = "adjudicator", "Adjudicator"
    DATA_SCIENTIST = "data_scientist", "Data scientist"


class OrdinalConsensus(models.TextChoices):
    MEDIAN = "median", "Median"
    MEAN = "mean", "Mean (rounded to the scale)"


class MaskConsensus(models.TextChoices):
    STAPLE = "staple", "STAPLE"
    MAJORITY = "majority", "Majority voxel vote"


class Project(models.Model):
    """An annotation campaign: studies, readers, a label schema, k reads per case, an agreement threshold."""

    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    reads_per_case = models.PositiveSmallIntegerField(default=3, help_text="k independent reads per case")
    agreement_threshold = models.FloatField(
        default=0.7, help_text="cases whose agreement (share of reader pairs agreeing) is below go to adjudication")
    ordinal_consensus = models.CharField(max_length=16, choices=OrdinalConsensus.choices,
                                         default=OrdinalConsensus.MEDIAN)
    mask_consensus = models.CharField(max_length=16, choices=MaskConsensus.choices, default=MaskConsensus.STAPLE)
    claim_minutes = models.PositiveIntegerField(default=30, help_text="an unfinished claim returns to the pool "
                                                                      "after this long")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "id"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """A user's role in one project; a user may hold several roles (a lead who also adjudicates)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=ProjectRole.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "user", "role"], name="membership_unique_role")]
        indexes = [models.Index(fields=["user", "project"])]


class LabelSchema(models.Model):
    """One version of a project's label schema; a new version never changes reads made under an old one."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="schemas")
    version = models.PositiveIntegerField()
    definition = models.JSONField(help_text="questions, segments, free_text, confidence (annotation.schema)")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "-version"]
        constraints = [models.UniqueConstraint(fields=["project", "version"], name="schema_unique_version")]


class CaseState(models.TextChoices):
    OPEN = "open", "Needs reads"
    ADJUDICATION = "adjudication", "Waiting for adjudication"
    CONSENSUS = "consensus", "Consensus reached"


class Case(models.Model):
    """A study (or one series of it) to be read k times. ``priority``: lower is read sooner."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="cases")
    study = models.ForeignKey(Study, on_delete=models.PROTECT, related_name="cases")
    series = models.ForeignKey(Series, on_delete=models.PROTECT, null=True, blank=True, related_name="cases")
    priority = models.FloatField(default=0.0, db_index=True)
    state = models.CharField(max_length=16, choices=CaseState.choices, default=CaseState.OPEN)
    reads_submitted = models.PositiveSmallIntegerField(default=0)
    agreement = models.FloatField(null=True, blank=True)
    consensus = models.JSONField(null=True, blank=True)
    consensus_source = models.CharField(max_length=16, blank=True, help_text="majority or adjudication")
    consensus_detail = models.JSONField(default=dict, blank=True, help_text="votes, ties, per-question agreement")
    consensus_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["priority", "id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "study"], condition=Q(series__isnull=True),
                                    name="case_unique_study"),
            models.UniqueConstraint(fields=["project", "series"], condition=Q(series__isnull=False),
                                    name="case_unique_series"),
        ]
        indexes = [models.Index(fields=["project", "state", "priority", "id"])]


class ClaimState(models.TextChoices):
    CLAIMED = "claimed", "Claimed (reading)"
    SUBMITTED = "submitted", "Read submitted"
    RELEASED = "released", "Released"


class Assignment(models.Model):
    """A reader's slot on a case: claimed by "next case" or assigned by a lead, until submitted or expired.

    A case never has more than k slots that are submitted or claimed and unexpired; one reader holds at most
    one slot per case (so k reads come from k different readers).
    """

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="assignments")
    reader = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments")
    state = models.CharField(max_length=16, choices=ClaimState.choices, default=ClaimState.CLAIMED)
    claimed_at = models.DateTimeField()
    expires_at = models.DateTimeField(null=True, blank=True, help_text="null: assigned by a lead, no expiry")
    assigned_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                    related_name="+")
    submitted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["case", "reader"], name="assignment_one_per_reader")]
        indexes = [models.Index(fields=["reader", "state"]), models.Index(fields=["case", "state"])]


class ReadState(models.TextChoices):
    DRAFT = "draft", "Draft"
    SUBMITTED = "submitted", "Submitted"


class Read(models.Model):
    """One reader's read of one case: the latest version's content, kept here for fast lists."""

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="reads")
    reader = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="reads")
    schema = models.ForeignKey(LabelSchema, on_delete=models.PROTECT, related_name="+")
    version = models.PositiveIntegerField(default=1)
    state = models.CharField(max_length=16, choices=ReadState.choices, default=ReadState.DRAFT)
    answers = models.JSONField(default=dict)
    confidence = models.PositiveSmallIntegerField(null=True, blank=True)
    free_text = models.TextField(blank=True)
    time_spent_seconds = models.FloatField(default=0.0, help_text="total over all versions")
    segmentation = models.ForeignKey(Instance, on_delete=models.PROTECT, null=True, blank=True, related_name="+",
                                     help_text="the DICOM SEG of the latest version, stored in the archive")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField()
    submitted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["case", "reader"], name="read_one_per_reader")]


class ReadVersion(models.Model):
    """An immutable saved version of a read: a correction is a new version, never an edit."""

    read = models.ForeignKey(Read, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    state = models.CharField(max_length=16, choices=ReadState.choices)
    answers = models.JSONField(default=dict)
    confidence = models.PositiveSmallIntegerField(null=True, blank=True)
    free_text = models.TextField(blank=True)
    time_spent_seconds = models.FloatField(default=0.0, help_text="spent on this version")
    segmentation = models.ForeignKey(Instance, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    schema = models.ForeignKey(LabelSchema, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["read", "version"]
        constraints = [models.UniqueConstraint(fields=["read", "version"], name="readversion_unique")]


class Adjudication(models.Model):
    """An adjudicator's decision on a case: it becomes the consensus, recorded as such."""

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="adjudications")
    adjudicator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    decision = models.JSONField()
    chosen_read = models.ForeignKey(Read, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["case", "-created_at"]
from annotation.models_export import *  # noqa
