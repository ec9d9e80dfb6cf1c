"""kl-pty-holder's direct clients (protocol 2, design in runtime.sessions.holder).

The real binary, driven from here with a local PTY: the test makes the PTY and a shell
on it (this process is the shell's parent, as runtimed is), the holder's listening
socket in a temporary directory, and connects as the control client (tests run as root)
through ``HolderStore.connect``, so ``HolderLink.attach_direct`` is exercised too. No
sandbox, no runtimed: no lock needed. The attacks are in
tests/security/test_holder_direct_attacks.py.
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import os
import select
import signal
import socket
import struct
import subprocess
import termios
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from runtime.sessions.holder import (
    EXIT,
    HELLO,
    HOLDER_BUILT,
    MAX_DIRECT,
    Exit,
    Hello,
    HolderLink,
    HolderStore,
    HolderUnavailable,
    code_message,
    input_messages,
    parse_hello,
    parse_message,
    resize_message,
)

WAIT = 20.0  # seconds before a wait gives up: a failure, never a measurement
SCROLLBACK = 64 * 1024


def wait_for(pred: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def outq(sock: socket.socket) -> int:
    """Bytes this end has sent that the peer has not read yet (SIOCOUTQ)."""
    buf = array.array("i", [0])
    fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, buf)
    return buf[0]


@dataclass
class Peer:
    """One client of the holder (control or direct) with what it has received."""

    sock: socket.socket
    hello: Hello | None = None
    out: bytearray = field(default_factory=bytearray)
    exit: Exit | None = None
    eof: bool = False
    kinds: list[str] = field(default_factory=list)  # every datagram's kind, in order

    def pump(self, timeout: float = 0.0, limit: int | None = None) -> None:
        """Take what has arrived (waiting up to ``timeout`` for the first datagram), or up
        to ``limit`` output bytes."""
        wait = timeout
        while not self.eof and (limit is None or len(self.out) < limit):
            r, _, _ = select.select([self.sock], [], [], wait)
            if not r:
                return
            wait = 0.0
            try:
                msg = self.sock.recv(64 * 1024 + 64, socket.MSG_DONTWAIT)
            except BlockingIOError:
                continue
            except ConnectionResetError:
                msg = b""
            if not msg:
                self.eof = True
                return
            kind, payload = parse_message(msg)
            self.kinds.append(kind)
            if isinstance(payload, Hello):
                assert self.hello is None, "a second hello"
                self.hello = payload
            elif isinstance(payload, Exit):
                assert self.exit is None, "a second 'E'"
                self.exit = payload
            elif isinstance(payload, bytes):
                assert self.exit is None, "output after 'E'"
                self.out += payload

    def until(self, pred: Callable[[Peer], bool], what: str, timeout: float = WAIT) -> None:
        deadline = time.monotonic() + timeout
        while not pred(self):
            left = deadline - time.monotonic()
            if left <= 0 or self.eof:
                raise AssertionError(f"{what}: not seen (eof={self.eof}); got {bytes(self.out[-300:])!r}")
            self.pump(min(left, 0.2))

    def expect(self, needle: bytes) -> None:
        self.until(lambda p: needle in p.out, f"{needle!r}")

    def send(self, *msgs: bytes) -> None:
        for m in msgs:
            self.sock.send(m)

    def type(self, text: bytes) -> None:
        self.send(*input_messages(text))

    def wait_eof(self) -> None:
        self.until(lambda p: p.eof, "EOF")

    def wait_read(self) -> None:
        """Until the holder has received every datagram this end sent."""
        wait_for(lambda: outq(self.sock) == 0, "the holder to read what this client sent")


@dataclass
class Rig:
    """A shell on a PTY whose master a real kl-pty-holder holds."""

    holder: subprocess.Popen[bytes]
    shell: subprocess.Popen[bytes]
    sock_path: Path
    tty: str
    links: list[HolderLink] = field(default_factory=list)
    peers: list[Peer] = field(default_factory=list)
    _sync: int = 10

    def control(self) -> tuple[HolderLink, Peer]:
        link = HolderStore.connect(self.sock_path, {})
        self.links.append(link)
        assert link.pid == self.holder.pid
        return link, Peer(link.sock, hello=link.hello)

    def direct(self, link: HolderLink, *, read_only: bool = False) -> Peer:
        """A socketpair end handed to the holder; the other end, which the web tier would get."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            assert link.attach_direct(theirs, read_only)
        finally:
            theirs.close()
        peer = Peer(ours)
        self.peers.append(peer)
        return peer

    def winsize(self) -> tuple[int, int]:
        fd = os.open(self.tty, os.O_RDWR | os.O_NOCTTY)
        try:
            rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
        finally:
            os.close(fd)
        return rows, cols

    def sync(self, via: Peer) -> None:
        """Until the holder has handled every message ``via`` sent before: it handles each
        client's messages in order, and this resize is observable on the terminal."""
        self._sync += 1
        via.send(resize_message(self._sync, 77))
        wait_for(lambda: self.winsize() == (self._sync, 77), "the holder to handle a resize")

    def fds(self) -> set[str]:
        """The holder's fd table."""
        return set(os.listdir(f"/proc/{self.holder.pid}/fd"))

    def alive(self) -> bool:
        return self.holder.poll() is None

    def log(self) -> bytes:
        """What the holder wrote to its stderr (runtimed's ``<session>.log``)."""
        return self.sock_path.with_suffix(".log").read_bytes()


