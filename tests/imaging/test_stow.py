"""STOW-RS: good files stored, bad ones rejected with their reason, nothing partial kept, re-sends idempotent."""

import io
import os

import pydicom
import pytest
import requests
from django.conf import settings as django_settings

from core.models import AuditEvent
from imaging.models import Instance, Study
from tests.imaging._synthetic import synthetic_study
from tests.imaging._util import multipart_body

pytestmark = pytest.mark.django_db(transaction=True)


def _bytes(path) -> bytes:
    return open(path, "rb").read()


def _without(path, keyword: str) -> bytes:
    ds = pydicom.dcmread(path)
    delattr(ds, keyword)
    ds.file_meta.MediaStorageSOPInstanceUID = ""
    buffer = io.BytesIO()
    ds.save_as(buffer)
    return buffer.getvalue()


def _stored_files() -> set[str]:
    root = os.path.join(django_settings.DATA_DIR, "storage")
    return {os.path.join(d, f) for d, _, files in os.walk(root) for f in files}


@pytest.fixture
def stow(okapi_server, admin_user, token_for):
    token = token_for(admin_user)

    def post(parts: list[bytes], path: str = "/studies", **kwargs):
        body, content_type = multipart_body(parts, **kwargs)
        return requests.post(f"{okapi_server}/dicomweb{path}", data=body, timeout=60,
                             headers={"Authorization": f"Bearer {token}", "Content-Type": content_type})

    return post


@pytest.fixture
def ts_dir(shared_data):
    return shared_data / "dicom" / "transfer_syntaxes" / "dcm_qa_ts"


def test_a_bad_file_is_rejected_with_its_reason_and_the_rest_is_stored(stow, ts_dir):
    buffer = io.BytesIO()
    synthetic_study(ts_dir / "1.dcm", patient_name="A^B", patient_id="P1", accession="A1", study_date="20240101",
                    description="new").save_as(buffer)
    good = buffer.getvalue()
    truncated = _bytes(ts_dir / "7.dcm")[:150_000]
    before = _stored_files()
    response = stow([good, b"this is not DICOM at all" * 10, truncated, _without(ts_dir / "2.dcm", "SOPInstanceUID")])
    assert response.status_code == 202
    assert response.headers["Content-Type"] == "application/dicom+json"
    body = response.json()
    assert len(body["00081199"]["Value"]) == 1
    failed = body["00081198"]["Value"]
    assert len(failed) == 3
    reasons = [f["00000902"]["Value"][0] for f in failed]
    assert "not a DICOM" in reasons[0]
    assert "truncated" in reasons[1] or "pixel data" in reasons[1]
    assert "SOPInstanceUID" in reasons[2]
    assert all(f["00081197"]["Value"][0] for f in failed)
    assert Instance.objects.count() == 1
    assert len(_stored_files() - before) == 1  # nothing of the rejected files stays on disk
    assert not os.listdir(django_settings.FILE_UPLOAD_TEMP_DIR)


def test_all_bad_is_409_and_a_resend_is_idempotent(stow, ts_dir):
    assert stow([b"junk"]).status_code == 409
    first = stow([_bytes(ts_dir / "1.dcm")])
    again = stow([_bytes(ts_dir / "1.dcm")])
    assert first.status_code == again.status_code == 200
    assert Instance.objects.count() == 1
    assert Study.objects.get().num_instances == 1


def test_a_different_copy_of_a_stored_instance_does_not_replace_it(stow, ts_dir):
    stow([_bytes(ts_dir / "1.dcm")])
    original = Instance.objects.get()
    ds = pydicom.dcmread(ts_dir / "1.dcm")
    ds.PatientName = "Someone^Else"
    buffer = io.BytesIO()
    ds.save_as(buffer)
    response = stow([buffer.getvalue()])  # same instance, other content: a re-send, the stored one is kept
    assert response.status_code == 200
    assert Instance.objects.get().sha256 == original.sha256
    ds.SeriesInstanceUID = "1.2.3.4.5"  # the same SOP Instance UID claimed by another series: refused
    buffer = io.BytesIO()
    ds.save_as(buffer)
    response = stow([buffer.getvalue()])
    assert response.status_code == 409
    assert "another series" in response.json()["00081198"]["Value"][0]["00000902"]["Value"][0]
    assert Instance.objects.count() == 1


def test_a_failure_inside_a_group_transaction_leaves_the_others_stored_and_nothing_of_it(stow, ts_dir):
    """Instances of one request are indexed in groups, one transaction each; a failure in the middle of one
    (here: a new study naming a series that already belongs to another study) rolls the group back, takes its
    files back out of storage, and stores the group again one instance at a time."""
    from imaging.models import Series

    def encoded(ds) -> bytes:
        buffer = io.BytesIO()
        ds.save_as(buffer)
        return buffer.getvalue()

    def new(i: int):
        return synthetic_study(ts_dir / "1.dcm", patient_name=f"G^{i}", patient_id=f"G{i}", accession=f"G{i}",
                               study_date="20240101", description="group")

    first = new(0)
    assert stow([encoded(first)]).status_code == 200
    before = _stored_files()
    thief = new(9)
    thief.SeriesInstanceUID = first.SeriesInstanceUID  # claims a series of another study
    others = [new(i) for i in (1, 2, 3)]
    response = stow([encoded(others[0]), encoded(others[1]), encoded(thief), encoded(others[2])])
    assert response.status_code == 202, response.text
    body = response.json()
    stored = [item["00081155"]["Value"][0] for item in body["00081199"]["Value"]]
    assert stored == [str(ds.SOPInstanceUID) for ds in others]
    failed = body["00081198"]["Value"]
    assert len(failed) == 1 and "is already stored in another study" in response.headers["Warning"]
    assert not Study.objects.filter(study_uid=thief.StudyInstanceUID).exists()
    assert Instance.objects.count() == 4 and Series.objects.get(series_uid=first.SeriesInstanceUID).num_instances == 1
    assert all(Study.objects.get(study_uid=ds.StudyInstanceUID).num_instances == 1 for ds in others)
    assert len(_stored_files() - before) == 3  # the three stored files, and no trace of the thief's
    assert not os.listdir(django_settings.FILE_UPLOAD_TEMP_DIR)


