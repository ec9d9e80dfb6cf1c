"""Short-lived helper: list, read or write one file under a sandbox's ``/root``, as its root.

A helper module (stdlib only) started by ``runtime.sandbox.files`` with
``runtime.kernel.children.helper_argv`` (``python -P -s -S -m runtime.sandbox._fileshelper``),
the sandbox's user namespace, mount namespace and root directory as inherited descriptors
whose numbers are its arguments (opened by runtimed from ``/proc/<pid>/...``), and one JSON request on
stdin. It prints one JSON line: ``{"ok": ...}`` or ``{"error": {"status", "message"}}``.

How it stays inside ``/root`` (CONVENTIONS.md 10 and 12):

1. ``setns`` into the sandbox's user and mount namespaces (a fresh, single-threaded
   process: the daemon's threads never change namespace), ``chroot`` to the sandbox's
   own root, then become uid/gid 0 *of the sandbox*: what it creates is owned by the
   sandbox's root and counted on the sandbox's disk; what the sandbox's root could not
   touch, neither can it.
2. ``/root`` is opened with ``O_NOFOLLOW | O_DIRECTORY``; every path below it is opened
   from that descriptor with ``openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
   RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)``: ``..`` above ``/root``, any symlink (a
   planted ``x -> /etc/shadow`` included, wherever in the path) and any mount crossing
   are refused by the kernel, not by string checks.
3. Reads check the *opened* descriptor (``fstat``: a regular file, at most MAX_FILE
   bytes; ``O_NONBLOCK`` so a FIFO cannot hang it). A write writes a temporary file
   beside the target (``O_CREAT | O_EXCL``) and ``renameat``s it over the name, which
   replaces whatever is there now (a symlink swapped in after the check included)
   without following it, and loses nothing if the disk is full. ``etag`` (sha256 of
   the content) makes a save conditional: a file changed since it was read is a 409.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import os
import stat
import sys

# Imports cost CPU at each start of this helper (one per editor request), so no typing here.
# mypy takes any name TYPE_CHECKING as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
SYS_OPENAT2 = 437
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV

MAX_FILE = 1 << 20  # what the editor opens or saves
MAX_ENTRIES = 1000  # one directory's listing

_libc = ctypes.CDLL(None, use_errno=True)


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def _oserror(what: str) -> OSError:
    err = ctypes.get_errno()
    return OSError(err, f"{what}: {os.strerror(err)}")


def openat2(dirfd: int, rel: str, flags: int, mode: int = 0) -> int:
    how = _OpenHow(flags | os.O_CLOEXEC, mode, RESOLVE)
    fd = int(_libc.syscall(SYS_OPENAT2, dirfd, rel.encode("utf-8", "surrogateescape"), ctypes.byref(how), 24))
    if fd < 0:
        raise _oserror(rel)
    return fd


def enter(user_fd: int, mnt_fd: int, root_fd: int) -> int:
    """Become the sandbox's root in its namespaces; the descriptor of its ``/root``."""
    for fd, kind in ((user_fd, CLONE_NEWUSER), (mnt_fd, CLONE_NEWNS)):
        if _libc.setns(fd, kind) != 0:
            raise _oserror("setns")
    os.fchdir(root_fd)
    os.chroot(".")
    os.chdir("/")
    for fd in (user_fd, mnt_fd, root_fd):
        os.close(fd)
    with contextlib.suppress(OSError):  # setgroups denied in the namespace: groups stay as mapped
        os.setgroups([])
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)
    try:
        return os.open("/root", os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise Refused(404, "the sandbox has no /root directory (or it is a link)") from e


def clean(path: Any) -> str:
    """A relative path below /root ('' is /root itself); refuse what is not one."""
    if not isinstance(path, str) or "\0" in path or len(path) > 4096:
        raise Refused(400, "a path is a string without NUL bytes, at most 4096 characters")
    if path.startswith("/root/") or path == "/root":
        path = path[len("/root/") :]
    elif path.startswith("/"):
        raise Refused(400, f"{path!r}: paths are relative to /root")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise Refused(400, f"{path!r}: '..' is not allowed")
    return "/".join(parts)


def _refusal(e: OSError, rel: str) -> Refused:
    if e.errno == errno.ELOOP:
        return Refused(403, f"/root/{rel} is or passes through a symbolic link; the editor never follows one")
    if e.errno == errno.EXDEV:
        return Refused(403, f"/root/{rel} crosses a mount point or leaves /root")
    if e.errno == errno.ENOENT:
        return Refused(404, f"/root/{rel} does not exist")
    if e.errno == errno.ENOTDIR:
        return Refused(400, f"/root/{rel}: a part of the path is not a directory")
    if e.errno == errno.EISDIR:
        return Refused(400, f"/root/{rel} is a directory")
    return Refused(500, f"/root/{rel}: {e.strerror}")


def _open(root: int, rel: str, flags: int, mode: int = 0) -> int:
    # RESOLVE_NO_SYMLINKS refuses a link as the last component too (ELOOP, whatever the
    # other flags), so O_NOFOLLOW is not passed: with O_DIRECTORY it would say ENOTDIR
    try:
        return openat2(root, rel or ".", flags & ~os.O_NOFOLLOW, mode)
    except OSError as e:
        raise _refusal(e, rel) from None


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "link"
    return "other"


def op_list(root: int, rel: str) -> dict[str, Any]:
    fd = _open(root, rel, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    entries: list[dict[str, Any]] = []
    truncated = False
    try:
        with os.scandir(fd) as it:
            for e in it:
                if len(entries) >= MAX_ENTRIES:
                    truncated = True
                    break
                try:
                    st = e.stat(follow_symlinks=False)
                except OSError:
                    continue
                entries.append({"name": e.name, "type": _kind(st.st_mode), "size": st.st_size, "mtime": st.st_mtime})
    finally:
        os.close(fd)
    entries.sort(key=lambda x: (x["type"] != "dir", x["name"]))
    return {"path": rel, "entries": entries, "truncated": truncated}


def _read_fd(fd: int, rel: str) -> tuple[bytes, os.stat_result]:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise Refused(400, f"/root/{rel} is not a regular file ({_kind(st.st_mode)}); the editor opens files only")
    if st.st_size > MAX_FILE:
        raise Refused(413, f"/root/{rel} is {st.st_size} bytes; the editor opens files up to {MAX_FILE} bytes")
    chunks, total = [], 0
    while chunk := os.read(fd, 65536):
        total += len(chunk)
        if total > MAX_FILE:
            raise Refused(413, f"/root/{rel} is larger than {MAX_FILE} bytes; the editor opens files up to that")
        chunks.append(chunk)
    return b"".join(chunks), st


def etag(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def op_read(root: int, rel: str) -> dict[str, Any]:
    if not rel:
        raise Refused(400, "/root is a directory")
    fd = _open(root, rel, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        data, st = _read_fd(fd, rel)
    finally:
        os.close(fd)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(415, f"/root/{rel} is not UTF-8 text; the editor opens text files only") from None
    return {"path": rel, "content": text, "etag": etag(data), "size": len(data), "mtime": st.st_mtime}


def op_write(root: int, rel: str, content: Any, expect: Any) -> dict[str, Any]:
    if not rel:
        raise Refused(400, "/root is a directory")
    if not isinstance(content, str):
        raise Refused(400, "content must be a string")
    data = content.encode("utf-8", "surrogatepass")
    if len(data) > MAX_FILE:
        raise Refused(413, f"{len(data)} bytes; the editor saves files up to {MAX_FILE} bytes")
    if expect is not None and not isinstance(expect, str):
        raise Refused(400, "etag must be a string, or null to create a new file")
    parent_rel, _, name = rel.rpartition("/")
    parent = _open(root, parent_rel, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    tmp = f".{name[:200]}.kl-save-{os.urandom(4).hex()}"
    try:
        mode, owner = 0o644, (0, 0)
        try:
            cur = openat2(parent, name, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as e:
            if e.errno != errno.ENOENT:
                raise _refusal(e, rel) from None
            if expect not in (None, "*"):
                raise Refused(409, f"/root/{rel} was deleted since it was opened") from None
        else:
            try:
                old, st = _read_fd(cur, rel)
            finally:
                os.close(cur)
            if expect is None:
                raise Refused(409, f"/root/{rel} already exists")
            if expect != "*" and expect != etag(old):
                raise Refused(409, f"/root/{rel} was changed in the sandbox since it was opened")
            mode, owner = stat.S_IMODE(st.st_mode) & 0o777, (st.st_uid, st.st_gid)
        # a new file is created under its own name, exclusively (a file that appeared
        # meanwhile is not replaced); a changed one is written beside and renamed over
        new = expect is None
        target = name if new else tmp
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=parent)
        tmp = target
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fchown(fd, *owner)
                os.fchmod(fd, mode)
                os.fsync(fd)
            finally:
                os.close(fd)
            if not new:
                os.rename(tmp, name, src_dir_fd=parent, dst_dir_fd=parent)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=parent)
            raise
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except OSError as e:
        if e.errno == errno.EEXIST and expect is None:
            raise Refused(409, f"/root/{rel} already exists") from None
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise Refused(
                507, f"/root/{rel} was not saved: the sandbox's disk is full (the old file is unchanged)"
            ) from None
        if e.errno == errno.EISDIR:
            raise Refused(400, f"/root/{rel} is a directory") from None
        raise Refused(500, f"/root/{rel} was not saved: {e.strerror}") from None
    finally:
        os.close(parent)
    return {"path": rel, "etag": etag(data), "size": len(data), "mtime": st.st_mtime}


def main() -> int:
    try:
        req = json.loads(sys.stdin.buffer.read(4 * MAX_FILE + 65536))
        if not isinstance(req, dict):
            raise Refused(400, "the request is a JSON object")
        root = enter(*(int(a) for a in sys.argv[1:4]))
        rel = clean(req.get("path", ""))
        op = req.get("op")
        if op == "list":
            out = op_list(root, rel)
        elif op == "read":
            out = op_read(root, rel)
        elif op == "write":
            out = op_write(root, rel, req.get("content"), req.get("etag"))
        else:
            raise Refused(400, f"unknown operation {op!r}")
        sys.stdout.write(json.dumps({"ok": out}) + "\n")
    except Refused as e:
        sys.stdout.write(json.dumps({"error": {"status": e.status, "message": str(e)}}) + "\n")
    except Exception as e:  # one line the daemon can show, never a traceback
        sys.stdout.write(json.dumps({"error": {"status": 500, "message": f"{type(e).__name__}: {e}"}}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
