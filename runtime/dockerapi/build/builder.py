"""The classic builder (``POST /build`` with ``DOCKER_BUILDKIT=0``), as dockerd 20.10 runs it.

Flow of ``build()``
-------------------
1. The request body (a tar, plain or gzip/bzip2/xz) is decompressed into a scratch
   directory on the sandbox's disk and unpacked with ``tarutil.extract_layer`` (the
   hardened extractor: no ``..``, never writes through a symlink). The Dockerfile
   (``-f``, default ``Dockerfile``, then ``dockerfile``) is read *inside* the context
   (``safewrite.read_in_root``); the ``.dockerignore`` is then applied to the unpacked
   context (``ignore.prune``), so ``COPY . .`` never sees an excluded file even from a
   client that sent everything, and the .dockerignore may exclude the Dockerfile.
2. ``dockerfile.parse``; the ``labels`` option becomes one more LABEL step on the last
   stage and ``--target`` cuts the stage list, both as dockerd does (so the step
   numbering "Step 3/7" matches).
3. Each stage starts from its FROM (an earlier stage, an image, or ``scratch``; ARGs
   before the first FROM substitute in FROM lines only), runs the base image's ONBUILD
   triggers, then dispatches every instruction:

   * metadata instructions (ENV, LABEL, CMD, ...) commit a new image with an
     ``empty_layer`` history row: ``container_config.Cmd`` is the classic cache key
     ``[shell..., "#(nop) ", "ENV A=b"]``; output " ---> Running in <id>",
     "Removing intermediate container <id>", as dockerd prints for its throw-away
     containers;
   * RUN runs in ``Engine.run_step`` (a throw-away container); a non-zero exit stops the
     build with dockerd's text; the container's upper dir becomes the layer. Build-args
     in effect are part of the key (``["|1", "V=2", "/bin/sh", "-c", ...]``);
   * COPY/ADD write the copied files into a fresh ``store.scratch()`` directory, owned by
     host uids (``uid_base`` + container uid), with copy-up semantics: a parent
     directory that exists in the image is recreated with the image's metadata, and
     destinations are resolved through the image's symlinks (``safewrite.open_in_root``,
     never leaving the image's root). Their key hashes the sources' contents and
     metadata (``file:<sha256>``, ``dir:<sha256>``, ``multi:<sha256>``), so a changed
     file misses the cache from that step on;
   * WORKDIR creates its directory in a layer only when the image lacks it (an existing
     one gives an empty layer, as dockerd's diff does).

   An empty diff (nothing written) adds no layer and marks the history row
   ``empty_layer``, exactly as dockerd's ``NewChildImage`` does.
4. The cache: before each step, ``store.children(current)`` is searched for an image
   whose ``container_config`` equals this step's (which holds the key); the newest hit
   is reused and reported " ---> Using cache". ``nocache`` disables the lookup.
5. End: ``{"aux": {"ID": ...}}`` after every stage, the unused build-arg warning,
   "Successfully built <id12>", the tags ("Successfully tagged x:latest"). With ``q``
   only the aux messages and a final ``{"stream": "sha256:...\\n"}`` are sent, and the
   suppressed output is flushed before an error, as dockerd's build router does.

Errors are emitted as ``{"errorDetail": {...}, "error": ...}`` and then raised
(``errors.BadRequest`` for Dockerfile and context errors).
"""

from __future__ import annotations

import bz2
import codecs
import contextlib
import copy
import errno
import gzip
import hashlib
import lzma
import os
import posixpath
import re
import secrets
import shutil
import stat
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

from runtime import errors
from runtime.dockerapi.build import dockerfile as dfparse
from runtime.dockerapi.build import ignore
from runtime.dockerapi.build.dockerfile import Instruction, Stage, go_duration, go_quote, go_quote_list
from runtime.dockerapi.engine import Engine
from runtime.dockerapi.images.store import Image, Layer, normalize_ref, short_id
from runtime.images import tarutil
from runtime.kernel.clock import micro_ts
from runtime.kernel.safewrite import fd_path, open_in_root, read_in_root

DEFAULT_SHELL = ["/bin/sh", "-c"]
BUILTIN_ARGS = frozenset(
    {
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "FTP_PROXY",
        "ftp_proxy",
        "NO_PROXY",
        "no_proxy",
        "ALL_PROXY",
        "all_proxy",
    }
)
ID_RANGE = 65536
CHUNK = 1 << 20
TAR_MAGIC_OFFSET = 257
CHMOD_REFUSED = (
    "the --chmod option requires BuildKit. Refer to https://docs.docker.com/go/buildkit/ "
    "to learn how to build images with BuildKit enabled"
)
_SIGNALS = {
    "HUP",
    "INT",
    "QUIT",
    "ILL",
    "TRAP",
    "ABRT",
    "BUS",
    "FPE",
    "KILL",
    "USR1",
    "SEGV",
    "USR2",
    "PIPE",
    "ALRM",
    "TERM",
    "STKFLT",
    "CHLD",
    "CONT",
    "STOP",
    "TSTP",
    "TTIN",
    "TTOU",
    "URG",
    "XCPU",
    "XFSZ",
    "VTALRM",
    "PROF",
    "WINCH",
    "IO",
    "POLL",
    "PWR",
    "SYS",
    "IOT",
    "UNUSED",
}


@dataclass
class BuildParams:
    dockerfile: str = "Dockerfile"
    tags: list[str] = field(default_factory=list)
    buildargs: dict[str, str | None] = field(default_factory=dict)
    target: str = ""
    nocache: bool = False
    rm: bool = True
    forcerm: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    quiet: bool = False
    pull: bool = False
    cachefrom: list[str] = field(default_factory=list)  # refused when given (http/build.py): not used
    network_mode: str = ""  # RUN steps' network: "default"/"bridge" or "none" (http/build.py refuses others)
    platform: str = ""
    extra_hosts: list[str] = field(default_factory=list)  # --add-host, "name:ip", in RUN steps' /etc/hosts


