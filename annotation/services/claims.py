"""Who reads what next: "next case" claims, a lead's manual assignments, expiry and release.

A case has k slots. A slot is taken by an assignment that is submitted, or claimed and not expired (a lead's
assignment does not expire). Every change to a case's slots happens while that case's row is locked, and
"next case" skips rows another reader has locked (``select_for_update(skip_locked=True)``), so two readers never
take the same slot and a case is never read more than k times.
"""

import random
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Exists, IntegerField, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from annotation.models import Assignment, Case, CaseState, ClaimState, Membership, Project, ProjectRole
from core.audit import audit_record
from core.errors import OkapiError
from core.events import group_for, send_event_on_commit
from core.models import User

_rng = random.SystemRandom()
BUSY_WINDOW = timedelta(seconds=2)


def active_slot_q(now, prefix: str = "") -> Q:
    """Assignments holding a slot: submitted, or claimed and (never expiring or) not expired yet."""
    return (Q(**{f"{prefix}state": ClaimState.SUBMITTED})
            | Q(**{f"{prefix}state": ClaimState.CLAIMED}) & (
                Q(**{f"{prefix}expires_at__isnull": True}) | Q(**{f"{prefix}expires_at__gt": now})))


def slots_taken(case_id: int, *, now, exclude_reader: User | None = None) -> int:
    qs = Assignment.objects.filter(active_slot_q(now), case_id=case_id)
    if exclude_reader is not None:
        qs = qs.exclude(reader=exclude_reader)
    return qs.count()


def is_reader(project: Project, user: User) -> bool:
    """Readers are the project's radiologist members (an admin reads only if made one)."""
    return Membership.objects.filter(project=project, user=user, role=ProjectRole.RADIOLOGIST).exists()


def _take(case: Case, reader: User, *, now, expires_at, assigned_by: User | None = None) -> Assignment:
    """Give ``reader`` a slot on a locked case (renewing their own earlier, expired or released, claim).

    One ``INSERT ... ON CONFLICT (case, reader) DO UPDATE`` statement: the claim is the hot path of reading."""
    assignment = Assignment(case=case, reader=reader, state=ClaimState.CLAIMED, claimed_at=now,
                            expires_at=expires_at, assigned_by=assigned_by, submitted_at=None)
    Assignment.objects.bulk_create(
        [assignment], update_conflicts=True, unique_fields=["case", "reader"],
        update_fields=["state", "claimed_at", "expires_at", "assigned_by", "submitted_at"])
    if assignment.pk is None:  # a database that cannot return ids from an upsert
        assignment.pk = Assignment.objects.values_list("pk", flat=True).get(case=case, reader=reader)
    return assignment


def _open_claim(project: Project, reader: User, now) -> Assignment | None:
    """The reader's unfinished claim in the project, if any: "next case" resumes it rather than piling up."""
    return (Assignment.objects.select_related("case__study", "case__series").filter(
        case__project=project, reader=reader, state=ClaimState.CLAIMED, case__state=CaseState.OPEN)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .order_by("case__priority", "case_id").first())


def case_claim_next(*, project: Project, reader: User, roles: set[str] | None = None) -> Assignment | None:
    """The highest-ranked case that still needs a read from ``reader``, claimed for ``project.claim_minutes``;
    None when there is nothing left for them. When several readers pull at once, randomises only among the top
    few lockable cases, so they spread over the head of the ranking instead of queueing on one row.

    ``roles``: the reader's roles in the project when the caller has them already (saves a query). The
    assignment comes back with its case (study, series, project) and reader loaded."""
    if not (ProjectRole.RADIOLOGIST in roles if roles is not None else is_reader(project, reader)):
        raise OkapiError("not_a_reader", "you are not a reader (radiologist) of this project", status=403)
    now = timezone.now()
    with transaction.atomic():
        # One claim at a time per reader: two tabs pulling at once get the same case, not two.
        User.objects.select_for_update().filter(pk=reader.pk).first()
        current = _open_claim(project, reader, now)
        if current is not None:
            current.case.project, current.reader = project, reader
            return current
        mine = Assignment.objects.filter(case=OuterRef("pk"), reader=reader, state=ClaimState.SUBMITTED)
        taken = Assignment.objects.filter(active_slot_q(now), case=OuterRef("pk"))
        ranked = (Case.objects.filter(project=project, state=CaseState.OPEN).exclude(Exists(mine))
                  .annotate(_n=row_count(taken)).filter(_n__lt=project.reads_per_case).order_by("priority", "id"))
        # Several readers pulling at once (another claim in the last seconds): spread them over the top few
        # cases; a reader alone gets the ranking's order exactly.
        busy = Assignment.objects.filter(case__project=project, claimed_at__gte=now - BUSY_WINDOW).exclude(
            reader=reader).exists()
        top = settings.OKAPI_CLAIM_TOP_FEW if busy else 1
        full: set[int] = set()  # counted under lock: no slot left
        held: set[int] = set()  # locked by another reader's claim or save right now
        while True:
            head = list(ranked.exclude(pk__in=full | held).values_list("pk", flat=True)[:top])
            if not head:
                break
            _rng.shuffle(head)
            for pk in head:
                case = _probe(pk, project, reader, now, wait=False)
                if case:
                    return _claim(project, case, reader, now)
                (held if case is False else full).add(pk)
        # Only cases other transactions hold are left: wait for each in rank order (claims and saves are short)
        # rather than answer "nothing left" while one of them may still have a slot.
        for pk in sorted(held):
            case = _probe(pk, project, reader, now, wait=True)
            if case:
                return _claim(project, case, reader, now)
        return None


