"""A lab page reaches ``ready`` even when the ``ready`` push is lost (issue #13).

In a class of 50 one page waited 94 s for a sandbox that was ready in seconds: its
events socket missed the one ``ready`` push. The pushes are now a shortcut: the
consumer sends the session's state on every (re)connect and on ``{"type": "state"}``,
which the page (static/js/lab.js) asks every few seconds while it waits.

Provisioning runs for real (labs.services.lab_session_provision, its transaction and
its pushes after commit) on a stand-in sandbox backend: the sandbox is not what is
tested here, the way its state reaches the page is.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import channel_layers
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from labs import consumers, push, sandboxes, services
from labs.models import LabSession
from labs.routing import websocket_urlpatterns
from tests.factories import LabFactory, StudentFactory


class StandInSandboxes:
    """Answers the calls lab_session_provision makes; builds nothing."""

    def ensure_image(self, image: str) -> None:
        pass

    def find(self, *, session: str) -> str | None:
        return None

    def create(self, spec: dict[str, Any], on_wait: Callable[[str], None] | None = None) -> str:
        return "sb-standin"

    def token(self, sandbox_id: str, role: str, lifetime: float) -> str:
        return f"token-{role}"


@pytest.fixture
def fresh_channel_layer() -> Any:
    # channels_redis binds its pools to one event loop; every async test has its own.
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.fixture
def lost_ready_push(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The channel layer fails once: on the push that says ``ready``. Returns what was lost."""
    lost: list[dict[str, Any]] = []
    real = push.group_send

    def flaky(group: str, message: dict[str, Any]) -> None:
        if message.get("type") == "lab.status" and message["state"]["status"] == "ready" and not lost:
            lost.append(message)
            raise ConnectionError("Timeout reading from redis.sock")  # what channels_redis raised
        real(group, message)

    monkeypatch.setattr(push, "group_send", flaky)
    monkeypatch.setattr(sandboxes, "backend_for", lambda name: StandInSandboxes())
    return lost


def _starting() -> LabSession:
    now = timezone.now()
    return LabSession.objects.create(
        user=StudentFactory.create(), lab=LabFactory.create(), created_at=now, expires_at=now + timedelta(hours=2)
    )


@pytest.fixture
async def events(fresh_channel_layer: None) -> AsyncIterator[Any]:
    opened: list[WebsocketCommunicator] = []

    async def open_events(session: LabSession) -> WebsocketCommunicator:
        communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws/labs/{session.pk}/events/")
        communicator.scope["user"] = session.user
        connected, _ = await communicator.connect(timeout=20)
        assert connected
        opened.append(communicator)
        return communicator

    yield open_events
    for communicator in opened:
        await communicator.disconnect()


async def _statuses_until_quiet(communicator: WebsocketCommunicator) -> list[str]:
    seen = []
    while not await communicator.receive_nothing(timeout=1):
        message = await communicator.receive_json_from(timeout=5)
        if message.get("type") == "status":
            seen.append(message["status"])
    return seen


@pytest.mark.django_db(transaction=True)
async def test_a_lost_ready_push_costs_one_state_request(events: Any, lost_ready_push: list[Any]) -> None:
    session = await database_sync_to_async(_starting)()
    page = await events(session)
    assert (await page.receive_json_from(timeout=20))["status"] == "starting"

    ready = await database_sync_to_async(services.lab_session_provision)(session_id=str(session.pk))
    assert ready is not None and ready.status == LabSession.Status.READY
    assert len(lost_ready_push) == 1  # the layer did fail on the ready push
    # The progress pushes arrived; the ready one never will.
    assert "ready" not in await _statuses_until_quiet(page)

    await page.send_json_to({"type": "state"})
    state = await page.receive_json_from(timeout=20)
    assert state["type"] == "status" and state["session"] == str(session.pk)
    assert state["status"] == "ready" and state["progress"][-1]["stage"] == "ready"


@pytest.mark.django_db(transaction=True)
async def test_a_ready_push_sent_before_the_socket_subscribed_is_not_needed(
    events: Any, lost_ready_push: list[Any]
) -> None:
    """The page (re)connects after the push went out: its first message is the state."""
    session = await database_sync_to_async(_starting)()
    await database_sync_to_async(services.lab_session_provision)(session_id=str(session.pk))
    page = await events(session)
    first = await page.receive_json_from(timeout=20)
    assert first["type"] == "status" and first["status"] == "ready"


@pytest.mark.django_db(transaction=True)
async def test_state_requests_are_answered_at_most_once_per_interval(
    events: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(consumers.LabEventsConsumer, "STATE_INTERVAL", 2.0)
    session = await database_sync_to_async(_starting)()
    page = await events(session)
    await page.receive_json_from(timeout=20)
    for _ in range(20):
        await page.send_json_to({"type": "state"})
    assert (await page.receive_json_from(timeout=20))["status"] == "starting"
    assert await page.receive_nothing(timeout=1)  # the other 19 within the interval: no answer
    await asyncio.sleep(1.2)
    await page.send_json_to({"type": "state"})
    assert (await page.receive_json_from(timeout=20))["status"] == "starting"


@pytest.mark.django_db(transaction=True)
async def test_a_burst_of_pushes_to_one_daphne_process_drops_no_ready(fresh_channel_layer: None) -> None:
    """Every consumer of a daphne process reads from one Redis key, which the layer's
    ``capacity`` bounds (config/settings.py: CHANNEL_LAYER_CAPACITY); past it group_send
    drops messages without a word. A class of 50 starting at once sends a queue place to
    everyone waiting at every claim: 50 pages, one process, and the ready that follows."""
    layer = channel_layers["default"]
    pages = [await layer.new_channel() for _ in range(50)]  # process-local: one Redis key
    for number, channel in enumerate(pages):
        await layer.group_add(f"lab-page-{number}", channel)
    for claimed in range(10):  # ten claims before daphne reads anything (a loaded loop)
        for number in range(claimed + 1, 50):
            await layer.group_send(f"lab-page-{number}", {"type": "lab.queue", "queue": {"ahead": number - claimed}})
    await layer.group_send("lab-page-49", {"type": "lab.status", "state": {"status": "ready"}})

    last = pages[49]
    kinds = []
    while True:
        message = await asyncio.wait_for(layer.receive(last), timeout=10)
        kinds.append(message["type"])
        if message["type"] == "lab.status":
            break
    assert kinds == ["lab.queue"] * 10 + ["lab.status"]
    for number, channel in enumerate(pages):
        await layer.group_discard(f"lab-page-{number}", channel)
    await layer.flush()
