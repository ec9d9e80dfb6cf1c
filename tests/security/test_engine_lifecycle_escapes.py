"""Attacks on the Docker engine's lifecycle features (issue #15): pause, update, health checks
and restart policies must stay inside the sandbox's cgroup and limits.

A hostile student drives the real docker SDK against their sandbox's engine (a real sandbox,
a real ``Engine``, the API on a unix socket):

* ``docker pause`` freezes the container's own cgroup, below the sandbox's: the sandbox (its
  shell, its other containers) keeps running, and a crafted name reaches no other cgroup;
* ``docker update`` cannot lift a container above the sandbox's memory, pids or CPU limits,
  nor change the sandbox's own cgroup;
* a health command runs inside the container (its pid namespace, hostname and user), never
  in the sandbox or on the host, and probes of a sandbox run a bounded number at a time;
* a crash loop under ``--restart always`` backs off (dockerd's doubling) with one pending
  timer per container, however fast the container dies.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from runtime.dockerapi.engine import Engine, health
from tests.runtime.conftest_daemon import real_sandboxes_available, short_tmp
from tests.runtime.dockerapi.api_helpers import served
from tests.runtime.dockerapi.engine_helpers import DockerSandbox, docker_sandbox

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]

TAG = 39
V2 = Path("/sys/fs/cgroup/cgroup.controllers").exists()


@pytest.fixture(scope="module")
def sandbox() -> Iterator[DockerSandbox]:
    why = real_sandboxes_available()
    if why:
        pytest.skip(why)
    with docker_sandbox(TAG) as sb:
        yield sb


@pytest.fixture(scope="module")
def eng(sandbox: DockerSandbox) -> Iterator[Engine]:
    e = Engine(sandbox.ctx, sandbox.mgr.images)  # type: ignore[arg-type]
    yield e
    e.close(remove=False)


@pytest.fixture(scope="module")
def client(eng: Engine) -> Iterator[docker.DockerClient]:
    d = short_tmp("dsecl-")
    with served(eng, d / "docker.sock"):
        c = docker.DockerClient(base_url=f"unix://{d / 'docker.sock'}", timeout=120)
        yield c
        for ct in c.containers.list(all=True):
            ct.remove(force=True)
        c.close()
    d.rmdir()


def cg(sb: DockerSandbox, controller: str, rel: str = "") -> Path:
    base = Path("/sys/fs/cgroup") if V2 else Path("/sys/fs/cgroup") / controller
    return base / sb.ctx.cgroup_path.lstrip("/") / rel


def frozen(path: Path) -> bool:
    if V2:
        return "frozen 1" in (path / "cgroup.events").read_text()
    return (path / "freezer.state").read_text().strip() == "FROZEN"


def until(what: str, check: Callable[[], Any], limit: float = 60) -> Any:
    deadline = time.monotonic() + limit
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.1)


def test_pause_freezes_only_the_containers_own_cgroup(client: docker.DockerClient, sandbox: DockerSandbox) -> None:
    victim = client.containers.run("busybox", ["sleep", "1000"], detach=True)
    other = client.containers.run("busybox", ["sleep", "1000"], detach=True)
    victim.pause()
    mine = cg(sandbox, "freezer", f"docker-{victim.id[:12]}")
    assert frozen(mine)
    assert not frozen(cg(sandbox, "freezer"))  # the sandbox's own cgroup is not frozen
    assert not frozen(cg(sandbox, "freezer", f"docker-{other.id[:12]}"))
    rc, out, _ = sandbox.sh("echo shell alive")
    assert (rc, out) == (0, "shell alive\n")
    assert other.exec_run(["echo", "other alive"]).output == b"other alive\n"
    for crafted in ("..", "../..", sandbox.sid, "/", f"{victim.id[:12]}/../.."):
        with pytest.raises(docker.errors.APIError) as e:
            client.api.pause(crafted)
        assert e.value.status_code in (404, 400)
    victim.unpause()
    assert not frozen(mine)
    victim.remove(force=True)
    other.remove(force=True)


def test_update_cannot_lift_a_container_above_the_sandbox(client: docker.DockerClient, sandbox: DockerSandbox) -> None:
    before = {
        "memory": (cg(sandbox, "memory") / ("memory.max" if V2 else "memory.limit_in_bytes")).read_text(),
        "pids": (cg(sandbox, "pids") / "pids.max").read_text(),
    }
    c = client.containers.run("busybox", ["sleep", "1000"], detach=True)
    r = update(client, c.id, {"Memory": 100 * 2**30, "PidsLimit": 10**6})
    assert any("above your sandbox's" in w for w in r.get("Warnings") or [])
    mem = int(
        (cg(sandbox, "memory", f"docker-{c.id[:12]}") / ("memory.max" if V2 else "memory.limit_in_bytes")).read_text()
    )
    pids = (cg(sandbox, "pids", f"docker-{c.id[:12]}") / "pids.max").read_text().strip()
    assert mem <= sandbox.ctx.memory
    assert pids != "max" and int(pids) <= sandbox.ctx.pids
    client.api.update_container(c.id, cpu_quota=10_000_000, cpu_period=100_000)  # 100 CPUs asked
    if not V2:
        quota = int((cg(sandbox, "cpu", f"docker-{c.id[:12]}") / "cpu.cfs_quota_us").read_text())
        assert 0 < quota <= int(sandbox.ctx.cpus * 100_000)
    else:
        quota_s, period_s = (cg(sandbox, "cpu", f"docker-{c.id[:12]}") / "cpu.max").read_text().split()
        assert quota_s != "max" and int(quota_s) <= int(sandbox.ctx.cpus * int(period_s))
    after = {
        "memory": (cg(sandbox, "memory") / ("memory.max" if V2 else "memory.limit_in_bytes")).read_text(),
        "pids": (cg(sandbox, "pids") / "pids.max").read_text(),
    }
    assert after == before  # the sandbox's own limits are untouched
    for refused in ({"cpuset_cpus": "0"}, {"blkio_weight": 500}, {"kernel_memory": "64m"}):
        with pytest.raises(docker.errors.APIError) as e:
            client.api.update_container(c.id, **refused)
        assert e.value.status_code == 403 and "is not available in this lab" in str(e.value.explanation)
    c.remove(force=True)


def update(client: docker.DockerClient, cid: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST /containers/{id}/update as the reference gives it (the SDK has no pids_limit)."""
    r = client.api._post_json(client.api._url("/containers/{0}/update", cid), data=body)
    client.api._raise_for_status(r)
    return r.json()


