"""``/ws/projects/<id>``: live events of a campaign (reads, claims, consensus, adjudications) for the people
who oversee it. Readers are refused: even the fact of another reader's read is not theirs to follow."""

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from core.events import group_for

OVERSEE = {"lead", "adjudicator", "data_scientist"}


class ProjectConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        project_id = self.scope["url_route"]["kwargs"]["project_id"]
        roles = await database_sync_to_async(self._roles)(user, project_id)
        if not roles:
            await self.close(code=4404)
            return
        if not roles & OVERSEE:
            await self.close(code=4403)
            return
        self.group = group_for("project", project_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send_json({"type": "subscribed", "project": project_id})

    @staticmethod
    def _roles(user, project_id) -> set[str]:
        from annotation.selectors import project_roles

        return project_roles(user, project_id)

    async def disconnect(self, code):
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def okapi_event(self, message):
        await self.send_json(message["event"])
