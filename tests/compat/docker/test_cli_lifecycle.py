"""Debian's docker CLI 20.10 as the oracle for a container's life (issue #15, part 1): the
configured user in ``docker exec``, ``--group-add``, ``kill`` then ``rm``, health checks,
``pause``/``unpause``, ``update``, restart policies, ``docker events``, the fields real
clients read, and the refusals (swarm, log drivers, links, build options).

Written from the Docker Engine API reference (v1.41: ``POST /containers/{id}/kill`` waits for
SIGKILL to take effect; ``State.Health``; ``POST /containers/{id}/update``; ``RestartPolicy``;
``GET /events``; ``/swarm`` answers 503 outside a swarm) and the docker CLI's reference
(``docker ps`` shows "(healthy)"/"(Paused)"). A real sandbox, a real ``Engine``, the API on
a unix socket and ``/usr/bin/docker``; the tests share the sandbox, in file order.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime.dockerapi.engine import Engine
from tests.runtime.conftest_daemon import real_sandboxes_available, short_tmp
from tests.runtime.dockerapi.api_helpers import DOCKER, docker, docker_env, served
from tests.runtime.dockerapi.engine_helpers import DockerSandbox, docker_sandbox, engine_on

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]

TAG = 46


@pytest.fixture(scope="module")
def sandbox() -> Iterator[DockerSandbox]:
    why = real_sandboxes_available()
    if why:
        pytest.skip(why)
    if not os.access(DOCKER, os.X_OK):
        pytest.skip("Debian's docker CLI is not installed (apt-get install docker.io)")
    with docker_sandbox(TAG) as sb:
        yield sb


@pytest.fixture(scope="module")
def eng(sandbox: DockerSandbox) -> Iterator[Engine]:
    with engine_on(sandbox) as e:
        yield e


@pytest.fixture(scope="module")
def sock(eng: Engine) -> Iterator[Path]:
    d = short_tmp("dlife-")
    with served(eng, d / "docker.sock"):
        yield d / "docker.sock"
    d.rmdir()


@pytest.fixture(scope="module")
def user_image(sock: Path) -> str:
    """An image whose config says USER 1000, with a HEALTHCHECK that passes once /tmp/ok exists."""
    d = short_tmp("dlifeimg-")
    (d / "Dockerfile").write_text(
        "FROM busybox:1.35\n"
        "RUN echo 'app:x:1000:1000::/home/app:/bin/sh' >> /etc/passwd && echo 'app:x:1000:' >> /etc/group\n"
        "USER 1000\n"
        "HEALTHCHECK --interval=1s --timeout=5s --retries=1 CMD test -f /tmp/ok\n"
        'CMD ["sleep", "1000"]\n'
    )
    try:
        ok(sock, "build", "-t", "lifeuser", str(d))
    finally:
        (d / "Dockerfile").unlink()
        d.rmdir()
    return "lifeuser"


def ok(sock: Path, *args: str, **kw: Any) -> str:
    r = docker(sock, *args, **kw)
    assert r.returncode == 0, f"docker {' '.join(args)}: rc={r.returncode}\n{r.stdout}\n{r.stderr}"
    return r.stdout


def fails(sock: Path, *args: str, **kw: Any) -> str:
    r = docker(sock, *args, **kw)
    assert r.returncode != 0, f"docker {' '.join(args)} should have failed:\n{r.stdout}"
    return r.stderr


def inspect(sock: Path, name: str) -> dict[str, Any]:
    return json.loads(ok(sock, "inspect", name))[0]


def until(what: str, check: Callable[[], Any], limit: float = 60) -> Any:
    """Poll ``check`` until it returns something true (a bounded wait, not a timing assertion)."""
    deadline = time.monotonic() + limit
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.2)


# -- user, groups, kill --------------------------------------------------------------------------


def test_exec_runs_as_the_images_user_unless_told_otherwise(sock: Path, user_image: str) -> None:
    ok(sock, "run", "-d", "--name", "u1", "--no-healthcheck", user_image)
    assert ok(sock, "exec", "u1", "id", "-u").strip() == "1000"
    assert ok(sock, "exec", "-u", "0", "u1", "id", "-u").strip() == "0"
    assert ok(sock, "exec", "--user", "1000:4321", "u1", "id", "-g").strip() == "4321"
    assert inspect(sock, "u1")["Config"]["User"] == "1000"
    ok(sock, "rm", "-f", "u1")


def test_group_add_applies_to_run_and_exec(sock: Path, user_image: str) -> None:
    out = ok(
        sock, "run", "--rm", "--group-add", "4242", "--group-add", "app", "--no-healthcheck", user_image, "id", "-G"
    )
    assert {"4242", "1000"} <= set(out.split())  # app is gid 1000 in the image's /etc/group
    ok(sock, "run", "-d", "--name", "g1", "--group-add", "4242", "busybox", "sleep", "1000")
    assert "4242" in ok(sock, "exec", "g1", "id", "-G").split()
    ok(sock, "rm", "-f", "g1")


def test_kill_returns_once_dead_so_rm_never_races(sock: Path) -> None:
    for i in range(3):
        ok(sock, "run", "-d", "--name", f"k{i}", "busybox", "sleep", "1000")
        r = subprocess.run(
            f"{DOCKER} kill k{i} && {DOCKER} rm k{i}",
            shell=True,  # the shell's && is what users type
            capture_output=True,
            text=True,
            env=docker_env(sock),
            timeout=60,
            check=False,
        )
        assert r.returncode == 0, r.stderr
    ok(sock, "run", "-d", "--name", "k9", "busybox", "sleep", "1000")
    ok(sock, "kill", "k9")
    state = inspect(sock, "k9")["State"]
    assert (state["Status"], state["ExitCode"], state["Running"]) == ("exited", 137, False)
    ok(sock, "rm", "k9")


# -- health checks -------------------------------------------------------------------------------


def health(sock: Path, name: str) -> dict[str, Any]:
    return inspect(sock, name)["State"].get("Health") or {}


def test_dockerfile_healthcheck_is_in_the_image_and_runs(sock: Path, user_image: str) -> None:
    cfg = json.loads(ok(sock, "image", "inspect", "--format", "{{json .Config.Healthcheck}}", user_image))
    assert cfg["Test"] == ["CMD-SHELL", "test -f /tmp/ok"]
    assert (cfg["Interval"], cfg["Timeout"], cfg["Retries"]) == (10**9, 5 * 10**9, 1)
    since = str(int(time.time()) - 1)
    ok(sock, "run", "-d", "--name", "h1", user_image)
    assert health(sock, "h1")["Status"] in ("starting", "unhealthy")
    until("unhealthy", lambda: health(sock, "h1").get("Status") == "unhealthy")
    h = health(sock, "h1")
    assert h["FailingStreak"] >= 1 and h["Log"][-1]["ExitCode"] == 1
    assert "(unhealthy)" in ok(sock, "ps", "--filter", "name=h1")
    ok(sock, "exec", "h1", "touch", "/tmp/ok")
    until("healthy", lambda: health(sock, "h1").get("Status") == "healthy")
    assert health(sock, "h1")["FailingStreak"] == 0
    assert "(healthy)" in ok(sock, "ps", "--filter", "name=h1")
    assert "h1" in ok(sock, "ps", "--filter", "health=healthy", "--format", "{{.Names}}")
    events = ok(
        sock,
        "events",
        "--since",
        since,
        "--until",
        str(int(time.time()) + 1),
        "--filter",
        "container=h1",
        "--filter",
        "event=health_status",
        "--format",
        "{{.Status}}",
    ).split("\n")
    assert "health_status: unhealthy" in events and "health_status: healthy" in events
    ok(sock, "rm", "-f", "h1")


def test_run_health_flags_and_no_healthcheck(sock: Path, user_image: str) -> None:
    ok(
        sock,
        "run",
        "-d",
        "--name",
        "h2",
        "--health-cmd",
        'test "$(id -u)" = 1000 && echo "probe ran as $(id -u)"',
        "--health-interval",
        "1s",
        "--health-retries",
        "2",
        "--health-start-period",
        "1s",
        "--health-timeout",
        "3s",
        user_image,
    )
    cfg = inspect(sock, "h2")["Config"]["Healthcheck"]
    assert cfg == {
        "Test": ["CMD-SHELL", 'test "$(id -u)" = 1000 && echo "probe ran as $(id -u)"'],
        "Interval": 10**9,
        "Timeout": 3 * 10**9,
        "StartPeriod": 10**9,
        "Retries": 2,
    }
    until("healthy", lambda: health(sock, "h2").get("Status") == "healthy")
    assert health(sock, "h2")["Log"][-1]["Output"] == "probe ran as 1000\n"  # the image's user
    ok(sock, "run", "-d", "--name", "h3", "--no-healthcheck", user_image)
    info = inspect(sock, "h3")
    assert info["Config"]["Healthcheck"]["Test"] == ["NONE"]
    assert "Health" not in info["State"]
    ok(sock, "rm", "-f", "h2", "h3")


def test_a_probe_past_its_timeout_fails(sock: Path) -> None:
    ok(
        sock,
        "run",
        "-d",
        "--name",
        "h4",
        "--health-cmd",
        "sleep 30",
        "--health-interval",
        "1s",
        "--health-timeout",
        "1s",
        "--health-retries",
        "1",
        "busybox",
        "sleep",
        "1000",
    )
    until("unhealthy", lambda: health(sock, "h4").get("Status") == "unhealthy")
    last = health(sock, "h4")["Log"][-1]
    assert last["ExitCode"] == -1 and "Health check exceeded timeout (1s)" in last["Output"]
    ok(sock, "rm", "-f", "h4")


def test_health_interval_below_a_second_is_refused_with_the_reason(sock: Path) -> None:
    err = fails(sock, "run", "-d", "--health-cmd", "true", "--health-interval", "100ms", "busybox", "sleep", "9")
    assert "below 1s is not available in this lab" in err


# -- pause / update ------------------------------------------------------------------------------


def test_pause_freezes_and_unpause_thaws(sock: Path, sandbox: DockerSandbox) -> None:
    ok(sock, "run", "-d", "--name", "p1", "busybox", "sh", "-c", "while true; do date +%s%N > /tmp/t; sleep 0.1; done")
    ok(sock, "pause", "p1")
    info = inspect(sock, "p1")
    assert (info["State"]["Status"], info["State"]["Paused"], info["State"]["Running"]) == ("paused", True, True)
    assert "(Paused)" in ok(sock, "ps", "--filter", "name=p1")
    assert "p1" in ok(sock, "ps", "--filter", "status=paused", "--format", "{{.Names}}")
    assert "is paused, unpause the container before exec" in fails(sock, "exec", "p1", "true")
    assert "already paused" in fails(sock, "pause", "p1")
    assert json.loads(ok(sock, "info", "--format", "{{json .ContainersPaused}}")) >= 1
    rc, out, _ = sandbox.sh("echo the sandbox still runs")
    assert (rc, out) == (0, "the sandbox still runs\n")
    ok(sock, "unpause", "p1")
    first = ok(sock, "exec", "p1", "cat", "/tmp/t")
    until("the loop to go on", lambda: ok(sock, "exec", "p1", "cat", "/tmp/t") != first)
    assert "is not paused" in fails(sock, "unpause", "p1")
    ok(sock, "pause", "p1")
    ok(sock, "stop", "-t", "1", "p1")  # a paused container stops, as under dockerd
    assert inspect(sock, "p1")["State"]["Status"] == "exited"
    ok(sock, "rm", "p1")


def test_update_applies_limits_to_the_running_container(sock: Path) -> None:
    ok(sock, "run", "-d", "--name", "up1", "busybox", "sleep", "1000")
    ok(sock, "update", "--memory", "64m", "--cpus", "0.5", "--pids-limit", "50", "--restart", "on-failure:3", "up1")
    hc = inspect(sock, "up1")["HostConfig"]
    assert (hc["Memory"], hc["NanoCpus"], hc["PidsLimit"]) == (64 * 2**20, 5 * 10**8, 50)
    assert hc["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    mem = ok(
        sock,
        "exec",
        "up1",
        "sh",
        "-c",
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max",
    )
    assert mem.strip() == str(64 * 2**20)
    pids = ok(
        sock, "exec", "up1", "sh", "-c", "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max"
    )
    assert pids.strip() == "50"
    err = fails(sock, "update", "--cpuset-cpus", "0", "up1")
    assert "CpusetCpus is not available in this lab" in err
    err = fails(sock, "update", "--blkio-weight", "300", "up1")
    assert "BlkioWeight is not available in this lab" in err
    ok(sock, "rm", "-f", "up1")


# -- restart policies ----------------------------------------------------------------------------


def test_on_failure_restarts_up_to_its_count(sock: Path) -> None:
    ok(sock, "run", "-d", "--name", "r1", "--restart", "on-failure:2", "busybox", "sh", "-c", "exit 3")
    done = until(
        "two restarts, then stopped",
        lambda: (s := inspect(sock, "r1"))["RestartCount"] == 2 and s["State"]["Status"] == "exited" and s,
    )
    assert done["State"]["ExitCode"] == 3 and done["HostConfig"]["RestartPolicy"]["MaximumRetryCount"] == 2
    ok(sock, "rm", "r1")
    ok(sock, "run", "-d", "--name", "r2", "--restart", "on-failure", "busybox", "true")
    until("its exit", lambda: inspect(sock, "r2")["State"]["Status"] == "exited")
    assert inspect(sock, "r2")["RestartCount"] == 0  # exit 0: nothing to restart
    ok(sock, "rm", "r2")


def test_always_restarts_until_stopped_by_hand(sock: Path) -> None:
    ok(sock, "run", "-d", "--name", "r3", "--restart", "always", "busybox", "sh", "-c", "sleep 0.2; exit 0")
    until("restarts", lambda: inspect(sock, "r3")["RestartCount"] >= 2)
    ok(sock, "stop", "-t", "1", "r3")
    info = inspect(sock, "r3")
    assert info["State"]["Status"] == "exited"
    count = info["RestartCount"]
    ok(sock, "run", "--rm", "busybox", "sleep", "1")  # time passes: a restart would have happened
    assert inspect(sock, "r3")["State"]["Status"] == "exited" and inspect(sock, "r3")["RestartCount"] == count
    ok(sock, "start", "r3")
    assert inspect(sock, "r3")["RestartCount"] == 0  # a start by hand resets it, as dockerd's
    ok(sock, "rm", "-f", "r3")


def test_restart_policy_is_checked_as_dockerd_checks_it(sock: Path) -> None:
    assert "maximum retry count cannot be used with restart policy" in fails(
        sock, "run", "-d", "--restart", "always:3", "busybox", "true"
    )
    assert "invalid restart policy" in fails(sock, "run", "-d", "--restart", "sometimes", "busybox", "true")


# -- fields --------------------------------------------------------------------------------------


def test_fields_real_clients_read(sock: Path) -> None:
    assert ok(sock, "info", "--format", "{{json .ExperimentalBuild}}").strip() == "false"
    ok(sock, "run", "-d", "--name", "f1", "-e", "UNSET_BY_US", "-e", "SET=1", "busybox", "sleep", "1000")
    info = inspect(sock, "f1")
    assert info["HostConfig"]["LogConfig"]["Type"] == "json-file"
    assert info["HostConfig"]["Runtime"] == "runc"
    assert "UNSET_BY_US" in info["Config"]["Env"] and "SET=1" in info["Config"]["Env"]
    env = ok(sock, "exec", "f1", "env").split()
    assert "SET=1" in env and not any(e.startswith("UNSET_BY_US") for e in env)
    ok(sock, "rm", "-f", "f1")


def test_a_network_name_with_a_space_is_accepted(sock: Path) -> None:
    ok(sock, "network", "create", "test 01")
    assert json.loads(ok(sock, "network", "inspect", "test 01"))[0]["Name"] == "test 01"
    ok(sock, "run", "--rm", "--network", "test 01", "busybox", "true")
    ok(sock, "network", "rm", "test 01")


def test_add_host_is_written_to_etc_hosts(sock: Path) -> None:
    out = ok(sock, "run", "--rm", "--add-host", "db.example:10.9.8.7", "busybox", "cat", "/etc/hosts")
    assert "10.9.8.7\tdb.example" in out


# -- refusals ------------------------------------------------------------------------------------


def test_swarm_commands_get_dockerds_answer(sock: Path) -> None:
    msg = 'This node is not a swarm manager. Use "docker swarm init" or "docker swarm join"'
    assert msg in fails(sock, "service", "ls")
    assert msg in fails(sock, "node", "ls")
    assert "docker swarm is not available in this lab" in fails(sock, "swarm", "init")


def test_log_drivers_are_refused_with_the_reason(sock: Path) -> None:
    assert "no log driver named 'bogus' is registered" in fails(sock, "run", "--log-driver", "bogus", "busybox", "true")
    assert "log driver syslog is not available in this lab" in fails(
        sock, "run", "--log-driver", "syslog", "busybox", "true"
    )
    assert "log options (max-size) are not available" in fails(
        sock, "run", "--log-opt", "max-size=1m", "busybox", "true"
    )


def test_legacy_links_give_names_and_environment(sock: Path) -> None:
    ok(sock, "run", "-d", "--name", "db", "-e", "DBPASS=secret", "--expose", "5432", "busybox", "sleep", "1000")
    ip = inspect(sock, "db")["NetworkSettings"]["IPAddress"]
    hostname = inspect(sock, "db")["Config"]["Hostname"]
    ok(sock, "run", "-d", "--name", "web", "--link", "db:database", "busybox", "sleep", "1000")
    assert inspect(sock, "web")["HostConfig"]["Links"] == ["/db:/web/database"]
    env = ok(sock, "exec", "web", "env").split()
    for want in (
        f"DATABASE_PORT=tcp://{ip}:5432",
        f"DATABASE_PORT_5432_TCP=tcp://{ip}:5432",
        f"DATABASE_PORT_5432_TCP_ADDR={ip}",
        "DATABASE_PORT_5432_TCP_PORT=5432",
        "DATABASE_PORT_5432_TCP_PROTO=tcp",
        "DATABASE_NAME=/web/database",
        "DATABASE_ENV_DBPASS=secret",
    ):
        assert want in env, (want, env)
    assert f"{ip}\tdatabase {hostname} db" in ok(sock, "exec", "web", "cat", "/etc/hosts")
    assert "could not get container for nope" in fails(sock, "run", "--link", "nope:x", "busybox", "true")
    ok(sock, "stop", "-t", "0", "db")
    ok(sock, "stop", "-t", "0", "web")
    assert "Cannot link to a non running container: /db AS /web/database" in fails(sock, "start", "web")
    ok(sock, "rm", "--link", "/web/database")
    assert not inspect(sock, "web")["HostConfig"]["Links"]
    ok(sock, "rm", "-f", "web", "db")


def test_build_options_are_honoured_or_refused(sock: Path) -> None:
    d = short_tmp("dlifebuild-")
    (d / "Dockerfile").write_text(
        "FROM busybox:1.35\nRUN cat /etc/hosts > /hosts.txt && (ip -o link show > /links.txt 2>&1 || true)\n"
    )
    try:
        ok(
            sock,
            "build",
            "--no-cache",
            "--add-host",
            "cache.example:10.1.2.3",
            "--network",
            "none",
            "-t",
            "bopt",
            str(d),
        )
        hosts = ok(sock, "run", "--rm", "bopt", "cat", "/hosts.txt")
        assert "10.1.2.3\tcache.example" in hosts
        links = ok(sock, "run", "--rm", "bopt", "cat", "/links.txt")
        assert "eth0" not in links  # --network none: the RUN step had no interface but lo
        assert "--network=host is not available" in fails(sock, "build", "--network", "host", str(d))
        assert "--cache-from is not available" in fails(sock, "build", "--cache-from", "bopt", str(d))
    finally:
        (d / "Dockerfile").unlink()
        d.rmdir()
