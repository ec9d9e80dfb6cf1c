"""Attacks on kl-pty-holder's direct clients (protocol 2; runtime.sessions.holder).

A direct client is a socket whose other end the web tier holds, so it speaks for a
browser: it may type and resize (unless read-only) and nothing else. fds reach the
holder only from its control client (root, runtimed) on a well-formed 'A'; every other
fd must leave the holder's fd table as it was. The real binary, driven with a local
PTY (the rig of tests/runtime/test_holder_direct.py); no sandbox, no lock.
"""

from __future__ import annotations

import array
import os
import socket
import struct
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from runtime.sessions.holder import MAX_DIRECT, Exit, code_message, input_messages
from tests.runtime.test_holder_direct import WAIT, Peer, Rig, holder_rig

NOBODY = 65534


def send_with_fds(sock: socket.socket, msg: bytes, fds: list[int]) -> None:
    sock.sendmsg([msg], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())])


def _pipe_end() -> tuple[int, socket.socket | None]:
    r, w = os.pipe()
    os.close(r)
    return w, None


def _regular_file() -> tuple[int, socket.socket | None]:
    fd, path = tempfile.mkstemp()
    os.unlink(path)
    return fd, None


def _socket_end(kind: socket.SocketKind) -> tuple[int, socket.socket | None]:
    a, b = socket.socketpair(socket.AF_UNIX, kind)
    b.setblocking(False)
    return a.detach(), b  # b would get a hello if the holder served a


def _unconnected_seqpacket() -> tuple[int, socket.socket | None]:
    return socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET).detach(), None


def _listening_seqpacket() -> tuple[int, socket.socket | None]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.bind(b"\0kl-holder-test-%d" % os.getpid())
    s.listen(1)
    return s.detach(), None


def _tcp_socket() -> tuple[int, socket.socket | None]:
    return socket.socket(socket.AF_INET, socket.SOCK_STREAM).detach(), None


NOT_A_DIRECT_SOCKET: dict[str, Callable[[], tuple[int, socket.socket | None]]] = {
    "pipe": _pipe_end,
    "regular file": _regular_file,
    "stream socketpair": lambda: _socket_end(socket.SOCK_STREAM),
    "datagram socketpair": lambda: _socket_end(socket.SOCK_DGRAM),
    "unconnected seqpacket": _unconnected_seqpacket,
    "listening seqpacket": _listening_seqpacket,
    "tcp socket": _tcp_socket,
}


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    with holder_rig(tmp_path) as r:
        yield r


@pytest.fixture
def own_fds() -> Iterator[list[int]]:
    """fds this test opens to send; closed at the end."""
    fds: list[int] = []
    yield fds
    for fd in fds:
        os.close(fd)


@pytest.mark.parametrize(
    "msg, with_fd",
    [
        (b"Q", False),
        (b"X" + struct.pack("=i", 0), False),
        (b"A\x00", False),
        (b"A\x00", True),
        (b"A\x01", True),
        (b"Z", False),
        (b"H" + bytes(32), False),
    ],
    ids=["quit", "exit-code", "attach-without-fd", "attach-rw-with-fd", "attach-ro-with-fd", "unknown", "hello"],
)
def test_a_direct_client_sending_what_only_runtimed_may_is_dropped_and_nothing_else(
    rig: Rig, msg: bytes, with_fd: bool
) -> None:
    link, control = rig.control()
    bystander = rig.direct(link)
    bystander.until(lambda p: p.hello is not None, "hello")
    before = rig.fds()
    attacker = rig.direct(link)
    attacker.until(lambda p: p.hello is not None, "hello")
    if with_fd:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        send_with_fds(attacker.sock, msg, [theirs.fileno()])
        theirs.close()
    else:
        attacker.send(msg)
    attacker.wait_eof()
    if with_fd:
        # the passed socket was never served: nobody holds its other end any more
        assert ours.recv(100) == b""
        ours.close()
    assert rig.alive() and rig.shell.poll() is None
    bystander.type(b"echo still-''here\n")
    bystander.expect(b"still-here\r\n")
    control.expect(b"still-here\r\n")
    assert rig.fds() == before


def test_a_direct_client_cannot_forge_the_exit_code(rig: Rig) -> None:
    link, _ = rig.control()
    attacker = rig.direct(link)
    attacker.send(code_message(99))
    attacker.wait_eof()
    victim = rig.direct(link)
    victim.type(b"exit 5\n")
    assert rig.shell.wait(WAIT) == 5
    victim.until(lambda p: p.exit is not None, "'E'")
    assert victim.exit == Exit(None)  # runtimed never said; an attacker's 99 was not taken


