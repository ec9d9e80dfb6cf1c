"""Fixtures of the grader tests: Debian's real dockerd, private to the test run.

It gets its own data root, exec root, pidfile and unix socket in a temporary
directory, no bridge and no iptables rules, so it touches neither the host's
network nor another Docker on the machine. No registry is reachable, so images
are made with ``docker import`` from a busybox root filesystem.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


def _busybox_rootfs() -> bytes:
    busybox = Path(shutil.which("busybox") or "/bin/busybox")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in ("bin", "etc", "tmp", "root"):
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)
        tar.add(str(busybox), arcname="bin/busybox")
        for applet in ("sh", "ls", "cat", "echo"):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type = tarfile.SYMTYPE
            link.linkname = "busybox"
            tar.addfile(link)
        passwd = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n"
        info = tarfile.TarInfo("etc/passwd")
        info.size = len(passwd)
        tar.addfile(info, io.BytesIO(passwd))
    return buf.getvalue()


@pytest.fixture(scope="session")
def dockerd() -> Iterator[str]:
    """A private dockerd with a ``busybox:latest`` image; yields its ``unix://`` URL."""
    if os.geteuid() != 0:
        pytest.skip("dockerd needs root")
    binary = shutil.which("dockerd")
    if binary is None:
        pytest.skip("dockerd (Debian's docker.io) is not installed")
    root = Path(tempfile.mkdtemp(prefix="kl-test-dockerd-", dir="/tmp"))
    sock = root / "docker.sock"
    log = (root / "dockerd.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            "--data-root",
            str(root / "data"),
            "--exec-root",
            str(root / "exec"),
            "--pidfile",
            str(root / "docker.pid"),
            "--host",
            f"unix://{sock}",
            "--bridge",
            "none",
            "--iptables=false",
            "--ip-masq=false",
            "--storage-driver",
            "vfs",
            "--log-level",
            "warn",
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"unix://{sock}"
    import docker

    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"dockerd exited: {(root / 'dockerd.log').read_text()[-3000:]}")
            try:
                client = docker.DockerClient(base_url=url, timeout=10)
                client.ping()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        client.api.import_image_from_data(_busybox_rootfs(), repository="busybox", tag="latest")
        client.close()
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()
        subprocess.run(["umount", "-R", "-l", str(root)], capture_output=True, timeout=30)
        shutil.rmtree(root, ignore_errors=True)