@contextlib.contextmanager
def holder_rig(tmp_path: Path) -> Iterator[Rig]:
    """A shell and its holder in ``tmp_path``; both killed at the end (pytest.skip without the binary)."""
    if not (HOLDER_BUILT.is_file() and os.access(HOLDER_BUILT, os.X_OK)):
        pytest.skip("kl-pty-holder is not built (runtime/sandbox/agent/build.sh)")
    master, slave = os.openpty()
    tty = os.ttyname(slave)
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    shell = subprocess.Popen(
        ["/bin/sh"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
        env={"PATH": "/usr/bin:/bin", "PS1": "$ ", "HOME": "/"},
    )
    os.close(slave)
    pidfd = os.pidfd_open(shell.pid)
    sock_path = tmp_path / "h.sock"
    lsock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    lsock.bind(str(sock_path))
    lsock.listen(8)
    with open(tmp_path / "h.log", "wb") as log:
        holder = subprocess.Popen(
            [str(HOLDER_BUILT), str(lsock.fileno()), str(master), str(pidfd), str(SCROLLBACK), "test", "s"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
            pass_fds=(lsock.fileno(), master, pidfd),
            start_new_session=True,
        )
    for fd in (master, pidfd):
        os.close(fd)
    lsock.close()
    r = Rig(holder=holder, shell=shell, sock_path=sock_path, tty=tty)
    try:
        yield r
    finally:
        for link in r.links:
            link.close()
        for p in r.peers:
            p.sock.close()
        for proc in (holder, shell):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(WAIT)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    with holder_rig(tmp_path) as r:
        yield r


def test_direct_clients_get_the_replay_then_live_output_and_only_read_write_ones_type(rig: Rig) -> None:
    link, control = rig.control()
    assert link.direct_supported and link.hello.version == 2
    control.type(b"echo before-''attach\n")
    control.expect(b"before-attach\r\n")

    rw = rig.direct(link)
    ro = rig.direct(link, read_only=True)
    for p in (rw, ro):
        p.expect(b"before-attach\r\n")  # the replay
        assert p.hello is not None and p.hello.pid == rig.holder.pid
        assert (p.hello.rows, p.hello.cols) == (24, 80) and not p.hello.exited
        assert p.kinds[0] == "H"

    rw.type(b"echo rw-''typed\n")
    for p in (rw, ro, control):
        p.expect(b"rw-typed\r\n")  # live, to every client

    ro.type(b"echo ro-''typed\n")
    ro.send(resize_message(40, 100))
    ro.wait_read()  # the holder handled them before anything it is sent from now on
    control.type(b"stty size; echo resize-''checked\n")
    control.expect(b"resize-checked\r\n")
    assert b"24 80\r\n" in control.out, "a read-only client resized the terminal"
    rw.send(resize_message(33, 111))
    rw.type(b"stty size; echo after-''ro\n")
    for p in (rw, ro, control):
        p.expect(b"after-ro\r\n")
        assert b"ro-typed" not in p.out and b"ro-''typed" not in p.out, "a read-only client's input reached the shell"
    assert b"33 111\r\n" in rw.out
    assert rig.winsize() == (33, 111)
    assert rig.alive() and rig.shell.poll() is None


def test_direct_clients_keep_working_while_the_control_client_goes_and_comes_back(rig: Rig) -> None:
    link, _ = rig.control()
    rw = rig.direct(link)
    ro = rig.direct(link, read_only=True)
    rw.type(b"echo one-''x\n")
    ro.expect(b"one-x\r\n")

    link.close()  # runtimed dies
    rw.type(b"echo two-''x\n")
    for p in (rw, ro):
        p.expect(b"two-x\r\n")

    link2, control2 = rig.control()  # the next runtimed adopts the holder
    control2.expect(b"two-x\r\n")  # its replay
    rw.type(b"echo three-''x\n")
    for p in (rw, ro, control2):
        p.expect(b"three-x\r\n")
    for p in (rw, ro):
        assert p.out.count(b"one-x\r\n") == p.out.count(b"two-x\r\n") == p.out.count(b"three-x\r\n") == 1
        assert not p.eof
    # and the new control client may hand off more
    late = rig.direct(link2)
    late.expect(b"three-x\r\n")


def test_a_direct_client_gets_the_real_exit_code_once_the_control_client_sends_it(rig: Rig) -> None:
    link, control = rig.control()
    rw = rig.direct(link)
    rw.type(b"echo bye; exit 7\n")
    assert rig.shell.wait(WAIT) == 7
    link.send(code_message(7))  # runtimed reaped it
    rw.until(lambda p: p.exit is not None, "'E'")
    assert rw.exit == Exit(7)
    assert b"bye\r\n" in rw.out
    control.until(lambda p: p.exit is not None, "'E' to the control client")
    # a direct client attached after the exit gets the replay, then the same end
    late = rig.direct(link)
    late.until(lambda p: p.exit is not None, "'E'")
    assert late.hello is not None and late.hello.exited and late.hello.code == 7
    assert b"bye\r\n" in late.out and late.exit == Exit(7)


def test_without_a_control_client_a_direct_client_gets_the_end_with_the_code_unknown(rig: Rig) -> None:
    link, _ = rig.control()
    rw = rig.direct(link)
    link.close()
    rw.type(b"echo bye; exit 3\n")
    rw.until(lambda p: p.exit is not None, "'E'")
    assert rw.exit == Exit(None)
    assert b"bye\r\n" in rw.out
    assert rig.shell.wait(WAIT) == 3


def test_a_direct_client_gets_the_end_even_when_the_control_client_never_sends_the_code(rig: Rig) -> None:
    link, control = rig.control()
    rw = rig.direct(link)
    rw.type(b"exit 4\n")
    assert rig.shell.wait(WAIT) == 4
    rw.until(lambda p: p.exit is not None, "'E'")  # after DIRECT_CODE_WAIT
    assert rw.exit == Exit(None)
    control.until(lambda p: p.exit is not None, "'E' to the control client")
    assert not rw.eof and rig.alive()  # the holder waits for 'Q' as before


def test_a_direct_client_that_stops_reading_holds_the_shell_and_nobody_loses_a_byte(rig: Rig) -> None:
    link, control = rig.control()
    stalled = rig.direct(link)
    reader = rig.direct(link)
    for p in (control, stalled, reader):
        p.until(lambda p: p.hello is not None, "hello")
    link.close()  # only the two direct clients hold the ring now
    total = 8 * 1024 * 1024
    # \132 is Z: the echoed command line holds none
    reader.type(f"head -c {total} /dev/zero | tr '\\0' '\\132'; echo; echo flow-''done\n".encode())
    # a holder that ignored the stalled client would let the reader have all 8 MiB; ours
    # gives it at most the ring plus what the stalled client's socket holds
    bound = SCROLLBACK + 1024 * 1024
    quiet_since = time.monotonic()
    seen = 0
    while time.monotonic() - quiet_since < 1.0:
        reader.pump(0.2, limit=bound + 1)
        assert len(reader.out) <= bound, "output went on while a client was not reading"
        if len(reader.out) != seen:
            seen, quiet_since = len(reader.out), time.monotonic()
    assert b"flow-done" not in reader.out and rig.shell.poll() is None

    deadline = time.monotonic() + 120
    while b"flow-done\r\n" not in reader.out or b"flow-done\r\n" not in stalled.out:
        assert time.monotonic() < deadline, "the output did not resume"
        stalled.pump(0.05)
        reader.pump(0.05)
    assert reader.out.count(b"Z") == total
    assert bytes(stalled.out) == bytes(reader.out)


def test_a_control_client_that_does_not_read_does_not_hold_a_direct_client(rig: Rig) -> None:
    """runtimed reads its holders slowly while nobody is attached through it (20 reads a
    second): a terminal handed off must not wait for it. The control client only skips
    ahead (its copy of the scrollback then misses what it skipped)."""
    link, control = rig.control()
    reader = rig.direct(link)
    for p in (control, reader):
        p.until(lambda p: p.hello is not None, "hello")
    total = 4 * 1024 * 1024  # 64 rings: held by a control client that counted, it would stop
    reader.type(f"head -c {total} /dev/zero | tr '\\0' '\\132'; echo; echo ctl-''done\n".encode())
    deadline = time.monotonic() + 120
    while b"ctl-done\r\n" not in reader.out:
        assert time.monotonic() < deadline, "the direct client's output stopped"
        reader.pump(0.05)
    assert reader.out.count(b"Z") == total
    control.until(lambda p: b"ctl-done\r\n" in p.out, "the control client's tail of the output")
    assert control.out.count(b"Z") < total  # it skipped what it fell behind by
    assert rig.shell.poll() is None and rig.alive()


def test_at_most_max_direct_clients(rig: Rig) -> None:
    link, _ = rig.control()
    peers = [rig.direct(link) for _ in range(MAX_DIRECT)]
    for p in peers:
        p.until(lambda p: p.hello is not None, "hello")
    peers[0].sock.close()
    rig.peers.remove(peers[0])
    again = rig.direct(link)  # a slot freed is a slot again
    again.until(lambda p: p.hello is not None, "hello")


def _hello(version: int) -> bytes:
    return b"H" + HELLO.pack(version, 24, 80, 1, 1, -3, 1234, 4321)


def test_the_web_tiers_parser_reads_every_holder_message() -> None:
    kind, hello = parse_message(_hello(2))
    assert kind == "H" and hello == Hello(rows=24, cols=80, exited=True, code=-3, pid=4321, version=2, total=1234)
    assert parse_message(b"Oabc") == ("O", b"abc")
    assert parse_message(b"E" + EXIT.pack(1, 7)) == ("E", Exit(7))
    assert parse_message(b"E" + EXIT.pack(0, 7)) == ("E", Exit(None))
    assert parse_message(b"W-a-later-kind") == ("?", None)
    with pytest.raises(ValueError):
        parse_message(b"")  # the end of the stream, which the caller checks first
    with pytest.raises(HolderUnavailable):
        parse_message(_hello(3))  # a holder newer than this code
    with pytest.raises(HolderUnavailable):
        parse_message(b"H\x02")


def test_a_protocol_1_holder_is_adopted_but_offers_no_direct_clients(tmp_path: Path) -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with ours, theirs, a, b:
        old = HolderLink(sock=ours, hello=parse_hello(_hello(1)), sock_path=tmp_path / "x.sock", meta={})
        assert not old.direct_supported
        assert old.attach_direct(a, read_only=False) is False
        theirs.setblocking(False)
        with pytest.raises(BlockingIOError):
            theirs.recv(100)  # nothing was sent to the old holder
        new = HolderLink(sock=ours, hello=parse_hello(_hello(2)), sock_path=tmp_path / "x.sock", meta={})
        assert new.direct_supported and new.attach_direct(a, read_only=True)
        msg, anc, _, _ = theirs.recvmsg(100, socket.CMSG_SPACE(4 * 4))
        assert msg == b"A\x01" and len(anc) == 1
        fds = array.array("i")
        fds.frombytes(anc[0][2])
        assert len(fds) == 1
        os.close(fds[0])
