"""Periodic housekeeping of core (run by beat)."""

from celery import shared_task

from core.jobs import jobs_fail_stale


@shared_task(name="core.recover_stale_jobs")
def recover_stale_jobs() -> int:
    """Fail jobs whose worker died (no heartbeat for 30 minutes): none stays 'running' forever."""
    return jobs_fail_stale()
