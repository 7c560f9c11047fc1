from django.urls import path

from imaging import api

urlpatterns = [
    path("uploads", api.UploadView.as_view(), name="imaging-upload"),
    path("imports", api.ImportView.as_view(), name="imaging-import"),
    path("studies", api.StudyListView.as_view(), name="imaging-studies"),
    path("studies/<str:study_uid>", api.StudyDetailView.as_view(), name="imaging-study"),
]
