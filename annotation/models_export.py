"""Exports of labelled datasets: immutable, versioned snapshots of a project (annotation.exports).

A row exists only for a snapshot that is complete: built, hashed and stored. Building happens in a job (the
Job row says queued/running/failed); a failed or interrupted build leaves a failed job and no Export. Rows are
never updated: a later export is a new version, and every version stays downloadable.
"""

from django.conf import settings
from django.db import models

__all__ = ["Export"]


class Export(models.Model):
    """One version of a project's dataset: a zip in storage, identified by its content hash (the SHA-256 of
    its manifest). The same content is stored once per project: an identical request on unchanged data
    returns the existing version."""

    project = models.ForeignKey("annotation.Project", on_delete=models.CASCADE, related_name="exports")
    version = models.PositiveIntegerField(help_text="1, 2, ... per project, in the order snapshots were made")
    content_hash = models.CharField(max_length=64, help_text="SHA-256 of manifest.json in the archive")
    file = models.CharField(max_length=300, help_text="Storage key of the zip archive")
    size = models.BigIntegerField(help_text="Bytes of the zip archive")
    sha256 = models.CharField(max_length=64, help_text="SHA-256 of the zip archive's bytes")
    request = models.JSONField(help_text="The normalised request (filters, format, split) that selected it")
    deidentified = models.BooleanField()
    schema_version = models.PositiveIntegerField(null=True, blank=True)
    summary = models.JSONField(default=dict, blank=True, help_text="Counts, classes, splits, problems")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    job = models.ForeignKey("core.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["project", "version"], name="export_unique_version"),
            models.UniqueConstraint(fields=["project", "content_hash"], name="export_unique_content"),
        ]

    def __str__(self) -> str:
        return f"project {self.project_id} v{self.version}"
