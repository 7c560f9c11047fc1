from django.urls import path

from annotation.consumers import ProjectConsumer
from core.consumers import JobConsumer

websocket_urlpatterns = [
    path("ws/jobs/<uuid:job_id>", JobConsumer.as_asgi()),
    path("ws/projects/<int:project_id>", ProjectConsumer.as_asgi()),
]
