"""PTY sessions: a shell whose master lives in the daemon (design in ``runtime.sessions``)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import secrets
import struct
import termios
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, cast

from runtime import errors
from runtime.sessions.base import PtyProcess, SpawnedProcess, Spawner, close_fd, wait_process

log = logging.getLogger(__name__)

DEFAULT_SCROLLBACK = 256 * 1024
HIGH_WATERMARK = 256 * 1024  # bytes queued for one attachment before the PTY reader pauses
LOW_WATERMARK = 64 * 1024  # ... and below which it resumes
READ_CHUNK = 64 * 1024
DETACHED_READ_INTERVAL = 0.05  # with nobody attached, read at most 20 times a second
MAX_PENDING_INPUT = 1024 * 1024
MAX_EXITED_PER_SANDBOX = 8
KILL_WAIT = 5.0

Event = dict[str, Any]


def _check_size(rows: int, cols: int) -> None:
    if not (0 < rows <= 1000 and 0 < cols <= 1000):
        raise errors.BadRequest(f"terminal size {rows}x{cols} is out of range (1..1000 each)")


class Attachment:
    """One client's view of a session: a queue of output chunks and control events.

    The daemon's WebSocket handler loops ``item = await get()`` →
    send → ``sent(len)``; ``pending`` counts bytes queued or in flight, which is
    what flow control looks at.
    """

    def __init__(self, session: Session, *, read_only: bool) -> None:
        self.session = session
        self.read_only = read_only
        self.pending = 0
        self.closed = False
        self._items: deque[bytes | Event] = deque()
        self._wake = asyncio.Event()

    def _push(self, data: bytes) -> None:
        self._items.append(data)
        self.pending += len(data)
        self._wake.set()

    def _push_event(self, event: Event) -> None:
        self._items.append(event)
        self._wake.set()

    def _close(self) -> None:
        self.closed = True
        self._wake.set()

    async def get(self, max_bytes: int = READ_CHUNK) -> bytes | Event | None:
        """Next output chunk (consecutive chunks coalesced), control event, or None at the end."""
        while not self._items:
            if self.closed:
                return None
            self._wake.clear()
            await self._wake.wait()
        item = self._items.popleft()
        if isinstance(item, bytes):
            parts = [item]
            size = len(item)
            while self._items:
                nxt = self._items[0]
                if not isinstance(nxt, bytes) or size + len(nxt) > max_bytes:
                    break
                self._items.popleft()
                parts.append(nxt)
                size += len(nxt)
            return b"".join(parts) if len(parts) > 1 else item
        return item

    def sent(self, n: int) -> None:
        """``n`` bytes returned by ``get()`` have been handed to the transport."""
        self.pending = max(0, self.pending - n)
        self.session._flow_check()

    def write(self, data: bytes) -> bool:
        """Input from this client; dropped (False) for a read-only attachment."""
        if self.read_only:
            return False
        self.session.write(data)
        return True

    def resize(self, rows: int, cols: int) -> bool:
        if self.read_only:
            return False
        self.session.resize(rows, cols)
        return True

    def detach(self) -> None:
        self.session._detach(self)


class Session:
    """A process on a PTY inside a sandbox, with scrollback and any number of attachments."""

    def __init__(
        self,
        *,
        sandbox_id: str,
        session_id: str,
        argv: list[str],
        spawned: PtyProcess,
        rows: int,
        cols: int,
        scrollback: int = DEFAULT_SCROLLBACK,
        on_activity: Callable[[], None] | None = None,
        on_exit: Callable[[Session], None] | None = None,
        wait_exit: Callable[[Session], Awaitable[int]] | None = None,
        resize_hook: Callable[[int, int], None] | None = None,
    ) -> None:
        """``spawned.pty_master`` may be any stream fd (e.g. a docker attach socket) when
        ``wait_exit`` (how to learn the exit code; ``self.eof`` is set at end of stream)
        and ``resize_hook`` replace the defaults (waiting for ``spawned.proc``, TIOCSWINSZ).
        """
        if spawned.pty_master is None:
            raise errors.RuntimeError("spawn(tty=True) returned no PTY master")
        self.sandbox_id = sandbox_id
        self.session_id = session_id
        self.argv = argv
        self.spawned = spawned
        self.master: int = spawned.pty_master
        self.rows = rows
        self.cols = cols
        self.created_at = time.time()
        self.exit_code: int | None = None
        self.exited = False
        self.attachments: list[Attachment] = []
        self._scrollback_cap = scrollback
        self._ring = bytearray()
        self._on_activity = on_activity
        self._on_exit = on_exit
        self._loop = asyncio.get_running_loop()
        self._reading = False
        self._eof = False
        self._flow_blocked = False
        self._detached_pause: asyncio.TimerHandle | None = None
        self._input = bytearray()
        self._writer_added = False
        self._exit_event = asyncio.Event()
        self._wait_exit = wait_exit
        self._resize_hook = resize_hook
        self.eof = asyncio.Event()
        os.set_blocking(self.master, False)
        self._update_reader()
        self._watcher = self._loop.create_task(self._watch())

    # -- state -----------------------------------------------------------------
    @property
    def paused(self) -> bool:
        """True while flow control holds the PTY reader off (for tests and stats)."""
        return self._flow_blocked

    def info(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "sandbox_id": self.sandbox_id,
            "argv": self.argv,
            "created_at": self.created_at,
            "rows": self.rows,
            "cols": self.cols,
            "attached": len(self.attachments),
            "exited": self.exited,
            "exit_code": self.exit_code,
            "scrollback_bytes": len(self._ring),
            "paused": self._flow_blocked,
        }

    def scrollback(self) -> bytes:
        return bytes(self._ring)

    async def wait(self) -> int | None:
        await self._exit_event.wait()
        return self.exit_code

    # -- attach ----------------------------------------------------------------
    def attach(self, *, read_only: bool = False) -> Attachment:
        """Register a client; its queue starts with the scrollback replay.

        Replay and registration happen in one synchronous step, so the client
        sees every byte exactly once.  On an exited session the client gets
        the replay, then the exit event, then the end.
        """
        att = Attachment(self, read_only=read_only)
        if self._ring:
            att._push(bytes(self._ring))
        if self.exited:
            att._push_event({"type": "exit", "code": self.exit_code})
            att._close()
            return att
        self.attachments.append(att)
        self._cancel_detached_pause()
        self._flow_check()
        return att

    def _detach(self, att: Attachment) -> None:
        if att in self.attachments:
            self.attachments.remove(att)
        att._close()
        self._flow_check()

    # -- output ----------------------------------------------------------------
    def _want_read(self) -> bool:
        return not self.exited and not self._eof and not self._flow_blocked and self._detached_pause is None

    def _update_reader(self) -> None:
        want = self._want_read()
        if want and not self._reading:
            self._loop.add_reader(self.master, self._on_readable)
            self._reading = True
        elif not want and self._reading:
            self._loop.remove_reader(self.master)
            self._reading = False

    def _on_readable(self) -> None:
        try:
            data = os.read(self.master, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:  # EIO: every slave fd is closed
            data = b""
        if not data:
            self._eof = True
            self.eof.set()
            self._update_reader()
            return
        self._output(data)
        if not self.attachments and self._detached_pause is None:
            self._detached_pause = self._loop.call_later(DETACHED_READ_INTERVAL, self._detached_pause_over)
        self._flow_check()

    def _detached_pause_over(self) -> None:
        self._detached_pause = None
        self._update_reader()

    def _cancel_detached_pause(self) -> None:
        if self._detached_pause is not None:
            self._detached_pause.cancel()
            self._detached_pause = None

    def _output(self, data: bytes) -> None:
        ring = self._ring
        ring.extend(data)
        excess = len(ring) - self._scrollback_cap
        if excess > 0:
            del ring[:excess]  # CPython trims a bytearray's head in O(1)
        for att in self.attachments:
            att._push(data)
        if self._on_activity is not None:
            self._on_activity()

    def _flow_check(self) -> None:
        worst = max((a.pending for a in self.attachments), default=0)
        if self._flow_blocked:
            if worst <= LOW_WATERMARK:
                self._flow_blocked = False
        elif worst > HIGH_WATERMARK:
            self._flow_blocked = True
        self._update_reader()

    # -- input -----------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if self.exited or not data:
            return
        if self._on_activity is not None:
            self._on_activity()
        if self._input:
            if b"\x03" in data:
                # Ctrl-C overtakes input the program has not read; the line
                # discipline would flush it on SIGINT anyway.
                self._input.clear()
                data = data[data.rindex(b"\x03") :]
            elif len(self._input) + len(data) > MAX_PENDING_INPUT:
                log.warning("session %s: input backlog full, dropping input", self.session_id)
                return
            else:
                self._input += data
                return
        try:
            n = os.write(self.master, data)
        except BlockingIOError:
            n = 0
        except OSError as e:
            if e.errno != errno.EIO:
                log.warning("session %s: write failed: %s", self.session_id, e)
            return
        if n < len(data):
            self._input += data[n:]
            if not self._writer_added:
                self._loop.add_writer(self.master, self._on_writable)
                self._writer_added = True

    def _on_writable(self) -> None:
        try:
            n = os.write(self.master, self._input)
        except BlockingIOError:
            return
        except OSError:
            n = len(self._input)
        del self._input[:n]
        if not self._input:
            self._loop.remove_writer(self.master)
            self._writer_added = False

    def resize(self, rows: int, cols: int) -> None:
        _check_size(rows, cols)
        if self.exited:
            return
        if self._resize_hook is not None:
            self._resize_hook(rows, cols)
        else:
            fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.rows, self.cols = rows, cols

    # -- end -------------------------------------------------------------------
    async def _watch(self) -> None:
        if self._wait_exit is not None:
            code = await self._wait_exit(self)
        else:
            code = await wait_process(cast(SpawnedProcess, self.spawned).proc)
        self._drain()
        self._finish(code)

    def _drain(self) -> None:
        """Output the program wrote just before exiting (bounded)."""
        for _ in range(16):
            try:
                data = os.read(self.master, READ_CHUNK)
            except OSError:
                return
            if not data:
                return
            self._output(data)

    def _finish(self, code: int) -> None:
        if self.exited:
            return
        self.exited = True
        self.exit_code = code
        self._cancel_detached_pause()
        self._update_reader()
        if self._writer_added:
            self._loop.remove_writer(self.master)
            self._writer_added = False
        close_fd(self.master)  # SIGHUP to whatever is left on the terminal
        for att in self.attachments:
            att._push_event({"type": "exit", "code": code})
            att._close()
        self.attachments.clear()
        self._exit_event.set()
        log.info("session %s in %s exited with %s", self.session_id, self.sandbox_id, code)
        if self._on_exit is not None:
            self._on_exit(self)

    async def terminate(self) -> None:
        """Kill the session's process tree and wait for it (bounded)."""
        if self.exited:
            return
        try:
            await asyncio.to_thread(self.spawned.kill_tree)
        except Exception as e:  # the sandbox may be gone already
            log.warning("session %s: kill_tree failed: %s", self.session_id, e)
        try:
            await asyncio.wait_for(asyncio.shield(self._exit_event.wait()), KILL_WAIT)
        except TimeoutError:
            log.warning("session %s: process did not exit after kill", self.session_id)
            self._watcher.cancel()
            self._finish(-9)

    def close_attachments(self) -> None:
        for att in list(self.attachments):
            att._push_event({"type": "closing", "reason": "daemon shutting down"})
            att._close()
        self.attachments.clear()


