"""``docker diff``: a container's changes, read from its overlayfs upper dir.

What Docker's overlay driver reports (moby ``pkg/archive`` ``OverlayChanges``), computed
from the container's writable layer (``upper``) and the image's layers below it:

* every entry of the upper dir is a change: ``A`` (kind 1) when nothing of that name shows
  through the lower layers, ``C`` (kind 0) when something does;
* a whiteout (a character device 0/0) is ``D`` (kind 2), when the name exists below;
* an opaque dir (xattr ``trusted.overlay.opaque`` = ``y``) replaced its lower content:
  what the lower layers had there and the upper dir does not is ``D``;
* a directory that exists below is reported ``C`` when something under it changed (every
  parent of a change, as Docker lists them) or its permission bits changed; a directory
  that was only copied up to hold an unreported entry is not reported;
* paths the engine mounts over (``/etc/hosts``, ``/dev``, volumes, bind targets...) are
  left out with everything under them (``hidden``): they are not the student's changes.

The result is in the order Docker's walk gives (depth first, names sorted bytewise,
a directory before its content), as ``[{"Path": "/abs/path", "Kind": K}]``.

Safety: the upper dir is written by the student's container and read here by host root.
Nothing is resolved by path: every directory is opened relative to its parent's
descriptor with ``O_NOFOLLOW | O_DIRECTORY``, entries are ``lstat``-ed (``scandir`` on a
descriptor, ``stat(dir_fd=..., follow_symlinks=False)``), and only directories are ever
opened. A symlink is an entry like any other, never a way out of the tree. The lower
layers are looked up the same way, with overlayfs's rules: the top layer first, a
whiteout or a non-directory on the way hides what is below, an opaque directory stops
the lookup at its layer.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

MODIFIED, ADDED, DELETED = 0, 1, 2
OPAQUE_XATTR = "trusted.overlay.opaque"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

Parts = tuple[str, ...]


def is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(fd: int) -> bool:
    try:
        return os.getxattr(fd, OPAQUE_XATTR) == b"y"
    except OSError:
        return False


def _open_dir(name: str, dir_fd: int) -> int | None:
    """The directory ``name`` under ``dir_fd``; None when it is not (or no longer) a directory."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EACCES):
            return None
        raise


def _lstat(name: str, dir_fd: int) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


class _Layer:
    """One lower layer; ``probe`` finds a path in it the way overlayfs looks it up."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def probe(self, parts: Parts, *, want_dir: bool = False) -> tuple[os.stat_result | None, bool, int | None]:
        """``(stat, blocked, fd)``: the entry's stat if this layer has it (None otherwise);
        ``blocked`` when nothing below this layer can show through at ``parts`` (found here,
        a whiteout or non-directory on the way, an opaque directory); with ``want_dir``, an
        open descriptor of the entry when it is a directory (the caller closes it), and
        then ``blocked`` says whether it or a parent is opaque in this layer."""
        fd = os.open(self.path, _DIR_FLAGS)
        opaque = False
        try:
            st: os.stat_result | None = os.fstat(fd)
            for i, name in enumerate(parts):
                st = _lstat(name, fd)
                if st is None:
                    return None, opaque, None
                if is_whiteout(st):
                    return None, True, None
                last = i == len(parts) - 1
                if last and not (want_dir and stat.S_ISDIR(st.st_mode)):
                    return st, True, None
                if not stat.S_ISDIR(st.st_mode):
                    return None, True, None
                sub = _open_dir(name, fd)
                if sub is None:
                    return None, True, None
                os.close(fd)
                fd = sub
                opaque = opaque or _is_opaque(fd)
            if want_dir:
                found, fd = fd, -1
                return st, opaque, found
            return st, True, None
        finally:
            if fd >= 0:
                os.close(fd)


class Lowers:
    """The image's layers under the container's upper dir, ``top`` layer first."""

    def __init__(self, top_first: Sequence[Path]) -> None:
        self.layers = [_Layer(p) for p in top_first]
        self._cache: dict[Parts, os.stat_result | None] = {}

    def lookup(self, parts: Parts) -> os.stat_result | None:
        """What the lower layers show at ``parts`` (an lstat), None when nothing."""
        if parts not in self._cache:
            found = None
            for layer in self.layers:
                st, blocked, _ = layer.probe(parts)
                if st is not None or blocked:
                    found = st
                    break
            self._cache[parts] = found
        return self._cache[parts]

    def children(self, parts: Parts) -> list[str]:
        """The names the lower layers show in the directory ``parts`` (merged, whiteouts applied)."""
        seen: dict[str, bool] = {}  # name -> visible
        for layer in self.layers:
            st, blocked, fd = layer.probe(parts, want_dir=True)
            if fd is not None:
                try:
                    with os.scandir(fd) as it:
                        for entry in it:
                            if entry.name not in seen:
                                seen[entry.name] = not is_whiteout(entry.stat(follow_symlinks=False))
                finally:
                    os.close(fd)
                if blocked:
                    break
                continue
            if st is not None or blocked:
                break  # a non-directory, a whiteout, an opaque parent: nothing below shows
        return [name for name, visible in seen.items() if visible]


def _key(name: str) -> bytes:
    return os.fsencode(name)


def _shown(parts: Parts) -> str:
    return "/" + "/".join(os.fsencode(p).decode("utf-8", "replace") for p in parts)


def changes(upper: Path, lowers_top_first: Sequence[Path], *, hidden: Iterable[str] = ()) -> list[dict[str, Any]]:
    """The container's changes (see the module docstring); ``hidden`` are absolute paths
    left out with their subtrees."""
    lowers = Lowers(lowers_top_first)
    skip = {tuple(p for p in h.split("/") if p) for h in hidden}

    def walk(fd: int, parts: Parts, opaque: bool) -> list[dict[str, Any]]:
        found: list[tuple[bytes, str, os.stat_result | None]] = []
        with os.scandir(fd) as it:
            for entry in it:
                found.append((_key(entry.name), entry.name, entry.stat(follow_symlinks=False)))
        if opaque:
            present = {name for _, name, _ in found}
            found += [(_key(n), n, None) for n in lowers.children(parts) if n not in present]
        result: list[dict[str, Any]] = []
        for _, name, st in sorted(found, key=lambda t: t[0]):
            path = (*parts, name)
            if path in skip:
                continue
            if st is None:  # hidden by the opaque dir: the lower entry is gone
                result.append({"Path": _shown(path), "Kind": DELETED})
                continue
            below = lowers.lookup(path)
            if is_whiteout(st):
                if below is not None:
                    result.append({"Path": _shown(path), "Kind": DELETED})
                continue
            kind = MODIFIED if below is not None else ADDED
            if not stat.S_ISDIR(st.st_mode):
                result.append({"Path": _shown(path), "Kind": kind})
                continue
            sub = _open_dir(name, fd)
            inner: list[dict[str, Any]] = []
            if sub is not None:
                try:
                    sub_opaque = below is not None and stat.S_ISDIR(below.st_mode) and _is_opaque(sub)
                    inner = walk(sub, path, sub_opaque)
                finally:
                    os.close(sub)
            changed_itself = (
                below is None
                or not stat.S_ISDIR(below.st_mode)
                or stat.S_IMODE(below.st_mode) != stat.S_IMODE(st.st_mode)
            )
            if inner or changed_itself:
                result.append({"Path": _shown(path), "Kind": kind})
            result += inner
        return result

    root = os.open(upper, _DIR_FLAGS)
    try:
        return walk(root, (), False)
    finally:
        os.close(root)
