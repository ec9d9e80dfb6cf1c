"""``docker cp``: the container's side of ``HEAD/GET/PUT /containers/{id}/archive``.

The container's filesystem belongs to the student, and runtimed runs as host root: it
never walks, reads or extracts that tree itself. Every ``docker cp`` runs ``tar`` INSIDE
the running container, the way ``docker exec`` runs a process (``runc exec``: the
container's namespaces, its user namespace, Docker's default capabilities,
``noNewPrivileges``, the sandbox's seccomp profile, the container's cgroup). Paths are
resolved by that process's kernel in the container's own root, so a symlink planted by
the student (``ln -s / /escape``) leads to the container's ``/``, never the host's; a
volume or bind mount shows what the container sees. The host only moves bytes between
the HTTP connection and the tar's pipes, and parses tar *headers* (data, not paths) to
answer the stat Docker sends along.

The engine hands this module a ``Spawn``: start ``argv`` in the container with pipes. A
stopped container has no namespaces to run tar in: the engine runs each tar in a one-off
runc container on that container's own root filesystem, volumes and binds (its user
namespace, capabilities and seccomp profile), as dockerd mounts a stopped container's
filesystem for ``docker cp``. An image without ``tar`` gets an error naming that.

Docker's semantics (moby ``daemon/archive.go``, ``pkg/archive``), as the CLI relies on:

* ``HEAD`` (stat) and ``GET``: the parent of ``path`` is resolved following symlinks, the
  last element is not (a symlink is reported and archived as a link); a trailing ``/`` or
  ``/.`` resolves the whole path. The stat is the ``X-Docker-Container-Path-Stat`` header:
  base64 of ``{"name", "size", "mode" (Go ``os.FileMode`` bits), "mtime", "linkTarget"}``.
  The tar's entries are named after the last element (``/etc/hostname`` -> ``hostname``,
  ``/etc/`` -> ``etc/...``, ``/etc/.`` -> ``./...``).
* ``PUT``: ``path`` must be a directory (symlinks followed); the body is a tar extracted
  there. With ``noOverwriteDirNonDir`` an entry of the archive's top level may not
  replace a directory with a non-directory or the reverse (the CLI's ``docker cp``
  always asks for that); deeper conflicts are left to tar.
* a missing path: 404 "Could not find the file /x in container web".
"""

from __future__ import annotations

import base64
import bz2
import contextlib
import gzip
import io
import itertools
import json
import lzma
import os
import posixpath
import select
import subprocess
import tarfile
import threading
from collections.abc import Callable, Iterator
from typing import IO, Any

from runtime import errors
from runtime.dockerapi.images.store import NotFound
from runtime.images import tarutil
from runtime.kernel.clock import nano_ts

Spawn = Callable[[list[str], bool], "subprocess.Popen[bytes]"]  # (argv, with stdin) -> process

CHUNK = 64 * 1024
IDLE_TIMEOUT = 300.0  # seconds without a byte from tar before it is given up on
EXIT_TIMEOUT = 30.0

# Go's os.FileMode bits
MODE_DIR = 1 << 31
MODE_SYMLINK = 1 << 27
MODE_DEVICE = 1 << 26
MODE_NAMED_PIPE = 1 << 25
MODE_SETUID = 1 << 23
MODE_SETGID = 1 << 22
MODE_CHAR_DEVICE = 1 << 21
MODE_STICKY = 1 << 20


class SpawnFailed(errors.RuntimeError):
    """The process could not be started in the container (runc's reason)."""

    status = 500


class NoTar(errors.RuntimeError):
    status = 500


NO_TAR = (
    "docker cp runs tar inside the container, and this container's image has no tar "
    "(install it in the image, e.g. RUN apt-get install -y tar, or use docker exec with cat)"
)


