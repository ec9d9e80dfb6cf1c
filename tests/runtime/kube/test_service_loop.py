"""runtimed's lab clusters run on an event loop of their own (runtime/kube/service.py,
"Threads"; issue #13): a burst of cluster work never stops the daemon's loop, which relays
the students' terminals. Tested with the service started as runtimed starts it
(``start_for_daemon``) beside a stand-in for the daemon (its sandbox manager only: no
sandbox is made here), and with its real hub, host listener and lab-cluster API."""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from runtime.kube.service import start_for_daemon
from runtime.loops import LoopThread


class _Manager:
    """The part of SandboxManager that start_for_daemon uses: no sandbox exists."""

    def __init__(self) -> None:
        self.service_hooks: dict[str, Any] = {}

    def register_service(self, name: str, hook: Any) -> None:
        self.service_hooks[name] = hook
        hook.adopt([])

    def get(self, sid: str) -> Any:
        raise KeyError(sid)


def test_the_service_runs_on_a_loop_that_is_not_the_daemons(tmp_path: Path) -> None:
    async def main() -> None:
        daemon = SimpleNamespace(manager=_Manager(), docker=None, kube=None)
        svc = await start_for_daemon(daemon, tmp_path / "kube", "127.0.0.1:0")
        try:
            assert daemon.kube is svc
            assert svc.loop is not None and svc.loop is not asyncio.get_running_loop()
            # the service's loop is held in a blocking call until the daemon's loop has
            # turned: on one shared loop this could never finish
            turned = threading.Event()
            held = threading.Event()

            def hold() -> None:
                held.set()
                assert turned.wait(10), "the daemon's loop did not turn while the lab clusters' loop was busy"

            svc.loop.call_soon_threadsafe(hold)
            await asyncio.to_thread(held.wait, 10)
            await asyncio.sleep(0.01)  # the daemon's loop goes on: timers fire, tasks run
            turned.set()
            # and the clusters' API answers on its own loop (a request from a worker thread,
            # the way a grader's client reaches the host listener)
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE

            def answer() -> tuple[int, Any]:
                try:
                    with urllib.request.urlopen(f"{svc.server}/clusters/no-such/api", context=ctx, timeout=10) as r:
                        return r.status, json.loads(r.read())
                except urllib.error.HTTPError as e:
                    return e.code, json.loads(e.read())

            code, body = await asyncio.to_thread(answer)
            assert (code, body["kind"], body["code"]) == (401, "Status", 401), (
                body
            )  # the lab clusters' API itself refused it
        finally:
            thread = svc.thread
            await svc.close()
        assert thread is not None and not thread._thread.is_alive()  # the loop's thread ended with it
        assert svc.thread is None

    asyncio.run(main())


def test_a_loop_thread_runs_coroutines_and_stops_cancelling_what_is_left() -> None:
    async def main() -> None:
        t = LoopThread("test", workers=2)
        try:

            async def where() -> tuple[asyncio.AbstractEventLoop, str]:
                return asyncio.get_running_loop(), threading.current_thread().name

            loop, name = await t.run(where())
            assert loop is t.loop and loop is not asyncio.get_running_loop()
            assert name == "loop-test"

            # its own executor: to_thread on that loop runs in threads named after it
            async def worker_name() -> str:
                return await asyncio.to_thread(lambda: threading.current_thread().name)

            assert (await t.run(worker_name())).startswith("test")
            cancelled = threading.Event()

            async def forever() -> None:
                try:
                    await asyncio.sleep(3600)
                finally:
                    cancelled.set()

            t.loop.call_soon_threadsafe(lambda: t.loop.create_task(forever()))
            await asyncio.sleep(0.05)
        finally:
            await asyncio.to_thread(t.stop)
        assert cancelled.is_set()
        assert t.loop.is_closed()
        # a stopped thread refuses work with the service's own error, not a hang
        from runtime import errors

        async def nothing() -> None:
            return None

        try:
            await t.run(nothing())
        except errors.NotAvailable as e:
            assert "test loop is not running" in str(e)
        else:
            raise AssertionError("a stopped LoopThread accepted work")

    asyncio.run(main())
