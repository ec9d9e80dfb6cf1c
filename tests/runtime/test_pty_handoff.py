"""The terminal handoff: runtimed hands the web tier a socket straight to a shell's PTY holder.

A real runtimed of this module (its own root and host resources, and ``--group nogroup``
as ``make run`` passes the platform's group), real runc sandboxes, the real kl-pty-holder;
terminals attached through ``runtime.backends``' namespace backend with a web token, as
the terminal consumer does. The attacks on the broker: tests/security/test_pty_handoff.py.
"""

from __future__ import annotations

import asyncio
import grp
import json
import logging
import os
import shutil
import socket
import stat
import struct
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path

import pytest

from runtime import auth, errors
from runtime.backends import AttachStream, NamespaceBackend
from runtime.client import AsyncAttach, Client, DirectAttach, handoff_path
from runtime.daemon import Daemon, prepare_socket, serve
from runtime.sandbox.spec import SandboxSpec
from runtime.sessions.pty import cancel_quietly
from tests.runtime.conftest_daemon import cleaning_client, holder_daemon, short_tmp
from tests.runtime.daemon_helpers import HostImages, HostManager, RealDaemon

GROUP = "nogroup"
RESOURCES = [
    "--subnet",
    "10.239.160.0/20",
    "--bridge",
    "kltestho",
    "--cgroup-parent",
    "kubelab-testho",
    "--uid-start",
    str(4_150_000_000),
    "--group",
    GROUP,
]
SHELL = ["/bin/sh", "-i"]


@pytest.fixture(scope="module")
def daemon() -> Iterator[RealDaemon]:
    with holder_daemon("rtho-", RESOURCES) as d:
        yield d


@pytest.fixture
def admin(daemon: RealDaemon) -> Iterator[Client]:
    with cleaning_client(daemon.socket) as c:
        yield c


async def _shell(daemon: RealDaemon, admin: Client) -> tuple[str, str, NamespaceBackend, str]:
    """A sandbox with one shell, and the namespace backend as the web tier holds it (with its token)."""
    sid = (await asyncio.to_thread(admin.create_sandbox, {"image": "busybox"}))["id"]
    token = await asyncio.to_thread(admin.mint_token, sid, role="web")
    backend = NamespaceBackend(daemon.socket, token=token)
    s = await backend.create_session(sid, SHELL)
    return sid, str(s["session_id"]), backend, token


async def read_until(att: AttachStream, needle: bytes, timeout: float = 20) -> bytes:
    buf = b""
    async with asyncio.timeout(timeout):
        while needle not in buf:
            item = await att.recv()
            assert item is not None, f"the stream ended before {needle!r}; got {buf[-500:]!r}"
            if isinstance(item, bytes):
                buf += item
    return buf


async def read_exit(att: AttachStream, timeout: float = 20) -> dict[str, object]:
    async with asyncio.timeout(timeout):
        while True:
            item = await att.recv()
            assert item is not None, "the stream ended before the exit"
            if isinstance(item, dict) and item.get("type") == "exit":
                return item


async def prompt(att: AttachStream) -> None:
    await att.send(b"PS1='P''$ '; echo pr''ompt-set\n")
    await read_until(att, b"prompt-set\r\nP$ ")


@pytest.fixture
async def closing() -> AsyncIterator[list[AttachStream]]:
    """Streams to close at the end, whatever the test did."""
    streams: list[AttachStream] = []
    yield streams
    for s in streams:
        await s.close()


async def test_handoff_socket_is_the_api_sockets_twin(daemon: RealDaemon) -> None:
    api, hand = daemon.socket.stat(), Path(handoff_path(daemon.socket)).stat()
    assert stat.S_ISSOCK(hand.st_mode)
    assert (stat.S_IMODE(hand.st_mode), hand.st_uid, hand.st_gid) == (0o660, 0, grp.getgrnam(GROUP).gr_gid)
    assert (stat.S_IMODE(hand.st_mode), hand.st_uid, hand.st_gid) == (stat.S_IMODE(api.st_mode), api.st_uid, api.st_gid)


