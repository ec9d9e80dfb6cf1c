"""The image catalog: each image builds from Debian packages, answers to its refs, and runs.

Builds into the shared store (RUNTIME_TEST_IMAGE_ROOT, default ``var/runtime/images`` in
the repository, which ``make images`` fills too): the first run debootstraps bookworm and
apt-installs from the Debian mirror (about a minute here), later runs find the images
built. Each image then runs in a real sandbox (runc) of a manager of its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime import errors
from runtime.images import ImageStore, catalog
from runtime.sandbox.manager import SandboxManager
from runtime.sandbox.spec import SandboxSpec
from tests.runtime.sandbox_helpers import destroy_manager, new_root, run_in

REPO = Path(__file__).resolve().parents[2]
TAG = 253

pytestmark = [
    pytest.mark.slow,
    pytest.mark.root,
    pytest.mark.timeout(3600),
    pytest.mark.skipif(os.geteuid() != 0, reason="debootstrap, chroot and sandboxes need root"),
    pytest.mark.skipif(shutil.which("debootstrap") is None, reason="debootstrap is not installed"),
    pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed"),
]


@pytest.fixture(scope="module")
def store() -> ImageStore:
    s = ImageStore(Path(os.environ.get("RUNTIME_TEST_IMAGE_ROOT", REPO / "var/runtime/images")))
    for image in catalog.CATALOG:
        s.build(image.name, lambda _line: None)
    return s


@pytest.fixture(scope="module")
def mgr(store: ImageStore) -> Iterator[SandboxManager]:
    m = SandboxManager(
        new_root(),
        store,
        subnet=f"10.231.{TAG}.0/24",
        bridge=f"kltest{TAG}",
        cgroup_parent=f"kubelab-test-{TAG}",
        uid_start=2_000_000_000 + TAG * 65536 * 32,
    )
    yield m
    destroy_manager(m)


def _config(store: ImageStore, name: str, tmp_path: Path) -> dict[str, Any]:
    """The image's OCI config, read from its ``export_oci`` archive."""
    archive = tmp_path / "image.tar"
    store.export_oci(name, archive)
    with tarfile.open(archive) as tf:

        def blob(digest: str) -> dict[str, Any]:
            f = tf.extractfile("blobs/sha256/" + digest.split(":", 1)[1])
            assert f is not None
            data: dict[str, Any] = json.load(f)
            return data

        index = json.load(tf.extractfile("index.json"))  # type: ignore[arg-type]
        manifest = blob(index["manifests"][0]["digest"])
        return blob(manifest["config"]["digest"])


def test_every_catalog_image_is_built_once(store: ImageStore) -> None:
    for image in catalog.CATALOG:
        lines: list[str] = []
        cfg = store.build(image.name, lines.append)
        assert any("already built" in line for line in lines), lines
        assert cfg.name == image.name and cfg.layers and cfg.cmd


def test_refs_resolve_to_their_images() -> None:
    expected = {
        "busybox": "busybox",
        "docker.io/library/busybox:1.35": "busybox",
        "debian:bookworm": "debian:bookworm",
        "debian:12": "debian:bookworm",
        "debian": "debian:bookworm",
        "python:3.11-slim": "python:3.11-slim",
        "python:3.11": "python:3.11-slim",
        "python:3-slim": "python:3.11-slim",
        "python:3.11-minimal": "python:3.11-minimal",
        "nginx:1.22": "nginx:1.22",
        "nginx": "nginx:1.22",
    }
    for ref, name in expected.items():
        found = catalog.lookup(ref)
        assert found is not None and found.name == name, ref
    for ref in ("python:3.12-alpine", "busybox:1.36", "nginx:1.27", "alpine"):
        assert catalog.lookup(ref) is None, ref
    assert catalog.available().split(", ")[0] == "busybox:1.35"


def test_busybox_tag_is_the_debian_version() -> None:
    version = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", "busybox-static"], capture_output=True, text=True, timeout=30
    ).stdout
    m = re.match(r"(?:\d+:)?(\d+)\.(\d+)", version)
    if m is None:
        pytest.skip("busybox-static is not installed as a Debian package")
    image = catalog.lookup("busybox")
    assert image is not None and f"busybox:{m[1]}.{m[2]}" in image.refs


def test_python_and_nginx_stack_on_debian(store: ImageStore) -> None:
    debian = store.get("debian:bookworm")
    assert len(debian.layers) == 1 and debian.cmd == ["bash"]
    for name in ("python:3.11-slim", "nginx:1.22"):
        cfg = store.get(name)
        assert cfg.layers[:1] == debian.layers and len(cfg.layers) == 2, name


def test_package_layers_hold_only_the_changes(store: ImageStore) -> None:
    _base, top = store.layer_dirs("python:3.11-slim")
    assert (top / "usr/bin/python3.11").is_file()
    assert (top / "usr/bin/python").readlink() == Path("python3")
    assert not (top / "usr/bin/bash").exists()  # unchanged files of debian stay in the base layer
    assert not (top / "usr/sbin/policy-rc.d").exists()
    assert [p.name for p in (top / "var/lib/apt/lists").glob("*") if p.is_file() and p.name != "lock"] == []


