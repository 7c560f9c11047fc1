"""The DICOM C-STORE receiver (``okapi dicom-listen``): a PACS, a modality or ``storescu`` pushes to Okapi.

Each received instance is written as it arrived (no decode, no re-encode) to a temporary Part 10 file beside
the storage and handed to :func:`imaging.services.ingest.ingest_file`, the one path every ingest takes; its
result becomes the C-STORE status. C-ECHO answers Success.
"""

import logging
import os
import signal
import threading
import time

from django.conf import settings
from django.db import close_old_connections, connection
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.dsutils import encode_file_meta
from pynetdicom.events import Event
from pynetdicom.sop_class import Verification
from pynetdicom.transport import ThreadedAssociationServer

from imaging import storage
from imaging.dicom.instance import SUPPORTED_TRANSFER_SYNTAXES
from imaging.services.ingest import STATUS_CANNOT_UNDERSTAND, STATUS_OUT_OF_RESOURCES, ingest_file

log = logging.getLogger("okapi.dimse")

STATUS_SUCCESS = 0x0000
# When a peer offers several transfer syntaxes in one presentation context, pynetdicom accepts the first of
# ours it offered. Explicit VR first (implicit VR loses the VR of private elements); native before compressed,
# so that a sender holding uncompressed pixels is never asked to compress them for us; lossless before lossy.
_NATIVE_PREFERENCE = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.2")
_LOSSY = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.91",
          "1.2.840.10008.1.2.4.203"}
# Seconds a stopping server gives running associations to finish before it aborts them.
STOP_GRACE_SECONDS = 30.0


def preferred_transfer_syntaxes() -> list[str]:
    """Every transfer syntax Okapi archives, in the order it prefers them (see ``_NATIVE_PREFERENCE``)."""
    native = [ts for ts in _NATIVE_PREFERENCE if ts in SUPPORTED_TRANSFER_SYNTAXES]
    compressed = [ts for ts in SUPPORTED_TRANSFER_SYNTAXES if ts not in native]
    return native + sorted(compressed, key=lambda ts: ts in _LOSSY)  # stable: keeps the table's order


def build_ae() -> AE:
    """The Application Entity Okapi answers as: every storage SOP class in every transfer syntax it can
    archive, plus Verification (C-ECHO).

    Okapi is the acceptor and so takes the default SCP role for each context; SCP/SCU role-selection
    proposals are left at pynetdicom's default (ignored), since accepting a peer's SCP role would turn the
    receiver into a sender.
    """
    ae = AE(ae_title=settings.OKAPI_DICOM_AE_TITLE)
    syntaxes = preferred_transfer_syntaxes()
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, syntaxes)
    ae.add_supported_context(Verification)
    # An empty list means any calling AE may associate; otherwise unknown ones are rejected at association.
    ae.require_calling_aet = list(settings.OKAPI_DICOM_ALLOWED_AETS)
    return ae


def _write_part10(fd: int, meta: bytes, dataset) -> None:
    """Write preamble, encoded file meta and the dataset bytes exactly as the peer sent them."""
    with os.fdopen(fd, "wb") as fh:
        fh.write(b"\x00" * 128 + b"DICM")
        fh.write(meta)
        # getbuffer() avoids copying a dataset of up to OKAPI_MAX_INSTANCE_BYTES once more in memory.
        with dataset.getbuffer() as view:
            fh.write(view)


