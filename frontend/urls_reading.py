"""Radiologists' pages (frontend/views_reading.py): worklist, reading page, and the OHIF viewer under /viewer/."""

from django.urls import path, re_path
from django.views.generic import RedirectView

from frontend import views_reading as v

urlpatterns = [
    path("reading/", v.worklist, name="worklist"),
    path("reading/cases/<int:case_id>/", v.reading, name="reading"),
    path("viewer", RedirectView.as_view(url="/viewer/", permanent=False)),
    path("viewer/", v.viewer, name="viewer"),
    re_path(r"^viewer/(?P<path>.+)$", v.viewer, name="viewer-path"),
]
