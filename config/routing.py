"""All WebSocket routes; each app contributes its own ``routing.py``."""

from __future__ import annotations

from accounts.routing import websocket_urlpatterns as accounts_ws
from labs.routing import websocket_urlpatterns as labs_ws

websocket_urlpatterns = [*accounts_ws, *labs_ws]
