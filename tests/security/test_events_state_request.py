"""Attacks on the events socket's state request (``{"type": "state"}``, issue #13).

The page asks for its session's state after a reconnect and while it waits for its
sandbox. A hostile student tries to make that answer about someone else's session:
by naming it in the request on their own socket, or by opening the other session's
socket and asking there. The answer is always the session the socket was granted
for, and a socket that was not granted never answers.
"""

from __future__ import annotations

from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator

from labs.consumers import CLOSE_NOT_FOUND
from tests.security.conftest import World, session_cookie


@pytest.fixture
def fresh_channel_layer() -> Any:
    # channels_redis binds its pools to one event loop; every async test has its own.
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


async def _events(user: Any, session_id: Any) -> WebsocketCommunicator:
    from config.asgi import application

    cookie = await database_sync_to_async(session_cookie)(user)
    headers = [(b"host", b"localhost"), (b"origin", b"http://localhost"), *cookie]
    return WebsocketCommunicator(application, f"/ws/labs/{session_id}/events/", headers=headers)


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_state_request_naming_another_session_answers_about_ones_own(
    world: World, fresh_channel_layer: None
) -> None:
    communicator = await _events(world.classmate, world.classmate_session.pk)
    connected, _ = await communicator.connect(timeout=20)
    assert connected
    assert (await communicator.receive_json_from(timeout=20))["session"] == str(world.classmate_session.pk)
    for request in (
        {"type": "state", "session": str(world.session.pk)},
        {"type": "state", "session_id": str(world.session.pk), "group": world.session.group_name},
    ):
        await communicator.send_json_to(request)
        state = await communicator.receive_json_from(timeout=20)
        assert state["session"] == str(world.classmate_session.pk)
        assert str(world.session.pk) not in str(state)
        # the interval between answered requests (LabEventsConsumer.STATE_INTERVAL)
        await communicator.receive_nothing(timeout=1.1)
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
@pytest.mark.parametrize("who", ["outsider", "classmate", "anonymous"])
async def test_no_state_of_someone_elses_session_on_its_socket(
    world: World, fresh_channel_layer: None, who: str
) -> None:
    communicator = await _events(world.user(who), world.session.pk)
    connected, _ = await communicator.connect(timeout=20)
    received: list[dict[str, Any]] = []
    if connected:
        first = await communicator.receive_output(timeout=20)
        received.append(first)
        if first.get("type") != "websocket.close":
            await communicator.send_json_to({"type": "state"})
            while not await communicator.receive_nothing(timeout=0.5):
                received.append(await communicator.receive_output(timeout=5))
    assert all("text" not in message for message in received), received
    if connected:
        assert received[0] == {"type": "websocket.close", "code": CLOSE_NOT_FOUND}
    await communicator.disconnect()
