"""Radiologists' pages: the worklist, the reading page (labelling form beside the OHIF viewer) and the viewer.

The viewer is OHIF v3's prebuilt site from npm (``frontend/ohif/build.py`` moves it under ``/viewer/``), served
here with a fallback to its ``index.html`` for OHIF's own routes (``/viewer/viewer?StudyInstanceUIDs=...``).
Its ``app-config.js`` is rendered per user: the DICOMweb data source is Okapi's ``/dicomweb`` and every request
carries the reader's bearer token, a short-lived API token kept in their session.

The pages read through annotation's selectors; every write goes through the REST API from the page's script
(session + CSRF), so the browser sees exactly the errors the API gives.
"""

import json
import mimetypes
import re
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.contrib.auth.signals import user_logged_out
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import SuspiciousFileOperation
from django.db.models import Count, Exists, F, OuterRef
from django.dispatch import receiver
from django.http import FileResponse, Http404, HttpResponse, HttpResponseNotModified
from django.shortcuts import render
from django.template import engines
from django.utils import timezone
from django.utils._os import safe_join
from django.utils.http import http_date
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.http import require_GET, require_safe
from django.views.static import was_modified_since

from annotation.models import Assignment, Case, CaseState, ClaimState, Membership, Project, ProjectRole, Read
from annotation.selectors import get_case_for
from annotation.services.claims import active_slot_q, row_count
from annotation.services.projects import current_schema
from core.auth import token_create, token_revoke
from core.errors import NotFound
from core.models import ApiToken
from imaging.dicomweb.common import dicomweb_root, server_root

OHIF_DIR = Path(__file__).resolve().parent / "ohif"
# Where the built viewer lives (``make install`` builds it); settings may point elsewhere (a container image).
VIEWER_DIR = Path(getattr(settings, "OKAPI_VIEWER_DIR", "") or OHIF_DIR / "site")
VIEWER_BASE = "/viewer/"
# The viewer's token lives as long as a reading session; a new one is made when less than REFRESH is left.
VIEWER_TOKEN_LIFETIME = timedelta(hours=8)
VIEWER_TOKEN_REFRESH = timedelta(hours=2)
SESSION_TOKEN_KEY = "okapi_viewer_token"
HASHED_NAME = re.compile(r"\.[0-9a-f]{16}\.|^[0-9a-f]{16}\.(wasm|woff2)$")  # webpack content hashes
mimetypes.add_type("application/wasm", ".wasm")
mimetypes.add_type("text/javascript", ".js")


def dicom_date(value: str) -> str:
    """A DICOM DA (YYYYMMDD) as YYYY-MM-DD; anything else as it is."""
    return f"{value[:4]}-{value[4:6]}-{value[6:8]}" if len(value or "") == 8 and value.isdigit() else value or ""


# --- worklist ---------------------------------------------------------------------------------------------------

def worklist_for(user) -> list[dict]:
    """The reader's projects with their open claims and counts, in a fixed number of queries (not one per row)."""
    now = timezone.now()
    projects = list(Project.objects.filter(Exists(Membership.objects.filter(
        project=OuterRef("pk"), user=user, role=ProjectRole.RADIOLOGIST))).order_by("name", "id"))
    if not projects:
        return []
    ids = [p.pk for p in projects]
    claims = list(Assignment.objects.filter(active_slot_q(now), case__project_id__in=ids, reader=user,
                                            state=ClaimState.CLAIMED)
                  .select_related("case__study", "case__series").order_by("case__priority", "case_id"))
    drafts = dict(Read.objects.filter(reader=user, case_id__in=[a.case_id for a in claims])
                  .values_list("case_id", "version"))
    submitted = dict(Assignment.objects.filter(case__project_id__in=ids, reader=user, state=ClaimState.SUBMITTED)
                     .values("case__project_id").annotate(n=Count("id")).values_list("case__project_id", "n"))
    totals = dict(Case.objects.filter(project_id__in=ids).values("project_id").annotate(n=Count("id"))
                  .values_list("project_id", "n"))
    mine = Assignment.objects.filter(case=OuterRef("pk"), reader=user).exclude(state=ClaimState.RELEASED)
    taken = Assignment.objects.filter(active_slot_q(now), case=OuterRef("pk"))
    available = dict(Case.objects.filter(project_id__in=ids, state=CaseState.OPEN).exclude(Exists(mine))
                     .annotate(taken=row_count(taken)).filter(taken__lt=F("project__reads_per_case"))
                     .values("project_id").annotate(n=Count("id")).values_list("project_id", "n"))
    out = []
    for project in projects:
        open_claims = [a for a in claims if a.case.project_id == project.pk]
        for a in open_claims:
            a.draft_version = drafts.get(a.case_id)
            a.study_date = dicom_date(a.case.study.study_date)
        out.append({"project": project, "claims": open_claims, "submitted": submitted.get(project.pk, 0),
                    "available": available.get(project.pk, 0), "total": totals.get(project.pk, 0)})
    return out


