"""A WebSocket to a path no route serves is refused quietly (4404), never an exception per
request that fills daphne's log with tracebacks."""

from __future__ import annotations

import pytest
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from config.routing import websocket_urlpatterns

pytestmark = pytest.mark.django_db


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "path",
    ["/ws/nope/", "/ws/labs/1/events/extra", "/ws/labs/..%2f..%2fsandboxes/", "/", "/ws/labs/%00/terminal/"],
)
async def test_an_unknown_socket_path_is_refused_with_4404(path: str) -> None:
    communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), path)
    connected, code = await communicator.connect()
    assert connected is False
    assert code == 4404
    await communicator.disconnect()


@pytest.mark.asyncio
async def test_a_known_path_still_reaches_its_consumer() -> None:
    """The catch-all is last: a real route still answers as its consumer does (the whoami
    consumer closes an anonymous visitor with its own 4401, not the catch-all's 4404)."""
    communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), "/ws/whoami/")
    connected, code = await communicator.connect()
    assert connected is False
    assert code == 4401
    await communicator.disconnect()