class StepFailed(errors.RuntimeError):
    """A RUN step that exited non-zero; ``exit_code`` is the errorDetail code."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class BuildCancelled(errors.RuntimeError):
    pass


# -- output ------------------------------------------------------------------------------------


class _Output:
    """The JSON message stream; with ``quiet`` the step output is held back (flushed on error)."""

    def __init__(self, emit: Callable[[dict[str, Any]], None], quiet: bool) -> None:
        self._emit = emit
        self._quiet = quiet
        self._held: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, text: str) -> None:
        with self._lock:
            if self._quiet:
                self._held.append(text)
            else:
                self._emit({"stream": text})

    def aux(self, image_id: str) -> None:
        with self._lock:
            self._emit({"aux": {"ID": image_id}})

    def final(self, text: str) -> None:
        with self._lock:
            self._emit({"stream": text})

    def error(self, message: str, code: int | None) -> None:
        with self._lock:
            if self._quiet and self._held:
                self._emit({"stream": "".join(self._held)})
                self._held.clear()
            detail: dict[str, Any] = {"message": message}
            if code is not None:
                detail["code"] = code
            self._emit({"errorDetail": detail, "error": message})


# -- build args --------------------------------------------------------------------------------


class _BuildArgs:
    """moby's ``BuildArgs``: --build-arg values, meta ARGs (before FROM), a stage's ARGs."""

    def __init__(self, options: dict[str, str | None]) -> None:
        self.options = {k: v for k, v in options.items() if v is not None}
        self.meta: dict[str, str | None] = {}
        self.allowed: dict[str, str | None] = {}
        self.referenced: set[str] = set()

    def meta_value(self, key: str) -> str | None:
        if key not in self.meta:
            return None
        return self.options.get(key, self.meta[key])

    def meta_env(self) -> list[str]:
        return [f"{k}={v}" for k in self.meta if (v := self.meta_value(k)) is not None]

    def value(self, key: str) -> str | None:
        if key in self.options:
            return self.options[key]
        default = self.allowed.get(key)
        if default is None:
            return self.meta_value(key)
        return default

    def allowed_values(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for key in [*self.allowed, *(k for k in BUILTIN_ARGS if k in self.options)]:
            value = self.value(key)
            if value is not None:
                out[key] = value
        return out

    def filter_allowed(self, env: list[str]) -> list[str]:
        keys = {e.partition("=")[0] for e in env}
        return [f"{k}={v}" for k, v in self.allowed_values().items() if k not in keys]

    def referenced_or_not_builtin(self, key: str) -> bool:
        return key in self.referenced or key not in BUILTIN_ARGS

    def unused(self) -> list[str]:
        return sorted(k for k in self.options if k not in self.referenced and k not in BUILTIN_ARGS)


# -- per-stage state ---------------------------------------------------------------------------


_CONFIG_DEFAULTS: dict[str, Any] = {
    "Hostname": "",
    "Domainname": "",
    "User": "",
    "AttachStdin": False,
    "AttachStdout": False,
    "AttachStderr": False,
    "Tty": False,
    "OpenStdin": False,
    "StdinOnce": False,
    "Env": None,
    "Cmd": None,
    "Image": "",
    "Volumes": None,
    "WorkingDir": "",
    "Entrypoint": None,
    "OnBuild": None,
    "Labels": None,
}


@dataclass
class _State:
    image: Image | None
    config: dict[str, Any]
    args: _BuildArgs
    cmd_set: bool = False
    maintainer: str = ""

    @property
    def image_id(self) -> str:
        return self.image.id if self.image else ""

    @property
    def layers(self) -> list[Layer]:
        return list(self.image.layers) if self.image else []

    @property
    def history(self) -> list[dict[str, Any]]:
        return list(self.image.config.get("history") or []) if self.image else []

    @property
    def shell(self) -> list[str]:
        return list(self.config.get("Shell") or DEFAULT_SHELL)

    def env(self) -> list[str]:
        """What variables substitute to: ENV first, then the build args in effect."""
        own = list(self.config.get("Env") or [])
        return own + self.args.filter_allowed(own)


@dataclass
class _Source:
    path: str  # host path (resolved inside its root)
    name: str  # the base name the user's path gives it
    is_dir: bool
    hash: str


# -- helpers -----------------------------------------------------------------------------------


@contextlib.contextmanager
def _open_decompressed(path: Path | str) -> Iterator[IO[bytes]]:
    """The file at ``path`` (never a symlink), decompressed if it is gzip, bzip2 or xz."""
    with open(path, "rb", opener=lambda p, f: os.open(p, f | os.O_NOFOLLOW | os.O_CLOEXEC)) as raw:
        head = raw.read(6)
        raw.seek(0)
        if head.startswith(b"\x1f\x8b"):
            with gzip.GzipFile(fileobj=raw, mode="rb") as gz:
                yield cast(IO[bytes], gz)
        elif head.startswith(b"BZh"):
            with bz2.BZ2File(raw, mode="rb") as bz:
                yield cast(IO[bytes], bz)
        elif head.startswith(b"\xfd7zXZ\x00"):
            with lzma.LZMAFile(raw, mode="rb") as xz:
                yield cast(IO[bytes], xz)
        else:
            yield raw


def _decompress_to(src: Path | str, dest: Path) -> int:
    """Copy ``src`` (plain, gzip, bzip2 or xz) to ``dest`` uncompressed; returns the byte count."""
    total = 0
    try:
        with _open_decompressed(src) as stream, open(dest, "wb") as out:
            while chunk := stream.read(CHUNK):
                out.write(chunk)
                total += len(chunk)
    except (EOFError, lzma.LZMAError, gzip.BadGzipFile, zlib.error) as exc:
        raise errors.BadRequest(f"the archive is not valid: {exc}") from exc
    except OSError as exc:
        if exc.errno is not None:
            raise
        raise errors.BadRequest(f"the archive is not valid: {exc}") from exc
    return total


def _is_archive(path: str) -> bool:
    """Docker's ``isArchivePath``: a (compressed) tar by content, not by name."""
    try:
        with _open_decompressed(path) as stream:
            block = stream.read(512)
    except (OSError, EOFError, lzma.LZMAError, zlib.error):
        return False
    return len(block) == 512 and block[TAR_MAGIC_OFFSET : TAR_MAGIC_OFFSET + 5] == b"ustar"


