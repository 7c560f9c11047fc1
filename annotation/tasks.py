"""Background work of campaigns: building dataset exports (queue ``export``).

A worker killed mid-build leaves its job 'running' with a stale heartbeat and no Export row;
core.recover_stale_jobs then queues it again (registered below, up to three attempts in all) and fails it
after that. A build starts from nothing each time, so a retry is safe.
"""

from celery import shared_task
from django.contrib.auth import get_user_model

from core.jobs import job_fail, job_finish, job_progress, job_start, register_job_retry
from core.models import Job, JobState

EXPORT_SOFT_LIMIT_SECONDS = 6 * 3600


def queue_export(job: Job) -> None:
    export_build_task.apply_async(args=[str(job.pk)], queue="export")


@shared_task(name="annotation.export_build", acks_late=True, reject_on_worker_lost=True,
             soft_time_limit=EXPORT_SOFT_LIMIT_SECONDS, time_limit=EXPORT_SOFT_LIMIT_SECONDS + 300)
def export_build_task(job_id: str) -> None:
    """Build the export a job asks for, with live progress; its result names the version (new or reused).

    Safe to run again after a crash: a build starts from nothing and records a version only once its archive
    is stored, so a redelivered task rebuilds and finds the same content hash.
    """
    from annotation.exports.build import export_build
    from annotation.exports.services import check_may_export
    from annotation.models import Project
    from annotation.selectors import project_roles

    job = Job.objects.filter(pk=job_id).first()
    if job is None or job.state in {JobState.SUCCEEDED, JobState.CANCELLED}:
        return
    job = job_start(job_id=job_id)
    try:
        project = Project.objects.get(pk=job.params["project"])
        request = job.params["request"]
        user = get_user_model().objects.filter(pk=job.created_by_id).first()
        if user is not None:  # a role taken away since the request no longer allows the export
            check_may_export(project_roles(user, project.pk), request)

        def progress(fraction: float, message: str) -> None:
            job_progress(job_id=job_id, progress=fraction, message=message)

        built = export_build(project=project, request=request, user=user, job_id=job.pk, on_progress=progress)
        export = built.export
        job_finish(job_id=job_id, result={
            "export": export.pk, "project": project.pk, "version": export.version,
            "content_hash": export.content_hash, "size": export.size, "reused": built.reused,
            "download": f"/api/v1/projects/{project.pk}/exports/{export.version}/download",
        }, message=f"version {export.version}" + (" (same content as an existing version)" if built.reused else ""))
    except Exception as exc:
        job_fail(job_id=job_id, error=f"{type(exc).__name__}: {exc}")
        raise


register_job_retry("export", queue_export, max_attempts=3)
