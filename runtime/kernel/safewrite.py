"""Acting on paths inside a tree a student controls, from the host, without ever leaving it.

runtimed runs as host root; a sandbox's root filesystem, a container's rootfs or an image's
tree is the student's to fill with symlinks (``/root/x -> /etc/shadow``, ``..`` chains).
Every path built from such a tree is resolved here, and only here (CONVENTIONS.md 12):

* ``open_in_root``: ``openat2(2)`` (syscall 437, through ctypes: Python has no wrapper) with
  ``RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS``: ``..`` and absolute symlinks are resolved as
  if the given directory were ``/`` (an image's ``/var/run -> /run`` resolves inside, as it
  does inside the sandbox), ``/proc/self/fd``-style magic links are refused, and with
  ``same_mount`` no mount point is crossed (``RESOLVE_NO_XDEV``). The caller keeps the
  descriptor and acts on *that* object (``fd_path``: ``/proc/self/fd/N``, a magic link the
  kernel follows to that exact object), so a path swapped for a symlink afterwards changes
  nothing.
* ``read_in_root``, ``mkdirs_in_root``: a bounded read of a regular file; ``mkdir -p``.
* ``write_file``, ``symlink``: replace (or create) a file or a link, its missing parents made
  like ``mkdir -p``; the last component is created with ``*at`` calls on the parent's
  descriptor that never follow it (``O_CREAT | O_EXCL | O_NOFOLLOW``; a link made under a
  temporary name, then renamed over). Owner and modes are set with ``fchown``/``fchmod`` on
  the new object, never through the process umask (CONVENTIONS.md 13c).

The helper children that write inside a sandbox's tree (sandbox/_fileshelper.py,
sandbox/_mounthelper.py) keep their own ``*at`` walk: this module's imports (pathlib,
secrets) would be paid at each of their starts, and the files helper resolves beneath
``/root`` refusing every symlink (``RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS``), not in a root.
Tar extraction (images/tarutil.py) walks component by component with ``O_NOFOLLOW`` in a
directory it made.
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
MAX_READ = 4 << 20

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def open_in_root(root: Path | int, path: str, flags: int = os.O_PATH, *, same_mount: bool = False) -> int:
    """An fd of ``path`` resolved inside ``root`` (a directory path or fd); raises OSError."""
    root_fd = root if isinstance(root, int) else os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | (RESOLVE_NO_XDEV if same_mount else 0)
        how = _OpenHow(flags | os.O_CLOEXEC, 0, resolve)
        rel = path.lstrip("/") or "."
        fd = int(
            _libc.syscall(
                ctypes.c_long(SYS_OPENAT2),
                ctypes.c_int(root_fd),
                ctypes.c_char_p(rel.encode()),
                ctypes.byref(how),
                ctypes.c_size_t(ctypes.sizeof(how)),
            )
        )
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), path)
        return fd
    finally:
        if not isinstance(root, int):
            os.close(root_fd)


def fd_path(fd: int) -> str:
    """The host path of an open fd (as this process's mount namespace sees it)."""
    return str(Path(f"/proc/self/fd/{fd}").readlink())


def read_in_root(root: Path, path: str, limit: int = MAX_READ) -> bytes | None:
    """The contents (at most ``limit`` bytes and a chunk) of a regular file ``path`` inside
    ``root``; None if absent or not a file."""
    try:
        fd = open_in_root(root, path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        if not Path(f"/proc/self/fd/{fd}").is_file():
            return None
        chunks = []
        total = 0
        while total < limit and (chunk := os.read(fd, 65536)):
            chunks.append(chunk)
            total += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def mkdirs_in_root(root: Path, path: str, uid: int, gid: int) -> None:
    """``mkdir -p path`` inside ``root`` (new dirs owned by uid:gid), never leaving it."""
    parts = [p for p in path.split("/") if p and p != "."]
    cur = "/"
    for part in parts:
        nxt = cur.rstrip("/") + "/" + part
        try:
            os.close(open_in_root(root, nxt))
        except FileNotFoundError:
            parent = open_in_root(root, cur, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.mkdir(part, 0o755, dir_fd=parent)
                os.chown(part, uid, gid, dir_fd=parent, follow_symlinks=False)
            except FileExistsError:
                pass
            finally:
                os.close(parent)
        cur = nxt


def _split(path: str) -> list[str]:
    parts = [p for p in path.split("/") if p and p != "."]
    if not parts or ".." in parts:
        raise ValueError(f"bad path {path!r}: absolute, without '..'")
    return parts


def _parent_dir(root_fd: int, parts: list[str], uid: int, dir_mode: int) -> int:
    """A directory fd (``O_PATH``) of ``parts``' parent inside the root (never crossing a
    mount), made like ``mkdir -p`` (owner ``uid``, ``dir_mode``)."""
    for i in range(len(parts) - 1):
        prefix = "/".join(parts[: i + 1])
        try:
            os.close(open_in_root(root_fd, prefix, os.O_PATH | os.O_DIRECTORY, same_mount=True))
            continue
        except FileNotFoundError:
            pass
        parent = open_in_root(root_fd, "/".join(parts[:i]), os.O_PATH | os.O_DIRECTORY, same_mount=True)
        try:
            os.mkdir(parts[i], dir_mode, dir_fd=parent)
            fd = os.open(parts[i], os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
            try:
                os.fchown(fd, uid, uid)
                os.fchmod(fd, dir_mode)
            finally:
                os.close(fd)
        except FileExistsError:
            pass  # made meanwhile (or a dangling link: the open below says so)
        finally:
            os.close(parent)
    return open_in_root(root_fd, "/".join(parts[:-1]), os.O_PATH | os.O_DIRECTORY, same_mount=True)


def _open_parent(rootfs: Path, parts: list[str], uid: int, dir_mode: int) -> int:
    root_fd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        return _parent_dir(root_fd, parts, uid, dir_mode)
    finally:
        os.close(root_fd)


def write_file(rootfs: Path, path: str, content: bytes, uid: int, *, mode: int, dir_mode: int) -> None:
    """Replace (or create) the file ``path`` inside the root ``rootfs``, owned by ``uid``
    (as its group too), ``mode``; missing parents made with ``dir_mode``."""
    parts = _split(path)
    parent = _open_parent(rootfs, parts, uid, dir_mode)
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
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
    finally:
        os.close(parent)


def symlink(rootfs: Path, path: str, target: str, uid: int, *, dir_mode: int) -> None:
    """Make ``path`` inside the root ``rootfs`` a symlink to ``target`` (``ln -sfn``), owned
    by ``uid``; missing parents made with ``dir_mode``."""
    parts = _split(path)
    parent = _open_parent(rootfs, parts, uid, dir_mode)
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
