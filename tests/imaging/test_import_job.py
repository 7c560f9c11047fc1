"""A server-side import as a background job: a real Celery worker on Redis, live progress over a websocket."""

import json
import shutil
import time

import pytest
import requests
from websockets.sync.client import connect

from core.jobs import job_create, job_start, jobs_fail_stale
from core.models import Job
from imaging.models import Instance

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def worker(start_worker, import_root):
    """`okapi worker` as its own process, on the test database and the test Redis."""
    return start_worker("ingest,default")


@pytest.fixture
def import_root(tmp_path, settings, shared_data):
    root = tmp_path / "import"
    shutil.copytree(shared_data / "dicom" / "series" / "mr_brain_sag_mprage_siemens_skyra_192sl", root / "mr")
    (root / "mr" / "README").write_text("not an image")
    settings.OKAPI_IMPORT_ROOTS = [str(root)]
    return root


def test_import_job_runs_on_a_worker_and_reports_progress_live(worker, import_root, okapi_server, make_user,
                                                               token_for):
    token = token_for(make_user("lead"))
    headers = {"Authorization": f"Bearer {token}"}
    response = requests.post(f"{okapi_server}/api/v1/imaging/imports", json={"paths": [str(import_root / "mr")]},
                             headers=headers, timeout=30)
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    events = []
    ws_url = okapi_server.replace("http", "ws") + f"/ws/jobs/{job_id}?token={token}"
    with connect(ws_url, origin=okapi_server, open_timeout=30) as ws:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            event = json.loads(ws.recv(timeout=deadline - time.monotonic()))
            events.append(event)
            if event["state"] in {"succeeded", "failed"}:
                break
    assert events[-1]["state"] == "succeeded", events[-1]
    assert events[-1]["result"]["stored"] == 192 and events[-1]["result"]["rejected"] == 1
    assert "README" in events[-1]["result"]["rejected_files"][0]["name"]
    progress = [e["progress"] for e in events if e["state"] == "running"]
    assert progress and progress == sorted(progress) and any(0 < p < 1 for p in progress)
    assert Instance.objects.count() == 192
    assert requests.get(f"{okapi_server}/api/v1/jobs/{job_id}", headers=headers, timeout=30).json()["state"] == \
        "succeeded"


def test_imports_only_read_inside_the_import_roots(okapi_server, make_user, token_for, import_root):
    headers = {"Authorization": f"Bearer {token_for(make_user('lead'))}"}
    response = requests.post(f"{okapi_server}/api/v1/imaging/imports", json={"paths": ["/etc"]}, headers=headers,
                             timeout=30)
    assert response.status_code == 400 and response.json()["code"] == "invalid_path"
    response = requests.post(f"{okapi_server}/api/v1/imaging/imports",
                             json={"paths": [str(import_root / ".." / ".." / "etc")]}, headers=headers, timeout=30)
    assert response.status_code == 400
    headers = {"Authorization": f"Bearer {token_for(make_user('radiologist'))}"}
    response = requests.post(f"{okapi_server}/api/v1/imaging/imports", json={"paths": [str(import_root)]},
                             headers=headers, timeout=30)
    assert response.status_code == 403


def test_a_job_whose_worker_died_is_failed_not_left_running(make_user):
    from datetime import timedelta

    from django.utils import timezone

    job = job_create(kind="import", user=make_user("lead"))
    job_start(job_id=job.pk)
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    assert jobs_fail_stale() == 1
    job.refresh_from_db()
    assert job.state == "failed" and "stopped responding" in job.error


def test_websocket_refuses_strangers(okapi_server, make_user, token_for):
    from websockets.exceptions import InvalidStatus

    job = job_create(kind="import", user=make_user("lead"))
    stranger = token_for(make_user("lead"))
    url = okapi_server.replace("http", "ws") + f"/ws/jobs/{job.pk}?token={stranger}"
    with pytest.raises(InvalidStatus) as refused:  # closed before the handshake completes
        connect(url, origin=okapi_server, open_timeout=10)
    assert refused.value.response.status_code == 403
    owner_url = okapi_server.replace("http", "ws") + f"/ws/jobs/{job.pk}?token={token_for(job.created_by)}"
    with connect(owner_url, origin=okapi_server, open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10))["state"] == "queued"
