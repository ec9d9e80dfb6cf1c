"""The provisioning queue: grading and provisioning never share a Celery queue,
and a session waiting for a provisioning worker knows its place and an honest
estimate (labs/selectors.py), pushed when it changes (labs/services.py) and at
most once a second to the page (LabEventsConsumer)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from config.celery import app
from labs import consumers, selectors, services
from labs.models import LabSession
from labs.routing import websocket_urlpatterns
from tests.factories import LabFactory, StudentFactory


@pytest.fixture(autouse=True)
def own_channel_layer(settings: Any) -> None:
    """These tests count the exact messages a page gets. The suite's real Celery worker, if an
    earlier test started it, pushes the places of every session waiting in the shared test
    database (labs/queuepush.py) on the run's channel layer: a prefix of this test's own keeps
    those real but foreign pushes out of its count."""
    import copy

    layers = copy.deepcopy(settings.CHANNEL_LAYERS)
    layers["default"]["CONFIG"]["prefix"] = f"test-{uuid.uuid4().hex}"
    settings.CHANNEL_LAYERS = layers


def starting(created_at: datetime, **fields: Any) -> LabSession:
    """A starting session of a fresh student, started at ``created_at``."""
    return LabSession.objects.create(
        user=StudentFactory.create(),
        lab=LabFactory.create(),
        created_at=created_at,
        expires_at=created_at + timedelta(hours=2),
        **fields,
    )


def built(seconds: float, *, waited: float = 0.0, ready_at: datetime | None = None) -> LabSession:
    """A ready session whose sandbox took ``seconds`` to build after ``waited`` seconds in the queue."""
    ready_at = ready_at or timezone.now()
    began = ready_at - timedelta(seconds=seconds)
    session = starting(began - timedelta(seconds=waited))
    session.status = LabSession.Status.READY
    session.ready_at = ready_at
    session.progress = [
        {"stage": "queued", "message": "Waiting", "at": (began - timedelta(seconds=waited)).isoformat()},
        {"stage": "image", "message": "Preparing", "at": began.isoformat()},
        {"stage": "ready", "message": "Ready", "at": ready_at.isoformat()},
    ]
    session.save(update_fields=["status", "ready_at", "progress"])
    return session


# --- queues -------------------------------------------------------------------------------


def test_provisioning_and_grading_are_routed_to_queues_of_their_own(settings: Any) -> None:
    def queue(task: str) -> str:
        return str(app.amqp.router.route({}, task)["queue"].name)

    assert queue("labs.tasks.provision_sandbox") == "provisioning"
    assert queue("labs.tasks.release_sandbox") == "provisioning"
    assert queue("grader.tasks.grade") == settings.GRADER_QUEUE == "grading"
    assert queue("labs.tasks.cull_idle_sessions") == "celery"


# --- place and estimate ---------------------------------------------------------------------


@pytest.mark.django_db
def test_a_waiting_session_counts_the_sessions_started_before_it() -> None:
    now = timezone.now()
    first, second, third = (starting(now - timedelta(seconds=s)) for s in (30, 20, 10))
    assert services.session_state(first)["queue"]["ahead"] == 0
    assert services.session_state(second)["queue"]["ahead"] == 1
    assert services.session_state(third)["queue"]["ahead"] == 2


@pytest.mark.django_db
def test_sessions_a_worker_holds_or_that_ended_are_not_ahead() -> None:
    now = timezone.now()
    claimed = starting(now - timedelta(seconds=50), provision_lease_until=now + timedelta(minutes=10))
    lost = starting(now - timedelta(seconds=40), provision_lease_until=now - timedelta(seconds=1))
    ready = starting(now - timedelta(seconds=30), status=LabSession.Status.READY)
    failed = starting(now - timedelta(seconds=20), status=LabSession.Status.FAILED)
    mine = starting(now - timedelta(seconds=10))
    # Only the session whose worker's lease ran out waits (again) before mine.
    assert services.session_state(mine)["queue"]["ahead"] == 1
    assert services.session_state(lost)["queue"]["ahead"] == 0
    # Being built, or not starting: no place in the queue at all.
    for session in (claimed, ready, failed):
        assert services.session_state(session)["queue"] is None


@pytest.mark.django_db
def test_no_estimate_without_a_recent_build() -> None:
    assert services.session_state(starting(timezone.now()))["queue"] == {"ahead": 0, "estimate_seconds": None}


@pytest.mark.django_db
def test_the_estimate_is_the_median_build_in_waves_of_the_provisioning_slots(settings: Any) -> None:
    settings.CELERY_PROVISIONING_CONCURRENCY = 2
    # Long waits in the queue (a class's herd) do not count as build time.
    for seconds in (8, 10, 60):
        built(seconds, waited=300)
    now = timezone.now()
    waiting = [starting(now + timedelta(seconds=i)) for i in range(4)]
    estimates = [services.session_state(s)["queue"]["estimate_seconds"] for s in waiting]
    # Next in line: its own build (the median, 10 s); one or two ahead: the wave of
    # builds before it, then its own; three ahead: two waves first.
    assert estimates == [10, 20, 20, 30]


@pytest.mark.django_db
def test_the_estimate_goes_by_the_last_twenty_builds_only() -> None:
    now = timezone.now()
    for i in range(20):
        built(5, ready_at=now - timedelta(minutes=1, seconds=i))
    for i in range(5):
        built(500, ready_at=now - timedelta(hours=1, seconds=i))  # long ago: not among the last 20
    assert sorted(selectors.recent_build_seconds()) == [5.0] * 20
    assert selectors.wait_estimate(ahead=0, builds=selectors.recent_build_seconds(), slots=4) == 5


# --- pushes -------------------------------------------------------------------------------------


class Listener:
    """A channel subscribed to the groups of some lab sessions, on the real channel layer."""

    def __init__(self, *sessions: LabSession) -> None:
        self.layer = get_channel_layer()
        self.channels: dict[uuid.UUID, str] = {}
        for session in sessions:
            channel = async_to_sync(self.layer.new_channel)()
            async_to_sync(self.layer.group_add)(session.group_name, channel)
            self.channels[session.pk] = channel

    def receive(self, session: LabSession, timeout: float = 10) -> dict[str, Any] | None:
        async def get() -> dict[str, Any] | None:
            try:
                return await asyncio.wait_for(self.layer.receive(self.channels[session.pk]), timeout)
            except TimeoutError:
                return None

        return async_to_sync(get)()

    def queue_events(self, session: LabSession) -> list[dict[str, Any]]:
        """The lab.queue events already delivered to ``session``'s group."""
        events = []
        while (message := self.receive(session, timeout=0.2)) is not None:
            if message["type"] == "lab.queue":
                events.append(message["queue"])
        return events


