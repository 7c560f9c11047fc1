from rest_framework import serializers

from imaging.models import Series, Study


class StudySerializer(serializers.ModelSerializer):
    class Meta:
        model = Study
        fields = ["study_uid", "patient_name", "patient_identifier", "study_date", "study_time", "accession_number",
                  "description", "modalities", "num_series", "num_instances", "uid_generated", "created_at"]
        read_only_fields = fields


class SeriesSerializer(serializers.ModelSerializer):
    class Meta:
        model = Series
        fields = ["series_uid", "modality", "series_number", "description", "body_part", "num_instances"]
        read_only_fields = fields


class StudyDetailSerializer(StudySerializer):
    series = SeriesSerializer(many=True, read_only=True)

    class Meta(StudySerializer.Meta):
        fields = StudySerializer.Meta.fields + ["series"]
        read_only_fields = fields


class IngestResultSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["stored", "duplicate", "rejected"])
    name = serializers.CharField()
    sop_instance_uid = serializers.CharField(required=False)
    study_uid = serializers.CharField(required=False)
    series_uid = serializers.CharField(required=False)
    reason = serializers.CharField(required=False)
    code = serializers.CharField(required=False)


class UploadSummarySerializer(serializers.Serializer):
    stored = serializers.IntegerField()
    duplicate = serializers.IntegerField()
    rejected = serializers.IntegerField()
    results = IngestResultSerializer(many=True)


class UploadSerializer(serializers.Serializer):
    files = serializers.ListField(child=serializers.FileField(), help_text="DICOM files or zip archives")
