"""One error type for the domain, rendered as one JSON shape: {"code", "message", "detail"}."""

from typing import Any

from django.http import JsonResponse
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_default_handler


class OkapiError(Exception):
    """A failure the caller can act on. ``code`` is stable (clients switch on it), ``message`` is for people,
    ``detail`` carries structured extra data (field errors, the rejected files and why)."""

    status = 400

    def __init__(self, code: str, message: str, *, detail: Any = None, status: int | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.detail = detail if detail is not None else {}
        if status is not None:
            self.status = status

    def as_dict(self) -> dict:
        return {"code": self.code, "message": self.message, "detail": self.detail}


class NotFound(OkapiError):
    status = 404

    def __init__(self, message: str = "not found", *, detail: Any = None):
        super().__init__("not_found", message, detail=detail)


class PermissionDenied(OkapiError):
    status = 403

    def __init__(self, message: str = "you do not have permission to do this", *, detail: Any = None):
        super().__init__("permission_denied", message, detail=detail)


class Unauthenticated(OkapiError):
    status = 401

    def __init__(self, message: str = "authentication required", *, detail: Any = None):
        super().__init__("not_authenticated", message, detail=detail)


def error_response(error: OkapiError) -> JsonResponse:
    """The JSON response for an error, for plain Django views (DICOMweb)."""
    response = JsonResponse(error.as_dict(), status=error.status)
    if error.status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="okapi"'
    return response


_DRF_CODES = {
    drf_exceptions.NotAuthenticated: "not_authenticated",
    drf_exceptions.AuthenticationFailed: "authentication_failed",
    drf_exceptions.PermissionDenied: "permission_denied",
    drf_exceptions.NotFound: "not_found",
    drf_exceptions.MethodNotAllowed: "method_not_allowed",
    drf_exceptions.ValidationError: "invalid",
    drf_exceptions.ParseError: "parse_error",
    drf_exceptions.UnsupportedMediaType: "unsupported_media_type",
    drf_exceptions.Throttled: "throttled",
    drf_exceptions.NotAcceptable: "not_acceptable",
}


def api_exception_handler(exc, context):
    """DRF exception handler: OkapiError and DRF's own errors become {"code", "message", "detail"}."""
    if isinstance(exc, OkapiError):
        response = Response(exc.as_dict(), status=exc.status)
        if exc.status == 401:
            response["WWW-Authenticate"] = 'Bearer realm="okapi"'
        return response
    response = drf_default_handler(exc, context)
    if response is None:
        return None
    code = next((c for klass, c in _DRF_CODES.items() if isinstance(exc, klass)), "error")
    data = response.data
    if isinstance(exc, drf_exceptions.ValidationError):
        message, detail = "the request is not valid: see detail for each field", data
    else:
        message = str(data.get("detail", exc)) if isinstance(data, dict) else str(exc)
        detail = {}
    response.data = {"code": code, "message": message, "detail": detail}
    return response
