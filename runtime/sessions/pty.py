"""PTY sessions: a shell whose master is held by a holder process, or by the daemon
(design in ``runtime.sessions`` and ``runtime.sessions.holder``)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import functools
import logging
import os
import secrets
import socket
import struct
import termios
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

from runtime import errors
from runtime.sessions import holder as holders
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
# After a shell with a holder ended on its own, how long the holder is left running before it
# is told to quit: direct clients (``Session.handoff``; none that this daemon knows of, if an
# earlier daemon handed them off) still read the last output and 'E', which the holder sends
# them once it has the exit code ('X'), or a second after the exit without one.
HOLDER_END_GRACE = 2.0

Event = dict[str, Any]


class _AdoptedShell:
    """The shell of a session re-adopted after a restart: not our child, killed through
    its exec cgroup (``kill_cgroup``), its terminal held by the holder."""

    pty_master: int | None = None

    def __init__(self, kill: Callable[[], None] | None) -> None:
        self._kill = kill

    def kill_tree(self) -> None:
        if self._kill is not None:
            self._kill()


def _in_cgroup(pid: int, cgroup_dir: Path) -> bool:
    """Whether ``pid`` is a member of the cgroup ``cgroup_dir`` (v2 or a v1 hierarchy)."""
    try:
        return str(pid) in (cgroup_dir / "cgroup.procs").read_text().split()
    except OSError:
        return False


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
        holder: holders.HolderLink | None = None,
        created_at: float | None = None,
    ) -> None:
        """``spawned.pty_master`` may be any stream fd (e.g. a docker attach socket) when
        ``wait_exit`` (how to learn the exit code; ``self.eof`` is set at end of stream)
        and ``resize_hook`` replace the defaults (waiting for ``spawned.proc``, TIOCSWINSZ).
        With ``holder``, the master is the holder's and this session talks to it instead
        (``runtime.sessions.holder``); ``spawned`` is then only used to kill and reap.
        """
        self.holder = holder
        self.shell_pid: int | None = None  # the shell's host pid, when known (SessionRegistry)
        if holder is not None:
            fd = holder.fd
        elif spawned.pty_master is None:
            raise errors.RuntimeError("spawn(tty=True) returned no PTY master")
        else:
            fd = spawned.pty_master
        self.sandbox_id = sandbox_id
        self.session_id = session_id
        self.argv = argv
        self.spawned = spawned
        self.master: int = fd
        self.rows = rows
        self.cols = cols
        self.created_at = created_at if created_at is not None else time.time()
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
        self._held_code: int | None = None  # the exit code the holder knew ('E')
        self._to_holder: deque[bytes] = deque()  # datagrams waiting for socket space
        self._to_holder_bytes = 0
        self._holder_ended: asyncio.Task[None] | None = None
        self._terminating = False  # terminate() kills: the holder quits at once, no grace
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
            "holder_pid": self.holder.pid if self.holder is not None else None,
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

    def handoff(self, *, read_only: bool) -> socket.socket | None:
        """A direct connection to this session's holder for one client, or None (not offered).

        The client's bytes then flow between it and the holder without passing through this
        process (runtimed's loop): the holder gives it the scrollback replay, then live output,
        and takes its input and resizes unless ``read_only`` (``runtime.sessions.holder``,
        protocol v2). Offered only while the session has a holder that speaks v2, has not
        exited, and has nothing queued for the holder (the 'A' must not overtake input).
        This process keeps its own connection (scrollback, exit); it never learns when the
        direct client leaves (the holder drops it on EOF)."""
        link = self.holder
        if link is None or link.closed or not link.direct_supported or self.exited or self._eof or self._to_holder:
            return None
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)  # CLOEXEC, as every socket
        try:
            given = link.attach_direct(theirs, read_only)
        finally:
            theirs.close()  # the holder has its own copy now (or none: then the pair ends here)
        if not given:
            mine.close()
            return None
        return mine

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
        if self.holder is not None:
            if not self._read_holder():
                return
        else:
            try:
                data = os.read(self.master, READ_CHUNK)
            except BlockingIOError:
                return
            except OSError:  # EIO: every slave fd is closed
                data = b""
            if not data:
                self._end_of_output()
                return
            self._output(data)
        if not self.attachments and self._detached_pause is None:
            self._detached_pause = self._loop.call_later(DETACHED_READ_INTERVAL, self._detached_pause_over)
        self._flow_check()

    def _end_of_output(self) -> None:
        self._eof = True
        self.eof.set()
        self._update_reader()

    def _read_holder(self) -> bool:
        """Datagrams from the holder, up to READ_CHUNK output bytes; True if output came."""
        assert self.holder is not None
        got = 0
        while got < READ_CHUNK:
            try:
                msg = self.holder.sock.recv(holders.RECV_MAX)
            except BlockingIOError:
                break
            except OSError:
                msg = b""
            kind = msg[:1]
            if kind == b"O":
                got += len(msg) - 1
                self._output(msg[1:])
            elif kind == b"E" or not msg:  # the shell ended and all its output is here, or the holder died
                if msg:
                    self._held_code = holders.parse_exit(msg)
                self._end_of_output()
                break
        return got > 0

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
        if self.holder is not None:
            # the holder queues what the PTY cannot take yet (and lets Ctrl-C overtake it)
            if self._to_holder_bytes + len(data) > MAX_PENDING_INPUT:
                log.warning("session %s: input backlog full, dropping input", self.session_id)
                return
            for msg in holders.input_messages(data):
                self._send_holder(msg)
            return
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

    def _send_holder(self, msg: bytes) -> None:
        assert self.holder is not None
        if not self._to_holder and self.holder.send(msg):
            return
        self._to_holder.append(msg)
        self._to_holder_bytes += len(msg)
        if not self._writer_added:
            self._loop.add_writer(self.master, self._on_writable)
            self._writer_added = True

    def _on_writable(self) -> None:
        if self.holder is not None:
            while self._to_holder and self.holder.send(self._to_holder[0]):
                self._to_holder_bytes -= len(self._to_holder.popleft())
            if not self._to_holder:
                self._loop.remove_writer(self.master)
                self._writer_added = False
            return
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
        elif self.holder is not None:
            self._send_holder(holders.resize_message(rows, cols))
        else:
            fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.rows, self.cols = rows, cols

    # -- end -------------------------------------------------------------------
    async def _watch(self) -> None:
        if self.holder is not None:
            await self._watch_holder()
            return
        if self._wait_exit is not None:
            code = await self._wait_exit(self)
        else:
            code = await wait_process(cast(SpawnedProcess, self.spawned).proc)
        self._drain()
        self._finish(code)

    async def _watch_holder(self) -> None:
        """The holder says 'E' once the shell has exited and every byte of its output is
        sent (or its connection ends); the status comes from our own reap of the shell
        when it is our child, else from the holder (None: unknown)."""
        await self.eof.wait()
        code = self._held_code
        proc: Any = getattr(self.spawned, "proc", None)
        if proc is not None:
            try:
                code = await asyncio.wait_for(wait_process(proc), KILL_WAIT)
            except TimeoutError:  # the holder died, the shell lives on without its terminal
                log.warning("session %s: pty holder gone, killing the shell", self.session_id)
                await asyncio.to_thread(self.spawned.kill_tree)
                try:
                    code = await asyncio.wait_for(wait_process(proc), KILL_WAIT)
                except TimeoutError:
                    code = -9
            # recorded by the holder, in case we die before collecting the end
            self._send_holder(holders.code_message(code))
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

    def _finish(self, code: int | None) -> None:
        if self.exited:
            return
        self.exited = True
        self.exit_code = code
        self._cancel_detached_pause()
        self._update_reader()
        if self._writer_added:
            self._loop.remove_writer(self.master)
            self._writer_added = False
        if self.holder is not None:
            # the end is collected: the holder quits, closing the master (SIGHUP to what is left)
            self._holder_ended = self._loop.create_task(
                self._end_holder(0.0 if self._terminating else HOLDER_END_GRACE)
            )
        else:
            close_fd(self.master)  # SIGHUP to whatever is left on the terminal
        for att in self.attachments:
            att._push_event({"type": "exit", "code": code})
            att._close()
        self.attachments.clear()
        self._exit_event.set()
        log.info("session %s in %s exited with %s", self.session_id, self.sandbox_id, code)
        if self._on_exit is not None:
            self._on_exit(self)

    async def _end_holder(self, grace: float) -> None:
        assert self.holder is not None
        if grace:
            await asyncio.sleep(grace)
        await asyncio.to_thread(self.holder.end)

    async def terminate(self) -> None:
        """Kill the session's process tree and wait for it (bounded); its holder quits too."""
        if self.exited:
            await self._holder_gone()
            return
        self._terminating = True
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
        await self._holder_gone()

    async def _holder_gone(self) -> None:
        if self._holder_ended is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._holder_ended)

    def release(self) -> None:
        """Daemon exit: stop using the holder, which keeps the shell for the next daemon."""
        assert self.holder is not None
        self._watcher.cancel()
        self._cancel_detached_pause()
        if self._reading:
            self._loop.remove_reader(self.master)
            self._reading = False
        if self._writer_added:
            self._loop.remove_writer(self.master)
            self._writer_added = False
        self.holder.close()

    def close_attachments(self) -> None:
        for att in list(self.attachments):
            att._push_event({"type": "closing", "reason": "daemon shutting down"})
            att._close()
        self.attachments.clear()


