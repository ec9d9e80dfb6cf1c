"""What a sandbox service puts in a sandbox being created, written from the host.

Why. Before a lab sandbox is ready its services place two things in its filesystem:
the Docker service the link ``/var/run/docker.sock``, the Kubernetes service the
student's ``/root/.kube/config``. Written from inside, each costs a process in the
sandbox, and the first of them the start of the exec agent, one ``runc exec`` (a Go
start-up, namespace joins, a seccomp compile: fastexec.py), on the ready path of every
student of a class that starts together (issue #13: the host is CPU-bound then, and
every CPU-second before one student's "ready" delays everyone behind them). With these
two written here, a create runs no process in the sandbox at all (unless the lab has a
setup script), and the agent starts on the first exec after ready (the terminal).

When. Only while ``SandboxManager.create`` starts the services of a sandbox it has just
built: nothing of the student's has run in it (its processes are tini and ``sleep``;
no credential for it has been handed out; a lab's setup script runs after the
services), exactly as when the mount helper writes ``/etc/hosts`` and the lab's files
before ``runc run``. A resumed sandbox, or anything that fails here, takes the inside
path as before (the caller falls back).

How, never leaving the root anyway. The sandbox's root filesystem is the overlay the
mount helper mounted at ``<sandbox dir>/rootfs`` on the host. Every directory is opened
with ``openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)`` from a
descriptor of that root: an image's absolute symlink (Debian's ``/var/run -> /run``)
resolves inside the sandbox's root as it does inside, ``..`` stops at it, and no mount
is crossed. The last component is created with ``*at`` calls on that directory
descriptor that never follow it (``O_CREAT | O_EXCL | O_NOFOLLOW``; a symlink made
under a temporary name, then renamed over). The result is what the inside path gave:
owned by the sandbox's root (host uid ``uid_base``), directories 0755 and files 0644
(the shell's umask 022), a file replaced rather than written through (``rm -f`` then
``cat >``), a link replaced (``ln -sfn``). Modes are set with ``fchmod`` on the new
object, never through the process umask (CONVENTIONS.md 13c).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
from pathlib import Path

SYS_OPENAT2 = 437  # the same number on every architecture (the generic syscall table)
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10
DIR_MODE = 0o755
FILE_MODE = 0o644

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def _open_in_root(root_fd: int, rel: str, flags: int) -> int:
    how = _OpenHow(flags | os.O_CLOEXEC, 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)
    fd = int(
        _libc.syscall(
            ctypes.c_long(SYS_OPENAT2),
            ctypes.c_int(root_fd),
            ctypes.c_char_p((rel or ".").encode()),
            ctypes.byref(how),
            ctypes.c_size_t(ctypes.sizeof(how)),
        )
    )
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), rel)
    return fd


def _split(path: str) -> list[str]:
    parts = [p for p in path.split("/") if p and p != "."]
    if not parts or ".." in parts:
        raise ValueError(f"bad path {path!r}: absolute, without '..'")
    return parts


def _parent_dir(root_fd: int, parts: list[str], uid: int) -> int:
    """A directory fd (``O_PATH``) of ``parts``' parent inside the root, made like ``mkdir -p``."""
    for i in range(len(parts) - 1):
        prefix = "/".join(parts[: i + 1])
        try:
            os.close(_open_in_root(root_fd, prefix, os.O_PATH | os.O_DIRECTORY))
            continue
        except FileNotFoundError:
            pass
        parent = _open_in_root(root_fd, "/".join(parts[:i]), os.O_PATH | os.O_DIRECTORY)
        try:
            os.mkdir(parts[i], DIR_MODE, dir_fd=parent)
            fd = os.open(parts[i], os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
            try:
                os.fchown(fd, uid, uid)
                os.fchmod(fd, DIR_MODE)
            finally:
                os.close(fd)
        except FileExistsError:
            pass  # made meanwhile (or a dangling link: the open below says so)
        finally:
            os.close(parent)
    return _open_in_root(root_fd, "/".join(parts[:-1]), os.O_PATH | os.O_DIRECTORY)


def write_file(rootfs: Path, path: str, content: bytes, uid: int) -> None:
    """Replace (or create) the file ``path`` inside the root ``rootfs``, owned by ``uid``."""
    parts = _split(path)
    root_fd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        parent = _parent_dir(root_fd, parts, uid)
    finally:
        os.close(root_fd)
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(parts[-1], dir_fd=parent)
        fd = os.open(
            parts[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=parent
        )
        try:
            view = memoryview(content)
            while view:
                view = view[os.write(fd, view) :]
            os.fchown(fd, uid, uid)
            os.fchmod(fd, FILE_MODE)
        finally:
            os.close(fd)
    finally:
        os.close(parent)


def symlink(rootfs: Path, path: str, target: str, uid: int) -> None:
    """Make ``path`` inside the root ``rootfs`` a symlink to ``target`` (``ln -sfn``), owned by ``uid``."""
    parts = _split(path)
    root_fd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        parent = _parent_dir(root_fd, parts, uid)
    finally:
        os.close(root_fd)
    tmp = f".{parts[-1]}.kl-{secrets.token_hex(4)}"
    try:
        os.symlink(target, tmp, dir_fd=parent)
        try:
            os.chown(tmp, uid, uid, dir_fd=parent, follow_symlinks=False)
            os.rename(tmp, parts[-1], src_dir_fd=parent, dst_dir_fd=parent)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=parent)
            raise
    finally:
        os.close(parent)