async def test_terminal_is_handed_off_and_echoes(
    daemon: RealDaemon, admin: Client, closing: list[AttachStream]
) -> None:
    sid, pty, backend, token = await _shell(daemon, admin)
    att = await backend.attach(sid, pty)
    closing.append(att)
    assert isinstance(att, DirectAttach)
    await prompt(att)
    await att.send(b"echo echo-$((6*7))\n")
    await read_until(att, b"echo-42\r\n")
    assert f"session {pty} in {sid} handed off (rw)" in daemon.logs()
    # runtimed keeps its own view: a WebSocket attach replays what was typed on the handed socket
    with Client(daemon.socket, token=token) as c, c.attach(sid, pty) as ws:
        got = b""
        while b"echo-42" not in got:
            item = ws.recv(timeout=20)
            assert isinstance(item, bytes)
            got += item


async def test_read_only_cannot_type_or_resize(daemon: RealDaemon, admin: Client, closing: list[AttachStream]) -> None:
    sid, pty, backend, _token = await _shell(daemon, admin)
    rw = await backend.attach(sid, pty)
    ro = await backend.attach(sid, pty, read_only=True)
    closing += [rw, ro]
    assert isinstance(rw, DirectAttach) and isinstance(ro, DirectAttach) and ro.read_only
    assert f"session {pty} in {sid} handed off (ro)" in daemon.logs()
    await prompt(rw)
    await rw.send(b"stty size\n")
    size = (await read_until(rw, b"P$ ")).split(b"stty size\r\n")[-1].split(b"\r\n")[0]
    # past the client's own guard: the holder itself must ignore a read-only client
    ro._sock.send(b"Iecho ro-$((6*7))\n")
    ro._sock.send(b"R" + struct.pack("=HH", 33, 99))
    await ro.send(b"echo ro2-$((6*7))\n")
    await rw.send(b"stty size; echo rw-$((5*5))\n")
    seen = await read_until(ro, b"rw-25\r\n")  # the observer sees the owner's output
    assert b"ro-42" not in seen and b"ro2-42" not in seen
    assert size + b"\r\nrw-25" in seen and size != b"33 99"


async def test_exit_code_arrives(daemon: RealDaemon, admin: Client, closing: list[AttachStream]) -> None:
    sid, pty, backend, _token = await _shell(daemon, admin)
    att = await backend.attach(sid, pty)
    closing.append(att)
    assert isinstance(att, DirectAttach)
    await att.send(b"exit 5\n")
    assert await read_exit(att) == {"type": "exit", "code": 5}
    assert att.exit_code == 5
    assert await att.recv(timeout=20) is None
    info = await backend.get_session(sid, pty)
    assert info["exited"] is True and info["exit_code"] == 5


async def test_handed_off_terminal_keeps_working_while_runtimed_is_killed_and_restarted(
    daemon: RealDaemon, admin: Client, closing: list[AttachStream]
) -> None:
    sid, pty, backend, _token = await _shell(daemon, admin)
    att = await backend.attach(sid, pty)
    closing.append(att)
    assert isinstance(att, DirectAttach)
    await prompt(att)
    await att.send(b"cd /tmp; X=kept\n")
    assert daemon.proc is not None
    daemon.proc.kill()
    await asyncio.to_thread(daemon.proc.wait, 30)
    await att.send(b"echo $X-$((20+22)) $PWD\n")  # no runtimed at all: the same stream, no reconnect
    await read_until(att, b"kept-42 /tmp\r\n")
    await asyncio.to_thread(daemon.start)
    await att.send(b"echo again-$((1+1))\n")
    await read_until(att, b"again-2\r\n")
    # the restarted runtimed re-adopted the holder and hands the shell off again
    again = await backend.attach(sid, pty)
    closing.append(again)
    assert isinstance(again, DirectAttach)
    await again.send(b"echo $X\n")
    await read_until(again, b"kept\r\n")
    await att.send(b"exit 3\n")
    ev = await read_exit(att)
    assert ev["code"] in (3, None)  # None: after a restart the shell is no longer runtimed's child


async def test_without_the_broker_socket_the_websocket_is_used(
    daemon: RealDaemon, admin: Client, closing: list[AttachStream]
) -> None:
    sid, pty, backend, _token = await _shell(daemon, admin)
    hand = Path(handoff_path(daemon.socket))
    hand.unlink()
    try:
        att = await backend.attach(sid, pty)
        closing.append(att)
        assert isinstance(att, AsyncAttach)
        await att.send(b"echo ws-$((6*7))\n")
        await read_until(att, b"ws-42\r\n")
    finally:
        # the broker still listens on its (now nameless) socket: restart to get the name back
        await asyncio.to_thread(daemon.stop)
        await asyncio.to_thread(daemon.start)
    assert hand.exists()


