"""Layer tarballs: hashing, safe extraction as root, and writing them from a directory.

Extraction runs as root on tarballs that may come from anywhere (``image import``,
later ``docker load`` inside a sandbox), so it never trusts a path:

* entry names are normalised; absolute names lose their leading ``/``, and a
  ``..`` component rejects the whole layer;
* every parent directory is opened component by component with ``O_NOFOLLOW``
  from a directory fd on the layer root, so a symlink in the layer (absolute or
  not) is stored as a symlink but is never followed while writing; an entry
  whose path runs through a symlink or a non-directory rejects the layer;
* files are created with ``O_CREAT | O_EXCL | O_NOFOLLOW``; hard links only
  point inside the layer and never through a symlink;
* character and block devices are skipped (runc gives each sandbox its own
  ``/dev``), FIFOs are kept, sockets and unknown types are skipped;
* owners are numeric (``--numeric-owner``), modes keep setuid/setgid/sticky,
  and only ``user.*`` and ``security.capability`` xattrs are applied;
* OCI whiteouts become overlayfs whiteouts, so the unpacked layer directories
  can be stacked directly as overlay ``lowerdir``\\ s: ``.wh.NAME`` becomes a
  0:0 character device ``NAME`` and ``.wh..wh..opq`` sets
  ``trusted.overlay.opaque=y`` (and ``user.overlay.opaque=y``, for overlays
  mounted with ``userxattr`` in a user namespace) on its directory; layers
  cannot bring ``*.overlay.*`` xattrs of their own.

The diff id (sha256 of the uncompressed tar stream) is computed while reading,
so a layer is verified in the same pass that unpacks it.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import io
import os
import shutil
import stat
import tarfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, BinaryIO

from runtime import errors

CHUNK = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
WHITEOUT_PREFIX = ".wh."
OPAQUE_WHITEOUT = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
OPAQUE_USER_XATTR = "user.overlay.opaque"  # the same, for overlays mounted with userxattr
XATTR_PAX_PREFIX = "SCHILY.xattr."
_BAD_ENTRY = (errno.ENAMETOOLONG, errno.EINVAL, errno.EEXIST, errno.EMLINK, errno.EPERM)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class _MissingPath(errors.BadRequest):
    """A path a hard link or directory fix-up needs is not in the layer."""


def xattr_allowed(name: str) -> bool:
    """Xattrs carried in layers: user data and file capabilities, nothing steering the kernel."""
    if name.startswith("user.overlay."):
        return False  # overlayfs mounted with userxattr obeys these: only we may set them
    return name.startswith("user.") or name == "security.capability"


class HashingReader(io.RawIOBase):
    """A read-only stream that hashes (sha256) and counts what passes through it."""

    def __init__(self, raw: IO[bytes]) -> None:
        super().__init__()
        self._raw = raw
        self.hasher = hashlib.sha256()
        self.count = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        if data:
            self.hasher.update(data)
            self.count += len(data)
        return data

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def drain(self) -> None:
        while self.read(CHUNK):
            pass

    @property
    def digest(self) -> str:
        return "sha256:" + self.hasher.hexdigest()


def sha256_file(path: Path) -> tuple[str, int]:
    """``("sha256:<hex>", size)`` of a file's bytes."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return "sha256:" + h.hexdigest(), size


def compression_of(path: Path) -> str:
    """``"gzip"`` or ``""`` (plain tar); raises BadRequest for formats we cannot read."""
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head == ZSTD_MAGIC:
        raise errors.BadRequest(
            "zstd-compressed layers are not supported; re-export the image with gzip or uncompressed layers"
        )
    return ""


@contextmanager
def open_layer(path: Path) -> Iterator[HashingReader]:
    """The uncompressed tar stream of a layer blob (plain or gzip), hashed as it is read."""
    comp = compression_of(path)
    with open(path, "rb") as raw:
        stream: IO[bytes] = (
            gzip.GzipFile(fileobj=raw, mode="rb") if comp == "gzip" else raw  # type: ignore[assignment]
        )
        try:
            yield HashingReader(stream)
        finally:
            if stream is not raw:
                stream.close()


@dataclass
class LayerStats:
    diff_id: str = ""
    size: int = 0  # bytes of regular-file content, i.e. roughly the unpacked size
    entries: int = 0
    skipped: list[str] = field(default_factory=list)  # names of neutralised entries


