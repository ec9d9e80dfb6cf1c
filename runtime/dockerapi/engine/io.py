"""Containers' processes and their output (moby's ``daemon/attach.go``, ``logs.go``, the
stream copiers): the pumps on the engine's watcher, stdin, TTY size, ``logs``, ``attach``,
reaping; output taken back from a holder after a restart."""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import struct
import termios
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from runtime.dockerapi.engine.core import EngineBase, _Container, log
from runtime.dockerapi.engine.streams import Stream, _lines, _Output, _pidfd_getfd
from runtime.kernel.clock import micro_ts


class ProcessIO(EngineBase):
    @staticmethod
    def _set_winsize(fd: int, rows: int, cols: int) -> None:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def _pump(
        self, out: _Output | Stream, fd: int, stream: int, done: Callable[[], None] | None = None
    ) -> threading.Event:
        """Copy ``fd`` to ``out`` until EOF/EIO (on the engine's watcher thread); the event
        returned is set once ``fd`` is closed. ``Engine.detach`` stops it between two reads,
        so no chunk read is left unwritten."""
        ended = threading.Event()

        def ready() -> bool:
            try:
                data = os.read(fd, 65536)
            except InterruptedError:
                return True
            except OSError:
                return False  # EIO: the PTY's other side is gone
            if not data:
                return False
            if isinstance(out, _Output):
                out.write(stream, data)
                full = out.full()
            else:
                out.push((stream, data))
                full = [out] if out.over() else []
            if full:  # a reader is behind: stop reading until it has caught up (STREAM_HIGH)
                self._watcher.pause(fd)
                for s in full:
                    s.when_drained(lambda: self._watcher.resume(fd))
            return True

        def finish() -> None:
            with contextlib.suppress(OSError):
                os.close(fd)
            ended.set()
            if done is not None:
                done()

        self._watcher.add(fd, ready, finish)
        return ended

    def _stdin_writer(self, c: _Container) -> Callable[[bytes], None]:
        def write(data: bytes) -> None:
            fd = c.pty if c.pty is not None else c.stdin_fd
            if fd is None:
                return
            view = memoryview(data)
            while view:
                try:
                    n = os.write(fd, view)
                except BlockingIOError:
                    select.select([], [fd], [], 1.0)
                    continue
                except OSError:
                    return
                view = view[n:]

        return write

    def _close_container_stdin(self, c: _Container) -> None:
        with self._lock:
            fd, c.stdin_fd = c.stdin_fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def logs(
        self,
        cid: str,
        *,
        follow: bool,
        stdout: bool,
        stderr: bool,
        since: float = 0,
        until: float = 0,
        tail: int | None = None,
        timestamps: bool = False,
        cancel: threading.Event | None = None,
    ) -> Iterator[tuple[int, bytes]]:
        c = self._get(cid)
        assert c.out is not None
        out = c.out
        live: Stream | None = None
        upto: int | None = None
        if follow:
            live = Stream(tty=c.tty)
            upto, idle = out.subscribe(live)
            if idle:  # nothing running: no more output will come
                out.unsubscribe(live)
                live = None
        want = {1} if stdout else set()
        if stderr:
            want.add(2)

        def fmt(t: float, data: bytes) -> bytes:
            return (micro_ts(t).encode() + b" " + data) if timestamps else data

        def gen() -> Iterator[tuple[int, bytes]]:
            try:
                recs = [
                    r
                    for r in _lines(out.records(upto))
                    if r[1] in want and r[0] >= since and (not until or r[0] <= until)
                ]
                if tail is not None and tail >= 0:
                    recs = recs[len(recs) - tail :] if tail else []
                for t, s, data in recs:
                    yield s, fmt(t, data)
                if live is None or (until and until < time.time()):
                    return
                while True:
                    if cancel is not None and cancel.is_set():
                        return
                    try:
                        item = live.read(timeout=0.5)
                    except TimeoutError:
                        continue
                    if item is None:
                        return
                    if item[0] in want:
                        yield item[0], fmt(time.time(), item[1])
            finally:
                if live is not None:
                    out.unsubscribe(live)

        return gen()

    def attach(self, cid: str, *, stdin: bool, stdout: bool, stderr: bool, logs: bool, stream: bool) -> Stream:
        c = self._get(cid)
        assert c.out is not None
        out = c.out
        want = ({1} if stdout else set()) | ({2} if stderr else set())
        s = Stream(
            tty=c.tty,
            write=self._stdin_writer(c) if stdin and c.config.get("OpenStdin") else None,
            close_stdin=(lambda: self._close_container_stdin(c)) if stdin and c.config.get("StdinOnce") else None,
        )
        inner = Stream(tty=c.tty)
        upto = out.subscribe(inner)[0] if stream else None
        if not stream:
            inner.push(None)

        def forward() -> None:
            if logs:
                for _t, st, data in out.records(upto):
                    if st in want:
                        s.push((1 if c.tty else st, data))
            while True:
                try:
                    item = inner.read(timeout=1.0)
                except TimeoutError:
                    if s._closed:
                        break
                    continue
                if item is None:
                    break
                if item[0] in want:
                    while s.over():  # the client reads slowly: inner fills, the pump pauses
                        s.wait_room(1.0)
                    s.push(item)
            out.unsubscribe(inner)
            s.push(None)

        def detach() -> None:
            out.unsubscribe(inner)
            inner.push(None)

        s._on_close = detach
        threading.Thread(target=forward, daemon=True, name=f"attach-{c.id[:12]}").start()
        return s

    def resize(self, cid: str, *, height: int, width: int) -> None:
        c = self._get(cid)
        pty = c.pty
        if pty is not None:  # a stopped container's, or a non-TTY one's: nothing to resize
            with contextlib.suppress(OSError):  # closed by the pump as the process ended
                self._set_winsize(pty, height, width)

    @staticmethod
    def _reap(pid: int, timeout: float) -> int | None:
        """Wait (pidfd, bounded) for ``pid`` to end; its exit status if it was our child."""
        try:
            pfd = os.pidfd_open(pid)
        except OSError:
            pfd = -1
        if pfd >= 0:
            try:
                select.select([pfd], [], [], timeout)
            finally:
                os.close(pfd)
        try:
            got, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return None
        if got == 0:
            return None
        return os.waitstatus_to_exitcode(status)

    def _watch_pid(self, pid: int, on_exit: Callable[[], None]) -> None:
        """``on_exit`` on the engine's exit worker once ``pid`` has ended (its pidfd on the
        watcher: no thread per process). A pid already gone is handed over at once."""
        try:
            pfd = os.pidfd_open(pid)
        except OSError:
            self._worker.submit(on_exit)
            return

        def ready() -> bool:
            self._worker.submit(on_exit)
            return False

        self._watcher.add(pfd, ready, lambda: os.close(pfd))

    @staticmethod
    def _await_exec(pid: int, timeout: float = 2.0) -> None:
        """Return once the container's init has exec'd its command.

        `runc start` returns when it has told runc's init to go on, not when the command
        runs: until then the process is "runc:[2:INIT]" and, while it execs, has no
        command line. `docker top` or `exec` right after `run -d` must see the command."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                return  # reaped already: its waiter reports the exit
            comm, _, rest = stat.partition(" (")[2].rpartition(") ")
            if rest[:1] in ("Z", "X") or (cmdline and not comm.startswith("runc:")):
                return  # exec'd, or exited (a zombie has no command line)
            time.sleep(0.001)

    def _take_back_output(self, c: _Container) -> bool:
        """After a restart: the output descriptors from the container's holder, pumped again."""
        if not self._holder_alive(c) or not c.holder_fds:
            return False
        got: dict[str, int] = {}
        try:
            pidfd = os.pidfd_open(c.holder)
            try:
                for role, num in c.holder_fds.items():
                    got[role] = _pidfd_getfd(pidfd, num)
            finally:
                os.close(pidfd)
        except OSError as exc:
            for fd in got.values():
                os.close(fd)
            log.warning("container %s: cannot take its output back from holder %d: %s", c.id[:12], c.holder, exc)
            return False
        c.out = c.out or _Output(self._dir(c.id) / "container.log")
        c.out.begin()
        if "pty" in got:
            c.pty = got["pty"]
            c.pumps = [self._pump(c.out, got["pty"], 1)]
        else:
            c.pumps = [self._pump(c.out, got[role], n) for role, n in (("out", 1), ("err", 2))]
        return True
