"""Periodic housekeeping of core (run by beat)."""

from datetime import timedelta

from celery import shared_task
from django.conf import settings

from core.jobs import jobs_fail_stale


@shared_task(name="core.recover_stale_jobs")
def recover_stale_jobs() -> int:
    """Retry or fail jobs whose worker died (no heartbeat for OKAPI_JOB_STALE_MINUTES): none stays 'running'."""
    return jobs_fail_stale(older_than=timedelta(minutes=settings.OKAPI_JOB_STALE_MINUTES))