@login_required
@require_GET
def worklist(request):
    return render(request, "frontend/worklist.html", {"projects": worklist_for(request.user)})


# --- reading page -----------------------------------------------------------------------------------------------

def _question_view(q: dict, index: int) -> dict:
    """A schema question as the form shows it: options with their values, labels and shortcut digits."""
    if q["type"] in ("single_choice", "multiple_choice"):
        options = [(o["value"], o["label"]) for o in q["options"]]
    elif q["type"] == "yes_no":
        options = [("yes", "Yes"), ("no", "No")]
    else:
        labels = q.get("labels") or {}
        options = [(str(v), f"{v}" + (f" – {labels[str(v)]}" if labels.get(str(v)) else ""))
                   for v in range(q["min"], q["max"] + 1)]
    return {"key": q["key"], "label": q.get("label") or q["key"], "type": q["type"],
            "required": q.get("required", True), "index": index,
            "input": "checkbox" if q["type"] == "multiple_choice" else "radio",
            "options": [_option(v, lab, i) for i, (v, lab) in enumerate(options)]}


def _option(value, label: str, index: int) -> dict:
    """An option with its shortcut digit; the key cap is shown only where the digit is not the value itself."""
    digit = str(index + 1) if index < 9 else ""
    return {"value": value, "label": label, "digit": digit, "kbd": digit if digit != str(value) else ""}


def _read_json(read: Read | None) -> dict:
    if read is None:
        return {"version": 0, "state": None, "answers": {}, "confidence": None, "free_text": "",
                "segmentation": None}
    seg = None
    if read.segmentation_id:
        seg = {"sop_instance_uid": read.segmentation.sop_uid, "series_uid": read.segmentation.series.series_uid}
    return {"version": read.version, "state": read.state, "answers": read.answers, "confidence": read.confidence,
            "free_text": read.free_text, "segmentation": seg}


@login_required
@require_GET
def reading(request, case_id: int):
    """One case: the viewer and the project's schema as a form."""
    try:
        case, roles = get_case_for(request.user, case_id)
    except NotFound as exc:
        raise Http404(exc.message) from None
    schema = current_schema(case.project)
    definition = schema.definition if schema else {"questions": [], "segments": []}
    read = (Read.objects.filter(case=case, reader=request.user).select_related("segmentation__series").first())
    assignment = Assignment.objects.filter(case=case, reader=request.user).first()
    conf = definition.get("confidence")
    confidence = ((1, 5) if conf is True else (conf["min"], conf["max"]) if isinstance(conf, dict) else None)
    questions = [_question_view(q, i) for i, q in enumerate(definition.get("questions", []))]
    now = timezone.now()
    expired = bool(assignment and assignment.state == ClaimState.CLAIMED and assignment.expires_at
                   and assignment.expires_at <= now)
    state = {
        "case": case.pk, "project": case.project_id,
        "study_uid": case.study.study_uid, "series_uid": case.series.series_uid if case.series_id else None,
        "read": _read_json(read), "case_state": case.state,
        "assignment": assignment.state if assignment else None, "claim_expired": expired,
        "expires_at": assignment.expires_at if assignment else None,
        "questions": [{"key": q["key"], "type": q["type"]} for q in questions],
        "has_confidence": confidence is not None, "free_text": bool(definition.get("free_text")),
        "segments": [{"name": s["name"], "color": s.get("color") or "#e6194b"} for s in definition.get("segments", [])],
        "is_reader": ProjectRole.RADIOLOGIST in roles, "username": request.user.username,
    }
    # OHIF's segmentation mode (brushes, SEG save) when the schema asks for segmentations, else its basic viewer
    mode = "segmentation" if definition.get("segments") else "viewer"
    base, elsewhere = viewer_base(request)
    viewer = f"{base}{mode}?StudyInstanceUIDs={case.study.study_uid}"
    if case.series_id:
        viewer += f"&SeriesInstanceUIDs={case.series.series_uid}"
    if elsewhere:  # a viewer on another origin cannot get the token from this session: OHIF reads it off its URL
        viewer += f"&token={viewer_token(request)}"
    return render(request, "frontend/reading.html", {
        "case": case, "project": case.project, "questions": questions, "segments": definition.get("segments", []),
        "confidence": confidence and [_option(v, str(v), i)
                                      for i, v in enumerate(range(confidence[0], confidence[1] + 1))],
        "free_text": bool(definition.get("free_text")), "schema": schema, "viewer_url": viewer,
        "viewer_ready": elsewhere or (VIEWER_DIR / "index.html").is_file(), "state": state,
        "study_date": dicom_date(case.study.study_date),
    })


# --- the OHIF viewer --------------------------------------------------------------------------------------------

