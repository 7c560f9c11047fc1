from django.urls import path

from annotation.exports import api

urlpatterns = [
    path("projects/<int:project_id>/exports", api.ExportListView.as_view(), name="project-exports"),
    path("projects/<int:project_id>/exports/<int:version>", api.ExportDetailView.as_view(), name="project-export"),
    path("projects/<int:project_id>/exports/<int:version>/download", api.ExportDownloadView.as_view(),
         name="project-export-download"),
]
