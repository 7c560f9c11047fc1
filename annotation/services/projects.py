"""Setting a campaign up: the project, its members, its label schema versions and its cases."""

from django.db import IntegrityError, transaction
from django.db.models import Max, Q

from annotation.models import Case, LabelSchema, Membership, Project, ProjectRole
from annotation.schema import SchemaError, validate_definition
from core.audit import audit_record
from core.errors import OkapiError, PermissionDenied
from core.models import Role, User
from imaging.access import visible_studies
from imaging.models import Series

PROJECT_FIELDS = ("name", "description", "reads_per_case", "agreement_threshold", "ordinal_consensus",
                  "mask_consensus", "claim_minutes")
MAX_READS_PER_CASE = 20


def _check_fields(fields: dict) -> None:
    errors = {}
    if "name" in fields and not str(fields["name"]).strip():
        errors["name"] = "required"
    k = fields.get("reads_per_case")
    if k is not None and not (isinstance(k, int) and 1 <= k <= MAX_READS_PER_CASE):
        errors["reads_per_case"] = f"an integer from 1 to {MAX_READS_PER_CASE}"
    t = fields.get("agreement_threshold")
    if t is not None and not (isinstance(t, int | float) and 0 <= t <= 1):
        errors["agreement_threshold"] = "a number from 0 to 1"
    m = fields.get("claim_minutes")
    if m is not None and not (isinstance(m, int) and 1 <= m <= 24 * 60):
        errors["claim_minutes"] = "an integer from 1 to 1440"
    if errors:
        raise OkapiError("invalid", "the project settings are not valid", detail=errors)


def invalid_schema(exc: SchemaError) -> OkapiError:
    return OkapiError("invalid_schema", "the label schema is not valid", detail=exc.errors)


@transaction.atomic
def project_create(*, user: User, name: str, schema: dict | None = None, **fields) -> Project:
    """A new campaign; its creator is its lead. Only project leads and admins create projects."""
    if not (user.is_admin or user.role == Role.LEAD):
        raise PermissionDenied("only project leads and administrators create projects")
    unknown = set(fields) - set(PROJECT_FIELDS)
    if unknown:
        raise OkapiError("invalid", f"unknown project fields: {', '.join(sorted(unknown))}")
    _check_fields({"name": name, **fields})
    project = Project.objects.create(name=name.strip(), created_by=user, **fields)
    Membership.objects.create(project=project, user=user, role=ProjectRole.LEAD)
    if schema is not None:
        schema_publish(project=project, user=user, definition=schema)
    audit_record(user=user, action="project_create", object_type="project", object_id=str(project.pk))
    return project


@transaction.atomic
def project_update(*, project: Project, user: User, **fields) -> Project:
    """Change a project's settings (a lead's decision; k may not drop below reads already made)."""
    unknown = set(fields) - set(PROJECT_FIELDS)
    if unknown:
        raise OkapiError("invalid", f"unknown project fields: {', '.join(sorted(unknown))}")
    _check_fields(fields)
    project = Project.objects.select_for_update().get(pk=project.pk)
    for key, value in fields.items():
        setattr(project, key, value.strip() if key == "name" else value)
    project.save()
    audit_record(user=user, action="project_update", object_type="project", object_id=str(project.pk),
                 detail={"fields": sorted(fields)})
    return project


@transaction.atomic
def member_add(*, project: Project, user: User, member: User, role: str) -> Membership:
    """Give ``member`` a role in the project. Readers must be radiologists (or admins) platform-wide."""
    if role not in ProjectRole.values:
        raise OkapiError("invalid", f"role must be one of {', '.join(ProjectRole.values)}", detail={"role": role})
    if role in {ProjectRole.RADIOLOGIST, ProjectRole.ADJUDICATOR} and member.role not in {
            Role.RADIOLOGIST, Role.ADMIN, Role.LEAD}:
        raise OkapiError("invalid", f"{member.username} is a {member.get_role_display().lower()}: only "
                         "radiologists (or leads) read or adjudicate", detail={"user": member.username})
    membership, created = Membership.objects.get_or_create(project=project, user=member, role=role)
    if created:
        audit_record(user=user, action="member_add", object_type="project", object_id=str(project.pk),
                     detail={"member": member.username, "role": role})
    return membership


@transaction.atomic
def member_remove(*, project: Project, user: User, membership: Membership) -> None:
    """Take a role away. The last lead stays: a project always has someone who can manage it."""
    if membership.role == ProjectRole.LEAD and not Membership.objects.filter(
            project=project, role=ProjectRole.LEAD).exclude(pk=membership.pk).exists():
        raise OkapiError("conflict", "a project keeps at least one lead", status=409)
    membership.delete()
    audit_record(user=user, action="member_remove", object_type="project", object_id=str(project.pk),
                 detail={"member": membership.user.username, "role": membership.role})


