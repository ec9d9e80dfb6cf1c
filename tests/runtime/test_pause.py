"""Pausing and resuming a sandbox (issue #18, resumable labs): SandboxManager.pause/resume
through runtimed's API, on a real lab-base sandbox with its Docker engine and lab cluster.

What a pause must keep: the sandbox's files, the engine's containers (those that ran are
started again, as ``docker start`` would), the lab cluster's objects (its Deployment's Pods
run again, recreated by the kubelet), each shell's working directory. What it must not
keep: any process in the sandbox's cgroup, the cluster's store in runtimed's memory.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from runtime import errors
from runtime.client import Client
from tests.runtime.daemon_helpers import REPO, RealDaemon, read_until
from tests.runtime.labbox import lab_daemon, run

pytestmark = [pytest.mark.root, pytest.mark.timeout(600)]

RESOURCES = [
    "--subnet",
    "10.239.208.0/20",
    "--bridge",
    "kltestpz",
    "--cgroup-parent",
    "kubelab-testpz",
    "--uid-start",
    str(3_650_000_000),
]

SETUP = """
set -e
mkdir -p /root/project/sub
echo kept-across-pause > /root/project/notes.txt
docker run -d --name web busybox:1.35 sh -c 'echo started >> /tmp/starts; exec sleep 3600'
docker create --name idle busybox:1.35 true
kubectl create deployment hello --image=busybox:1.35 --replicas=2 -- sleep 3600
for i in $(seq 1 120); do
  [ "$(kubectl get deploy hello -o jsonpath='{.status.readyReplicas}')" = 2 ] && exit 0
  sleep 1
done
kubectl get pods -o wide; exit 1
"""


@pytest.fixture(scope="module")
def daemon() -> Iterator[RealDaemon]:
    with lab_daemon("rtp-", RESOURCES) as d:
        yield d


def _wait(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _cgroup_pids(daemon: RealDaemon, sid: str) -> list[int]:
    """Every pid in the sandbox's cgroup tree (v2 or v1 pids hierarchy); [] when it is gone."""
    pids: list[int] = []
    for base in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/pids")):
        d = base / "kubelab-testpz" / sid
        if d.is_dir():
            for procs in d.rglob("cgroup.procs"):
                pids += [int(p) for p in procs.read_text().split()]
    return pids


def _shell_in(c: Client, sid: str, where: str) -> str:
    s = c.create_session(sid, ["/bin/bash", "-i"])
    att = c.attach(sid, s["session_id"])
    att.send(f"cd {where} && echo went-''there\n".encode())
    read_until(att, b"went-there\r\n", timeout=30)
    att.close()
    return str(s["session_id"])


def test_pause_keeps_files_containers_cluster_and_shell_dirs_and_holds_no_memory(daemon: RealDaemon) -> None:
    with Client(daemon.socket, timeout=300) as c:
        box = c.create_sandbox({"image": "lab-base", "services": ["kubernetes"]})
        sid = box["id"]
        try:
            code, out = run(daemon, sid, SETUP, timeout=200)
            assert code == 0, out
            first = _shell_in(c, sid, "/root/project/sub")
            second = _shell_in(c, sid, "/tmp")
            assert _cgroup_pids(daemon, sid)
            assert c.stats(sid)["cluster_loaded"] is True

            paused = c.pause_sandbox(sid)
            assert paused["status"] == "paused"
            assert paused["shells"] == {first: "/root/project/sub", second: "/tmp"}
            assert paused["disk_image_bytes"] > 0

            # nothing runs, nothing of it is loaded: no pid in its cgroup, no cluster store
            assert _cgroup_pids(daemon, sid) == []
            assert c.get_sandbox(sid)["status"] == "paused"
            stats = c.stats(sid)
            assert stats["cluster_loaded"] is False
            assert stats["disk_image_bytes"] == paused["disk_image_bytes"]
            with pytest.raises(errors.Conflict):
                c.exec(sid, ["true"])
            # a grader's request does not load it back either
            with pytest.raises(errors.RuntimeError):
                c.kubeconfig(sid)
            assert c.stats(sid)["cluster_loaded"] is False

            resumed = c.resume_sandbox(sid)
            assert resumed["status"] == "running"

            code, out = run(daemon, sid, "cat /root/project/notes.txt", timeout=30)
            assert (code, out.strip()) == (0, "kept-across-pause")
            # the container that ran was started again (its command ran a second time), the
            # one that never ran was not
            code, out = run(daemon, sid, "docker inspect -f '{{.State.Status}}' web idle", timeout=60)
            assert code == 0 and out.split() == ["running", "created"], out
            code, out = run(daemon, sid, "docker exec web cat /tmp/starts", timeout=60)
            assert (code, out.split()) == (0, ["started", "started"]), out

            def pods_ready() -> bool:
                code, out = run(
                    daemon, sid, "kubectl get deploy hello -o jsonpath='{.status.readyReplicas}'", timeout=30
                )
                return code == 0 and out.strip() == "2"

            _wait(pods_ready, 120, "the Deployment's Pods to run again")
            code, out = run(
                daemon,
                sid,
                "kubectl get pods -l app=hello -o jsonpath='{range .items[*]}{.status.phase} {end}'",
                timeout=30,
            )
            assert out.split() == ["Running", "Running"], out
            assert c.stats(sid)["cluster_loaded"] is True
        finally:
            c.remove_sandbox(sid)