def go_file_mode(ti: tarfile.TarInfo) -> int:
    mode = ti.mode & 0o777
    for bit, go in ((0o4000, MODE_SETUID), (0o2000, MODE_SETGID), (0o1000, MODE_STICKY)):
        if ti.mode & bit:
            mode |= go
    if ti.isdir():
        mode |= MODE_DIR
    elif ti.issym():
        mode |= MODE_SYMLINK
    elif ti.ischr():
        mode |= MODE_DEVICE | MODE_CHAR_DEVICE
    elif ti.isblk():
        mode |= MODE_DEVICE
    elif ti.isfifo():
        mode |= MODE_NAMED_PIPE
    return mode


def encode_stat(stat: dict[str, Any]) -> str:
    """The ``X-Docker-Container-Path-Stat`` header's value."""
    return base64.b64encode(json.dumps(stat).encode()).decode()


def _abs(path: str) -> str:
    """Docker's absolute form: joined to ``/``, cleaned, a trailing ``/`` or ``/.`` kept."""
    clean = posixpath.normpath("/" + path)
    clean = "/" + clean.lstrip("/")
    if path.endswith("/.") and clean != "/":
        return clean + "/."
    if path.endswith("/") and clean != "/":
        return clean + "/"
    return clean


def _decompressed(body: IO[bytes]) -> IO[bytes] | io.BufferedIOBase:
    """The tar inside a gzip, bzip2 or xz body (Docker accepts those); the body itself otherwise.
    Only bytes are decoded here: nothing is extracted on the host."""
    magic = body.read(6)
    body.seek(0)
    if magic.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=body, mode="rb")
    if magic.startswith(b"BZh"):
        return bz2.BZ2File(body)
    if magic.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(body)
    return body


def _wait_fd(fd: int, event: int) -> bool:
    """Whether ``fd`` became ready (or hung up) within IDLE_TIMEOUT."""
    p = select.poll()
    p.register(fd, event)
    return bool(p.poll(IDLE_TIMEOUT * 1000))


class _Recorder(io.RawIOBase):
    """Reads the tar's stdout for tarfile and keeps every byte it handed out."""

    def __init__(self, read: Callable[[int], bytes]) -> None:
        self._read = read
        self.seen: list[bytes] = []
        self.recording = True  # until the first entry is read: then the stream passes through

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self._read(CHUNK if size is None or size < 0 else size)
        if self.recording:
            self.seen.append(data)
        return data