class SessionRegistry:
    """All PTY sessions of the daemon, by sandbox; throttled activity touches."""

    def __init__(
        self,
        spawner: Spawner,
        *,
        scrollback: int = DEFAULT_SCROLLBACK,
        touch_interval: float = 1.0,
    ) -> None:
        self.spawner = spawner
        self.scrollback = scrollback
        self.touch_interval = touch_interval
        self._sessions: dict[str, dict[str, Session]] = {}
        self._last_touch: dict[str, float] = {}
        self._touching: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def create(
        self,
        sandbox_id: str,
        argv: list[str],
        *,
        rows: int = 24,
        cols: int = 80,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
    ) -> Session:
        _check_size(rows, cols)
        if not argv:
            raise errors.BadRequest("argv must not be empty")
        full_env = {"TERM": "xterm-256color"}
        full_env.update(env or {})
        spawned = await asyncio.to_thread(
            self.spawner.spawn,
            sandbox_id,
            argv,
            tty=True,
            env=full_env,
            cwd=cwd,
            rows=rows,
            cols=cols,
        )
        session = Session(
            sandbox_id=sandbox_id,
            session_id=secrets.token_hex(6),
            argv=list(argv),
            spawned=spawned,
            rows=rows,
            cols=cols,
            scrollback=self.scrollback,
            on_activity=lambda: self._activity(sandbox_id),
            on_exit=self._exited,
        )
        self._sessions.setdefault(sandbox_id, {})[session.session_id] = session
        self._activity(sandbox_id)
        log.info("session %s in %s started: %s", session.session_id, sandbox_id, argv)
        return session

    def get(self, sandbox_id: str, session_id: str) -> Session:
        session = self._sessions.get(sandbox_id, {}).get(session_id)
        if session is None:
            known = ", ".join(self._sessions.get(sandbox_id, {})) or "none"
            raise errors.SessionNotFound(f"no session {session_id!r} in sandbox {sandbox_id} (sessions: {known})")
        return session

    def for_sandbox(self, sandbox_id: str) -> list[Session]:
        return list(self._sessions.get(sandbox_id, {}).values())

    def all(self) -> list[Session]:
        return [s for by_id in self._sessions.values() for s in by_id.values()]

    async def remove(self, sandbox_id: str, session_id: str) -> None:
        session = self.get(sandbox_id, session_id)
        await session.terminate()
        self._sessions.get(sandbox_id, {}).pop(session_id, None)

    async def close_sandbox(self, sandbox_id: str) -> None:
        """Terminate every session of a sandbox (before it is stopped or removed)."""
        sessions = self._sessions.pop(sandbox_id, {})
        self._last_touch.pop(sandbox_id, None)
        await asyncio.gather(*(s.terminate() for s in sessions.values()))

    async def shutdown(self) -> None:
        """Daemon exit: detach every client, then end the sessions (their PTYs die with us)."""
        sessions = self.all()
        for s in sessions:
            s.close_attachments()
        await asyncio.gather(*(s.terminate() for s in sessions))
        self._sessions.clear()

    def _exited(self, session: Session) -> None:
        by_id = self._sessions.get(session.sandbox_id, {})
        exited = [s for s in by_id.values() if s.exited]
        for old in exited[:-MAX_EXITED_PER_SANDBOX]:
            by_id.pop(old.session_id, None)

    def _activity(self, sandbox_id: str) -> None:
        now = time.monotonic()
        if now - self._last_touch.get(sandbox_id, -1e9) < self.touch_interval:
            return
        if sandbox_id in self._touching:
            return
        self._last_touch[sandbox_id] = now
        self._touching.add(sandbox_id)
        task = asyncio.get_running_loop().create_task(self._touch(sandbox_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _touch(self, sandbox_id: str) -> None:
        try:
            await asyncio.to_thread(self.spawner.touch, sandbox_id)
        except Exception as e:
            log.debug("touch %s failed: %s", sandbox_id, e)
        finally:
            self._touching.discard(sandbox_id)


async def cancel_quietly(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
