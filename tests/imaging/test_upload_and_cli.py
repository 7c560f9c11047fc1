"""Browser uploads (REST) and ``okapi import``: files, folders, zip archives, with a summary of what happened."""

import io
import shutil
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from config.cli import main as okapi
from imaging.models import Instance, Study

pytestmark = pytest.mark.django_db


@pytest.fixture
def ts_dir(shared_data):
    return shared_data / "dicom" / "transfer_syntaxes" / "dcm_qa_ts"


def test_okapi_import_folder_zip_and_junk_with_summary(tmp_path, ts_dir, capsys):
    folder = tmp_path / "in"
    shutil.copytree(ts_dir, folder)
    (folder / "notes.txt").write_text("not dicom")
    archive = tmp_path / "more.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(ts_dir / "1.dcm", "dup/1.dcm")
    assert okapi(["import", str(folder), str(archive), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "stored 9, skipped as duplicate 1, rejected 1" in out
    assert "notes.txt: not a DICOM Part 10 file" in out
    assert Instance.objects.count() == 9
    assert okapi(["import", str(ts_dir / "1.dcm"), "--quiet"]) == 0
    assert "stored 0, skipped as duplicate 1, rejected 0" in capsys.readouterr().out


def test_okapi_import_with_deidentification(tmp_path, ts_dir, capsys):
    assert okapi(["import", str(ts_dir / "1.dcm"), "--deidentify", "--quiet"]) == 0
    instance = Instance.objects.get()
    assert instance.deidentified
    study = Study.objects.get()
    import pydicom

    original = pydicom.dcmread(ts_dir / "1.dcm")
    assert study.study_uid != original.StudyInstanceUID
    assert study.patient_identifier.startswith("OKAPI-")
    assert '"00120062":{"vr":"CS","Value":["YES"]}' in instance.metadata


def test_user_and_token_commands(capsys):
    assert okapi(["user", "create", "lead1", "--role", "lead", "--password", "long-password"]) == 0
    assert okapi(["token", "lead1"]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    assert token.startswith("okp_")
    assert okapi(["user", "create", "lead1", "--role", "lead"]) == 2  # taken
    assert okapi(["token", "nobody"]) == 2


def test_browser_upload_reports_each_file(make_user, ts_dir):
    api = APIClient()
    api.force_authenticate(make_user("lead"))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.write(ts_dir / "4.dcm", "a/4.dcm")
        zf.writestr("a/readme.txt", "hello")
    files = [SimpleUploadedFile("1.dcm", (ts_dir / "1.dcm").read_bytes()),
             SimpleUploadedFile("bundle.zip", buffer.getvalue()),
             SimpleUploadedFile("broken.dcm", (ts_dir / "9.dcm").read_bytes()[:5000])]
    response = api.post("/api/v1/imaging/uploads", {"files": files}, format="multipart")
    assert response.status_code == 207
    body = response.json()
    assert (body["stored"], body["duplicate"], body["rejected"]) == (2, 0, 2)
    rejected = {r["name"]: r["reason"] for r in body["results"] if r["status"] == "rejected"}
    assert any(name.startswith("bundle.zip!") and "readme" in name for name in rejected)
    assert "broken.dcm" in rejected
    assert Instance.objects.count() == 2


def test_uploads_are_for_leads_and_admins(make_user, ts_dir):
    api = APIClient()
    api.force_authenticate(make_user("radiologist"))
    response = api.post("/api/v1/imaging/uploads", {"files": [SimpleUploadedFile("1.dcm", b"x")]},
                        format="multipart")
    assert response.status_code == 403


def test_studies_api_lists_what_the_user_may_see(make_user, ts_dir, django_assert_max_num_queries):
    from imaging.services.ingest import ingest_file

    lead = make_user("lead")
    for name in ("1.dcm", "3.dcm"):
        ingest_file(str(ts_dir / name), user=lead, source="test")
    api = APIClient()
    api.force_authenticate(lead)
    with django_assert_max_num_queries(3):
        body = api.get("/api/v1/imaging/studies").json()
    assert body["count"] == 1
    study_uid = body["results"][0]["study_uid"]
    assert api.get(f"/api/v1/imaging/studies/{study_uid}").json()["series"][0]["num_instances"] == 2
    api.force_authenticate(make_user("lead"))
    assert api.get("/api/v1/imaging/studies").json()["count"] == 0
    assert api.get(f"/api/v1/imaging/studies/{study_uid}").status_code == 404
