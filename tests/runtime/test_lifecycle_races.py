"""Two lifecycle requests for one sandbox at once: they wait for each other.

A lab ends from two sides at the same time (the student's Stop and a worker's expiry, or
a discard while the suite's own worker releases it): two DELETEs, or a pause and a DELETE.
They used to tear the same mounts, nft chain and directory down together, and one of them
answered 500 ("No such file or directory", "Could not process rule") half-way; it failed
CI runs. Now one wins, the other gets a clean answer, and nothing of the sandbox is left.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable
from functools import partial
from typing import Any

from runtime import errors
from runtime.client import Client
from tests.runtime.daemon_helpers import RealDaemon


def _together(*calls: Callable[[], Any]) -> list[Any]:
    """Run ``calls`` at the same moment in threads; each result or raised exception."""
    barrier = threading.Barrier(len(calls))
    out: list[Any] = [None] * len(calls)

    def run(i: int, call: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            out[i] = call()
        except Exception as e:  # the result under test
            out[i] = e

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    return out


def _nft_chain_exists(sid: str) -> bool:
    p = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True, timeout=30)
    return f"in-{sid}" in p.stdout


def _gone(c: Client, real_daemon: RealDaemon, sid: str) -> None:
    assert sid not in {b["id"] for b in c.list_sandboxes()}
    assert not (real_daemon.root / "sandboxes" / sid).exists()
    assert not _nft_chain_exists(sid)


def test_two_deletes_of_one_sandbox_at_once(real_daemon: RealDaemon) -> None:
    for _ in range(3):
        with Client(real_daemon.socket, timeout=120) as a, Client(real_daemon.socket, timeout=120) as b:
            sid = a.create_sandbox({"image": "busybox", "labels": {"t": "race"}})["id"]
            results = _together(partial(a.remove_sandbox, sid), partial(b.remove_sandbox, sid))
            # one removed it; the other found it gone: never an internal error
            assert sorted(type(r).__name__ for r in results) == ["NoneType", "SandboxNotFound"], results
            _gone(a, real_daemon, sid)


def test_a_delete_during_a_pause(real_daemon: RealDaemon) -> None:
    with Client(real_daemon.socket, timeout=180) as a, Client(real_daemon.socket, timeout=180) as b:
        sid = a.create_sandbox({"image": "busybox", "labels": {"t": "race"}})["id"]
        paused, removed = _together(lambda: a.pause_sandbox(sid), lambda: b.remove_sandbox(sid))
        assert removed is None, removed  # the delete always succeeds, before or after the pause
        # the pause either finished first or found the sandbox gone
        assert isinstance(paused, (dict, errors.SandboxNotFound)), paused
        _gone(a, real_daemon, sid)


def test_a_stop_and_a_delete_at_once(real_daemon: RealDaemon) -> None:
    with Client(real_daemon.socket, timeout=120) as a, Client(real_daemon.socket, timeout=120) as b:
        sid = a.create_sandbox({"image": "busybox", "labels": {"t": "race"}})["id"]
        stopped, removed = _together(lambda: a.stop_sandbox(sid), lambda: b.remove_sandbox(sid))
        assert removed is None, removed
        assert isinstance(stopped, (dict, errors.SandboxNotFound)), stopped
        _gone(a, real_daemon, sid)
        # and the daemon still makes sandboxes
        again = a.create_sandbox({"image": "busybox", "labels": {"t": "race"}})["id"]
        assert a.exec(again, ["true"]).exit_code == 0
        a.remove_sandbox(again)
