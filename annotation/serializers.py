"""Shapes of the campaign API. Serializers only shape data: every write goes through a service."""

from rest_framework import serializers

from annotation.models import (
    Adjudication,
    Assignment,
    Case,
    LabelSchema,
    MaskConsensus,
    Membership,
    OrdinalConsensus,
    Project,
    ProjectRole,
    Read,
    ReadVersion,
)


class ProjectSerializer(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.username", read_only=True)
    my_roles = serializers.SerializerMethodField()
    schema_version = serializers.SerializerMethodField()

    class Meta:
        model = Project
        fields = ["id", "name", "description", "reads_per_case", "agreement_threshold", "ordinal_consensus",
                  "mask_consensus", "claim_minutes", "created_by", "created_at", "updated_at", "my_roles",
                  "schema_version"]

    def get_my_roles(self, obj) -> list[str]:
        return sorted(self.context.get("roles", {}).get(obj.pk, []))

    def get_schema_version(self, obj) -> int | None:
        return self.context.get("schema_versions", {}).get(obj.pk)


class ProjectCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True)
    reads_per_case = serializers.IntegerField(required=False)
    agreement_threshold = serializers.FloatField(required=False)
    ordinal_consensus = serializers.ChoiceField(choices=OrdinalConsensus.choices, required=False)
    mask_consensus = serializers.ChoiceField(choices=MaskConsensus.choices, required=False)
    claim_minutes = serializers.IntegerField(required=False)
    schema = serializers.JSONField(required=False, help_text="the first label schema version")


class ProjectUpdateSerializer(ProjectCreateSerializer):
    name = serializers.CharField(max_length=200, required=False)
    schema = None


class MembershipSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username", read_only=True)

    class Meta:
        model = Membership
        fields = ["id", "username", "role", "created_at"]


class MemberAddSerializer(serializers.Serializer):
    username = serializers.CharField()
    role = serializers.ChoiceField(choices=ProjectRole.choices)


class SchemaSerializer(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.username", read_only=True)

    class Meta:
        model = LabelSchema
        fields = ["version", "definition", "created_by", "created_at"]


class SchemaPublishSerializer(serializers.Serializer):
    definition = serializers.JSONField()


class CasesAddSerializer(serializers.Serializer):
    study_uids = serializers.ListField(child=serializers.CharField(max_length=64), required=False)
    series_uids = serializers.ListField(child=serializers.CharField(max_length=64), required=False)
    query = serializers.DictField(required=False, help_text="patient_id, accession_number, modality, "
                                  "description, date_from, date_to")


class CasesAddedSerializer(serializers.Serializer):
    added = serializers.IntegerField()
    skipped = serializers.IntegerField()


class CaseSerializer(serializers.ModelSerializer):
    """A case; agreement and consensus only for those who may see all reads (never for a reader)."""

    study_uid = serializers.CharField(source="study.study_uid", read_only=True)
    series_uid = serializers.SerializerMethodField()
    patient_name = serializers.CharField(source="study.patient_name", read_only=True)
    patient_id = serializers.CharField(source="study.patient_identifier", read_only=True)
    study_description = serializers.CharField(source="study.description", read_only=True)
    study_date = serializers.CharField(source="study.study_date", read_only=True)
    modalities = serializers.CharField(source="study.modalities", read_only=True)

    class Meta:
        model = Case
        fields = ["id", "project", "study_uid", "series_uid", "patient_name", "patient_id", "study_description",
                  "study_date", "modalities", "priority", "state", "reads_submitted", "agreement", "consensus",
                  "consensus_source", "consensus_detail", "consensus_at", "created_at"]

    def get_series_uid(self, obj) -> str | None:
        return obj.series.series_uid if obj.series_id else None

    def to_representation(self, instance):
        data = super().to_representation(instance)
        if not self.context.get("see_all"):
            for key in ("agreement", "consensus", "consensus_source", "consensus_detail", "consensus_at"):
                data.pop(key, None)
        return data


class AssignmentSerializer(serializers.ModelSerializer):
    reader = serializers.CharField(source="reader.username", read_only=True)
    case = CaseSerializer(read_only=True)
    project_name = serializers.CharField(source="case.project.name", read_only=True)

    class Meta:
        model = Assignment
        fields = ["id", "case", "project_name", "reader", "state", "claimed_at", "expires_at", "submitted_at"]


class AssignSerializer(serializers.Serializer):
    case = serializers.IntegerField()
    reader = serializers.CharField(help_text="username")


class ReadSerializer(serializers.ModelSerializer):
    reader = serializers.CharField(source="reader.username", read_only=True)
    schema_version = serializers.IntegerField(source="schema.version", read_only=True)
    segmentation = serializers.SerializerMethodField()

    class Meta:
        model = Read
        fields = ["id", "case", "reader", "version", "state", "answers", "confidence", "free_text",
                  "time_spent_seconds", "schema_version", "segmentation", "created_at", "updated_at",
                  "submitted_at"]

    def get_segmentation(self, obj) -> dict | None:
        return _segmentation(obj.segmentation) if obj.segmentation_id else None


def _segmentation(instance) -> dict:
    series = instance.series
    return {"sop_instance_uid": instance.sop_uid, "series_uid": series.series_uid,
            "study_uid": series.study.study_uid}


class ReadVersionSerializer(serializers.ModelSerializer):
    schema_version = serializers.IntegerField(source="schema.version", read_only=True)
    segmentation = serializers.SerializerMethodField()

    class Meta:
        model = ReadVersion
        fields = ["version", "state", "answers", "confidence", "free_text", "time_spent_seconds",
                  "schema_version", "segmentation", "created_at"]

    def get_segmentation(self, obj) -> dict | None:
        return _segmentation(obj.segmentation) if obj.segmentation_id else None


class ReadSaveSerializer(serializers.Serializer):
    answers = serializers.DictField(required=False, default=dict)
    confidence = serializers.IntegerField(required=False, allow_null=True)
    free_text = serializers.CharField(required=False, allow_blank=True, default="")
    time_spent_seconds = serializers.FloatField(required=False, default=0.0)
    submit = serializers.BooleanField(required=False, default=False)
    base_version = serializers.IntegerField(required=False, allow_null=True,
                                            help_text="the version this save was edited from (0 or null: new)")


class SegmentationUploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="a DICOM SEG, or an .npz of masks named by segmentation label")
    base_version = serializers.IntegerField()
    series_uid = serializers.CharField(required=False, help_text="the segmented series (for .npz masks)")
    submit = serializers.BooleanField(required=False, default=False)


class AdjudicateSerializer(serializers.Serializer):
    answers = serializers.DictField(required=False, help_text="the decided answers")
    chosen_read = serializers.IntegerField(required=False, help_text="or: adopt this read's answers")
    note = serializers.CharField(required=False, allow_blank=True, default="")


class AdjudicationSerializer(serializers.ModelSerializer):
    adjudicator = serializers.CharField(source="adjudicator.username", read_only=True)

    class Meta:
        model = Adjudication
        fields = ["id", "case", "adjudicator", "decision", "chosen_read", "note", "created_at"]


class ProgressSerializer(serializers.Serializer):
    project = serializers.IntegerField()
    reads_per_case = serializers.IntegerField()
    cases = serializers.DictField(child=serializers.IntegerField())
    reads = serializers.DictField()
    readers = serializers.ListField(child=serializers.DictField())
    median_seconds_per_read = serializers.FloatField(allow_null=True)


class AgreementSerializer(serializers.Serializer):
    cases = serializers.IntegerField()
    readers = serializers.ListField(child=serializers.CharField())
    questions = serializers.DictField()
    masks = serializers.DictField()
