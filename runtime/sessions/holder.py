"""PTY holders: the per-session process that keeps a shell's terminal across runtimed restarts.

Why
    A PTY session's shell must survive a restart of runtimed (an upgrade, a crash):
    the student keeps their shell, its working directory, variables and jobs. A
    PTY lives as long as some process holds its master; if runtimed held it, the
    kernel would close it when runtimed exits and the shell would get SIGHUP. So
    each session's master is held by a tiny process of its own, as containerd-shim
    and conmon hold a container's stdio: ``kl-pty-holder``, a static C program
    (``runtime/sandbox/agent/kl-pty-holder.c``, built by ``make agent``). It costs
    about 100 KiB of RSS plus the scrollback actually filled, where a Python holder
    would cost ~10 MiB per shell; a class of 50 with 4 shells each is 200 holders.

What it is given and what it may do
    runtimed spawns the shell as today (``SandboxManager.spawn(tty=True)``: the
    exec agent or ``runc exec`` makes the PTY and hands runtimed the master), then
    starts the holder in its own session (``start_new_session``) with three fds
    (``pass_fds``, everything else closed): the master, a pidfd of the shell, and
    a listening ``SOCK_SEQPACKET`` socket runtimed bound at
    ``<root>/sessions/<sandbox>/<session>.sock`` -- under runtimed's own state
    directory, 0700 directories and a 0600 socket, root's, never beneath a
    sandbox's directory (whose contents a student controls) and never reachable
    from inside a sandbox or by the platform's unprivileged user. runtimed then
    closes its own copy of the master. The holder runs as root but executes
    nothing: it copies bytes between the master and its clients -- runtimed, its
    one control client, and the direct clients runtimed hands it (below) -- and
    accepts only root peers (SO_PEERCRED) on its socket. The message format is in
    the C file's header comment; ``Session`` (``runtime.sessions.pty``) is the
    control client.

Direct clients (protocol 2)
    runtimed's event loop also serves every lab cluster of a class, so a keystroke
    and its echo relayed through it wait behind them (#13). Instead, after runtimed
    has authorized a terminal attach as it always did, it makes a socketpair
    (``AF_UNIX``, ``SOCK_SEQPACKET``), hands one end to the holder
    (``HolderLink.attach_direct``: an 'A' message carrying the fd in
    ``SCM_RIGHTS``) and the other to the web tier, then closes its copy. The
    holder serves that end like a client of its own -- the hello, the replay, live
    output, 'E' at the end -- and takes from it only input and resizes (none at all
    from a read-only one); any other message drops that client alone. runtimed
    stays the control client: it still reads every byte (its own scrollback, exit
    tracking), and it alone may quit the holder or pass it fds. Direct clients
    survive runtimed going away, so a handed-off terminal keeps working through a
    runtimed restart. Limits and trust rules: the C file's header comment (at
    most 8 direct clients; fds are taken from the control client only and only on
    a well-formed 'A'; a direct client's fds are discarded by the kernel, never
    received). A holder started by an older runtimed speaks protocol 1: it is
    adopted as before, and ``direct_supported`` is False for it.

    The web tier speaks this protocol too, with the pure helpers below (stdlib
    only, so it may import them without runtimed's code):

    - ``input_messages(data)``: 'I' datagrams of at most ``MSG_MAX`` input bytes
      each (the holder reads datagrams of up to ``MSG_MAX`` + 64 bytes);
    - ``resize_message(rows, cols)``: 'R' u16 rows, u16 cols, host byte order
      (the holder runs on the same host);
    - ``parse_message(msg)``: one holder datagram as ``(kind, payload)``:
      ``("H", Hello)``, ``("O", bytes)``, ``("E", Exit)`` (``code`` None when
      unknown), ``("?", None)`` for a kind this version does not know (skip it).
      The payloads' types differ, so ``isinstance`` on the payload narrows too.
      ``b""`` is not a message but the end of the stream (the holder dropped the
      client, refused the attach, or exited): check for it first.
      ``parse_message`` raises ``HolderUnavailable`` on a malformed hello.

    Every datagram is one message; a client reads with ``recv(RECV_MAX)``.

Exit status
    The shell stays runtimed's child (the agent clones it with ``CLONE_PARENT``;
    runtimed is a child subreaper), so runtimed reaps it and tells the holder
    the status ('X'); the holder sees the exit on its pidfd, sends the last
    output, then 'E'. After a restart the shell is no longer anyone's child we
    know (the kernel re-parents it to the host's init), so a shell that exits
    while runtimed is down, or after runtimed re-adopted it, reports
    ``exit_code: null`` (unknown), unless the old runtimed had passed it on.
    The holder exits when runtimed says the session's end was collected ('Q'),
    when the session is removed ('Q' after killing the shell's cgroup), or 10
    minutes after the shell's exit if nobody collected it.

Restart
    A SIGTERM'd runtimed closes its holder connections without a word: holders
    keep reading their masters (20 reads a second, overwriting the oldest
    scrollback) and the shells run on. The next runtimed scans ``<root>/sessions``,
    re-adopts the holders of running sandboxes under the same session ids (the
    session's argv, creation time and exec cgroup are in ``<session>.json``
    beside the socket), and ends those of sandboxes that are gone or stopped.
    The holder replays its ring on connect, which refills runtimed's own
    scrollback; attaching then replays it to the browser exactly as before.

Deployment
    The holders must outlive runtimed's process group and service: under
    systemd, ``KillMode=process`` (as containerd's unit has) or they die with
    runtimed's cgroup. Without the binary, or if a holder cannot start, the
    session falls back to a master held in runtimed (the log says so), and
    that shell ends with runtimed as before.
"""

