"""The lab editor's file access: list, read and write under a sandbox's ``/root``.

runtimed (root on the host) only opens the sandbox's namespaces and root directory
from ``/proc/<pid>/`` of its init process and hands them to a fresh helper
(``_fileshelper.py``, a module started with ``runtime.kernel.children.helper_argv``),
which does the file work as the sandbox's root, from a descriptor of its ``/root``, with
``openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)``.
The reasons and the guarantees are in the helper's docstring.

Which process. A pid names the sandbox's init only while that process lives: once it
has died the number may go to any other process, another sandbox's included. So
``/proc/<pid>`` is opened once, as a directory descriptor, and that process's start time
is read through it and compared with the one recorded when the sandbox started; the
namespaces and root are then opened through the same descriptor, which keeps naming that
process (``ESRCH``/``ENOENT`` once it is gone), never a newcomer with its number.

Whose limits. The helper is started by ``Placement`` (``cgexec.py``) in the sandbox's own
cgroup (``.engine`` below it), so its memory, pids and CPU count against the sandbox, as
every other process working for it. It runs no code of the student's and no seccomp
filter of theirs is needed to contain it: it only opens, reads and writes below ``/root``
as the sandbox's root, in the sandbox's user namespace.
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

from runtime import errors
from runtime.kernel import children
from runtime.sandbox.cgexec import EXIT_NOT_JOINED, Placement

HELPER = "runtime.sandbox._fileshelper"  # a module of runtime.kernel.children.HELPERS
TIMEOUT = 20.0
MAX_FILE = 1 << 20

# The helper's refusals, as the error classes runtimed's clients already know (the
# message says which case it is: a link, too large, not text, disk full ...).
_STATUS: dict[int, type[errors.RuntimeError]] = {
    403: errors.Forbidden,
    409: errors.Conflict,
    507: errors.LimitExceeded,
}


def _start_time(proc_dir: int) -> int | None:
    """The start time of the process behind a ``/proc/<pid>`` descriptor (None once it is gone)."""
    try:
        fd = os.open("stat", os.O_RDONLY | os.O_CLOEXEC, dir_fd=proc_dir)
    except OSError:
        return None
    try:
        raw = os.read(fd, 4096).decode("ascii", "replace")
    except OSError:
        return None
    finally:
        os.close(fd)
    fields = raw.rsplit(")", 1)[-1].split()
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def open_sandbox(pid: int, pid_start: int) -> list[int]:
    """Descriptors of the user namespace, mount namespace and root directory of the process
    ``pid`` that started at ``pid_start`` (see the module docstring), or ``errors.Conflict``."""
    try:
        proc_dir = os.open(f"/proc/{pid}", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise errors.Conflict(f"the sandbox is not running (its process {pid} is gone: {exc.strerror})") from None
    fds: list[int] = []
    try:
        if _start_time(proc_dir) != pid_start:
            raise errors.Conflict(f"the sandbox is not running (its process {pid} has ended)")
        for name in ("ns/user", "ns/mnt", "root"):
            fds.append(
                os.open(name, os.O_RDONLY | os.O_CLOEXEC | (os.O_PATH if name == "root" else 0), dir_fd=proc_dir)
            )
    except OSError as exc:
        for fd in fds:
            os.close(fd)
        raise errors.Conflict(f"the sandbox is not running (its process {pid} is gone: {exc.strerror})") from None
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    finally:
        os.close(proc_dir)
    return fds


def run(
    pid: int, request: dict[str, Any], *, pid_start: int, place: Placement, timeout: float = TIMEOUT
) -> dict[str, Any]:
    """Run one request of ``_fileshelper`` against the sandbox whose init is ``pid`` (started
    at ``pid_start``), the helper in that sandbox's cgroup (``place``)."""
    fds = open_sandbox(pid, pid_start)
    try:
        proc = place.popen(
            children.helper_argv(HELPER, [str(fd) for fd in fds]),
            env=children.helper_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=fds,
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
    if proc.returncode == EXIT_NOT_JOINED and b"kl-cgexec:" in err:
        raise errors.RuntimeError(err.decode(errors="replace").strip()[-400:])
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
