"""Fixtures for tests of the Docker engine's image store (runtime/dockerapi/images/store.py),
served to the whole suite through ``pytest_plugins`` in tests/conftest.py (the store's own
tests, and tests/security's races against it).

``catalog``: a real ImageStore with busybox on a scratch root (one per module); ``store``: an
``EngineStore`` on a temporary engine root with a uid range of this suite's own (tag 42), no
sandbox needed. ``build`` and ``make_layer_dir`` are plain helpers, imported by name.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.dockerapi.images.store import EngineStore, Image
from runtime.images.store import ImageStore
from runtime.sandbox.spec import SandboxContext
from tests.runtime.sandbox_helpers import images_for, new_root

UID_BASE = 2_000_000_000 + 42 * 65536 * 32


@pytest.fixture(scope="module")
def catalog() -> Iterator[ImageStore]:
    root = new_root()
    try:
        yield images_for(root / "images")
    finally:
        shutil.rmtree(root)


@pytest.fixture
def store(catalog: ImageStore) -> Iterator[EngineStore]:
    d = new_root()
    ctx = SandboxContext(
        sid="teststore",
        pid=os.getpid(),
        uid_base=UID_BASE,
        idmap=True,
        dir=d,
        engine_root=d / "engine",
        cgroup_path="/unused",
        ip="127.0.0.1",
        memory=2**28,
        pids=100,
        cpus=1.0,
    )
    try:
        yield EngineStore(ctx, catalog)
    finally:
        shutil.rmtree(d)


def make_layer_dir(store: EngineStore, files: dict[str, bytes], *, uid: int = 0) -> Path:
    with store.scratch() as d:
        keep = d.with_name(d.name + "-kept")
        d.rename(keep)
    keep.mkdir(exist_ok=True)
    for rel, data in files.items():
        p = keep / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        os.chown(p, UID_BASE + uid, UID_BASE + uid)
    return keep


def build(store: EngineStore, files: dict[str, bytes], tag: str, *, cmd: str = "true") -> Image:
    base = store.resolve("busybox")
    layer = store.add_layer(make_layer_dir(store, files))
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-01-02T03:04:05Z",
        "config": {"Cmd": ["sh", "-c", cmd], "Env": ["PATH=/bin"]},
        "container_config": {"Cmd": ["/bin/sh", "-c", f"#(nop) {cmd}"]},
        "history": [*base.config.get("history", []), {"created": "2024-01-02T03:04:05Z", "created_by": cmd}],
    }
    return store.commit(config, [*base.layers, layer], parent=base.id, tags=[tag] if tag else [])
