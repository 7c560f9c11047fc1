from django.urls import path

from learning import api

urlpatterns = [
    path("projects/<int:project_id>/learning", api.LearningConfigView.as_view(), name="project-learning"),
    path("projects/<int:project_id>/models", api.ModelListView.as_view(), name="project-models"),
    path("projects/<int:project_id>/rounds", api.RoundListView.as_view(), name="project-rounds"),
    path("projects/<int:project_id>/learning-curve", api.LearningCurveView.as_view(), name="project-curve"),
    path("projects/<int:project_id>/learning-curve.png", api.LearningCurveView.as_view(), {"fmt": "png"},
         name="project-curve-png"),
]