def scan_layer(path: Path) -> LayerStats:
    """Diff id and unpacked size of a layer blob, without unpacking it."""
    stats = LayerStats()
    with open_layer(path) as reader:
        try:
            with tarfile.open(fileobj=reader, mode="r|", tarinfo=BoundedTarInfo) as tf:
                for member in stream_members(tf):
                    stats.entries += 1
                    if member.isreg():
                        stats.size += member.size
        except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
            raise errors.BadRequest(f"layer {path.name} is not a readable tar stream: {exc}") from exc
        reader.drain()
        stats.diff_id = reader.digest
    return stats


def _split(name: str, what: str) -> list[str]:
    """Normalise a tar member name into components; reject any ``..``."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise errors.BadRequest(f"layer entry {what!r} escapes the layer with '..'; refusing it")
    return parts


class _Extractor:
    def __init__(
        self,
        root_fd: int,
        *,
        flatten: bool,
        owner: Callable[[int], int] | None = None,
        budget: int | None = None,
    ) -> None:
        self.root_fd = root_fd
        self.flatten = flatten
        self.owner = owner or (lambda n: n)
        self.budget = budget
        self.written: set[tuple[str, ...]] = set()  # flatten: what this layer wrote
        self.stats = LayerStats()
        self.dirs: list[tuple[list[str], tarfile.TarInfo]] = []
        self.opaque: list[list[str]] = []
        self.root_meta: tarfile.TarInfo | None = None

    # -- path walking -------------------------------------------------------------------------

    def open_dir(self, parts: list[str], *, create: bool, what: str) -> int:
        """Open the directory ``parts`` beneath the root without following any symlink."""
        fd = os.dup(self.root_fd)
        try:
            for comp in parts:
                try:
                    nfd = os.open(comp, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise _MissingPath(f"layer entry {what!r} refers to a missing path") from None
                    os.mkdir(comp, 0o755, dir_fd=fd)
                    nfd = os.open(comp, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise errors.BadRequest(
                            f"layer entry {what!r} passes through a symlink or a non-directory; "
                            "refusing to write through it"
                        ) from None
                    raise
                os.close(fd)
                fd = nfd
            return fd
        except BaseException:
            os.close(fd)
            raise

    @staticmethod
    def clear(parent: int, name: str, *, keep_dir: bool) -> bool:
        """Remove whatever is at ``name``; returns True if a directory was kept."""
        try:
            st = os.lstat(name, dir_fd=parent)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return True
            shutil.rmtree(name, dir_fd=parent)
        else:
            os.unlink(name, dir_fd=parent)
        return False

    # -- metadata -----------------------------------------------------------------------------

    @staticmethod
    def xattrs(member: tarfile.TarInfo) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        for key, value in member.pax_headers.items():
            if key.startswith(XATTR_PAX_PREFIX):
                name = key[len(XATTR_PAX_PREFIX) :]
                if xattr_allowed(name):
                    out[name] = value.encode("utf-8", "surrogateescape")
        return out

    def apply_fd(self, fd: int, member: tarfile.TarInfo) -> None:
        os.fchown(fd, self.owner(member.uid), self.owner(member.gid))
        os.fchmod(fd, member.mode & 0o7777)  # after chown, which clears setuid/setgid
        for name, value in self.xattrs(member).items():
            try:
                os.setxattr(fd, name, value)
            except OSError:
                self.stats.skipped.append(f"{member.name} (xattr {name})")
        self.set_times(member, fd)

    @staticmethod
    def set_times(member: tarfile.TarInfo, fd: int, name: str | None = None) -> None:
        ns = int(member.mtime * 1_000_000_000)
        with contextlib.suppress(OverflowError, OSError):  # absurd times are not worth failing
            if name is None:
                os.utime(fd, ns=(ns, ns))
            else:
                os.utime(name, ns=(ns, ns), dir_fd=fd, follow_symlinks=False)

    # -- entries ------------------------------------------------------------------------------

    def entry(self, tf: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        parts = _split(member.name, member.name)
        self.stats.entries += 1
        if not parts:
            if member.isdir():
                self.root_meta = member
            return
        base = parts[-1]
        if self.flatten:
            self.written.update(tuple(parts[:i]) for i in range(1, len(parts) + 1))
        if base == OPAQUE_WHITEOUT:
            fd = self.open_dir(parts[:-1], create=True, what=member.name)
            os.close(fd)
            self.opaque.append(parts[:-1])
            return
        if base.startswith(WHITEOUT_PREFIX):
            target = base[len(WHITEOUT_PREFIX) :]
            if target in ("", ".", ".."):
                raise errors.BadRequest(f"layer entry {member.name!r} is a malformed whiteout")
            parent = self.open_dir(parts[:-1], create=True, what=member.name)
            try:
                self.clear(parent, target, keep_dir=False)
                if not self.flatten:
                    os.mknod(target, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=parent)
            finally:
                os.close(parent)
            return
        if member.ischr() or member.isblk():
            self.stats.skipped.append(f"{member.name} (device node)")
            return
        if not (member.isreg() or member.isdir() or member.issym() or member.islnk() or member.isfifo()):
            self.stats.skipped.append(f"{member.name} (unsupported type {member.type!r})")
            return

        parent = self.open_dir(parts[:-1], create=True, what=member.name)
        try:
            kept_dir = self.clear(parent, base, keep_dir=member.isdir())
            if member.isdir():
                if not kept_dir:
                    os.mkdir(base, 0o700, dir_fd=parent)
                self.dirs.append((parts, member))
            elif member.isreg():
                self.regular(tf, member, parent, base)
            elif member.issym():
                os.symlink(member.linkname, base, dir_fd=parent)
                os.chown(base, self.owner(member.uid), self.owner(member.gid), dir_fd=parent, follow_symlinks=False)
                self.set_times(member, parent, base)
            elif member.islnk():
                self.hardlink(member, parent, base)
            else:  # FIFO
                os.mkfifo(base, 0o600, dir_fd=parent)
                fd = os.open(base, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
                try:
                    self.apply_fd(fd, member)
                finally:
                    os.close(fd)
        finally:
            os.close(parent)

    def regular(self, tf: tarfile.TarFile, member: tarfile.TarInfo, parent: int, base: str) -> None:
        if self.budget is not None and self.stats.size + member.size > self.budget:
            raise SpaceExceeded(f"layer entry {member.name!r} takes the layer past the {self.budget} bytes it may fill")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(base, flags, 0o600, dir_fd=parent)
        try:
            src = tf.extractfile(member)
            if src is not None:
                with src:
                    while chunk := src.read(CHUNK):
                        view = memoryview(chunk)
                        while view:
                            view = view[os.write(fd, view) :]
            self.apply_fd(fd, member)
        finally:
            os.close(fd)
        self.stats.size += member.size

    def hardlink(self, member: tarfile.TarInfo, parent: int, base: str) -> None:
        target = _split(member.linkname, member.name)
        if not target:
            raise errors.BadRequest(f"layer entry {member.name!r} is a hard link to the root")
        missing = errors.BadRequest(
            f"layer entry {member.name!r} is a hard link to {member.linkname!r}, which is not in this layer"
        )
        try:
            tparent = self.open_dir(target[:-1], create=False, what=member.name)
        except _MissingPath:
            raise missing from None
        try:
            try:
                st = os.lstat(target[-1], dir_fd=tparent)
            except FileNotFoundError:
                raise missing from None
            if stat.S_ISDIR(st.st_mode):
                raise errors.BadRequest(f"layer entry {member.name!r} hard-links a directory")
            os.link(target[-1], base, src_dir_fd=tparent, dst_dir_fd=parent, follow_symlinks=False)
        finally:
            os.close(tparent)

    def finish(self) -> None:
        for parts in self.opaque:
            fd = self.open_dir(parts, create=False, what="/".join(parts))
            try:
                if not self.flatten:
                    os.setxattr(fd, OPAQUE_XATTR, b"y")
                    with contextlib.suppress(OSError):
                        os.setxattr(fd, OPAQUE_USER_XATTR, b"y")
                    continue
                # flattening: the lower layers' entries go, this layer's own stay
                for name in os.listdir(fd):  # noqa: PTH208 - a directory fd, not a path
                    if (*parts, name) not in self.written:
                        self.clear(fd, name, keep_dir=False)
            finally:
                os.close(fd)
        # Directories last and deepest first: writing children changes a directory's mtime.
        for parts, member in reversed(self.dirs):
            try:
                fd = self.open_dir(parts, create=False, what=member.name)
            except errors.BadRequest:
                continue  # replaced by a later entry
            try:
                self.apply_fd(fd, member)
            finally:
                os.close(fd)
        if self.root_meta is not None:
            self.apply_fd(self.root_fd, self.root_meta)


MAX_META_HEADER = 1 << 20  # a PAX or GNU long-name header: tarfile reads it whole into memory
MAX_SPARSE_ENTRIES = 1 << 16  # (offset, size) pairs of GNU sparse maps kept for one archive


def _count_sparse(tarfile_: tarfile.TarFile, n: int, *, charge: bool = True) -> None:
    """Charge ``n`` sparse map entries to the archive being read (all its members, for as
    long as it is open); ``charge=False`` only checks that they would fit."""
    total = int(getattr(tarfile_, "_kubelab_sparse_entries", 0)) + n
    if total > MAX_SPARSE_ENTRIES:
        raise tarfile.HeaderError(f"sparse file maps of more than {MAX_SPARSE_ENTRIES} entries in one archive")
    if charge:
        tarfile_._kubelab_sparse_entries = total  # type: ignore[attr-defined]


class BoundedTarInfo(tarfile.TarInfo):
    """A TarInfo that bounds what tarfile keeps in memory for one header.

    * PAX and GNU long-name headers may not exceed ``MAX_META_HEADER``: tarfile reads such a
      header into memory in one piece, so an archive that declares one of a gigabyte would
      otherwise cost runtimed that much memory.
    * GNU sparse maps (old GNU ``S`` members with their extension blocks, PAX sparse 0.0, 0.1
      and 1.0) may hold at most ``MAX_SPARSE_ENTRIES`` entries per archive: tarfile keeps each
      as a Python tuple (about five times the bytes the archive spends on it) for as long as
      the archive is open, and reads extension blocks for as long as the archive says so.
      A truncated map is a refused header, not an ``IndexError``.
    """

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        meta = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.GNUTYPE_LONGNAME)
        if self.type in (*meta, tarfile.GNUTYPE_LONGLINK) and self.size > MAX_META_HEADER:
            raise tarfile.HeaderError(f"an extended header of {self.size} bytes (at most {MAX_META_HEADER})")
        return super()._proc_member(tarfile_)  # type: ignore[misc, no-any-return]

    def _proc_sparse(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        # CPython 3.11's loop, with every entry counted and a short read refused
        structs, isextended, origsize = self._sparse_structs  # type: ignore[attr-defined]
        del self._sparse_structs  # type: ignore[attr-defined]
        _count_sparse(tarfile_, len(structs))
        while isextended:
            buf = tarfile_.fileobj.read(tarfile.BLOCKSIZE)
            if len(buf) != tarfile.BLOCKSIZE:
                raise tarfile.HeaderError("a GNU sparse map cut short by the end of the archive")
            pos, found = 0, []
            for _ in range(21):
                try:
                    offset = tarfile.nti(buf[pos : pos + 12])  # type: ignore[attr-defined]
                    numbytes = tarfile.nti(buf[pos + 12 : pos + 24])  # type: ignore[attr-defined]
                except ValueError:
                    break
                if offset and numbytes:
                    found.append((offset, numbytes))
                pos += 24
            _count_sparse(tarfile_, len(found))
            structs.extend(found)
            isextended = bool(buf[504])
        self.sparse = structs
        self.offset_data = tarfile_.fileobj.tell()
        tarfile_.offset = self.offset_data + self._block(self.size)  # type: ignore[attr-defined]
        self.size = origsize
        return self

    def _proc_pax(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        # PAX sparse maps (0.0 and 0.1 in the header, 1.0 at the start of the data) are set on
        # the member that follows; a chain of headers may count one map twice (refusing sooner)
        member = super()._proc_pax(tarfile_)  # type: ignore[misc]
        if member.sparse is not None:
            _count_sparse(tarfile_, len(member.sparse))
        return member  # type: ignore[no-any-return]

    def _proc_gnusparse_10(
        self,
        next: tarfile.TarInfo,  # noqa: A002 - tarfile's name
        pax_headers: dict[str, str],
        tarfile_: tarfile.TarFile,
    ) -> None:
        # CPython 3.11's parser of the map at the start of the data, its size checked before
        # it is read (charged by _proc_pax once read) and a truncated map refused
        buf = tarfile_.fileobj.read(tarfile.BLOCKSIZE)
        try:
            head, buf = buf.split(b"\n", 1)
            fields = int(head)
        except ValueError:
            raise tarfile.HeaderError("a malformed GNU sparse 1.0 map") from None
        if fields < 0:
            raise tarfile.HeaderError("a malformed GNU sparse 1.0 map")
        _count_sparse(tarfile_, fields, charge=False)
        numbers: list[int] = []
        while len(numbers) < fields * 2:
            if b"\n" not in buf:
                more = tarfile_.fileobj.read(tarfile.BLOCKSIZE)
                if not more or len(buf) > 64:
                    raise tarfile.HeaderError("a malformed GNU sparse 1.0 map")
                buf += more
                continue
            number, buf = buf.split(b"\n", 1)
            try:
                numbers.append(int(number))
            except ValueError:
                raise tarfile.HeaderError("a malformed GNU sparse 1.0 map") from None
        next.offset_data = tarfile_.fileobj.tell()
        next.sparse = list(zip(numbers[::2], numbers[1::2], strict=True))  # type: ignore[assignment]


def stream_members(tf: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    """The members of a stream-mode (``r|``) archive, as ``for m in tf`` gives them (those
    already read first), without keeping them: tarfile appends every header it reads to
    ``tf.members`` (about 450 bytes each, as many as the stream holds, so a gigabyte of empty
    entries would cost runtimed about a gigabyte of memory), which a stream never reads back.
    ``tf.extractfile`` of a hard link cannot find its target then; callers handle links."""
    kept: list[tarfile.TarInfo] = tf.members  # type: ignore[attr-defined]
    pending = list(kept)
    tf.firstmember = None  # type: ignore[attr-defined]  # read by open(): it is in ``pending``
    kept.clear()
    yield from pending
    while (member := tf.next()) is not None:
        kept.clear()
        yield member


class SpaceExceeded(errors.BadRequest):
    """A layer would write more file content than its caller's budget (``extract_layer_stream``)."""


