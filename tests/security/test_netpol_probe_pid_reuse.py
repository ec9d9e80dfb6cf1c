"""The graders' connectivity probe (runtime/kube/node/netpol.py ``probe``) enters the network
namespace of the pod's infra container by its pid. A pid is only that process while the
process lives: a student's infra container can exit at will (and the student presses Check
themselves), after which the number may belong to any host process. The probe must then
refuse, never probe from whatever network namespace that pid has now: a host process's is
the host's, where runtimed's loopback listeners are.

Here the "engine" is a stand-in (a runc container needs a real sandbox): it reports a
running infra container whose recorded pid is now a host process of this test (a ``sleep``
in the host's network namespace) with another start time, as after the container exited and
its pid was reused. The helper child, the probe code and the host's loopback are real.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from runtime.kube.node import netpol
from runtime.kube.node.podstate import CONTAINER_NAME, INFRA, POD_NAME, POD_NAMESPACE
from runtime.procfs import proc_start

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="entering another process's netns needs root")


@dataclass
class _Rec:
    pid: int
    pid_start: int


class _Place:
    def run(
        self, argv: list[str], *, timeout: float = 10.0, check: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(argv, capture_output=True, timeout=timeout, check=False, env=env)


class ReusedPidEngine:
    """One running infra container of pod default/client, whose pid the host reused."""

    def __init__(self, pid: int, recorded_start: int) -> None:
        self.rec = _Rec(pid, recorded_start)
        self.place = _Place()

    def list(self, filters: dict[str, Any]) -> list[dict[str, Any]]:
        want = {f"{POD_NAMESPACE}=default", f"{POD_NAME}=client", f"{CONTAINER_NAME}={INFRA}"}
        return [{"Id": "c0ffee"}] if set(filters["label"]) == want else []

    def inspect(self, cid: str) -> dict[str, Any]:
        return {"Id": cid, "State": {"Running": True, "Pid": self.rec.pid}}

    def init_process(self, cid: str) -> tuple[int, int]:  # Engine.init_process: the engine's own record
        return self.rec.pid, self.rec.pid_start


@pytest.fixture
def host_process() -> Iterator[int]:
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        yield p.pid
    finally:
        p.kill()
        p.wait()


def test_a_reused_pid_never_lends_the_host_netns_to_the_probe(host_process: int) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    start = proc_start(host_process)
    assert start
    try:
        engine = ReusedPidEngine(host_process, start - 1)  # the container's process started earlier
        try:
            got = netpol.probe(engine, "default", "client", "127.0.0.1", port, "TCP", 2.0)  # type: ignore[arg-type]
        except Exception as e:  # a refusal of any kind is the right answer
            got = {"result": "refused-by-runtimed", "detail": str(e)}
        assert got["result"] != "open", f"the probe reached the host's loopback: {got}"
        assert got["result"] in ("error", "refused-by-runtimed")
    finally:
        listener.close()


def test_the_same_process_is_still_probed_from(host_process: int) -> None:
    """The check is no blanket refusal: the recorded process, still alive, is entered."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    start = proc_start(host_process)
    assert start
    try:
        got = netpol.probe(ReusedPidEngine(host_process, start), "default", "client", "127.0.0.1", port, "TCP", 2.0)  # type: ignore[arg-type]
        assert got["result"] == "open", got
    finally:
        listener.close()
