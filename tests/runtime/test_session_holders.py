"""Shells survive runtimed: each PTY is held by a holder process (runtime.sessions.holder).

A real runtimed of this module (its own root and host resources, so killing it
disturbs no other test), real runc sandboxes, the real kl-pty-holder.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime.client import Client
from tests.runtime.conftest_daemon import cleaning_client, holder_daemon
from tests.runtime.daemon_helpers import RealDaemon, read_event, read_until
from tests.runtime.test_daemon import prompt

RESOURCES = [
    "--subnet",
    "10.239.96.0/20",
    "--bridge",
    "kltestph",
    "--cgroup-parent",
    "kubelab-testph",
    "--uid-start",
    str(3_750_000_000),
]
SHELL = ["/bin/sh", "-i"]


@pytest.fixture(scope="module")
def daemon() -> Iterator[RealDaemon]:
    with holder_daemon("rth-", RESOURCES) as d:
        yield d


@pytest.fixture
def client(daemon: RealDaemon) -> Iterator[Client]:
    with cleaning_client(daemon.socket) as c:
        yield c


def _gone(pid: int) -> bool:
    """Not running: no such process, or a zombie nobody reaped yet (an orphan's parent is init)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return True
    return fields[0] in ("Z", "X")


def _wait(pred: Callable[[], bool], timeout: float = 20, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _meta(daemon: RealDaemon, sid: str, session_id: str) -> dict[str, Any]:
    data = json.loads((daemon.root / "sessions" / sid / f"{session_id}.json").read_text())
    assert isinstance(data, dict)
    return data


def _shell_with_state(c: Client, sid: str) -> dict[str, Any]:
    s = c.create_session(sid, SHELL)
    att = c.attach(sid, s["session_id"])
    prompt(att)
    att.send(b"cd /tmp; X=42; echo state-''set\n")
    read_until(att, b"state-set\r\n")
    att.close()
    assert isinstance(s["holder_pid"], int)
    return s


def _kill_hard(daemon: RealDaemon) -> None:
    assert daemon.proc is not None
    daemon.proc.kill()
    daemon.proc.wait(30)


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_shell_keeps_its_state_across_a_runtimed_restart(daemon: RealDaemon, client: Client, how: str) -> None:
    c = client
    sid = c.create_sandbox({"image": "busybox"})["id"]
    s = _shell_with_state(c, sid)
    holder = int(s["holder_pid"])
    if how == "SIGKILL":
        _kill_hard(daemon)
    else:
        assert daemon.stop() == 0
    assert not _gone(holder), "the holder must outlive runtimed"
    daemon.start()
    listed = c.list_sessions(sid)
    assert [x["session_id"] for x in listed] == [s["session_id"]]
    assert listed[0]["exited"] is False and listed[0]["argv"] == SHELL
    assert listed[0]["holder_pid"] == holder
    att = c.attach(sid, s["session_id"])
    replay = read_until(att, b"state-set\r\n")  # the scrollback from before the restart
    assert b"prompt-set" in replay
    att.send(b"echo $X $PWD\n")
    read_until(att, b"42 /tmp\r\n")
    # the shell ends normally after an adoption too, and so does its holder
    att.send(b"exit 7\n")
    ev = read_event(att, "exit")
    assert ev["code"] in (7, None)  # None: the shell is no longer our child after a restart
    att.close()
    _wait(lambda: _gone(holder), what="the holder to quit after the shell's exit")
    assert c.get_session(sid, s["session_id"])["exited"] is True


def test_removing_a_session_ends_its_holder_and_its_shell(daemon: RealDaemon, client: Client) -> None:
    c = client
    sid = c.create_sandbox({"image": "busybox"})["id"]
    s = _shell_with_state(c, sid)
    holder = int(s["holder_pid"])
    shell = _meta(daemon, sid, str(s["session_id"]))["shell_pid"]
    assert isinstance(shell, int) and not _gone(shell)
    c.remove_session(sid, s["session_id"])
    assert _gone(holder) and _gone(shell)
    assert not (daemon.root / "sessions" / sid / f"{s['session_id']}.sock").exists()
    assert c.list_sessions(sid) == []


def test_removing_an_adopted_session_ends_its_holder_and_its_shell(daemon: RealDaemon, client: Client) -> None:
    c = client
    sid = c.create_sandbox({"image": "busybox"})["id"]
    s = _shell_with_state(c, sid)
    holder = int(s["holder_pid"])
    shell = _meta(daemon, sid, str(s["session_id"]))["shell_pid"]
    assert isinstance(shell, int)
    _kill_hard(daemon)
    daemon.start()
    c.remove_session(sid, s["session_id"])
    _wait(lambda: _gone(holder) and _gone(shell), what="the adopted holder and shell to end")


def test_removing_the_sandbox_leaves_no_holder(daemon: RealDaemon, client: Client) -> None:
    c = client
    sid = c.create_sandbox({"image": "busybox"})["id"]
    holders = [int(_shell_with_state(c, sid)["holder_pid"]) for _ in range(2)]
    c.remove_sandbox(sid)
    assert all(_gone(p) for p in holders)
    assert not (daemon.root / "sessions" / sid).exists()


def test_holders_of_a_sandbox_that_is_gone_are_ended_at_start(daemon: RealDaemon, client: Client) -> None:
    c = client
    sid = c.create_sandbox({"image": "busybox"})["id"]
    s = _shell_with_state(c, sid)
    holder = int(s["holder_pid"])
    assert daemon.stop() == 0
    # while no daemon runs, the holder comes to belong to a sandbox runtimed does not know
    # (a unix socket stays reachable when its file is renamed)
    sessions = daemon.root / "sessions"
    (sessions / sid).rename(sessions / "0123456789ab")
    daemon.start()
    _wait(lambda: _gone(holder), what="the holder of an unknown sandbox to be ended")
    assert not (sessions / "0123456789ab").exists()
    assert c.list_sessions(sid) == []


def test_a_shell_that_ended_while_runtimed_was_down_is_listed_as_exited(daemon: RealDaemon, client: Client) -> None:
    c = client
    sid = c.create_sandbox({"image": "busybox"})["id"]
    s = _shell_with_state(c, sid)
    holder = int(s["holder_pid"])
    shell = int(_meta(daemon, sid, s["session_id"])["shell_pid"])
    assert daemon.stop() == 0
    os.kill(shell, 9)
    daemon.start()
    _wait(lambda: _gone(holder), what="the holder to quit once its end was collected")
    listed = c.list_sessions(sid)
    assert [(x["session_id"], x["exited"]) for x in listed] == [(s["session_id"], True)]
    att = c.attach(sid, s["session_id"])
    read_until(att, b"state-set\r\n")  # its scrollback is still there to read
    assert read_event(att, "exit")["code"] is None  # not our child any more: unknown
    att.close()


def test_the_holder_socket_is_reachable_by_root_only(daemon: RealDaemon, client: Client) -> None:
    c = client
    sid = c.create_sandbox({"image": "busybox"})["id"]
    s = _shell_with_state(c, sid)
    sock = daemon.root / "sessions" / sid / f"{s['session_id']}.sock"
    for d in (sock.parent, sock.parent.parent):
        st = d.lstat()
        assert stat.S_ISDIR(st.st_mode) and st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o700
    assert stat.S_ISSOCK(sock.lstat().st_mode) and stat.S_IMODE(sock.lstat().st_mode) == 0o600
    # not beneath the sandbox's own directory, whose contents the student controls
    assert not sock.resolve().is_relative_to((daemon.root / "sandboxes").resolve())
    # from inside the sandbox: no such file anywhere in its filesystem
    r = c.exec(sid, ["sh", "-c", f"find / -xdev -name '{s['session_id']}*' 2>/dev/null; echo done"])
    assert r.stdout == b"done\n"
    # on the host, as the sandbox's root (its host uid) or the platform's unprivileged user: refused
    state = json.loads((daemon.root / "sandboxes" / sid / "state.json").read_text())
    probe = (
        "import socket,sys\n"
        "s=socket.socket(socket.AF_UNIX,socket.SOCK_SEQPACKET)\n"
        "try:\n s.connect(sys.argv[1])\nexcept PermissionError:\n print('refused')\n"
        "else:\n print('connected')\n"
    )
    for uid in (int(state["uid_base"]), 65534):
        out = subprocess.run(
            [sys.executable, "-c", probe, str(sock)], user=uid, capture_output=True, timeout=30, cwd="/"
        )
        assert out.stdout == b"refused\n", (uid, out)
    # even root cannot take the shell over from runtimed: a second connection is closed at once
    assert os.geteuid() == 0
    peer = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    peer.settimeout(10)
    peer.connect(str(sock))
    assert peer.recv(100) == b""
    peer.close()
    att = c.attach(sid, s["session_id"])
    att.send(b"echo $X-still-mine\n")
    read_until(att, b"42-still-mine\r\n")
    att.close()
