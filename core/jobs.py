"""Background-job records: the database row is the truth about a job, workers report into it."""

from collections.abc import Callable
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from core.events import flush_events, group_for, send_event, send_event_on_commit
from core.models import Job, JobState


def job_event(job: Job) -> dict:
    """What subscribers of a job hear."""
    return {
        "type": "job",
        "id": str(job.id),
        "kind": job.kind,
        "state": job.state,
        "progress": job.progress,
        "message": job.message,
        "error": job.error,
        "result": job.result,
    }


def job_create(*, kind: str, params: dict | None = None, user=None) -> Job:
    """Record a queued job. The caller queues the Celery task with transaction.on_commit."""
    job = Job.objects.create(kind=kind, params=params or {}, created_by=user if user and user.pk else None)
    send_event_on_commit(group_for("job", job.id), job_event(job))
    return job


def job_start(*, job_id) -> Job:
    """Mark a job running (a retry increments attempts)."""
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job_id)
        job.state = JobState.RUNNING
        job.attempts += 1
        job.started_at = job.heartbeat_at = timezone.now()
        job.error = ""
        job.save(update_fields=["state", "attempts", "started_at", "heartbeat_at", "error"])
    send_event(group_for("job", job.id), job_event(job))
    return job


def job_progress(*, job_id, progress: float, message: str = "") -> None:
    """Report progress (0..1) and a heartbeat."""
    now = timezone.now()
    Job.objects.filter(pk=job_id).update(progress=max(0.0, min(1.0, progress)), message=message[:300],
                                         heartbeat_at=now)
    job = Job.objects.get(pk=job_id)
    send_event(group_for("job", job.id), job_event(job))


def job_finish(*, job_id, result: dict | None = None, message: str = "done") -> Job:
    """Mark a job succeeded with its result."""
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job_id)
        job.state = JobState.SUCCEEDED
        job.progress = 1.0
        job.result = result or {}
        job.message = message[:300]
        job.finished_at = timezone.now()
        job.save()
        send_event_on_commit(group_for("job", job.id), job_event(job))
    flush_events()  # a worker may exit right after: its last event must have left
    return job


def job_fail(*, job_id, error: str) -> Job:
    """Mark a job failed with the reason."""
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job_id)
        job.state = JobState.FAILED
        job.error = error
        job.finished_at = timezone.now()
        job.save()
        send_event_on_commit(group_for("job", job.id), job_event(job))
    flush_events()  # a worker may exit right after: its last event must have left
    return job


# kind -> (function that queues the job's task again, attempts allowed in all)
_retries: dict[str, tuple[Callable[[Job], None], int]] = {}


def register_job_retry(kind: str, requeue: Callable[[Job], None], *, max_attempts: int = 3) -> None:
    """Let jobs of ``kind`` whose worker died be queued again (up to ``max_attempts`` runs) instead of failed.
    The job's task must be idempotent: a retried job may find part of its work done."""
    _retries[kind] = (requeue, max_attempts)


def jobs_fail_stale(*, older_than: timedelta = timedelta(minutes=30)) -> int:
    """Recover running jobs whose worker stopped sending heartbeats (it died): queued again if their kind is
    retryable and attempts remain, otherwise failed; never left 'running' forever. Returns how many."""
    cutoff = timezone.now() - older_than
    stale = list(Job.objects.filter(state=JobState.RUNNING, heartbeat_at__lt=cutoff).values_list("pk", flat=True))
    for pk in stale:
        with transaction.atomic():
            job = Job.objects.select_for_update().get(pk=pk)
            if job.state != JobState.RUNNING:
                continue
            retry = _retries.get(job.kind)
            if retry is not None and job.attempts < retry[1]:
                job.state, job.message = JobState.QUEUED, f"retrying: the worker of attempt {job.attempts} died"
                job.save(update_fields=["state", "message"])
                send_event_on_commit(group_for("job", job.id), job_event(job))
                transaction.on_commit(lambda job=job, requeue=retry[0]: requeue(job))
                continue
        job_fail(job_id=pk, error="the worker running this job stopped responding")
    return len(stale)