def handle_store(event: Event) -> int:
    """EVT_C_STORE: archive one instance through ingest and answer with its status."""
    requestor = event.assoc.requestor
    calling_aet = requestor.ae_title
    address = f"[{requestor.address}]" if ":" in requestor.address else requestor.address  # IPv6
    sop_uid = str(event.request.AffectedSOPInstanceUID or "")
    name = f"{calling_aet}:{sop_uid}"
    dataset = event.request.DataSet
    with dataset.getbuffer() as view:
        size = view.nbytes
    if size > settings.OKAPI_MAX_INSTANCE_BYTES:
        # Refused before anything touches the disk; ingest would refuse the file anyway.
        log.warning("C-STORE %s refused: %d bytes is over OKAPI_MAX_INSTANCE_BYTES (%d)", name, size,
                    settings.OKAPI_MAX_INSTANCE_BYTES)
        return STATUS_OUT_OF_RESOURCES
    try:
        # File meta from the request: Affected SOP Class/Instance UID and the context's transfer syntax.
        # No Source AE Title in it, so the same instance pushed by two senders is the same file (same sha256).
        meta = encode_file_meta(event.file_meta)
    except (AttributeError, ValueError) as exc:  # an empty Affected SOP Class/Instance UID
        log.warning("C-STORE %s refused: %s", name, exc)
        return STATUS_CANNOT_UNDERSTAND

    # This runs in the association's thread: drop a connection that went stale between two instances.
    close_old_connections()
    path = ""
    try:
        try:
            fd, path = storage.temp_file(".dcm")
            _write_part10(fd, meta, dataset)
        except OSError:
            log.exception("C-STORE %s: could not write the temporary file", name)
            return STATUS_OUT_OF_RESOURCES
        result = ingest_file(path, user=None, source="c-store", name=name, consume=True, ip=address,
                             detail={"calling_aet": calling_aet, "peer": f"{address}:{requestor.port}"})
    finally:
        # Ingest moved the file into storage when it stored it as received; in every other case it is ours.
        if path and os.path.exists(path):
            os.unlink(path)
        close_old_connections()
    if result.ok:
        log.debug("C-STORE %s: %s", name, result.status)
        return STATUS_SUCCESS
    log.warning("C-STORE %s rejected (%s): %s", name, result.code, result.reason)
    return result.failure_code


def _close_db_connection(event: Event) -> None:
    """A peer's release or abort is handled in the association's own thread, which is about to end: close
    its database connection now rather than leave it open until the thread is garbage collected."""
    # A local abort (stop_server) fires EVT_ABORTED in the caller's thread, whose connection is not ours.
    if threading.current_thread() is event.assoc:
        connection.close()


HANDLERS = [
    (evt.EVT_C_STORE, handle_store),
    (evt.EVT_RELEASED, _close_db_connection),
    (evt.EVT_ABORTED, _close_db_connection),
]


def start_server(host: str | None = None, port: int | None = None) -> ThreadedAssociationServer:
    """Start listening in background threads and return the server (stop it with :func:`stop_server`)."""
    host = settings.OKAPI_DICOM_HOST if host is None else host
    port = settings.OKAPI_DICOM_PORT if port is None else port
    return build_ae().start_server((host, port), block=False, evt_handlers=HANDLERS)


def stop_server(server: ThreadedAssociationServer, *, grace: float = STOP_GRACE_SECONDS) -> None:
    """Stop accepting associations, let running ones finish for up to ``grace`` seconds, abort the rest."""
    server.shutdown()
    running = server.active_associations  # after shutdown: no association can start behind this list
    deadline = time.monotonic() + grace
    for assoc in running:
        assoc.join(timeout=max(0.0, deadline - time.monotonic()))
        if assoc.is_alive():
            log.warning("aborting the association with %s: the server is stopping", assoc.requestor.ae_title)
            assoc.abort()


def serve_forever(host: str | None = None, port: int | None = None) -> None:
    """Run the receiver until SIGTERM or SIGINT, then stop it cleanly (``okapi dicom-listen``)."""
    server = start_server(host, port)
    bound_host, bound_port = server.server_address[:2]
    stopping = threading.Event()

    def request_stop(signum, _frame) -> None:
        log.info("%s received: stopping", signal.Signals(signum).name)
        stopping.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    log.info("listening as %s@%s:%s", settings.OKAPI_DICOM_AE_TITLE, bound_host, bound_port)
    try:
        # A timed wait keeps the main thread returning to the interpreter, where signal handlers run.
        while not stopping.wait(1.0):
            pass
    finally:
        stop_server(server)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        log.info("stopped")