class _Tar:
    """One tar process in the container: stdout read with an idle timeout, stderr drained
    by a thread (its tail is kept for the error message)."""

    def __init__(self, spawn: Spawn, argv: list[str], *, stdin: bool = False) -> None:
        try:
            self.proc = spawn(argv, stdin)
        except SpawnFailed as exc:
            if "executable file not found" in str(exc) or "no such file" in str(exc).lower():
                raise NoTar(NO_TAR) from None
            raise
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.stdout = self.proc.stdout
        self._err = b""
        self._drain = threading.Thread(target=self._drain_stderr, daemon=True, name="cp-stderr")
        self._drain.start()

    def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        fd = self.proc.stderr.fileno()
        with contextlib.suppress(OSError):
            while data := os.read(fd, CHUNK):
                self._err = (self._err + data)[-4096:]

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes of the tar's stdout (b"" at its end); raw reads, no buffering."""
        fd = self.stdout.fileno()
        if not _wait_fd(fd, select.POLLIN):
            self.kill()
            raise errors.RuntimeError(f"tar in the container sent nothing for {int(IDLE_TIMEOUT)} s: given up")
        return os.read(fd, size)

    def write_all(self, data: bytes) -> None:
        """Feed ``data`` to the tar's stdin; BrokenPipeError when tar has stopped reading."""
        assert self.proc.stdin is not None
        fd = self.proc.stdin.fileno()
        view = memoryview(data)
        while view:
            if not _wait_fd(fd, select.POLLOUT):
                self.kill()
                raise errors.RuntimeError(f"tar in the container read nothing for {int(IDLE_TIMEOUT)} s: given up")
            view = view[os.write(fd, view) :]

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        self.finish()

    def finish(self) -> int:
        """Wait for the exit (bounded: killed after EXIT_TIMEOUT) and close the pipes."""
        try:
            rc = self.proc.wait(timeout=EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait(timeout=EXIT_TIMEOUT)
        self._drain.join(timeout=EXIT_TIMEOUT)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()
        return rc

    @property
    def error(self) -> str:
        lines = [ln.strip() for ln in self._err.decode(errors="replace").splitlines() if ln.strip()]
        return "; ".join(ln.removeprefix("tar: ") for ln in lines[-3:]) or "tar failed"


class ContainerFS:
    """``docker cp`` on one running container; ``ref`` is the container as the client named it."""

    def __init__(self, spawn: Spawn, ref: str) -> None:
        self.spawn = spawn
        self.ref = ref

    def _not_found(self, path: str) -> NotFound:
        return NotFound(f"Could not find the file {path} in container {self.ref}")

    def _fail(self, tar: _Tar, path: str, rc: int) -> errors.RuntimeError:
        why = tar.error
        if "executable file not found" in why:  # a stopped container's one-off runc run says so here
            return NoTar(NO_TAR)
        if "No such file or directory" in why or "Not a directory" in why:
            return self._not_found(path)
        return errors.RuntimeError(f"docker cp {path}: tar in the container failed (exit {rc}): {why}")

    @staticmethod
    def _create_argv(abs_path: str) -> tuple[list[str], str | None]:
        """tar's argv for ``abs_path`` and the name its top entry must be rebased to (or None)."""
        if abs_path == "/" or abs_path.endswith("/."):
            return ["tar", "-c", "-f", "-", "-C", abs_path.removesuffix("/.") or "/", "."], None
        if abs_path.endswith("/"):
            return ["tar", "-c", "-f", "-", "-C", abs_path, "."], posixpath.basename(abs_path.rstrip("/"))
        parent, base = posixpath.split(abs_path)
        return ["tar", "-c", "-f", "-", "-C", parent, "--", base], None

    def _open(
        self, path: str, shown: str | None = None
    ) -> tuple[_Tar, tarfile.TarFile, _Recorder, dict[str, Any], str | None]:
        """Start the tar of ``path`` and read its first entry: the stat. Errors name ``shown``
        (default: ``path``)."""
        abs_path = _abs(path)
        argv, rebase = self._create_argv(abs_path)
        tar = _Tar(self.spawn, argv)
        rec = _Recorder(tar.read)
        try:
            reader = tarfile.open(fileobj=rec, mode="r|", tarinfo=tarutil.BoundedTarInfo)  # noqa: SIM115 - lives as long as the stream
            first = reader.next()
        except tarfile.TarError:
            first = None
        except BaseException:
            tar.kill()
            raise
        if first is None:
            rc = tar.finish()
            raise self._fail(tar, shown or path, rc)
        rec.recording = False
        name = posixpath.basename(abs_path.rstrip("/")) or "/"
        if abs_path.endswith("/."):
            name = "."
        link = ""
        if first.issym():
            target = first.linkname
            link = posixpath.normpath(
                target if target.startswith("/") else posixpath.join(posixpath.dirname(abs_path), target)
            )
        stat = {
            "name": name,
            "size": len(first.linkname.encode()) if first.issym() else first.size,
            "mode": go_file_mode(first),
            "mtime": nano_ts(first.mtime),
            "linkTarget": link,
        }
        return tar, reader, rec, stat, rebase

    def stat(self, path: str, shown: str | None = None) -> dict[str, Any]:
        tar, _reader, _rec, stat, _ = self._open(path, shown)
        tar.kill()  # only the first header was wanted
        return stat

    def get(self, path: str) -> tuple[dict[str, Any], Iterator[bytes]]:
        """The stat, and the tar's bytes (the iterator owns the process: close it to stop)."""
        tar, reader, rec, stat, rebase = self._open(path)
        chunks = self._passthrough(tar, rec, path) if rebase is None else self._rebased(tar, reader, rebase, path)
        try:
            head = next(chunks)  # started: from now on, closing (or dropping) it ends the tar
        except BaseException:
            tar.kill()
            raise
        return stat, itertools.chain([head], chunks)

    def _passthrough(self, tar: _Tar, rec: _Recorder, path: str) -> Iterator[bytes]:
        ok = False
        try:
            yield b"".join(rec.seen)
            while data := tar.read(CHUNK):
                yield data
            ok = True
        finally:
            if ok:
                rc = tar.finish()
                if rc not in (0, 1):  # GNU tar: 1 is "a file changed as we read it"
                    raise self._fail(tar, path, rc)
            else:
                tar.kill()

    def _rebased(self, tar: _Tar, reader: tarfile.TarFile, name: str, path: str) -> Iterator[bytes]:
        """Entries ``./x`` renamed ``name/x`` (``/dir/`` archived as ``dir``), re-framed header by
        header: data is streamed, never held whole."""
        ok = False
        try:
            for ti in tarutil.stream_members(reader):
                rel = ti.name.removeprefix("./").removeprefix(".")
                ti.name = name + ("/" + rel if rel else "")
                if ti.islnk():
                    lrel = ti.linkname.removeprefix("./")
                    ti.linkname = name + "/" + lrel
                yield ti.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")
                if ti.isreg() and ti.size:
                    src = reader.extractfile(ti)
                    assert src is not None
                    while data := src.read(CHUNK):
                        yield data
                    if ti.size % tarfile.BLOCKSIZE:
                        yield b"\0" * (tarfile.BLOCKSIZE - ti.size % tarfile.BLOCKSIZE)
            yield b"\0" * (2 * tarfile.BLOCKSIZE)
            ok = True
        finally:
            if ok:
                rc = tar.finish()
                if rc not in (0, 1):
                    raise self._fail(tar, path, rc)
            else:
                tar.kill()

    def _top_entries(self, body: IO[bytes]) -> dict[str, bool]:
        """The archive's top-level names -> is a directory (parsed only; nothing extracted)."""
        top: dict[str, bool] = {}
        try:
            with tarfile.open(fileobj=body, mode="r|*", tarinfo=tarutil.BoundedTarInfo) as t:
                for ti in tarutil.stream_members(t):
                    parts = [p for p in ti.name.split("/") if p not in ("", ".")]
                    if not parts or parts[0] == "..":
                        continue
                    if len(parts) == 1:
                        top[parts[0]] = ti.isdir()
                    else:
                        top.setdefault(parts[0], True)
        except tarfile.TarError as exc:
            raise errors.BadRequest(f"the request body is not a tar archive: {exc}") from None
        finally:
            body.seek(0)
        return top

    def put(self, path: str, body: IO[bytes], *, no_overwrite_dir_non_dir: bool) -> None:
        """Extract the tar ``body`` (a seekable file) into the directory ``path``."""
        abs_path = _abs(path).removesuffix("/.").rstrip("/") or "/"
        # the extraction point, with every symlink followed as Docker resolves it
        mode = self.stat(abs_path, path)["mode"]
        if mode & MODE_SYMLINK:
            try:
                mode = self.stat(abs_path + "/.", path)["mode"]
            except NotFound:
                mode = 0
        if not mode & MODE_DIR:
            raise errors.BadRequest("extraction point is not a directory")
        if no_overwrite_dir_non_dir:
            for name, is_dir in self._top_entries(body).items():
                there = posixpath.join(abs_path, name)
                try:
                    existing = self.stat(there)
                except NotFound:
                    continue
                if bool(existing["mode"] & MODE_DIR) != is_dir:
                    if is_dir:
                        raise errors.BadRequest(f'cannot overwrite non-directory "{there}" with directory "{name}"')
                    raise errors.BadRequest(f'cannot overwrite directory "{there}" with non-directory "{name}"')
        data_in = _decompressed(body)
        tar = _Tar(self.spawn, ["tar", "-x", "-f", "-", "-C", abs_path], stdin=True)
        assert tar.proc.stdin is not None
        try:
            with contextlib.suppress(BrokenPipeError):  # tar stopped early: its stderr says why
                while data := data_in.read(CHUNK):
                    tar.write_all(data)
            tar.proc.stdin.close()
        except BaseException:
            tar.kill()
            raise
        rc = tar.finish()
        if rc != 0:
            raise self._fail(tar, path, rc)