def _probe(pk: int, project: Project, reader: User, now, *, wait: bool):
    """The case locked if it has a slot for ``reader``; otherwise its lock is let go at once (a savepoint),
    so that a claim never holds rows it does not take while it waits for another (no deadlocks).
    Returns the case, None (closed or full) or False (another transaction holds it, and not ``wait``)."""
    savepoint = transaction.savepoint()
    case = _lock(pk, wait=wait)
    if case is not None and slots_taken(pk, now=now, exclude_reader=reader) < project.reads_per_case:
        transaction.savepoint_commit(savepoint)
        return case
    transaction.savepoint_rollback(savepoint)
    if case is None and not wait and Case.objects.filter(pk=pk, state=CaseState.OPEN).exists():
        return False
    return None


def _lock(pk: int, *, wait: bool) -> Case | None:
    """The open case row, locked; None if it is closed, or (without ``wait``) locked by someone else."""
    qs = Case.objects.select_related("study", "series").filter(pk=pk, state=CaseState.OPEN)
    if connection.features.has_select_for_update_skip_locked:
        qs = qs.select_for_update(skip_locked=not wait, of=("self",))  # the case row only, not its study
    return qs.first()


def _claim(project: Project, case: Case, reader: User, now) -> Assignment:
    assignment = _take(case, reader, now=now, expires_at=now + timedelta(minutes=project.claim_minutes))
    case.project = project
    send_event_on_commit(group_for("project", project.pk), {"type": "claim", "case": case.pk,
                                                            "reader": reader.username})
    return assignment


def row_count(subquery):
    """How many rows of ``subquery`` (filtered on OuterRef case) there are, as a column of the case row."""
    return Coalesce(Subquery(subquery.values("case").annotate(c=Count("*")).values("c"),
                             output_field=IntegerField()), 0)


@transaction.atomic
def case_assign(*, case: Case, reader: User, lead: User) -> Assignment:
    """A lead gives ``reader`` a slot on ``case`` by hand (it does not expire)."""
    case = Case.objects.select_for_update(of=("self",)).select_related("project").get(pk=case.pk)
    if not is_reader(case.project, reader):
        raise OkapiError("invalid", f"{reader.username} is not a reader (radiologist) of this project",
                         detail={"reader": reader.username})
    if case.state != CaseState.OPEN:
        raise OkapiError("conflict", "this case has all its reads", status=409)
    now = timezone.now()
    existing = Assignment.objects.filter(case=case, reader=reader).first()
    if existing is not None and existing.state == ClaimState.SUBMITTED:
        raise OkapiError("conflict", f"{reader.username} has already read this case", status=409)
    if slots_taken(case.pk, now=now, exclude_reader=reader) >= case.project.reads_per_case:
        raise OkapiError("conflict", f"all {case.project.reads_per_case} reads of this case are taken", status=409)
    assignment = _take(case, reader, now=now, expires_at=None, assigned_by=lead)
    audit_record(user=lead, action="case_assign", object_type="case", object_id=str(case.pk),
                 study_uid=case.study.study_uid, detail={"reader": reader.username})
    send_event_on_commit(group_for("project", case.project_id), {
        "type": "claim", "case": case.pk, "reader": reader.username, "assigned_by": lead.username})
    return assignment


@transaction.atomic
def claim_release(*, assignment: Assignment, user: User) -> None:
    """The reader hands an unfinished case back to the pool (their draft, if any, is kept)."""
    assignment = Assignment.objects.select_for_update().get(pk=assignment.pk)
    if assignment.state != ClaimState.CLAIMED:
        raise OkapiError("conflict", "only an unfinished claim can be released", status=409)
    assignment.state = ClaimState.RELEASED
    assignment.save(update_fields=["state"])
    send_event_on_commit(group_for("project", assignment.case.project_id), {
        "type": "release", "case": assignment.case_id, "reader": user.username})
