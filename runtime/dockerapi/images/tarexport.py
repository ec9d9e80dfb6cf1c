"""``docker save``, ``docker load`` and ``docker import``: archives out of and into the engine's
store (moby ``image/tarexport/save.go``, ``load.go``, ``daemon/images/image_import.go``).

``save`` writes the docker-archive layout (``manifest.json``, ``repositories``, one
``<chain id>/layer.tar`` per layer, the image configs) as a stream; each layer is the exact
tar whose sha256 is its diff id (the catalog's blob, the tar a load kept, or the store's
own reproducible tar of a layer built here).

Two layouts are read, as dockerd 20.10 and later read them:

* ``docker save``'s docker-archive: ``manifest.json`` (``[{"Config", "RepoTags", "Layers"}]``),
  the configs and the layer tars it names (``repositories`` is the legacy index and adds
  nothing manifest.json does not say);
* an OCI image layout: ``oci-layout``, ``index.json`` and ``blobs/<alg>/<hex>``; tags come
  from the ``io.containerd.image.name`` or ``org.opencontainers.image.ref.name`` annotations.

The whole archive is on the sandbox's disk (the API spools the upload there: its quota) and
is read in place as a tar *index*: no member is ever written out under its own name, so a
member called ``../../etc/passwd`` or ``/etc/shadow`` reaches nothing. Names that the
archive's JSON gives are cleaned and looked up in that index: one that climbs out of the
archive (``..`` above its root) is refused, a symlink member is followed inside the
archive only (a bounded number of hops), and only a regular member is read. JSON documents
are read with a size cap; layers go to ``EngineStore.ingest_layer`` (digest checked against
the config's ``diff_ids``, unpacked without leaving the layer's directory, within the disk's
free space); an image is recorded only once every layer of it is in.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import posixpath
import re
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from typing import IO, Any, BinaryIO

from runtime import errors
from runtime.dockerapi import ENGINE_VERSION
from runtime.dockerapi.images.commit import apply_changes
from runtime.dockerapi.images.store import BLOCK, CHUNK, EngineStore, Image, Layer, _LayerTar, canonical, normalize_ref
from runtime.images import tarutil
from runtime.kernel.clock import micro_ts

MAX_JSON = 8 << 20  # manifest.json, index.json, a config
MAX_MEMBERS = 50_000
MAX_HOPS = 16
DIGEST_RE = re.compile(r"^(sha256):([0-9a-f]{64})$")
MANIFEST_TYPES = ("application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json")
INDEX_TYPES = ("application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json")


class _Archive:
    """The members of an image archive by cleaned name; reads never leave the archive."""

    def __init__(self, fileobj: IO[bytes]) -> None:
        try:
            self.tf = tarfile.open(fileobj=fileobj, mode="r:*", tarinfo=tarutil.BoundedTarInfo)  # noqa: SIM115
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise errors.BadRequest(f"the request body is not an image archive (a tar): {exc}") from None
        self.members: dict[str, tarfile.TarInfo] = {}
        try:
            for n, m in enumerate(self.tf):
                if n >= MAX_MEMBERS:
                    raise errors.BadRequest(f"the archive has more than {MAX_MEMBERS} entries: not an image archive")
                name = _clean(m.name)
                if name:
                    self.members[name] = m
        except (tarfile.TarError, OSError, EOFError) as exc:
            self.close()
            raise errors.BadRequest(f"the image archive is not a readable tar: {exc}") from None
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self.tf.close()

    def has(self, name: str) -> bool:
        return name in self.members

    def _member(self, ref: str) -> tarfile.TarInfo:
        name = _clean(ref)
        if name is None:
            raise errors.BadRequest(f"the image archive names a path outside itself: {ref!r}")
        for _ in range(MAX_HOPS):
            m = self.members.get(name)
            if m is None:
                raise errors.BadRequest(f"the image archive lacks {ref!r}")
            if m.isreg():
                return m
            if m.issym():
                target = (
                    m.linkname if m.linkname.startswith("/") else posixpath.join(posixpath.dirname(name), m.linkname)
                )
            elif m.islnk():
                target = m.linkname
            else:
                raise errors.BadRequest(f"{ref!r} in the image archive is not a file")
            next_name = _clean(target)
            if next_name is None:
                raise errors.BadRequest(f"{ref!r} in the image archive links outside the archive ({m.linkname!r})")
            name = next_name
        raise errors.BadRequest(f"{ref!r} in the image archive: too many levels of links")

    @contextlib.contextmanager
    def open(self, ref: str) -> Iterator[IO[bytes]]:
        f = self.tf.extractfile(self._member(ref))
        assert f is not None
        with f:
            yield f

    def read(self, ref: str, limit: int = MAX_JSON) -> bytes:
        m = self._member(ref)
        if m.size > limit:
            raise errors.BadRequest(f"{ref!r} in the image archive is larger than {limit} bytes")
        with self.open(ref) as f:
            return f.read()

    def json(self, ref: str) -> Any:
        try:
            return json.loads(self.read(ref))
        except ValueError as exc:
            raise errors.BadRequest(f"{ref!r} in the image archive is not JSON: {exc}") from None


def _clean(name: str) -> str | None:
    """A member name relative to the archive's root ("./a//b" -> "a/b"); None if it climbs out."""
    parts: list[str] = []
    for p in name.split("/"):
        if p in ("", "."):
            continue
        if p == "..":
            if not parts:
                return None
            parts.pop()
            continue
        parts.append(p)
    return "/".join(parts)


