"""``/ws/whoami/`` through the real ASGI application and the real Redis
channel layer (the session fixture in tests/conftest.py starts Redis)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.test import Client

from accounts.consumers import CLOSE_UNAUTHENTICATED
from accounts.services import user_group, user_notify
from config.asgi import application
from tests.factories import InstructorFactory, StudentFactory

# The consumer reads the database from another thread: the rows must be committed.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]

PATH = "/ws/whoami/"
ORIGIN = (b"origin", b"http://localhost")


def _session_cookie(user: User) -> tuple[bytes, bytes]:
    client = Client()
    client.force_login(user)
    session = client.cookies[settings.SESSION_COOKIE_NAME].value
    return (b"cookie", f"{settings.SESSION_COOKIE_NAME}={session}".encode())


@pytest.fixture
def student() -> User:
    user: User = StudentFactory.create(username="ws-student")
    return user


@pytest.fixture
def instructor() -> User:
    user: User = InstructorFactory.create(username="ws-instructor")
    return user


@pytest.fixture(autouse=True)
def _fresh_channel_layer() -> Iterator[None]:
    # One layer per test: channels_redis binds its pools to an event loop, and
    # every async test runs in a loop of its own.
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


async def _connect(*headers: tuple[bytes, bytes]) -> tuple[WebsocketCommunicator, bool, Any]:
    # A browser sends Host too: the origin check compares the Origin with it.
    communicator = WebsocketCommunicator(application, PATH, headers=[(b"host", b"localhost"), *headers])
    connected, code = await communicator.connect(timeout=10)
    return communicator, connected, code


async def test_anonymous_connection_is_refused() -> None:
    _, connected, code = await _connect(ORIGIN)
    assert not connected
    assert code == CLOSE_UNAUTHENTICATED


async def test_a_bad_session_cookie_is_anonymous() -> None:
    _, connected, code = await _connect(ORIGIN, (b"cookie", b"sessionid=forged"))
    assert not connected
    assert code == CLOSE_UNAUTHENTICATED


async def test_foreign_origin_is_refused(student: User) -> None:
    cookie = await sync_to_async(_session_cookie)(student)
    _, connected, _ = await _connect((b"origin", b"http://evil.example"), cookie)
    assert not connected


async def test_authenticated_user_gets_whoami_and_pong(student: User) -> None:
    cookie = await sync_to_async(_session_cookie)(student)
    communicator, connected, _ = await _connect(ORIGIN, cookie)
    assert connected
    try:
        assert await communicator.receive_json_from(timeout=10) == {
            "type": "whoami",
            "username": "ws-student",
            "roles": ["student"],
        }
        await communicator.send_json_to({"type": "ping"})
        assert await communicator.receive_json_from(timeout=10) == {"type": "pong"}
        await communicator.send_json_to({"type": "dance"})
        reply = await communicator.receive_json_from(timeout=10)
        assert reply["type"] == "error"
        await communicator.send_to(text_data="not json")
        assert (await communicator.receive_json_from(timeout=10))["type"] == "error"
        # Still alive after bad input.
        await communicator.send_json_to({"type": "ping"})
        assert await communicator.receive_json_from(timeout=10) == {"type": "pong"}
    finally:
        await communicator.disconnect()


async def test_instructor_roles_are_reported(instructor: User) -> None:
    cookie = await sync_to_async(_session_cookie)(instructor)
    communicator, connected, _ = await _connect(ORIGIN, cookie)
    assert connected
    try:
        message = await communicator.receive_json_from(timeout=10)
        assert message["username"] == "ws-instructor"
        assert message["roles"] == ["instructor"]
    finally:
        await communicator.disconnect()


async def test_group_broadcast_reaches_only_the_users_sockets(student: User, instructor: User) -> None:
    student_ws, ok1, _ = await _connect(ORIGIN, await sync_to_async(_session_cookie)(student))
    second_ws, ok2, _ = await _connect(ORIGIN, await sync_to_async(_session_cookie)(student))
    other_ws, ok3, _ = await _connect(ORIGIN, await sync_to_async(_session_cookie)(instructor))
    assert ok1 and ok2 and ok3
    try:
        for ws in (student_ws, second_ws, other_ws):
            assert (await ws.receive_json_from(timeout=10))["type"] == "whoami"

        # Through the channel layer directly ...
        layer = get_channel_layer()
        assert layer is not None
        await layer.group_send(user_group(student.pk), {"type": "user.notify", "payload": {"text": "direct"}})
        for ws in (student_ws, second_ws):
            assert await ws.receive_json_from(timeout=10) == {"type": "notify", "text": "direct"}

        # ... and through the service, which sends only after the commit.
        def notify_in_a_transaction() -> None:
            with transaction.atomic():
                user_notify(user_id=student.pk, payload={"text": "committed", "type": "ignored"})

        await sync_to_async(notify_in_a_transaction)()
        for ws in (student_ws, second_ws):
            assert await ws.receive_json_from(timeout=10) == {"type": "notify", "text": "committed"}

        assert await other_ws.receive_nothing(timeout=0.5)
    finally:
        for ws in (student_ws, second_ws, other_ws):
            await ws.disconnect()


async def test_a_rolled_back_notification_is_never_sent(student: User) -> None:
    ws, connected, _ = await _connect(ORIGIN, await sync_to_async(_session_cookie)(student))
    assert connected
    try:
        assert (await ws.receive_json_from(timeout=10))["type"] == "whoami"

        def notify_then_roll_back() -> None:
            with pytest.raises(RuntimeError), transaction.atomic():
                user_notify(user_id=student.pk, payload={"text": "lost"})
                raise RuntimeError("roll back")

        await sync_to_async(notify_then_roll_back)()
        assert await ws.receive_nothing(timeout=0.5)
    finally:
        await ws.disconnect()


async def test_disconnected_socket_leaves_the_group(student: User) -> None:
    ws, connected, _ = await _connect(ORIGIN, await sync_to_async(_session_cookie)(student))
    assert connected
    await ws.receive_json_from(timeout=10)
    group = user_group(student.pk)
    assert await sync_to_async(_group_members)(group) == 1
    await ws.disconnect()
    assert await sync_to_async(_group_members)(group) == 0


def _group_members(group: str) -> int:
    import redis

    layer = get_channel_layer()
    key = f"{layer.prefix}:group:{group}".encode()
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        return int(client.zcard(key))
    finally:
        client.close()
