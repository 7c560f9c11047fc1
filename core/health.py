"""Health checks of the parts Okapi stands on: database, broker, storage."""

import time
import uuid

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection


def _timed(check) -> dict:
    start = time.perf_counter()
    try:
        info = check() or {}
        status = "ok"
    except Exception as exc:  # a health check reports failures, it never raises them
        info, status = {"error": f"{type(exc).__name__}: {exc}"}, "error"
    return {"status": status, "ms": round((time.perf_counter() - start) * 1000, 2), **info}


def check_database() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"engine": connection.vendor}


def check_broker() -> dict:
    from kombu import Connection

    with Connection(settings.CELERY_BROKER_URL, transport_options=settings.CELERY_BROKER_TRANSPORT_OPTIONS,
                    connect_timeout=2) as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
    return {"transport": settings.CELERY_BROKER_URL.split(":", 1)[0]}


def check_storage() -> dict:
    name = default_storage.save(f"health/{uuid.uuid4().hex}", ContentFile(b"ok"))
    try:
        with default_storage.open(name) as fh:
            if fh.read() != b"ok":
                raise OSError("storage read back different bytes")
    finally:
        default_storage.delete(name)
    return {"backend": type(default_storage).__name__}


def health_report() -> dict:
    """Status of each part; overall "ok" only when all are."""
    parts = {"database": _timed(check_database), "broker": _timed(check_broker), "storage": _timed(check_storage)}
    overall = "ok" if all(p["status"] == "ok" for p in parts.values()) else "error"
    return {"status": overall, **parts}
