"""Many sandboxes with services start at once and leave runtimed as it was (issue #13).

runtimed starts sandboxes in worker threads, and each sandbox's services open their
sockets on the daemon's loop meanwhile. Process-wide state changed around an ``await``
(the umask set to 0117 while a socket is bound, restored after) is then restored in the
wrong order by two interleaved starts, and stays 0117: every later sandbox create fails
(its directories lose their owner's bits). Here 20 sandboxes with the docker and
kubernetes services are created from 20 threads at once, on a real runtimed; runtimed's
umask must be what it was, every one of them must have come up, and a fresh sandbox must
still start and serve its docker socket.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime import errors
from runtime.client import Client
from tests.runtime.conftest_daemon import cleaning_client, private_daemon, real_sandboxes_available
from tests.runtime.daemon_helpers import RealDaemon

HOST_RESOURCES = [
    "--subnet",
    "10.239.48.0/20",
    "--bridge",
    "kltestcu",
    "--cgroup-parent",
    "kubelab-testcu",
    "--uid-start",
    str(3_600_000_000),
]
N = 20
SERVICES = ["docker", "kubernetes"]

pytestmark = [pytest.mark.root, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def daemon() -> Iterator[RealDaemon]:
    why = real_sandboxes_available()
    if why:
        pytest.skip(why)
    with private_daemon("rtu-", HOST_RESOURCES, None) as d:
        yield d


def umask_of(pid: int) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Umask:"):
            return line.split()[1]
    raise AssertionError("no Umask line")


def test_concurrent_service_starts_leave_the_umask_and_the_next_start_works(daemon: RealDaemon) -> None:
    assert daemon.proc is not None
    before = umask_of(daemon.proc.pid)
    results: list[Any] = [None] * N

    def create(i: int) -> None:
        with Client(daemon.socket, timeout=600) as c:
            try:
                results[i] = c.create_sandbox({"image": "busybox", "services": SERVICES}, timeout=600)["id"]
            except errors.RuntimeError as exc:
                results[i] = exc

    with cleaning_client(daemon.socket, timeout=300) as client:
        threads = [threading.Thread(target=create, args=(i,)) for i in range(N)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(660)
        failed = [r for r in results if not isinstance(r, str)]
        assert not failed, f"{len(failed)} of {N} concurrent creates failed: {failed[:3]}"
        assert umask_of(daemon.proc.pid) == before

        sid = str(client.create_sandbox({"image": "busybox", "services": SERVICES})["id"])
        r = client.exec(sid, ["/bin/sh", "-c", "test -S /var/run/docker.sock && echo socket"], timeout=60)
        assert r.stdout_text.strip() == "socket", r.stdout_text + r.stderr_text
        sock = Path(client.docker_socket(sid))
        assert sock.stat().st_mode & 0o777 == 0o660
        assert umask_of(daemon.proc.pid) == before
