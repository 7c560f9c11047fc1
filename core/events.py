"""Websocket events: sent from services, only after the transaction commits, through this one helper."""

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

log = logging.getLogger("okapi.events")


def group_for(kind: str, key) -> str:
    """Channel-layer group name for a subscribable thing, e.g. ("job", uuid)."""
    return f"{kind}.{key}".replace("-", "")[:99]


def send_event(group: str, event: dict) -> None:
    """Send at once (callers outside a transaction, e.g. job progress from a worker)."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, {"type": "okapi.event", "event": event})
    except Exception:  # a missing subscriber or a broken layer never fails the work that emitted the event
        log.warning("could not send event to %s", group, exc_info=True)


def send_event_on_commit(group: str, event: dict) -> None:
    """Send once the surrounding transaction commits, so nobody hears of a row that was rolled back."""
    transaction.on_commit(lambda: send_event(group, event))
