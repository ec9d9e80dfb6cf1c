"""The engine's stream types (moby's ``daemon/logger``, ``container/stream``): ``Stream`` (an
attached client's or an exec's output, bounded, with flow control), ``_Output`` (a
container's log file and its fan-out), the stdio pipes and console socket a process gets."""

from __future__ import annotations

import json
import os
import queue
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

# Output queued in runtimed for one reader (attach, exec, logs -f) that does not keep up: past
# HIGH the process's output is no longer read (the process blocks on its full pipe, as under
# dockerd), until the reader is down to LOW. runtimed never buffers a fast writer's output
# for a slow or stalled client without bound.
STREAM_HIGH = 4 * 2**20


STREAM_LOW = 2**20


SYS_PIDFD_GETFD = 438


def _lines(records: Iterator[tuple[float, int, bytes]]) -> Iterator[tuple[float, int, bytes]]:
    """The log's chunks as lines, per stream, as dockerd's json-file log keeps them: a line
    split across chunks is one record (with the time its end was read); ``--tail N`` and
    ``-t`` then count and stamp lines."""
    partial: dict[int, tuple[float, bytes]] = {}
    for t, stream, data in records:
        head = partial.pop(stream, (t, b""))[1]
        *complete, rest = (head + data).split(b"\n")
        for line in complete:
            yield t, stream, line + b"\n"
        if rest:
            partial[stream] = (t, rest)
    for stream, (t, rest) in partial.items():
        yield t, stream, rest