def test_a_series_with_empty_uids_is_stored_under_generated_uids(stow, shared_data):
    folder = shared_data / "dicom" / "series" / "ct_body_siemens_biograph_20sl_j2k"
    files = sorted(folder.iterdir())
    response = stow([_bytes(f) for f in files])
    assert response.status_code == 200, response.text
    study = Study.objects.get()
    assert study.study_uid and study.uid_generated
    assert study.num_instances == len(files) and study.num_series == 1
    instance = Instance.objects.first()
    assert {r["keyword"] for r in instance.repairs} >= {"StudyInstanceUID", "SeriesInstanceUID", "SOPClassUID"}
    assert not Instance.objects.filter(sop_class_uid="").exists()
    # the same files again land in the same generated study and series
    assert stow([_bytes(files[0])]).status_code == 200
    assert Study.objects.count() == 1 and Instance.objects.count() == len(files)


def test_stow_into_a_named_study_refuses_instances_of_another(stow, ts_dir):
    ds = pydicom.dcmread(ts_dir / "1.dcm")
    response = stow([_bytes(ts_dir / "1.dcm")], path="/studies/1.2.3.4")
    assert response.status_code == 409
    assert "belongs to study" in response.headers["Warning"]
    assert stow([_bytes(ts_dir / "1.dcm")], path=f"/studies/{ds.StudyInstanceUID}").status_code == 200


def test_oversized_body_is_refused_before_anything_is_stored(stow, ts_dir, settings):
    settings.OKAPI_MAX_UPLOAD_BYTES = 100_000
    response = stow([_bytes(ts_dir / "1.dcm")])
    assert response.status_code == 413
    assert response.json()["code"] == "too_large"
    assert Instance.objects.count() == 0


def test_an_oversized_instance_is_rejected_and_the_others_stored(stow, ts_dir, settings):
    settings.OKAPI_MAX_INSTANCE_BYTES = 300_000
    response = stow([_bytes(ts_dir / "1.dcm"), _bytes(ts_dir / "7.dcm")])  # 383 kB and 217 kB
    assert response.status_code == 202
    assert "over the limit" in response.json()["00081198"]["Value"][0]["00000902"]["Value"][0]
    assert Instance.objects.count() == 1


def test_malformed_requests_get_clear_errors(okapi_server, admin_user, token_for, ts_dir):
    headers = {"Authorization": f"Bearer {token_for(admin_user)}"}
    response = requests.post(f"{okapi_server}/dicomweb/studies", data=b"x", timeout=30,
                             headers=headers | {"Content-Type": "application/json"})
    assert response.status_code == 415 and response.json()["code"] == "unsupported_media_type"
    body, content_type = multipart_body([_bytes(ts_dir / "1.dcm")])
    response = requests.post(f"{okapi_server}/dicomweb/studies", data=body[: len(body) // 2], timeout=30,
                             headers=headers | {"Content-Type": content_type})
    assert response.status_code == 400 and "ended inside a part" in response.json()["message"]
    assert Instance.objects.count() == 0


def test_store_is_audited(stow, ts_dir, admin_user):
    stow([_bytes(ts_dir / "1.dcm")])
    event = AuditEvent.objects.get(action="store")
    assert event.user == admin_user and event.ip == "127.0.0.1"
    assert event.detail["source"] == "stow-rs"


def test_a_chunked_body_is_streamed_and_limited_too(okapi_server, admin_user, token_for, ts_dir, settings):
    body, content_type = multipart_body([_bytes(ts_dir / "1.dcm"), _bytes(ts_dir / "7.dcm")])
    headers = {"Authorization": f"Bearer {token_for(admin_user)}", "Content-Type": content_type}

    def chunks():  # a generator makes requests send Transfer-Encoding: chunked, no Content-Length
        for start in range(0, len(body), 65536):
            yield body[start:start + 65536]

    response = requests.post(f"{okapi_server}/dicomweb/studies", data=chunks(), headers=headers, timeout=60)
    assert response.status_code == 200, response.text
    assert Instance.objects.count() == 2
    settings.OKAPI_MAX_UPLOAD_BYTES = 200_000
    body, content_type = multipart_body([_bytes(ts_dir / "2.dcm"), _bytes(ts_dir / "4.dcm")])
    headers["Content-Type"] = content_type
    response = requests.post(f"{okapi_server}/dicomweb/studies", data=chunks(), headers=headers, timeout=60)
    assert response.status_code == 413
    assert Instance.objects.count() == 2
