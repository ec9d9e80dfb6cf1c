"""The ``docker`` sandbox service end to end: real runtimed, real runc, the real docker CLI.

A sandbox created with ``services: ["docker"]`` on lab-base (which carries Debian's docker
CLI) talks to its own engine through ``/var/run/docker.sock``; the host reaches the same
engine through the socket ``GET /v1/sandboxes/{id}/docker`` names (graders); engines of two
sandboxes know nothing of each other; a runtimed restart keeps containers running and
serves them again; removing the sandbox leaves nothing behind. The engine's own behaviour
is tested in engine/test_engine.py / build/test_build.py / test_cli.py; this module is the wiring.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime import errors
from runtime.client import Client
from runtime.images.store import ImageStore
from tests.runtime.conftest_daemon import cleaning_client, private_daemon, real_sandboxes_available
from tests.runtime.daemon_helpers import REPO, RealDaemon

IMAGES = Path(os.environ.get("RUNTIME_TEST_IMAGE_ROOT", REPO / "var/runtime/images"))
HOST_RESOURCES = [
    "--subnet",
    "10.238.32.0/20",
    "--bridge",
    "kltestdk",
    "--cgroup-parent",
    "kubelab-testdk",
    "--uid-start",
    str(3_300_000_000),
]

pytestmark = [pytest.mark.root, pytest.mark.timeout(600)]


def _has_lab_base() -> str | None:
    try:
        ImageStore(IMAGES).get("lab-base")
    except Exception:  # any failure means "not built here"
        return f"the lab-base image is not built in {IMAGES} (make images)"
    return None


@pytest.fixture(scope="module")
def daemon() -> Iterator[RealDaemon]:
    why = real_sandboxes_available() or _has_lab_base()
    if why:
        pytest.skip(why)
    with private_daemon("rtd-", HOST_RESOURCES, IMAGES) as d:
        yield d


@pytest.fixture
def client(daemon: RealDaemon) -> Iterator[Client]:
    with cleaning_client(daemon.socket, timeout=120) as c:
        yield c


def docker_box(client: Client, **spec: Any) -> str:
    spec.setdefault("image", "lab-base")
    spec.setdefault("services", ["docker"])
    spec.setdefault("memory", 512 * 2**20)
    return str(client.create_sandbox(spec)["id"])


def sh(client: Client, sid: str, script: str, timeout: float = 120) -> tuple[int, str]:
    r = client.exec(sid, ["/bin/bash", "-c", script], timeout=timeout)
    assert not r.timed_out, f"{script!r} timed out: {r.stdout_text}{r.stderr_text}"
    return r.exit_code or 0, r.stdout_text + r.stderr_text


def mounts_under(path: Path) -> list[str]:
    with open("/proc/self/mountinfo") as fh:
        return [line.split()[4] for line in fh if line.split()[4].startswith(str(path))]


def test_the_sandbox_has_its_socket_and_the_classic_builder(client: Client) -> None:
    sid = docker_box(client)
    code, out = sh(client, sid, "test -S /var/run/docker.sock && echo socket; echo buildkit=$DOCKER_BUILDKIT")
    assert code == 0, out
    assert "socket" in out and "buildkit=0" in out
    code, out = sh(client, sid, "docker version --format '{{.Server.APIVersion}} {{.Server.Os}}'")
    assert (code, out.strip()) == (0, "1.41 linux")
    code, out = sh(client, sid, "docker run --rm busybox:1.35 echo hello from a container")
    assert (code, out.strip()) == (0, "hello from a container")


def test_the_host_reaches_the_same_engine_for_graders(client: Client) -> None:
    import docker

    sid = docker_box(client)
    code, out = sh(client, sid, "printf 'FROM busybox:1.35\\nLABEL lab=yes\\n' | docker build -q -t mine:v1 -")
    assert code == 0, out
    engine = docker.DockerClient(base_url="unix://" + client.docker_socket(sid), timeout=60)
    engine.api.headers["Authorization"] = "Bearer " + client.mint_token(sid, role="grader", ttl=60)
    try:
        assert engine.ping()
        image = engine.images.get("mine:v1")
        assert image.labels == {"lab": "yes"}
    finally:
        engine.close()


def test_the_hosts_side_of_an_engine_wants_that_sandboxs_credential(client: Client) -> None:
    """Every process of the platform's group can open the graders' sockets: the socket's
    mode is not the wall, the sandbox's token is (runtime.auth)."""
    import docker
    from docker import errors as docker_errors

    sid, other = docker_box(client), docker_box(client)
    url = "unix://" + client.docker_socket(sid)
    for token in (
        None,
        "forged",
        client.mint_token(other, role="grader", ttl=60),
        client.mint_token(sid, role="web", ttl=60),
    ):
        engine = docker.DockerClient(base_url=url, timeout=60)
        if token:
            engine.api.headers["Authorization"] = f"Bearer {token}"
        try:
            assert engine.ping()  # version negotiation stays open: it tells nothing
            with pytest.raises(docker_errors.APIError) as refused:
                engine.containers.create("busybox:1.35", "true", name="planted")
            assert refused.value.status_code in (401, 403), refused.value
        finally:
            engine.close()
    code, out = sh(client, sid, "docker ps -a --format '{{.Names}}'")
    assert code == 0 and "planted" not in out