@pytest.mark.django_db
def test_a_claim_tells_the_waiting_sessions_their_places(django_capture_on_commit_callbacks) -> None:
    now = timezone.now()
    first, second, third = (starting(now - timedelta(seconds=s)) for s in (30, 20, 10))
    listener = Listener(first, third)
    with django_capture_on_commit_callbacks(execute=True):
        # The claim step of lab_session_provision: a worker takes the second session.
        assert services._claim_for_provisioning(str(second.pk)) is not None
    # One batch: every session still waiting, its place (labs/queuepush.py).
    assert listener.queue_events(first) == [{"ahead": 0, "estimate_seconds": None}]
    assert listener.queue_events(third) == [{"ahead": 1, "estimate_seconds": None}]


@pytest.mark.django_db
def test_stopping_a_waiting_session_moves_up_those_behind_it(django_capture_on_commit_callbacks) -> None:
    now = timezone.now()
    first, second = starting(now - timedelta(seconds=20)), starting(now - timedelta(seconds=10))
    listener = Listener(second)
    with django_capture_on_commit_callbacks(execute=True):
        services.lab_session_stop(session=first)
    assert listener.queue_events(second) == [{"ahead": 0, "estimate_seconds": None}]


# --- the page's events socket ---------------------------------------------------------------------


# Short enough that no test leaves the consumer idle for long: channels_redis' blocking read
# then ends in a redis TimeoutError when the communicator disconnects (seen with redis-py 8
# under pytest-asyncio, whatever the consumer does).
INTERVAL = 2.0


async def _events(user: Any, session: LabSession) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws/labs/{session.pk}/events/")
    communicator.scope["user"] = user
    connected, _ = await communicator.connect(timeout=20)
    assert connected
    return communicator


@pytest.mark.django_db(transaction=True)
async def test_the_page_gets_its_place_first_then_at_most_one_update_per_interval(monkeypatch: Any) -> None:
    monkeypatch.setattr(consumers.LabEventsConsumer, "QUEUE_INTERVAL", INTERVAL)
    session = await database_sync_to_async(starting)(timezone.now())
    communicator = await _events(session.user, session)
    first = await communicator.receive_json_from(timeout=20)
    assert first["type"] == "status" and first["queue"] == {"ahead": 0, "estimate_seconds": None}

    layer = get_channel_layer()
    for ahead in (5, 4, 3):
        await layer.group_send(session.group_name, {"type": "lab.queue", "queue": {"ahead": ahead}})
    # The first update at once; the two that came within the interval as one, the latest.
    assert (await communicator.receive_json_from(timeout=20))["queue"] == {"ahead": 5}
    assert (await communicator.receive_json_from(timeout=20))["queue"] == {"ahead": 3}
    assert await communicator.receive_nothing(timeout=1)
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_held_back_place_is_dropped_once_a_worker_took_the_session(monkeypatch: Any) -> None:
    monkeypatch.setattr(consumers.LabEventsConsumer, "QUEUE_INTERVAL", INTERVAL)
    session = await database_sync_to_async(starting)(timezone.now())
    communicator = await _events(session.user, session)
    await communicator.receive_json_from(timeout=20)

    layer = get_channel_layer()
    await layer.group_send(session.group_name, {"type": "lab.queue", "queue": {"ahead": 2}})
    await layer.group_send(session.group_name, {"type": "lab.queue", "queue": {"ahead": 1}})  # held back
    claimed = {"type": "status", "status": "starting", "queue": None}
    await layer.group_send(session.group_name, {"type": "lab.status", "state": claimed})
    assert (await communicator.receive_json_from(timeout=20))["queue"] == {"ahead": 2}
    assert await communicator.receive_json_from(timeout=20) == claimed
    # Past the interval: the held-back place never comes.
    assert await communicator.receive_nothing(timeout=INTERVAL + 0.5)
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_an_outsider_gets_no_queue_of_someone_else() -> None:
    session = await database_sync_to_async(starting)(timezone.now())
    outsider = await database_sync_to_async(StudentFactory.create)()
    communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws/labs/{session.pk}/events/")
    communicator.scope["user"] = outsider
    await communicator.connect(timeout=20)
    message = await communicator.receive_output(timeout=20)
    assert message["type"] == "websocket.close" and message["code"] == consumers.CLOSE_NOT_FOUND
