"""Exec with a timeout and output caps, and streaming exec (design in ``runtime.sessions``)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import IO, Any

from runtime import errors
from runtime.sessions.base import SpawnedProcess, Spawner, wait_process

log = logging.getLogger(__name__)

DEFAULT_MAX_OUTPUT = 1024 * 1024  # per stream
MAX_TIMEOUT = 3600.0
EOF_GRACE = 0.5  # after exit, how long to wait for pipes held open by background children
KILL_WAIT = 5.0
CHUNK = 64 * 1024

Sink = Callable[[bytes], Awaitable[None]]


@dataclass
class ExecOutcome:
    exit_code: int | None  # None only if the process could not be reaped after a kill
    stdout: bytes
    stderr: bytes
    stdout_truncated: bool
    stderr_truncated: bool
    timed_out: bool
    duration_ms: float

    def to_json(self, encoding: str = "utf-8") -> dict[str, Any]:
        def enc(b: bytes) -> str:
            if encoding == "base64":
                return base64.b64encode(b).decode("ascii")
            return b.decode("utf-8", errors="replace")

        return {
            "exit_code": self.exit_code,
            "stdout": enc(self.stdout),
            "stderr": enc(self.stderr),
            "encoding": encoding,
            "stdout_truncated": self.stdout_truncated,
            "stderr_truncated": self.stderr_truncated,
            "timed_out": self.timed_out,
            "duration_ms": round(self.duration_ms, 3),
        }


def check_timeout(timeout: float) -> float:
    if not 0 < timeout <= MAX_TIMEOUT:
        raise errors.BadRequest(f"timeout must be in (0, {MAX_TIMEOUT:.0f}] seconds, got {timeout}")
    return float(timeout)


async def _pipe_reader(pipe: IO[bytes], transports: list[asyncio.BaseTransport]) -> asyncio.StreamReader:
    """A StreamReader on a pipe; its transport (which owns the fd) goes into ``transports``."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=CHUNK, loop=loop)
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader, loop=loop), pipe)
    transports.append(transport)
    return reader


def _close_all(transports: list[asyncio.BaseTransport], pipes: list[IO[bytes]]) -> None:
    for t in transports:
        t.close()
    for p in pipes:
        with contextlib.suppress(OSError):
            p.close()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


async def _pump(reader: asyncio.StreamReader, sink: Sink) -> None:
    while True:
        chunk = await reader.read(CHUNK)
        if not chunk:
            return
        await sink(chunk)


def _write_all_and_close(pipe: IO[bytes], data: bytes) -> None:
    try:
        if data:
            pipe.write(data)
            pipe.flush()
    except (BrokenPipeError, OSError):
        pass
    finally:
        with contextlib.suppress(OSError):
            pipe.close()


async def _spawn(
    spawner: Spawner, sid: str, argv: list[str], env: dict[str, str] | None, cwd: str | None
) -> SpawnedProcess:
    if not argv or not all(isinstance(a, str) for a in argv):
        raise errors.BadRequest("argv must be a non-empty list of strings")
    spawned = await asyncio.to_thread(spawner.spawn, sid, argv, tty=False, env=env, cwd=cwd)
    proc = spawned.proc
    if proc.stdout is None or proc.stderr is None or proc.stdin is None:
        spawned.kill_tree()
        raise errors.RuntimeError("spawn(tty=False) returned a process without pipes")
    return spawned


async def _kill_and_reap(spawned: SpawnedProcess) -> int | None:
    try:
        await asyncio.to_thread(spawned.kill_tree)
    except Exception as e:
        log.warning("kill_tree failed: %s", e)
    try:
        return await asyncio.wait_for(wait_process(spawned.proc), KILL_WAIT)
    except TimeoutError:
        log.warning("pid %s survived kill_tree for %.0fs", spawned.proc.pid, KILL_WAIT)
        return None