def _blob(desc: Any) -> str:
    digest = str(desc.get("digest") or "") if isinstance(desc, dict) else ""
    m = DIGEST_RE.match(digest)
    if not m:
        raise errors.BadRequest(f"invalid digest in the image archive: {digest!r}")
    return f"blobs/{m.group(1)}/{m.group(2)}"


def _diff_ids(config_bytes: bytes, what: str) -> list[str]:
    try:
        config = json.loads(config_bytes)
        diff_ids = [str(d) for d in config["rootfs"]["diff_ids"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise errors.BadRequest(f"{what} is not an image config (rootfs.diff_ids): {exc}") from None
    for d in diff_ids:
        if not DIGEST_RE.match(d):
            raise errors.BadRequest(f"{what}: invalid diff id {d!r}")
    return diff_ids


def load(store: EngineStore, fileobj: IO[bytes], *, quiet: bool = True) -> list[dict[str, Any]]:
    """Load every image of the archive ``fileobj`` (seekable); the JSON messages dockerd
    streams: without ``quiet`` a "Loading layer" progress message per layer unpacked, then
    ``{"stream": "Loaded image: name:tag\n"}`` (or "Loaded image ID: sha256:..." for an
    untagged image). Its layers are held until its images name them (a prune meanwhile
    keeps them)."""
    with store.holding_new_layers():
        return _load(store, fileobj, quiet=quiet)


def _load(store: EngineStore, fileobj: IO[bytes], *, quiet: bool) -> list[dict[str, Any]]:
    archive = _Archive(fileobj)
    progress: list[dict[str, Any]] | None = None if quiet else []
    try:
        if archive.has("manifest.json") or archive.has("index.json"):
            if archive.has("manifest.json"):
                lines = _load_docker(store, archive, progress)
            else:
                lines = _load_oci(store, archive, progress)
            return [*(progress or []), *({"stream": line + "\n"} for line in lines)]
        if archive.has("repositories"):
            raise errors.BadRequest(
                "this is a legacy (v1) image archive without manifest.json, which this engine does not load"
            )
        raise errors.BadRequest(
            "open manifest.json: no such file or directory (neither a docker save archive nor an OCI image layout)"
        )
    finally:
        archive.close()


def _record(store: EngineStore, config_bytes: bytes, layers: list[str], tags: list[str], out: list[str]) -> None:
    image = store.add_image(config_bytes, tags)
    if tags:
        out.extend(f"Loaded image: {t}" for t in tags)
    else:
        out.append(f"Loaded image ID: {image.id}")


def _tags(raw: Any) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise errors.BadRequest("RepoTags in manifest.json must be a list")
    return [normalize_ref(str(t)) for t in raw]


def _loaded(progress: list[dict[str, Any]] | None, diff_id: str, size: int) -> None:
    if progress is not None:
        bar = "[" + "=" * 49 + ">]"
        shown = f"{size / 1e6:.3g}MB" if size >= 1e6 else f"{size / 1e3:.3g}kB"
        progress.append(
            {
                "status": "Loading layer",
                "progressDetail": {"current": size, "total": size},
                "progress": f"{bar}  {shown}/{shown}",
                "id": diff_id.split(":", 1)[-1][:12],
            }
        )


def _load_docker(store: EngineStore, archive: _Archive, progress: list[dict[str, Any]] | None) -> list[str]:
    manifest = archive.json("manifest.json")
    if not isinstance(manifest, list) or not all(isinstance(e, dict) for e in manifest):
        raise errors.BadRequest("manifest.json must be a list of images")
    out: list[str] = []
    for entry in manifest:
        config_ref = str(entry.get("Config") or "")
        config_bytes = archive.read(config_ref)
        diff_ids = _diff_ids(config_bytes, config_ref)
        layer_refs = entry.get("Layers") or []
        if not isinstance(layer_refs, list) or len(layer_refs) != len(diff_ids):
            raise errors.BadRequest("invalid manifest, layers length mismatch")
        tags = _tags(entry.get("RepoTags"))
        for ref, diff_id in zip(layer_refs, diff_ids, strict=True):
            if store.has_layer(diff_id):
                continue
            with archive.open(str(ref)) as f:
                _loaded(progress, diff_id, store.ingest_layer(f, what=f"layer {ref}", expect=diff_id).size)
        _record(store, config_bytes, diff_ids, tags, out)
    return out


def _load_oci(store: EngineStore, archive: _Archive, progress: list[dict[str, Any]] | None) -> list[str]:
    index = archive.json("index.json")
    out: list[str] = []

    def manifests(doc: Any, depth: int, name: str) -> Iterator[tuple[Any, str]]:
        if depth > 4:
            raise errors.BadRequest("index.json: image indexes nested too deep")
        for desc in (doc.get("manifests") if isinstance(doc, dict) else None) or []:
            annotations = (desc.get("annotations") if isinstance(desc, dict) else None) or {}
            ref = str(annotations.get("io.containerd.image.name") or "") or name
            if not ref:
                short = str(annotations.get("org.opencontainers.image.ref.name") or "")
                ref = short if ":" in short or "/" in short else ""
            media = str(desc.get("mediaType") or "")
            platform = desc.get("platform") or {}
            if platform and (platform.get("os"), platform.get("architecture")) != ("linux", "amd64"):
                continue
            if media in INDEX_TYPES:
                yield from manifests(archive.json(_blob(desc)), depth + 1, ref)
            elif media in MANIFEST_TYPES or not media:
                yield archive.json(_blob(desc)), ref

    for manifest, ref in manifests(index, 0, ""):
        config_desc = manifest.get("config") if isinstance(manifest, dict) else None
        if not isinstance(config_desc, dict):
            raise errors.BadRequest("an image manifest in the archive has no config")
        config_bytes = archive.read(_blob(config_desc))
        if "sha256:" + hashlib.sha256(config_bytes).hexdigest() != config_desc.get("digest"):
            raise errors.BadRequest(f"config {config_desc.get('digest')} does not match its digest")
        diff_ids = _diff_ids(config_bytes, str(config_desc.get("digest")))
        layer_descs = manifest.get("layers") or []
        if not isinstance(layer_descs, list) or len(layer_descs) != len(diff_ids):
            raise errors.BadRequest("invalid manifest, layers length mismatch")
        for desc, diff_id in zip(layer_descs, diff_ids, strict=True):
            if "zstd" in str(desc.get("mediaType") or ""):
                raise errors.BadRequest("zstd-compressed layers are not supported; save the image with gzip layers")
            if store.has_layer(diff_id):
                continue
            with archive.open(_blob(desc)) as f:
                layer = store.ingest_layer(f, what=f"layer {desc.get('digest')}", expect=diff_id)
            _loaded(progress, diff_id, layer.size)
        tags = [normalize_ref(ref)] if ref else []
        _record(store, config_bytes, diff_ids, tags, out)
    if not out:
        raise errors.BadRequest("index.json lists no linux/amd64 image")
    return out


def import_rootfs(store: EngineStore, body: IO[bytes], *, tag: str, message: str, changes: list[str]) -> str:
    """``docker import``: a filesystem tar (plain, gzip, bzip2 or xz) as a one-layer image,
    its config from ``changes``; the layer is unpacked by ``EngineStore.ingest_layer``."""
    config = apply_changes({}, changes)  # refused changes fail before any byte is unpacked
    tags = [normalize_ref(tag)] if tag else []
    created = micro_ts()
    comment = message or "Imported from -"
    doc: dict[str, Any] = {
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        "config": config,
        "docker_version": ENGINE_VERSION,
        "comment": comment,
        "history": [{"created": created, "comment": comment}],
    }
    with store.holding_new_layers():  # a prune between the unpacking and the image keeps the layer
        layer = store.ingest_layer(body, what="docker import")
        return store.commit(doc, [layer], tags=tags).id


# -- docker save -----------------------------------------------------------------------------


def _tar_member(name: str, size: int, mode: int = 0o644, *, directory: bool = False) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, mode, 0
    if directory:
        info.type = tarfile.DIRTYPE
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _pad(size: int) -> bytes:
    return bytes(-size % BLOCK)


def save(store: EngineStore, refs: Sequence[str]) -> Iterator[bytes]:
    images: list[tuple[Image, list[str]]] = []
    for ref in refs:
        img = store.resolve(ref)
        tags: list[str] = []
        with contextlib.suppress(errors.BadRequest, errors.ImageNotFound):
            n = normalize_ref(ref)
            if n in img.repo_tags:
                tags = [n]
        if not tags and ref.removeprefix("sha256:") not in img.id:
            tags = list(img.repo_tags)
        images.append((img, tags))
    return _save_stream(store, images)


def _save_stream(store: EngineStore, images: list[tuple[Image, list[str]]]) -> Iterator[bytes]:
    manifest: list[dict[str, Any]] = []
    repositories: dict[str, dict[str, str]] = {}
    written: set[str] = set()
    for img, tags in images:
        chain = ""
        layer_paths = []
        for layer in img.layers:
            chain = hashlib.sha256(f"{chain} {layer.diff_id}".encode()).hexdigest()
            layer_paths.append(f"{chain}/layer.tar")
            if chain in written:
                continue
            written.add(chain)
            yield _tar_member(chain, 0, 0o755, directory=True)
            version = b"1.0"
            yield _tar_member(f"{chain}/VERSION", len(version)) + version + _pad(len(version))
            v1 = canonical({"id": chain, "created": img.created, "os": "linux"})
            yield _tar_member(f"{chain}/json", len(v1)) + v1 + _pad(len(v1))
            with tempfile.TemporaryFile(dir=store.tmp) as f:
                _layer_stream(store, layer, f)
                size = f.tell()
                f.seek(0)
                yield _tar_member(f"{chain}/layer.tar", size)
                while chunk := f.read(CHUNK):
                    yield chunk
                yield _pad(size)
        hexd = img.id.split(":", 1)[1]
        cfg_bytes = _config_bytes(store, img)
        if hexd not in written:
            written.add(hexd)
            yield _tar_member(f"{hexd}.json", len(cfg_bytes)) + cfg_bytes + _pad(len(cfg_bytes))
        manifest.append({"Config": f"{hexd}.json", "RepoTags": tags or None, "Layers": layer_paths})
        for t in tags:
            repo, _, tag = t.rpartition(":")
            if layer_paths:
                repositories.setdefault(repo, {})[tag] = layer_paths[-1].split("/")[0]
    data = json.dumps(manifest).encode()
    yield _tar_member("manifest.json", len(data)) + data + _pad(len(data))
    if repositories:
        data = json.dumps(repositories).encode()
        yield _tar_member("repositories", len(data)) + data + _pad(len(data))
    yield bytes(2 * BLOCK)


def _layer_stream(store: EngineStore, layer: Layer, out: BinaryIO) -> None:
    """Write the exact tar stream whose sha256 is ``layer.diff_id`` to ``out``."""
    if layer.catalog:
        found = store._catalog_layer(layer.diff_id)
        if found is None:
            raise errors.RuntimeError(f"catalog layer {layer.diff_id} is gone")
        img, i = found
        with tarutil.open_layer(store.catalog_store.blob_path(img.blobs[i])) as reader:
            while chunk := reader.read(CHUNK):
                out.write(chunk)
            if reader.digest != layer.diff_id:
                raise errors.RuntimeError(f"catalog layer {layer.diff_id} does not match its blob")
        return
    kept = store.layers_dir / (layer.diff_id.split(":", 1)[1] + ".tar")
    if kept.is_file():  # a loaded layer whose tar the store's own would not reproduce
        h = hashlib.sha256()
        with open(kept, "rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
                out.write(chunk)
        if "sha256:" + h.hexdigest() != layer.diff_id:
            raise errors.RuntimeError(f"layer {layer.diff_id} changed on disk; remove the image and load it again")
        return
    tar = _LayerTar(layer.path, store.ctx.uid_base)
    for chunk in tar.chunks():
        out.write(chunk)
    if tar.digest != layer.diff_id:
        raise errors.RuntimeError(
            f"layer {layer.diff_id} changed on disk (now {tar.digest}); remove the image and build it again"
        )


def _config_bytes(store: EngineStore, img: Image) -> bytes:
    cat = store._catalog().get(img.id)
    if cat is not None:
        return cat.config_bytes
    return (store.images_dir / (img.id.split(":", 1)[1] + ".json")).read_bytes()
