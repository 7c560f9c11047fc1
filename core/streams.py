"""Iterating in a helper thread, so that producing the next items overlaps with using the last ones."""

import queue
import threading
from collections.abc import Callable, Iterable, Iterator


def read_ahead(items: Iterable, *, depth: int, discard: Callable[[object], None]) -> Iterator:
    """``items`` in order, produced by a thread up to ``depth`` ahead of the consumer.

    STOW-RS reads and spools the next parts of a body this way while the request thread indexes the previous
    ones (waiting on the database), and ingest keeps the parsing processes busy while it writes a group. An
    exception from ``items`` is raised here, in order. If the consumer stops early, the thread is told to stop,
    and ``discard`` is called on every item it made that was never handed over (their temporary files)."""
    buffered: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        buffered.put(("item", item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                else:
                    discard(item)
                    return
            outcome = ("end", done)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            outcome = ("error", exc)
        while not stop.is_set():
            try:
                buffered.put(outcome, timeout=0.1)
                return
            except queue.Full:
                continue

    thread = threading.Thread(target=produce, name="okapi-stow-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = buffered.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        thread.join(timeout=30)
        while True:
            try:
                kind, value = buffered.get_nowait()
            except queue.Empty:
                break
            if kind == "item":
                discard(value)
