"""Cancelling asyncio tasks on Python 3.11 (Debian 12's), where a cancellation can be lost.

On Python before 3.12, ``asyncio.wait_for`` swallows a cancellation that arrives in the
loop iteration in which its inner awaitable completes (CPython gh-86296; 3.12 rewrote
``wait_for`` on ``asyncio.timeout``). redis-py awaits its socket writes through
``wait_for``, so cancelling a task that is talking to Redis at that moment (a channel-layer
``receive`` connecting, a ``group_add``) leaves it running: ``task.cancel(); await task``
then waits for ever, and the task goes on popping from Redis for a consumer that is gone.
It was seen as sockets whose disconnect never finished (the test suite's teardown hung on
them); in daphne each would have kept an application instance and a Redis connection.

``cancel_and_wait`` cancels again until the task is done. ``lossless_cancel`` wraps an
async callable so that cancelling whoever awaits it ends it for sure: Channels' consumer
loop cancels its channel-layer ``receive`` once, and that one cancel must not be lost.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

# How long to wait for a cancelled task before cancelling it again.
RECANCEL_SECONDS = 0.5

P = ParamSpec("P")
T = TypeVar("T")


async def cancel_and_wait(task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` and return once it is done, cancelling it again whenever a
    cancellation was lost. Its outcome is retrieved, never raised (nor logged by asyncio
    as "never retrieved"). If the caller is cancelled meanwhile, ``task`` is still
    finished first and then the caller's ``CancelledError`` is raised."""
    caller_cancelled = False
    while not task.done():
        task.cancel()
        try:
            await asyncio.wait({task}, timeout=RECANCEL_SECONDS)
        except asyncio.CancelledError:
            caller_cancelled = True
    if not task.cancelled():
        task.exception()
    if caller_cancelled:
        raise asyncio.CancelledError


def lossless_cancel(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """``fn`` run in a task of its own: cancelling the caller cancels that task until it
    is done (``cancel_and_wait``) before the caller's ``CancelledError`` propagates."""

    @functools.wraps(fn)
    async def run(*args: P.args, **kwargs: P.kwargs) -> T:
        inner: asyncio.Future[T] = asyncio.ensure_future(fn(*args, **kwargs))
        try:
            # asyncio.wait, not `await inner`: a cancel of this task then cancels the wait
            # (which cannot lose it), not the inner task (which might).
            await asyncio.wait({inner})
        except asyncio.CancelledError:
            await cancel_and_wait(inner)
            raise
        return inner.result()

    return run


class LosslessChannelReceive:
    """Consumer mixin: Channels' consumer loop sets ``channel_receive`` (the layer's
    receive of the consumer's own channel) and cancels it once when the consumer ends;
    here that receive is wrapped by ``lossless_cancel``, so the consumer really ends.
    Consumers that need no channel layer should have none (``channel_layer_alias`` of
    an alias that is not configured, e.g. ``"none"``): then nothing is received at all."""

    _channel_receive: Any = None

    @property
    def channel_receive(self) -> Any:
        return self._channel_receive

    @channel_receive.setter
    def channel_receive(self, fn: Any) -> None:
        self._channel_receive = lossless_cancel(fn)
