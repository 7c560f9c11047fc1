"""Websocket consumers: they only authenticate and subscribe; events come from services (core.events)."""

from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from core.auth import user_for_token
from core.events import group_for


class TokenAuthMiddleware:
    """Browsers cannot set Authorization on a websocket: accept ``?token=`` as well as the session cookie."""

    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        token = parse_qs(scope.get("query_string", b"").decode()).get("token", [None])[0]
        if token:
            user = await database_sync_to_async(user_for_token)(token)
            if user is not None:
                scope = dict(scope, user=user)
        return await self.inner(scope, receive, send)


class JobConsumer(AsyncJsonWebsocketConsumer):
    """``/ws/jobs/<id>``: live state and progress of one job its creator (or an admin) may see."""

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        job_id = self.scope["url_route"]["kwargs"]["job_id"]
        job = await database_sync_to_async(self._visible_job)(user, job_id)
        if job is None:
            await self.close(code=4404)
            return
        self.group = group_for("job", job_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send_json(job)

    @staticmethod
    def _visible_job(user, job_id):
        from core.errors import NotFound
        from core.jobs import job_event
        from core.selectors import get_job_for

        try:
            return job_event(get_job_for(user, job_id))
        except NotFound:
            return None

    async def disconnect(self, code):
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def okapi_event(self, message):
        await self.send_json(message["event"])