def _read_file_hash(path: str, h: Any) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)


def _hash_tree(path: str, st: os.stat_result) -> str:
    """``file:<hex>`` / ``dir:<hex>`` of contents and metadata (mode, type, link target), not times."""
    h = hashlib.sha256()
    if not stat.S_ISDIR(st.st_mode):
        h.update(f"{st.st_mode:o} {st.st_size}\0".encode())
        if stat.S_ISREG(st.st_mode):
            _read_file_hash(path, h)
        return "file:" + h.hexdigest()
    for rel, est in _walk(path):
        h.update(f"{rel}\0{est.st_mode:o}\0".encode())
        full = f"{path}/{rel}"
        if stat.S_ISLNK(est.st_mode):
            h.update(os.fsencode(Path(full).readlink()))
        elif stat.S_ISREG(est.st_mode):
            file_hash = hashlib.sha256()
            _read_file_hash(full, file_hash)
            h.update(file_hash.digest())
        h.update(b"\0")
    return "dir:" + h.hexdigest()


def _walk(root: str, rel: str = "") -> Iterator[tuple[str, os.stat_result]]:
    """(relative path, lstat) of everything under ``root``, sorted, never following symlinks."""
    with os.scandir(f"{root}/{rel}" if rel else root) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        path = f"{rel}/{entry.name}" if rel else entry.name
        st = entry.stat(follow_symlinks=False)
        yield path, st
        if stat.S_ISDIR(st.st_mode):
            yield from _walk(root, path)


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """Go's ``filepath.Match``: ``*`` and ``?`` never match ``/``."""
    out = ""
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "*":
            out += "[^/]*"
        elif ch == "?":
            out += "[^/]"
        elif ch == "[":
            end = pattern.find("]", i)
            if end < 0:
                raise errors.BadRequest("syntax error in pattern")
            body = pattern[i:end]
            out += "[" + ("^" + body[1:] if body.startswith("^") else body) + "]"
            i = end + 1
        elif ch == "\\" and i < len(pattern):
            out += re.escape(pattern[i])
            i += 1
        else:
            out += re.escape(ch)
    return re.compile(out + r"\Z", re.DOTALL)


def _has_wildcards(path: str) -> bool:
    return any(ch in path for ch in "*?[")


def _parse_ports(specs: list[str]) -> list[str]:
    """nat.ParsePortSpecs for EXPOSE: "80", "80/udp", "8000-8002" -> ["80/tcp", ...]."""
    out: list[str] = []
    for spec in specs:
        port, _, proto = spec.partition("/")
        proto = (proto or "tcp").lower()
        if proto not in ("tcp", "udp", "sctp"):
            raise errors.BadRequest(f"invalid proto: {proto}")
        start_s, _, end_s = port.partition("-")
        try:
            start = int(start_s)
            end = int(end_s) if end_s else start
        except ValueError:
            raise errors.BadRequest(f"invalid containerPort: {port}") from None
        if not (0 <= start <= 65535 and 0 <= end <= 65535) or end < start:
            raise errors.BadRequest(f"invalid containerPort: {port}")
        out += [f"{p}/{proto}" for p in range(start, end + 1)]
    return out


def _go_quote_rune(n: int) -> str:
    ch = chr(n)
    if ch == "'":
        return "'\\''"
    if ch.isprintable() and n >= 0x20:
        return f"'{ch}'"
    return f"'\\x{n:02x}'" if n < 0x100 else f"'\\u{n:04x}'"


def _healthcheck_comment(health: dict[str, Any]) -> str:
    """Go's ``%q`` of a *HealthConfig, as dockerd writes HEALTHCHECK in history."""
    test = go_quote_list(list(health.get("Test") or []))
    durations = " ".join(
        go_quote(go_duration(int(health.get(k, 0) or 0))) for k in ("Interval", "Timeout", "StartPeriod")
    )
    return f"HEALTHCHECK &{{{test} {durations} {_go_quote_rune(int(health.get('Retries', 0) or 0))}}}"


def _user_db(root: Path | None, path: str) -> list[list[str]] | None:
    raw = read_in_root(root, path) if root is not None else None
    if raw is None:
        return None
    return [line.split(":") for line in raw.decode(errors="replace").splitlines() if line and not line.startswith("#")]


def _lookup(root: Path | None, spec: str, path: str, what: str) -> int:
    if spec.isdigit():
        return int(spec)
    db = _user_db(root, path)
    if db is None:
        raise errors.BadRequest(
            f"unable to convert uid/gid chown string to host mapping: can't find {'uid' if what == 'user' else 'gid'} "
            f"for {what} {spec}: open {path}: no such file or directory"
        )
    for fields in db:
        if len(fields) >= 3 and fields[0] == spec and fields[2].isdigit():
            return int(fields[2])
    raise errors.BadRequest(
        f"unable to convert uid/gid chown string to host mapping: can't find {'uid' if what == 'user' else 'gid'} "
        f"for {what} {spec}: no such {what}: {spec}"
    )


# -- the layer writer --------------------------------------------------------------------------


