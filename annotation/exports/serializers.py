"""Shapes of the export API (shapes only: the request is validated by services.export_params)."""

from rest_framework import serializers

from annotation.models_export import Export


class ExportSplitSerializer(serializers.Serializer):
    validation = serializers.FloatField(required=False, default=0.15)
    test = serializers.FloatField(required=False, default=0.15)
    seed = serializers.IntegerField(required=False, default=0)


class ExportRequestSerializer(serializers.Serializer):
    cases = serializers.ChoiceField(["consensus", "all"], default="consensus",
                                    help_text="consensus cases only, or every case with a submitted read (leads)")
    schema_version = serializers.IntegerField(required=False, allow_null=True,
                                              help_text="only reads made under this label schema version")
    series_uids = serializers.ListField(child=serializers.CharField(), required=False)
    modality = serializers.CharField(required=False, allow_blank=True)
    date_from = serializers.CharField(required=False, allow_blank=True, help_text="StudyDate from, YYYY-MM-DD")
    date_to = serializers.CharField(required=False, allow_blank=True, help_text="StudyDate to, YYYY-MM-DD")
    deidentified = serializers.BooleanField(default=True, help_text="false: identified data (leads and admins)")
    images = serializers.ChoiceField(["nifti", "dicom", "both"], default="nifti")
    split = ExportSplitSerializer(required=False)
    licence = serializers.CharField(required=False, allow_blank=True, help_text="licence text for the datasheet")


class ExportSerializer(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.username", read_only=True, default=None)
    download = serializers.SerializerMethodField()

    class Meta:
        model = Export
        fields = ["id", "project", "version", "content_hash", "size", "sha256", "deidentified", "schema_version",
                  "request", "summary", "created_by", "created_at", "download"]
        read_only_fields = fields

    def get_download(self, obj) -> str:
        return f"/api/v1/projects/{obj.project_id}/exports/{obj.version}/download"
