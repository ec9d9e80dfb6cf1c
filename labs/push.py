"""Channel-layer sends from sync code: the services' pushes after commit.

In daphne a sync view's thread knows the server's event loop (asgiref's threadlocal), and
``async_to_sync`` runs the send there, on the layer's open Redis connections. A Celery
worker has no event loop: ``async_to_sync`` made a new one for every push, and
channels_redis, whose connections belong to a loop, opened a new Redis connection each
time. During a class of 50 starting at once (bench/classroom.py with py-spy), about half
of the provisioning workers' CPU went to those pushes (five progress updates per sandbox,
and the queue positions of everyone still waiting), and they run before a worker takes
its next sandbox. A worker process therefore sends on one loop of its own, in a daemon
thread, which keeps the layer's connections (``use_own_loop``, called by the workers'
``worker_init`` hooks; a forked pool process makes its own on first use).
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

SEND_TIMEOUT = 10.0

_lock = threading.Lock()
_enabled = False
_loop: asyncio.AbstractEventLoop | None = None
_loop_pid = 0


def use_own_loop() -> None:
    """Send on this process's own loop from now on (a Celery worker: no server loop)."""
    global _enabled
    _enabled = True


def _own_loop() -> asyncio.AbstractEventLoop:
    global _loop, _loop_pid
    with _lock:
        if _loop is None or _loop_pid != os.getpid():  # none yet, or the parent's (forked)
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="channel-layer-sends", daemon=True).start()
            _loop, _loop_pid = loop, os.getpid()
        return _loop


def group_send_many(messages: list[tuple[str, dict[str, Any]]]) -> None:
    """Send each ``(group, message)`` in order; raises what the layer raises."""
    layer = get_channel_layer()
    if layer is None or not messages:
        return

    async def send_all() -> None:
        for group, message in messages:
            await layer.group_send(group, message)

    if _enabled:
        asyncio.run_coroutine_threadsafe(send_all(), _own_loop()).result(SEND_TIMEOUT)
    else:
        async_to_sync(send_all)()


def group_send(group: str, message: dict[str, Any]) -> None:
    group_send_many([(group, message)])