def current_schema(project: Project) -> LabelSchema | None:
    """The latest schema version (reads are made against it)."""
    return LabelSchema.objects.filter(project=project).order_by("-version").first()


@transaction.atomic
def schema_publish(*, project: Project, user: User, definition: dict) -> LabelSchema:
    """A new schema version; reads made under earlier versions keep theirs."""
    try:
        normal = validate_definition(definition)
    except SchemaError as exc:
        raise invalid_schema(exc) from None
    Project.objects.select_for_update().filter(pk=project.pk).first()  # one version number at a time
    version = (LabelSchema.objects.filter(project=project).aggregate(v=Max("version"))["v"] or 0) + 1
    schema = LabelSchema.objects.create(project=project, version=version, definition=normal, created_by=user)
    audit_record(user=user, action="schema_publish", object_type="project", object_id=str(project.pk),
                 detail={"version": version})
    return schema


def _studies_by_query(user: User, query: dict):
    """Studies the user may see matching a simple query (patient ID, modality, description, dates)."""
    qs = visible_studies(user)
    allowed = {"patient_id", "modality", "description", "date_from", "date_to", "accession_number"}
    unknown = set(query) - allowed
    if unknown:
        raise OkapiError("invalid", f"unknown query fields: {', '.join(sorted(unknown))}",
                         detail={"allowed": sorted(allowed)})
    if query.get("patient_id"):
        qs = qs.filter(patient_identifier=query["patient_id"])
    if query.get("accession_number"):
        qs = qs.filter(accession_number=query["accession_number"])
    if query.get("modality"):
        qs = qs.filter(series__modality=query["modality"]).distinct()
    if query.get("description"):
        qs = qs.filter(description__icontains=query["description"])
    if query.get("date_from"):
        qs = qs.filter(study_date__gte=str(query["date_from"]).replace("-", ""))
    if query.get("date_to"):
        qs = qs.filter(study_date__lte=str(query["date_to"]).replace("-", ""))
    return qs


@transaction.atomic
def cases_add(*, project: Project, user: User, study_uids: list[str] | None = None,
              series_uids: list[str] | None = None, query: dict | None = None) -> dict:
    """Add studies (or single series) as cases, in the order given (which is the reading order until active
    learning ranks them). Studies the user may not see are refused by UID; ones already in are skipped."""
    study_uids, series_uids = list(study_uids or []), list(series_uids or [])
    if not (study_uids or series_uids or query):
        raise OkapiError("invalid", "name studies (study_uids), series (series_uids) or a query")
    visible = visible_studies(user)
    studies = {s.study_uid: s for s in visible.filter(study_uid__in=study_uids)}
    if query:
        for study in _studies_by_query(user, query).order_by("study_date", "id")[:10_000]:
            if study.study_uid not in studies:
                study_uids.append(study.study_uid)
                studies[study.study_uid] = study
    series = {s.series_uid: s for s in Series.objects.filter(
        series_uid__in=series_uids, study__in=visible.values("pk")).select_related("study")}
    missing = [u for u in study_uids if u not in studies] + [u for u in series_uids if u not in series]
    if missing:
        raise OkapiError("not_found", f"{len(missing)} of the named studies or series do not exist or you may "
                         "not see them", detail={"missing": missing[:100]}, status=404)
    Project.objects.select_for_update().filter(pk=project.pk).first()  # one batch of positions at a time
    start = (Case.objects.filter(project=project).aggregate(p=Max("priority"))["p"] or 0.0) + 1
    existing = set(Case.objects.filter(project=project).filter(
        Q(study__study_uid__in=study_uids, series__isnull=True) | Q(series__series_uid__in=series_uids))
        .values_list("study__study_uid", "series__series_uid"))
    wanted = [(studies[u], None) for u in dict.fromkeys(study_uids)] + [
        (series[u].study, series[u]) for u in dict.fromkeys(series_uids)]
    new = [Case(project=project, study=st, series=se, priority=start + i)
           for i, (st, se) in enumerate(w for w in wanted
                                        if (w[0].study_uid, w[1].series_uid if w[1] else None) not in existing)]
    try:
        Case.objects.bulk_create(new)
    except IntegrityError:
        raise OkapiError("conflict", "another request added some of these cases at the same time; try again",
                         status=409) from None
    audit_record(user=user, action="cases_add", object_type="project", object_id=str(project.pk),
                 detail={"added": len(new), "skipped": len(wanted) - len(new)})
    return {"added": len(new), "skipped": len(wanted) - len(new)}
