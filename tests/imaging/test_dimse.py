"""Tests for imaging.dimse, the C-STORE receiver: pynetdicom acts as the SCU (as a PACS or storescu would)
against the real server on a loopback port, with real files from ../shared/data/dicom.

The server handles associations in its own threads, so the tests that talk to it use ``transactional_db``
(through the ``listener`` fixture): rows must be committed to be seen across threads.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pydicom
import pytest
from django.conf import settings
from pydicom.uid import JPEG2000, ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEG2000Lossless
from pynetdicom import AE, _config
from pynetdicom.sop_class import CTImageStorage, Verification

from imaging.dimse import build_ae, preferred_transfer_syntaxes, start_server, stop_server

CT_SERIES = "series/ct_head_phantom_philips_ingenuity_28sl"
EMPTY_UID_SERIES = "series/ct_body_siemens_biograph_20sl_j2k"
JPEG_LS = "transfer_syntaxes/dcm_qa_ts/7.dcm"
J2K = "transfer_syntaxes/dcm_qa_ts/9.dcm"
CALLING_AET = "PACS"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def listener(transactional_db) -> Iterator[Callable[[], int]]:
    """Start the receiver with the current settings on a free loopback port (the OS picks it); returns the
    port. Started after any ``settings`` change a test makes, since the AE reads them when built."""
    servers = []

    def start() -> int:
        server = start_server("127.0.0.1", 0)
        servers.append(server)
        return server.server_address[1]

    yield start
    for server in servers:
        stop_server(server, grace=10)


def _files(shared_data: Path, rel: str) -> list[Path]:
    path = shared_data / "dicom" / rel
    return sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]


@contextlib.contextmanager
def _association(port: int, contexts: set[tuple[str, str]], *, calling_aet: str = CALLING_AET):
    """An established association as ``calling_aet``, proposing exactly the (SOP class, transfer syntax)
    pairs given: a file is sent in its own transfer syntax or not at all."""
    ae = AE(ae_title=calling_aet)
    for sop_class, syntax in sorted(contexts):
        ae.add_requested_context(sop_class, syntax)
    assoc = ae.associate("127.0.0.1", port, ae_title=settings.OKAPI_DICOM_AE_TITLE)
    assert assoc.is_established
    try:
        yield assoc
    finally:
        assoc.release()


def _push(port: int, paths: list[Path], *, raw: bool = False) -> list[int]:
    """C-STORE each file in one association and return the statuses.

    Default: pynetdicom reads and sends the dataset (SOP UIDs from the dataset). ``raw``: it sends the
    file's encoded dataset as it is, with the SOP UIDs of its file meta: the only way pynetdicom sends a
    dataset whose own SOP Class/Instance UID is empty or missing.
    """
    metas = [pydicom.dcmread(p, stop_before_pixels=True).file_meta for p in paths]
    contexts = {(str(m.MediaStorageSOPClassUID), str(m.TransferSyntaxUID)) for m in metas}
    previous = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = raw
    try:
        with _association(port, contexts) as assoc:
            responses = [assoc.send_c_store(p) for p in paths]
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = previous
    assert all("Status" in r for r in responses), "no C-STORE response (aborted or timed out)"
    return [r.Status for r in responses]


def _stored_files() -> set[Path]:
    return {p for p in (Path(settings.DATA_DIR) / "storage").rglob("*") if p.is_file()}


def _temp_files() -> set[Path]:
    return set(Path(settings.FILE_UPLOAD_TEMP_DIR).iterdir())


def test_build_ae_offers_every_archivable_syntax():
    from imaging.dicom.instance import SUPPORTED_TRANSFER_SYNTAXES

    contexts = {cx.abstract_syntax: cx for cx in build_ae().supported_contexts}
    assert set(contexts[CTImageStorage].transfer_syntax) == set(SUPPORTED_TRANSFER_SYNTAXES)
    assert Verification in contexts
    order = preferred_transfer_syntaxes()
    assert order[0] == ExplicitVRLittleEndian
    assert order.index(JPEG2000Lossless) < order.index(JPEG2000)


def test_explicit_vr_is_chosen_when_offered_with_implicit(listener):
    """One context offering both: Okapi picks explicit VR, which keeps the VR of private elements."""
    ae = AE(ae_title=CALLING_AET)
    ae.add_requested_context(CTImageStorage, [ImplicitVRLittleEndian, ExplicitVRLittleEndian])
    assoc = ae.associate("127.0.0.1", listener(), ae_title=settings.OKAPI_DICOM_AE_TITLE)
    assert assoc.is_established
    try:
        assert assoc.accepted_contexts[0].transfer_syntax == [ExplicitVRLittleEndian]
    finally:
        assoc.release()


def test_c_echo(listener):
    with _association(listener(), {(Verification, "1.2.840.10008.1.2")}) as assoc:
        assert assoc.send_c_echo().Status == 0x0000


def test_push_series_and_compressed_files(listener, shared_data):
    from core.models import AuditEvent
    from imaging import storage
    from imaging.models import Instance, Study

    paths = _files(shared_data, CT_SERIES) + _files(shared_data, JPEG_LS) + _files(shared_data, J2K)
    assert len(paths) == 30
    temp_before = _temp_files()
    statuses = _push(listener(), paths)
    assert statuses == [0x0000] * len(paths)
    assert _temp_files() == temp_before  # every received file was moved into storage

    studies: dict[str, int] = {}
    for path in paths:
        original = pydicom.dcmread(path)
        instance = Instance.objects.select_related("series__study").get(sop_uid=original.SOPInstanceUID)
        assert instance.transfer_syntax_uid == original.file_meta.TransferSyntaxUID
        stored = pydicom.dcmread(storage.local_path(instance.file))
        assert stored.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
        assert stored.PixelData == original.PixelData  # the encoded bytes, untouched
        studies[original.StudyInstanceUID] = studies.get(original.StudyInstanceUID, 0) + 1
        event = AuditEvent.objects.get(action="store", object_id=original.SOPInstanceUID)
        assert event.detail["source"] == "c-store"
        assert event.detail["calling_aet"] == CALLING_AET
        assert event.detail["peer"].startswith("127.0.0.1:")
    assert sorted(studies.values()) == [2, 28]  # the CT series; the two MR files share a study
    for study_uid, count in studies.items():
        assert Study.objects.get(study_uid=study_uid).num_instances == count


def test_resend_is_idempotent(listener, shared_data):
    from core.models import AuditEvent
    from imaging.models import Instance, Study

    path = _files(shared_data, J2K)
    port = listener()
    assert _push(port, path) == [0x0000]
    assert _push(port, path) == [0x0000]
    ds = pydicom.dcmread(path[0], stop_before_pixels=True)
    assert Instance.objects.filter(sop_uid=ds.SOPInstanceUID).count() == 1
    assert Study.objects.get(study_uid=ds.StudyInstanceUID).num_instances == 1
    assert AuditEvent.objects.filter(action="store", object_id=ds.SOPInstanceUID).count() == 1


def _db_sessions() -> int:
    """Other sessions on the test database (the server's association threads open their own)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                       "AND pid <> pg_backend_pid()")
        return cursor.fetchone()[0]


def test_association_closes_its_db_connection(listener, shared_data):
    """The association thread ends with the association: its connection must not linger until GC."""
    before = _db_sessions()
    assert _push(listener(), _files(shared_data, J2K)) == [0x0000]
    # The server closes it just after answering the release, so the count may take a moment to drop:
    # wait for it (bounded), the outcome is asserted, not the time it took.
    deadline = time.monotonic() + 10
    while _db_sessions() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _db_sessions() == before


def test_series_with_empty_uids_is_stored_under_generated_uids(listener, shared_data):
    """Empty Study/Series/SOP Instance UID and SOP Class UID in the dataset: ingest repairs them (SOP UIDs
    from the file meta, which for C-STORE is the request's Affected SOP UIDs; series and study derived)."""
    from imaging.models import Instance, Series, Study

    paths = _files(shared_data, EMPTY_UID_SERIES)
    assert len(paths) == 20
    temp_before = _temp_files()
    port = listener()
    assert _push(port, paths, raw=True) == [0x0000] * len(paths)
    # A re-send derives the same UIDs and is recognised (0x0000, nothing added).
    assert _push(port, paths, raw=True) == [0x0000] * len(paths)
    assert _temp_files() == temp_before  # the received originals of the rewritten copies are gone too

    expected = {str(pydicom.dcmread(p, stop_before_pixels=True).file_meta.MediaStorageSOPInstanceUID) for p in paths}
    assert set(Instance.objects.values_list("sop_uid", flat=True)) == expected
    study = Study.objects.get()
    assert study.uid_generated is True and study.num_instances == 20
    assert Series.objects.get().num_instances == 20
    for model, field in ((Study, "study_uid"), (Series, "series_uid"), (Instance, "sop_uid"),
                         (Instance, "sop_class_uid")):
        assert not model.objects.filter(**{field: ""}).exists()


# The malformed UID is warned about by pydicom on both sides, in the server's threads too (hence a filter,
# not pytest.warns, which would depend on when another thread warns).
@pytest.mark.filterwarnings("ignore:Invalid value for VR UI:UserWarning")
def test_missing_sop_instance_uid_that_cannot_be_repaired_is_refused(listener, shared_data, tmp_path):
    """No SOPInstanceUID in the dataset and a malformed Affected SOP Instance UID to repair it from."""
    from imaging.models import Instance

    ds = pydicom.dcmread(_files(shared_data, CT_SERIES)[0])
    del ds.SOPInstanceUID
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.03.not-a-uid"  # under 65 characters: pynetdicom sends it
    path = tmp_path / "no_sop_uid.dcm"
    ds.save_as(path)
    stored_before, temp_before = _stored_files(), _temp_files()

    assert _push(listener(), [path], raw=True) == [0xC000]  # Cannot understand
    assert not Instance.objects.exists()
    assert _stored_files() == stored_before
    assert _temp_files() == temp_before


def test_oversized_dataset_is_refused(listener, shared_data, settings):
    from imaging.models import Instance

    settings.OKAPI_MAX_INSTANCE_BYTES = 4096  # a CT slice is ~0.5 MB
    temp_before = _temp_files()
    assert _push(listener(), _files(shared_data, CT_SERIES)[:1]) == [0xA700]
    assert not Instance.objects.exists()
    assert _temp_files() == temp_before


def test_unknown_calling_aet_is_rejected_when_allowed_aets_set(listener, settings):
    settings.OKAPI_DICOM_ALLOWED_AETS = [CALLING_AET]
    port = listener()
    ae = AE(ae_title="INTRUDER")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title=settings.OKAPI_DICOM_AE_TITLE)
    assert assoc.is_rejected
    with _association(port, {(Verification, "1.2.840.10008.1.2")}) as assoc:  # the listed one still gets in
        assert assoc.send_c_echo().Status == 0x0000


def test_dicom_listen_command_stops_on_sigterm():
    """``okapi dicom-listen`` serves C-ECHO, logs where it listens and exits 0 on SIGTERM."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "config.cli", "dicom-listen", "--host", "127.0.0.1",
                             "--port", str(port)], cwd=ROOT, env=os.environ | {"OKAPI_LOG_LEVEL": "INFO"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ae = AE(ae_title=CALLING_AET)
        ae.add_requested_context(Verification)
        deadline = time.monotonic() + 60
        while True:  # wait for the child to be up, however long Django takes to start
            assoc = ae.associate("127.0.0.1", port, ae_title=settings.OKAPI_DICOM_AE_TITLE)
            if assoc.is_established or time.monotonic() > deadline or proc.poll() is not None:
                break
            time.sleep(0.2)
        assert assoc.is_established, proc.stderr.read() if proc.poll() is not None else "not listening"
        assert assoc.send_c_echo().Status == 0x0000
        assoc.release()
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    assert f"listening as {settings.OKAPI_DICOM_AE_TITLE}@127.0.0.1:{port}" in stderr