from __future__ import annotations

import array
import contextlib
import json
import logging
import os
import re
import select
import signal
import socket
import stat
import struct
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from runtime import errors

log = logging.getLogger(__name__)

HOLDER_BUILT = Path(__file__).resolve().parents[1] / "sandbox" / "agent" / "kl-pty-holder"
PROTO_VERSION = 2  # 2: direct clients ('A'); a holder of protocol 1 is still adopted
MIN_PROTO_VERSION = 1
DIRECT_VERSION = 2
MAX_DIRECT = 8  # direct clients one holder serves at once (the holder refuses a 9th)
MSG_MAX = 32 * 1024  # input bytes per 'I' datagram (the holder reads datagrams of up to 32 KiB + 64)
RECV_MAX = 64 * 1024 + 64
HELLO = struct.Struct("=IHHBBxxiQIxxxx")  # version, rows, cols, exited, code known, code, total, pid
EXIT = struct.Struct("=Bi")  # code known, code
CONNECT_TIMEOUT = 5.0
HOLDER_WAIT = 5.0
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_SUN_PATH_MAX = 107


class HolderUnavailable(errors.RuntimeError):
    """No holder for this session: the caller keeps the master in runtimed instead."""


@dataclass
class Hello:
    rows: int
    cols: int
    exited: bool
    code: int | None
    pid: int
    version: int = PROTO_VERSION
    total: int = 0  # output bytes the shell ever wrote (the replay is the last of them)


@dataclass
class Exit:
    """'E': the shell ended and every byte of its output was sent before this."""

    code: int | None  # None: unknown (e.g. the shell ended while runtimed was down)


def parse_hello(msg: bytes) -> Hello:
    if len(msg) < 1 + HELLO.size or msg[:1] != b"H":
        raise HolderUnavailable(f"holder sent no valid hello ({msg[:16]!r})")
    version, rows, cols, exited, known, code, total, pid = HELLO.unpack_from(msg, 1)
    if not MIN_PROTO_VERSION <= version <= PROTO_VERSION:
        raise HolderUnavailable(f"holder speaks protocol {version}, runtimed {MIN_PROTO_VERSION}..{PROTO_VERSION}")
    return Hello(
        rows=rows,
        cols=cols,
        exited=bool(exited),
        code=code if known else None,
        pid=pid,
        version=version,
        total=total,
    )


def parse_exit(msg: bytes) -> int | None:
    if len(msg) < 1 + EXIT.size:
        return None
    known, code = EXIT.unpack_from(msg, 1)
    return int(code) if known else None


Message = (
    tuple[Literal["H"], Hello] | tuple[Literal["O"], bytes] | tuple[Literal["E"], Exit] | tuple[Literal["?"], None]
)


def parse_message(msg: bytes) -> Message:
    """One holder -> client datagram (not ``b""``, the end of the stream) as ``(kind, payload)``."""
    kind = msg[:1]
    if kind == b"O":
        return ("O", msg[1:])
    if kind == b"E":
        return ("E", Exit(parse_exit(msg)))
    if kind == b"H":
        return ("H", parse_hello(msg))
    if not msg:
        raise ValueError("b'' is the end of the stream, not a message")
    return ("?", None)


def input_messages(data: bytes) -> list[bytes]:
    return [b"I" + data[i : i + MSG_MAX] for i in range(0, len(data), MSG_MAX)]


def resize_message(rows: int, cols: int) -> bytes:
    return b"R" + struct.pack("=HH", rows, cols)


def code_message(code: int) -> bytes:
    return b"X" + struct.pack("=i", code)


def attach_message(read_only: bool) -> bytes:
    return b"A" + bytes([1 if read_only else 0])


QUIT = b"Q"