def _pidfd_getfd(pidfd: int, targetfd: int) -> int:
    """A duplicate of descriptor ``targetfd`` of the process ``pidfd`` refers to (close-on-exec)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    fd = int(libc.syscall(SYS_PIDFD_GETFD, pidfd, targetfd, 0))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"pidfd_getfd: {os.strerror(err)}")
    return fd


class Stream:
    """An attached or exec'd process's I/O (see engine-interface.md).

    ``read`` returns ``(1|2, data)``, ``None`` at the end of the output, and raises
    ``TimeoutError`` when ``timeout`` passes with nothing to read. ``over()``: more than
    ``STREAM_HIGH`` bytes wait for the reader; ``when_drained(fn)`` runs ``fn`` once they
    are down to ``STREAM_LOW`` (or the stream ends or closes): the producer's resume.
    """

    def __init__(
        self,
        *,
        tty: bool,
        write: Callable[[bytes], None] | None = None,
        close_stdin: Callable[[], None] | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.tty = tty
        self._q: queue.Queue[tuple[int, bytes] | None] = queue.Queue()
        self._write = write
        self._close_stdin = close_stdin
        self._on_close = on_close
        self._ended = False
        self._closed = False
        self._qlock = threading.Lock()
        self._queued = 0  # bytes pushed and not read yet
        self._drained: list[Callable[[], None]] = []

    def push(self, item: tuple[int, bytes] | None) -> None:
        if item is not None:
            with self._qlock:
                self._queued += len(item[1])
        self._q.put(item)

    def read(self, timeout: float | None = None) -> tuple[int, bytes] | None:
        if self._ended:
            return None
        try:
            item = self._q.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError("no output yet") from None
        if item is None:
            self._ended = True
            self.release()
            return None
        with self._qlock:
            self._queued -= len(item[1])
            low = self._queued <= STREAM_LOW
        if low and self._drained:
            self.release()
        return item

    def over(self) -> bool:
        return self._queued > STREAM_HIGH and not self._closed

    def when_drained(self, fn: Callable[[], None]) -> None:
        with self._qlock:
            if self._queued > STREAM_LOW and not (self._closed or self._ended):
                self._drained.append(fn)
                return
        fn()

    def wait_room(self, timeout: float) -> None:
        """Block (a reader's own thread, never the watcher) while ``over()``, at most ``timeout``."""
        if self.over():
            room = threading.Event()
            self.when_drained(room.set)
            room.wait(timeout)

    def release(self) -> None:
        """Run the ``when_drained`` callbacks now (drained, ended, closed or unsubscribed)."""
        with self._qlock:
            fns, self._drained = self._drained, []
        for fn in fns:
            fn()

    def write(self, data: bytes) -> None:
        if self._write is not None and data and not self._closed:
            self._write(data)

    def close_stdin(self) -> None:
        if self._close_stdin is not None:
            fn, self._close_stdin = self._close_stdin, None
            fn()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.release()
        if self._on_close is not None:
            self._on_close()

    def fileno_hint(self) -> int | None:
        return None


class _Output:
    """A container's output: appended to its JSON-lines log and fanned out to subscribers."""

    def __init__(self, logfile: Path) -> None:
        self.logfile = logfile
        self.lock = threading.Lock()
        self.subscribers: list[Stream] = []
        self.listeners: list[Callable[[int, bytes], None]] = []
        self.ended = True
        self._fh: IO[str] | None = None  # the log, open for appending while a run lasts

    def begin(self) -> None:
        with self.lock:
            self.ended = False

    def write(self, stream: int, data: bytes) -> None:
        rec = {"t": time.time(), "s": stream, "d": data.decode("utf-8", "surrogateescape")}
        line = json.dumps(rec) + "\n"
        with self.lock:
            if self._fh is None:
                self._fh = open(self.logfile, "a")  # noqa: SIM115 - closed by end()
            self._fh.write(line)
            self._fh.flush()  # readers (logs, attach with logs) read the file itself
            for s in self.subscribers:
                s.push((stream, data))
            listeners = list(self.listeners)
        for fn in listeners:
            fn(stream, data)

    def end(self) -> None:
        with self.lock:
            self.ended = True
            subs, self.subscribers = self.subscribers, []
            if self._fh is not None:
                self._fh.close()
                self._fh = None
        for s in subs:
            s.push(None)

    def subscribe(self, s: Stream) -> tuple[int, bool]:
        """Register ``s`` for output until the current run ends (or, if none is running, the
        next one: attach-then-start); return the log's size then and whether it was idle."""
        with self.lock:
            size = self.logfile.stat().st_size if self.logfile.exists() else 0
            self.subscribers.append(s)
            return size, self.ended

    def unsubscribe(self, s: Stream) -> None:
        with self.lock:
            if s in self.subscribers:
                self.subscribers.remove(s)
        s.release()  # a producer paused for it goes on

    def full(self) -> list[Stream]:
        """Subscribers with more than ``STREAM_HIGH`` bytes waiting (see ``Engine._pump``)."""
        with self.lock:
            return [s for s in self.subscribers if s.over()]

    def records(self, upto: int | None = None) -> Iterator[tuple[float, int, bytes]]:
        try:
            fh = open(self.logfile, "rb")  # noqa: SIM115 - closed below, iterated lazily
        except FileNotFoundError:
            return
        with fh:
            pos = 0
            for raw in fh:
                pos += len(raw)
                if upto is not None and pos > upto:
                    break
                try:
                    rec = json.loads(raw)
                except ValueError:
                    continue
                yield float(rec["t"]), int(rec["s"]), str(rec["d"]).encode("utf-8", "surrogateescape")


def _stdio_pipes(
    with_stdin: bool, child: list[int], ours: list[int]
) -> tuple[tuple[int, int, int], int | None, int, int]:
    """Pipes for a process runc starts without a TTY: ``(its stdin, stdout, stderr)``, our
    stdin write end (or None), our stdout and stderr read ends. The child's ends are added
    to ``child`` (closed once runc has them), ours to ``ours`` (closed if the start fails)."""
    stdin_r, stdin_w = subprocess.DEVNULL, None
    if with_stdin:
        stdin_r, stdin_w = os.pipe()
        child.append(stdin_r)
        ours.append(stdin_w)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    child += [out_w, err_w]
    ours += [out_r, err_r]
    return (stdin_r, out_w, err_w), stdin_w, out_r, err_r


def _console_socket() -> tuple[socket.socket, Path]:
    """A listening socket for runc's ``--console-socket`` in a fresh root-only dir under /tmp
    (the bundle's path is too long for a unix socket)."""
    d = Path(tempfile.mkdtemp(prefix="kle-"))
    path = d / "c.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(1)
    return sock, path
