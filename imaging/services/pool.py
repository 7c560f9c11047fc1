"""Worker processes for the CPU half of ingest (imaging.services.prepare).

Files are prepared in parallel, a few ahead of the thread that writes them to the database, and come back
in order. With OKAPI_INGEST_PROCESSES=1 (or if the pool breaks) everything runs in the calling thread.
"""

import atexit
import logging
import multiprocessing
import os
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from django.conf import settings

from imaging.services.prepare import PrepareConfig, Prepared, prepare_file

log = logging.getLogger("okapi.ingest")
_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None


def _get_pool() -> ProcessPoolExecutor | None:
    global _pool
    if settings.OKAPI_INGEST_PROCESSES <= 1 or multiprocessing.current_process().daemon:
        return None  # a daemonic process (a Celery prefork child) may not start children
    with _lock:
        if _pool is None:
            # spawn, not fork: the web process has threads (server, audit writer) a fork would copy mid-lock
            _pool = ProcessPoolExecutor(max_workers=settings.OKAPI_INGEST_PROCESSES,
                                        mp_context=multiprocessing.get_context("spawn"))
            atexit.register(_reset_pool)
        return _pool


def _warm() -> int:
    """Runs in a worker: importing the DICOM stack (pydicom, its codecs) is most of a cold worker's first file."""
    import imaging.dicom.deid  # noqa: F401
    import imaging.dicom.pixels  # noqa: F401

    return os.getpid()


def warm_up() -> None:
    """Start every worker process now, in the background, so that the first STOW-RS request does not wait
    a second or more for processes to spawn and import the DICOM stack. Called once by the web server."""
    pool = _get_pool()
    if pool is None:
        return
    workers = settings.OKAPI_INGEST_PROCESSES

    def run():
        try:
            # spawn starts workers on demand, one per task waiting: submit as many tasks as workers
            for future in [pool.submit(_warm) for _ in range(workers)]:
                future.result()
        except Exception:  # noqa: BLE001 - a broken pool is rebuilt by the first real file
            log.warning("warming the ingest process pool failed", exc_info=True)

    threading.Thread(target=run, name="okapi-ingest-warm-up", daemon=True).start()


def _reset_pool() -> None:
    global _pool
    with _lock:
        if _pool is not None:
            _pool.shutdown(wait=False, cancel_futures=True)
        _pool = None


def prepare_many(items: Iterable[tuple[str, str]], config: PrepareConfig) -> Iterator[Prepared]:
    """Prepare (path, name) items, in order; ``items`` may be a generator (a STOW body being read)."""
    pool = _get_pool()
    if pool is None:
        for path, name in items:
            yield prepare_file(path, name, config)
        return
    ahead = max(2, 2 * settings.OKAPI_INGEST_PROCESSES)
    pending: deque = deque()
    for path, name in items:
        try:
            future = pool.submit(prepare_file, path, name, config)
        except Exception:  # noqa: BLE001 - broken, shut down or refused: this file in this process
            _reset_pool()
            future = None
        pending.append((path, name, future))
        while len(pending) >= ahead:
            yield _result(*pending.popleft(), config)
    while pending:
        yield _result(*pending.popleft(), config)


def _result(path: str, name: str, future, config: PrepareConfig) -> Prepared:
    if future is None:
        return prepare_file(path, name, config)
    try:
        return future.result()
    except BrokenProcessPool:
        log.warning("the ingest process pool broke; preparing %s in this process", name)
        _reset_pool()
        return prepare_file(path, name, config)
