"""Opening paths inside a root that a student controls, without ever leaving it.

``openat2(2)`` (syscall 437, through ctypes: Python has no wrapper) with
``RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS``: ``..`` and absolute symlinks are resolved
as if the given directory were ``/``, and ``/proc/self/fd``-style magic links are refused.
Used for bind-mount sources (resolved in the sandbox's rootfs), ``/etc/passwd`` and
``/etc/group`` of a container's image, and a container's working directory. The engine
keeps the returned descriptor and acts on *that* object (``/proc/self/fd/N``), so a
path swapped for a symlink afterwards changes nothing.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from pathlib import Path

SYS_OPENAT2 = 437
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10
MAX_DB = 4 << 20

_libc = ctypes.CDLL(None, use_errno=True)


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def open_in_root(root: Path | int, path: str, flags: int = os.O_PATH) -> int:
    """An fd of ``path`` resolved inside ``root`` (a directory path or fd); raises OSError."""
    root_fd = root if isinstance(root, int) else os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        how = _OpenHow(flags | os.O_CLOEXEC, 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
        rel = path.lstrip("/") or "."
        fd = int(_libc.syscall(SYS_OPENAT2, root_fd, rel.encode(), ctypes.byref(how), ctypes.sizeof(how)))
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


def read_in_root(root: Path, path: str) -> bytes | None:
    """The contents of a regular file ``path`` inside ``root``; None if absent or not a file."""
    try:
        fd = open_in_root(root, path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        if not Path(f"/proc/self/fd/{fd}").is_file():
            return None
        chunks = []
        total = 0
        while total < MAX_DB and (chunk := os.read(fd, 65536)):
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


@dataclass(frozen=True)
class ExecUser:
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str


def _db(root: Path, path: str) -> list[list[str]]:
    raw = read_in_root(root, path) or b""
    out = []
    for line in raw.decode(errors="replace").splitlines():
        if line and not line.startswith("#"):
            out.append(line.split(":"))
    return out


def resolve_user(root: Path, spec: str) -> ExecUser:
    """Docker's ``--user`` rules: "", "name", "uid", "uid:gid", "name:group", against the
    image's /etc/passwd and /etc/group (numeric ids need no entry). ValueError with
    Docker's message when a name is unknown."""
    user, _, group = (spec or "").partition(":")
    uid, gid, home = 0, 0, "/"
    name = ""
    passwd = _db(root, "/etc/passwd")
    if user:
        entry = None
        for f in passwd:
            if len(f) >= 7 and (f[0] == user or (user.isdigit() and f[2] == user)):
                entry = f
                break
        if entry is not None:
            name = entry[0]
            uid, gid, home = int(entry[2]), int(entry[3]), entry[5] or "/"
        elif user.isdigit():
            uid = int(user)
        else:
            raise ValueError(f"unable to find user {user}: no matching entries in passwd file")
    else:
        for f in passwd:
            if len(f) >= 7 and f[2] == "0":
                name, home = f[0], f[5] or "/"
                break
    groups_db = _db(root, "/etc/group")
    if group:
        found = [f for f in groups_db if len(f) >= 3 and (f[0] == group or (group.isdigit() and f[2] == group))]
        if found:
            gid = int(found[0][2])
        elif group.isdigit():
            gid = int(group)
        else:
            raise ValueError(f"unable to find group {group}: no matching entries in group file")
    extra: list[int] = []
    if name and not group:
        for f in groups_db:
            if len(f) >= 4 and name in f[3].split(",") and f[2].isdigit() and int(f[2]) != gid:
                extra.append(int(f[2]))
    return ExecUser(uid, gid, tuple(extra), home)