@pytest.mark.parametrize("read_only", [False, True], ids=["rw", "ro"])
@pytest.mark.parametrize("count", [1, 200])
def test_fds_a_direct_client_passes_never_enter_the_holder(
    rig: Rig, own_fds: list[int], read_only: bool, count: int
) -> None:
    link, control = rig.control()
    client = rig.direct(link, read_only=read_only)
    client.until(lambda p: p.hello is not None, "hello")
    before = rig.fds()
    own_fds.extend(os.open("/dev/null", os.O_RDONLY) for _ in range(count))
    send_with_fds(client.sock, b"I" + b"echo typed-''with-fds\n", own_fds)
    send_with_fds(client.sock, struct.pack("=cHH", b"R", 30, 90), own_fds)
    client.wait_read()
    rig.sync(control)  # the holder has handled everything this client sent
    assert rig.fds() == before, "a direct client's fds reached the holder's fd table"
    assert not client.eof  # 'I' and 'R' are a direct client's to send
    if not read_only:
        client.expect(b"typed-with-fds\r\n")


def test_a_ninth_direct_client_is_refused(rig: Rig) -> None:
    link, _ = rig.control()
    before = rig.fds()
    peers = [rig.direct(link) for _ in range(MAX_DIRECT)]
    for p in peers:
        p.until(lambda p: p.hello is not None, "hello")
    ninth = rig.direct(link)
    ninth.wait_eof()
    assert ninth.hello is None and not ninth.out
    assert len(rig.fds()) == len(before) + MAX_DIRECT
    peers[-1].type(b"echo eight-''fine\n")
    for p in peers:
        p.expect(b"eight-fine\r\n")


@pytest.mark.parametrize("make", NOT_A_DIRECT_SOCKET.values(), ids=NOT_A_DIRECT_SOCKET.keys())
def test_an_attach_of_anything_but_a_connected_seqpacket_socket_is_refused(
    rig: Rig, own_fds: list[int], make: Callable[[], tuple[int, socket.socket | None]]
) -> None:
    link, control = rig.control()
    before = rig.fds()
    fd, peer = make()
    own_fds.append(fd)
    send_with_fds(link.sock, b"A\x00", [fd])
    rig.sync(control)
    assert rig.fds() == before, "the holder kept an fd it refused"
    assert b"direct client refused: not a connected unix seqpacket socket" in rig.log()
    if peer is not None:
        with peer:
            try:
                got = peer.recv(100)
            except BlockingIOError:
                got = b""
            assert not got.startswith(b"H"), "the holder served a socket it should have refused"
    assert rig.alive()
    live = rig.direct(link)  # the control client is still served
    live.until(lambda p: p.hello is not None, "hello")


@pytest.mark.parametrize(
    "msg, nsocks",
    [(b"A\x02", 1), (b"A", 1), (b"A\x00x", 1), (b"A\x00", 2), (b"A\x00", 0)],
    ids=["bad-mode", "no-mode", "long-body", "two-fds", "no-fd"],
)
def test_a_malformed_attach_is_refused_with_all_its_fds(rig: Rig, msg: bytes, nsocks: int) -> None:
    link, control = rig.control()
    before = rig.fds()
    pairs = [socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET) for _ in range(nsocks)]
    send_with_fds(link.sock, msg, [theirs.fileno() for _, theirs in pairs])
    for _, theirs in pairs:
        theirs.close()
    for ours, _ in pairs:
        p = Peer(ours)
        p.wait_eof()
        assert p.hello is None, "a malformed 'A' was served"
        ours.close()
    rig.sync(control)
    assert rig.fds() == before


@pytest.mark.parametrize("kind", [b"I", b"R", b"Z"])
@pytest.mark.parametrize("count", [1, 200])
def test_fds_on_other_control_messages_are_closed(rig: Rig, own_fds: list[int], kind: bytes, count: int) -> None:
    link, control = rig.control()
    before = rig.fds()
    own_fds.extend(os.open("/dev/null", os.O_RDONLY) for _ in range(count))
    body = {b"I": b"echo control-''input\n", b"R": struct.pack("=HH", 31, 91), b"Z": b""}[kind]
    send_with_fds(link.sock, kind + body, own_fds)
    rig.sync(control)
    assert rig.fds() == before, "the holder kept fds that came with a message other than 'A'"
    if kind == b"I":
        control.expect(b"control-input\r\n")  # the message itself is still handled


