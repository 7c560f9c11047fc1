"""The audit log: one helper that every read or change of patient data goes through."""

import atexit
import json
import logging
import threading
import time

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


_COLUMNS = ("at", "user_id", "username", "action", "object_type", "object_id", "study_uid", "detail", "ip",
            "user_agent")


def _insert_rows(rows: list[list]) -> None:
    """Insert audit rows (values in _COLUMNS order, detail as JSON text) with one statement per hundred."""
    if connection.vendor not in {"postgresql", "sqlite"}:
        AuditEvent.objects.bulk_create(
            AuditEvent(**dict(zip(_COLUMNS, row, strict=True)) | {"detail": json.loads(row[7])}) for row in rows)
        return
    placeholder = "(%s, %s, %s, %s, %s, %s, %s, {json}, %s, %s)".format(
        json="%s::jsonb" if connection.vendor == "postgresql" else "%s")
    if connection.vendor == "sqlite":
        rows = [[row[0].isoformat(sep=" "), *row[1:]] for row in rows]
    head = f"INSERT INTO core_auditevent ({', '.join(_COLUMNS)}) VALUES "
    with connection.cursor() as cursor:
        for start in range(0, len(rows), 100):
            chunk = rows[start:start + 100]
            cursor.execute(head + ", ".join([placeholder] * len(chunk)), [v for row in chunk for v in row])


def audit_record(*, user, action: str, object_type: str, object_id: str = "", study_uid: str = "",
                 detail: dict | None = None, request=None, ip: str | None = None, defer: bool = False) -> None:
    """Append one audit event (who did ``action`` on which object, when, from where).

    Written with one INSERT statement: every DICOMweb frame request is audited, and the ORM's statement
    building would cost more than the database write itself. ``defer=True`` (reads on the viewing hot path)
    hands the row to a per-process writer that inserts batches every 0.2 s and at exit, as audit trails
    (IHE ATNA) are usually sent; changes are always written in the caller's transaction.
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
    if defer:
        _buffer.add(values)
    else:
        _insert_rows([values])


class _AuditBuffer:
    """Batches deferred audit rows; one daemon thread per process writes them with executemany."""

    FLUSH_SECONDS = 0.2
    MAX_ROWS = 500

    def __init__(self):
        self.rows: list[list] = []
        self.lock = threading.Lock()
        self.flushing = threading.Lock()  # one flush at a time: audit_flush() returns once rows are written
        self.wake = threading.Event()
        self.thread: threading.Thread | None = None

    def add(self, values: list) -> None:
        with self.lock:
            self.rows.append(values)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="okapi-audit", daemon=True)
                self.thread.start()
            if len(self.rows) >= self.MAX_ROWS:
                self.wake.set()

    def _run(self) -> None:
        while True:
            self.wake.wait(self.FLUSH_SECONDS)
            self.wake.clear()
            try:
                self.flush()
            except Exception:  # the database is away: keep the rows and try again
                logging.getLogger("okapi.audit").exception("could not write audit events; will retry")
                time.sleep(1)

    def flush(self) -> int:
        with self.flushing:
            with self.lock:
                rows, self.rows = self.rows, []
            if not rows:
                return 0
            try:
                _insert_rows(rows)
            except Exception:
                with self.lock:
                    self.rows[:0] = rows
                raise
            finally:
                if threading.current_thread() is self.thread:
                    connection.close()
            return len(rows)


_buffer = _AuditBuffer()
atexit.register(lambda: _buffer.flush())


def audit_flush() -> int:
    """Write deferred audit events now (tests, shutdown); returns how many were written."""
    return _buffer.flush()