class _LayerWriter:
    """Writes COPY/ADD/WORKDIR results into a new layer dir over an image's filesystem.

    ``view`` is the read-only mount of the image the step starts from (None for an empty
    one). Paths are container paths; the layer only ever receives real directories
    created here, and every write goes through ``open_in_root(layer, ...)``.
    """

    def __init__(self, layer: Path, view: Path | None, uid_base: int) -> None:
        self.layer = layer
        self.view = view
        self.uid_base = uid_base

    def host_ids(self, uid: int, gid: int) -> tuple[int, int]:
        if not (0 <= uid < ID_RANGE and 0 <= gid < ID_RANGE):
            raise errors.BadRequest(f"uid/gid {uid}:{gid} is outside the sandbox's range (0-{ID_RANGE - 1})")
        return self.uid_base + uid, self.uid_base + gid

    def resolve(self, path: str) -> str:
        """``path`` with the image's symlinks resolved (in scope); missing tails kept as given."""
        parts = [p for p in posixpath.normpath("/" + path).split("/") if p]
        if self.view is None:
            return "/" + "/".join(parts)
        for i in range(len(parts), 0, -1):
            try:
                fd = open_in_root(self.view, "/" + "/".join(parts[:i]))
            except OSError:
                continue
            try:
                real = fd_path(fd)
            finally:
                os.close(fd)
            base = str(self.view).rstrip("/")
            head = real[len(base) :] if real == base or real.startswith(base + "/") else "/"
            return posixpath.normpath(posixpath.join(head or "/", *parts[i:]))
        return "/" + "/".join(parts)

    def image_stat(self, path: str) -> os.stat_result | None:
        """lstat of ``path`` (already resolved) in the layer being written, else in the image."""
        for root in (self.layer, self.view):
            if root is None:
                continue
            try:
                fd = open_in_root(root, path, os.O_PATH | os.O_NOFOLLOW)
            except OSError:
                continue
            try:
                return os.fstat(fd)
            finally:
                os.close(fd)
        return None

    def is_dir(self, path: str) -> bool:
        st = self.image_stat(path)
        return st is not None and stat.S_ISDIR(st.st_mode)

    def mkdirs(self, path: str, owner: tuple[int, int]) -> None:
        """``mkdir -p`` in the layer: dirs the image has come up with its metadata (copy-up)."""
        cur = ""
        for part in [p for p in path.split("/") if p]:
            nxt = f"{cur}/{part}"
            if not self._in_layer(nxt):
                src = None
                if self.view is not None:
                    with contextlib.suppress(OSError):
                        fd = open_in_root(self.view, nxt, os.O_PATH | os.O_NOFOLLOW)
                        try:
                            src = os.fstat(fd)
                        finally:
                            os.close(fd)
                if src is not None and not stat.S_ISDIR(src.st_mode):
                    raise errors.BadRequest(f"mkdir {nxt}: not a directory")
                parent = open_in_root(self.layer, cur or "/", os.O_RDONLY | os.O_DIRECTORY)
                try:
                    os.mkdir(part, 0o755, dir_fd=parent)
                    if src is not None:
                        os.chown(part, src.st_uid, src.st_gid, dir_fd=parent, follow_symlinks=False)
                        os.chmod(part, stat.S_IMODE(src.st_mode), dir_fd=parent)
                        os.utime(part, ns=(src.st_atime_ns, src.st_mtime_ns), dir_fd=parent, follow_symlinks=False)
                    else:
                        os.chown(part, *owner, dir_fd=parent, follow_symlinks=False)
                finally:
                    os.close(parent)
            cur = nxt

    def _in_layer(self, path: str) -> bool:
        try:
            fd = open_in_root(self.layer, path, os.O_PATH | os.O_NOFOLLOW)
        except OSError:
            return False
        try:
            if not stat.S_ISDIR(os.fstat(fd).st_mode):
                raise errors.BadRequest(f"mkdir {path}: not a directory")
            return True
        finally:
            os.close(fd)

    def copy(self, src: str, dest: str, owner: Callable[[os.stat_result], tuple[int, int]]) -> None:
        """Copy the host entry ``src`` (not followed if a symlink) to container path ``dest``."""
        st = os.lstat(src)
        parent_path, name = posixpath.split(dest)
        parent = open_in_root(self.layer, parent_path or "/", os.O_RDONLY | os.O_DIRECTORY)
        try:
            self._copy_entry(src, st, parent, name, owner)
        finally:
            os.close(parent)

    def copy_contents(self, src_dir: str, dest: str, owner: Callable[[os.stat_result], tuple[int, int]]) -> None:
        """Copy what is inside ``src_dir`` into the (existing) layer directory ``dest``."""
        parent = open_in_root(self.layer, dest, os.O_RDONLY | os.O_DIRECTORY)
        try:
            with os.scandir(src_dir) as it:
                entries = sorted(it, key=lambda e: e.name)
            for entry in entries:
                self._copy_entry(entry.path, entry.stat(follow_symlinks=False), parent, entry.name, owner)
        finally:
            os.close(parent)

    def _copy_entry(
        self, src: str, st: os.stat_result, parent: int, name: str, owner: Callable[[os.stat_result], tuple[int, int]]
    ) -> None:
        uid, gid = owner(st)
        mode = st.st_mode
        try:
            existing: os.stat_result | None = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            existing = None
        if existing is not None and not (stat.S_ISDIR(mode) and stat.S_ISDIR(existing.st_mode)):
            if stat.S_ISDIR(existing.st_mode):
                raise errors.BadRequest(f"cannot overwrite directory {name!r} with non-directory")
            os.unlink(name, dir_fd=parent)
        if stat.S_ISDIR(mode):
            if existing is None:
                os.mkdir(name, 0o700, dir_fd=parent)
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
            try:
                with os.scandir(src) as it:
                    entries = sorted(it, key=lambda e: e.name)
                for entry in entries:
                    self._copy_entry(entry.path, entry.stat(follow_symlinks=False), fd, entry.name, owner)
                os.fchown(fd, uid, gid)
                os.fchmod(fd, stat.S_IMODE(mode))
                os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
            finally:
                os.close(fd)
        elif stat.S_ISREG(mode):
            src_fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                fd = os.open(
                    name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=parent
                )
                try:
                    while True:
                        n = os.sendfile(fd, src_fd, None, CHUNK)
                        if n == 0:
                            break
                    os.fchown(fd, uid, gid)
                    os.fchmod(fd, stat.S_IMODE(mode))
                    os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
                finally:
                    os.close(fd)
            finally:
                os.close(src_fd)
        elif stat.S_ISLNK(mode):
            os.symlink(Path(src).readlink(), name, dir_fd=parent)
            os.chown(name, uid, gid, dir_fd=parent, follow_symlinks=False)
            os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=parent, follow_symlinks=False)
        elif stat.S_ISFIFO(mode):
            os.mkfifo(name, stat.S_IMODE(mode), dir_fd=parent)
            os.chown(name, uid, gid, dir_fd=parent, follow_symlinks=False)
        # sockets and device nodes are not copied (runc gives containers their own /dev)


