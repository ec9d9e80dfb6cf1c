"""The web tier's end of the terminal handoff (runtime.client.DirectAttach, AsyncClient.attach).

A socketpair stands in for the PTY holder (runtime.sessions.holder's datagrams), and a
listening SOCK_SEQPACKET socket in a temp directory for runtimed's handoff broker: what is
tested is the client's reading of them. The real holder and broker: tests/runtime/test_pty_handoff.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from runtime import errors
from runtime.client import DIRECT_COALESCE, AsyncClient, DirectAttach, handoff_path
from runtime.sessions import holder as holders
from tests.runtime.conftest_daemon import short_tmp

HELLO = b"H" + holders.HELLO.pack(2, 24, 80, 0, 0, 0, 0, 4242)


def _exit(code: int | None) -> bytes:
    return b"E" + holders.EXIT.pack(code is not None, code or 0)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, holder = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    holder.settimeout(5)
    yield ours, holder
    ours.close()
    holder.close()


def _pending(sock: socket.socket) -> list[bytes]:
    """Every datagram waiting on ``sock``, without blocking."""
    out = []
    sock.setblocking(False)
    try:
        while True:
            out.append(sock.recv(holders.RECV_MAX))
    except BlockingIOError:
        return out
    finally:
        sock.settimeout(5)


async def test_output_then_exit_then_end(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, holder = pair
    for msg in (HELLO, b"Oreplay ", b"Olive\r\n", _exit(7), b"Onever"):
        holder.send(msg)
    att = DirectAttach(ours, read_only=False)
    assert await att.recv(timeout=5) == b"replay live\r\n"  # waiting output joined, the hello skipped
    assert await att.recv(timeout=5) == {"type": "exit", "code": 7}
    assert att.exit_code == 7 and att.closed
    assert await att.recv(timeout=5) is None  # nothing after the exit


async def test_exit_with_an_unknown_code(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, holder = pair
    holder.send(HELLO)
    holder.send(_exit(None))
    att = DirectAttach(ours, read_only=False)
    assert await att.recv(timeout=5) == {"type": "exit", "code": None}
    assert att.exit_code is None


async def test_the_holder_going_away_ends_the_stream(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, holder = pair
    holder.send(b"Olast words")
    holder.close()
    att = DirectAttach(ours, read_only=False)
    assert await att.recv(timeout=5) == b"last words"
    assert await att.recv(timeout=5) is None
    assert att.closed and att.exit_code is None
    await att.send(b"into the void\n")  # dropped, not raised: recv() already said the end
    await att.resize(30, 100)


async def test_output_is_joined_only_up_to_the_bound(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, holder = pair
    chunk = b"x" * (DIRECT_COALESCE // 4)
    holder.setblocking(True)  # with a timeout, Python polls first: POLLOUT needs 3/4 of the buffer free
    for _ in range(5):
        holder.send(b"O" + chunk)
    holder.send(b"Otail")
    att = DirectAttach(ours, read_only=False)
    assert await att.recv(timeout=5) == chunk * 4
    assert await att.recv(timeout=5) == chunk + b"tail"


async def test_unknown_kinds_are_skipped(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, holder = pair
    for msg in (b"Zsomething newer", b"Oa", b"Hxx", b"Ob"):
        holder.send(msg)
    att = DirectAttach(ours, read_only=False)
    assert await att.recv(timeout=5) == b"a"
    assert await att.recv(timeout=5) == b"b"


async def test_recv_times_out_without_losing_a_byte(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, holder = pair
    att = DirectAttach(ours, read_only=False)
    with pytest.raises(TimeoutError):
        await att.recv(timeout=0.05)
    holder.send(b"Oafter")
    assert await att.recv(timeout=5) == b"after"


async def test_input_and_resize_are_holder_datagrams(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, holder = pair
    att = DirectAttach(ours, read_only=False)
    big = bytes(range(256)) * (holders.MSG_MAX // 128 + 1)  # more than two datagrams' worth
    await att.send(b"ls\n")
    await att.send(big)
    await att.resize(40, 132)
    await att.resize(0, 80)  # out of range: not sent (runtimed refuses it on the WebSocket too)
    got = _pending(holder)
    assert got[0] == b"Ils\n"
    inputs = got[1:-1]
    assert all(m[:1] == b"I" and len(m) <= holders.MSG_MAX + 1 for m in inputs)
    assert b"".join(m[1:] for m in inputs) == big
    assert got[-1] == b"R" + struct.pack("=HH", 40, 132)


async def test_read_only_sends_nothing(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, holder = pair
    att = DirectAttach(ours, read_only=True)
    await att.send(b"rm -rf /\n")
    await att.resize(50, 50)
    assert _pending(holder) == []
    holder.send(b"Ostill watching")
    assert await att.recv(timeout=5) == b"still watching"


async def test_iteration_and_close(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, holder = pair
    for msg in (HELLO, b"Oone", _exit(0)):
        holder.send(msg)
    async with DirectAttach(ours, read_only=False) as att:
        items = [item async for item in att]
    assert items == [b"one", {"type": "exit", "code": 0}]
    assert att.closed
    assert holder.recv(16) == b""  # closed: the holder sees the end and drops this client
    assert await att.recv(timeout=5) is None


# -- AsyncClient.attach against a stand-in broker ------------------------------------------------
Answer = Callable[[socket.socket, dict[str, object]], Awaitable[None]]


@pytest.fixture
def tmp() -> Iterator[Path]:
    d = short_tmp("rtda-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
async def broker(tmp: Path) -> AsyncIterator[Callable[[Answer], Path]]:
    """``broker(answer)``: a listening handoff socket beside ``<tmp>/rt.sock`` (no API socket:
    a fallback to the WebSocket raises Unreachable) whose connections ``answer`` serves."""
    tasks: list[asyncio.Task[None]] = []
    socks: list[socket.socket] = []

    def start(answer: Answer) -> Path:
        api = tmp / "rt.sock"
        lsock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        lsock.bind(handoff_path(api))
        lsock.listen(8)
        lsock.setblocking(False)
        socks.append(lsock)

        async def serve() -> None:
            loop = asyncio.get_running_loop()
            while True:
                conn, _ = await loop.sock_accept(lsock)
                conn.setblocking(False)
                socks.append(conn)
                request = json.loads(await loop.sock_recv(conn, 8192))
                await answer(conn, request)

        tasks.append(asyncio.get_running_loop().create_task(serve()))
        return api

    yield start
    for t in tasks:
        t.cancel()
    for s in socks:
        s.close()


async def test_attach_uses_the_handed_socket(broker: Callable[[Answer], Path]) -> None:
    seen: list[dict[str, object]] = []
    holder_ends: list[socket.socket] = []

    async def answer(conn: socket.socket, request: dict[str, object]) -> None:
        seen.append(request)
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        holder_ends.append(mine)
        mine.send(HELLO)
        mine.send(b"Oprompt$ ")
        socket.send_fds(conn, [b'{"ok": true}'], [theirs.fileno()])
        theirs.close()

    api = broker(answer)
    async with AsyncClient(api, token="kls1.t") as c:
        att = await c.attach("box1", "sess1", read_only=True)
    try:
        assert isinstance(att, DirectAttach) and att.read_only
        assert seen == [{"authorization": "Bearer kls1.t", "sandbox": "box1", "session": "sess1", "mode": "ro"}]
        assert await att.recv(timeout=5) == b"prompt$ "
    finally:
        await att.close()
        holder_ends[0].close()


@pytest.mark.parametrize(
    ("status", "code", "raised"),
    [
        (401, "unauthorized", errors.Unauthorized),
        (403, "forbidden", errors.Forbidden),
        (404, "session_not_found", errors.SessionNotFound),
    ],
)
async def test_refusals_raise_as_the_websocket_would(
    broker: Callable[[Answer], Path], status: int, code: str, raised: type[errors.RuntimeError]
) -> None:
    async def answer(conn: socket.socket, request: dict[str, object]) -> None:
        conn.send(json.dumps({"error": code, "message": "no", "status": status}).encode())

    async with AsyncClient(broker(answer), token="kls1.t") as c:
        with pytest.raises(raised):
            await c.attach("box1", "sess1")


async def test_not_offered_falls_back_to_the_websocket(broker: Callable[[Answer], Path]) -> None:
    async def answer(conn: socket.socket, request: dict[str, object]) -> None:
        conn.send(b'{"error": "not_offered", "message": "no holder", "status": 409}')

    async with AsyncClient(broker(answer), token="kls1.t") as c:
        with pytest.raises(errors.Unreachable):  # the WebSocket's socket: none in this test
            await c.attach("box1", "sess1")


async def test_a_holder_that_drops_the_handed_socket_falls_back(broker: Callable[[Answer], Path]) -> None:
    async def answer(conn: socket.socket, request: dict[str, object]) -> None:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        mine.close()  # a holder with no room for another client closes it unanswered
        socket.send_fds(conn, [b'{"ok": true}'], [theirs.fileno()])
        theirs.close()

    async with AsyncClient(broker(answer), token="kls1.t") as c:
        with pytest.raises(errors.Unreachable):
            await c.attach("box1", "sess1")


async def test_a_broker_that_never_answers_falls_back(
    broker: Callable[[Answer], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def answer(conn: socket.socket, request: dict[str, object]) -> None:
        return  # read the request, say nothing

    monkeypatch.setattr("runtime.client.HANDOFF_TIMEOUT", 0.2)
    async with AsyncClient(broker(answer), token="kls1.t") as c:
        with pytest.raises(errors.Unreachable):
            await c.attach("box1", "sess1")


async def test_without_a_broker_socket_the_websocket_is_used(tmp: Path) -> None:
    async with AsyncClient(tmp / "rt.sock", token="kls1.t") as c:
        with pytest.raises(errors.Unreachable):
            await c.attach("box1", "sess1")


def _identity(fd: int) -> str:
    """What /proc/self/fd shows for ``fd``'s open file."""
    return os.readlink(f"/proc/self/fd/{fd}")


