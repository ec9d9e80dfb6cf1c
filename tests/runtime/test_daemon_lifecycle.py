"""runtimed as a process: its socket, refusing a second daemon, SIGTERM and re-adoption."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime import errors
from runtime.client import Client
from runtime.daemon import prepare_socket
from tests.runtime.conftest_daemon import short_tmp
from tests.runtime.daemon_helpers import REPO, RealDaemon, read_until
from tests.runtime.test_daemon import prompt


@pytest.fixture
def tmpdir_short() -> Iterator[Path]:
    d = short_tmp("rtl-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_stale_socket_is_replaced_and_live_one_refused(tmpdir_short: Path) -> None:
    d = tmpdir_short
    path = d / "sub" / "rt.sock"
    path.parent.mkdir()
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))  # bound, never listening: what a crashed daemon leaves
    stale.close()
    fd = prepare_socket(path)
    assert not path.exists()
    live = socket.socket(socket.AF_UNIX)
    live.bind(str(path))
    live.listen(1)
    try:
        with pytest.raises(errors.Conflict, match="holds"):
            prepare_socket(path)  # the lock is still held by fd
        os.close(fd)
        with pytest.raises(errors.Conflict, match="another daemon is listening"):
            prepare_socket(path)
    finally:
        live.close()
    path.unlink()
    path.write_text("not a socket")
    with pytest.raises(errors.Conflict, match="not a socket"):
        prepare_socket(path)
    assert path.read_text() == "not a socket"  # refused, not removed


def test_new_socket_dir_is_0750_and_socket_0660(real_daemon: RealDaemon, tmpdir_short: Path) -> None:
    mode = stat.S_IMODE(real_daemon.socket.stat().st_mode)
    assert stat.S_ISSOCK(real_daemon.socket.stat().st_mode)
    assert mode == 0o660
    fresh = tmpdir_short / "new" / "dir"
    os.close(prepare_socket(fresh / "rt.sock"))
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o750


def test_second_daemon_on_the_same_socket_is_refused(real_daemon: RealDaemon, tmpdir_short: Path) -> None:
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "runtime",
            "daemon",
            "--root",
            str(tmpdir_short / "root2"),
            "--socket",
            str(real_daemon.socket),
        ],
        cwd=REPO,
        capture_output=True,
        timeout=60,
    )
    assert p.returncode == 1
    assert str(real_daemon.socket).encode() in p.stderr
    with Client(real_daemon.socket) as c:
        assert c.healthz()["ok"]  # the first one is untouched


def test_restart_readopts_running_sandbox(real_daemon: RealDaemon) -> None:
    c = Client(real_daemon.socket, timeout=60)
    sid = c.create_sandbox({"image": "busybox", "labels": {"t": "restart"}})["id"]
    try:
        assert c.exec(sid, ["sh", "-c", "echo kept > /root/state.txt"]).ok
        s = c.create_session(sid, ["/bin/sh", "-i"])
        att = c.attach(sid, s["session_id"])
        prompt(att)
        assert real_daemon.stop() == 0  # SIGTERM: exit 0, sandboxes left running
        # the attach stream was closed by the daemon (after a "closing" event)
        events = []
        while (item := att.recv(timeout=10)) is not None:
            if isinstance(item, dict):
                events.append(item["type"])
        assert "closing" in events or events == [], events
        with pytest.raises(errors.NotAvailable, match="not reachable"):
            c.healthz()
        real_daemon.start()
        info = c.get_sandbox(sid)
        assert info["status"] == "running" and info["spec"]["labels"] == {"t": "restart"}
        r = c.exec(sid, ["cat", "/root/state.txt"])
        assert r.stdout == b"kept\n"
        # PTY sessions live in their holders (runtime.sessions.holder): the shell is still
        # there under the same id, and a new one works too
        assert [x["session_id"] for x in c.list_sessions(sid)] == [s["session_id"]]
        att1 = c.attach(sid, s["session_id"])
        att1.send(b"echo still-''here\n")
        read_until(att1, b"still-here\r\n")
        att1.close()
        s2 = c.create_session(sid, ["/bin/sh", "-i"])
        att2 = c.attach(sid, s2["session_id"])
        prompt(att2)
        att2.send(b"cat /root/state.txt\n")
        read_until(att2, b"kept\r\n")
        att2.close()
    finally:
        c.remove_sandbox(sid)
        c.close()