def test_a_paused_sandbox_survives_a_runtimed_restart_and_resumes(daemon: RealDaemon) -> None:
    with Client(daemon.socket, timeout=300) as c:
        sid = c.create_sandbox({"image": "lab-base", "services": ["kubernetes"]})["id"]
    try:
        code, out = run(daemon, sid, "echo still-here > /root/keep && kubectl create configmap cfg", timeout=60)
        assert code == 0, out
        with Client(daemon.socket, timeout=300) as c:
            c.pause_sandbox(sid)
        daemon.stop()
        daemon.start()
        with Client(daemon.socket, timeout=300) as c:
            assert c.get_sandbox(sid)["status"] == "paused"
            assert c.stats(sid)["cluster_loaded"] is False
            assert _cgroup_pids(daemon, sid) == []
            assert c.resume_sandbox(sid)["status"] == "running"
        code, out = run(daemon, sid, "cat /root/keep && kubectl get configmap cfg -o name", timeout=60)
        assert (code, out.split()) == (0, ["still-here", "configmap/cfg"]), out
    finally:
        with Client(daemon.socket, timeout=300) as c:
            c.remove_sandbox(sid)


def test_removing_a_paused_sandbox_deletes_its_disk_and_cluster(daemon: RealDaemon) -> None:
    with Client(daemon.socket, timeout=300) as c:
        sid = c.create_sandbox({"image": "lab-base", "services": ["kubernetes"]})["id"]
        c.pause_sandbox(sid)
        c.remove_sandbox(sid)
        with pytest.raises(errors.SandboxNotFound):
            c.get_sandbox(sid)
    assert not (daemon.root / "sandboxes" / sid).exists()
    assert not list((daemon.root / "kube").rglob(f"*{sid}*"))


def test_a_resume_that_fails_leaves_it_paused_with_its_disk(daemon: RealDaemon) -> None:
    with Client(daemon.socket, timeout=300) as c:
        sid = c.create_sandbox({"image": "busybox"})["id"]
        try:
            assert c.exec(sid, ["sh", "-c", "echo survives > /root/f"]).exit_code == 0
            c.pause_sandbox(sid)
            # break what the resume mounts on (a file where the root's mount point was)
            rootfs = daemon.root / "sandboxes" / sid / "rootfs"
            rootfs.rmdir()
            rootfs.write_text("in the way")
            with pytest.raises(errors.RuntimeError):
                c.resume_sandbox(sid)
            assert c.get_sandbox(sid)["status"] == "paused"
            assert _cgroup_pids(daemon, sid) == []
            rootfs.unlink()
            assert c.resume_sandbox(sid)["status"] == "running"
            assert c.exec(sid, ["cat", "/root/f"]).stdout_text.strip() == "survives"
        finally:
            c.remove_sandbox(sid)


def test_the_cli_pauses_and_resumes(daemon: RealDaemon) -> None:
    with Client(daemon.socket, timeout=300) as c:
        sid = c.create_sandbox({"image": "busybox"})["id"]
    try:
        for verb, status in (("pause", "paused"), ("resume", "running")):
            p = subprocess.run(
                [sys.executable, "-m", "runtime", "--socket", str(daemon.socket), verb, sid],
                capture_output=True,
                timeout=300,
                cwd=REPO,
            )
            assert p.returncode == 0, p.stderr
            with Client(daemon.socket, timeout=60) as c:
                assert c.get_sandbox(sid)["status"] == status
    finally:
        with Client(daemon.socket, timeout=300) as c:
            c.remove_sandbox(sid)


def test_only_a_running_sandbox_pauses_and_only_a_paused_one_resumes(daemon: RealDaemon) -> None:
    with Client(daemon.socket, timeout=300) as c:
        sid = c.create_sandbox({"image": "busybox"})["id"]
        try:
            assert c.resume_sandbox(sid)["status"] == "running"  # already running: nothing to do
            c.stop_sandbox(sid)
            with pytest.raises(errors.Conflict, match="only a running sandbox can be paused"):
                c.pause_sandbox(sid)
        finally:
            c.remove_sandbox(sid)
