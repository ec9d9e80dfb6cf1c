"""Calling runtimed's event loop from the worker threads of sandbox service hooks."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any, TypeVar

from runtime import errors

T = TypeVar("T")


def call_on_loop(
    loop: asyncio.AbstractEventLoop | None, coro: Coroutine[Any, Any, T], *, what: str, timeout: float
) -> T:
    """Run ``coro`` on ``loop`` and wait for its result from a worker thread.

    ``what`` names the service in the errors: NotAvailable if its loop is not running, and
    an AssertionError if called from the loop itself (a hook would deadlock waiting on it)."""
    if loop is None:
        coro.close()
        raise errors.NotAvailable(f"the {what} is not running")
    with contextlib.suppress(RuntimeError):
        if asyncio.get_running_loop() is loop:
            coro.close()
            raise AssertionError(f"the {what}'s hooks block; call them from a worker thread")
    return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)