@dataclass
class HolderLink:
    """runtimed's connection to one holder (non-blocking once returned)."""

    sock: socket.socket
    hello: Hello
    sock_path: Path
    meta: dict[str, Any]
    popen: subprocess.Popen[bytes] | None = None  # set when this runtimed started it
    pidfd: int = -1
    closed: bool = field(default=False)

    @property
    def fd(self) -> int:
        return self.sock.fileno()

    @property
    def pid(self) -> int:
        return self.hello.pid

    @property
    def direct_supported(self) -> bool:
        """The holder serves direct clients ('A', protocol 2)."""
        return self.hello.version >= DIRECT_VERSION

    def send(self, msg: bytes) -> bool:
        """One datagram; False if it would block (the caller queues it)."""
        try:
            self.sock.send(msg)
        except BlockingIOError:
            return False
        except OSError:
            pass  # the holder is gone: the reader sees EOF
        return True

    def attach_direct(self, sock: socket.socket, read_only: bool) -> bool:
        """Hand ``sock`` (one end of a fresh ``AF_UNIX`` ``SOCK_SEQPACKET`` socketpair) to the
        holder as a direct client; non-blocking. True once the 'A' is queued to the holder
        (which still refuses it when it serves 8 direct clients already: the other end then
        sees EOF before any hello); False if the socket is full, the holder is gone or
        speaks protocol 1. ``sock`` stays open: the caller closes its copy either way. The
        'A' is sent at once, ahead of any datagram the caller still queues for the holder."""
        if self.closed or not self.direct_supported:
            return False
        fds = array.array("i", [sock.fileno()])
        try:
            self.sock.sendmsg(
                [attach_message(read_only)],
                [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds.tobytes())],
                socket.MSG_DONTWAIT,
            )
        except OSError:  # BlockingIOError too: the caller falls back to relaying
            return False
        return True

    def close(self) -> None:
        """Drop the connection only: the holder and the shell keep running."""
        if not self.closed:
            self.closed = True
            self.sock.close()

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        if self.pidfd < 0:
            return False
        # a pidfd is readable once the process has exited (a zombie, too: not our child)
        p = select.poll()
        p.register(self.pidfd, select.POLLIN)
        return not p.poll(0)

    def end(self, timeout: float = HOLDER_WAIT) -> None:
        """Tell the holder to quit, wait for it (bounded), SIGKILL it after; remove its files.
        Blocking: call it in a thread."""
        if not self.closed:
            self.sock.setblocking(True)
            self.sock.settimeout(1.0)
            with contextlib.suppress(OSError):
                self.sock.send(QUIT)
        self.close()
        deadline = time.monotonic() + timeout
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if self.alive():
            log.warning("pty holder %d did not quit; killing it", self.pid)
            self._kill()
        if self.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout)
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1
        remove_files(self.sock_path)

    def _kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, OSError):
            if self.popen is not None:
                self.popen.kill()
            elif self.pidfd >= 0:
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
        deadline = time.monotonic() + HOLDER_WAIT
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.01)


def remove_files(sock_path: Path) -> None:
    for p in (sock_path, sock_path.with_suffix(".json"), sock_path.with_suffix(".log")):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def _private_dir(path: Path) -> Path:
    """``path`` as a root-owned 0700 directory that is not a symlink."""
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise HolderUnavailable(f"{path} is not a directory of ours")
    if st.st_mode & 0o077:
        path.chmod(0o700)
    return path


@dataclass
class Found:
    """A holder's files on disk (from ``HolderStore.scan``)."""

    sandbox_id: str
    session_id: str
    sock_path: Path
    meta: dict[str, Any]


