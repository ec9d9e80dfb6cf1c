"""Mount primitives shared by runtimed's helper children: mount, detach, idmapped binds.

Helpers import this (``runtime.sandbox._mounthelper``, which builds a sandbox's root, and
``runtime.dockerapi._enginehelper``, which mounts a student's containers); runtimed never
mounts in its own threads (CONVENTIONS.md, 10). It is started in those helpers' processes, so
it imports only ``ctypes`` and ``os`` (each helper start pays for what is imported here).

``userns_fd`` + ``idmapped_bind``: a layer owned by host uid 0.. (a shared catalog layer) is
shown to a sandbox as owned by its own range: a child unshares a user namespace whose
uid/gid map is the sandbox's, then the layer is cloned with ``open_tree(OPEN_TREE_CLONE)``,
idmapped to that namespace with ``mount_setattr(MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY)`` and
moved to its target with ``move_mount``. A kernel that refuses any step raises
``IdmapRefused``; a helper then exits with ``EXIT_IDMAP_REFUSED`` and runtimed falls back to
pre-shifted copies of the layer.
"""

from __future__ import annotations

import ctypes
import os

MS_RDONLY = 1
MS_BIND = 4096
MS_NOSUID = 2
MS_NODEV = 4
MS_NOATIME = 1024
MNT_DETACH = 2

SYS_OPEN_TREE = 428
SYS_MOVE_MOUNT = 429
SYS_MOUNT_SETATTR = 442
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = 0o2000000
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_IDMAP = 0x100000
CLONE_NEWUSER = 0x10000000

EXIT_IDMAP_REFUSED = 3

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


class MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


class IdmapRefused(Exception):
    pass


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def mount(source: str, target: str, fstype: str, flags: int, data: str) -> None:
    _check(
        libc.mount(source.encode(), target.encode(), fstype.encode(), flags, data.encode()),
        f"mount {fstype} on {target}",
    )


def umount_detach(target: str) -> None:
    _check(libc.umount2(target.encode(), MNT_DETACH), f"umount {target}")


def userns_fd(uid_base: int, size: int) -> int:
    """Return an fd of a fresh user namespace mapping 0..size-1 to uid_base.. (uids and gids)."""
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: unshare, report, wait until the parent has the fd
        os.close(r1)
        os.close(w2)
        ok = libc.unshare(CLONE_NEWUSER) == 0
        os.write(w1, b"1" if ok else b"0")
        os.read(r2, 1)
        os._exit(0)
    os.close(w1)
    os.close(r2)
    try:
        if os.read(r1, 1) != b"1":
            raise IdmapRefused("unshare(CLONE_NEWUSER) refused")
        for name in ("uid_map", "gid_map"):
            with open(f"/proc/{pid}/{name}", "w") as fh:
                fh.write(f"0 {uid_base} {size}\n")
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.write(w2, b"1")
        os.close(w2)
        os.close(r1)
        os.waitpid(pid, 0)


def idmapped_bind(src: str, target: str, ns_fd: int) -> None:
    fd = libc.syscall(SYS_OPEN_TREE, AT_FDCWD, src.encode(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE)
    if fd < 0:
        raise IdmapRefused(f"open_tree {src}: {os.strerror(ctypes.get_errno())}")
    try:
        attr = MountAttr(MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY, 0, 0, ns_fd)
        ret = libc.syscall(
            SYS_MOUNT_SETATTR,
            fd,
            b"",
            AT_EMPTY_PATH | AT_RECURSIVE,
            ctypes.byref(attr),
            ctypes.sizeof(attr),
        )
        if ret < 0:
            raise IdmapRefused(f"mount_setattr(IDMAP) {src}: {os.strerror(ctypes.get_errno())}")
        ret = libc.syscall(SYS_MOVE_MOUNT, fd, b"", AT_FDCWD, target.encode(), MOVE_MOUNT_F_EMPTY_PATH)
        _check(ret, f"move_mount {src} -> {target}")
    finally:
        os.close(fd)
