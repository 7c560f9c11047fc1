"""Pages for project leads, adjudicators and data scientists: the campaign list, a new campaign, the live
dashboard, the adjudication of one case, and the data page.

The pages are shells around the REST API (``/api/v1/``): their scripts fetch and write everything through it
with the session and the CSRF token, so a page and a script see exactly the same thing. The views only check
that the user may open the page (404 for a project they are not in, as the API answers) and render what the
page needs before its script runs.
"""

from collections import Counter, defaultdict

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.http import Http404
from django.shortcuts import render

from annotation import api, selectors
from annotation.models import Case, CaseState, LabelSchema, Project, ProjectRole, Read, ReadState
from annotation.schema import parse_questions
from annotation.services.projects import MAX_READS_PER_CASE
from core.errors import NotFound
from core.models import Role, User
from imaging.dicomweb.common import server_root

OVERSEE = set(api.OVERSEE)
ADJUDICATE = set(selectors.SEE_ALL_READS)
MEMBER_ROLES = [(ProjectRole.RADIOLOGIST, "Reader (radiologist)"), (ProjectRole.ADJUDICATOR, "Adjudicator"),
                (ProjectRole.DATA_SCIENTIST, "Data scientist"), (ProjectRole.LEAD, "Project lead")]


def _can_create(user) -> bool:
    return user.is_admin or user.role == Role.LEAD


def _project_for(user, project_id: int) -> tuple[Project, set[str]]:
    try:
        return selectors.get_project_for(user, project_id)
    except NotFound:
        raise Http404("no such project that you are a member of") from None


def _known_users(user) -> list[dict]:
    """Who a lead can add to a campaign (for the username picker): active users, by name."""
    return list(User.objects.filter(is_active=True).exclude(pk=user.pk).order_by("username")
                .values("username", "role")[:2000])


@login_required
def campaign_list(request):
    """The campaigns the user is a member of, with cases by state and reads done (three queries)."""
    projects = list(selectors.projects_for(request.user).annotate(
        cases_total=Count("cases"),
        cases_open=Count("cases", filter=Q(cases__state=CaseState.OPEN)),
        cases_adjudication=Count("cases", filter=Q(cases__state=CaseState.ADJUDICATION)),
        cases_consensus=Count("cases", filter=Q(cases__state=CaseState.CONSENSUS)),
    ).order_by("-created_at", "id"))
    ids = [p.pk for p in projects]
    roles = selectors.roles_by_project(request.user, ids)
    submitted = dict(Read.objects.filter(case__project_id__in=ids, state=ReadState.SUBMITTED)
                     .values_list("case__project_id").annotate(n=Count("id")))
    rows = []
    for p in projects:
        needed = p.cases_total * p.reads_per_case
        rows.append({"project": p, "roles": sorted(roles[p.pk]), "oversee": bool(roles[p.pk] & OVERSEE),
                     "reads_submitted": submitted.get(p.pk, 0), "reads_needed": needed,
                     "percent": round(100 * submitted.get(p.pk, 0) / needed) if needed else 0})
    return render(request, "frontend/campaign_list.html", {"rows": rows, "can_create": _can_create(request.user)})


@login_required
def campaign_new(request):
    """The form a lead creates a campaign with: settings, label schema, studies, readers."""
    if not _can_create(request.user):
        raise PermissionDenied("only project leads and administrators create campaigns")
    defaults = {name: Project._meta.get_field(name).default
                for name in ("reads_per_case", "agreement_threshold", "claim_minutes")}
    return render(request, "frontend/campaign_new.html", {
        "defaults": defaults, "max_k": MAX_READS_PER_CASE, "member_roles": MEMBER_ROLES,
        "known_users": _known_users(request.user),
    })


