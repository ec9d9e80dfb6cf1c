"""A student's Docker engine cannot grow runtimed outside the student's limits (issue #12).

Real runtimed, real runc, the real docker CLI inside a lab-base sandbox with the docker
service. The attacks are what a hostile student can type:

* a flood of ``docker run -d`` (several at a time): every process runtimed starts for it
  (runc, nsenter + ip/nft, the engine's mount helper, the ``sleep`` holding a container's
  output pipes) must sit in the sandbox's cgroup -- so the sandbox's pids and memory
  limits apply -- while the flood runs and afterwards, and runtimed's thread count must
  not grow with the number of containers;
* a flood of ``docker create``, ``docker network create``, ``docker volume create`` and
  ``docker tag`` past the engine's count quota: refused with Docker's error JSON (403)
  and a message that says what limit and what to remove, the store no bigger than that.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime.client import Client
from runtime.dockerapi.limits import EngineLimits
from runtime.images.store import ImageStore
from runtime.sandbox.cgexec import WRAPPER_BUILT
from tests.runtime.conftest_daemon import cleaning_client, private_daemon, real_sandboxes_available
from tests.runtime.daemon_helpers import REPO, RealDaemon

IMAGES = Path(os.environ.get("RUNTIME_TEST_IMAGE_ROOT", REPO / "var/runtime/images"))
CGROUP_PARENT = "kubelab-testee"
HOST_RESOURCES = [
    "--subnet",
    "10.239.16.0/20",
    "--bridge",
    "kltestee",
    "--cgroup-parent",
    CGROUP_PARENT,
    "--uid-start",
    str(3_500_000_000),
]
LIMITS = EngineLimits()  # what runtimed's engines enforce
RUNNING = 40  # containers the flood leaves running

pytestmark = [pytest.mark.root, pytest.mark.timeout(900)]


def _why_not() -> str | None:
    why = real_sandboxes_available()
    if why:
        return why
    try:
        ImageStore(IMAGES).get("lab-base")
    except Exception:  # any failure means "not built here"
        return f"the lab-base image is not built in {IMAGES} (make images)"
    return None


@pytest.fixture(scope="module")
def daemon() -> Iterator[RealDaemon]:
    why = _why_not()
    if why:
        pytest.skip(why)
    with private_daemon("rte-", HOST_RESOURCES, IMAGES) as d:
        yield d


@pytest.fixture(scope="module")
def client(daemon: RealDaemon) -> Iterator[Client]:
    with cleaning_client(daemon.socket, timeout=300) as c:
        yield c


@pytest.fixture(scope="module")
def sid(client: Client) -> str:
    spec = {"image": "lab-base", "services": ["docker"], "memory": 1024 * 2**20, "pids": 1024}
    return str(client.create_sandbox(spec)["id"])


def sh(client: Client, sid: str, script: str, timeout: float = 300) -> tuple[int, str]:
    r = client.exec(sid, ["/bin/bash", "-c", script], timeout=timeout)
    assert not r.timed_out, f"{script!r} timed out: {r.stdout_text}{r.stderr_text}"
    return r.exit_code or 0, r.stdout_text + r.stderr_text


# -- what runtimed runs ------------------------------------------------------------------------


def children(pid: int) -> list[int]:
    out = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(entry.name))
    return out


def cgroups_of(pid: int) -> dict[str, str] | None:
    """controller -> path (v1 lines by controller name, "" for the unified one); None if gone."""
    try:
        text = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return None
    out = {}
    for line in text.splitlines():
        _n, ctl, path = line.split(":", 2)
        for name in ctl.split(",") if ctl else [""]:
            out[name] = path
    return out


def describe(pid: int) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        cmd = "?"
    return f"{pid} {cmd[:120]!r} {cgroups_of(pid)}"


PF_EXITING = 0x4


def is_exiting(pid: int) -> bool:
    """Exiting or exited (not reaped yet): it runs nothing any more, and once past
    ``cgroup_exit`` the kernel shows it in the root of every v1 hierarchy."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return True  # gone
    return fields[0] in ("Z", "X") or bool(int(fields[6]) & PF_EXITING)


def is_joining_wrapper(pid: int) -> bool:
    """kl-cgexec between its start and its write to cgroup.procs: it runs nothing else yet."""
    try:
        return os.readlink(f"/proc/{pid}/exe") == str(WRAPPER_BUILT)
    except OSError:
        return False


def is_unexeced_fork(pid: int, runtimed: int) -> bool:
    """A child of runtimed between fork() and exec(): still runtimed's image, running nothing
    of its own (its exec is the wrapper's, which joins before anything else runs)."""
    try:
        same_exe = os.readlink(f"/proc/{pid}/exe") == os.readlink(f"/proc/{runtimed}/exe")
        same_cmd = Path(f"/proc/{pid}/cmdline").read_bytes() == Path(f"/proc/{runtimed}/cmdline").read_bytes()
    except OSError:
        return False
    return same_exe and same_cmd


def inside(cg: dict[str, str], sid: str) -> bool:
    """In the sandbox's cgroup (or below it) in every hierarchy that limits it."""
    want = f"/{CGROUP_PARENT}/{sid}"
    limiting = [k for k in ("pids", "memory", "") if k in cg]
    return bool(limiting) and all(cg[k] == want or cg[k].startswith(want + "/") for k in limiting)


