"""Websocket events: sent from services, only after the transaction commits, through this one helper."""

import asyncio
import atexit
import logging
import os
import threading

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

log = logging.getLogger("okapi.events")


def group_for(kind: str, key) -> str:
    """Channel-layer group name for a subscribable thing, e.g. ("job", uuid)."""
    return f"{kind}.{key}".replace("-", "")[:99]


class _Sender:
    """One long-lived event loop, in a thread of its own, that sends every event of this process in order.

    ``async_to_sync`` from a request thread would start a new loop per call, and channels-redis a new Redis
    connection per loop: about 30 ms per event, inside the request. Here the request only queues the event.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue | None = None
        self._pid = None

    def _start(self) -> None:
        ready = threading.Event()

        def run():
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop, self._queue = loop, asyncio.Queue()
            ready.set()
            loop.run_until_complete(self._drain())

        threading.Thread(target=run, name="okapi-events", daemon=True).start()
        ready.wait()
        self._pid = os.getpid()
        atexit.register(self.flush)

    async def _drain(self) -> None:
        # A layer object of its own: channels-redis connection pools belong to the loop that made them, and the
        # process's shared layer also serves the web server's consumers on the server's loop.
        from channels.layers import DEFAULT_CHANNEL_LAYER, channel_layers

        layer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
        while True:
            group, event, done = await self._queue.get()
            try:
                if group is not None:
                    await layer.group_send(group, {"type": "okapi.event", "event": event})
            except Exception:  # a broken layer never fails the work that emitted the event
                log.warning("could not send event to %s", group, exc_info=True)
            finally:
                if done is not None:
                    done.set()

    def put(self, group: str | None, event: dict | None, done: threading.Event | None = None) -> None:
        with self._lock:
            if self._loop is None or self._pid != os.getpid():  # first use, or a forked child
                self._start()
        self._loop.call_soon_threadsafe(self._queue.put_nowait, (group, event, done))

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every event queued so far is sent (tests, process exit)."""
        if self._loop is None or self._pid != os.getpid():
            return True
        done = threading.Event()
        self.put(None, None, done)
        return done.wait(timeout)


_sender = _Sender()


def send_event(group: str, event: dict) -> None:
    """Send soon, in order, without waiting (callers outside a transaction, e.g. job progress from a
    worker). The in-memory channel layer (no Redis) belongs to the server's own loop: sent through it."""
    layer = get_channel_layer()
    if layer is None:
        return
    if not _shared_layer(layer):
        try:
            async_to_sync(layer.group_send)(group, {"type": "okapi.event", "event": event})
        except Exception:  # a missing subscriber or a broken layer never fails the work that emitted the event
            log.warning("could not send event to %s", group, exc_info=True)
        return
    _sender.put(group, event)


def flush_events(timeout: float = 5.0) -> bool:
    """Block until the events sent so far have left this process."""
    return _sender.flush(timeout)


def _shared_layer(layer) -> bool:
    return type(layer).__module__.startswith("channels_redis")


def send_event_on_commit(group: str, event: dict) -> None:
    """Send once the surrounding transaction commits, so nobody hears of a row that was rolled back."""
    transaction.on_commit(lambda: send_event(group, event))
