"""Reads of core objects, scoped to what the asking user may see."""

from core.errors import NotFound
from core.models import ApiToken, Job


def tokens_for(user):
    return ApiToken.objects.filter(user=user)


def get_token_for(user, token_id: int) -> ApiToken:
    token = tokens_for(user).filter(pk=token_id).first()
    if token is None:
        raise NotFound("no such token")
    return token


def get_job_for(user, job_id) -> Job:
    """A job its creator or an admin may see; anyone else gets 404."""
    qs = Job.objects.all() if user.is_admin else Job.objects.filter(created_by=user)
    job = qs.filter(pk=job_id).first()
    if job is None:
        raise NotFound("no such job")
    return job