class HolderStore:
    """The holders' directory (``<root>/sessions``): start, find and connect holders."""

    def __init__(self, root: Path, *, binary: Path | None = None) -> None:
        self.root = root
        if binary is None and HOLDER_BUILT.is_file() and os.access(HOLDER_BUILT, os.X_OK):
            binary = HOLDER_BUILT
        self.binary = binary
        root.parent.mkdir(parents=True, exist_ok=True)
        _private_dir(root)
        if self.binary is None:
            log.warning(
                "pty holder %s is missing (run runtime/sandbox/agent/build.sh): shells end when runtimed restarts",
                HOLDER_BUILT,
            )

    def sandbox_dir(self, sandbox_id: str) -> Path:
        if not _NAME.fullmatch(sandbox_id):
            raise errors.BadRequest(f"bad sandbox id {sandbox_id!r}")
        return self.root / sandbox_id

    def start(
        self,
        sandbox_id: str,
        session_id: str,
        *,
        master: int,
        shell_pid: int,
        scrollback: int,
        meta: dict[str, Any],
    ) -> HolderLink:
        """Start a holder for ``master`` and connect to it (blocking: run it in a thread).
        On success the caller closes its own copy of ``master``."""
        if self.binary is None:
            raise HolderUnavailable("the pty holder binary is not built")
        d = _private_dir(self.sandbox_dir(sandbox_id))
        sock_path = d / f"{session_id}.sock"
        if len(os.fsencode(sock_path)) > _SUN_PATH_MAX:
            raise HolderUnavailable(f"{sock_path} is too long for a unix socket")
        try:
            pidfd = os.pidfd_open(shell_pid)
        except OSError as e:
            raise HolderUnavailable(f"cannot open a pidfd of the shell ({e})") from None
        lsock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        logfd = -1
        popen: subprocess.Popen[bytes] | None = None
        try:
            lsock.bind(str(sock_path))
            sock_path.chmod(0o600)  # the 0700 directory already keeps everyone else out
            lsock.listen(8)
            _write_json(sock_path.with_suffix(".json"), meta)
            logfd = os.open(
                sock_path.with_suffix(".log"),
                os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,
            )
            popen = subprocess.Popen(
                [
                    str(self.binary),
                    str(lsock.fileno()),
                    str(master),
                    str(pidfd),
                    str(scrollback),
                    sandbox_id,
                    session_id,
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=logfd,
                pass_fds=(lsock.fileno(), master, pidfd),
                close_fds=True,
                start_new_session=True,
                cwd="/",
                env={},
            )
        except OSError as e:
            remove_files(sock_path)
            raise HolderUnavailable(f"cannot start the pty holder: {e}") from None
        finally:
            lsock.close()
            os.close(pidfd)
            if logfd >= 0:
                os.close(logfd)
        try:
            link = self.connect(sock_path, meta, popen=popen)
        except BaseException:
            with contextlib.suppress(OSError):
                popen.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                popen.wait(HOLDER_WAIT)
            remove_files(sock_path)
            raise
        if link.pid != popen.pid:
            link.end()
            raise HolderUnavailable(f"holder said pid {link.pid}, started {popen.pid}")
        return link

    @staticmethod
    def connect(
        sock_path: Path,
        meta: dict[str, Any],
        *,
        popen: subprocess.Popen[bytes] | None = None,
        timeout: float = CONNECT_TIMEOUT,
    ) -> HolderLink:
        """Connect to a holder and read its hello (blocking, bounded)."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            s.settimeout(timeout)
            s.connect(str(sock_path))
            hello = parse_hello(s.recv(RECV_MAX))
            s.setblocking(False)
        except (OSError, HolderUnavailable) as e:
            s.close()
            raise HolderUnavailable(f"no holder answers on {sock_path}: {e}") from None
        pidfd = -1
        if popen is None:
            try:
                pidfd = os.pidfd_open(hello.pid)
            except OSError as e:
                s.close()
                raise HolderUnavailable(f"holder pid {hello.pid}: {e}") from None
        return HolderLink(sock=s, hello=hello, sock_path=sock_path, meta=meta, popen=popen, pidfd=pidfd)

    def scan(self) -> list[Found]:
        """Every holder's files under the store (sockets with their metadata)."""
        out: list[Found] = []
        try:
            boxes = sorted(self.root.iterdir())
        except OSError:
            return out
        for d in boxes:
            if not _NAME.fullmatch(d.name) or d.is_symlink() or not d.is_dir():
                continue
            for sock_path in sorted(d.glob("*.sock")):
                meta: dict[str, Any] = {}
                with contextlib.suppress(OSError, ValueError):
                    loaded = json.loads(sock_path.with_suffix(".json").read_text())
                    if isinstance(loaded, dict):
                        meta = loaded
                out.append(Found(d.name, sock_path.stem, sock_path, meta))
        return out

    def end_found(self, found: Found) -> None:
        """End a holder nobody will adopt (its sandbox is gone); blocking."""
        try:
            link = self.connect(found.sock_path, found.meta, timeout=2.0)
        except HolderUnavailable:
            remove_files(found.sock_path)
            return
        log.info("ending pty holder %d of %s/%s (sandbox gone)", link.pid, found.sandbox_id, found.session_id)
        link.end()
        with contextlib.suppress(OSError):
            found.sock_path.parent.rmdir()  # when it was the sandbox's last

    def clear_sandbox(self, sandbox_id: str) -> None:
        """End whatever holders are left for a sandbox, then remove its directory; blocking."""
        try:
            d = self.sandbox_dir(sandbox_id)
        except errors.BadRequest:
            return
        if not d.is_dir() or d.is_symlink():
            return
        for found in self.scan():
            if found.sandbox_id == sandbox_id:
                self.end_found(found)
        for p in d.iterdir():
            with contextlib.suppress(OSError):
                p.unlink()
        with contextlib.suppress(OSError):
            d.rmdir()


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, json.dumps(data).encode())
    finally:
        os.close(fd)
    tmp.replace(path)
