"""The terminal WebSocket finds the same shell after runtimed restarts (its PTY holder kept it).

A private runtimed (its own root and host resources), so killing it disturbs no other
test; the consumer is the real one, unchanged: it looks the shell up by id.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import pytest
from channels.db import database_sync_to_async

from runtime.client import Client
from runtime.sessions.holder import HOLDER_BUILT
from tests.factories import LabFactory, StudentFactory
from tests.grader.helpers import ready_session as direct_session
from tests.labs.test_consumers import connect, hello, read_until
from tests.runtime.conftest_daemon import private_daemon
from tests.runtime.daemon_helpers import RealDaemon

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

RESOURCES = [
    "--subnet",
    "10.239.112.0/20",
    "--bridge",
    "kltestpw",
    "--cgroup-parent",
    "kubelab-testpw",
    "--uid-start",
    str(3_850_000_000),
]


@pytest.fixture(scope="module")
def own_runtimed() -> Iterator[RealDaemon]:
    if os.geteuid() != 0:
        pytest.skip("runtimed needs root (it drives runc)")
    if not HOLDER_BUILT.is_file():
        pytest.skip("kl-pty-holder is not built (make agent)")
    with private_daemon("rtw-", RESOURCES, None) as d:
        yield d


@pytest.fixture
def own_socket(own_runtimed: RealDaemon, settings: object) -> RealDaemon:
    settings.RUNTIME_SOCKET = str(own_runtimed.socket)  # type: ignore[attr-defined]
    return own_runtimed


def _kill_and_restart(d: RealDaemon) -> None:
    assert d.proc is not None
    d.proc.kill()
    d.proc.wait(30)
    d.start()


async def test_terminal_reconnects_to_the_same_shell_after_runtimed_restarts(own_socket: RealDaemon) -> None:
    owner = await database_sync_to_async(StudentFactory.create)()
    # made directly on this test's daemon: a provisioning task would let a Celery worker of
    # another test build it on the suite's shared runtimed instead
    session = await database_sync_to_async(lambda: direct_session(owner, LabFactory.create()))()
    with Client(own_socket.socket) as rt:  # provisioned on this test's daemon
        assert rt.get_sandbox(session.sandbox_id)["status"] == "running"
    first, connected, _ = await connect(owner, session)
    assert connected
    await hello(first)
    await first.send_to(bytes_data=b"cd /tmp; MARK=kept-$((40+2)); echo $MARK\n")
    await read_until(first, b"kept-42\r\n")
    await asyncio.to_thread(_kill_and_restart, own_socket)
    await first.disconnect()

    again, connected, _ = await connect(owner, session)
    assert connected
    await hello(again)
    await read_until(again, b"kept-42")  # the scrollback from before the restart
    await again.send_to(bytes_data=b"echo $MARK $PWD\n")  # the same shell: its state is there
    await read_until(again, b"kept-42 /tmp\r\n")
    await again.disconnect()
