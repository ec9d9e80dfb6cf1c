"""``EngineStore``: a sandbox's Docker images, layers and tags (the engine's image store).

On disk (``R = ctx.engine_root``, on the sandbox's quota'd ext4)::

    images/<hex>.json       an image config, the exact bytes whose sha256 is the image id
    images/<hex>.meta       {"parent": "sha256:.."} (the build cache, history)
    images/repositories.json  {"name:tag": "sha256:<id>"} the student's tags
    layers/<hex>/           a layer the student built (overlay "diff" form, host uids
                            uid_base+N), <hex> = its diff id
    layers/<hex>.json       {"size": bytes of file content}
    layers/<hex>.tar        a loaded layer's original tar, kept only when the store's own
                            tar of the unpacked dir would not give back its diff id
    networks/<id>.json      a user-defined network (``Network``: name, subnet, gateway...);
                            the bridge itself is the engine's (netns.py), made lazily
    tmp/                    scratch dirs (``scratch``), mount points of views

Catalog images (``runtime.images.catalog.CATALOG``: busybox, debian, python, nginx, built
in the platform's ``ImageStore``) are shown as images too, read-only and shared: their id
is their OCI config digest, their tags the catalog's references (``busybox:1.35``,
``busybox:latest``; the student may untag all but the last, and tag them anew), their
layers the catalog's unpacked directories (host uid 0 based: ``mount`` idmaps them to
the sandbox's range, or uses the catalog's shifted copies when ``ctx.idmap`` is False).
Other images of that store (lab-base, the sandbox image) are not offered. An image the
student builds FROM busybox shares busybox's layer by diff id.

Diff ids are computed the way Docker does, over an uncompressed tar of the layer in
*container* uids (host uid - uid_base; ids outside the range become 65534) with overlay
whiteouts turned back into OCI ``.wh.`` entries. The tar is reproducible (sorted names,
numeric owners, no atime), so ``save`` writes the same bytes again and a ``docker load``
of the archive verifies.

Thread safety: one lock around the metadata (tags, image files); layer tarring and
mounting happen outside it.
"""

from __future__ import annotations

import bz2
import contextlib
import copy
import errno
import gzip
import hashlib
import json
import logging
import lzma
import os
import re
import secrets
import shutil
import stat
import subprocess
import tarfile
import tempfile
import threading
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from runtime import errors
from runtime.dockerapi.limits import EngineLimits, quota_message
from runtime.images import catalog, tarutil
from runtime.images.store import ImageStore, safe_rmtree
from runtime.kernel import children
from runtime.kernel.clock import micro_ts, parse_epoch
from runtime.procfs import mounted
from runtime.sandbox.cgexec import Placement
from runtime.sandbox.spec import SandboxContext

log = logging.getLogger("runtime.dockerapi")

HELPER = "runtime.dockerapi._enginehelper"  # a module of runtime.kernel.children.HELPERS
IDMAP_SIZE = 65536
NOBODY = 65534
EXIT_IDMAP_REFUSED = 3
BLOCK = 512
CHUNK = 1 << 20
INGEST_TIMEOUT = 900  # seconds an unpack may take in the sandbox (its CPU limit sets the pace)
OVERLAY_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")
_DIR_NOFOLLOW = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
HEX_RE = re.compile(r"^[0-9a-f]{12,64}$")
REF_RE = re.compile(
    r"^[a-z0-9]+(?:[._-]+[a-z0-9]+)*(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$"
)


class NotFound(errors.RuntimeError):
    """A container, volume or exec instance that does not exist (404)."""

    status = 404
    code = "not_found"


class Forbidden(errors.RuntimeError):
    """A request this lab refuses for the host's safety (403), with the reason."""

    status = 403
    code = "forbidden"


@dataclass(frozen=True)
class Layer:
    diff_id: str
    path: Path
    size: int
    catalog: bool


@dataclass(frozen=True)
class Image:
    id: str
    config: dict[str, Any]
    layers: tuple[Layer, ...]
    parent: str
    repo_tags: tuple[str, ...]
    catalog: bool
    size: int
    created: str


@dataclass(frozen=True)
class Network:
    """A user-defined network (``docker network create``), as the store keeps it."""

    id: str  # 64 hex
    name: str
    subnet: str  # "172.18.0.0/16"
    gateway: str  # "172.18.0.1"
    created: str  # RFC 3339
    internal: bool = False
    labels: tuple[tuple[str, str], ...] = ()
    options: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "subnet": self.subnet,
            "gateway": self.gateway,
            "created": self.created,
            "internal": self.internal,
            "labels": dict(self.labels),
            "options": dict(self.options),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Network:
        return cls(
            id=str(d["id"]),
            name=str(d["name"]),
            subnet=str(d["subnet"]),
            gateway=str(d["gateway"]),
            created=str(d.get("created") or ""),
            internal=bool(d.get("internal")),
            labels=tuple(sorted((str(k), str(v)) for k, v in (d.get("labels") or {}).items())),
            options=tuple(sorted((str(k), str(v)) for k, v in (d.get("options") or {}).items())),
        )


@dataclass(frozen=True)
class _CatalogImage:
    name: str  # in the platform's ImageStore
    refs: tuple[str, ...]  # the Docker references it answers to (runtime.images.catalog)
    id: str
    config: dict[str, Any]
    config_bytes: bytes
    layers: tuple[Layer, ...]
    blobs: tuple[str, ...]  # layer blob digests, one per layer


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def short_id(image_id: str) -> str:
    return image_id.split(":", 1)[-1][:12]


