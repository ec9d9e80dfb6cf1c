"""Attacks on runtimed's terminal handoff broker (``<socket>.handoff``, runtime.daemon).

The broker hands out a socket that types into a shell, so it must refuse exactly what the
attach route refuses, and hold nothing a caller sends it. The caller here is whoever can
reach the socket (the web tier's group): a web process made to send anything (an SSRF, a
confused deputy, a compromised page handler). A real runtimed of this module with real
sandboxes and PTY holders: a request that is wrongly granted gets a live terminal.
"""

from __future__ import annotations

import array
import contextlib
import json
import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from runtime import auth
from runtime.client import HANDOFF_MAX_REQUEST, HANDOFF_TIMEOUT, Client, handoff_path
from runtime.sessions.holder import RECV_MAX, parse_hello
from tests.runtime.conftest_daemon import cleaning_client, holder_daemon
from tests.runtime.daemon_helpers import RealDaemon

RESOURCES = [
    "--subnet",
    "10.239.176.0/20",
    "--bridge",
    "kltesthx",
    "--cgroup-parent",
    "kubelab-testhx",
    "--uid-start",
    str(4_200_000_000),
]


@pytest.fixture(scope="module")
def daemon() -> Iterator[RealDaemon]:
    with holder_daemon("rthx-", RESOURCES) as d:
        yield d


class Box:
    def __init__(self, c: Client) -> None:
        self.id = str(c.create_sandbox({"image": "busybox"})["id"])
        self.session = str(c.create_session(self.id, ["/bin/sh", "-i"])["session_id"])
        self.token = c.mint_token(self.id, role="web")


@pytest.fixture(scope="module")
def boxes(daemon: RealDaemon) -> Iterator[tuple[Box, Box]]:
    """Sandbox A (the attacker's: its web token) and sandbox B (a classmate's), one shell each."""
    with cleaning_client(daemon.socket) as c:
        yield Box(c), Box(c)


def _connect(daemon: RealDaemon) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.settimeout(HANDOFF_TIMEOUT * 4)
    s.connect(handoff_path(daemon.socket))
    return s


def _ask(daemon: RealDaemon, payload: bytes, fds: list[int] | None = None) -> tuple[dict[str, Any], list[int]]:
    """One request as raw bytes (with ``fds`` in SCM_RIGHTS); the reply and the fds it carried."""
    with _connect(daemon) as s:
        if fds:
            s.sendmsg([payload], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())])
        else:
            s.send(payload)
        msg, got, _, _ = socket.recv_fds(s, 65536, 4)
    reply = json.loads(msg) if msg else {}
    assert isinstance(reply, dict)
    return reply, got


def _request(token: str | None, sandbox: Any, session: Any, mode: Any = "rw") -> bytes:
    return json.dumps(
        {"authorization": f"Bearer {token}" if token else None, "sandbox": sandbox, "session": session, "mode": mode}
    ).encode()


def _refused(daemon: RealDaemon, payload: bytes, status: int, error: str | None = None) -> dict[str, Any]:
    reply, fds = _ask(daemon, payload)
    for fd in fds:
        os.close(fd)
    assert not fds, f"a refused request was handed a socket: {reply}"
    assert reply.get("status") == status and "ok" not in reply, reply
    if error is not None:
        assert reply["error"] == error, reply
    return reply


def _granted(daemon: RealDaemon, payload: bytes) -> socket.socket:
    reply, fds = _ask(daemon, payload)
    assert reply == {"ok": True} and len(fds) == 1, reply
    return socket.socket(fileno=fds[0])


def test_the_owners_request_is_granted(daemon: RealDaemon, boxes: tuple[Box, Box]) -> None:
    """The positive case the refusals below are measured against."""
    a, _ = boxes
    with _granted(daemon, _request(a.token, a.id, a.session)) as held:
        held.settimeout(10)
        assert held.recv(65536)[:1] == b"H"