def _open_files() -> list[str]:
    out = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            out.append(os.readlink(f"/proc/self/fd/{fd}"))
    return out


# what a confused (or hostile) broker answers, and the fds it passes with it
ODD_ANSWERS = {
    "ok-without-an-fd": (b'{"ok": true}', ["none"]),
    "ok-with-a-file": (b'{"ok": true}', ["file"]),
    "ok-with-a-stream-socket": (b'{"ok": true}', ["stream"]),
    "ok-with-a-listening-socket": (b'{"ok": true}', ["listening"]),
    "ok-with-two-silent-sockets": (b'{"ok": true}', ["seqpacket", "seqpacket"]),
    "not-an-object-with-a-socket": (b"[true]", ["seqpacket"]),
    "refused-with-a-socket": (b'{"error": "boom", "message": "no", "status": 500}', ["seqpacket"]),
    "oversize-with-a-socket": (b'{"ok": true, "pad": "' + b"x" * 70_000 + b'"}', ["seqpacket"]),
}


@pytest.mark.parametrize(("reply", "kinds"), ODD_ANSWERS.values(), ids=ODD_ANSWERS.keys())
async def test_an_odd_answer_falls_back_and_keeps_no_fd(
    broker: Callable[[Answer], Path], monkeypatch: pytest.MonkeyPatch, tmp: Path, reply: bytes, kinds: list[str]
) -> None:
    """runtimed is trusted by the web tier, but a wrong answer must cost a fallback to the
    WebSocket, never a hang, an exception of another kind or an fd left open in daphne."""
    passed: list[str] = []  # what the passed fds are, as /proc/self/fd would show them
    kept: list[socket.socket] = []  # the far ends, open (silent) while the client decides

    def make(kind: str) -> int | None:
        if kind == "none":
            return None
        if kind == "file":
            fd = os.open(tmp / "not-a-socket", os.O_RDWR | os.O_CREAT, 0o600)
        elif kind == "listening":
            s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            s.bind(str(tmp / "listening"))
            s.listen(1)
            fd = s.detach()
        else:
            a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM if kind == "stream" else socket.SOCK_SEQPACKET)
            kept.append(b)
            fd = a.detach()
        passed.append(_identity(fd))
        return fd

    async def answer(conn: socket.socket, request: dict[str, object]) -> None:
        fds = [fd for fd in map(make, kinds) if fd is not None]
        try:
            socket.send_fds(conn, [reply], fds)
        finally:
            for fd in fds:
                os.close(fd)

    monkeypatch.setattr("runtime.client.HANDOFF_TIMEOUT", 0.5)  # the silent sockets' hello
    try:
        async with AsyncClient(broker(answer), token="kls1.t") as c:
            with pytest.raises(errors.Unreachable):  # the WebSocket's socket: none in this test
                await c.attach("box1", "sess1")
        assert passed or kinds == ["none"]
        left = [f for f in _open_files() if f in passed]
        assert not left, f"the client kept what the broker passed: {left}"
    finally:
        for s in kept:
            s.close()


