"""Exports as background jobs: a real Celery worker on Redis, live progress over the websocket, a real HTTP
download resumed with Range requests; a worker killed mid-build leaves a failed job and no snapshot."""

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.conftest import worker_env

pytestmark = pytest.mark.django_db(transaction=True)


def _follow(okapi_server: str, job_id: str, token: str) -> list[dict]:
    """The job's events until it ends. A dropped connection is opened again, as a browser does: the first
    message of each connection is the job's current state (the row is the truth)."""
    events = []
    url = okapi_server.replace("http", "ws") + f"/ws/jobs/{job_id}?token={token}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            with connect(url, origin=okapi_server, open_timeout=30) as ws:
                while time.monotonic() < deadline:
                    event = json.loads(ws.recv(timeout=deadline - time.monotonic()))
                    events.append(event)
                    if event["state"] in {"succeeded", "failed"}:
                        return events
        except ConnectionClosed:
            continue
    raise AssertionError(f"the job did not end: {events[-1:]}")


def test_export_job_with_live_progress_and_a_resumable_streamed_download(export_worker, okapi_server,
                                                                         make_labelled, token_for, tmp_path):
    campaign = make_labelled(studies=2, first=3).campaign  # enhanced CT and the liver CT with masks
    token = token_for(campaign.scientist)
    auth = {"Authorization": f"Bearer {token}"}
    pid = campaign.project_id
    response = requests.post(f"{okapi_server}/api/v1/projects/{pid}/exports", json={"images": "both"},
                             headers=auth, timeout=30)
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    events = _follow(okapi_server, job_id, token)
    assert events[-1]["state"] == "succeeded", events[-1]
    progress = [e["progress"] for e in events if e["state"] == "running"]
    assert progress == sorted(progress) and any(0 < p < 1 for p in progress)
    result = events[-1]["result"]
    assert result["version"] == 1 and result["reused"] is False
    job = requests.get(f"{okapi_server}/api/v1/jobs/{job_id}", headers=auth, timeout=30).json()
    assert job["state"] == "succeeded" and job["result"]["content_hash"] == result["content_hash"]

    url = okapi_server + result["download"]
    with requests.get(url, headers=auth, stream=True, timeout=60) as full:
        assert full.status_code == 200 and full.headers["Content-Type"] == "application/zip"
        body = b"".join(full.iter_content(64 * 1024))
        etag = full.headers["ETag"]
        assert etag == f'"{result["content_hash"]}"' and full.headers["Accept-Ranges"] == "bytes"
        assert int(full.headers["Content-Length"]) == len(body) == result["size"]
        assert hashlib.sha256(body).hexdigest() == full.headers["X-Content-SHA256"]
        assert "attachment" in full.headers["Content-Disposition"]

    # An interrupted download resumes where it stopped.
    half = len(body) // 2
    first = requests.get(url, headers=auth | {"Range": f"bytes=0-{half - 1}"}, timeout=60)
    assert first.status_code == 206 and first.headers["Content-Range"] == f"bytes 0-{half - 1}/{len(body)}"
    rest = requests.get(url, headers=auth | {"Range": f"bytes={half}-", "If-Range": etag}, timeout=60)
    assert rest.status_code == 206 and first.content + rest.content == body
    tail = requests.get(url, headers=auth | {"Range": "bytes=-100"}, timeout=60)
    assert tail.status_code == 206 and tail.content == body[-100:]
    # A stale If-Range (another version's tag) gets the whole archive; a range past the end is refused.
    stale = requests.get(url, headers=auth | {"Range": "bytes=10-", "If-Range": '"0000"'}, timeout=60)
    assert stale.status_code == 200 and stale.content == body
    beyond = requests.get(url, headers=auth | {"Range": f"bytes={len(body)}-"}, timeout=60)
    assert beyond.status_code == 416 and beyond.headers["Content-Range"] == f"bytes */{len(body)}"
    several = requests.get(url, headers=auth | {"Range": "bytes=0-1,5-6"}, timeout=60)
    assert several.status_code == 200 and several.content == body
    head = requests.head(url, headers=auth, timeout=60)
    assert head.status_code == 200 and head.headers["Content-Length"] == str(len(body)) and not head.content
    assert requests.get(url, headers=auth | {"If-None-Match": etag}, timeout=60).status_code == 304

    # The README's Python client: the same request again finds the same version by its content hash, and a
    # partial download is resumed and checked.
    client = _readme_client()
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    again = client["request_export"](session, okapi_server, pid, images="both")
    assert again["reused"] is True and again["version"] == 1 and again["content_hash"] == result["content_hash"]
    partial = tmp_path / "partial.zip"
    partial.write_bytes(body[:12345])
    assert client["download_export"](session, okapi_server, again, str(partial)) == str(partial)
    assert partial.read_bytes() == body
    client["download_export"](session, okapi_server, again, str(partial))  # already complete: 416, still fine
    assert partial.read_bytes() == body


