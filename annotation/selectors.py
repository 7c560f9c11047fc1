"""Reads of campaigns scoped to what the user may see: anything else is 404 (no existence leak)."""

from django.db.models import Exists, OuterRef, Q, QuerySet

from annotation.models import Assignment, Case, CaseState, Membership, Project, ProjectRole, Read
from core.errors import NotFound, PermissionDenied

SEE_ALL_READS = (ProjectRole.LEAD, ProjectRole.ADJUDICATOR)


def projects_for(user) -> QuerySet[Project]:
    """Projects the user is a member of (all, for admins)."""
    if user.is_admin:
        return Project.objects.all()
    return Project.objects.filter(Exists(Membership.objects.filter(project=OuterRef("pk"), user=user)))


def project_roles(user, project: Project | int) -> set[str]:
    """The user's roles in a project; an admin acts as lead everywhere."""
    project_id = project if isinstance(project, int) else project.pk
    roles = set(Membership.objects.filter(project_id=project_id, user=user).values_list("role", flat=True))
    if user.is_admin:
        roles.add(ProjectRole.LEAD)
    return roles


def roles_by_project(user, project_ids) -> dict[int, set[str]]:
    """The user's roles in each of these projects, in one query (an admin acts as lead everywhere)."""
    roles: dict[int, set[str]] = {pid: set() for pid in project_ids}
    for pid, role in Membership.objects.filter(project_id__in=list(roles), user=user).values_list("project_id",
                                                                                                "role"):
        roles[pid].add(role)
    if user.is_admin:
        for pid in roles:
            roles[pid].add(ProjectRole.LEAD)
    return roles


def get_project_for(user, project_id: int) -> tuple[Project, set[str]]:
    """A project the user may see, with their roles in it; 404 otherwise. One statement for a member (the
    memberships with their project: every reader's request starts here), two for an admin who is not one."""
    memberships = list(Membership.objects.filter(project_id=project_id, user=user).select_related("project"))
    project = memberships[0].project if memberships else None
    roles = {m.role for m in memberships}
    if user.is_admin:
        project = project or Project.objects.filter(pk=project_id).first()
        if project is not None:
            roles.add(ProjectRole.LEAD)
    if project is None or not roles:
        raise NotFound(f"no project {project_id} that you are a member of")
    return project, roles


def require_role(roles: set[str], *allowed: str, action: str) -> None:
    """403 naming what is needed, for a project the user may see but not act on this way."""
    if not roles & set(allowed):
        names = " or ".join(ProjectRole(r).label.lower() + "s" for r in allowed)
        raise PermissionDenied(f"only {names} of this project may {action}")


def cases_for(user, project: Project, roles: set[str]) -> QuerySet[Case]:
    """A project's cases: all for leads, adjudicators and data scientists; a reader's own assigned cases."""
    qs = Case.objects.filter(project=project)
    if roles & {ProjectRole.LEAD, ProjectRole.ADJUDICATOR, ProjectRole.DATA_SCIENTIST}:
        return qs
    return qs.filter(Q(assignments__reader=user) | Q(reads__reader=user)).distinct()


def get_case_for(user, case_id: int) -> tuple[Case, set[str]]:
    """A case the user may see, with their roles in its project; 404 otherwise. The same rule as
    :func:`cases_for`, in two statements: the case with whether it is the user's own, then their roles."""
    case = (Case.objects.select_related("project", "study", "series").filter(pk=case_id)
            .annotate(_assigned=Exists(Assignment.objects.filter(case=OuterRef("pk"), reader=user)),
                      _read=Exists(Read.objects.filter(case=OuterRef("pk"), reader=user)))
            .first())
    if case is None:
        raise NotFound(f"no case {case_id} that you may see")
    roles = project_roles(user, case.project_id)
    see_all = roles & {ProjectRole.LEAD, ProjectRole.ADJUDICATOR, ProjectRole.DATA_SCIENTIST}
    if not roles or not (see_all or case._assigned or case._read):
        raise NotFound(f"no case {case_id} that you may see")
    return case, roles


def reads_visible(user, case: Case, roles: set[str]) -> QuerySet[Read]:
    """Reads of a case the user may see. Blinding: a reader sees only their own read; leads and adjudicators
    see all; data scientists see all reads only once the case has its consensus."""
    qs = Read.objects.filter(case=case).select_related("reader")
    if roles & set(SEE_ALL_READS):
        return qs
    if ProjectRole.DATA_SCIENTIST in roles and case.state == CaseState.CONSENSUS:
        return qs
    return qs.filter(reader=user)


def get_read_for(user, read_id: int) -> tuple[Read, set[str]]:
    """A read the user may see (their own, or any for a lead or adjudicator of its project); 404 otherwise."""
    read = Read.objects.select_related("case__project", "reader", "schema").filter(pk=read_id).first()
    if read is None:
        raise NotFound(f"no read {read_id} that you may see")
    roles = project_roles(user, read.case.project_id)
    if not roles or not reads_visible(user, read.case, roles).filter(pk=read_id).exists():
        raise NotFound(f"no read {read_id} that you may see")
    return read, roles
