"""The lab-base recipe: debootstrap + kubectl + helm + docker CLI. Needs a Debian mirror and minutes.

Runs only with RUNTIME_TEST_LABBASE=1. It builds into a shared cache directory
(RUNTIME_TEST_IMAGE_ROOT, default ``var/runtime/images`` in the repository, which
``make`` also uses), so after the first build it only checks the cached image.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from runtime.images import ImageStore

REPO = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.root,
    pytest.mark.timeout(3600),
    pytest.mark.skipif(
        os.environ.get("RUNTIME_TEST_LABBASE") != "1",
        reason="builds Debian with debootstrap from a mirror (minutes); set RUNTIME_TEST_LABBASE=1",
    ),
    pytest.mark.skipif(os.geteuid() != 0, reason="debootstrap and overlay mounts need root"),
]


@pytest.fixture(scope="module")
def store() -> ImageStore:
    root = Path(os.environ.get("RUNTIME_TEST_IMAGE_ROOT", REPO / "var/runtime/images"))
    return ImageStore(root)


def test_lab_base_builds_once_and_has_the_lab_tools(store: ImageStore, tmp_path: Path) -> None:
    lines: list[str] = []
    cfg = store.build("lab-base", lines.append)
    again: list[str] = []
    assert store.build("lab-base", again.append) == cfg
    assert any("already built" in line for line in again)
    assert len(cfg.layers) == 2 and cfg.size > 100 * 2**20
    assert cfg.cmd == ["/bin/bash"] and any(e.startswith("PATH=") for e in cfg.env)

    base, top = store.layer_dirs("lab-base")
    lists = base / "var/lib/apt/lists"
    assert [p.name for p in lists.iterdir() if p.is_file() and p.name != "lock"] == []
    assert not list((base / "var/cache/apt/archives").glob("*.deb"))
    assert "PS1=" in (top / "root/.bashrc").read_text()

    mnt = tmp_path / "mnt"
    mnt.mkdir()
    checks = (
        "kubectl version --client; helm version --short; docker --version; python3 -c 'print(6*7)'; "
        "git --version; jq --version; curl --version | head -1; /sbin/tini --version; "
        "ping -V | head -1; ip -V; nano --version | head -1; less --version | head -1"
    )
    script = (
        f"mount -t overlay overlay -o ro,lowerdir={top}:{base} {mnt} && "
        f"mount -t tmpfs tmpfs {mnt}/dev && mknod -m 666 {mnt}/dev/null c 1 3 && "
        f'chroot {mnt} /bin/bash -c "{checks}"'
    )
    out = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    for expected in (
        "Client Version: v1.",
        "v4.2.3+g",
        "Docker version",
        "42",
        "git version",
        "jq-",
        "curl ",
        "tini version",
        "iputils",
        "iproute2",
        "nano",
        "less",
    ):
        assert expected in out, (expected, out)
