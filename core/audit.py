"""The audit log: one helper that every read or change of patient data goes through."""

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


def audit_record(*, user, action: str, object_type: str, object_id: str = "", study_uid: str = "",
                 detail: dict | None = None, request=None, ip: str | None = None) -> AuditEvent:
    """Append one audit event (who did ``action`` on which object, when, from where)."""
    authenticated = user is not None and getattr(user, "is_authenticated", False)
    return AuditEvent.objects.create(
        user=user if authenticated else None,
        username=user.get_username() if authenticated else "",
        action=action,
        object_type=object_type,
        object_id=object_id[:128],
        study_uid=study_uid[:64],
        detail=detail or {},
        ip=ip or client_ip(request),
        user_agent=(request.META.get("HTTP_USER_AGENT", "")[:300] if request is not None else ""),
    )
