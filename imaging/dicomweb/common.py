"""What every DICOMweb view shares: authentication, the error shape, absolute URLs, auditing."""

import functools
import json

from django.conf import settings
from django.http import HttpResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.csrf import csrf_exempt

from core.audit import audit_record
from core.auth import bearer_from_header, request_user
from core.errors import OkapiError, Unauthenticated, error_response

DICOM_JSON = "application/dicom+json"


def dicomweb_view(methods: tuple[str, ...]):
    """Wrap a DICOMweb view: method check, bearer (or session) auth, CSRF for session POSTs, OkapiError -> JSON.

    Plain Django views, not DRF: DRF's content negotiation refuses the DICOM media types.
    """

    def decorate(func):
        @csrf_exempt
        @functools.wraps(func)
        def wrapper(request, *args, **kwargs):
            if request.method not in methods:
                response = error_response(OkapiError("method_not_allowed", f"{request.method} is not supported "
                                                     f"here; use {', '.join(methods)}", status=405))
                response["Allow"] = ", ".join(methods)
                return response
            user = request_user(request)
            if user is None:
                bad_token = bearer_from_header(request.META.get("HTTP_AUTHORIZATION")) is not None
                return error_response(Unauthenticated("invalid, expired or revoked token" if bad_token
                                                      else "authentication required: send Authorization: Bearer <token>"))
            if request.method == "POST" and bearer_from_header(request.META.get("HTTP_AUTHORIZATION")) is None:
                # Session-cookie POSTs must carry the CSRF token; bearer requests cannot be forged by a browser.
                rejected = CsrfViewMiddleware(lambda r: None).process_view(request, None, (), {})
                if rejected is not None:
                    return rejected
            request.okapi_user = user
            try:
                return func(request, *args, **kwargs)
            except OkapiError as exc:
                return error_response(exc)

        return wrapper

    return decorate


def dicomweb_root(request) -> str:
    """Absolute DICOMweb root for RetrieveURL and BulkDataURI (OKAPI_PUBLIC_URL wins behind a proxy)."""
    if settings.OKAPI_PUBLIC_URL:
        return settings.OKAPI_PUBLIC_URL.rstrip("/") + "/dicomweb"
    return f"{request.scheme}://{request.get_host()}/dicomweb"


def server_root(request) -> str:
    return dicomweb_root(request)[: -len("/dicomweb")]


def json_response(data, *, status: int = 200, headers: dict | None = None) -> HttpResponse:
    body = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    response = HttpResponse(body, status=status, content_type=DICOM_JSON)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def text_response(text: str, *, headers: dict | None = None) -> HttpResponse:
    """A stored JSON text as is (metadata): no parse, no re-serialisation."""
    response = HttpResponse(text, content_type=DICOM_JSON)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def audit(request, action: str, *, study_uid: str, object_type: str, object_id: str, **detail) -> None:
    """Audit a search or retrieve (deferred: a viewer fetches hundreds of frames a second)."""
    audit_record(user=request.okapi_user, action=action, object_type=object_type, object_id=object_id,
                 study_uid=study_uid, detail={"path": request.path, **detail}, request=request, defer=True)
