"""Shared fixtures: real PostgreSQL (DATABASE_URL), a real ASGI server, users with tokens, the shared data."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DICOM_DIR = SHARED_DATA / "dicom"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(autouse=True)
def _fresh_frame_sources():
    """Each test starts from an emptied database, which deletes instances: forget their cached frame sources."""
    from core import audit
    from core.auth import forget_cached_auth
    from imaging.selectors import forget_frame_sources

    with audit._buffer.lock:  # deferred events of an earlier test name users its database no longer has
        audit._buffer.rows.clear()
    forget_frame_sources()
    forget_cached_auth()
    yield
    forget_frame_sources()
    forget_cached_auth()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not DICOM_DIR.is_dir():
        pytest.fail(f"the shared real data is missing: expected {DICOM_DIR}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def dicom_files(shared_data) -> list[Path]:
    """Every DICOM file of ../shared/data/dicom."""
    return sorted(p for p in (shared_data / "dicom").rglob("*") if p.is_file() and not p.name.startswith("."))


@pytest.fixture(scope="session")
def okapi_server(django_db_setup, django_db_blocker):
    """Okapi's ASGI application served by uvicorn on a free loopback port (real HTTP), for the whole session.

    Tests that use it need the ``transactional_db`` fixture, so that the rows they create are committed and
    visible to the server's threads.
    """
    import uvicorn

    port = _free_port()
    config = uvicorn.Config("config.asgi:application", host="127.0.0.1", port=port, lifespan="off",
                            log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
    # The server's worker threads may still hold connections; the test database cannot be dropped while they do.
    from django.db import connection

    if connection.vendor == "postgresql":
        with django_db_blocker.unblock(), connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE datname = current_database() AND pid <> pg_backend_pid()")


@pytest.fixture
def make_user(db):
    from core.auth import user_create

    counter = {"n": 0}

    def make(role: str = "radiologist", username: str | None = None, password: str = "s3cret-pass"):
        counter["n"] += 1
        return user_create(username=username or f"{role}{counter['n']}", password=password, role=role)

    return make


@pytest.fixture
def token_for(db):
    from core.auth import token_create

    def make(user) -> str:
        return token_create(user=user)[1]

    return make


@pytest.fixture
def admin_user(make_user):
    return make_user("admin", "admin")


@pytest.fixture
def dicomweb(okapi_server, admin_user, token_for):
    """A dicomweb-client for the live server, authenticated as an admin."""
    from dicomweb_client.api import DICOMwebClient

    return DICOMwebClient(f"{okapi_server}/dicomweb", headers={"Authorization": f"Bearer {token_for(admin_user)}"})


def worker_env(settings) -> dict:
    """The environment of a process on this test's database, data folder and Redis (workers, helpers)."""
    from django.db import connection

    db = connection.settings_dict
    return os.environ | {"DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
                         "OKAPI_DATA_DIR": str(settings.DATA_DIR),
                         "OKAPI_IMPORT_ROOTS": ",".join(settings.OKAPI_IMPORT_ROOTS)}


@pytest.fixture
def start_worker(settings):
    """Start `okapi worker --queues Q` processes on the settings as they are when started, each its own process
    group (a test may kill it, pool child included, with ``os.killpg``); whatever still runs is stopped after."""
    if not settings.REDIS_URL:
        pytest.skip("needs REDIS_URL: a real worker on a real broker")
    procs = []

    def start(queues: str):
        proc = subprocess.Popen([sys.executable, "-m", "config.cli", "worker", "--queues", queues,
                                 "--concurrency", "1"], env=worker_env(settings), start_new_session=True)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
