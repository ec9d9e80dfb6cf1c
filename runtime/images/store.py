"""The image store: content-addressed OCI blobs, unpacked layers, shifted copies, recipes.

On disk (``root`` is ``DIR/images`` under the daemon's ``--root``)::

    oci-layout                    {"imageLayoutVersion": "1.0.0"}
    index.json                    OCI image index: one manifest descriptor per image name,
                                  name in annotation org.opencontainers.image.ref.name
    blobs/sha256/<hex>            layer tarballs (plain or gzip, kept byte for byte),
                                  image configs and manifests (canonical JSON)
    layers/<diffid hex>/          a layer unpacked once (overlay whiteout format), reused
    shifted/<base>-<size>/<hex>/  the same, owners shifted by <base> (idmapped-mount fallback)
    cache/<recipe>/               recipe caches (the debootstrap tarball of lab-base, ...)
    locks/                        flock(2) lock files
    tmp/<pid>-*/                  work dirs, swept when their process is gone

So the store root *is* an OCI image layout (extra directories are allowed by the
spec): ``export_oci`` writes the subset for one image, ``import_oci`` reads any
layout, ``skopeo``/``umoci`` can read the store directly.

Writes are crash-safe and concurrent-safe without a server:

* a blob is written to a temp file (under ``tmp/`` or a dot-file beside it) and
  renamed to its digest once complete; two writers of the same blob write the
  same bytes, so the last rename wins harmlessly;
* ``index.json`` is rewritten (temp file, fsync, rename) under ``locks/index.lock``;
  readers never lock and always see a whole index;
* a layer is unpacked into ``layers/.tmp-<hex>-*`` under ``locks/layer-<hex>.lock``,
  its diff id checked against the image config, then renamed into place, so a
  directory named ``layers/<hex>`` is always complete; the same holds for shifted
  copies;
* ``build`` holds ``locks/build-<name>.lock``, so two processes building the same
  image build it once and both return the same image;
* blob writers hold ``locks/gc.lock`` shared and ``gc`` holds it exclusive, so a
  garbage collection never deletes the blobs of an image being added.

Unpacked layers are stacked by the sandbox as overlay ``lowerdir``\\ s (lowest
first in ``layer_dirs``); whiteouts are stored in overlayfs form (see
tarutil.py), and ``flatten`` applies them instead when one merged tree is
needed. Layer directories are never written after the rename, and nothing is
fsynced before it: after a power cut, remove ``layers/`` and they are unpacked
again from the blobs.

``remove`` drops the name and unreferenced blobs; unpacked and shifted
directories are only deleted by ``prune_layers``, which the daemon calls with
the directories its live sandboxes still mount (never while it may be starting
one from the same layers).
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import io
import json
import logging
import os
import platform
import re
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from runtime import errors
from runtime.images import shift, tarutil
from runtime.images.locking import file_lock
from runtime.kernel.clock import now_ts
from runtime.procfs import mounts_under

log = logging.getLogger(__name__)

INDEX_MT = "application/vnd.oci.image.index.v1+json"
MANIFEST_MT = "application/vnd.oci.image.manifest.v1+json"
CONFIG_MT = "application/vnd.oci.image.config.v1+json"
LAYER_MT = "application/vnd.oci.image.layer.v1.tar"
LAYER_GZIP_MT = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_LIST_MT = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST_MT = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG_MT = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_MTS = (
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
)
LAYER_MTS = (LAYER_MT, LAYER_GZIP_MT, *DOCKER_LAYER_MTS)
INDEX_MTS = (INDEX_MT, DOCKER_LIST_MT)
MANIFEST_MTS = (MANIFEST_MT, DOCKER_MANIFEST_MT)

REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
SIZE_ANNOTATION = "io.kubelab.unpacked-size"
RECIPE_ANNOTATION = "io.kubelab.recipe"

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]{0,254}$")
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
BLOB_MEMBER_RE = re.compile(r"^blobs/sha256/([0-9a-f]{64})$")
MAX_JSON = 16 * 2**20

INDEX_LOCK_TIMEOUT = 60.0
LAYER_LOCK_TIMEOUT = 1800.0
BUILD_LOCK_TIMEOUT = 3600.0

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ImageConfig:
    """What the runtime needs from an image (a subset of the OCI image config)."""

    name: str  # e.g. "busybox", "lab-base"
    digest: str  # "sha256:..." of the manifest
    env: list[str]  # ["PATH=...", ...]
    cmd: list[str]  # default command, e.g. ["/bin/sh"]
    working_dir: str  # "/" if unset
    user: str  # "" = root
    layers: list[str]  # diff ids "sha256:...", lowest first
    size: int  # bytes unpacked

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def default_store(root: Path) -> ImageStore:
    """The store of a daemon whose ``--root`` is ``root``: ``ImageStore(root / "images")``."""
    return ImageStore(Path(root) / "images")


def goarch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(machine, machine)


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name) or ".." in name:
        raise errors.BadRequest(
            f"invalid image name {name!r}: use letters, digits and . _ - / : @ + "
            "(at most 255 characters, not starting with a symbol)"
        )
    return name


def _check_digest(digest: Any) -> str:
    if not isinstance(digest, str) or not DIGEST_RE.match(digest):
        raise errors.BadRequest(f"invalid digest {digest!r}: expected sha256:<64 hex digits>")
    return digest


def safe_rmtree(path: Path) -> None:
    """``rm -rf`` that refuses to descend into anything mounted under ``path``."""
    if not os.path.lexists(path):
        return
    mounted = mounts_under(path)
    if mounted:
        raise errors.RuntimeError(
            f"refusing to delete {path}: {', '.join(mounted)} is mounted inside it; unmount first"
        )
    if path.is_symlink() or not path.is_dir():
        path.unlink()
    else:
        shutil.rmtree(path)


class ImageStore:
    """Content-addressed image store under ``root`` (= ``DIR/images``); see the module docstring."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.blobs = self.root / "blobs" / "sha256"
        self.layers_root = self.root / "layers"
        self.shifted_root = self.root / "shifted"
        self.cache_root = self.root / "cache"
        self.locks = self.root / "locks"
        self.tmp = self.root / "tmp"
        self.root.mkdir(parents=True, exist_ok=True, mode=0o711)
        for d in (self.blobs, self.layers_root, self.shifted_root, self.cache_root):
            d.mkdir(parents=True, exist_ok=True, mode=0o711)
        for d in (self.locks, self.tmp):
            d.mkdir(exist_ok=True, mode=0o700)
        if not (self.root / "oci-layout").exists():
            self._write_atomic(self.root / "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        if not (self.root / "index.json").exists():
            with self._lock("index", INDEX_LOCK_TIMEOUT, "the image index"):
                if not (self.root / "index.json").exists():
                    self._write_index([])
        self._sweep_tmp()

    # -- small helpers ----------------------------------------------------------------------------

    def _lock(
        self, key: str, timeout: float, what: str, *, shared: bool = False
    ) -> contextlib.AbstractContextManager[None]:
        return file_lock(self.locks / f"{key}.lock", timeout=timeout, what=what, shared=shared)

    def _write_atomic(self, path: Path, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            Path(tmp).chmod(0o644)
            Path(tmp).replace(path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @contextlib.contextmanager
    def _workdir(self, purpose: str) -> Iterator[Path]:
        path = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-{purpose}-", dir=self.tmp))
        try:
            yield path
        finally:
            safe_rmtree(path)

    def _sweep_tmp(self) -> None:
        """Remove work dirs of processes that no longer exist (a crash mid-build)."""
        for entry in self.tmp.iterdir():
            pid_text = entry.name.split("-", 1)[0]
            if not pid_text.isdigit() or int(pid_text) == os.getpid():
                continue
            try:
                os.kill(int(pid_text), 0)
            except ProcessLookupError:
                try:
                    safe_rmtree(entry)
                except (OSError, errors.RuntimeError) as exc:
                    log.warning("could not sweep stale %s: %s", entry, exc)
            except PermissionError:
                pass

    def blob_path(self, digest: str) -> Path:
        return self.blobs / _check_digest(digest).split(":", 1)[1]

    def _has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def _read_json_blob(self, digest: str) -> dict[str, Any]:
        path = self.blob_path(digest)
        try:
            if path.stat().st_size > MAX_JSON:
                raise errors.BadRequest(f"blob {digest} is too large to be a manifest or config")
            data = json.loads(path.read_bytes())
        except FileNotFoundError:
            raise errors.RuntimeError(
                f"blob {digest} is missing from the image store {self.root}; "
                "remove the image and build or import it again"
            ) from None
        except ValueError as exc:
            raise errors.BadRequest(f"blob {digest} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise errors.BadRequest(f"blob {digest} is not a JSON object")
        return data

    def _put_blob_bytes(self, data: bytes, media_type: str) -> dict[str, Any]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        path = self.blob_path(digest)
        if not path.exists():
            self._write_atomic(path, data)
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    def _put_blob_file(self, src: Path, digest: str, *, move: bool) -> None:
        """Store ``src`` (whose digest the caller has computed) as blob ``digest``."""
        path = self.blob_path(digest)
        if path.exists():
            if move:
                src.unlink()
            return
        if move:
            src.chmod(0o644)
            src.replace(path)
            return
        # A source inside the store (a recipe cache, never written again) can share its inode;
        # anything else is copied, so that whoever owns it cannot change a blob later.
        if src.resolve().is_relative_to(self.root.resolve()):
            try:
                path.hardlink_to(src)
                path.chmod(0o644)
                return
            except FileExistsError:
                return
            except OSError:
                pass
        with self._workdir("blob") as work:
            tmp = work / "blob"
            shutil.copyfile(src, tmp)
            tmp.chmod(0o644)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            tmp.replace(path)

    # -- the index --------------------------------------------------------------------------------

    def _read_index(self) -> list[dict[str, Any]]:
        try:
            data = json.loads((self.root / "index.json").read_bytes())
        except FileNotFoundError:
            return []
        except ValueError as exc:
            raise errors.RuntimeError(f"{self.root / 'index.json'} is corrupt: {exc}") from exc
        manifests = data.get("manifests", []) if isinstance(data, dict) else []
        return [m for m in manifests if isinstance(m, dict)]

    def _write_index(self, manifests: list[dict[str, Any]]) -> None:
        index = {"schemaVersion": 2, "mediaType": INDEX_MT, "manifests": manifests}
        self._write_atomic(self.root / "index.json", json.dumps(index, indent=1).encode())

    @staticmethod
    def _name_of(desc: Mapping[str, Any]) -> str | None:
        ann = desc.get("annotations") or {}
        name = ann.get(REF_NAME) if isinstance(ann, dict) else None
        return name if isinstance(name, str) else None

    def _descriptor(self, name: str) -> dict[str, Any]:
        manifests = self._read_index()
        for desc in manifests:
            if self._name_of(desc) == name:
                return desc
        names = sorted(n for n in (self._name_of(d) for d in manifests) if n)
        from runtime.images import recipes

        raise errors.ImageNotFound(
            f"no image named {name!r} in {self.root}; images: {', '.join(names) or 'none'}; "
            f"build one with `python -m runtime build-image NAME` "
            f"(recipes: {', '.join(sorted(recipes.RECIPES))}) "
            "or import one with `python -m runtime image import FILE`"
        )

    def _set_ref(self, name: str, manifest_desc: dict[str, Any], annotations: dict[str, str]) -> None:
        desc = dict(manifest_desc)
        desc["annotations"] = {**annotations, REF_NAME: name}
        with self._lock("index", INDEX_LOCK_TIMEOUT, "the image index"):
            manifests = [d for d in self._read_index() if self._name_of(d) != name]
            manifests.append(desc)
            manifests.sort(key=lambda d: self._name_of(d) or "")
            self._write_index(manifests)

    # -- reading images ---------------------------------------------------------------------------

    def _load(self, name: str) -> tuple[ImageConfig, dict[str, Any], dict[str, Any]]:
        """(ImageConfig, index descriptor, manifest) of ``name``."""
        desc = self._descriptor(name)
        digest = _check_digest(desc.get("digest"))
        manifest = self._read_json_blob(digest)
        config_digest = _check_digest((manifest.get("config") or {}).get("digest"))
        config = self._read_json_blob(config_digest)
        inner = config.get("config") or {}
        diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
        try:
            size = int((desc.get("annotations") or {}).get(SIZE_ANNOTATION, "0"))
        except ValueError:
            size = 0
        cfg = ImageConfig(
            name=name,
            digest=digest,
            env=list(inner.get("Env") or []),
            cmd=list(inner.get("Cmd") or []),
            working_dir=inner.get("WorkingDir") or "/",
            user=inner.get("User") or "",
            layers=[_check_digest(d) for d in diff_ids],
            size=size,
        )
        return cfg, desc, manifest

    def list(self) -> list[ImageConfig]:
        out = []
        for desc in self._read_index():
            name = self._name_of(desc)
            if name:
                try:
                    out.append(self._load(name)[0])
                except errors.RuntimeError as exc:
                    log.warning("skipping broken image %s: %s", name, exc)
        return sorted(out, key=lambda c: c.name)

    def get(self, name: str) -> ImageConfig:
        return self._load(name)[0]

    def exists(self, name: str) -> bool:
        return any(self._name_of(d) == name for d in self._read_index())

    def recipe_of(self, name: str) -> str | None:
        """The ``recipe/version`` an image was built from, None if imported or missing."""
        for desc in self._read_index():
            if self._name_of(desc) == name:
                value = (desc.get("annotations") or {}).get(RECIPE_ANNOTATION)
                return value if isinstance(value, str) else None
        return None

    def _layer_pairs(self, name: str) -> builtins.list[tuple[str, str]]:
        cfg, _, manifest = self._load(name)
        blobs = [_check_digest(d.get("digest")) for d in manifest.get("layers") or []]
        if len(blobs) != len(cfg.layers):
            raise errors.BadRequest(
                f"image {name!r} is inconsistent: {len(blobs)} layers but "
                f"{len(cfg.layers)} diff ids; remove it and import it again"
            )
        return list(zip(cfg.layers, blobs, strict=True))

    # -- unpacked layers --------------------------------------------------------------------------

    def layer_dirs(self, name: str) -> builtins.list[Path]:
        """Unpacked layer directories of ``name``, lowest first; unpacked once, then reused."""
        return [self._ensure_layer(diff_id, blob) for diff_id, blob in self._layer_pairs(name)]

    def _ensure_layer(self, diff_id: str, blob: str) -> Path:
        hexd = _check_digest(diff_id).split(":", 1)[1]
        dest = self.layers_root / hexd
        if dest.is_dir():
            return dest
        with self._lock(f"layer-{hexd}", LAYER_LOCK_TIMEOUT, f"unpacking layer {diff_id}"):
            if dest.is_dir():
                return dest
            for stale in self.layers_root.glob(f".tmp-{hexd}-*"):
                safe_rmtree(stale)
            work = Path(tempfile.mkdtemp(prefix=f".tmp-{hexd}-", dir=self.layers_root))
            try:
                work.chmod(0o755)
                stats = tarutil.extract_layer(self.blob_path(blob), work)
                if stats.diff_id != diff_id:
                    raise errors.BadRequest(
                        f"layer blob {blob} unpacks to {stats.diff_id}, but the image says "
                        f"{diff_id}; remove the image and build or import it again"
                    )
                for what in stats.skipped:
                    log.warning("layer %s: skipped %s", diff_id, what)
                work.rename(dest)
            except BaseException:
                safe_rmtree(work)
                raise
        return dest

    def flatten(self, name: str, dest: Path) -> None:
        """Unpack all of ``name``'s layers into ``dest`` as one tree, applying whiteouts.

        For consumers that cannot stack overlays (``docker export``, a copy-based rootfs).
        ``dest`` must be an empty directory or not exist.
        """
        dest = Path(dest)
        dest.mkdir(mode=0o755, exist_ok=True)
        if any(dest.iterdir()):
            raise errors.BadRequest(f"{dest} is not empty; flatten into an empty directory")
        for diff_id, blob in self._layer_pairs(name):
            stats = tarutil.extract_layer(self.blob_path(blob), dest, flatten=True)
            if stats.diff_id != diff_id:
                raise errors.BadRequest(f"layer blob {blob} unpacks to {stats.diff_id}, but the image says {diff_id}")

    def shifted_layer_dirs(self, name: str, uid_base: int, size: int = 65536) -> builtins.list[Path]:
        """Copies of ``layer_dirs(name)`` with uids/gids shifted by ``uid_base``, cached per range.

        For kernels that refuse idmapped mounts. Costs one full copy of each layer per range,
        built once and reused by every sandbox using that range.
        """
        if uid_base < 0 or size < 1 or uid_base + size > 2**32 - 1:
            raise errors.BadRequest(f"invalid id range {uid_base}+{size}")
        if uid_base == 0 and size >= 2**32 - 1:
            return self.layer_dirs(name)
        out = []
        range_dir = self.shifted_root / f"{uid_base}-{size}"
        range_dir.mkdir(exist_ok=True, mode=0o711)
        for src in self.layer_dirs(name):
            dest = range_dir / src.name
            if not dest.is_dir():
                key = f"shift-{uid_base}-{size}-{src.name}"
                with self._lock(key, LAYER_LOCK_TIMEOUT, f"shifting layer {src.name}"):
                    if not dest.is_dir():
                        for stale in range_dir.glob(f".tmp-{src.name}-*"):
                            safe_rmtree(stale)
                        work = Path(tempfile.mkdtemp(prefix=f".tmp-{src.name}-", dir=range_dir))
                        try:
                            shift.shifted_copy(src, work / "root", uid_base, size)
                            (work / "root").rename(dest)
                        finally:
                            safe_rmtree(work)
            out.append(dest)
        return out

    def remove_shifted(self, uid_base: int, size: int = 65536) -> None:
        """Delete the shifted copies for one id range (when no sandbox uses it any more)."""
        safe_rmtree(self.shifted_root / f"{int(uid_base)}-{int(size)}")

    def prune_layers(self, in_use: Collection[Path] = ()) -> builtins.list[Path]:
        """Delete unpacked and shifted layer dirs no image references and no sandbox mounts.

        ``in_use``: directories live sandboxes still stack (from ``layer_dirs`` or
        ``shifted_layer_dirs``). Returns what was deleted.
        """
        keep = {d.split(":", 1)[1] for c in self.list() for d in c.layers}
        busy = {Path(p).resolve() for p in in_use}
        removed = []
        candidates = list(self.layers_root.iterdir())
        for range_dir in self.shifted_root.iterdir():
            candidates.extend(range_dir.iterdir())
        for path in candidates:
            hexd = path.name
            if hexd.startswith(".tmp-") or hexd in keep or path.resolve() in busy:
                continue
            with self._lock(f"layer-{hexd}", INDEX_LOCK_TIMEOUT, f"pruning layer {hexd}"):
                safe_rmtree(path)
            removed.append(path)
        return removed

    # -- writing images ---------------------------------------------------------------------------

    def add_layers(
        self,
        name: str,
        layers: Sequence[Path],
        *,
        env: Sequence[str] | None = None,
        cmd: Sequence[str] | None = None,
        working_dir: str = "/",
        user: str = "",
        base: str | None = None,
        created: str | None = None,
        comment: str = "",
        annotations: Mapping[str, str] | None = None,
        move: bool = False,
        exposed_ports: Sequence[str] = (),
        stop_signal: str = "",
    ) -> ImageConfig:
        """Create or replace image ``name`` from layer tarballs (plain or gzip), lowest first.

        With ``base``, the new layers go on top of that image's layers, and ``env``/``cmd``
        default to the base image's. The tarballs are copied into the store (moved with
        ``move=True``). Returns the new image.
        """
        check_name(name)
        with self._lock("gc", INDEX_LOCK_TIMEOUT, "the image store", shared=True):
            descs: list[dict[str, Any]] = []
            diff_ids: list[str] = []
            history: list[dict[str, Any]] = []
            total = 0
            created = created or now_ts()
            if base is not None:
                base_cfg, _, base_manifest = self._load(base)
                descs = list(base_manifest.get("layers") or [])
                diff_ids = list(base_cfg.layers)
                base_config = self._read_json_blob(base_manifest["config"]["digest"])
                history = list(base_config.get("history") or [])
                total = base_cfg.size
                env = base_cfg.env if env is None else env
                cmd = base_cfg.cmd if cmd is None else cmd
            for path in layers:
                comp = tarutil.compression_of(path)
                stats = tarutil.scan_layer(path)
                digest, blob_size = tarutil.sha256_file(path) if comp else (stats.diff_id, path.stat().st_size)
                self._put_blob_file(path, digest, move=move)
                media_type = LAYER_GZIP_MT if comp == "gzip" else LAYER_MT
                descs.append({"mediaType": media_type, "digest": digest, "size": blob_size})
                diff_ids.append(stats.diff_id)
                history.append({"created": created, "created_by": comment or f"kubelab {name}"})
                total += stats.size
            inner: dict[str, Any] = {
                "Env": list(env if env is not None else [f"PATH={DEFAULT_PATH}"]),
                "Cmd": list(cmd if cmd is not None else ["/bin/sh"]),
                "WorkingDir": working_dir or "/",
            }
            if user:
                inner["User"] = user
            if exposed_ports:
                inner["ExposedPorts"] = {port: {} for port in exposed_ports}
            if stop_signal:
                inner["StopSignal"] = stop_signal
            config = {
                "created": created,
                "architecture": goarch(),
                "os": "linux",
                "config": inner,
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
                "history": history,
            }
            config_desc = self._put_blob_bytes(_canonical(config), CONFIG_MT)
            manifest = {
                "schemaVersion": 2,
                "mediaType": MANIFEST_MT,
                "config": config_desc,
                "layers": descs,
            }
            manifest_desc = self._put_blob_bytes(_canonical(manifest), MANIFEST_MT)
            self._set_ref(name, manifest_desc, {SIZE_ANNOTATION: str(total), **(annotations or {})})
        return self.get(name)

    def build(self, name: str, progress: Progress, *, force: bool = False) -> ImageConfig:
        """Build image ``name`` from its recipe; returns at once if it is already built."""
        from runtime.images import recipes

        recipe = recipes.RECIPES.get(name)
        if recipe is None:
            raise errors.ImageNotFound(f"no recipe named {name!r}; recipes: {', '.join(sorted(recipes.RECIPES))}")
        tag = f"{recipe.name}/{recipe.version}"
        if recipe.base is not None:
            tag += "@" + self.build(recipe.base, progress).digest
        if not force and self.recipe_of(name) == tag:
            cfg = self.get(name)
            progress(f"{name}: already built ({cfg.digest})")
            return cfg
        key = "build-" + re.sub(r"[^A-Za-z0-9._-]", "_", name)
        progress(f"{name}: building (recipe {tag})")
        with self._lock(key, BUILD_LOCK_TIMEOUT, f"building image {name!r}"):
            if not force and self.recipe_of(name) == tag:
                cfg = self.get(name)  # another process built it while we waited
                progress(f"{name}: already built ({cfg.digest})")
                return cfg
            cache = self.cache_root / recipe.name
            cache.mkdir(exist_ok=True, mode=0o700)
            with self._workdir(f"build-{recipe.name}") as work:
                ctx = recipes.BuildContext(
                    name=name,
                    work_dir=work,
                    cache_dir=cache,
                    progress=progress,
                    image_layers=lambda other: self._layer_blobs(other, progress),
                )
                result = recipe.build(ctx)
                progress(f"{name}: storing {len(result.layers)} layer(s)")
                cfg = self.add_layers(
                    name,
                    result.layers,
                    env=result.env,
                    cmd=result.cmd,
                    working_dir=result.working_dir,
                    user=result.user,
                    base=recipe.base,
                    created=result.created,
                    comment=result.comment,
                    annotations={RECIPE_ANNOTATION: tag},
                    move=result.move,
                    exposed_ports=result.exposed_ports,
                    stop_signal=result.stop_signal,
                )
        progress(f"{name}: built {cfg.digest} ({len(cfg.layers)} layers, {cfg.size} bytes)")
        return cfg

    def _layer_blobs(self, name: str, progress: Progress) -> builtins.list[Path]:
        """The layer blobs of ``name`` (built by its recipe if missing), lowest first."""
        if not self.exists(name):
            self.build(name, progress)
        return [self.blob_path(blob) for _diff_id, blob in self._layer_pairs(name)]

    def remove(self, name: str) -> None:
        """Forget image ``name`` and delete blobs no other image uses (unpacked dirs stay; see
        ``prune_layers``)."""
        self._descriptor(name)  # raises ImageNotFound
        with self._lock("index", INDEX_LOCK_TIMEOUT, "the image index"):
            self._write_index([d for d in self._read_index() if self._name_of(d) != name])
        self.gc()

    def gc(self) -> builtins.list[str]:
        """Delete blobs no indexed image references; returns their digests."""
        removed = []
        with self._lock("gc", INDEX_LOCK_TIMEOUT, "the image store"):
            keep: set[str] = set()
            for desc in self._read_index():
                try:
                    digest = _check_digest(desc.get("digest"))
                    keep.add(digest)
                    manifest = self._read_json_blob(digest)
                except errors.RuntimeError:
                    continue
                keep.add(str((manifest.get("config") or {}).get("digest")))
                keep.update(str(d.get("digest")) for d in manifest.get("layers") or [])
            for path in self.blobs.iterdir():
                digest = "sha256:" + path.name
                if digest not in keep:
                    path.unlink()
                    removed.append(digest)
        return removed

    # -- OCI layout import / export ---------------------------------------------------------------

    def export_oci(self, name: str, tar_path: Path) -> None:
        """Write image ``name`` as an OCI image layout tarball (``docker load``/skopeo/podman)."""
        cfg, desc, manifest = self._load(name)
        digests = [cfg.digest, manifest["config"]["digest"]]
        digests += [d["digest"] for d in manifest.get("layers") or []]
        index_desc: dict[str, Any] = {k: desc[k] for k in ("mediaType", "digest", "size") if k in desc}
        index_desc["annotations"] = {REF_NAME: name}
        index = {"schemaVersion": 2, "mediaType": INDEX_MT, "manifests": [index_desc]}
        tar_path = Path(tar_path)
        tmp = tar_path.with_name(f".{tar_path.name}.{os.getpid()}.tmp")
        try:
            with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tf:

                def add_bytes(arcname: str, data: bytes) -> None:
                    info = tarfile.TarInfo(arcname)
                    info.size, info.mode, info.mtime = len(data), 0o644, 0
                    tf.addfile(info, io.BytesIO(data))

                for dirname in ("blobs", "blobs/sha256"):
                    info = tarfile.TarInfo(dirname)
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
                    tf.addfile(info)
                add_bytes("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
                add_bytes("index.json", json.dumps(index, indent=1).encode())
                for digest in dict.fromkeys(digests):
                    path = self.blob_path(digest)
                    info = tarfile.TarInfo("blobs/sha256/" + path.name)
                    info.size, info.mode, info.mtime = path.stat().st_size, 0o644, 0
                    with open(path, "rb") as f:
                        tf.addfile(info, f)
            tmp.replace(tar_path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise

    def import_oci(self, tar_path: Path, name: str | None = None) -> ImageConfig:
        """Import an OCI image layout tarball (plain or gzip; layers plain or gzip).

        The image is named ``name``, else by its ``org.opencontainers.image.ref.name`` (or
        ``io.containerd.image.name``) annotation. Every blob is verified against its digest and
        every layer against its diff id before the name is recorded.
        """
        if name is not None:
            check_name(name)
        tar_path = Path(tar_path)
        if not tar_path.is_file():
            raise errors.BadRequest(f"{tar_path} does not exist or is not a file")
        with self._lock("gc", INDEX_LOCK_TIMEOUT, "the image store", shared=True):
            index = self._import_blobs(tar_path)

            def need(digest: Any) -> str:
                if not self._has_blob(_check_digest(digest)):
                    raise errors.BadRequest(f"{tar_path} is incomplete: it lacks blob {digest}")
                return str(digest)

            desc, found_name = self._pick_manifest(index, name, tar_path)
            final_name = check_name(name or found_name or "")
            manifest = self._read_json_blob(need(desc.get("digest")))
            manifest_type = manifest.get("mediaType") or MANIFEST_MT
            if manifest_type not in MANIFEST_MTS:
                raise errors.BadRequest(f"unsupported manifest type {manifest_type!r}")
            config = self._read_json_blob(need((manifest.get("config") or {}).get("digest")))
            diff_ids = [_check_digest(d) for d in (config.get("rootfs") or {}).get("diff_ids") or []]
            layers = [d for d in manifest.get("layers") or [] if isinstance(d, dict)]
            if len(diff_ids) != len(layers):
                raise errors.BadRequest(
                    f"{tar_path}: the manifest has {len(layers)} layers but the config {len(diff_ids)} diff ids"
                )
            total = 0
            for layer, diff_id in zip(layers, diff_ids, strict=True):
                if layer.get("mediaType") not in LAYER_MTS:
                    raise errors.BadRequest(
                        f"{tar_path}: unsupported layer type {layer.get('mediaType')!r} "
                        "(plain and gzip tar layers are supported)"
                    )
                stats = tarutil.scan_layer(self.blob_path(need(layer.get("digest"))))
                if stats.diff_id != diff_id:
                    raise errors.BadRequest(
                        f"{tar_path}: layer {layer.get('digest')} has diff id {stats.diff_id}, "
                        f"but the config says {diff_id}"
                    )
                total += stats.size
            manifest_desc = {
                "mediaType": manifest_type,
                "digest": desc["digest"],
                "size": self.blob_path(desc["digest"]).stat().st_size,
            }
            self._set_ref(final_name, manifest_desc, {SIZE_ANNOTATION: str(total)})
        return self.get(final_name)

    def _import_blobs(self, tar_path: Path) -> dict[str, Any]:
        """Copy the archive's blobs into the store (verified); return its index.json."""
        index: dict[str, Any] | None = None
        saw_docker_manifest = False
        try:
            with tarfile.open(tar_path, "r:*") as tf, self._workdir("import") as work:
                for member in tf:
                    arcname = member.name
                    while arcname.startswith(("./", "/")):
                        arcname = arcname[2:] if arcname.startswith("./") else arcname[1:]
                    if not member.isreg():
                        continue
                    src = tf.extractfile(member)
                    if src is None:
                        continue
                    with src:
                        if arcname == "index.json":
                            if member.size > MAX_JSON:
                                raise errors.BadRequest(f"{tar_path}: index.json is too large")
                            try:
                                parsed = json.loads(src.read())
                            except ValueError as exc:
                                raise errors.BadRequest(f"{tar_path}: index.json is not JSON: {exc}") from exc
                            if not isinstance(parsed, dict):
                                raise errors.BadRequest(f"{tar_path}: index.json is not an object")
                            index = parsed
                        elif arcname == "manifest.json":
                            saw_docker_manifest = True
                        elif m := BLOB_MEMBER_RE.match(arcname):
                            expected = "sha256:" + m.group(1)
                            if self._has_blob(expected):
                                continue
                            tmp = work / m.group(1)
                            reader = tarutil.HashingReader(src)
                            with open(tmp, "wb") as out:
                                while chunk := reader.read(tarutil.CHUNK):
                                    out.write(chunk)
                                out.flush()
                                os.fsync(out.fileno())
                            if reader.digest != expected:
                                raise errors.BadRequest(
                                    f"{tar_path}: blob {arcname} has digest {reader.digest}; the archive is corrupt"
                                )
                            self._put_blob_file(tmp, expected, move=True)
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise errors.BadRequest(f"{tar_path} is not a readable tar archive: {exc}") from exc
        if index is None:
            hint = (
                " (it looks like a legacy `docker save` archive; export it as OCI, e.g. "
                "`skopeo copy docker-archive:FILE oci-archive:OUT.tar`)"
                if saw_docker_manifest
                else ""
            )
            raise errors.BadRequest(f"{tar_path} is not an OCI image layout: it has no index.json{hint}")
        return index

    def _pick_manifest(
        self, index: dict[str, Any], name: str | None, tar_path: Path
    ) -> tuple[dict[str, Any], str | None]:
        """Resolve the archive index (nested indexes by platform) to one manifest descriptor."""
        candidates: list[tuple[dict[str, Any], str | None]] = []

        def walk(descs: Any, inherited: str | None, depth: int) -> None:
            if depth > 4 or not isinstance(descs, list):
                return
            for desc in descs:
                if not isinstance(desc, dict):
                    continue
                ann = desc.get("annotations") or {}
                label = ann.get(CONTAINERD_NAME) or ann.get(REF_NAME) or inherited
                mt = desc.get("mediaType")
                if mt in INDEX_MTS:
                    nested = self._read_json_blob(_check_digest(desc.get("digest")))
                    walk(nested.get("manifests"), label, depth + 1)
                elif mt in MANIFEST_MTS or mt is None:
                    plat = desc.get("platform")
                    if isinstance(plat, dict) and (
                        plat.get("os") not in (None, "linux") or plat.get("architecture") not in (None, goarch())
                    ):
                        continue
                    candidates.append((desc, label if isinstance(label, str) else None))

        walk(index.get("manifests"), None, 0)
        if not candidates:
            raise errors.BadRequest(f"{tar_path} holds no image manifest for linux/{goarch()}")
        if name is not None:
            for desc, label in candidates:
                if label == name:
                    return desc, label
        if len(candidates) == 1:
            desc, label = candidates[0]
            if name is None and not label:
                raise errors.BadRequest(f"{tar_path}: the image has no name annotation; pass a name to import it as")
            return desc, label
        labels = ", ".join(str(label) for _, label in candidates)
        raise errors.BadRequest(f"{tar_path} holds several images ({labels}); pass the name of the one to import")
