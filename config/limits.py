"""Refuse oversized request bodies before Django spools them to disk.

Django's ASGI handler reads a whole body into a temporary file before a view runs; a body over
OKAPI_MAX_UPLOAD_BYTES is refused here with 413 as soon as its Content-Length (or, for a chunked body, its
running total) says so, and whatever arrived is dropped.
"""

import json

from django.conf import settings


def _too_large_body(limit: int) -> bytes:
    return json.dumps({
        "code": "too_large",
        "message": f"the request body is larger than the limit of {limit} bytes (OKAPI_MAX_UPLOAD_BYTES)",
        "detail": {"limit": limit},
    }).encode()


class BodySizeLimitMiddleware:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in {"POST", "PUT", "PATCH"}:
            return await self.app(scope, receive, send)
        limit = settings.OKAPI_MAX_UPLOAD_BYTES
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await self._refuse(send, limit)
                return None
        state = {"received": 0, "over": False, "started": False}

        async def limited_receive():
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > limit:
                    state["over"] = True
                    return {"type": "http.disconnect"}
            return message

        async def tracking_send(message):
            if state["over"]:
                return
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        await self.app(scope, limited_receive, tracking_send)
        if state["over"] and not state["started"]:
            await self._refuse(send, limit)
        return None

    @staticmethod
    async def _refuse(send, limit):
        body = _too_large_body(limit)
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
