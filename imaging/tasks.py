"""Background work of the archive: server-side imports, temporary-file sweeps."""

import os
import time

from celery import shared_task
from django.conf import settings
from django.contrib.auth import get_user_model

from core.jobs import job_fail, job_finish, job_progress, job_start
from core.models import Job, JobState
from imaging.services.batch import count_items, ingest_paths

PROGRESS_EVERY_SECONDS = 0.5


@shared_task(name="imaging.import_paths", acks_late=True, reject_on_worker_lost=True, max_retries=3)
def import_paths_task(job_id: str) -> None:
    """Import a job's paths with live progress. Safe to run again after a crash: ingest is idempotent."""
    job = Job.objects.filter(pk=job_id).first()
    if job is None or job.state in {JobState.SUCCEEDED, JobState.CANCELLED}:
        return
    job = job_start(job_id=job_id)
    user = get_user_model().objects.filter(pk=job.created_by_id).first()
    try:
        paths = job.params["paths"]
        total = max(count_items(paths), 1)
        state = {"done": 0, "last": 0.0}

        def on_result(_result):
            state["done"] += 1
            now = time.monotonic()
            if now - state["last"] >= PROGRESS_EVERY_SECONDS or state["done"] == total:
                state["last"] = now
                job_progress(job_id=job_id, progress=state["done"] / total, message=f"{state['done']}/{total} files")

        summary = ingest_paths(paths, user=user, source="import-job", on_result=on_result)
        counts = summary.counts()
        rejected = [r.as_dict() for r in summary.results if r.status == "rejected"][:1000]
        job_finish(job_id=job_id, result={**counts, "rejected_files": rejected},
                   message=f"stored {counts['stored']}, duplicates {counts['duplicate']}, rejected {counts['rejected']}")
    except Exception as exc:
        job_fail(job_id=job_id, error=f"{type(exc).__name__}: {exc}")
        raise


@shared_task(name="imaging.sweep_temp_files")
def sweep_temp_files(max_age_hours: float = 24) -> int:
    """Delete temporary files left by interrupted uploads (a crash mid-STOW leaves its part files)."""
    cutoff = time.time() - max_age_hours * 3600
    removed = 0
    for entry in os.scandir(settings.FILE_UPLOAD_TEMP_DIR):
        if entry.is_file() and entry.stat().st_mtime < cutoff:
            os.unlink(entry.path)
            removed += 1
    return removed
