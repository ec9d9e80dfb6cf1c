"""All WebSocket routes; each app contributes its own ``routing.py``."""

from __future__ import annotations

from channels.generic.websocket import AsyncWebsocketConsumer
from django.urls import re_path

from accounts.routing import websocket_urlpatterns as accounts_ws
from labs.routing import websocket_urlpatterns as labs_ws


class NoSuchSocket(AsyncWebsocketConsumer):
    """Any path no route matches: refused with 4404. Without it Channels' router raises
    ValueError for each one, and daphne logs a traceback per request, which any visitor
    could repeat to flood the logs."""

    channel_layer_alias = "none"  # refuses at once: no channel layer to receive from

    async def connect(self) -> None:
        await self.close(code=4404)


websocket_urlpatterns = [*accounts_ws, *labs_ws, re_path(r"", NoSuchSocket.as_asgi())]
