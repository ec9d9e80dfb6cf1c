"""Copies of an unpacked layer with every owner shifted into a user-namespace range.

This is the fallback for kernels or filesystems that refuse idmapped mounts: a
sandbox whose user namespace maps container uid 0..size-1 to host uid
uid_base..uid_base+size-1 needs its lower layers owned by the shifted host ids,
so the store keeps one shifted copy per (layer, range) and reuses it, as rootless
engines do (``fuse-overlayfs``-less podman, ``docker --userns-remap``).

The copy keeps contents, modes (setuid/setgid are re-applied after ``chown``,
which clears them), hard links (within the layer), symlinks (never followed),
FIFOs, overlay whiteouts (0:0 character devices), timestamps and xattrs (file
capabilities are re-set after ``chown``, which drops them). Ids at or above
``size`` cannot be mapped into the namespace and become its ``nobody``
(65534) when the range has one, like an unmapped id seen from inside.
"""

# The copy walks tens of thousands of entries with str paths and os.* calls on purpose:
# pathlib objects per entry would double the cost for nothing.
# ruff: noqa: PTH101, PTH102, PTH115, PTH118, PTH211

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from pathlib import Path

NOBODY = 65534


def shift_id(value: int, uid_base: int, size: int) -> int:
    if value < size:
        return uid_base + value
    return uid_base + (NOBODY if size > NOBODY else 0)


def _copy_xattrs(src: str, dst: str) -> None:
    try:
        names = os.listxattr(src, follow_symlinks=False)
    except OSError:
        return
    for name in names:
        # best effort by design: e.g. a security.* name the filesystem does not carry
        with contextlib.suppress(OSError):
            os.setxattr(dst, name, os.getxattr(src, name, follow_symlinks=False))


def shifted_copy(src: Path, dest: Path, uid_base: int, size: int) -> None:
    """Copy the tree ``src`` to the new directory ``dest`` (must not exist), ids shifted."""
    links: dict[tuple[int, int], str] = {}
    st = os.lstat(src)
    os.mkdir(dest, 0o700)
    _copy_dir(str(src), str(dest), uid_base, size, links)
    _finish(str(src), str(dest), st, uid_base, size)


def _finish(s: str, d: str, st: os.stat_result, uid_base: int, size: int) -> None:
    """Owner, then mode and xattrs (both of which chown can clear), then times."""
    os.chown(d, shift_id(st.st_uid, uid_base, size), shift_id(st.st_gid, uid_base, size))
    os.chmod(d, stat.S_IMODE(st.st_mode))
    _copy_xattrs(s, d)
    os.utime(d, ns=(st.st_atime_ns, st.st_mtime_ns))


def _copy_dir(src: str, dest: str, uid_base: int, size: int, links: dict[tuple[int, int], str]) -> None:
    with os.scandir(src) as it:
        entries = list(it)
    for entry in entries:
        s = entry.path
        d = os.path.join(dest, entry.name)
        st = entry.stat(follow_symlinks=False)
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            os.mkdir(d, 0o700)
            _copy_dir(s, d, uid_base, size, links)
            _finish(s, d, st, uid_base, size)
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(s), d)
            os.chown(
                d,
                shift_id(st.st_uid, uid_base, size),
                shift_id(st.st_gid, uid_base, size),
                follow_symlinks=False,
            )
            os.utime(d, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
        elif stat.S_ISREG(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in links:
                os.link(links[key], d, follow_symlinks=False)
                continue
            if stat.S_ISREG(mode):
                shutil.copyfile(s, d, follow_symlinks=False)
            else:
                os.mknod(d, stat.S_IFMT(mode) | 0o600, st.st_rdev)
            if st.st_nlink > 1:
                links[key] = d
            _finish(s, d, st, uid_base, size)
        # sockets are never in a layer; anything else is skipped