class _Capped(io.RawIOBase):
    """A stream that refuses to yield more than ``cap`` bytes (a decompression bomb's end)."""

    def __init__(self, raw: IO[bytes], cap: int) -> None:
        super().__init__()
        self._raw = raw
        self._left = cap
        self.cap = cap

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._raw.read(min(len(buffer), CHUNK))
        if len(data) > self._left:
            raise SpaceExceeded(f"the layer's tar stream is larger than the {self.cap} bytes it may take")
        self._left -= len(data)
        buffer[: len(data)] = data
        return len(data)


def extract_layer_stream(
    stream: IO[bytes],
    dest: Path,
    *,
    owner: Callable[[int], int] | None = None,
    budget: int | None = None,
    name: str = "layer",
) -> LayerStats:
    """``extract_layer`` of a readable, seekable stream (plain or gzip tar) instead of a file.

    ``owner`` maps the archive's uids and gids to the ones written (e.g. a sandbox's range,
    anything outside it to nobody); ``budget`` caps the bytes of file content written
    (``SpaceExceeded`` past it) and, at twice that plus 64 MiB, the uncompressed stream read,
    so a sparse file or a decompression bomb is refused instead of filling the disk."""
    head = stream.read(4)
    stream.seek(0)
    if head == ZSTD_MAGIC:
        raise errors.BadRequest(f"{name}: zstd-compressed layers are not supported")
    raw: IO[bytes] = gzip.GzipFile(fileobj=stream, mode="rb") if head.startswith(GZIP_MAGIC) else stream  # type: ignore[assignment]
    if budget is not None:
        raw = io.BufferedReader(_Capped(raw, 2 * budget + (64 << 20)), CHUNK)
    reader = HashingReader(raw)
    root_fd = os.open(dest, _DIR_FLAGS)
    try:
        ex = _Extractor(root_fd, flatten=False, owner=owner, budget=budget)
        _extract_into(ex, reader, name)
        return ex.stats
    finally:
        os.close(root_fd)