def _layer_from(store_add: Callable[[Path], Layer], upper: Path) -> Layer | None:
    """The layer of a step's diff dir; None (and the dir removed) when nothing changed."""
    with os.scandir(upper) as it:
        empty = next(it, None) is None
    if empty:
        upper.rmdir()
        return None
    return store_add(upper)


# -- the builder -------------------------------------------------------------------------------


class _Builder:
    def __init__(self, engine: Engine, params: BuildParams, out: _Output, cancel: threading.Event | None) -> None:
        self.engine = engine
        self.store = engine.store
        self.params = params
        self.out = out
        self.cancel = cancel
        self.args = _BuildArgs(params.buildargs)
        self.escape = dfparse.DEFAULT_ESCAPE
        self.stages: list[tuple[str, Image | None]] = []
        self.pending: list[str] = []  # intermediate "containers" not reported removed yet
        self.context = Path()
        self.tags = [normalize_ref(t) for t in params.tags]

    # -- entry -----------------------------------------------------------------------------

    def run(self, body: BinaryIO) -> str:
        if re.match(r"^[a-z]+://", self.params.dockerfile):
            raise errors.BadRequest(
                f"remote Dockerfiles are not available here ({self.params.dockerfile}): the sandbox has no "
                "internet access; put the Dockerfile in the build context"
            )
        with self.store.scratch() as work:
            self.context = work / "context"
            self.context.mkdir(mode=0o755)
            raw, plain = work / "context.raw", work / "context.tar"
            with open(raw, "wb") as f:
                shutil.copyfileobj(body, f, CHUNK)
            size = _decompress_to(raw, plain) if raw.stat().st_size else 0
            raw.unlink()
            if size:
                tarutil.extract_layer(plain, self.context)
            plain.unlink(missing_ok=True)
            text = self._read_dockerfile()
            patterns = read_in_root(self.context, ".dockerignore")
            if patterns is not None:
                ignore.prune(
                    self.context, ignore.PatternMatcher(ignore.read_patterns(patterns.decode(errors="replace")))
                )
            return self._build(text)

    def _read_dockerfile(self) -> str:
        name = self.params.dockerfile or "Dockerfile"
        data = read_in_root(self.context, name)
        if data is None and name == "Dockerfile":
            data = read_in_root(self.context, "dockerfile")
        if data is None:
            raise errors.BadRequest(f"Cannot locate specified Dockerfile: {name}")
        return data.decode(errors="replace")

    def _build(self, text: str) -> str:
        parsed = dfparse.parse(text)
        self.escape = parsed.escape
        stages = parsed.stages
        if not stages:
            if parsed.meta_args:
                raise errors.BadRequest("No image was generated. Is your Dockerfile empty?")
            raise errors.BadRequest(f"the Dockerfile ({self.params.dockerfile or 'Dockerfile'}) cannot be empty")
        for w in parsed.warnings:
            self.out(w + "\n")
        if self.params.labels:
            keys = sorted(self.params.labels)
            ins = Instruction(
                cmd="label",
                args=[x for k in keys for x in (k, "'" + self.params.labels[k] + "'")],
                original="LABEL " + " ".join(f"{go_quote(k)}='{self.params.labels[k]}'" for k in keys),
                line=0,
            )
            stages[-1].instructions.append(ins)
        if self.params.target:
            names = [s.name for s in stages]
            target = self.params.target.lower()
            if target not in names:
                raise errors.BadRequest(f"failed to reach build target {self.params.target} in Dockerfile")
            stages = stages[: names.index(target) + 1]
        for ins in parsed.meta_args:
            for word in ins.args:
                key, eq, value = word.partition("=")
                env = self.args.meta_env()  # earlier meta ARGs substitute in later ones
                key = dfparse.process(key, env, self.escape)
                self.args.meta[key] = dfparse.process(value, env, self.escape) if eq else None
                self.args.referenced.add(key)
        total = sum(1 + len(s.instructions) for s in stages)
        step = 0
        state: _State | None = None
        for stage in stages:
            step += 1
            self._check_cancel()
            self.out(f"Step {step}/{total} : {stage.original}\n")
            state = self._init_stage(stage)
            self.out(f" ---> {short_id(state.image_id) if state.image else ''}\n")
            for ins in stage.instructions:
                step += 1
                self._check_cancel()
                self.out(f"Step {step}/{total} : {ins.original}\n")
                self._dispatch(state, ins)
                self.out(f" ---> {short_id(state.image_id) if state.image else ''}\n")
            if state.image is not None:
                self.out.aux(state.image.id)
            self.stages.append((stage.name, state.image))
        assert state is not None
        unused = self.args.unused()
        if unused:
            self.out(f"[Warning] One or more build-args [{' '.join(unused)}] were not consumed\n")
        if state.image is None:
            raise errors.BadRequest("No image was generated. Is your Dockerfile empty?")
        image_id = state.image.id
        self.out(f"Successfully built {short_id(image_id)}\n")
        for tag in self.tags:
            self.store.tag(image_id, tag)
            self.out(f"Successfully tagged {tag}\n")
        if self.params.quiet:
            self.out.final(image_id + "\n")
        return image_id

    def _check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            self.out("Build cancelled\n")
            raise BuildCancelled("Build cancelled")

    # -- stages ----------------------------------------------------------------------------

    def _stage_image(self, name: str) -> tuple[bool, Image | None]:
        """(found, image) of an earlier stage named ``name`` (case-insensitive)."""
        for stage_name, image in self.stages:
            if stage_name and stage_name == name.lower():
                return True, image
        return False, None

    def _init_stage(self, stage: Stage) -> _State:
        base = dfparse.process(stage.base, self.args.meta_env(), self.escape)
        if not base:
            raise errors.BadRequest(f"base name ({stage.base}) should not be blank")
        found, image = self._stage_image(base)
        if not found and base.lower() != "scratch":
            image = self.store.resolve(base)
        self.args.allowed = {}
        config: dict[str, Any] = copy.deepcopy(_CONFIG_DEFAULTS)
        if image is not None:
            config.update(copy.deepcopy(image.config.get("config") or {}))
        state = _State(image=image, config=config, args=self.args)
        triggers = list(config.get("OnBuild") or [])
        if triggers:
            config["OnBuild"] = None
            self.out(f"# Executing {len(triggers)} build trigger{'s' if len(triggers) > 1 else ''}\n")
            for trigger in triggers:
                self._dispatch(state, dfparse.parse_line(trigger, self.escape))
        return state

    # -- dispatch --------------------------------------------------------------------------

    def _dispatch(self, state: _State, ins: Instruction) -> None:
        state.config["Image"] = state.image_id
        try:
            getattr(self, "_do_" + ins.cmd)(state, ins)
        except BaseException:
            if self.params.forcerm:
                self._remove_pending()
            raise
        if self.params.rm or self.params.forcerm:
            self._remove_pending()

    def _word(self, state: _State, word: str) -> str:
        return dfparse.process(word, state.env(), self.escape)

    def _container(self) -> str:
        cid = secrets.token_hex(32)
        self.pending.append(cid)
        self.out(f" ---> Running in {cid[:12]}\n")
        return cid

    def _remove_pending(self) -> None:
        for cid in self.pending:
            self.out(f"Removing intermediate container {cid[:12]}\n")
        self.pending.clear()

    def _probe(self, state: _State, container_config: dict[str, Any]) -> bool:
        if self.params.nocache:
            return False
        hits = [
            img for img in self.store.children(state.image_id) if img.config.get("container_config") == container_config
        ]
        if not hits:
            return False
        state.image = max(hits, key=lambda img: img.created)
        self.out(" ---> Using cache\n")
        return True

    def _commit(self, state: _State, container_config: dict[str, Any], layer: Layer | None, cid: str = "") -> None:
        row: dict[str, Any] = {"created": micro_ts(), "created_by": " ".join(container_config.get("Cmd") or [])}
        if state.maintainer:
            row["author"] = state.maintainer
        if layer is None:
            row["empty_layer"] = True
        config: dict[str, Any] = {
            "architecture": "amd64",
            "os": "linux",
            "created": row["created"],
            "config": copy.deepcopy(state.config),
            "container_config": copy.deepcopy(container_config),
            "history": [*state.history, row],
        }
        if cid:
            config["container"] = cid
        if state.maintainer:
            config["author"] = state.maintainer
        layers = state.layers + ([layer] if layer is not None else [])
        state.image = self.store.commit(config, layers, parent=state.image_id)

    def _with_cmd(self, state: _State, cmd: list[str]) -> dict[str, Any]:
        cc = copy.deepcopy(state.config)
        cc["Cmd"] = cmd
        return cc

    def _commit_meta(self, state: _State, comment: str) -> None:
        """dockerd's ``commit``: a metadata-only step through a throw-away container."""
        cc = self._with_cmd(state, [*state.shell, "#(nop) ", comment])
        if self._probe(state, cc):
            return
        cid = self._container()
        self._commit(state, cc, None, cid)

    # -- instructions ----------------------------------------------------------------------

    def _do_env(self, state: _State, ins: Instruction) -> None:
        env = state.env()
        parts = []
        own = list(state.config.get("Env") or [])
        for raw_key, raw_value in ins.pairs():
            key = dfparse.process(raw_key, env, self.escape)
            value = dfparse.process(raw_value, env, self.escape)
            item = f"{key}={value}"
            parts.append(item)
            for i, existing in enumerate(own):
                if existing.partition("=")[0] == key:
                    own[i] = item
                    break
            else:
                own.append(item)
        state.config["Env"] = own
        self._commit_meta(state, "ENV " + " ".join(parts))

    def _do_label(self, state: _State, ins: Instruction) -> None:
        env = state.env()
        labels = dict(state.config.get("Labels") or {})
        parts = []
        for raw_key, raw_value in ins.pairs():
            key = dfparse.process(raw_key, env, self.escape)
            value = dfparse.process(raw_value, env, self.escape)
            labels[key] = value
            parts.append(f"{key}={value}")
        state.config["Labels"] = labels
        self._commit_meta(state, "LABEL " + " ".join(parts))

    def _do_maintainer(self, state: _State, ins: Instruction) -> None:
        state.maintainer = ins.args[0]
        self._commit_meta(state, "MAINTAINER " + ins.args[0])

    def _do_expose(self, state: _State, ins: Instruction) -> None:
        env = state.env()
        ports: list[str] = []
        for word in ins.args:
            ports += dfparse.process_words(word, env, self.escape)
        exposed = dict(state.config.get("ExposedPorts") or {})
        for port in _parse_ports(ports):
            exposed[port] = {}
        state.config["ExposedPorts"] = exposed
        self._commit_meta(state, "EXPOSE " + " ".join(ports))

    def _do_user(self, state: _State, ins: Instruction) -> None:
        state.config["User"] = self._word(state, ins.args[0])
        self._commit_meta(state, f"USER {state.config['User']}")

    def _do_volume(self, state: _State, ins: Instruction) -> None:
        vols = [self._word(state, v) for v in ins.args]
        volumes = dict(state.config.get("Volumes") or {})
        for v in vols:
            if not v.strip():
                raise errors.BadRequest("VOLUME specified can not be an empty string")
            volumes[v] = {}
        state.config["Volumes"] = volumes
        self._commit_meta(state, "VOLUME [" + " ".join(vols) + "]")

    def _do_stopsignal(self, state: _State, ins: Instruction) -> None:
        sig = self._word(state, ins.args[0])
        name = sig.upper().removeprefix("SIG")
        if not (sig.isdigit() or name in _SIGNALS or re.fullmatch(r"RTMIN(\+\d+)?|RTMAX(-\d+)?", name)):
            raise errors.BadRequest(f"Invalid signal: {sig}")
        state.config["StopSignal"] = sig
        self._commit_meta(state, "STOPSIGNAL " + sig)

    def _do_healthcheck(self, state: _State, ins: Instruction) -> None:
        assert ins.health is not None
        old = state.config.get("Healthcheck")
        if old and old.get("Test") and old["Test"][0] != "NONE":
            self.out(f"Note: overriding previous HEALTHCHECK: [{' '.join(old['Test'])}]\n")
        health = dict(ins.health)
        comment = _healthcheck_comment(health)
        state.config["Healthcheck"] = {k: v for k, v in health.items() if k == "Test" or v}
        self._commit_meta(state, comment)

    def _do_shell(self, state: _State, ins: Instruction) -> None:
        state.config["Shell"] = list(ins.args)
        self._commit_meta(state, "SHELL [" + " ".join(ins.args) + "]")

    def _do_onbuild(self, state: _State, ins: Instruction) -> None:
        expression = ins.expression.strip()
        state.config["OnBuild"] = [*(state.config.get("OnBuild") or []), expression]
        self._commit_meta(state, "ONBUILD " + expression)

    def _cmdline(self, state: _State, ins: Instruction) -> list[str]:
        if ins.json:
            return list(ins.args)
        return [*state.shell, ins.args[0] if ins.args else ""]

    def _do_cmd(self, state: _State, ins: Instruction) -> None:
        cmd = self._cmdline(state, ins)
        state.config["Cmd"] = cmd
        if cmd:
            state.cmd_set = True
        self._commit_meta(state, "CMD " + go_quote_list(cmd))

    def _do_entrypoint(self, state: _State, ins: Instruction) -> None:
        entrypoint = self._cmdline(state, ins)
        state.config["Entrypoint"] = entrypoint
        if not state.cmd_set:
            state.config["Cmd"] = None
        self._commit_meta(state, "ENTRYPOINT " + go_quote_list(entrypoint))

    def _do_arg(self, state: _State, ins: Instruction) -> None:
        env = state.env()
        parts = []
        for word in ins.args:
            raw_key, eq, raw_value = word.partition("=")
            key = dfparse.process(raw_key, env, self.escape)
            value = dfparse.process(raw_value, env, self.escape) if eq else None
            self.args.allowed[key] = value
            self.args.referenced.add(key)
            parts.append(key if value is None else f"{key}={value}")
        self._commit_meta(state, "ARG " + " ".join(parts))

    def _do_workdir(self, state: _State, ins: Instruction) -> None:
        requested = self._word(state, ins.args[0])
        current = state.config.get("WorkingDir") or ""
        workdir = (
            requested if requested.startswith("/") else posixpath.normpath(posixpath.join("/", current, requested))
        )
        state.config["WorkingDir"] = workdir
        cc = self._with_cmd(state, [*state.shell, "#(nop) WORKDIR " + workdir])
        if self._probe(state, cc):
            return
        cid = self._container()
        with contextlib.ExitStack() as stack:
            view = stack.enter_context(self.store.rootfs_view(state.image)) if state.image else None
            layer_dir = stack.enter_context(self.store.scratch())
            writer = _LayerWriter(layer_dir, view, self.engine.ctx.uid_base)
            real = writer.resolve(workdir)
            st = writer.image_stat(real)
            if st is None:
                writer.mkdirs(real, writer.host_ids(0, 0))
            elif not stat.S_ISDIR(st.st_mode):
                raise errors.BadRequest(f"mkdir {workdir}: not a directory")
            layer = _layer_from(self.store.add_layer, layer_dir)
        self._commit(state, cc, layer, cid)

    def _do_run(self, state: _State, ins: Instruction) -> None:
        argv = self._cmdline(state, ins)
        own = list(state.config.get("Env") or [])
        build_env = self.args.filter_allowed(own)
        save = argv
        if build_env:
            keyed = sorted(e for e in build_env if self.args.referenced_or_not_builtin(e.partition("=")[0]))
            save = [f"|{len(keyed)}", *keyed, *argv]
        cc = self._with_cmd(state, save)
        if save:
            cc["Entrypoint"] = None
        if self._probe(state, cc):
            return
        if state.image is None:
            raise errors.BadRequest(
                f'OCI runtime create failed: exec: "{argv[0] if argv else ""}": stat {argv[0] if argv else ""}: '
                "no such file or directory (this stage is FROM scratch and has no files yet)"
            )
        cid = self._container()
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

        def output(data: bytes) -> None:
            text = decoder.decode(data)
            if text:
                self.out(text)

        code, upper = self.engine.run_step(
            state.image,
            argv,
            env=own + build_env,
            workdir=state.config.get("WorkingDir") or "/",
            user=state.config.get("User") or "",
            output=output,
            cancel=self.cancel,
            network_mode="none" if self.params.network_mode == "none" else "default",
            extra_hosts=list(self.params.extra_hosts),
        )
        tail = decoder.decode(b"", final=True)
        if tail:
            self.out(tail)
        if code != 0:
            shutil.rmtree(upper, ignore_errors=True)
            self._check_cancel()
            raise StepFailed(f"The command '{' '.join(argv)}' returned a non-zero code: {code}", code)
        layer = _layer_from(self.store.add_layer, upper)
        self._commit(state, cc, layer, cid)

    def _do_copy(self, state: _State, ins: Instruction) -> None:
        self._copy(state, ins, add=False)

    def _do_add(self, state: _State, ins: Instruction) -> None:
        self._copy(state, ins, add=True)

    # -- COPY / ADD ------------------------------------------------------------------------

    def _from_image(self, ref: str) -> Image | None:
        found, image = self._stage_image(ref)
        if found:
            return image
        if ref.isdigit():
            index = int(ref)
            if index >= len(self.stages):
                raise errors.BadRequest(f"invalid stage index {index}")
            return self.stages[index][1]
        return self.store.resolve(ref)

    def _sources(self, root: Path, srcs: list[str], name: str, from_image: bool) -> list[_Source]:
        infos: list[_Source] = []
        base = os.path.realpath(root)
        for src in srcs:
            clean = posixpath.normpath("/" + src).lstrip("/") or "."
            if _has_wildcards(clean):
                regex = _glob_regex(clean)
                matched = [(rel, st) for rel, st in _walk(base) if regex.match(rel)]
                for rel, st in matched:
                    full = f"{base}/{rel}"
                    infos.append(_Source(full, posixpath.basename(rel), stat.S_ISDIR(st.st_mode), _hash_tree(full, st)))
                if not matched:
                    raise errors.BadRequest(f"{name} failed: no source files were specified")
                continue
            try:
                fd = open_in_root(root, clean, os.O_PATH)
            except OSError as exc:
                if exc.errno not in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                    raise
                if from_image:
                    raise errors.BadRequest(f"{name} failed: stat {src}: file does not exist") from None
                raise errors.BadRequest(
                    f"{name} failed: file not found in build context or excluded by .dockerignore: "
                    f"stat {src}: file does not exist"
                ) from None
            try:
                real = fd_path(fd)
                st = os.fstat(fd)
            finally:
                os.close(fd)
            if not (real == base or real.startswith(base + "/")):
                raise errors.BadRequest(f"{name} failed: forbidden path outside the build context: {src}")
            infos.append(_Source(real, posixpath.basename(clean), stat.S_ISDIR(st.st_mode), _hash_tree(real, st)))
        return infos

    def _copy(self, state: _State, ins: Instruction, *, add: bool) -> None:
        name = "ADD" if add else "COPY"
        if "chmod" in ins.flags:
            raise errors.BadRequest(CHMOD_REFUSED)
        words = [self._word(state, w) for w in ins.args]
        srcs, dest = words[:-1], words[-1]
        chown = self._word(state, ins.flags["chown"]) if ins.flags.get("chown") else ""
        for src in srcs:
            if add and re.match(r"^https?://", src):
                raise errors.BadRequest(
                    f"ADD {src}: downloading from a URL is not available here: the sandbox has no internet "
                    "access. Put the file in the build context and ADD or COPY it from there."
                )
        from_ref = ins.flags.get("from", "")
        with contextlib.ExitStack() as stack:
            if from_ref:
                src_image = self._from_image(from_ref)
                if src_image is None:
                    src_root = stack.enter_context(self.store.scratch())
                else:
                    src_root = stack.enter_context(self.store.rootfs_view(src_image))
            else:
                src_root = self.context
            infos = self._sources(src_root, srcs, name, bool(from_ref))
            if len(infos) > 1 and not dest.endswith("/"):
                raise errors.BadRequest(
                    f"When using {name} with more than one source file, "
                    "the destination must be a directory and end with a /"
                )
            if len(infos) == 1:
                src_hash = infos[0].hash
            else:
                src_hash = "multi:" + hashlib.sha256(",".join(i.hash for i in infos).encode()).hexdigest()
            chown_comment = f"--chown={chown}" if chown else ""
            cc = self._with_cmd(state, [*state.shell, f"#(nop) {name} {chown_comment}{src_hash} in {dest} "])
            if self._probe(state, cc):
                return
            view = stack.enter_context(self.store.rootfs_view(state.image)) if state.image else None
            layer_dir = stack.enter_context(self.store.scratch())
            writer = _LayerWriter(layer_dir, view, self.engine.ctx.uid_base)
            identity = writer.host_ids(*self._chown_ids(view, chown)) if chown else writer.host_ids(0, 0)
            target = dest if dest.startswith("/") else posixpath.join("/", state.config.get("WorkingDir") or "/", dest)
            ends_in_slash = dest.endswith("/")
            for info in infos:
                self._copy_one(writer, info, target, ends_in_slash, identity, add, stack)
            layer = _layer_from(self.store.add_layer, layer_dir)
        self._commit(state, cc, layer)

    def _chown_ids(self, view: Path | None, chown: str) -> tuple[int, int]:
        parts = chown.split(":")
        if len(parts) > 2:
            raise errors.BadRequest("invalid chown string format: " + chown)
        user, group = (parts[0], parts[0]) if len(parts) == 1 else (parts[0], parts[1])
        return _lookup(view, user, "/etc/passwd", "user"), _lookup(view, group, "/etc/group", "group")

    def _copy_one(
        self,
        writer: _LayerWriter,
        info: _Source,
        target: str,
        ends_in_slash: bool,
        identity: tuple[int, int],
        add: bool,
        stack: contextlib.ExitStack,
    ) -> None:
        def fixed(_st: os.stat_result) -> tuple[int, int]:
            return identity

        real = writer.resolve(target)
        if info.is_dir:
            writer.mkdirs(real, identity)
            writer.copy_contents(info.path, real, fixed)
            return
        if add and _is_archive(info.path):
            unpacked = stack.enter_context(self.store.scratch())
            plain = unpacked / "archive.tar"
            files = unpacked / "files"
            files.mkdir()
            _decompress_to(info.path, plain)
            tarutil.extract_layer(plain, files)
            plain.unlink()
            writer.mkdirs(real, identity)
            writer.copy_contents(str(files), real, lambda st: writer.host_ids(st.st_uid, st.st_gid))
            return
        if ends_in_slash or writer.is_dir(real):
            real = posixpath.join(real, info.name)
        parent = posixpath.dirname(real)
        writer.mkdirs(parent, identity)
        writer.copy(info.path, real, fixed)


def build(
    engine: Engine,
    context: BinaryIO,
    params: BuildParams,
    emit: Callable[[dict[str, Any]], None],
    cancel: threading.Event | None = None,
) -> str:
    """Run a classic-builder build; returns the image id. See the module docstring."""
    out = _Output(emit, params.quiet)
    try:
        with engine.store.holding_new_layers():  # a prune during the build keeps its layers
            return _Builder(engine, params, out, cancel).run(context)
    except StepFailed as exc:
        out.error(str(exc), exc.exit_code)
        raise
    except errors.RuntimeError as exc:
        out.error(str(exc), None)
        raise
    except OSError as exc:
        message = f"build failed: {exc.strerror or exc}"
        out.error(message, None)
        raise errors.RuntimeError(message) from exc
