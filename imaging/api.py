"""REST endpoints of the archive: browser uploads and study listings (DICOMweb has its own views)."""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import OkapiError
from core.permissions import CanIngest
from core.serializers import JobSerializer
from imaging import selectors
from imaging.serializers import (
    StudyDetailSerializer,
    StudySerializer,
    UploadSerializer,
    UploadSummarySerializer,
)
from imaging.services.batch import ingest_paths
from imaging.services.imports import import_job_create


class UploadView(APIView):
    """Upload DICOM files or zip archives from the browser (multipart/form-data, field ``files``).

    Each file is stored, recognised as a duplicate, or rejected with its reason; the answer lists them all.
    """

    permission_classes = [CanIngest]
    parser_classes = [MultiPartParser]

    @extend_schema(request={"multipart/form-data": UploadSerializer}, responses=UploadSummarySerializer)
    def post(self, request):
        files = request.FILES.getlist("files")
        if not files:
            raise OkapiError("empty", "no files: send them in the multipart field 'files'")
        results = []
        for upload in files:
            path = upload.temporary_file_path()
            summary = ingest_paths([path], user=request.user, source="upload", consume=True, request=request)
            for result in summary.results:
                result.name = result.name.replace(path, upload.name)
            results.extend(summary.results)
        counts = {s: sum(r.status == s for r in results) for s in ("stored", "duplicate", "rejected")}
        status = 200 if counts["rejected"] == 0 else 207 if counts["stored"] + counts["duplicate"] else 422
        return Response({**counts, "results": [r.as_dict() for r in results]}, status=status)


class StudyListView(generics.ListAPIView):
    """Studies you may see, newest first; ?q= searches patient name, ID, accession and description."""

    serializer_class = StudySerializer

    @extend_schema(parameters=[OpenApiParameter("q", str, description="search text")])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        from django.db.models import Q

        qs = selectors.studies_for(self.request.user).order_by("-created_at", "-id")
        text = self.request.query_params.get("q", "").strip()
        if text:
            qs = qs.filter(Q(patient_name_search__icontains=text.upper()) | Q(patient_identifier__icontains=text)
                           | Q(accession_number__icontains=text) | Q(description__icontains=text)
                           | Q(study_uid=text))
        return qs


class StudyDetailView(APIView):
    @extend_schema(responses=StudyDetailSerializer)
    def get(self, request, study_uid: str):
        study = selectors.get_study_for(request.user, study_uid)
        return Response(StudyDetailSerializer(study).data)


class ImportSerializer(serializers.Serializer):
    paths = serializers.ListField(child=serializers.CharField(), help_text="Files or folders under an import root")


class ImportView(APIView):
    """Import files or folders already on the server (under OKAPI_IMPORT_ROOTS) as a background job.

    Answers 202 with the job; follow it at /api/v1/jobs/{id} or live on the websocket /ws/jobs/{id}.
    """

    permission_classes = [CanIngest]

    @extend_schema(request=ImportSerializer, responses={202: JobSerializer})
    def post(self, request):
        data = ImportSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        job = import_job_create(user=request.user, paths=data.validated_data["paths"])
        return Response(JobSerializer(job).data, status=202)