def _extract_into(ex: _Extractor, reader: HashingReader, name: str) -> None:
    try:
        with tarfile.open(fileobj=reader, mode="r|", tarinfo=BoundedTarInfo) as tf:
            for member in stream_members(tf):
                try:
                    ex.entry(tf, member)
                except OSError as exc:
                    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                        raise SpaceExceeded(f"unpacking {member.name!r}: the disk is full") from exc
                    cls = errors.BadRequest if exc.errno in _BAD_ENTRY else errors.RuntimeError
                    raise cls(f"unpacking layer entry {member.name!r}: {exc}") from exc
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise errors.BadRequest(f"{name} is not a valid tar stream: {exc}") from exc
    reader.drain()
    ex.finish()
    ex.stats.diff_id = reader.digest


def extract_layer(blob: Path, dest: Path, *, flatten: bool = False) -> LayerStats:
    """Unpack a layer blob into the directory ``dest``; see the module docstring.

    By default ``dest`` is empty and whiteouts become overlayfs whiteouts. With
    ``flatten=True``, ``dest`` holds the layers below and whiteouts delete from it.
    Returns the stats, including the diff id of what was read, which the caller compares.
    Raises ``errors.BadRequest`` for a malicious or unreadable layer (``dest`` is then partial
    and must be discarded).
    """
    root_fd = os.open(dest, _DIR_FLAGS)
    try:
        ex = _Extractor(root_fd, flatten=flatten)
        with open_layer(blob) as reader:
            _extract_into(ex, reader, f"layer {blob.name}")
        return ex.stats
    finally:
        os.close(root_fd)