def test_minimal_python_is_small_and_has_no_package_manager(store: ImageStore) -> None:
    cfg = store.get("python:3.11-minimal")
    assert len(cfg.layers) == 1 and cfg.size < 45 * 2**20, cfg.size
    (layer,) = store.layer_dirs("python:3.11-minimal")
    for tool in ("apt-get", "dpkg", "bash", "perl"):
        assert not os.path.lexists(layer / "usr/bin" / tool), tool
    assert (layer / "usr/bin/sh").readlink() == Path("/usr/bin/busybox")


def test_nginx_config_is_like_the_official_image(store: ImageStore, tmp_path: Path) -> None:
    inner = _config(store, "nginx:1.22", tmp_path)["config"]
    assert inner["Cmd"] == ["nginx", "-g", "daemon off;"]
    assert inner["ExposedPorts"] == {"80/tcp": {}}
    assert inner["StopSignal"] == "SIGQUIT"
    _base, top = store.layer_dirs("nginx:1.22")
    assert (top / "var/log/nginx/access.log").readlink() == Path("/dev/stdout")
    assert (top / "var/log/nginx/error.log").readlink() == Path("/dev/stderr")


RUNS = {
    "busybox": ("busybox | head -1", ["BusyBox v1.35"]),
    "debian:bookworm": ("bash -c 'echo bash $BASH_VERSION'; cat /etc/debian_version", ["bash 5.2", "12."]),
    "python:3.11-slim": (
        "python3 -c 'print(6*7)' && python -c 'import ssl, json, sqlite3; print(ssl.OPENSSL_VERSION)'",
        ["42", "OpenSSL 3"],
    ),
    "python:3.11-minimal": (
        "python3 -c 'print(6*7)' && python -V && mkdir -p /tmp/a && ls /tmp",
        ["42", "Python 3.11.2", "a"],
    ),
    # The logs are symlinks to /dev/stdout and /dev/stderr: give nginx a pipe of the sandbox's own.
    "nginx:1.22": (
        "(nginx -v 2>&1 && nginx -t 2>&1) | cat && (nginx -g 'daemon off;' >/dev/null 2>&1 &) && "
        "for i in $(seq 50); do bash -c 'exec 3<>/dev/tcp/127.0.0.1/80 && "
        'printf "GET / HTTP/1.0\\r\\n\\r\\n" >&3 && cat <&3\' 2>/dev/null && break; sleep 0.1; done',
        ["nginx/1.22.1", "test is successful", "HTTP/1.1 200 OK", "Welcome to nginx!"],
    ),
    # the teaching app: its start script writes the page naming the version and the host
    **{
        f"kubelab-hello:{v}": (
            "(/usr/local/bin/hello >/dev/null 2>&1 &) && "
            "for i in $(seq 50); do wget -qO- http://127.0.0.1:8080/ && break; sleep 0.1; done; "
            "wget -qO- http://127.0.0.1:8080/version",
            [f"Hello from version {v}", "served by ", f"\n{v}\n"],
        )
        for v in ("1", "2")
    },
}


@pytest.mark.parametrize("name", sorted(RUNS))
def test_catalog_image_runs_in_a_sandbox(mgr: SandboxManager, name: str) -> None:
    script, expected = RUNS[name]
    info = mgr.create(SandboxSpec(image=name, memory=256 * 2**20))
    try:
        rc, out, err = run_in(mgr, info.id, script)
    finally:
        with contextlib.suppress(errors.SandboxNotFound):
            mgr.remove(info.id)
    assert rc == 0, (out, err)
    for text in expected:
        assert text in out, (text, out, err)


def test_every_catalog_image_has_a_run_check() -> None:
    assert sorted(RUNS) == sorted(image.name for image in catalog.CATALOG)


def test_diff_layer_holds_changes_and_whiteouts(tmp_path: Path) -> None:
    from runtime.images.recipes import debian

    root = tmp_path / "root"
    for rel in ("etc", "usr/bin", "var/cache/old/sub", "tmp"):
        (root / rel).mkdir(parents=True)
    (root / "etc/keep").write_text("same\n")
    (root / "etc/edit").write_text("before\n")
    (root / "usr/bin/gone").write_text("x")
    (root / "var/cache/old/sub/file").write_text("x")
    before = debian.snapshot(root)

    (root / "etc/edit").write_text("after\n")
    (root / "etc/new").write_text("new\n")
    (root / "usr/bin/gone").unlink()
    shutil.rmtree(root / "var/cache/old")
    (root / "tmp/scratch").write_text("never in a layer\n")
    layer = tmp_path / "layer.tar"
    debian.diff_layer(root, before, layer)

    with tarfile.open(layer) as tf:
        names = {m.name: m for m in tf.getmembers()}
        assert tf.extractfile("etc/edit").read() == b"after\n"  # type: ignore[union-attr]
    assert set(names) == {
        "etc",
        "etc/edit",
        "etc/new",
        "usr",
        "usr/bin",
        "usr/bin/.wh.gone",
        "var",
        "var/cache",
        "var/cache/.wh.old",
    }
    assert names["usr/bin/.wh.gone"].size == 0 and names["etc"].isdir()
