"""``/ws/whoami/``: the smallest authenticated WebSocket, proving the wiring.

Anonymous connections are closed before the handshake completes (code 4401;
over HTTP, daphne answers 403). An authenticated user gets one ``whoami``
message, a ``pong`` for every ``ping``, and whatever ``accounts.services.
user_notify`` pushes to the user's channel-layer group, as ``notify``.
"""

from __future__ import annotations

import json
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from accounts.roles import roles_of
from accounts.services import user_group
from accounts.sockets import SignedInSocket

CLOSE_UNAUTHENTICATED = 4401


def _roles_sync(user: Any) -> list[str]:
    return sorted(roles_of(user))


async def _roles(user: Any) -> list[str]:
    roles: list[str] = await database_sync_to_async(_roles_sync)(user)
    return roles


class WhoAmIConsumer(SignedInSocket, AsyncJsonWebsocketConsumer):
    group: str | None = None

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.group = user_group(user.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.watch_sign_in()
        await self.send_json({"type": "whoami", "username": user.get_username(), "roles": await _roles(user)})

    async def disconnect(self, code: int) -> None:
        await self.unwatch_sign_in()
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if not await self.signed_in():
            return
        # Bad input gets an error message, not a crashed consumer.
        if text_data is None:
            await self.send_json({"type": "error", "error": "send JSON text frames"})
            return
        try:
            content = json.loads(text_data)
        except ValueError:
            await self.send_json({"type": "error", "error": "not JSON"})
            return
        await self.receive_json(content)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong"})
        else:
            await self.send_json({"type": "error", "error": "unknown message type; try ping"})

    async def user_notify(self, event: dict[str, Any]) -> None:
        """Channel-layer event ``user.notify`` (sent by services.user_notify)."""
        await self.send_json({**event.get("payload", {}), "type": "notify"})
