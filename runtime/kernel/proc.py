"""One way to run a short host command: argv list, timeout, errors that say what failed.

``subprocess.run(..., timeout=...)`` waits for a child without pipes by polling
with sleeps that grow to 50 ms, which would add tens of milliseconds to every
runc call. ``wait`` here blocks on a pidfd instead and wakes the moment the
child exits.
"""

from __future__ import annotations

import os
import select
import subprocess
from typing import Any

from runtime import errors


def wait(proc: subprocess.Popen[Any], timeout: float) -> int:
    """Wait for ``proc`` without polling; on timeout kill it, reap it, raise TimeoutExpired."""
    try:
        fd = os.pidfd_open(proc.pid)
    except (ProcessLookupError, OSError):
        return proc.wait(timeout=timeout)
    try:
        p = select.poll()
        p.register(fd, select.POLLIN)
        if not p.poll(timeout * 1000):
            proc.kill()
            proc.wait()
            raise subprocess.TimeoutExpired(proc.args, timeout)
    finally:
        os.close(fd)
    return proc.wait()


def run(
    argv: list[str],
    *,
    timeout: float = 10.0,
    input: bytes | None = None,  # noqa: A002 - mirrors subprocess.run
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv`` to completion; on failure raise errors.RuntimeError with its stderr tail."""
    try:
        cp = subprocess.run(
            argv,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
            close_fds=True,
        )
    except subprocess.TimeoutExpired as exc:  # run() has already killed and reaped it
        raise errors.RuntimeError(f"{argv[0]} did not finish within {timeout:g}s") from exc
    except FileNotFoundError as exc:
        raise errors.RuntimeError(f"{argv[0]} is not installed on this host") from exc
    if check and cp.returncode != 0:
        tail = (cp.stderr or cp.stdout).decode(errors="replace").strip()[-800:]
        raise errors.RuntimeError(f"{' '.join(argv[:3])} failed ({cp.returncode}): {tail}")
    return cp


def run_quiet(
    argv: list[str],
    *,
    timeout: float,
    stdin: int = subprocess.DEVNULL,
    stdout: int = subprocess.DEVNULL,
    stderr: int = subprocess.DEVNULL,
) -> int:
    """Run ``argv`` with the given stdio fds (no pipes of ours); return its exit status."""
    try:
        proc = subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=stderr, close_fds=True)
    except FileNotFoundError as exc:
        raise errors.RuntimeError(f"{argv[0]} is not installed on this host") from exc
    try:
        return wait(proc, timeout)
    except subprocess.TimeoutExpired as exc:
        raise errors.RuntimeError(f"{argv[0]} did not finish within {timeout:g}s") from exc
