"""The archive index: Patient / Study / Series / Instance.

Each instance is parsed once, at ingest: its index fields are columns, its DICOM JSON metadata (bulk data as
links) and the byte ranges of its frames are stored beside it, so that serving never re-parses a file.
"""

from django.conf import settings
from django.db import models


class Patient(models.Model):
    patient_id = models.CharField(max_length=64, blank=True, db_index=True)
    issuer = models.CharField(max_length=64, blank=True)
    name = models.CharField(max_length=324, blank=True)
    birth_date = models.CharField(max_length=8, blank=True)
    sex = models.CharField(max_length=16, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["patient_id", "issuer"], name="unique_patient_id")]

    def __str__(self) -> str:
        return f"{self.patient_id or '(no ID)'} {self.name}"


class Study(models.Model):
    study_uid = models.CharField(max_length=64, unique=True)
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="studies")
    # Denormalised from the patient so study queries (QIDO) need no join to match on them.
    patient_name = models.CharField(max_length=324, blank=True)
    patient_name_search = models.CharField(max_length=324, blank=True, db_index=True,
                                           help_text="Upper-cased name, '^' as space: for case-insensitive matching")
    patient_identifier = models.CharField(max_length=64, blank=True, db_index=True, help_text="PatientID")
    study_date = models.CharField(max_length=8, blank=True, db_index=True)
    study_time = models.CharField(max_length=16, blank=True)
    accession_number = models.CharField(max_length=16, blank=True, db_index=True)
    study_id = models.CharField(max_length=16, blank=True)
    description = models.CharField(max_length=64, blank=True)
    referring_physician = models.CharField(max_length=324, blank=True)
    modalities = models.CharField(max_length=200, blank=True, help_text="Backslash-separated, sorted")
    num_series = models.PositiveIntegerField(default=0)
    num_instances = models.PositiveIntegerField(default=0)
    attributes = models.JSONField(default=dict, help_text="Patient and study module attributes, DICOM JSON")
    uid_generated = models.BooleanField(default=False, help_text="Okapi invented this StudyInstanceUID")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+", help_text="Who first stored it; sees it without a project")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "studies"
        ordering = ["id"]

    def __str__(self) -> str:
        return self.study_uid


class Series(models.Model):
    series_uid = models.CharField(max_length=64, unique=True)
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="series")
    modality = models.CharField(max_length=16, blank=True, db_index=True)
    series_number = models.IntegerField(null=True, blank=True)
    description = models.CharField(max_length=64, blank=True)
    series_date = models.CharField(max_length=8, blank=True)
    series_time = models.CharField(max_length=16, blank=True)
    body_part = models.CharField(max_length=16, blank=True)
    num_instances = models.PositiveIntegerField(default=0)
    attributes = models.JSONField(default=dict, help_text="Series module attributes, DICOM JSON")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "series"
        ordering = ["series_number", "id"]

    def __str__(self) -> str:
        return self.series_uid


class Instance(models.Model):
    sop_uid = models.CharField(max_length=64, unique=True)
    series = models.ForeignKey(Series, on_delete=models.CASCADE, related_name="instances")
    sop_class_uid = models.CharField(max_length=64, db_index=True)
    instance_number = models.IntegerField(null=True, blank=True)
    transfer_syntax_uid = models.CharField(max_length=64)
    rows = models.PositiveIntegerField(null=True, blank=True)
    columns = models.PositiveIntegerField(null=True, blank=True)
    bits_allocated = models.PositiveSmallIntegerField(null=True, blank=True)
    number_of_frames = models.PositiveIntegerField(default=0)
    file = models.CharField(max_length=300, help_text="Storage key of the stored Part 10 file")
    file_size = models.BigIntegerField()
    sha256 = models.CharField(max_length=64, help_text="Of the file as received (recognises a re-send)")
    metadata = models.TextField(help_text="DICOM JSON of the instance (bulk data as BulkDataURI), as text")
    pixel_index = models.TextField(blank=True, help_text="imaging.dicom.pixels.PixelIndex JSON; '' if no pixels")
    repairs = models.JSONField(default=list, blank=True, help_text="What Okapi changed at ingest, and why")
    deidentified = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["instance_number", "id"]
        indexes = [models.Index(fields=["series", "instance_number"])]

    def __str__(self) -> str:
        return self.sop_uid