def test_a_sandbox_without_the_service_has_no_engine(client: Client) -> None:
    sid = docker_box(client, services=[])
    _code, out = sh(client, sid, "test -e /var/run/docker.sock || echo none; docker ps 2>&1")
    assert "none" in out and "Cannot connect to the Docker daemon" in out
    with pytest.raises(errors.NotAvailable):
        client.docker_socket(sid)


def test_two_sandboxes_do_not_see_each_other(client: Client) -> None:
    a, b = docker_box(client), docker_box(client)
    code, out = sh(client, a, "docker create --name only-in-a busybox:1.35 true && docker tag busybox:1.35 a-only:1")
    assert code == 0, out
    code, out = sh(client, b, "docker ps -a --format '{{.Names}}'; docker images --format '{{.Repository}}'")
    assert code == 0, out
    assert "only-in-a" not in out and "a-only" not in out
    code, out = sh(client, a, "docker ps -a --format '{{.Names}}'")
    assert out.split() == ["only-in-a"]


def test_a_runtimed_restart_keeps_containers_and_their_output(client: Client, daemon: RealDaemon) -> None:
    sid = docker_box(client)
    ticker = "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done"
    code, out = sh(client, sid, f"docker run -d --name keeper busybox:1.35 sh -c '{ticker}'")
    assert code == 0, out
    code, before = sh(client, sid, "sleep 0.5; docker logs keeper | tail -n 1")
    assert before.startswith("tick "), before
    assert daemon.stop() == 0
    time.sleep(1)  # the container goes on writing while no runtimed reads its output
    daemon.start()
    with Client(daemon.socket, timeout=120) as c:
        code, out = sh(c, sid, "docker ps --format '{{.Names}} {{.Status}}'")
        assert code == 0, out
        assert out.startswith("keeper Up"), out
        code, out = sh(c, sid, "docker exec keeper echo still here")
        assert (code, out.strip()) == (0, "still here")
        code, logs = sh(c, sid, "sleep 0.5; docker logs keeper")
        ticks = [int(line.split()[1]) for line in logs.splitlines() if line.startswith("tick ")]
        # nothing lost or repeated across the restart, and the output is still collected
        assert ticks == list(range(len(ticks))), logs[-500:]
        assert ticks[-1] > int(before.split()[1]) + 10, (before, logs[-200:])
        code, out = sh(c, sid, "docker rm -f keeper && docker ps -aq | wc -l")
        assert (code, out.split()[-1]) == (0, "0"), out


def test_removing_the_sandbox_leaves_nothing_behind(client: Client, daemon: RealDaemon) -> None:
    sid = docker_box(client)
    code, out = sh(client, sid, "docker run -d -p 8080:80 busybox:1.35 httpd -f -p 80 && docker volume create v1")
    assert code == 0, out
    host_socket = Path(client.docker_socket(sid))
    assert host_socket.exists()
    sandbox_dir = daemon.root / "sandboxes" / sid
    assert mounts_under(sandbox_dir)
    client.remove_sandbox(sid)
    assert mounts_under(sandbox_dir) == []
    assert not sandbox_dir.exists()
    assert not host_socket.exists()


def test_the_graders_socket_directory_is_never_a_planted_symlink(tmp_path: Path) -> None:
    """Under `make run` its parent (var/run) belongs to the service user, who could plant
    a symlink there: runtimed must refuse it, never chmod/chown what it points to."""
    from runtime.dockerapi.service import DockerService

    victim = tmp_path / "victim"
    victim.mkdir(mode=0o700)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "docker").symlink_to(victim)
    svc = DockerService(manager=None, catalog=None, host_dir=tmp_path / "run" / "docker")  # type: ignore[arg-type]
    with pytest.raises(errors.Conflict, match="not a directory"):
        svc._prepare_host_dir()
    assert (victim.stat().st_mode & 0o777) == 0o700
    (tmp_path / "run" / "docker").unlink()
    svc._prepare_host_dir()
    made = tmp_path / "run" / "docker"
    assert made.is_dir() and not made.is_symlink() and (made.stat().st_mode & 0o777) == 0o750


def test_stopping_then_removing_the_sandbox_leaves_nothing_behind(client: Client, daemon: RealDaemon) -> None:
    """Idle sandboxes are stopped first (their containers die with them), removed later."""
    sid = docker_box(client)
    code, out = sh(client, sid, "docker run -d -p 8080:80 busybox:1.35 httpd -f -p 80")
    assert code == 0, out
    sandbox_dir = daemon.root / "sandboxes" / sid
    engine_mounts = [m for m in mounts_under(sandbox_dir) if "/engine/" in m]
    assert engine_mounts, "the container's root filesystem is mounted"
    client.stop_sandbox(sid)
    assert [m for m in mounts_under(sandbox_dir) if "/engine/" in m] == []
    client.remove_sandbox(sid)
    assert mounts_under(sandbox_dir) == []
    assert not sandbox_dir.exists()
