"""EngineStore: images, tags, layers, save, on the real catalog store (busybox).

No sandbox is needed for the store: its context points at a temporary engine root and a
uid range of this suite's own (tag 42); the catalog is a real ImageStore with busybox.
Only ``rootfs_view`` mounts (idmapped overlay, root needed).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import stat
import tarfile
from pathlib import Path

import pytest

from runtime import errors
from runtime.dockerapi.images import tarexport
from runtime.dockerapi.images.store import EngineStore
from runtime.images.store import ImageStore
from tests.runtime.dockerapi.images.store_fixtures import UID_BASE, build, make_layer_dir

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown to a sandbox's uid range)")


def tar_members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return {m.name: m for m in tf.getmembers()}


# -- resolving ------------------------------------------------------------------------------


def test_only_catalog_images_are_offered(store: EngineStore, catalog: ImageStore, tmp_path: Path) -> None:
    layer = tmp_path / "layer.tar"
    with tarfile.open(layer, "w") as tf:
        tf.addfile(tarfile.TarInfo("empty"))
    catalog.add_layers("not-in-the-catalog", [layer])  # like lab-base: a sandbox image
    try:
        names = {t for img in store.images() for t in img.repo_tags}
        assert names == {"busybox:1.35", "busybox:latest"}
        with pytest.raises(errors.ImageNotFound):
            store.resolve("not-in-the-catalog")
    finally:
        catalog.remove("not-in-the-catalog")


def test_catalog_image_resolves_by_every_reference_form(store: EngineStore) -> None:
    img = store.resolve("busybox")
    assert img.catalog and img.repo_tags == ("busybox:1.35", "busybox:latest")  # runtime.images.catalog
    for ref in (
        "busybox:1.35",
        "busybox:latest",
        "docker.io/library/busybox",
        "library/busybox:latest",
        img.id,
        img.id[7:19],
    ):
        assert store.resolve(ref).id == img.id
    with pytest.raises(errors.ImageNotFound, match="No such image: busybox:9"):
        store.resolve("busybox:9")
    with pytest.raises(errors.ImageNotFound):
        store.resolve("sha256:" + "0" * 64)


# -- commit, tags, remove, prune ------------------------------------------------------------


def test_commit_is_content_addressed_and_idempotent(store: EngineStore) -> None:
    img = build(store, {"app/hello.txt": b"hi\n"}, "app:v1")
    cfg_bytes = (store.images_dir / (img.id[7:] + ".json")).read_bytes()
    assert img.id == "sha256:" + hashlib.sha256(cfg_bytes).hexdigest()
    assert img.config["rootfs"]["diff_ids"] == [layer.diff_id for layer in img.layers]
    assert img.layers[0].catalog and not img.layers[-1].catalog
    assert build(store, {"app/hello.txt": b"hi\n"}, "").id == img.id  # same content, same id
    assert store.resolve("app:v1").id == img.id
    assert [c.id for c in store.children(store.resolve("busybox").id)] == [img.id]
    assert img.size == sum(layer.size for layer in img.layers)


def test_tag_then_remove_untags_first_and_deletes_with_the_last_tag(store: EngineStore) -> None:
    img = build(store, {"f": b"x"}, "app:v1")
    store.tag("app:v1", "other/app:v2")
    assert store.resolve("other/app:v2").repo_tags == ("app:v1", "other/app:v2")
    assert store.remove("app:v1") == [{"Untagged": "app:v1"}]
    layer_dir = img.layers[-1].path
    assert store.remove("other/app:v2") == [{"Untagged": "other/app:v2"}, {"Deleted": img.id}]
    assert not layer_dir.exists()
    with pytest.raises(errors.ImageNotFound):
        store.resolve(img.id)


def test_remove_refuses_catalog_images_images_in_use_and_multiply_tagged_ids(store: EngineStore) -> None:
    busybox = store.resolve("busybox")
    assert store.remove("busybox") == [{"Untagged": "busybox:latest"}]  # one of its references
    with pytest.raises(errors.Conflict, match="catalog"):
        store.remove("busybox:1.35")  # the last one
    with pytest.raises(errors.Conflict, match="catalog"):
        store.remove(busybox.id)
    store.tag("busybox:1.35", "busybox:latest")
    assert store.resolve("busybox").id == busybox.id
    img = build(store, {"f": b"y"}, "app:v1")
    store.tag("app:v1", "app:v2")
    with pytest.raises(errors.Conflict, match="referenced in multiple repositories"):
        store.remove(img.id)
    assert store.remove("app:v2") == [{"Untagged": "app:v2"}]
    store.set_in_use(lambda: {img.id})
    with pytest.raises(errors.Conflict, match="being used by a container"):
        store.remove(img.id)
    with pytest.raises(errors.Conflict, match="container is using its referenced image"):
        store.remove("app:v1")
    store.set_in_use(set)
    out = store.remove(img.id, force=True)
    assert {"Deleted": img.id} in out


def test_a_student_tag_can_shadow_and_then_restore_a_catalog_name(store: EngineStore) -> None:
    img = build(store, {"f": b"z"}, "busybox:latest")
    assert store.resolve("busybox").id == img.id
    store.remove("busybox:latest")
    assert store.resolve("busybox").catalog


def test_prune_removes_dangling_images_only(store: EngineStore) -> None:
    kept = build(store, {"a": b"1"}, "keep:me")
    dangling = build(store, {"b": b"2"}, "")
    out = store.prune()
    assert out["ImagesDeleted"] == [{"Deleted": dangling.id}]
    assert out["SpaceReclaimed"] == dangling.size
    assert store.resolve("keep:me").id == kept.id
    assert {i.id for i in store.images()} == {kept.id, store.resolve("busybox").id}


def test_history_lists_layers_newest_first(store: EngineStore) -> None:
    img = build(store, {"a": b"12345"}, "hist:v1", cmd="echo hi")
    hist = store.history("hist:v1")
    assert hist[0]["Id"] == img.id and hist[0]["CreatedBy"] == "echo hi" and hist[0]["Size"] == 5
    assert hist[0]["Tags"] == ["hist:v1"]
    assert hist[-1]["Id"] == store.resolve("busybox").id


# -- layers ---------------------------------------------------------------------------------


def test_add_layer_turns_overlay_whiteouts_into_oci_ones_with_container_uids(store: EngineStore) -> None:
    d = make_layer_dir(store, {"keep/file": b"data", "opq/new": b"n"}, uid=1000)
    os.mknod(d / "gone", stat.S_IFCHR | 0o000, os.makedev(0, 0))
    os.setxattr(d / "opq", "trusted.overlay.opaque", b"y")
    os.chown(d / "keep", UID_BASE + 33, UID_BASE + 44)
    layer = store.add_layer(d)
    assert not d.exists() and layer.path.is_dir()
    assert layer.size == 5
    data = b"".join(store.layer_tar(layer.path))
    assert layer.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    members = tar_members(data)
    assert set(members) == {".wh.gone", "keep", "keep/file", "opq", "opq/.wh..wh..opq", "opq/new"}
    assert (members["keep"].uid, members["keep"].gid) == (33, 44)
    assert members["keep/file"].uid == 1000
    assert not any("overlay" in k for m in members.values() for k in m.pax_headers)


def test_an_empty_directory_is_a_valid_empty_layer(store: EngineStore) -> None:
    with store.scratch() as d:
        layer = store.add_layer(d)
    assert layer.size == 0 and layer.path.is_dir()
    assert tar_members(b"".join(store.layer_tar(layer.path))) == {}


def test_scratch_dirs_are_removed_unless_adopted(store: EngineStore) -> None:
    with store.scratch() as d:
        (d / "f").write_text("x")
    assert not d.exists()


# -- save -----------------------------------------------------------------------------------


def test_save_writes_a_docker_save_archive_with_verifiable_layers(store: EngineStore) -> None:
    d = make_layer_dir(store, {"app/run.sh": b"echo hi\n"}, uid=0)
    os.mknod(d / "gone", stat.S_IFCHR, os.makedev(0, 0))
    base = store.resolve("busybox")
    layer = store.add_layer(d)
    img = store.commit({"config": {"Cmd": ["/app/run.sh"]}, "history": []}, [*base.layers, layer], tags=["app:v1"])
    archive = b"".join(tarexport.save(store, ["app:v1"]))
    with tarfile.open(fileobj=io.BytesIO(archive)) as tf:
        manifest = json.load(tf.extractfile("manifest.json"))  # type: ignore[arg-type]
        assert len(manifest) == 1 and manifest[0]["RepoTags"] == ["app:v1"]
        cfg_bytes = tf.extractfile(manifest[0]["Config"]).read()  # type: ignore[union-attr]
        assert "sha256:" + hashlib.sha256(cfg_bytes).hexdigest() == img.id
        diff_ids = json.loads(cfg_bytes)["rootfs"]["diff_ids"]
        assert len(manifest[0]["Layers"]) == len(diff_ids) == 2
        for path, diff_id in zip(manifest[0]["Layers"], diff_ids, strict=True):
            blob = tf.extractfile(path).read()  # type: ignore[union-attr]
            assert "sha256:" + hashlib.sha256(blob).hexdigest() == diff_id
            inner = tar_members(blob)
            assert all(m.uid < 65536 and m.gid < 65536 for m in inner.values())
        top = tar_members(tf.extractfile(manifest[0]["Layers"][-1]).read())  # type: ignore[union-attr]
        assert set(top) == {".wh.gone", "app", "app/run.sh"}
        repositories = json.load(tf.extractfile("repositories"))  # type: ignore[arg-type]
        assert repositories == {"app": {"v1": manifest[0]["Layers"][-1].split("/")[0]}}


def test_rootfs_view_shows_catalog_layers_idmapped_and_applies_whiteouts(store: EngineStore) -> None:
    d = make_layer_dir(store, {"hello.txt": b"hello\n"}, uid=5)
    (d / "bin").mkdir()
    os.chown(d / "bin", UID_BASE, UID_BASE)
    os.mknod(d / "bin" / "ls", stat.S_IFCHR, os.makedev(0, 0))
    base = store.resolve("busybox")
    layer = store.add_layer(d)
    img = store.commit({"config": {}}, [*base.layers, layer])
    with store.rootfs_view(img) as view:
        assert (view / "hello.txt").read_text() == "hello\n"
        assert (view / "hello.txt").stat().st_uid == UID_BASE + 5
        assert (view / "bin").stat().st_uid == UID_BASE  # catalog root is the sandbox's root
        assert os.path.lexists(view / "bin" / "sh")
        assert not os.path.lexists(view / "bin" / "ls")  # whited out by the new layer
        with pytest.raises(OSError):
            (view / "new").write_text("read-only")
    assert not any(str(view) in line for line in Path("/proc/self/mountinfo").read_text().splitlines())
    assert not view.exists()


def test_rootfs_view_uses_shifted_copies_when_idmapped_mounts_are_off(store: EngineStore) -> None:
    shifted = EngineStore(dataclasses.replace(store.ctx, idmap=False), store.catalog_store)
    with shifted.rootfs_view(shifted.resolve("busybox")) as view:
        assert (view / "bin").stat().st_uid == UID_BASE
        assert os.path.lexists(view / "bin" / "sh")
    store.catalog_store.remove_shifted(UID_BASE)
