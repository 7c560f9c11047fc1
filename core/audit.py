"""The audit log: one helper that every read or change of patient data goes through."""

import json

from django.db import connection
from django.utils import timezone

from core.models import AuditEvent


def client_ip(request) -> str | None:
    """The caller's address. X-Forwarded-For is trusted only behind the configured reverse proxy, and only its
    last entry: the one our proxy appended (earlier entries come from the client and can be forged)."""
    from django.conf import settings

    if request is None:
        return None
    if getattr(settings, "SECURE_PROXY_SSL_HEADER", None):
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded:
            return forwarded.split(",")[-1].strip() or None
    return request.META.get("REMOTE_ADDR") or None


_INSERT = ("INSERT INTO core_auditevent (at, user_id, username, action, object_type, object_id, study_uid, detail, "
           "ip, user_agent) VALUES (%s, %s, %s, %s, %s, %s, %s, {json}, %s, %s)")


def audit_record(*, user, action: str, object_type: str, object_id: str = "", study_uid: str = "",
                 detail: dict | None = None, request=None, ip: str | None = None) -> None:
    """Append one audit event (who did ``action`` on which object, when, from where).

    Written with one INSERT statement: every DICOMweb frame request is audited, and the ORM's statement
    building would cost more than the database write itself.
    """
    authenticated = user is not None and getattr(user, "is_authenticated", False)
    values = [
        timezone.now(),
        user.pk if authenticated else None,
        user.get_username() if authenticated else "",
        action,
        object_type,
        object_id[:128],
        study_uid[:64],
        json.dumps(detail or {}, separators=(",", ":"), default=str),
        ip or client_ip(request),
        request.META.get("HTTP_USER_AGENT", "")[:300] if request is not None else "",
    ]
    if connection.vendor not in {"postgresql", "sqlite"}:
        AuditEvent.objects.create(**dict(zip(_FIELDS, values[:7], strict=True)), detail=detail or {},
                                  ip=values[8], user_agent=values[9])
        return
    sql = _INSERT.format(json="%s::jsonb" if connection.vendor == "postgresql" else "%s")
    if connection.vendor == "sqlite":
        values[0] = values[0].isoformat(sep=" ")
    with connection.cursor() as cursor:
        cursor.execute(sql, values)


_FIELDS = ("at", "user_id", "username", "action", "object_type", "object_id", "study_uid")
