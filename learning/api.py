"""REST endpoints of the learning loop: settings, model versions, rounds, the learning curve."""

from django.http import HttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.models import ProjectRole
from annotation.selectors import get_project_for, require_role
from core.errors import NotFound, OkapiError
from core.serializers import JobSerializer
from learning.models import LearningConfig, ModelVersion, Round
from learning.services import learning_configure, learning_curve, learning_curve_png, round_create

OVERSEE = (ProjectRole.LEAD, ProjectRole.ADJUDICATOR, ProjectRole.DATA_SCIENTIST)


class LearningConfigSerializer(serializers.ModelSerializer):
    class Meta:
        model = LearningConfig
        fields = ["target", "model_config", "epochs", "batch_size", "learning_rate", "patience",
                  "validation_fraction", "mc_passes", "strategy", "budget", "auto_round_after", "updated_at"]
        read_only_fields = ["updated_at"]


class ModelVersionSerializer(serializers.ModelSerializer):
    job = serializers.UUIDField(source="job_id", read_only=True)
    parent = serializers.IntegerField(source="parent.version", read_only=True, allow_null=True, default=None)

    class Meta:
        model = ModelVersion
        fields = ["version", "job", "config", "weights_sha256", "metrics", "history", "labels_used", "promoted",
                  "parent", "created_at"]


class RoundSerializer(serializers.ModelSerializer):
    model_version = serializers.IntegerField(source="model_version.version", read_only=True, allow_null=True,
                                             default=None)

    class Meta:
        model = Round
        fields = ["number", "strategy", "budget", "model_version", "labels_used", "ranking", "metrics",
                  "created_at"]


class RoundCreateSerializer(serializers.Serializer):
    strategy = serializers.CharField(required=False)
    budget = serializers.IntegerField(required=False, min_value=1)


class LearningConfigView(APIView):
    @extend_schema(responses=LearningConfigSerializer)
    def get(self, request, project_id: int):
        project, roles = get_project_for(request.user, project_id)
        require_role(roles, *OVERSEE, action="see its learning settings")
        config = LearningConfig.objects.filter(project=project).first()
        if config is None:
            raise NotFound("this project has no learning settings yet")
        return Response(LearningConfigSerializer(config).data)

    @extend_schema(request=LearningConfigSerializer, responses=LearningConfigSerializer)
    def put(self, request, project_id: int):
        project, roles = get_project_for(request.user, project_id)
        require_role(roles, ProjectRole.LEAD, action="change its learning settings")
        ser = LearningConfigSerializer(data=request.data, partial=True)
        if not ser.is_valid():
            raise OkapiError("invalid", "the learning settings are not valid", detail=ser.errors)
        config = learning_configure(project=project, **ser.validated_data)
        return Response(LearningConfigSerializer(config).data)


class ModelListView(APIView):
    """Model versions of a project, newest first (the promoted one is the project's current model)."""

    @extend_schema(responses=ModelVersionSerializer(many=True))
    def get(self, request, project_id: int):
        project, roles = get_project_for(request.user, project_id)
        require_role(roles, *OVERSEE, action="see its models")
        qs = ModelVersion.objects.filter(project=project).select_related("parent").order_by("-version")
        return Response(ModelVersionSerializer(qs, many=True).data)


class RoundListView(APIView):
    """Rounds of active learning; a lead starts one (train, score, rank) as a job: 202 with the job."""

    @extend_schema(responses=RoundSerializer(many=True))
    def get(self, request, project_id: int):
        project, roles = get_project_for(request.user, project_id)
        require_role(roles, *OVERSEE, action="see its rounds")
        qs = Round.objects.filter(project=project).select_related("model_version").order_by("number")
        return Response(RoundSerializer(qs, many=True).data)

    @extend_schema(request=RoundCreateSerializer, responses={202: JobSerializer})
    def post(self, request, project_id: int):
        project, roles = get_project_for(request.user, project_id)
        require_role(roles, ProjectRole.LEAD, action="start a round")
        ser = RoundCreateSerializer(data=request.data)
        if not ser.is_valid():
            raise OkapiError("invalid", "the round is not valid", detail=ser.errors)
        job = round_create(project=project, user=request.user, **ser.validated_data)
        return Response(JobSerializer(job).data, status=202)


class LearningCurveView(APIView):
    """The learning curve: per round, labels used and the model's validation metrics (JSON, or PNG with
    ``.png``)."""

    @extend_schema(responses={200: OpenApiResponse(description="per-round points")})
    def get(self, request, project_id: int, fmt: str = "json"):
        project, roles = get_project_for(request.user, project_id)
        require_role(roles, *OVERSEE, action="see its learning curve")
        if fmt == "png":
            return HttpResponse(learning_curve_png(project), content_type="image/png")
        return Response(learning_curve(project))
