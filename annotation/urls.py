from django.urls import include, path

from annotation import api

urlpatterns = [
    path("projects", api.ProjectListView.as_view(), name="projects"),
    path("projects/<int:project_id>", api.ProjectDetailView.as_view(), name="project-detail"),
    path("projects/<int:project_id>/members", api.MemberListView.as_view(), name="project-members"),
    path("projects/<int:project_id>/members/<int:membership_id>", api.MemberDetailView.as_view(),
         name="project-member"),
    path("projects/<int:project_id>/schema", api.SchemaView.as_view(), name="project-schema"),
    path("projects/<int:project_id>/schema/versions", api.SchemaVersionsView.as_view(), name="project-schemas"),
    path("projects/<int:project_id>/cases", api.CaseListView.as_view(), name="project-cases"),
    path("projects/<int:project_id>/next-case", api.NextCaseView.as_view(), name="project-next-case"),
    path("projects/<int:project_id>/assignments", api.AssignView.as_view(), name="project-assign"),
    path("projects/<int:project_id>/progress", api.ProgressView.as_view(), name="project-progress"),
    path("projects/<int:project_id>/agreement", api.AgreementView.as_view(), name="project-agreement"),
    path("projects/<int:project_id>/adjudication-queue", api.AdjudicationQueueView.as_view(),
         name="project-adjudication-queue"),
    path("assignments", api.MyAssignmentsView.as_view(), name="my-assignments"),
    path("cases/<int:case_id>", api.CaseDetailView.as_view(), name="case-detail"),
    path("cases/<int:case_id>/reads", api.CaseReadsView.as_view(), name="case-reads"),
    path("cases/<int:case_id>/read", api.MyReadView.as_view(), name="case-my-read"),
    path("cases/<int:case_id>/read/segmentation", api.SegmentationUploadView.as_view(), name="case-segmentation"),
    path("cases/<int:case_id>/release", api.ReleaseView.as_view(), name="case-release"),
    path("cases/<int:case_id>/adjudication", api.AdjudicateView.as_view(), name="case-adjudicate"),
    path("reads/<int:read_id>", api.ReadDetailView.as_view(), name="read-detail"),
    path("reads/<int:read_id>/versions", api.ReadVersionsView.as_view(), name="read-versions"),
    path("", include("annotation.exports.urls")),
]