def normalize_ref(ref: str) -> str:
    """``docker.io/library/busybox`` -> ``busybox:latest``; BadRequest for invalid names."""
    name = ref.strip()
    for prefix in ("docker.io/", "index.docker.io/", "registry-1.docker.io/"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    if name.startswith("library/"):
        name = name[len("library/") :]
    if "@" in name:
        raise errors.ImageNotFound(f"No such image: {ref} (digest references are not supported here)")
    last = name.rsplit("/", 1)[-1]
    if ":" not in last:
        name += ":latest"
    if not REF_RE.match(name) or len(name) > 255:
        raise errors.BadRequest(
            f"invalid reference format: {ref!r} (repository names are lowercase letters, digits and . _ -)"
        )
    return name


class _Helpers:
    """The engine's mount helper (``runtime.dockerapi._enginehelper``), started in the sandbox's cgroup
    (``Placement``): its mounts are work for that sandbox and count against its limits.

    One helper serves exactly one request and exits. One is started ahead of need per
    engine, once the engine has used one (its interpreter start-up, ~20 ms, is then off
    the container's start path): it waits in the sandbox's cgroup, one of its pids."""

    def __init__(self, place: Placement) -> None:
        self.place = place
        self._spare: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._closed = False

    def _start(self, pass_fds: Sequence[int] = ()) -> subprocess.Popen[bytes]:
        return self.place.popen(
            children.helper_argv(HELPER, []),
            env=children.helper_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=pass_fds,
        )

    def _take(self, pass_fds: Sequence[int]) -> subprocess.Popen[bytes]:
        if pass_fds:
            return self._start(pass_fds)
        with self._lock:
            proc, self._spare = self._spare, None
        if proc is None or proc.poll() is not None:
            proc = self._start()
        with self._lock:
            if self._spare is None and not self._closed:
                try:
                    self._spare = self._start()
                except errors.RuntimeError as exc:  # the next request starts its own
                    log.debug("no spare engine helper: %s", exc)
        return proc

    def run(self, req: dict[str, Any], *, pass_fds: Sequence[int] = (), timeout: float = 60) -> int:
        """Run one request; raise on failure (code 3, idmapped mounts refused, returned)."""
        for attempt in range(2):
            proc = self._take(pass_fds)
            try:
                out, err = proc.communicate(json.dumps(req).encode(), timeout=timeout)
            except subprocess.TimeoutExpired as exc:
                proc.kill()
                proc.communicate()
                raise errors.RuntimeError(f"engine mount helper ({req['op']}) timed out") from exc
            except BrokenPipeError:  # the spare died before its request (killed in the sandbox)
                proc.wait(timeout=5)
                if attempt == 0:
                    continue
                raise errors.RuntimeError(f"engine mount helper ({req['op']}) died before its request") from None
            break
        if proc.returncode == EXIT_IDMAP_REFUSED:
            return EXIT_IDMAP_REFUSED
        if proc.returncode != 0:
            why = (out + err).decode(errors="replace").strip()[-800:]
            raise errors.RuntimeError(f"engine mount helper ({req['op']}) failed: {why}")
        return 0

    def call(self, req: dict[str, Any], *, pass_fds: Sequence[int], timeout: float) -> tuple[int, dict[str, Any], str]:
        """One request with its own helper (descriptors passed): (exit code, its JSON answer
        or {}, its stderr tail). A helper killed by a signal (the sandbox's OOM killer, its
        pids limit) has a negative code; the caller says what that means."""
        proc = self._start(pass_fds)
        try:
            out, err = proc.communicate(json.dumps(req).encode(), timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            return -9, {"error": "timed out", "kind": "timeout"}, ""
        try:
            answer = json.loads(out.decode().strip().splitlines()[-1]) if out.strip() else {}
        except (ValueError, IndexError):
            answer = {}
        return proc.returncode, answer if isinstance(answer, dict) else {}, err.decode(errors="replace")[-800:]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            proc, self._spare = self._spare, None
        if proc is not None:
            with contextlib.suppress(OSError):
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.communicate(timeout=5)


# -- layer tars ------------------------------------------------------------------------------


class _LayerTar:
    """A reproducible tar of an overlay diff dir, container uids, OCI whiteouts.

    ``chunks()`` yields the stream; ``digest`` and ``size`` are known once it is consumed.
    """

    def __init__(self, root: Path, uid_base: int) -> None:
        self.root = root
        self.uid_base = uid_base
        self.hasher = hashlib.sha256()
        self.size = 0
        self.length = 0

    def _id(self, host: int) -> int:
        inner = host - self.uid_base
        return inner if 0 <= inner < IDMAP_SIZE else NOBODY

    def _emit(self, data: bytes) -> bytes:
        self.hasher.update(data)
        self.length += len(data)
        return data

    def _header(self, info: tarfile.TarInfo) -> bytes:
        return self._emit(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))

    def _walk(self, dfd: int, rel: str) -> Iterator[tuple[str, os.stat_result, int, str]]:
        """(relpath, lstat, parent dir fd, name), sorted, depth first. Every step is relative to
        an open directory and never follows a symlink: a tree that a running container changes
        while it is read (docker commit --pause=false) cannot lead the walk out of it."""
        for name in sorted(os.listdir(dfd)):
            relpath = f"{rel}/{name}" if rel else name
            try:
                st = os.lstat(name, dir_fd=dfd)
            except FileNotFoundError:
                continue
            yield relpath, st, dfd, name
            if stat.S_ISDIR(st.st_mode):
                try:
                    sub = os.open(name, _DIR_NOFOLLOW, dir_fd=dfd)
                except OSError:  # replaced meanwhile (by a symlink, say): not followed
                    continue
                try:
                    yield from self._walk(sub, relpath)
                finally:
                    os.close(sub)

    def chunks(self) -> Iterator[bytes]:
        links: dict[tuple[int, int], str] = {}
        root_fd = os.open(self.root, _DIR_NOFOLLOW)
        try:
            yield from self._chunks(root_fd, links)
        finally:
            os.close(root_fd)
        yield self._emit(bytes(2 * BLOCK))

    def _chunks(self, root_fd: int, links: dict[tuple[int, int], str]) -> Iterator[bytes]:
        for relpath, st, dfd, base in self._walk(root_fd, ""):
            mode = st.st_mode
            parent = relpath.rpartition("/")[0]
            if stat.S_ISCHR(mode) and st.st_rdev == 0:  # overlay whiteout
                info = tarfile.TarInfo((parent + "/" if parent else "") + tarutil.WHITEOUT_PREFIX + base)
                info.mode, info.mtime = 0o644, int(st.st_mtime)
                yield self._header(info)
                continue
            if stat.S_ISSOCK(mode) or stat.S_ISBLK(mode) or stat.S_ISCHR(mode):
                continue
            info = tarfile.TarInfo(relpath)
            info.mode = stat.S_IMODE(mode)
            info.uid, info.gid = self._id(st.st_uid), self._id(st.st_gid)
            info.mtime = int(st.st_mtime)
            if stat.S_ISLNK(mode):
                info.type = tarfile.SYMTYPE
                try:
                    info.linkname = os.readlink(base, dir_fd=dfd)
                except OSError:
                    continue  # gone or replaced meanwhile
                yield self._header(info)
                continue
            try:
                fd = os.open(base, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd)
            except OSError:
                continue  # gone or replaced meanwhile (a symlink is never opened)
            try:
                now = os.fstat(fd)
                if stat.S_IFMT(now.st_mode) != stat.S_IFMT(mode) or now.st_ino != st.st_ino:
                    continue  # replaced between the lstat and the open
                pax: dict[str, str] = {}
                with contextlib.suppress(OSError):
                    for name in sorted(os.listxattr(fd)):
                        if name.startswith(OVERLAY_XATTR_PREFIXES) or not tarutil.xattr_allowed(name):
                            continue
                        pax[tarutil.XATTR_PAX_PREFIX + name] = os.getxattr(fd, name).decode("utf-8", "surrogateescape")
                info.pax_headers = pax
                if stat.S_ISDIR(mode):
                    info.type = tarfile.DIRTYPE
                    yield self._header(info)
                    if _opaque_fd(fd):
                        wh = tarfile.TarInfo(f"{relpath}/{tarutil.OPAQUE_WHITEOUT}")
                        wh.mode, wh.mtime = 0o644, int(st.st_mtime)
                        yield self._header(wh)
                elif stat.S_ISFIFO(mode):
                    info.type = tarfile.FIFOTYPE
                    yield self._header(info)
                elif stat.S_ISREG(mode):
                    key = (st.st_dev, st.st_ino)
                    if st.st_nlink > 1 and key in links:
                        info.type = tarfile.LNKTYPE
                        info.linkname = links[key]
                        yield self._header(info)
                        continue
                    links[key] = relpath
                    info.size = st.st_size
                    yield self._header(info)
                    left = st.st_size
                    while left > 0:
                        data = os.read(fd, min(CHUNK, left))
                        if not data:  # the file shrank: pad with zeros, the header said size
                            data = bytes(min(CHUNK, left))
                        left -= len(data)
                        yield self._emit(data)
                    self.size += st.st_size
                    if st.st_size % BLOCK:
                        yield self._emit(bytes(BLOCK - st.st_size % BLOCK))
            finally:
                os.close(fd)

    @property
    def digest(self) -> str:
        return "sha256:" + self.hasher.hexdigest()


def _opaque_fd(fd: int) -> bool:
    for name in (tarutil.OPAQUE_XATTR, tarutil.OPAQUE_USER_XATTR):
        with contextlib.suppress(OSError):
            if os.getxattr(fd, name) == b"y":
                return True
    return False


# -- the store -------------------------------------------------------------------------------


class EngineStore:
    """A sandbox's images and layers; see the module docstring."""

    def __init__(self, ctx: SandboxContext, catalog_store: ImageStore, *, limits: EngineLimits | None = None) -> None:
        self.ctx = ctx
        self.catalog_store = catalog_store
        self.limits = limits or EngineLimits()
        self.root = ctx.engine_root
        self.images_dir = self.root / "images"
        self.layers_dir = self.root / "layers"
        self.tmp = self.root / "tmp"
        self.networks_dir = self.root / "networks"
        self.place = Placement(ctx.cgroup_path)
        self._helpers = _Helpers(self.place)
        # The sandbox's root (a host uid) must traverse to container bundles: search only.
        self.root.mkdir(parents=True, exist_ok=True, mode=0o711)
        self.root.chmod(0o711)
        for d in (self.images_dir, self.layers_dir, self.tmp):
            d.mkdir(exist_ok=True, mode=0o711)
        self.networks_dir.mkdir(exist_ok=True, mode=0o700)
        self._lock = threading.RLock()
        self._catalog_cache: tuple[float, dict[str, _CatalogImage]] | None = None
        self._sizes: dict[str, int] = {}
        self._in_use: Callable[[], set[str]] = set
        # Layers of images still being made (load, import, commit, build): registered one by
        # one, named by an image only at the end; _gc_layers (an rmi or prune meanwhile) keeps them.
        self._held: list[set[str]] = []
        self._holding = threading.local()
        for stale in self.tmp.iterdir():  # left by a crash (nothing is mounted there by then)
            with contextlib.suppress(OSError, errors.RuntimeError):
                safe_rmtree(stale)

    def helper(self, req: dict[str, Any], *, pass_fds: Sequence[int] = (), timeout: float = 60) -> int:
        """Run one request through the engine's mount helper, in the sandbox's cgroup."""
        return self._helpers.run(req, pass_fds=pass_fds, timeout=timeout)

    def close(self) -> None:
        """Stop the spare helper (the engine is closing or detaching)."""
        self._helpers.close()

    # -- networks --------------------------------------------------------------------------------

    def networks(self) -> list[Network]:
        """The user-defined networks, oldest first."""
        out = []
        for f in self.networks_dir.glob("*.json"):
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError, AttributeError):
                out.append(Network.from_json(json.loads(f.read_text())))
        return sorted(out, key=lambda n: (n.created, n.id))

    def add_network(self, net: Network) -> None:
        """Record ``net``; Docker's 409 when the name is taken, 403 past the quota."""
        with self._lock:
            nets = self.networks()
            if any(n.name == net.name for n in nets):
                raise errors.Conflict(f"network with name {net.name} already exists")
            if len(nets) >= self.limits.networks:
                remedy = "docker network rm, docker network prune"
                raise Forbidden(quota_message("networks", self.limits.networks, remedy))
            self._write_json(self.networks_dir / f"{net.id}.json", net.to_json())

    def remove_network(self, network_id: str) -> None:
        with self._lock:
            (self.networks_dir / f"{network_id}.json").unlink(missing_ok=True)

    # -- catalog ---------------------------------------------------------------------------------

    def _catalog(self) -> dict[str, _CatalogImage]:
        index = self.catalog_store.root / "index.json"
        try:
            mtime = index.stat().st_mtime
        except OSError:
            return {}
        with self._lock:
            if self._catalog_cache is not None and self._catalog_cache[0] == mtime:
                return self._catalog_cache[1]
        out: dict[str, _CatalogImage] = {}
        refs_of = {entry.name: entry.refs for entry in catalog.CATALOG}
        for cfg in self.catalog_store.list():
            if cfg.name not in refs_of:  # e.g. lab-base: a sandbox image, not offered to Docker
                continue
            try:
                manifest = json.loads(self.catalog_store.blob_path(cfg.digest).read_bytes())
                config_digest = manifest["config"]["digest"]
                config_bytes = self.catalog_store.blob_path(config_digest).read_bytes()
                config = json.loads(config_bytes)
                blobs = tuple(str(d["digest"]) for d in manifest.get("layers") or [])
                blob_sizes = [int(d.get("size") or 0) for d in manifest.get("layers") or []]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("catalog image %s unreadable: %s", cfg.name, exc)
                continue
            # Per-layer sizes are not recorded by the catalog: spread its unpacked size over
            # its layers in proportion to their blob sizes (what `docker images` adds up).
            total_blob = sum(blob_sizes) or 1
            layers = tuple(
                Layer(
                    diff_id=diff_id,
                    path=self.catalog_store.layers_root / diff_id.split(":", 1)[1],
                    size=cfg.size * bs // total_blob,
                    catalog=True,
                )
                for diff_id, bs in zip(cfg.layers, blob_sizes, strict=True)
            )
            out[config_digest] = _CatalogImage(
                cfg.name, refs_of[cfg.name], config_digest, config, config_bytes, layers, blobs
            )
        with self._lock:
            self._catalog_cache = (mtime, out)
        return out

    def _catalog_layer(self, diff_id: str) -> tuple[_CatalogImage, int] | None:
        for img in self._catalog().values():
            for i, layer in enumerate(img.layers):
                if layer.diff_id == diff_id:
                    return img, i
        return None

    # -- metadata --------------------------------------------------------------------------------

    def _tags_file(self) -> Path:
        return self.images_dir / "repositories.json"

    def _local_tags(self) -> dict[str, str]:
        try:
            data = json.loads(self._tags_file().read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def _write_json(self, path: Path, obj: Any) -> None:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
        tmp.write_bytes(json.dumps(obj, indent=1, sort_keys=True).encode())
        tmp.replace(path)

    def _tags(self) -> dict[str, str]:
        """Every tag -> image id: the catalog's ``name:latest``, then the student's."""
        tags = {ref: img.id for img in self._catalog().values() for ref in img.refs}
        for tag, image_id in self._local_tags().items():
            if image_id:
                tags[tag] = image_id
            else:  # the student removed a catalog tag
                tags.pop(tag, None)
        return tags

    def _local_ids(self) -> list[str]:
        return ["sha256:" + p.stem for p in self.images_dir.glob("*.json") if HEX_RE.match(p.stem)]

    def _all_ids(self) -> list[str]:
        return [*self._catalog(), *self._local_ids()]

    def _meta(self, image_id: str) -> dict[str, Any]:
        try:
            data = json.loads((self.images_dir / (image_id.split(":", 1)[1] + ".meta")).read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _layer(self, diff_id: str) -> Layer:
        hexd = diff_id.split(":", 1)[1]
        path = self.layers_dir / hexd
        if path.is_dir():
            size = self._sizes.get(hexd)
            if size is None:
                try:
                    size = int(json.loads((self.layers_dir / f"{hexd}.json").read_text())["size"])
                except (OSError, ValueError, KeyError):
                    size = 0
                self._sizes[hexd] = size
            return Layer(diff_id, path, size, catalog=False)
        found = self._catalog_layer(diff_id)
        if found is not None:
            return found[0].layers[found[1]]
        raise errors.RuntimeError(
            f"layer {diff_id} is missing from the engine's store; remove the image and build it again"
        )

    def _image(self, image_id: str, tags: dict[str, str] | None = None) -> Image:
        tags = self._tags() if tags is None else tags
        repo_tags = tuple(sorted(t for t, i in tags.items() if i == image_id))
        cat = self._catalog().get(image_id)
        if cat is not None:
            size = sum(layer.size for layer in cat.layers)
            return Image(
                image_id, cat.config, cat.layers, "", repo_tags, True, size, str(cat.config.get("created", ""))
            )
        path = self.images_dir / (image_id.split(":", 1)[1] + ".json")
        try:
            config = json.loads(path.read_bytes())
        except FileNotFoundError:
            raise errors.ImageNotFound(f"No such image: {short_id(image_id)}") from None
        layers = tuple(self._layer(d) for d in (config.get("rootfs") or {}).get("diff_ids") or [])
        meta = self._meta(image_id)
        return Image(
            id=image_id,
            config=config,
            layers=layers,
            parent=str(meta.get("parent") or ""),
            repo_tags=repo_tags,
            catalog=False,
            size=sum(layer.size for layer in layers),
            created=str(config.get("created", "")),
        )

    # -- images ----------------------------------------------------------------------------------

    def resolve(self, ref: str) -> Image:
        with self._lock:
            if not isinstance(ref, str) or not ref:
                raise errors.ImageNotFound(f"No such image: {ref}")
            tags = self._tags()
            ids = self._all_ids()
            if ref.startswith("sha256:") and ref in ids:
                return self._image(ref, tags)
            bare = ref.removeprefix("sha256:")
            if HEX_RE.match(bare):
                matches = [i for i in ids if i.split(":", 1)[1].startswith(bare)]
                if len(matches) == 1:
                    return self._image(matches[0], tags)
            try:
                name = normalize_ref(ref)
            except errors.BadRequest:
                raise errors.ImageNotFound(f"No such image: {ref}") from None
            if name in tags:
                return self._image(tags[name], tags)
            raise errors.ImageNotFound(f"No such image: {name}")

    def images(self, *, all: bool = False) -> list[Image]:  # noqa: A002 - Docker's parameter name
        with self._lock:
            tags = self._tags()
            imgs = [self._image(i, tags) for i in self._all_ids()]
        if not all:
            parents = {img.parent for img in imgs if img.parent}
            imgs = [img for img in imgs if img.repo_tags or img.id not in parents]
        return sorted(imgs, key=lambda img: img.created, reverse=True)

    def children(self, parent_id: str) -> list[Image]:
        with self._lock:
            tags = self._tags()
            return [self._image(i, tags) for i in self._local_ids() if self._meta(i).get("parent") == parent_id]

    def commit(
        self, config: dict[str, Any], layers: Sequence[Layer], *, parent: str = "", tags: Sequence[str] = ()
    ) -> Image:
        cfg = copy.deepcopy(config)
        cfg["rootfs"] = {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]}
        cfg.setdefault("created", micro_ts())
        cfg.setdefault("architecture", "amd64")
        cfg.setdefault("os", "linux")
        data = canonical(cfg)
        image_id = "sha256:" + hashlib.sha256(data).hexdigest()
        normalized = [normalize_ref(t) for t in tags]
        with self._lock:
            for layer in layers:
                self._layer(layer.diff_id)  # must be known to the store
            hexd = image_id.split(":", 1)[1]
            if image_id not in self._catalog():
                path = self.images_dir / f"{hexd}.json"
                if not path.exists():
                    if len(self._local_ids()) >= self.limits.images:
                        raise Forbidden(
                            quota_message("images", self.limits.images, "docker image prune -a, docker rmi")
                        )
                    tmp = path.with_name(f".{hexd}.{secrets.token_hex(4)}")
                    tmp.write_bytes(data)
                    tmp.replace(path)
                if not (self.images_dir / f"{hexd}.meta").exists():
                    self._write_json(self.images_dir / f"{hexd}.meta", {"parent": parent})
            for t in normalized:
                self._set_tag(t, image_id)
            return self._image(image_id)

    def add_image(self, config_bytes: bytes, tags: Sequence[str] = ()) -> Image:
        """An image config exactly as an archive carries it (its id is the sha256 of these
        bytes, as on the machine that saved it); every layer must be in the store already."""
        try:
            config = json.loads(config_bytes)
            diff_ids = [str(d) for d in config["rootfs"]["diff_ids"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise errors.BadRequest(f"not an image config: {exc}") from None
        image_id = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
        normalized = [normalize_ref(t) for t in tags]
        with self._lock:
            for d in diff_ids:
                self._layer(d)
            hexd = image_id.split(":", 1)[1]
            if image_id not in self._catalog():
                path = self.images_dir / f"{hexd}.json"
                if not path.exists():
                    if len(self._local_ids()) >= self.limits.images:
                        raise Forbidden(
                            quota_message("images", self.limits.images, "docker image prune -a, docker rmi")
                        )
                    tmp = path.with_name(f".{hexd}.{secrets.token_hex(4)}")
                    tmp.write_bytes(config_bytes)
                    tmp.replace(path)
                    self._write_json(self.images_dir / f"{hexd}.meta", {"parent": ""})
            for t in normalized:
                self._set_tag(t, image_id)
            return self._image(image_id)

    def _set_tag(self, tag: str, image_id: str) -> None:
        local = self._local_tags()
        if tag not in local and len(local) >= self.limits.images:
            raise Forbidden(quota_message("image tags", self.limits.images, "docker rmi <name:tag>"))
        local[tag] = image_id
        self._write_json(self._tags_file(), local)

    def tag(self, ref: str, new_ref: str) -> None:
        with self._lock:
            image = self.resolve(ref)
            self._set_tag(normalize_ref(new_ref), image.id)

    def in_use(self) -> set[str]:
        return self._in_use()

    def set_in_use(self, fn: Callable[[], set[str]]) -> None:
        """The engine reports which image ids its containers use (remove/prune respect them)."""
        self._in_use = fn

    def remove(self, ref: str, *, force: bool = False, prune: bool = True) -> list[dict[str, str]]:
        with self._lock:
            image = self.resolve(ref)
            out: list[dict[str, str]] = []
            by_tag = False
            with contextlib.suppress(errors.BadRequest, errors.ImageNotFound):
                by_tag = normalize_ref(ref) in image.repo_tags and not ref.startswith("sha256:")
            used = image.id in self.in_use()
            if by_tag:
                tag = normalize_ref(ref)
                if used and len(image.repo_tags) == 1 and not force:
                    raise errors.Conflict(
                        f'conflict: unable to remove repository reference "{ref}" (must force) - '
                        f"container is using its referenced image {short_id(image.id)}"
                    )
                catalog_tag = image.catalog and tag in self._catalog()[image.id].refs
                if catalog_tag and len(image.repo_tags) == 1:
                    raise errors.Conflict(
                        f"conflict: unable to remove {ref}: it is part of the platform's image "
                        "catalog (shared by every sandbox) and cannot be removed"
                    )
                self._untag(tag, image)
                out.append({"Untagged": tag})
                if len(image.repo_tags) > 1 or used:
                    return out
            else:
                if image.catalog:
                    raise errors.Conflict(
                        f"conflict: unable to delete {short_id(image.id)}: it is part of the platform's "
                        "image catalog (shared by every sandbox) and cannot be removed"
                    )
                if len(image.repo_tags) > 1 and not force:
                    raise errors.Conflict(
                        f"conflict: unable to delete {short_id(image.id)} (must be forced) - "
                        "image is referenced in multiple repositories"
                    )
                if used and not force:
                    raise errors.Conflict(
                        f"conflict: unable to delete {short_id(image.id)} (must be forced) - "
                        "image is being used by a container"
                    )
                for tag in image.repo_tags:
                    self._untag(tag, image)
                    out.append({"Untagged": tag})
                if used:
                    return out
            if image.catalog:
                return out
            if self.children(image.id):
                if not out:
                    raise errors.Conflict(
                        f"conflict: unable to delete {short_id(image.id)} (cannot be forced) - "
                        "image has dependent child images"
                    )
                return out
            out += self._delete(image, prune=prune)
            return out

    def _untag(self, tag: str, image: Image) -> None:
        local = self._local_tags()
        if image.catalog and tag in self._catalog()[image.id].refs:
            local[tag] = ""  # hide the catalog's default tag
        else:
            local.pop(tag, None)
        self._write_json(self._tags_file(), local)

    def _delete(self, image: Image, *, prune: bool) -> list[dict[str, str]]:
        """Delete an untagged local image (and, with prune, its untagged childless parents)."""
        out: list[dict[str, str]] = []
        current: Image | None = image
        while current is not None and not current.catalog:
            hexd = current.id.split(":", 1)[1]
            for suffix in (".json", ".meta"):
                with contextlib.suppress(FileNotFoundError):
                    (self.images_dir / (hexd + suffix)).unlink()
            out.append({"Deleted": current.id})
            parent = current.parent
            current = None
            if prune and parent:
                with contextlib.suppress(errors.ImageNotFound):
                    p = self._image(parent)
                    if not p.repo_tags and not self.children(p.id) and p.id not in self.in_use():
                        current = p
        self._gc_layers()
        return out

    def _gc_layers(self) -> int:
        """Delete layer dirs no image references; return the bytes reclaimed."""
        keep: set[str] = set()
        for i in self._local_ids():
            with contextlib.suppress(OSError, ValueError):
                cfg = json.loads((self.images_dir / (i.split(":", 1)[1] + ".json")).read_bytes())
                keep.update(d.split(":", 1)[1] for d in (cfg.get("rootfs") or {}).get("diff_ids") or [])
        for held in self._held:
            keep |= held
        reclaimed = 0
        for path in self.layers_dir.iterdir():
            if path.is_dir() and HEX_RE.match(path.name) and path.name not in keep:
                reclaimed += self._layer(f"sha256:{path.name}").size
                safe_rmtree(path)
                for suffix in (".json", ".tar"):
                    with contextlib.suppress(FileNotFoundError):
                        (self.layers_dir / f"{path.name}{suffix}").unlink()
                self._sizes.pop(path.name, None)
        return reclaimed

    def prune(self, *, dangling_only: bool = True) -> dict[str, Any]:
        deleted: list[dict[str, str]] = []
        reclaimed = 0
        with self._lock:
            while True:
                used = self.in_use()
                tags = self._tags()
                victims = []
                for image_id in self._local_ids():
                    img = self._image(image_id, tags)
                    if img.id in used or self.children(img.id):
                        continue
                    if dangling_only and img.repo_tags:
                        continue
                    victims.append(img)
                if not victims:
                    break
                for img in victims:
                    for tag in img.repo_tags:
                        self._untag(tag, img)
                        deleted.append({"Untagged": tag})
                    reclaimed += img.size
                    deleted += self._delete(img, prune=False)
        return {"ImagesDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    def history(self, ref: str) -> list[dict[str, Any]]:
        with self._lock:
            image = self.resolve(ref)
            chain: list[Image] = [image]
            while chain[-1].parent:
                try:
                    chain.append(self._image(chain[-1].parent))
                except errors.ImageNotFound:
                    break
        entries = list(image.config.get("history") or [])
        layer_sizes = [layer.size for layer in image.layers]
        sizes: list[int] = []
        li = 0
        for h in entries:
            if h.get("empty_layer"):
                sizes.append(0)
            else:
                sizes.append(layer_sizes[li] if li < len(layer_sizes) else 0)
                li += 1
        ids_at = {len(img.config.get("history") or []): img for img in chain}
        out = []
        for n in range(len(entries), 0, -1):
            h = entries[n - 1]
            owner = ids_at.get(n)
            out.append(
                {
                    "Id": owner.id if owner is not None else "<missing>",
                    "Created": int(parse_epoch(str(h.get("created", "")))),
                    "CreatedBy": h.get("created_by", ""),
                    "Tags": list(owner.repo_tags) if owner is not None and owner.repo_tags else None,
                    "Size": sizes[n - 1],
                    "Comment": h.get("comment", ""),
                }
            )
        return out

    def summary(self, image: Image, containers: int = -1) -> dict[str, Any]:
        """The GET /images/json shape of one image."""
        labels = (image.config.get("config") or {}).get("Labels") or {}
        return {
            "Id": image.id,
            "ParentId": image.parent,
            "RepoTags": list(image.repo_tags) or ["<none>:<none>"],
            "RepoDigests": [],
            "Created": int(parse_epoch(image.created)),
            "Size": image.size,
            "VirtualSize": image.size,
            "SharedSize": -1,
            "Labels": labels,
            "Containers": containers,
        }

    def df(self) -> dict[str, Any]:
        with self._lock:
            imgs = self.images(all=True)
            used = self.in_use()
            seen: dict[str, int] = {}
            for img in imgs:
                for layer in img.layers:
                    seen[layer.diff_id] = layer.size
        return {
            "LayersSize": sum(seen.values()),
            "Images": [self.summary(img, 1 if img.id in used else 0) for img in imgs],
        }

    # -- layers ----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def scratch(self) -> Iterator[Path]:
        path = Path(tempfile.mkdtemp(prefix="scratch-", dir=self.tmp))
        path.chmod(0o755)
        try:
            yield path
        finally:
            if path.exists():
                safe_rmtree(path)

    def layer_tar(self, directory: Path) -> Iterator[bytes]:
        """The layer tar stream of an overlay diff dir (container uids, OCI whiteouts)."""
        return _LayerTar(directory, self.ctx.uid_base).chunks()

    @contextlib.contextmanager
    def holding_new_layers(self) -> Iterator[None]:
        """Around the making of an image: every layer this thread registers (or finds already
        there) inside the block survives an ``rmi``/``prune`` running meanwhile, which deletes
        the layers no image names yet, until the block ends (the image is written by then)."""
        held: set[str] = set()
        with self._lock:
            self._held.append(held)
        outer = getattr(self._holding, "held", None)
        self._holding.held = held
        try:
            yield
        finally:
            self._holding.held = outer
            with self._lock:
                self._held.remove(held)

    def _hold(self, hexd: str) -> None:
        """(Under ``_lock``.) Keep ``hexd`` for this thread's ``holding_new_layers`` block, if any."""
        held = getattr(self._holding, "held", None)
        if held is not None:
            held.add(hexd)

    def add_layer(self, directory: Path) -> Layer:
        tar = _LayerTar(directory, self.ctx.uid_base)
        for _ in tar.chunks():
            pass
        diff_id = tar.digest
        hexd = diff_id.split(":", 1)[1]
        with self._lock:
            self._hold(hexd)
            dest = self.layers_dir / hexd
            if dest.is_dir():
                safe_rmtree(directory)
            else:
                self._write_json(self.layers_dir / f"{hexd}.json", {"size": tar.size})
                directory.rename(dest)
                dest.chmod(0o755)
            self._sizes[hexd] = tar.size
            return Layer(diff_id, dest, tar.size, catalog=False)

    # -- layers from outside: docker load, import, commit -------------------------------------

    def free_bytes(self) -> int:
        """What the sandbox's disk has left for its student (root's reserved blocks not counted)."""
        st = os.statvfs(self.root)
        return st.f_bavail * st.f_frsize

    def disk_full(self, what: str, detail: str = "") -> Forbidden:
        st = os.statvfs(self.root)
        total, free = st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
        return Forbidden(
            f"{what}: not enough space on your sandbox's disk ({free // 2**20} MiB free of "
            f"{total // 2**20} MiB{'; ' + detail if detail else ''}); free some with docker image prune -a, "
            "docker rm, docker volume prune or docker system prune"
        )

    def _owner(self, n: int) -> int:
        """An archive's uid/gid -> this sandbox's host uid (outside its 65536 ids: nobody)."""
        return self.ctx.uid_base + (n if 0 <= n < IDMAP_SIZE else NOBODY)

    def has_layer(self, diff_id: str) -> bool:
        hexd = diff_id.split(":", 1)[-1]
        return bool(HEX_RE.match(hexd)) and (
            (self.layers_dir / hexd).is_dir() or self._catalog_layer(diff_id) is not None
        )

    def ingest_layer(self, stream: IO[bytes], *, what: str, expect: str = "") -> Layer:
        """A layer from a tar stream (plain, gzip, bzip2 or xz) that a student sent: copied as
        sent to the sandbox's disk, then decompressed (its digest checked against ``expect``,
        the image config's diff id, when given) and unpacked by ``tarutil.extract_layer_stream``
        (no path leaves the layer dir, no link is followed, no device is made, uids land in the
        sandbox's range) within the disk's free space -- by the engine helper in the sandbox's
        cgroup (``ingest_in_helper``), so that work counts against the sandbox's memory, pids
        and CPU, not runtimed's (#12). Registered under ``expect`` (or its own digest); the
        uncompressed tar is kept beside it only when the store's own tar of the unpacked dir
        differs, so ``docker save`` gives the same bytes back. A refused or killed unpack
        leaves nothing behind."""
        if expect:
            with self._lock:
                if self.has_layer(expect):
                    self._hold(expect.split(":", 1)[-1])
                    return self._layer(expect)
        budget = self.free_bytes()
        raw_fd, raw_name = tempfile.mkstemp(prefix="raw-", suffix=".tar", dir=self.tmp)
        fd, name = tempfile.mkstemp(prefix="layer-", suffix=".tar", dir=self.tmp)
        raw_path, tar_path = Path(raw_name), Path(name)
        try:
            with os.fdopen(raw_fd, "w+b") as raw, os.fdopen(fd, "w+b") as spool:
                written = 0
                try:
                    while chunk := stream.read(CHUNK):
                        written += len(chunk)
                        if written > budget:
                            raise self.disk_full(what, "the layer is larger than that")
                        raw.write(chunk)
                    raw.flush()
                except OSError as exc:
                    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                        raise self.disk_full(what) from None
                    raise
                raw.seek(0)
                with self.scratch() as scratch:
                    dir_fd = os.open(scratch, _DIR_NOFOLLOW)
                    try:
                        req = {
                            "op": "ingest",
                            "raw_fd": raw.fileno(),
                            "spool_fd": spool.fileno(),
                            "dir_fd": dir_fd,
                            "uid_base": self.ctx.uid_base,
                            "budget": self.free_bytes(),
                            "expect": expect,
                            "what": what,
                        }
                        code, answer, err = self._helpers.call(
                            req, pass_fds=(raw.fileno(), spool.fileno(), dir_fd), timeout=INGEST_TIMEOUT
                        )
                    finally:
                        os.close(dir_fd)
                    raw_path.unlink(missing_ok=True)
                    self._helper_answer(code, answer, err, what=what, doing="unpacking the layer", key="digest")
                    digest, own, size = str(answer["digest"]), str(answer["own"]), int(answer["size"])
                    diff_id = expect or digest
                    keep_tar = own != diff_id
                    hexd = diff_id.split(":", 1)[1]
                    if not HEX_RE.match(hexd):
                        raise errors.RuntimeError(f"{what}: the unpack helper answered a bad digest")
                    with self._lock:
                        self._hold(hexd)
                        dest = self.layers_dir / hexd
                        if not dest.is_dir():
                            if keep_tar:
                                tar_path.replace(self.layers_dir / f"{hexd}.tar")
                            self._write_json(self.layers_dir / f"{hexd}.json", {"size": size})
                            scratch.rename(dest)
                            dest.chmod(0o755)
                        self._sizes[hexd] = size
                        return self._layer(diff_id)
        finally:
            raw_path.unlink(missing_ok=True)
            tar_path.unlink(missing_ok=True)

    def _helper_answer(self, code: int, answer: dict[str, Any], err: str, *, what: str, doing: str, key: str) -> None:
        """Raise what a failed ``ingest``/``tree_tar`` helper run means, in Docker's words."""
        if code < 0 or answer.get("kind") == "timeout":
            why = "timed out" if answer.get("kind") == "timeout" else f"killed by signal {-code}"
            raise errors.LimitExceeded(
                f"{what}: {doing} was stopped ({why}): it needs more memory, processes "
                "or time than your sandbox's limits allow; nothing of it was kept"
            )
        if answer.get("kind") == "disk_full":
            raise self.disk_full(what, str(answer.get("error", "")))
        if answer.get("kind") == "bad_request":
            raise errors.BadRequest(str(answer["error"]))
        if code != 0 or key not in answer:
            why = str(answer.get("error") or err.strip() or f"exit {code}")
            raise errors.RuntimeError(f"{what}: {doing} failed: {why}")

    def layer_from_tree(self, directory: Path, *, what: str) -> Layer | None:
        """A layer of what ``directory`` (a container's upper dir, which a running container
        may be changing) holds, None if it is empty: its tar (a descriptor-relative walk that
        follows no link) written to the sandbox's disk by the engine helper in the sandbox's
        cgroup (op ``tree_tar``), then unpacked by ``ingest_layer`` like any layer a student
        sends."""
        if not directory.is_dir() or not os.listdir(directory):  # noqa: PTH208
            return None
        fd, name = tempfile.mkstemp(prefix="tree-", suffix=".tar", dir=self.tmp)
        path = Path(name)
        try:
            with os.fdopen(fd, "w+b") as f:
                dir_fd = os.open(directory, _DIR_NOFOLLOW)
                try:
                    req = {
                        "op": "tree_tar",
                        "dir_fd": dir_fd,
                        "out_fd": f.fileno(),
                        "uid_base": self.ctx.uid_base,
                        "budget": self.free_bytes(),
                    }
                    code, answer, err = self._helpers.call(req, pass_fds=(dir_fd, f.fileno()), timeout=INGEST_TIMEOUT)
                finally:
                    os.close(dir_fd)
                self._helper_answer(code, answer, err, what=what, doing="reading the changes", key="size")
                f.seek(0)
                return self.ingest_layer(f, what=what)
        finally:
            path.unlink(missing_ok=True)

    # -- filesystems -----------------------------------------------------------------------------

    def lower_dirs(self, layers: Sequence[Layer]) -> list[dict[str, Any]]:
        lowers: list[dict[str, Any]] = []
        shifted: dict[str, list[Path]] = {}
        for layer in layers:
            if not layer.catalog:
                lowers.append({"path": str(layer.path), "idmap": False})
                continue
            found = self._catalog_layer(layer.diff_id)
            if found is None:
                raise errors.RuntimeError(f"catalog layer {layer.diff_id} is gone from the platform's image store")
            img, i = found
            if self.ctx.idmap:
                path = layer.path
                if not path.is_dir():  # not unpacked yet
                    path = self.catalog_store.layer_dirs(img.name)[i]
                lowers.append({"path": str(path), "idmap": True})
            else:
                if img.name not in shifted:
                    shifted[img.name] = self.catalog_store.shifted_layer_dirs(img.name, self.ctx.uid_base, IDMAP_SIZE)
                lowers.append({"path": str(shifted[img.name][i]), "idmap": False})
        return lowers

    def mount(
        self, layers: Sequence[Layer], target: Path, *, upper: Path | None = None, work: Path | None = None
    ) -> None:
        lowers = self.lower_dirs(layers)
        if upper is None:
            # overlayfs wants two lower dirs without an upper one: an empty one at the bottom.
            empty = self.root / "empty"
            empty.mkdir(exist_ok=True, mode=0o755)
            lowers.insert(0, {"path": str(empty), "idmap": False})
            if len(lowers) < 2:
                lowers.insert(0, {"path": str(empty), "idmap": False})
        elif not lowers:
            empty = self.root / "empty"
            empty.mkdir(exist_ok=True, mode=0o755)
            lowers.append({"path": str(empty), "idmap": False})
        scratch = Path(tempfile.mkdtemp(prefix="idmap-", dir=self.tmp))
        try:
            req = {
                "op": "overlay",
                "lowers": lowers,
                "target": str(target),
                "upper": str(upper) if upper else "",
                "work": str(work) if work else "",
                "uid_base": self.ctx.uid_base,
                "size": IDMAP_SIZE,
                "scratch": str(scratch),
            }
            if self.helper(req) == EXIT_IDMAP_REFUSED:
                raise errors.RuntimeError(
                    "the kernel refused idmapped mounts for the catalog's layers; the sandbox "
                    "should have been started with idmap=False"
                )
        finally:
            with contextlib.suppress(OSError):
                shutil.rmtree(scratch)

    def umount(self, target: Path) -> None:
        if mounted(target):
            self.helper({"op": "umount", "targets": [str(target)]})

    @contextlib.contextmanager
    def rootfs_view(self, image: Image) -> Iterator[Path]:
        target = Path(tempfile.mkdtemp(prefix="view-", dir=self.tmp))
        try:
            self.mount(image.layers, target)
            try:
                yield target
            finally:
                self.umount(target)
        finally:
            with contextlib.suppress(OSError):
                target.rmdir()


def ingest_in_helper(req: dict[str, Any]) -> dict[str, Any]:
    """The ``ingest`` op of ``_enginehelper.py`` (see ``EngineStore.ingest_layer``), run in
    the helper process in the sandbox's cgroup. Its cwd becomes the layer dir (this process
    is single-threaded and short-lived: nothing else shares the cwd)."""
    what = str(req["what"])
    expect = str(req.get("expect") or "")
    budget = int(req["budget"])
    uid_base = int(req["uid_base"])

    def owner(n: int) -> int:
        return uid_base + (n if 0 <= n < IDMAP_SIZE else NOBODY)

    stream = os.fdopen(int(req["raw_fd"]), "rb")
    spool = os.fdopen(int(req["spool_fd"]), "w+b")
    try:
        head = stream.read(4)
        stream.seek(0)
        source: Any = stream
        if head.startswith(tarutil.GZIP_MAGIC):
            source = gzip.GzipFile(fileobj=stream, mode="rb")
        elif head.startswith(b"BZh"):
            source = bz2.BZ2File(stream)
        elif head.startswith(b"\xfd7zX"):
            source = lzma.LZMAFile(stream)  # noqa: SIM115 - read to its end below
        elif head == tarutil.ZSTD_MAGIC:
            return {"error": f"{what}: zstd-compressed layers are not supported", "kind": "bad_request"}
        h = hashlib.sha256()
        written = 0
        try:
            while chunk := source.read(CHUNK):
                written += len(chunk)
                if written > budget:
                    return {"error": "the layer is larger than that", "kind": "disk_full"}
                h.update(chunk)
                spool.write(chunk)
            spool.flush()
        except (OSError, EOFError, zlib.error, lzma.LZMAError) as exc:
            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
                return {"error": "", "kind": "disk_full"}
            return {"error": f"{what} is not a readable layer: {exc}", "kind": "bad_request"}
        digest = "sha256:" + h.hexdigest()
        if expect and digest != expect:
            why = f"{what}: layer digest {digest} does not match the image's {expect}"
            return {"error": why, "kind": "bad_request"}
        spool.seek(0)
        os.fchdir(int(req["dir_fd"]))
        left = max(0, budget - written)
        try:
            stats = tarutil.extract_layer_stream(spool, Path(), owner=owner, budget=left, name=what)
        except tarutil.SpaceExceeded as exc:
            return {"error": str(exc), "kind": "disk_full"}
        except errors.BadRequest as exc:
            return {"error": str(exc), "kind": "bad_request"}
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                return {"error": "", "kind": "disk_full"}
            raise
        own = _LayerTar(Path(), uid_base)
        for _ in own.chunks():
            pass
        return {"digest": digest, "own": own.digest, "size": stats.size}
    finally:
        stream.close()
        spool.close()


def tree_tar_in_helper(req: dict[str, Any]) -> dict[str, Any]:
    """The ``tree_tar`` op of ``_enginehelper.py`` (see ``EngineStore.layer_from_tree``): the
    store's tar of the directory behind ``dir_fd`` (made the cwd) written to ``out_fd``,
    stopped past ``budget`` bytes."""
    budget, written = int(req["budget"]), 0
    os.fchdir(int(req["dir_fd"]))
    with os.fdopen(int(req["out_fd"]), "wb") as out:
        try:
            for chunk in _LayerTar(Path(), int(req["uid_base"])).chunks():
                written += len(chunk)
                if written > budget:
                    return {"error": "the changes are larger than that", "kind": "disk_full"}
                out.write(chunk)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                return {"error": "", "kind": "disk_full"}
            raise
    return {"size": written}
