"""Calling runtimed's event loop from the worker threads of sandbox service hooks, and
watching an event loop for stalls (``StallWatch``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
import time
import traceback
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


class StallWatch:
    """Reports when an event loop stops turning: a diagnostic for latency under load.

    A task on the loop records a heartbeat every ``period``; a daemon thread checks it and,
    when the loop has been silent for over ``threshold`` seconds, logs once per stall what the
    loop's thread is doing at that moment (its Python stack) and how many other threads hold
    runnable Python frames — a stack inside our code names the culprit, a stack at an
    innocent bytecode with many busy threads points at the GIL. Off unless an operator asks
    for it (``KUBELAB_STALL_MS``), because sampling a stack costs the GIL it measures.
    """

    def __init__(self, name: str, threshold: float, *, period: float = 0.01, log: Any = None) -> None:
        self.name = name
        self.threshold = threshold
        self.period = period
        self.log = log or logging.getLogger("runtime.stall")
        self._beat = 0.0
        self._thread_id: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop = False

    @classmethod
    def from_env(cls, name: str, log: Any = None) -> StallWatch | None:
        raw = os.environ.get("KUBELAB_STALL_MS", "")
        try:
            ms = float(raw)
        except ValueError:
            return None
        return cls(name, ms / 1000, log=log) if ms > 0 else None

    def start(self) -> None:
        """Start on the running loop (call from a coroutine)."""
        self._thread_id = threading.get_ident()
        self._beat = time.monotonic()
        self._task = asyncio.get_running_loop().create_task(self._heartbeat())
        threading.Thread(target=self._watch, daemon=True, name=f"stallwatch-{self.name}").start()

    def stop(self) -> None:
        self._stop = True
        if self._task is not None:
            self._task.cancel()

    async def _heartbeat(self) -> None:
        while True:
            self._beat = time.monotonic()
            await asyncio.sleep(self.period)

    def _watch(self) -> None:
        reported = 0.0
        while not self._stop:
            time.sleep(self.period)
            beat = self._beat
            silent = time.monotonic() - beat
            if silent < self.threshold or beat == reported or self._thread_id is None:
                continue
            reported = beat
            frames = sys._current_frames()
            frame = frames.get(self._thread_id)
            stack = "".join(traceback.format_stack(frame, limit=12)) if frame is not None else "?"
            self.log.warning(
                "%s: event loop silent for %.0f ms at %s (%d threads); its stack:\n%s",
                self.name,
                silent * 1000,
                time.strftime("%H:%M:%S", time.gmtime(time.time() - silent)),
                len(frames),
                stack,
            )
