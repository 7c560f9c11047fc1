"""Celery tasks of the learning loop, on the ``gpu`` queue. Each takes a job id; the job row is the truth.

A worker killed mid-training leaves its job 'running' with a stale heartbeat; core.recover_stale_jobs then
queues it again (registered below), and the retry writes the one model version the job was meant to make.
"""

import logging

from celery import shared_task
from django.db.models import Max

from annotation.models import CaseState
from core.errors import OkapiError
from core.jobs import job_fail, job_finish, job_start, register_job_retry
from core.models import Job, JobState

log = logging.getLogger("okapi.learning")


def queue_round(job: Job) -> None:
    learning_round.apply_async(args=[str(job.pk)], queue="gpu")


@shared_task(name="learning.round", acks_late=True, reject_on_worker_lost=True)
def learning_round(job_id: str) -> None:
    """Train on the consensus labels, score every case, rank the unlabelled ones (idempotent per job)."""
    from learning.services import round_run

    job = Job.objects.filter(pk=job_id).first()
    if job is None or job.state in {JobState.SUCCEEDED, JobState.CANCELLED, JobState.FAILED}:
        return
    job = job_start(job_id=job_id)
    try:
        round_ = round_run(job=job)
    except Exception as exc:
        job_fail(job_id=job_id, error=f"{type(exc).__name__}: {getattr(exc, 'message', exc)}")
        raise
    version = round_.model_version
    job_finish(job_id=job_id, message=f"round {round_.number}: {len(round_.ranking)} cases ranked by "
               f"{round_.strategy}", result={
                   "round": round_.number, "strategy": round_.strategy, "ranked": len(round_.ranking),
                   "model_version": version.version if version else None,
                   "metrics": version.metrics if version else {}})


register_job_retry("learning_round", queue_round, max_attempts=3)


@shared_task(name="learning.auto_rounds")
def auto_rounds() -> int:
    """Start a round in each project whose schedule asks for one: N new consensus labels since its last round."""
    from annotation.models import Case
    from learning.models import LearningConfig, Round
    from learning.services import round_create

    started = 0
    for config in LearningConfig.objects.filter(auto_round_after__gt=0).select_related("project"):
        project = config.project
        if Job.objects.filter(kind="learning_round", params__project=project.pk,
                              state__in=[JobState.QUEUED, JobState.RUNNING]).exists():
            continue
        last = Round.objects.filter(project=project).aggregate(at=Max("created_at"))["at"]
        new = Case.objects.filter(project=project, state=CaseState.CONSENSUS)
        if last is not None:
            new = new.filter(consensus_at__gt=last)
        if new.count() >= config.auto_round_after:
            try:
                round_create(project=project, user=None)
            except OkapiError as exc:  # this project's settings: the others still get their rounds
                log.warning("no automatic round for project %s: %s", project.pk, exc.message)
                continue
            started += 1
    return started