def _as_nobody(sock_path: Path, request: Mapping[str, object]) -> dict[str, object]:
    """The handoff request made by a process of the socket's group (uid nobody, gid nogroup)."""
    code = f"""
import json, os, socket
os.setgroups([]); os.setgid({grp.getgrnam(GROUP).gr_gid}); os.setuid(65534)
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.settimeout(10)
s.connect({str(sock_path)!r})
s.send({json.dumps(dict(request)).encode()!r})
msg, fds, _, _ = socket.recv_fds(s, 8192, 1)
reply = json.loads(msg)
reply["fds"] = len(fds)
if fds:
    h = socket.socket(fileno=fds[0])
    h.settimeout(10)
    reply["first"] = h.recv(1).decode()
print(json.dumps(reply))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True)
    result = json.loads(out.stdout)
    assert isinstance(result, dict)
    return result


async def test_the_sockets_group_can_use_the_broker(daemon: RealDaemon, admin: Client) -> None:
    sid, pty, _backend, token = await _shell(daemon, admin)
    request = {"authorization": f"Bearer {token}", "sandbox": sid, "session": pty, "mode": "ro"}
    reply = await asyncio.to_thread(_as_nobody, Path(handoff_path(daemon.socket)), request)
    assert reply == {"ok": True, "fds": 1, "first": "H"}  # the holder's hello on the handed socket


# -- a session without a holder (no holder binary: sessions_dir=None) ------------------------------
@pytest.fixture
async def holderless() -> AsyncIterator[Path]:
    """runtimed's real ``serve`` (API socket and broker), on this test's loop, around a Daemon whose
    sessions keep their PTY in the daemon (as without the holder binary) on the tests' host
    stand-in; yields the API socket."""
    tmp = short_tmp("rthl-")
    sock = tmp / "rt.sock"
    manager = HostManager()
    d = Daemon(
        manager,
        HostImages(),
        spec_from_json=SandboxSpec.from_json,
        tmp_dir=tmp / "tmp",
        authority=auth.Authority(b"k" * 32, os.environ["RUNTIME_ADMIN_TOKEN"]),
    )
    started = asyncio.Event()
    task = asyncio.get_running_loop().create_task(serve(d, sock, ready=started))
    await asyncio.wait_for(started.wait(), 20)
    try:
        yield sock
    finally:
        await cancel_quietly(task)
        await asyncio.to_thread(manager.close)
        assert not sock.exists() and not Path(handoff_path(sock)).exists()  # removed on exit
        shutil.rmtree(tmp, ignore_errors=True)


async def test_a_session_without_a_holder_uses_the_websocket(
    holderless: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="runtime.daemon")

    def sandbox() -> tuple[str, str]:
        with Client(holderless) as c:
            sid = c.create_sandbox({"image": "busybox"})["id"]
            return sid, c.mint_token(sid, role="web")

    sid, token = await asyncio.to_thread(sandbox)
    assert Path(handoff_path(holderless)).exists()
    backend = NamespaceBackend(holderless, token=token)
    s = await backend.create_session(sid, ["/bin/sh", "-i"])
    assert s["holder_pid"] is None
    att = await backend.attach(sid, str(s["session_id"]))
    try:
        assert isinstance(att, AsyncAttach)  # not offered: the WebSocket
        assert "terminal handoff refused: not_offered" in caplog.text
        await att.send(b"echo held-$((6*7))\n")
        await read_until(att, b"held-42\r\n")
    finally:
        await att.close()


def test_a_stale_handoff_socket_is_removed_and_a_file_there_refused() -> None:
    d = short_tmp("rths-")
    try:
        path = d / "rt.sock"
        hand = Path(handoff_path(path))
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        stale.bind(str(hand))  # what a SIGKILL'd runtimed leaves
        stale.close()
        os.close(prepare_socket(path))
        assert not hand.exists()
        hand.write_text("not a socket")
        with pytest.raises(errors.Conflict, match="not a socket"):
            prepare_socket(path)
        assert hand.read_text() == "not a socket"  # refused, not removed
    finally:
        shutil.rmtree(d, ignore_errors=True)
