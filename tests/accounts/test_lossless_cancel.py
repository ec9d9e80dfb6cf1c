"""A consumer ends even when one cancellation of a task talking to Redis is lost.

On Python 3.11 ``asyncio.wait_for`` (which redis-py uses for its socket writes) swallows
a cancellation that arrives as its inner awaitable completes (CPython gh-86296). That race
is a matter of one loop iteration and cannot be provoked on demand, so these tests stand
in for it with a coroutine that swallows the first cancellation it gets, and check that
``config.aio`` ends such tasks, and that the consumers built on it end: the whoami
consumer's channel-layer receive, and the sign-in listener of ``accounts.sockets``.
A whole-file run of tests/accounts/test_consumers.py used to hang in about one run in
three on exactly this (the refused-connection tests' teardown)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client

from config.aio import cancel_and_wait, lossless_cancel
from tests.factories import StudentFactory

pytestmark = [pytest.mark.timeout(60)]

ORIGIN = (b"origin", b"http://localhost")


async def _swallows_first_cancel(started: asyncio.Event, ended: list[str]) -> str:
    """Stands in for a task whose first cancellation 3.11's wait_for lost."""
    started.set()
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        pass  # lost, as wait_for loses it
    try:
        await asyncio.sleep(3600)
    finally:
        ended.append("ended")
    return "never"


async def test_a_single_cancel_is_lost_by_the_stand_in() -> None:
    # The stand-in must really behave like the bug, or the tests below prove nothing.
    started, ended = asyncio.Event(), list[str]()
    task = asyncio.ensure_future(_swallows_first_cancel(started, ended))
    await started.wait()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=1.0)
    assert not done and not ended
    task.cancel()
    await asyncio.wait({task}, timeout=1.0)
    assert task.cancelled() and ended == ["ended"]


async def test_cancel_and_wait_ends_a_task_that_lost_its_cancellation() -> None:
    started, ended = asyncio.Event(), list[str]()
    task = asyncio.ensure_future(_swallows_first_cancel(started, ended))
    await started.wait()
    await asyncio.wait_for(cancel_and_wait(task), 10)
    assert task.cancelled() and ended == ["ended"]


async def test_cancel_and_wait_retrieves_a_failure_without_raising_it() -> None:
    async def fails() -> None:
        raise ValueError("boom")

    task = asyncio.ensure_future(fails())
    await asyncio.sleep(0)
    await cancel_and_wait(task)
    assert isinstance(task.exception(), ValueError)


async def test_a_lossless_call_ends_with_its_caller() -> None:
    started, ended = asyncio.Event(), list[str]()
    caller = asyncio.ensure_future(lossless_cancel(_swallows_first_cancel)(started, ended))
    await started.wait()
    caller.cancel()  # once, as Channels' consumer loop cancels its receive
    await asyncio.wait({caller}, timeout=10)
    assert caller.cancelled() and ended == ["ended"]


async def test_a_lossless_call_returns_the_result() -> None:
    async def answer(x: int) -> int:
        await asyncio.sleep(0)
        return x * 2

    assert await lossless_cancel(answer)(21) == 42


@pytest.fixture
def _lossy_layer(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The real Redis channel layer whose ``receive`` loses its first cancellation."""
    from channels.layers import channel_layers, get_channel_layer

    channel_layers.backends.clear()
    layer: Any = get_channel_layer()
    real = layer.receive
    ended: list[str] = []

    async def receive(channel: str) -> Any:
        try:
            return await real(channel)
        except asyncio.CancelledError:
            pass  # lost
        try:
            return await real(channel)
        finally:
            ended.append(channel)

    monkeypatch.setattr(layer, "receive", receive)
    yield ended
    channel_layers.backends.clear()


async def test_a_refused_whoami_socket_ends_though_its_receive_lost_a_cancel(_lossy_layer: list[str]) -> None:
    from config.asgi import application

    communicator = WebsocketCommunicator(application, "/ws/whoami/", headers=[(b"host", b"localhost"), ORIGIN])
    connected, _ = await communicator.connect(timeout=10)
    assert not connected
    await communicator.send_input({"type": "websocket.disconnect", "code": 1000})
    await asyncio.wait_for(communicator.future, 10)  # the application instance ended
    assert len(_lossy_layer) == 1  # its channel receive really ended


def _cookie() -> tuple[bytes, bytes]:
    user: User = StudentFactory.create()
    client = Client()
    client.force_login(user)
    return (b"cookie", f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode())


@pytest.mark.django_db(transaction=True)
async def test_a_signed_in_socket_ends_its_listener_and_receive(
    _lossy_layer: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from accounts import sockets
    from config.asgi import application

    consumers: list[Any] = []
    real_watch = sockets.SignedInSocket.watch_sign_in

    async def watch(self: Any) -> None:
        consumers.append(self)
        await real_watch(self)

    monkeypatch.setattr(sockets.SignedInSocket, "watch_sign_in", watch)
    cookie = await sync_to_async(_cookie)()
    communicator = WebsocketCommunicator(application, "/ws/whoami/", headers=[(b"host", b"localhost"), ORIGIN, cookie])
    connected, _ = await communicator.connect(timeout=10)
    assert connected
    await communicator.receive_json_from(timeout=10)
    (consumer,) = consumers
    listener = consumer.sign_in_task
    assert listener is not None and not listener.done()
    await communicator.disconnect(timeout=10)
    await asyncio.wait_for(communicator.future, 10)
    assert listener.done() and consumer.sign_in_task is None
    # both receives (the consumer's channel and the listener's) lost a cancel, and ended
    assert len(_lossy_layer) == 2
