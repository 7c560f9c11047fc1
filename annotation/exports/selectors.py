"""Reads of exports scoped to what the user may see: a non-member gets 404, a member without an exporting
role 403, and an identified export is 404 to a member who may only see de-identified ones."""

from django.db.models import QuerySet

from annotation.exports.services import EXPORTERS, IDENTIFIED, may_download
from annotation.models_export import Export
from annotation.selectors import get_project_for, require_role
from core.errors import NotFound


def exports_for(roles: set[str], project) -> QuerySet[Export]:
    """A project's exports the member may see, newest version first."""
    qs = Export.objects.filter(project=project).select_related("created_by").order_by("-version")
    return qs if roles & set(IDENTIFIED) else qs.filter(deidentified=True)


def get_export_for(user, project_id: int, version: int) -> tuple[Export, set[str]]:
    """One version of a project's export that the user may download; 404 (or 403) otherwise."""
    project, roles = get_project_for(user, project_id)
    require_role(roles, *EXPORTERS, action="see or download its exports")
    export = Export.objects.filter(project=project, version=version).select_related("created_by").first()
    if export is None or not may_download(roles, export):
        raise NotFound(f"no export version {version} of project {project_id} that you may download")
    return export, roles
