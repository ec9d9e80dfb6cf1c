"""The lab editor's file access: list, read and write under a sandbox's ``/root``.

runtimed (root on the host) only opens the sandbox's namespaces and root directory
from ``/proc/<pid>/`` of its init process and hands them to a fresh helper
(``_fileshelper.py``), which does the file work as the sandbox's root, from a
descriptor of its ``/root``, with ``openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)``.
The reasons and the guarantees are in the helper's docstring.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from runtime import errors

HELPER = Path(__file__).with_name("_fileshelper.py")
TIMEOUT = 20.0
MAX_FILE = 1 << 20

# The helper's refusals, as the error classes runtimed's clients already know (the
# message says which case it is: a link, too large, not text, disk full ...).
_STATUS: dict[int, type[errors.RuntimeError]] = {
    403: errors.Forbidden,
    409: errors.Conflict,
    507: errors.LimitExceeded,
}


def run(pid: int, request: dict[str, Any], *, timeout: float = TIMEOUT) -> dict[str, Any]:
    """Run one request of ``_fileshelper`` against the sandbox whose init is ``pid``."""
    fds: list[int] = []
    try:
        for name in ("ns/user", "ns/mnt", "root"):
            fds.append(
                os.open(f"/proc/{pid}/{name}", os.O_RDONLY | os.O_CLOEXEC | (os.O_PATH if name == "root" else 0))
            )
    except OSError as exc:
        for fd in fds:
            os.close(fd)
        raise errors.Conflict(f"the sandbox is not running (its process {pid} is gone: {exc.strerror})") from None
    try:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", str(HELPER), *map(str, fds)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=fds,
            close_fds=True,
            start_new_session=True,
        )
    finally:
        for fd in fds:
            os.close(fd)
    try:
        out, err = proc.communicate(json.dumps(request).encode(), timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise errors.ExecTimeout(f"the file operation took longer than {timeout:g}s") from None
    try:
        reply = json.loads(out.splitlines()[-1])
    except (ValueError, IndexError):
        raise errors.RuntimeError(f"the file helper failed: {err.decode(errors='replace')[-300:]}") from None
    if "error" in reply:
        status, message = int(reply["error"]["status"]), str(reply["error"]["message"])
        if status >= 500 and status != 507:
            raise errors.RuntimeError(message)
        raise _STATUS.get(status, errors.BadRequest)(message)
    return dict(reply["ok"])
