from django.urls import path

from core import api

urlpatterns = [
    path("health", api.HealthView.as_view(), name="health"),
    path("me", api.MeView.as_view(), name="me"),
    path("tokens", api.TokenListCreateView.as_view(), name="tokens"),
    path("tokens/<int:token_id>", api.TokenRevokeView.as_view(), name="token-revoke"),
    path("users", api.UserListCreateView.as_view(), name="users"),
    path("jobs/<uuid:job_id>", api.JobDetailView.as_view(), name="job-detail"),
    path("audit", api.AuditListView.as_view(), name="audit"),
]