# -- writing layers ---------------------------------------------------------------------------


def _walk_sorted(root: Path, rel: str = "") -> Iterator[tuple[str, os.DirEntry[str]]]:
    with os.scandir(root / rel if rel else root) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        relpath = f"{rel}/{entry.name}" if rel else entry.name
        yield relpath, entry
        if entry.is_dir(follow_symlinks=False):
            yield from _walk_sorted(root, relpath)


def tar_directory(
    src: Path,
    dest: Path,
    *,
    exclude: Callable[[str], bool] | None = None,
    mtime_clamp: int | None = None,
) -> LayerStats:
    """Write ``src``'s contents as a reproducible layer tar at ``dest``.

    Sorted names, numeric owners, xattrs as PAX ``SCHILY.xattr.*`` records, hard links kept,
    sockets skipped. ``exclude(relpath)`` drops an entry (and, for a directory, its contents);
    ``mtime_clamp`` caps modification times (like ``SOURCE_DATE_EPOCH``) for stable digests.
    """
    stats = LayerStats()
    with open(dest, "wb") as raw:
        hashing = _HashingWriter(raw)
        with tarfile.open(fileobj=hashing, mode="w|", format=tarfile.PAX_FORMAT) as tf:
            skip_prefixes: list[str] = []
            for relpath, _entry in _walk_sorted(src):
                if any(relpath.startswith(p) for p in skip_prefixes):
                    continue
                if exclude is not None and exclude(relpath):
                    skip_prefixes.append(relpath + "/")
                    continue
                full = str(src / relpath)
                info = tf.gettarinfo(full, arcname=relpath)
                if info is None:  # socket
                    stats.skipped.append(relpath)
                    continue
                info.uname = info.gname = ""
                if mtime_clamp is not None and info.mtime > mtime_clamp:
                    info.mtime = mtime_clamp
                if not info.issym():
                    pax = dict(info.pax_headers)
                    for name in os.listxattr(full, follow_symlinks=False):
                        if xattr_allowed(name):
                            value = os.getxattr(full, name, follow_symlinks=False)
                            pax[XATTR_PAX_PREFIX + name] = value.decode("utf-8", "surrogateescape")
                    info.pax_headers = pax
                stats.entries += 1
                if info.isreg():
                    stats.size += info.size
                    with open(full, "rb") as f:
                        tf.addfile(info, f)
                else:
                    tf.addfile(info)
        raw.flush()
        os.fsync(raw.fileno())
        stats.diff_id = hashing.digest
    return stats


class _HashingWriter(io.RawIOBase):
    def __init__(self, raw: BinaryIO) -> None:
        super().__init__()
        self._raw = raw
        self._hasher = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self._hasher.update(data)
        self._raw.write(data)
        return len(data)

    @property
    def digest(self) -> str:
        return "sha256:" + self._hasher.hexdigest()
