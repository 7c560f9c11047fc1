"""Server-side imports: a folder already on the server (a mounted share, a USB disk) imported as a job."""

import os
from pathlib import Path

from django.conf import settings
from django.db import transaction

from core.errors import OkapiError, PermissionDenied
from core.jobs import job_create
from core.models import Job, Role


def import_roots() -> list[Path]:
    """Folders a server-side import may read from (OKAPI_IMPORT_ROOTS); nothing else on the server is exposed."""
    return [Path(p).resolve() for p in settings.OKAPI_IMPORT_ROOTS]


def import_job_create(*, user, paths: list[str]) -> Job:
    """Queue the import of ``paths`` (files, folders, zips under an import root); returns the job row."""
    if not (user.is_admin or user.role == Role.LEAD):
        raise PermissionDenied("only project leads and administrators may import studies")
    if not paths:
        raise OkapiError("invalid", "no paths to import")
    roots = import_roots()
    resolved = []
    for raw in paths:
        path = Path(raw).resolve()
        if not any(path == root or root in path.parents for root in roots):
            raise OkapiError("invalid_path", f"{raw} is not under an import folder (OKAPI_IMPORT_ROOTS: "
                             f"{', '.join(map(str, roots)) or 'none configured'})", detail={"path": raw})
        if not os.path.exists(path):
            raise OkapiError("invalid_path", f"{raw} does not exist", detail={"path": raw})
        resolved.append(str(path))
    with transaction.atomic():
        job = job_create(kind="import", params={"paths": resolved}, user=user)
        from imaging.tasks import import_paths_task

        transaction.on_commit(lambda: import_paths_task.delay(str(job.pk)))
    return job
