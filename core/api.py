"""REST endpoints of core: health, the current user, tokens, users, jobs, audit log."""

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from core import selectors
from core.auth import token_create, token_revoke, user_create
from core.errors import OkapiError
from core.health import health_report
from core.models import AuditEvent, User
from core.permissions import IsAdmin
from core.serializers import (
    AuditEventSerializer,
    HealthSerializer,
    JobSerializer,
    TokenCreatedSerializer,
    TokenCreateSerializer,
    TokenSerializer,
    UserCreateSerializer,
    UserSerializer,
)


class HealthView(APIView):
    """Database, broker and storage status. 200 when all are up, 503 otherwise. No login needed."""

    permission_classes = [AllowAny]
    authentication_classes: list = []

    @extend_schema(responses={200: HealthSerializer, 503: HealthSerializer})
    def get(self, request):
        report = health_report()
        return Response(report, status=200 if report["status"] == "ok" else 503)


class MeView(APIView):
    @extend_schema(responses=UserSerializer)
    def get(self, request):
        return Response(UserSerializer(request.user).data)


class TokenListCreateView(APIView):
    """List your tokens, or create one (the token is shown once in the answer)."""

    @extend_schema(responses=TokenSerializer(many=True))
    def get(self, request):
        return Response(TokenSerializer(selectors.tokens_for(request.user), many=True).data)

    @extend_schema(request=TokenCreateSerializer, responses={201: TokenCreatedSerializer})
    def post(self, request):
        data = TokenCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        token, raw = token_create(user=request.user, **data.validated_data)
        payload = TokenSerializer(token).data | {"token": raw}
        return Response(payload, status=status.HTTP_201_CREATED)


class TokenRevokeView(APIView):
    """Revoke one of your tokens; requests carrying it are refused from now on."""

    @extend_schema(request=None, responses=TokenSerializer)
    def delete(self, request, token_id: int):
        token = token_revoke(token=selectors.get_token_for(request.user, token_id))
        return Response(TokenSerializer(token).data)


class UserListCreateView(APIView):
    permission_classes = [IsAdmin]

    @extend_schema(responses=UserSerializer(many=True))
    def get(self, request):
        return Response(UserSerializer(User.objects.order_by("username"), many=True).data)

    @extend_schema(request=UserCreateSerializer, responses={201: UserSerializer})
    def post(self, request):
        data = UserCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = user_create(**data.validated_data)
        return Response(UserSerializer(user).data, status=status.HTTP_201_CREATED)


class JobDetailView(APIView):
    @extend_schema(responses=JobSerializer)
    def get(self, request, job_id):
        return Response(JobSerializer(selectors.get_job_for(request.user, job_id)).data)


class AuditListView(generics.ListAPIView):
    """The audit log, newest first; filter with ?study_uid=, ?username=, ?action=, ?since= (ISO time)."""

    permission_classes = [IsAdmin]
    serializer_class = AuditEventSerializer

    def get_queryset(self):
        qs = AuditEvent.objects.all()
        params = self.request.query_params
        for field in ("study_uid", "username", "action"):
            if params.get(field):
                qs = qs.filter(**{field: params[field]})
        if params.get("since"):
            try:
                since = timezone.datetime.fromisoformat(params["since"])
            except ValueError:
                raise OkapiError("invalid", "since must be an ISO 8601 date or time, e.g. 2026-01-31T12:00") from None
            qs = qs.filter(at__gte=since)
        return qs