def outsiders(runtimed: int, sid: str, baseline: set[int]) -> tuple[list[str], int]:
    """Children of runtimed started since ``baseline`` that are outside the sandbox's
    cgroup, and how many engine helpers (in ``.engine``) were seen inside it."""
    bad, helpers = [], 0
    for pid in children(runtimed):
        if pid in baseline:
            continue
        # What the process runs is read before where it is: the wrapper joins every hierarchy
        # before it execs the helper, so a helper seen running (not the wrapper, not a fork of
        # runtimed that has not exec'd yet) must already be inside when its cgroups are read.
        starting = is_joining_wrapper(pid) or is_unexeced_fork(pid, runtimed)
        cg = cgroups_of(pid)
        if cg is None or is_exiting(pid):
            continue  # ended meanwhile
        if inside(cg, sid):
            helpers += "/.engine" in cg.get("pids", cg.get("", ""))
        elif not starting:
            bad.append(describe(pid))
    return bad, helpers


def threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads line")


def host_engine(client: Client, sid: str) -> Any:
    """The docker SDK on the host's side of the sandbox's engine, as a grader holds it."""
    import docker

    engine = docker.DockerClient(base_url="unix://" + client.docker_socket(sid), timeout=60)
    engine.api.headers["Authorization"] = "Bearer " + client.mint_token(sid, role="grader", ttl=600)
    return engine


# -- the attacks -------------------------------------------------------------------------------


def test_a_run_flood_keeps_runtimed_helpers_in_the_sandbox_cgroup_and_threads_flat(
    daemon: RealDaemon, client: Client, sid: str
) -> None:
    assert daemon.proc is not None
    runtimed = daemon.proc.pid
    # warm up: the engine's own threads and the default executor exist before the baseline
    code, out = sh(client, sid, "docker run -d --name warm busybox:1.35 sleep 600 && docker ps -q | wc -l")
    assert code == 0, out
    baseline = set(children(runtimed))
    threads_before = threads(runtimed)

    result: dict[str, Any] = {}

    def flood() -> None:
        result["r"] = sh(
            client,
            sid,
            f"seq {RUNNING} | xargs -P 6 -I{{}} docker run -d --name flood{{}} busybox:1.35 sleep 600 >/dev/null; "
            "docker ps -q | wc -l",
            timeout=600,
        )

    t = threading.Thread(target=flood, name="flood")
    t.start()
    seen_bad: list[str] = []
    helpers_seen = 0
    while t.is_alive():
        bad, helpers = outsiders(runtimed, sid, baseline)
        seen_bad += bad
        helpers_seen += helpers
        t.join(0.05)
    code, out = result["r"]
    assert code == 0, out
    assert int(out.split()[-1]) == RUNNING + 1, out
    assert not seen_bad, "runtimed ran these for the sandbox outside its cgroup:\n" + "\n".join(seen_bad[:20])
    assert helpers_seen > 0, "no engine helper was ever seen: the flood ran no helper?"

    # afterwards: each running container's output holder is in the sandbox's .engine cgroup
    bad, helpers = outsiders(runtimed, sid, baseline)
    assert not bad, "\n".join(bad)
    assert helpers >= RUNNING, f"{helpers} engine helpers in the sandbox's cgroup for {RUNNING} containers"
    grown = threads(runtimed) - threads_before
    assert grown < RUNNING // 2, f"runtimed grew by {grown} threads for {RUNNING} more running containers"


def test_a_create_flood_stops_at_the_container_quota_with_dockers_error(client: Client, sid: str) -> None:
    script = (
        f"n=0; while [ $n -lt {LIMITS.containers + 10} ]; do "
        "docker create busybox:1.35 true >/dev/null 2>/tmp/err || break; n=$((n+1)); done; "
        "echo; echo total=$(docker ps -aq | wc -l); cat /tmp/err"
    )
    code, out = sh(client, sid, script, timeout=600)
    assert code == 0, out
    assert f"total={LIMITS.containers}" in out, out
    assert f"Error response from daemon: this lab's Docker engine keeps at most {LIMITS.containers} containers" in out
    assert "docker rm" in out

    import docker

    engine = host_engine(client, sid)
    try:
        with pytest.raises(docker.errors.APIError) as exc:
            engine.containers.create("busybox:1.35", ["true"])
        assert exc.value.status_code == 403
        assert f"at most {LIMITS.containers} containers" in str(exc.value.explanation)
        assert len(engine.containers.list(all=True)) == LIMITS.containers
    finally:
        engine.close()
    # removing one makes room again: a quota, not a broken engine
    code, out = sh(
        client, sid, "docker rm $(docker ps -aq -f status=created | head -1) && docker create busybox:1.35 true"
    )
    assert code == 0, out


def test_networks_volumes_and_tags_stop_at_their_quotas(client: Client, sid: str) -> None:
    import docker

    engine = host_engine(client, sid)
    try:
        made = 0
        with pytest.raises(docker.errors.APIError) as exc:
            for i in range(LIMITS.networks + 1):
                engine.networks.create(f"net{i}")
                made += 1
        assert (made, exc.value.status_code) == (LIMITS.networks, 403)
        assert f"at most {LIMITS.networks} networks" in str(exc.value.explanation)

        made = 0
        with pytest.raises(docker.errors.APIError) as exc:
            for i in range(LIMITS.volumes + 1):
                engine.volumes.create(f"vol{i}")
                made += 1
        assert (made, exc.value.status_code) == (LIMITS.volumes, 403)
        assert f"at most {LIMITS.volumes} volumes" in str(exc.value.explanation)

        image = engine.images.get("busybox:1.35")
        made = 0
        with pytest.raises(docker.errors.APIError) as exc:
            for i in range(LIMITS.images + 1):
                image.tag("flood", f"t{i}")
                made += 1
        assert exc.value.status_code == 403 and 0 < made <= LIMITS.images
        assert f"at most {LIMITS.images} image tags" in str(exc.value.explanation)
    finally:
        engine.close()
