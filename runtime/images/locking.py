"""Cross-process locks for the image store: ``fcntl.flock`` on small lock files.

``flock`` locks belong to an open file description, so they exclude other
processes and other threads of this process alike, and the kernel drops them
when the holder dies: a crashed build never leaves the store locked.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from runtime import errors


@contextmanager
def file_lock(path: Path, *, timeout: float, what: str, shared: bool = False) -> Iterator[None]:
    """Hold a lock on ``path`` (created if missing) for the ``with`` body; exclusive unless
    ``shared``.

    Waits at most ``timeout`` seconds, then raises ``errors.Conflict`` naming ``what``.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        deadline = time.monotonic() + timeout
        delay = 0.02
        while True:
            try:
                fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise errors.Conflict(
                        f"{what} is busy: another process has held {path} for over "
                        f"{timeout:.0f}s; wait for it to finish and retry"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
