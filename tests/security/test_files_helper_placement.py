"""The lab editor's file helper (runtime/sandbox/files.py) works for one sandbox only, and
within that sandbox's limits.

* The helper enters the namespaces of the sandbox's init process, named by a pid. Once that
  process has ended the number can name any process, another sandbox's init included; the
  helper must then be refused, never enter the newcomer. Reproduced by handing ``files.run``
  (as runtimed calls it) another sandbox's pid with the recorded start time of the first:
  what a reused pid looks like.
* The helper's CPU, memory and pids count against the sandbox: it runs in the sandbox's
  ``.engine`` cgroup, as every other host helper working for a sandbox (runtime/sandbox/cgexec.py).

Real runtimed, real runc sandboxes; the cgroup is read from the host's cgroupfs.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from runtime import errors
from runtime.client import Client
from runtime.procfs import proc_start
from runtime.sandbox import files
from runtime.sandbox.cgexec import ENGINE_CGROUP, Placement
from runtime.sandbox.cgroups import CGROUP_ROOT, Cgroups
from tests.runtime.conftest_daemon import Env

CGROUP_PARENT = "kubelab-testrd"  # tests/runtime/daemon_helpers.py TEST_HOST_RESOURCES


def sh(env: Env, sid: str, script: str) -> str:
    r = env.client.exec(sid, ["sh", "-c", script], timeout=30)
    assert r.exit_code == 0, r.stderr_text
    return r.stdout_text


def init_pid(env: Env, sid: str) -> int:
    pid = env.client.get_sandbox(sid)["pid"]
    assert isinstance(pid, int) and pid > 0
    return pid


def engine_cpu_ns(sid: str) -> int:
    """CPU time charged so far to the sandbox's ``.engine`` cgroup (0 before it exists)."""
    cg = Cgroups(CGROUP_PARENT)
    rel = cg.path(sid).lstrip("/")
    if cg.v2:
        stat = CGROUP_ROOT / rel / ENGINE_CGROUP / "cpu.stat"
        if not stat.exists():
            return 0
        fields = dict(line.split() for line in stat.read_text().splitlines())
        return int(fields["usage_usec"]) * 1000
    usage = cg.v1["cpuacct"] / rel / ENGINE_CGROUP / "cpuacct.usage"
    return int(usage.read_text()) if usage.exists() else 0


def test_a_pid_that_now_names_another_sandbox_is_refused(runc_env: Env) -> None:
    mine = runc_env.sandbox()
    victim = runc_env.sandbox()
    sh(runc_env, victim, "echo victim-canary > /root/notes.txt")
    my_pid, victim_pid = init_pid(runc_env, mine), init_pid(runc_env, victim)
    my_start = proc_start(my_pid)
    assert my_start is not None
    place = Placement(Cgroups(CGROUP_PARENT).path(mine), cgroups=Cgroups(CGROUP_PARENT))
    # my sandbox's recorded start time, but the number now names the classmate's init
    with pytest.raises(errors.Conflict, match="has ended"):
        files.run(victim_pid, {"op": "read", "path": "notes.txt"}, pid_start=my_start, place=place)
    with pytest.raises(errors.Conflict):
        files.run(
            victim_pid,
            {"op": "write", "path": "notes.txt", "content": "owned\n", "etag": "*"},
            pid_start=my_start,
            place=place,
        )
    assert sh(runc_env, victim, "cat /root/notes.txt") == "victim-canary\n"
    # the same call with the right process works: the refusal above is about the process
    sh(runc_env, mine, "echo mine > /root/notes.txt")
    got = files.run(my_pid, {"op": "read", "path": "notes.txt"}, pid_start=my_start, place=place)
    assert got["content"] == "mine\n"


def test_a_process_that_has_ended_is_refused() -> None:
    child = subprocess.Popen(["sleep", "30"])
    start = proc_start(child.pid)
    assert start is not None
    fds = files.open_sandbox(child.pid, start)
    assert len(fds) == 3
    for fd in fds:
        os.close(fd)
    child.kill()
    child.wait()
    with pytest.raises(errors.Conflict, match="not running"):
        files.open_sandbox(child.pid, start)


def test_the_editors_helper_is_charged_to_the_sandbox(runc_env: Env) -> None:
    sid = runc_env.sandbox()
    sh(runc_env, sid, "echo hello > /root/notes.txt")
    token = runc_env.client.mint_token(sid, role="web", ttl=300)
    before = engine_cpu_ns(sid)
    with Client(runc_env.socket, token=token) as web:
        for _ in range(3):
            assert web.file_read(sid, "notes.txt")["content"] == "hello\n"
        web.file_write(sid, "notes.txt", "changed\n", "*")
        assert any(e["name"] == "notes.txt" for e in web.files_list(sid)["entries"])
    after = engine_cpu_ns(sid)
    # five helpers (a Python start-up each, tens of milliseconds of CPU) ran in the sandbox's cgroup
    assert after - before > 10_000_000, (before, after)
    assert sh(runc_env, sid, "cat /root/notes.txt") == "changed\n"
    assert Path(f"/proc/{init_pid(runc_env, sid)}").exists()