def viewer_token(request) -> str:
    """The reader's bearer token for the viewer: one per login session, renewed before it runs out."""
    now = timezone.now()
    kept = request.session.get(SESSION_TOKEN_KEY)
    if kept:
        row = ApiToken.objects.filter(pk=kept["id"], user=request.user, revoked_at__isnull=True).first()
        if row is not None and row.expires_at and row.expires_at - now > VIEWER_TOKEN_REFRESH:
            return kept["raw"]
        if row is not None:
            token_revoke(token=row)
    row, raw = token_create(user=request.user, name="viewer (browser session)",
                            expires_at=now + VIEWER_TOKEN_LIFETIME)
    request.session[SESSION_TOKEN_KEY] = {"id": row.pk, "raw": raw}
    return raw


@receiver(user_logged_out)
def revoke_viewer_token(sender, request, user, **kwargs) -> None:
    """Logging out ends the viewer's token with the session: a copy left in a browser tab or on OHIF's URL
    (a viewer on another origin) no longer opens anything."""
    kept = request.session.get(SESSION_TOKEN_KEY) if request is not None else None
    if kept and user is not None:
        row = ApiToken.objects.filter(pk=kept["id"], user=user, revoked_at__isnull=True).first()
        if row is not None:
            token_revoke(token=row)


def viewer_base(request) -> tuple[str, bool]:
    """Where the reading page finds OHIF (``OKAPI_VIEWER_URL``, default Okapi's own /viewer/), and whether that
    is another origin (then reached through CORS, ``OKAPI_CORS_ORIGINS``)."""
    base = getattr(settings, "OKAPI_VIEWER_URL", "") or VIEWER_BASE
    base = base if base.endswith("/") else base + "/"
    elsewhere = base.startswith(("http://", "https://")) and not base.startswith(server_root(request) + "/")
    return base, elsewhere


def app_config_js(*, dicomweb_root: str, token: str | None, router_basename: str = "/viewer") -> str:
    """OHIF's app-config.js for Okapi: the template in frontend/ohif with the data source and the token."""
    template = engines["django"].from_string((OHIF_DIR / "app-config.template.js").read_text())
    return template.render({
        "router_basename": json.dumps(router_basename), "dicomweb_root": json.dumps(dicomweb_root),
        "token": json.dumps(token), "login_url": json.dumps(settings.LOGIN_URL),
    })


def viewer_app_config(request):
    """The viewer's configuration, per user (never cached: it carries the user's token)."""
    if not request.user.is_authenticated:
        body = app_config_js(dicomweb_root=dicomweb_root(request), token=None)
    else:
        body = app_config_js(dicomweb_root=dicomweb_root(request), token=viewer_token(request))
    response = HttpResponse(body, content_type="text/javascript; charset=utf-8")
    response["Cache-Control"] = "no-store"
    return response


def _viewer_file(path: str) -> Path | None:
    try:
        candidate = Path(safe_join(VIEWER_DIR, path))
    except (SuspiciousFileOperation, ValueError):
        return None
    return candidate if candidate.is_file() and not candidate.name.endswith(".gz") else None


def _serve_file(request, file: Path) -> HttpResponse:
    """A file of the built viewer, gzipped when the browser takes it; hashed names are cached for good."""
    stat = file.stat()
    if not was_modified_since(request.META.get("HTTP_IF_MODIFIED_SINCE"), stat.st_mtime):
        return HttpResponseNotModified()
    content_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    packed = file.with_name(file.name + ".gz")
    gzip_ok = "gzip" in request.META.get("HTTP_ACCEPT_ENCODING", "") and packed.is_file()
    response = FileResponse(open(packed if gzip_ok else file, "rb"), content_type=content_type)
    del response["Content-Disposition"]  # FileResponse names the file it was given: the .gz one
    if gzip_ok:
        response["Content-Encoding"] = "gzip"
    if packed.is_file():
        response["Vary"] = "Accept-Encoding"
    response["Last-Modified"] = http_date(stat.st_mtime)
    response["Cache-Control"] = ("public, max-age=31536000, immutable" if HASHED_NAME.search(file.name)
                                 else "no-cache")
    return response


@require_safe
@xframe_options_sameorigin
def viewer(request, path: str = ""):
    """The viewer's files, and its index.html for OHIF's routes (the reading page frames it, same origin)."""
    if path == "app-config.js":
        return viewer_app_config(request)
    file = _viewer_file(path) if path else None
    if file is not None:
        return _serve_file(request, file)
    if path and "." in path.rsplit("/", 1)[-1]:
        raise Http404("no such file in the viewer")
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    index = VIEWER_DIR / "index.html"
    if not index.is_file():
        return HttpResponse("The OHIF viewer is not built on this installation: run `make install` "
                            "(npm ci + frontend/ohif/build.py).", status=503, content_type="text/plain")
    response = HttpResponse(index.read_bytes(), content_type="text/html; charset=utf-8")
    response["Cache-Control"] = "no-cache"
    return response
