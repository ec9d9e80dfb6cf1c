"""SandboxBackend implementations: NamespaceBackend on runtimed, DockerBackend on a real dockerd.

The dockerd is Debian's docker.io, started by a fixture on private dirs and a
private socket (no bridge, no iptables) and stopped after; its only image is
built here from the host's busybox-static with ``docker import`` (no registry).
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import signal
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime import errors
from runtime.backends import AttachStream, DockerBackend, NamespaceBackend, backend_from_name
from tests.runtime.conftest_daemon import short_tmp
from tests.runtime.daemon_helpers import RealDaemon

BUSYBOX = "/bin/busybox"
IMAGE = "kubelab-test/busybox:latest"


def _busybox_rootfs() -> bytes:
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, check=True, timeout=30).stdout.split()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for d, mode in (
            ("bin", 0o755),
            ("root", 0o700),
            ("tmp", 0o1777),
            ("etc", 0o755),
            ("proc", 0o555),
            ("sys", 0o555),
            ("dev", 0o755),
        ):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tf.addfile(info)
        tf.add(BUSYBOX, "bin/busybox")
        for a in applets:
            name = a.decode()
            if name == "busybox":
                continue
            link = tarfile.TarInfo(f"bin/{name}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tf.addfile(link)
        for path, text in (("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"), ("etc/group", "root:x:0:\n")):
            data = text.encode()
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(data), 0o644
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture(scope="module")
def dockerd() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("dockerd needs root")
    exe = shutil.which("dockerd")
    if exe is None:
        pytest.skip("dockerd is not installed (apt-get install docker.io)")
    if not Path(BUSYBOX).exists():
        pytest.skip(f"{BUSYBOX} is missing (apt-get install busybox-static)")
    d = short_tmp("dkd-")
    sock = d / "docker.sock"
    log = (d / "dockerd.log").open("wb")
    proc = subprocess.Popen(
        [
            exe,
            "--host",
            f"unix://{sock}",
            "--data-root",
            str(d / "data"),
            "--exec-root",
            str(d / "exec"),
            "--pidfile",
            str(d / "dockerd.pid"),
            "--bridge",
            "none",
            "--iptables=false",
            "--ip6tables=false",
            "--ip-masq=false",
        ],
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    try:
        import docker

        client = None
        deadline = time.monotonic() + 60
        while client is None:
            if proc.poll() is not None:
                pytest.skip(f"dockerd cannot run here: {(d / 'dockerd.log').read_text()[-800:]}")
            if time.monotonic() > deadline:
                pytest.skip("dockerd did not answer within 60s")
            try:
                c = docker.DockerClient(base_url=f"unix://{sock}", timeout=30)
                c.ping()
                client = c
            except Exception:
                time.sleep(0.2)
        repo, tag = IMAGE.rsplit(":", 1)
        client.api.import_image_from_data(_busybox_rootfs(), repository=repo, tag=tag)
        client.close()
        yield f"unix://{sock}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        subprocess.run(["umount", "-R", "-l", str(d)], capture_output=True, timeout=30)
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def docker_backend(dockerd: str) -> Iterator[DockerBackend]:
    b = DockerBackend(dockerd, images={"busybox": IMAGE})
    try:
        yield b
    finally:
        for box in b.list():
            b.remove(box["id"])
        b.close()


async def _read_until(att: AttachStream, needle: bytes, timeout: float = 20) -> bytes:
    buf = b""
    deadline = time.monotonic() + timeout
    while needle not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{needle!r} not seen; got {buf[-1000:]!r}")
        item = await att.recv(timeout=left)
        if item is None:
            raise AssertionError(f"stream ended before {needle!r}; got {buf[-1000:]!r}")
        if isinstance(item, bytes):
            buf += item
    return buf


def _scan(marker: str) -> list[str]:
    regex = f"{marker[:-1]}[{marker[-1]}]"
    script = f'for f in /proc/[0-9]*/cmdline; do tr "\\0" " " < "$f"; echo; done 2>/dev/null | grep {regex}'
    return ["sh", "-c", script]


# -- docker ----------------------------------------------------------------------------------
def test_docker_sandbox_limits_exec_and_remove(docker_backend: DockerBackend) -> None:
    b = docker_backend
    info = b.create(
        {
            "image": "busybox",
            "memory": 128 * 2**20,
            "pids": 64,
            "cpus": 0.5,
            "env": {"COURSE": "k8s"},
            "files": {"notes/hello.txt": "hi there\n"},
            "setup": "echo ready > /root/setup.txt",
            "labels": {"lab": "l1"},
        }
    )
    sid = info["id"]
    assert info["status"] == "running" and info["spec"]["labels"] == {"lab": "l1"}
    host = b.docker.containers.get(f"kubelab-{sid}").attrs["HostConfig"]
    assert (host["Memory"], host["PidsLimit"], host["NanoCpus"]) == (128 * 2**20, 64, 5 * 10**8)
    assert host["NetworkMode"] == "none"
    r = b.exec(sid, ["sh", "-c", 'cat notes/hello.txt setup.txt; echo "$COURSE"; echo e >&2; exit 3'])
    assert (r.exit_code, r.stdout, r.stderr) == (3, b"hi there\nready\nk8s\n", b"e\n")
    r = b.exec(sid, ["tr", "a-z", "A-Z"], stdin=b"piped")
    assert r.ok and r.stdout == b"PIPED"
    stats = b.stats(sid)
    assert stats["memory_limit"] == 128 * 2**20 and stats["pids_limit"] == 64
    assert stats["memory_bytes"] > 0
    assert sid in [x["id"] for x in b.list()]
    before = b.get(sid)["last_activity"]
    time.sleep(0.01)
    b.touch(sid)
    assert b.get(sid)["last_activity"] > before
    b.remove(sid)
    with pytest.raises(errors.SandboxNotFound):
        b.get(sid)
    with pytest.raises(errors.SandboxNotFound):
        b.exec(sid, ["true"])


def test_docker_refuses_services_and_unknown_images(docker_backend: DockerBackend) -> None:
    with pytest.raises(errors.NotAvailable, match="docker"):
        docker_backend.create({"image": "busybox", "services": ["docker"]})
    with pytest.raises(errors.ImageNotFound):
        docker_backend.create({"image": "no-such-image"})
    with pytest.raises(errors.BadRequest):
        docker_backend.create({"image": "busybox", "memory": 1})


def test_docker_exec_timeout_kills_the_tree(docker_backend: DockerBackend) -> None:
    b = docker_backend
    sid = b.create({"image": "busybox"})["id"]
    marker = str(int(time.time() * 1000) % 100000 + 200000)
    r = b.exec(sid, ["sh", "-c", f"sleep {marker} & sleep {marker}; echo never"], timeout=1)
    assert r.timed_out and b"never" not in r.stdout
    left = b.exec(sid, _scan(marker), timeout=10)
    assert left.exit_code == 1, left


async def test_docker_sessions_replay_resize_and_read_only(docker_backend: DockerBackend) -> None:
    b = docker_backend
    sid = (await asyncio.to_thread(b.create, {"image": "busybox"}))["id"]
    s = await b.create_session(sid, ["/bin/sh", "-i"], rows=30, cols=90)
    att = await b.attach(sid, s["session_id"])
    await att.send(b"PS1='P''$ '; stty size\n")
    await _read_until(att, b"30 90")
    await b.resize(sid, s["session_id"], 33, 99)
    await asyncio.sleep(0.3)
    await att.send(b"stty size\n")
    await _read_until(att, b"33 99")
    ro = await b.attach(sid, s["session_id"], read_only=True)
    await ro.send(b"echo observer-$((2*3))\n")
    await att.send(b"echo owner-$((3*3))\n")
    seen = await _read_until(ro, b"owner-9")
    assert b"observer-6" not in seen
    await att.close()
    await ro.close()
    again = await b.attach(sid, s["session_id"])
    await _read_until(again, b"owner-9")  # scrollback replay
    await again.send(b"exit 4\n")
    while True:
        item = await again.recv(timeout=20)
        assert item is not None
        if isinstance(item, dict) and item.get("type") == "exit":
            assert item["code"] == 4
            break
    await asyncio.to_thread(b.remove, sid)


# -- namespace -------------------------------------------------------------------------------
async def test_namespace_backend_round_trip(real_daemon: RealDaemon) -> None:
    b = backend_from_name("namespace", socket_path=real_daemon.socket)
    assert isinstance(b, NamespaceBackend)
    info = await asyncio.to_thread(b.create, {"image": "busybox"})
    sid = info["id"]
    try:
        r = await asyncio.to_thread(b.exec, sid, ["sh", "-c", "echo ns; exit 2"])
        assert (r.exit_code, r.stdout) == (2, b"ns\n")
        s = await b.create_session(sid, ["/bin/sh", "-i"])
        att = await b.attach(sid, s["session_id"])
        await att.send(b"echo via-$((1+6))\n")
        await _read_until(att, b"via-7")
        await att.close()
        assert [x["session_id"] for x in await b.list_sessions(sid)] == [s["session_id"]]
        stats: dict[str, Any] = await asyncio.to_thread(b.stats, sid)
        assert stats["pids"] >= 1
    finally:
        await asyncio.to_thread(b.remove, sid)
        await b.aclose()
        b.close()
    with pytest.raises(errors.SandboxNotFound):
        b2 = NamespaceBackend(real_daemon.socket)
        b2.get(sid)