def _readme_client() -> dict:
    """The Python client example of README.md ("Datasets and exports"), loaded as a module."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    code = re.search(r"```python\n(# okapi_export_client\.py.*?)```", readme, re.S).group(1)
    namespace = {"__name__": "okapi_export_client"}
    exec(compile(code, "okapi_export_client.py", "exec"), namespace)  # noqa: S102 - our own README
    return namespace


SLOW_BUILD = textwrap.dedent("""
    import sys, time
    import django
    django.setup()
    from annotation.exports import cases
    write, seen = cases.CaseWriter.write, []

    def slow(self, case):  # the second case takes a minute: time to kill the worker mid-build
        if seen:
            time.sleep(60)
        seen.append(case.pk)
        write(self, case)

    cases.CaseWriter.write = slow
    from annotation.tasks import export_build_task
    export_build_task(sys.argv[1])
""")


def test_a_worker_killed_mid_build_leaves_no_snapshot_and_its_job_is_retried_then_failed(make_labelled, settings,
                                                                                         monkeypatch):
    from annotation.exports.build import _sweep_stale_staging
    from annotation.exports.services import export_params
    from annotation.models import Project
    from annotation.models_export import Export
    from annotation.tasks import export_build_task
    from core import jobs
    from core.jobs import job_create, jobs_fail_stale
    from core.models import Job

    campaign = make_labelled(studies=2, first=3).campaign
    project = Project.objects.get(pk=campaign.project_id)
    job = job_create(kind="export", user=campaign.lead,
                     params={"project": project.pk, "request": export_params({}, project=project)})
    env = worker_env(settings) | {"DJANGO_SETTINGS_MODULE": "config.settings"}
    worker = subprocess.Popen([sys.executable, "-c", SLOW_BUILD, str(job.pk)], env=env)
    try:
        deadline = time.monotonic() + 180
        while Job.objects.get(pk=job.pk).progress <= 0:
            assert time.monotonic() < deadline and worker.poll() is None, "the build did not start"
            time.sleep(0.2)
        os.kill(worker.pid, signal.SIGKILL)
    finally:
        worker.wait(timeout=30)
    job = Job.objects.get(pk=job.pk)
    assert job.state == "running" and 0 < job.progress < 1
    assert Export.objects.count() == 0
    stored = settings.DATA_DIR / "storage" / "exports" / str(project.pk)
    assert not stored.exists() or not any(p.is_file() for p in stored.rglob("*"))
    staging = [e for e in os.scandir(settings.FILE_UPLOAD_TEMP_DIR) if e.name.startswith(f"export-{job.pk}")]
    assert len(staging) == 1  # what the dead worker left: swept once it is a day old
    old = time.time() - 2 * 24 * 3600
    os.utime(staging[0].path, (old, old))
    _sweep_stale_staging()
    assert not os.path.exists(staging[0].path)

    # core.recover_stale_jobs queues it again (here run in this process instead of on a worker) ...
    requeued = []
    monkeypatch.setitem(jobs._retries, "export", (lambda j: requeued.append(j.pk), 3))
    assert jobs_fail_stale(older_than=timedelta(0)) == 1
    assert requeued == [job.pk] and Job.objects.get(pk=job.pk).state == "queued"
    export_build_task(str(job.pk))
    job = Job.objects.get(pk=job.pk)
    assert job.state == "succeeded" and job.attempts == 2 and Export.objects.get().version == 1
    # ... and a job whose attempts are used up is failed, never left running.
    Job.objects.filter(pk=job.pk).update(state="running", attempts=3, heartbeat_at=job.created_at)
    assert jobs_fail_stale(older_than=timedelta(0)) == 1
    job = Job.objects.get(pk=job.pk)
    assert job.state == "failed" and "stopped responding" in job.error