def test_a_non_root_peer_cannot_become_the_control_client(rig: Rig) -> None:
    # a second name for the holder's socket that anyone may reach, so only the holder's
    # own check (SO_PEERCRED) stands between nobody and the control connection
    d = Path(tempfile.mkdtemp(prefix="kl-holder-"))
    try:
        d.chmod(0o755)
        reachable = d / "h.sock"
        os.link(rig.sock_path, reachable)
        reachable.chmod(0o777)
        script = (
            "import socket, sys\n"
            "s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)\n"
            "s.settimeout(20)\n"
            "s.connect(sys.argv[1])\n"
            "print('connected', flush=True)\n"
            "try:\n"
            "    m = s.recv(65600)\n"
            "except ConnectionResetError:\n"
            "    m = b''\n"
            "print('hello' if m[:1] == b'H' else 'refused', flush=True)\n"
        )

        def attempt(user: int | None) -> str:
            out = subprocess.run(
                ["/usr/bin/python3", "-I", "-c", script, str(reachable)],
                user=user,
                cwd="/",
                env={},
                capture_output=True,
                timeout=WAIT + 10,
                check=True,
            )
            return out.stdout.decode()

        assert attempt(NOBODY) == "connected\nrefused\n"
        assert rig.alive()
        assert attempt(None) == "connected\nhello\n"  # root through the same path: the check is the uid
        _, control = rig.control()  # and the slot is free for runtimed
        control.send(*input_messages(b"echo ok-''root\n"))
        control.expect(b"ok-root\r\n")
    finally:
        for p in d.iterdir():
            p.unlink()
        d.rmdir()


def _log_lines(rig: Rig, needle: bytes) -> int:
    return sum(1 for line in rig.log().splitlines() if needle in line)


def test_a_flood_of_input_the_shell_does_not_read_cannot_fill_the_holders_log(rig: Rig) -> None:
    """The holder's stderr is runtimed's ``<session>.log``, a file nobody rotates on a disk the
    whole host shares: what a client can make it say once per datagram it says at most once in a
    while (a browser's 1-byte keystroke frames would otherwise write megabytes a second)."""
    link, _ = rig.control()
    typist = rig.direct(link)
    typist.type(b"stty raw -echo; echo not-''reading; sleep 600\n")
    typist.expect(b"not-reading")
    filler = input_messages(b"x" * (2 * 1024 * 1024))  # the PTY's buffers, then the holder's 1 MiB backlog
    for i, msg in enumerate(filler):
        typist.send(msg)
        if i % 8 == 7:
            typist.pump()  # the holder is never held up sending to us
    for _ in range(40_000):  # more single bytes than the last room a 32 KiB datagram left
        typist.send(b"Iy")
    typist.wait_read()
    rig.sync(typist)  # the holder has handled every datagram, and still serves this client
    dropped = _log_lines(rig, b"input backlog full")
    assert dropped >= 1, "the flood never filled the backlog: this test proves nothing"
    assert dropped <= 3, f"{dropped} log lines for one flood"
    assert rig.alive() and not typist.eof


def test_attaches_refused_over_and_over_cannot_fill_the_holders_log(rig: Rig) -> None:
    link, control = rig.control()
    peers = [rig.direct(link) for _ in range(MAX_DIRECT)]
    for p in peers:
        p.until(lambda p: p.hello is not None, "hello")
    for _ in range(500):  # a web tier asking runtimed for handoffs in a loop
        extra = rig.direct(link)
        extra.wait_eof()
        rig.peers.remove(extra)
        extra.sock.close()
    rig.sync(control)
    refused = _log_lines(rig, b"direct client refused")
    assert 1 <= refused <= 3, f"{refused} log lines for 500 refusals"
    assert rig.alive()


@pytest.mark.parametrize(
    "msg, dropped",
    [
        (b"", True),  # a zero-length datagram reads as the end: that client alone is dropped
        (b"I", False),  # input of nothing
        (b"R\x01\x00", False),  # a resize too short to hold a size
        (b"I" + b"#" * 100_000, False),  # beyond the holder's buffer: cut short, not a hang
    ],
    ids=["empty", "empty-input", "short-resize", "oversize-input"],
)
def test_datagrams_of_odd_sizes_harm_no_one(rig: Rig, msg: bytes, dropped: bool) -> None:
    link, control = rig.control()
    bystander = rig.direct(link)
    attacker = rig.direct(link)
    for p in (bystander, attacker):
        p.until(lambda p: p.hello is not None, "hello")
    before = rig.fds()
    attacker.send(msg)
    if dropped:
        attacker.wait_eof()
        assert len(rig.fds()) == len(before) - 1
    else:
        rig.sync(attacker)  # handled, and this client is still served
        assert rig.winsize()[1] == 77 and not attacker.eof and rig.fds() == before
    bystander.type(b"\necho odd-''sizes\n")  # the newline ends a line the attacker left open
    for p in (bystander, control):
        p.expect(b"odd-sizes\r\n")
    assert rig.alive() and rig.shell.poll() is None