@pytest.mark.parametrize(
    "token",
    [None, "", "garbage", "kls1.e30.AAAA", "Basic dXNlcjpwYXNz"],
    ids=["none", "empty", "garbage", "forged", "basic"],
)
def test_requests_without_a_valid_credential_are_refused(
    daemon: RealDaemon, boxes: tuple[Box, Box], token: str | None
) -> None:
    a, _ = boxes
    payload = json.dumps({"authorization": token, "sandbox": a.id, "session": a.session, "mode": "rw"}).encode()
    _refused(daemon, payload, 401, "unauthorized")
    _refused(daemon, json.dumps({"sandbox": a.id, "session": a.session}).encode(), 401, "unauthorized")


def test_an_expired_token_is_refused(daemon: RealDaemon, boxes: tuple[Box, Box]) -> None:
    a, _ = boxes
    key = (daemon.root / "auth" / "signing.key").read_bytes()
    authority = auth.Authority(key, os.environ["RUNTIME_ADMIN_TOKEN"])
    expired = authority.mint(a.id, [auth.TERMINAL], 60, now=time.time() - 3600)
    _refused(daemon, _request(expired, a.id, a.session), 401, "unauthorized")


def test_a_token_without_the_terminal_operation_is_refused(daemon: RealDaemon, boxes: tuple[Box, Box]) -> None:
    a, _ = boxes
    with Client(daemon.socket) as c:
        grader = c.mint_token(a.id, role="grader")
    _refused(daemon, _request(grader, a.id, a.session), 403, "forbidden")


def test_sandbox_a_token_cannot_reach_sandbox_b(daemon: RealDaemon, boxes: tuple[Box, Box]) -> None:
    a, b = boxes
    _refused(daemon, _request(a.token, b.id, b.session), 403, "forbidden")
    # B's session under A's id: A's token is good for A, and B's session is not A's
    _refused(daemon, _request(a.token, a.id, b.session), 404, "session_not_found")


@pytest.mark.parametrize(
    "session",
    ["..", ".", f"../{'x'}", "a/b", "x" * 200, "sess\x00ion", "%2e%2e", " ", ""],
)
def test_odd_session_ids_are_refused(daemon: RealDaemon, boxes: tuple[Box, Box], session: str) -> None:
    a, _ = boxes
    _refused(daemon, _request(a.token, a.id, session), 400, "bad_request")


@pytest.mark.parametrize("sandbox", ["..", ".", "a/../b"])
def test_odd_sandbox_ids_are_refused(daemon: RealDaemon, boxes: tuple[Box, Box], sandbox: str) -> None:
    a, _ = boxes
    _refused(daemon, _request(a.token, sandbox, a.session), 403, "forbidden")  # not the token's sandbox
    _refused(daemon, _request(os.environ["RUNTIME_ADMIN_TOKEN"], sandbox, a.session), 400, "bad_request")


@pytest.mark.parametrize(
    "payload",
    [
        b"{not json",
        b"\xff\xfe\x00",
        b"[]",
        b'"a string"',
        b"42",
        b"null",
        b"[" * 4000 + b"]" * 4000,  # within the size limit, beyond the parser's depth
        b'{"authorization": 1, "sandbox": "x", "session": "y"}',
    ],
    ids=["broken", "binary", "list", "string", "number", "null", "deep", "non-string-auth"],
)
def test_malformed_requests_are_refused(daemon: RealDaemon, payload: bytes) -> None:
    _refused(daemon, payload, 400, "bad_request")


def test_bad_fields_are_refused(daemon: RealDaemon, boxes: tuple[Box, Box]) -> None:
    a, _ = boxes
    for mode in ("RW", "rw ", 1, None, ["ro"]):
        _refused(daemon, _request(a.token, a.id, a.session, mode), 400, "bad_request")
    for sandbox, session in ((None, a.session), (a.id, None), ([a.id], a.session), (a.id, {"s": 1})):
        _refused(daemon, _request(a.token, sandbox, session), 400, "bad_request")