def _image_with_user(client: docker.DockerClient) -> str:
    df = b"FROM busybox:1.35\nRUN echo 'app:x:1000:1000::/tmp:/bin/sh' >> /etc/passwd\nUSER 1000\n"
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        ti = tarfile.TarInfo("Dockerfile")
        ti.size = len(df)
        tar.addfile(ti, io.BytesIO(df))
    buf.seek(0)
    client.images.build(fileobj=buf, custom_context=True, tag="seclife-user")
    return "seclife-user"


def test_health_commands_run_inside_the_container_as_its_user(
    client: docker.DockerClient, sandbox: DockerSandbox
) -> None:
    image = _image_with_user(client)
    probe = "id -u > /tmp/probe; hostname >> /tmp/probe; cat /proc/1/cmdline >> /tmp/probe; echo >> /tmp/probe"
    c = client.containers.run(
        image,
        ["sleep", "1000"],
        detach=True,
        hostname="inside",
        healthcheck={"test": ["CMD-SHELL", probe], "interval": 10**9, "retries": 1},
    )
    until("a probe", lambda: (client.api.inspect_container(c.id)["State"].get("Health") or {}).get("Log"))
    uid, host, init = c.exec_run(["cat", "/tmp/probe"]).output.decode().splitlines()[:3]
    assert (uid, host) == ("1000", "inside")
    assert init.replace("\0", " ").strip() == "sleep 1000"  # the container's pid namespace
    _rc, out, _ = sandbox.sh("test -e /tmp/probe && echo leaked || echo clean")
    assert out == "clean\n"  # nothing ran in the sandbox itself
    c.remove(force=True)


def test_probes_of_a_sandbox_run_a_bounded_number_at_a_time(client: docker.DockerClient, eng: Engine) -> None:
    n = health.MAX_RUNNING + 4
    cs = [
        client.containers.run(
            "busybox",
            ["sleep", "1000"],
            detach=True,
            healthcheck={"test": ["CMD", "sleep", "2"], "interval": 10**9, "timeout": 5 * 10**9},
        )
        for _ in range(n)
    ]
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, eng._probes_running)
            time.sleep(0.01)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    until(
        "every container probed",
        lambda: all((client.api.inspect_container(c.id)["State"].get("Health") or {}).get("Log") for c in cs),
        limit=120,
    )
    stop.set()
    t.join(5)
    assert 0 < peak <= health.MAX_RUNNING
    for c in cs:
        c.remove(force=True)


def test_a_crash_loop_backs_off_with_one_timer_per_container(client: docker.DockerClient, eng: Engine) -> None:
    c = client.containers.run("busybox", ["sh", "-c", "exit 1"], detach=True, restart_policy={"Name": "always"})
    until("five restarts", lambda: client.api.inspect_container(c.id)["RestartCount"] >= 5)
    rec = eng._containers[c.id]
    assert rec.restart_delay >= 0.1 * 2**4  # doubled at each restart, as dockerd's back-off
    assert eng._timers.pending() <= 1 + len(eng._containers)  # one pending restart, no pile-up
    c.stop(timeout=1)
    info = client.api.inspect_container(c.id)
    assert info["State"]["Status"] == "exited" and not info["State"]["Restarting"]
    count = info["RestartCount"]
    client.containers.run("busybox", ["sleep", "2"], remove=True)  # time passes
    assert client.api.inspect_container(c.id)["RestartCount"] == count  # the stop cancelled the loop
    c.remove(force=True)