async def test_closing_with_a_read_pending_leaves_the_loop_nothing_of_its_fd(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """The terminal consumer's disconnect cancels the task reading the stream and closes it at
    once, in one step. The fd number is free from then on: a classmate's socket opened by a
    callback already due in the same turn of the loop gets it, and must still be woken. (With
    the loop's registration of the closed fd left behind, registering the new socket updated
    that stale entry only: the kernel was never told to watch it, and it never woke.)"""
    ours, _ = pair
    loop = asyncio.get_running_loop()
    att = DirectAttach(ours, read_only=False)
    reading = asyncio.create_task(att.recv())
    await asyncio.sleep(0)  # it waits for the holder: the loop watches the fd
    fd = ours.fileno()
    woken = asyncio.Event()
    classmate: list[socket.socket] = []

    def classmates_handoff() -> None:
        theirs, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        classmate.extend((theirs, peer))
        theirs.setblocking(False)
        loop.add_reader(theirs.fileno(), woken.set)
        peer.send(b"H")

    loop.call_soon(classmates_handoff)  # due in this turn, ahead of what cancelling schedules
    reading.cancel()
    await att.close()
    try:
        await asyncio.sleep(0)
        assert classmate and classmate[0].fileno() == fd, "the fd number was not reused: this proves nothing"
        await asyncio.wait_for(woken.wait(), 5)
    finally:
        if classmate:
            loop.remove_reader(classmate[0].fileno())
        for s in classmate:
            s.close()
    with contextlib.suppress(asyncio.CancelledError):
        await reading