def test_an_oversize_request_is_refused(daemon: RealDaemon, boxes: tuple[Box, Box]) -> None:
    a, _ = boxes
    padded = json.loads(_request(a.token, a.id, a.session))
    padded["pad"] = "x" * HANDOFF_MAX_REQUEST
    _refused(daemon, json.dumps(padded).encode(), 400, "bad_request")


def _fds_of(pid: int) -> dict[str, str]:
    out = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out[fd] = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            pass
    return out


def _settles(daemon: RealDaemon, baseline: int) -> bool:
    assert daemon.proc is not None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if len(_fds_of(daemon.proc.pid)) <= baseline:
            return True
        time.sleep(0.05)
    return False


def test_fds_sent_with_a_request_are_not_kept(daemon: RealDaemon, boxes: tuple[Box, Box]) -> None:
    a, _ = boxes
    assert daemon.proc is not None
    pid = daemon.proc.pid
    baseline = len(_fds_of(pid))
    with tempfile.NamedTemporaryFile(prefix="handoff-bait-") as bait:
        fds = [os.open(bait.name, os.O_RDONLY) for _ in range(8)]
        try:
            reply, got = _ask(daemon, b"{garbage", fds)  # refused, fds attached
            assert reply["status"] == 400 and not got
            with _connect(daemon) as s:  # granted, fds attached
                s.sendmsg(
                    [_request(a.token, a.id, a.session)],
                    [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())],
                )
                msg, got, _, _ = socket.recv_fds(s, 8192, 4)
                assert json.loads(msg) == {"ok": True} and len(got) == 1
                for fd in got:
                    os.close(fd)
            with _connect(daemon) as s:  # two datagrams with fds: the second is never read
                for _ in range(2):
                    s.sendmsg([b"{}"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())])
                with contextlib.suppress(ConnectionResetError):  # closed with a datagram unread: a reset
                    s.recv(8192)
        finally:
            for fd in fds:
                os.close(fd)
        assert _settles(daemon, baseline), _fds_of(pid)
        assert bait.name not in _fds_of(pid).values()


def test_a_silent_client_holds_nothing_and_blocks_no_one(daemon: RealDaemon, boxes: tuple[Box, Box]) -> None:
    a, _ = boxes
    assert daemon.proc is not None
    baseline = len(_fds_of(daemon.proc.pid))
    silent = [_connect(daemon) for _ in range(20)]
    try:
        with _granted(daemon, _request(a.token, a.id, a.session)):  # served meanwhile
            pass
        for s in silent:
            assert s.recv(8192) == b""  # closed unanswered after the broker's timeout
    finally:
        for s in silent:
            s.close()
    assert _settles(daemon, baseline)


def test_many_requests_at_once(daemon: RealDaemon, boxes: tuple[Box, Box]) -> None:
    a, b = boxes
    assert daemon.proc is not None
    baseline = len(_fds_of(daemon.proc.pid))
    results: list[str] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        if i % 2:
            reply, fds = _ask(daemon, _request(a.token, a.id, a.session, "ro"))
            outcome = "ok" if reply == {"ok": True} and len(fds) == 1 else f"bad {reply}"
        else:
            reply, fds = _ask(daemon, _request(a.token, b.id, b.session))
            outcome = "refused" if reply.get("status") == 403 and not fds else f"bad {reply}"
        for fd in fds:
            os.close(fd)
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(set(results)) == ["ok", "refused"] and len(results) == 64, results
    assert _settles(daemon, baseline)
    with _granted(daemon, _request(a.token, a.id, a.session)):
        pass


def test_a_handed_socket_cannot_command_the_holder(daemon: RealDaemon, boxes: tuple[Box, Box]) -> None:
    """Quit ('Q'), an exit code ('X') and an fd-passing attach ('A') are runtimed's alone: on a
    handed socket they end that socket only; the shell and runtimed's own view go on."""
    a, _ = boxes
    for evil in (b"Q", b"X\x00\x00\x00\x00", b"A\x00"):
        with _granted(daemon, _request(a.token, a.id, a.session)) as held:
            held.settimeout(10)
            held.send(evil)
            while held.recv(65536):  # dropped: the stream ends
                pass
    with Client(daemon.socket, token=a.token) as c:
        assert c.get_session(a.id, a.session)["exited"] is False
        with c.attach(a.id, a.session) as att:
            att.send(b"echo alive-$((6*7))\n")
            got = b""
            while b"alive-42" not in got:
                item = att.recv(timeout=20)
                assert isinstance(item, bytes)
                got += item


