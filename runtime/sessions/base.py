"""What sessions and exec need from the sandbox layer, and a pidfd process watcher."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
from typing import Protocol

log = logging.getLogger(__name__)


class PtyProcess(Protocol):
    """What a PTY session needs: a master fd to read/write and a way to kill everything."""

    @property
    def pty_master(self) -> int | None: ...

    def kill_tree(self) -> None: ...


class SpawnedProcess(PtyProcess, Protocol):
    """The part of ``runtime.sandbox.manager.Spawned`` the daemon uses."""

    @property
    def proc(self) -> subprocess.Popen[bytes]: ...


class Spawner(Protocol):
    """The part of ``SandboxManager`` the sessions use (``spawn`` and ``touch``)."""

    def spawn(
        self,
        sid: str,
        argv: list[str],
        *,
        tty: bool,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        rows: int = 24,
        cols: int = 80,
    ) -> SpawnedProcess: ...

    def touch(self, sid: str) -> None: ...


async def wait_process(proc: subprocess.Popen[bytes], poll_interval: float = 0.5) -> int:
    """Wait for ``proc`` to exit without a thread: a pidfd becomes readable at exit.

    Falls back to polling when pidfds are unavailable (kernel < 5.3).
    """
    loop = asyncio.get_running_loop()
    code = proc.poll()
    if code is not None:
        return code
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (OSError, AttributeError):
        pidfd = -1
    if pidfd >= 0:
        exited = loop.create_future()

        def on_exit() -> None:
            if not exited.done():
                exited.set_result(None)

        loop.add_reader(pidfd, on_exit)
        try:
            if proc.poll() is None:
                await exited
        finally:
            loop.remove_reader(pidfd)
            os.close(pidfd)
    while True:
        code = proc.poll()
        if code is not None:
            return code
        # pidfd fired but waitpid raced with the kernel, or no pidfd: poll
        await asyncio.sleep(0.01 if pidfd >= 0 else poll_interval)


def close_fd(fd: int | None) -> None:
    if fd is not None and fd >= 0:
        with contextlib.suppress(OSError):
            os.close(fd)