class SessionRegistry:
    """All PTY sessions of the daemon, by sandbox; throttled activity touches.

    With ``holders`` (a ``HolderStore``), each session's master is handed to a holder
    process and the sessions survive the daemon (``adopt`` takes them back)."""

    def __init__(
        self,
        spawner: Spawner,
        *,
        scrollback: int = DEFAULT_SCROLLBACK,
        touch_interval: float = 1.0,
        holders: holders.HolderStore | None = None,
    ) -> None:
        self.spawner = spawner
        self.scrollback = scrollback
        self.touch_interval = touch_interval
        self.holders = holders
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
        session_id = secrets.token_hex(6)
        created_at = time.time()
        link: holders.HolderLink | None = None
        if self.holders is not None and spawned.pty_master is not None:
            cgroup_dir = getattr(spawned, "cgroup_dir", None)
            meta = {
                "sandbox_id": sandbox_id,
                "session_id": session_id,
                "argv": list(argv),
                "created_at": created_at,
                "cgroup_dir": str(cgroup_dir) if cgroup_dir is not None else None,
                "shell_pid": spawned.proc.pid,
            }
            try:
                link = await asyncio.to_thread(
                    self.holders.start,
                    sandbox_id,
                    session_id,
                    master=spawned.pty_master,
                    shell_pid=spawned.proc.pid,
                    scrollback=self.scrollback,
                    meta=meta,
                )
            except holders.HolderUnavailable as e:
                log.warning("session %s: %s; its PTY is held by runtimed (it ends with runtimed)", session_id, e)
            else:
                close_fd(spawned.pty_master)  # the holder's copy is the only one now
        session = Session(
            sandbox_id=sandbox_id,
            session_id=session_id,
            argv=list(argv),
            spawned=spawned,
            rows=rows,
            cols=cols,
            scrollback=self.scrollback,
            on_activity=lambda: self._activity(sandbox_id),
            on_exit=self._exited,
            holder=link,
            created_at=created_at,
        )
        session.shell_pid = spawned.proc.pid  # our child until it is reaped: never reused meanwhile
        self._sessions.setdefault(sandbox_id, {})[session.session_id] = session
        self._activity(sandbox_id)
        log.info(
            "session %s in %s started: %s%s",
            session.session_id,
            sandbox_id,
            argv,
            f" (pty holder {link.pid})" if link is not None else "",
        )
        return session

    async def adopt(self, running: Callable[[str], bool], kill_cgroup: Callable[[Path], None] | None) -> int:
        """Daemon start: take back the holders of running sandboxes under their session ids,
        end the others (``running(sandbox_id)`` says which sandboxes run; blocking, it is
        called in a thread). Returns how many sessions were adopted."""
        if self.holders is None:
            return 0
        store = self.holders
        adopted = 0
        for found in await asyncio.to_thread(store.scan):
            sid = found.sandbox_id
            if not await asyncio.to_thread(running, sid):
                await asyncio.to_thread(store.end_found, found)
                continue
            link = None
            for attempt in range(3):
                try:
                    link = await asyncio.to_thread(store.connect, found.sock_path, found.meta)
                    break
                except holders.HolderUnavailable as e:
                    why = e
                    await asyncio.sleep(0.2 * (attempt + 1))
            if link is None:
                log.warning("session %s in %s is lost (%s)", found.session_id, sid, why)
                await asyncio.to_thread(holders.remove_files, found.sock_path)
                continue
            meta = found.meta
            argv = meta.get("argv")
            created = meta.get("created_at")
            cg = meta.get("cgroup_dir")
            kill: Callable[[], None] | None = None
            if isinstance(cg, str) and kill_cgroup is not None:
                kill = functools.partial(kill_cgroup, Path(cg))
            hello = link.hello
            session = Session(
                sandbox_id=sid,
                session_id=found.session_id,
                argv=[str(a) for a in argv] if isinstance(argv, list) else ["?"],
                spawned=_AdoptedShell(kill),
                rows=hello.rows or 24,
                cols=hello.cols or 80,
                scrollback=self.scrollback,
                on_activity=functools.partial(self._activity, sid),
                on_exit=self._exited,
                holder=link,
                created_at=float(created) if isinstance(created, int | float) else None,
            )
            shell_pid = meta.get("shell_pid")
            if isinstance(shell_pid, int) and isinstance(cg, str) and _in_cgroup(shell_pid, Path(cg)):
                session.shell_pid = shell_pid  # not our child any more: trusted while in its exec cgroup
            self._sessions.setdefault(sid, {})[session.session_id] = session
            adopted += 1
            log.info("session %s in %s re-adopted (pty holder %d)", session.session_id, sid, link.pid)
        return adopted

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
        """Terminate every session of a sandbox and end its holders (before it is stopped
        or removed)."""
        sessions = self._sessions.pop(sandbox_id, {})
        self._last_touch.pop(sandbox_id, None)
        await asyncio.gather(*(s.terminate() for s in sessions.values()))
        if self.holders is not None:
            await asyncio.to_thread(self.holders.clear_sandbox, sandbox_id)

    async def shutdown(self) -> None:
        """Daemon exit: detach every client; sessions with a holder keep running (the next
        daemon adopts them), those whose PTY we hold ourselves end with us."""
        sessions = self.all()
        for s in sessions:
            s.close_attachments()
        held = [s for s in sessions if s.holder is not None and not s.exited]
        for s in held:
            s.release()
        await asyncio.gather(*(s.terminate() for s in sessions if s not in held))
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
