"""A prune racing a load (runtime/dockerapi/images/store.py): ``docker load``, ``import``, ``commit``
and ``build`` register their layers one by one and write the image that names them last; an
``rmi`` or ``image prune`` in between deleted every layer no image named yet, so the load
ended with an image whose layers were gone (or failed), and a student could break their own
or a grader's image-making at will.

The real ``EngineStore`` on a scratch root (as tests/runtime/dockerapi/images/test_store.py); the
"meanwhile" is made deterministic by running the rmi inside the load's holding block, which
is exactly the window the lock does not cover.
"""

from __future__ import annotations

import io
import tarfile
import threading

import pytest

from runtime import errors
from runtime.dockerapi.images.store import EngineStore
from tests.runtime.dockerapi.images.store_fixtures import build


def layer_tar(name: str, data: bytes) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        ti = tarfile.TarInfo(name)
        ti.size = len(data)
        t.addfile(ti, io.BytesIO(data))
    buf.seek(0)
    return buf


def config_of(store: EngineStore) -> dict[str, object]:
    base = store.resolve("busybox")
    return {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["true"]}, "history": base.config.get("history")}


def test_an_rmi_while_a_load_unpacks_keeps_the_loads_layers(store: EngineStore) -> None:
    build(store, {"other.txt": b"other"}, "victim:1")  # an unrelated image to remove meanwhile
    base = store.resolve("busybox")
    with store.holding_new_layers():
        layer = store.ingest_layer(layer_tar("loaded.txt", b"loaded"), what="layer of docker load")
        # meanwhile, in another thread: the student removes an image (its layers are collected)
        t = threading.Thread(target=store.remove, args=("victim:1",))
        t.start()
        t.join(30)
        assert layer.path.is_dir(), "the rmi collected a layer the load had just unpacked"
        image = store.commit(config_of(store), [*base.layers, layer], parent=base.id, tags=["loaded:1"])
    assert store.resolve("loaded:1").id == image.id
    assert (image.layers[-1].path / "loaded.txt").read_bytes() == b"loaded"
    with pytest.raises(errors.ImageNotFound):
        store.resolve("victim:1")


def test_a_layer_found_already_there_is_held_too(store: EngineStore) -> None:
    # a load whose layer an existing image already has: that image removed meanwhile
    first = build(store, {"shared.txt": b"shared"}, "first:1")
    shared = first.layers[-1]
    tar = b"".join(store.layer_tar(shared.path))
    with store.holding_new_layers():
        again = store.ingest_layer(io.BytesIO(tar), what="layer of docker load", expect=shared.diff_id)
        assert again.diff_id == shared.diff_id
        store.remove("first:1")
        assert again.path.is_dir()


def test_outside_a_holding_block_orphaned_layers_are_still_collected(store: EngineStore) -> None:
    with store.holding_new_layers():
        layer = store.ingest_layer(layer_tar("orphan.txt", b"orphan"), what="layer of a failed load")
    # the load failed before writing its image: the next rmi reclaims the layer (nothing leaks)
    build(store, {"x.txt": b"x"}, "gone:1")
    store.remove("gone:1")
    assert not layer.path.exists()