async def run_exec(
    spawner: Spawner,
    sid: str,
    argv: list[str],
    *,
    timeout: float,  # noqa: ASYNC109 - kills the process tree, not just the wait
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    stdin: bytes | None = None,
    max_output: int = DEFAULT_MAX_OUTPUT,
) -> ExecOutcome:
    """Run argv to completion or until ``timeout``; see the module docstring."""
    timeout = check_timeout(timeout)
    start = time.monotonic()
    spawned = await _spawn(spawner, sid, argv, env, cwd)
    proc = spawned.proc
    assert proc.stdout is not None and proc.stderr is not None and proc.stdin is not None
    bufs = {"stdout": bytearray(), "stderr": bytearray()}
    truncated = {"stdout": False, "stderr": False}

    def collector(name: str) -> Sink:
        async def sink(chunk: bytes) -> None:
            buf = bufs[name]
            room = max_output - len(buf)
            if room > 0:
                buf += chunk[:room]
            if len(chunk) > room:
                truncated[name] = True

        return sink

    timed_out = False
    code: int | None = None
    pumps: list[asyncio.Task[None]] = []
    transports: list[asyncio.BaseTransport] = []
    stdin_task: asyncio.Task[None] | None = None
    try:
        out_r = await _pipe_reader(proc.stdout, transports)
        err_r = await _pipe_reader(proc.stderr, transports)
        pumps = [
            asyncio.create_task(_pump(out_r, collector("stdout"))),
            asyncio.create_task(_pump(err_r, collector("stderr"))),
        ]
        stdin_task = asyncio.create_task(asyncio.to_thread(_write_all_and_close, proc.stdin, stdin or b""))
        remaining = timeout - (time.monotonic() - start)
        try:
            code = await asyncio.wait_for(wait_process(proc), max(remaining, 0.001))
        except TimeoutError:
            timed_out = True
            code = await _kill_and_reap(spawned)
        # background children may hold the pipes open: give them a moment, then stop
        grace = EOF_GRACE if timed_out else max(min(EOF_GRACE, timeout - (time.monotonic() - start)), 0.05)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*pumps), grace)
    finally:
        for t in pumps:
            t.cancel()
        for t in pumps:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if code is None and not timed_out:
            # cancelled (client went away): do not leave the process behind
            await _kill_and_reap(spawned)
        _close_all(transports, [proc.stdout, proc.stderr])
        if stdin_task is not None and stdin_task.done():
            with contextlib.suppress(Exception):
                stdin_task.result()
    return ExecOutcome(
        exit_code=code,
        stdout=bytes(bufs["stdout"]),
        stderr=bytes(bufs["stderr"]),
        stdout_truncated=truncated["stdout"],
        stderr_truncated=truncated["stderr"],
        timed_out=timed_out,
        duration_ms=(time.monotonic() - start) * 1000,
    )


async def stream_exec(
    spawner: Spawner,
    sid: str,
    argv: list[str],
    *,
    stdout: Sink,
    stderr: Sink,
    stdin: AsyncIterator[bytes],
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    timeout: float | None = None,  # noqa: ASYNC109 - kills the process tree
) -> tuple[int | None, bool]:
    """Run argv with its streams wired to coroutines; returns (exit code, timed_out).

    ``stdin`` yields chunks until exhausted (then the program sees EOF).  Output
    is delivered as it comes, each chunk awaited, so a slow consumer slows the
    program down (the pipe fills) rather than filling memory.  If the caller is
    cancelled, the process tree is killed.
    """
    if timeout is not None:
        timeout = check_timeout(timeout)
    spawned = await _spawn(spawner, sid, argv, env, cwd)
    proc = spawned.proc
    assert proc.stdout is not None and proc.stderr is not None and proc.stdin is not None
    stdin_pipe = proc.stdin
    stdin_fd = stdin_pipe.fileno()

    async def feed() -> None:
        try:
            async for chunk in stdin:
                await asyncio.to_thread(_write_all, stdin_fd, chunk)
        except (BrokenPipeError, OSError):
            pass
        finally:
            with contextlib.suppress(OSError):
                stdin_pipe.close()

    code: int | None = None
    timed_out = False
    tasks: list[asyncio.Task[None]] = []
    transports: list[asyncio.BaseTransport] = []
    try:
        out_r = await _pipe_reader(proc.stdout, transports)
        err_r = await _pipe_reader(proc.stderr, transports)
        pumps = [
            asyncio.create_task(_pump(out_r, stdout)),
            asyncio.create_task(_pump(err_r, stderr)),
        ]
        tasks = [*pumps, asyncio.create_task(feed())]
        try:
            code = await asyncio.wait_for(wait_process(proc), timeout)
        except TimeoutError:
            timed_out = True
            code = await _kill_and_reap(spawned)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*pumps), EOF_GRACE)
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if code is None and not timed_out:
            await _kill_and_reap(spawned)
        _close_all(transports, [proc.stdout, proc.stderr])
    return code, timed_out