@login_required
def campaign_dashboard(request, project_id: int):
    """The live dashboard of one campaign (for those who oversee it; readers are blinded to it)."""
    project, roles = _project_for(request.user, project_id)
    if not roles & OVERSEE:
        raise PermissionDenied("readers do not see a campaign's dashboard: their cases are on the worklist")
    return render(request, "frontend/dashboard.html", {
        "project": project, "roles": sorted(roles), "is_lead": ProjectRole.LEAD in roles,
        "can_adjudicate": bool(roles & ADJUDICATE), "member_roles": MEMBER_ROLES,
        "known_users": _known_users(request.user) if ProjectRole.LEAD in roles else [],
    })


@login_required
def campaign_adjudicate(request, project_id: int, case_id: int):
    """All reads of one case side by side, and the decision form."""
    try:
        case, roles = selectors.get_case_for(request.user, case_id)
    except NotFound:
        raise Http404("no such case that you may see") from None
    if case.project_id != project_id:
        raise Http404("no such case in this campaign")
    if not roles & ADJUDICATE:
        raise PermissionDenied("only adjudicators and leads of this campaign adjudicate")
    return render(request, "frontend/adjudicate.html", {"project": case.project, "case": case})


@login_required
def data_page(request):
    """For data scientists: per campaign, the consensus labels so far, exports and models (fetched by the page
    from their APIs), and how to reach it all from a script."""
    projects = list(selectors.projects_for(request.user).order_by("-created_at", "id"))
    roles = selectors.roles_by_project(request.user, [p.pk for p in projects])
    seeing = [p.pk for p in projects if roles[p.pk] & OVERSEE]
    counts = _consensus_counts(seeing)
    base = server_root(request)
    rows = [{"project": p, "roles": sorted(roles[p.pk]), "oversee": p.pk in counts, **counts.get(p.pk, {})}
            for p in projects]
    return render(request, "frontend/data.html", {"rows": rows, "base_url": base,
                                                  "example_id": seeing[0] if seeing else None})


def _consensus_counts(project_ids: list[int]) -> dict[int, dict]:
    """Per project: cases, consensus cases by source, segmentations, and per question how many consensus cases
    carry each answer (a multiple-choice case counts once per selected option). Three queries."""
    out: dict[int, dict] = {}
    totals = dict(Case.objects.filter(project_id__in=project_ids).values_list("project_id")
                  .annotate(n=Count("id")))
    decided = defaultdict(list)
    for pid, consensus, source in (Case.objects.filter(project_id__in=project_ids, state=CaseState.CONSENSUS)
                                   .values_list("project_id", "consensus", "consensus_source")):
        decided[pid].append((consensus or {}, source))
    schemas: dict[int, tuple[int, dict]] = {}
    for pid, version, definition in (LabelSchema.objects.filter(project_id__in=project_ids)
                                     .values_list("project_id", "version", "definition")):
        if version > schemas.get(pid, (0, {}))[0]:
            schemas[pid] = (version, definition)
    for pid in project_ids:
        questions = parse_questions(schemas[pid][1]) if pid in schemas else []
        rows = decided[pid]
        per_question = []
        for q in questions:
            tally: Counter = Counter()
            for consensus, _ in rows:
                value = (consensus.get("answers") or {}).get(q.key)
                for v in value if isinstance(value, list) else [value]:
                    if v is not None:
                        tally["yes" if v is True else "no" if v is False else str(v)] += 1
            if q.type == "ordinal":
                labels = [(str(v), str(v)) for v in range(q.min, q.max + 1)]
            else:
                labels = list(zip(q.options, q.option_labels, strict=True))
            per_question.append({"key": q.key, "label": q.label, "type": q.type,
                                 "counts": [{"value": v, "label": lab, "n": tally.get(v, 0)} for v, lab in labels]})
        out[pid] = {"cases": totals.get(pid, 0), "consensus": len(rows),
                    "by_majority": sum(s == "majority" for _, s in rows),
                    "by_adjudication": sum(s == "adjudication" for _, s in rows),
                    "with_segmentation": sum(bool(c.get("segmentation")) for c, _ in rows),
                    "questions": per_question}
    return out
