"""Celery application: queues ``default``, ``ingest``, ``export`` and ``gpu`` (training and scoring)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("okapi")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_routes = {
    "annotation.export_*": {"queue": "export"},
    "imaging.*": {"queue": "ingest"},
    "learning.*": {"queue": "gpu"},
    "core.*": {"queue": "default"},
}
app.autodiscover_tasks()