def _hello_pid(held: socket.socket) -> int:
    """The holder's pid, from the hello a handed socket gets first."""
    held.settimeout(20)
    return parse_hello(held.recv(RECV_MAX)).pid


def _reaches_eof(held: socket.socket) -> bool:
    """Whether the stream ends (what is still queued read first) within a generous bound."""
    held.settimeout(30)
    try:
        while held.recv(RECV_MAX):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


def test_a_handed_socket_ends_with_its_session(daemon: RealDaemon, boxes: tuple[Box, Box]) -> None:
    """Removing a session ends its holder, and with it every socket handed for it: nothing
    handed earlier outlives the shell it typed into."""
    a, _ = boxes
    with Client(daemon.socket) as c:
        sid = str(c.create_session(a.id, ["/bin/sh", "-i"])["session_id"])
        with _granted(daemon, _request(a.token, a.id, sid)) as held:
            _hello_pid(held)
            c.remove_session(a.id, sid)
            assert _reaches_eof(held), "a handed socket outlived its removed session"
    _refused(daemon, _request(a.token, a.id, sid), 404, "session_not_found")


def test_a_handed_socket_ends_with_its_sandbox(daemon: RealDaemon) -> None:
    with cleaning_client(daemon.socket) as c:
        box = Box(c)
        with _granted(daemon, _request(box.token, box.id, box.session)) as held:
            holder = _hello_pid(held)
            c.remove_sandbox(box.id)
            assert _reaches_eof(held), "a handed socket outlived its removed sandbox"
        assert not os.path.exists(f"/proc/{holder}"), "the holder outlived its sandbox"
        _refused(daemon, _request(box.token, box.id, box.session), 404)


def test_nothing_in_the_sandbox_holds_a_handed_socket_or_a_holders(daemon: RealDaemon, boxes: tuple[Box, Box]) -> None:
    """A student is root in their sandbox and reads /proc there: no process of theirs, not even
    a shell started after the handoff, may hold the handed socket's ends or any socket of the
    holder (its control and listening sockets)."""
    a, _ = boxes
    with Client(daemon.socket) as c, _granted(daemon, _request(a.token, a.id, a.session)) as held:
        holder = _hello_pid(held)
        secret = {f"socket:[{os.fstat(held.fileno()).st_ino}]"}
        secret |= {link for link in _fds_of(holder).values() if link.startswith("socket:")}
        later = str(c.create_session(a.id, ["/bin/sh", "-i"])["session_id"])
        try:
            # the student's view: every process of the sandbox, from inside
            script = 'for f in /proc/[0-9]*/fd/*; do l=$(readlink "$f") && echo "$f $l"; done'
            seen = c.exec(a.id, ["/bin/sh", "-c", script]).stdout_text
            # and the host's, of every process in the sandbox's pid namespace
            init = c.get_sandbox(a.id)["pid"]
            ns = os.readlink(f"/proc/{init}/ns/pid")
            inside: list[int] = []
            for entry in filter(str.isdigit, os.listdir("/proc")):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{entry}/ns/pid") == ns:
                        inside.append(int(entry))
            from_host: set[str] = set()
            for pid in inside:
                with contextlib.suppress(OSError):  # one that ended meanwhile
                    from_host |= set(_fds_of(pid).values())
        finally:
            c.remove_session(a.id, later)
    assert "/dev/pts/" in seen, f"the shells' terminals are not in the listing: it proves nothing\n{seen}"
    leaked = [line for line in seen.splitlines() if line.split(" ", 1)[-1] in secret]
    assert not leaked, leaked
    assert len(inside) >= 3, inside  # init, the two shells (and the exec): else this proves nothing
    assert not from_host & secret, from_host & secret
