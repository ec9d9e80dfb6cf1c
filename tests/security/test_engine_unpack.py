"""A layer a student sends is unpacked in the student's sandbox, not in runtimed (issue #12).

``docker load``, ``docker import`` and ``docker commit`` decompress, hash and unpack tar
streams. That work runs in the engine helper (``_enginehelper.py``, op ``ingest``) placed
in the sandbox's cgroup, so the sandbox's memory, pids and CPU limits bound it. Real
runtimed, real runc, the real docker CLI inside a lab-base sandbox; what is observed is
the host's ``/proc`` and the sandbox's cgroup.

* while a many-file ``docker import`` runs, its unpacking process (the helper whose cwd
  is the layer's scratch dir) is a child of runtimed inside the sandbox's cgroup, and
  nothing runtimed starts for it is outside;
* a decompression bomb (hundreds of MiB of zeros, a few hundred KiB gzipped) costs the
  sandbox's CPU, not runtimed's, and runtimed's threads stay flat;
* an unpack killed as the OOM killer or the pids limit would kill it (SIGKILL) gives a
  clear error, registers nothing, and the next import of the same archive works.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytest

from runtime.client import Client
from tests.runtime.daemon_helpers import RealDaemon
from tests.security.test_engine_exhaustion import (  # the same private daemon and sandbox
    CGROUP_PARENT,
    cgroups_of,
    children,
    client,
    daemon,
    inside,
    is_exiting,
    outsiders,
    sh,
    sid,
    threads,
)

__all__ = ["client", "daemon", "sid"]  # fixtures used by name

pytestmark = [pytest.mark.root, pytest.mark.timeout(900)]

MANY = (
    "rm -rf /tmp/many && mkdir -p /tmp/many && cd /tmp/many && "
    "for d in $(seq 1 20); do mkdir d$d; (cd d$d && seq 1 1500 | sed 's/^/f/' | xargs touch); done && "
    "tar cf /tmp/many.tar -C /tmp/many . && rm -rf /tmp/many && echo built"
)


def ingest_helpers(runtimed: int) -> list[int]:
    """runtimed's children running the engine helper's ``ingest`` op right now: the helper
    with the layer's scratch dir (``scratch-*``) as its cwd."""
    out = []
    for pid in children(runtimed):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if b"runtime.dockerapi._enginehelper" in cmd and "/scratch-" in cwd:
            out.append(pid)
    return out


def cpu_ns(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime + stime
    return ticks * 10**9 // os.sysconf("SC_CLK_TCK")


def sandbox_cpu_ns(sid: str) -> int:
    v1 = Path(f"/sys/fs/cgroup/cpuacct/{CGROUP_PARENT}/{sid}/cpuacct.usage")
    if v1.exists():
        return int(v1.read_text())
    for line in Path(f"/sys/fs/cgroup/{CGROUP_PARENT}/{sid}/cpu.stat").read_text().splitlines():
        k, _, v = line.partition(" ")
        if k == "usage_usec":
            return int(v) * 1000
    raise AssertionError("no cpu usage for the sandbox's cgroup")


def in_background(client: Client, sid: str, script: str) -> tuple[threading.Thread, dict[str, Any]]:
    result: dict[str, Any] = {}

    def run() -> None:
        result["r"] = sh(client, sid, script, timeout=600)

    t = threading.Thread(target=run, name="unpack")
    t.start()
    return t, result


def test_a_loads_unpack_process_is_in_the_sandboxs_cgroup(daemon: RealDaemon, client: Client, sid: str) -> None:
    assert daemon.proc is not None
    runtimed = daemon.proc.pid
    code, out = sh(client, sid, MANY)
    assert code == 0 and "built" in out, out
    baseline = set(children(runtimed))
    t, result = in_background(
        client,
        sid,
        "docker import /tmp/many.tar many:1 && docker save many:1 -o /tmp/m.tar "
        "&& docker rmi many:1 >/dev/null && docker load -i /tmp/m.tar",
    )
    seen: dict[int, dict[str, str]] = {}
    bad: list[str] = []
    while t.is_alive():
        for pid in ingest_helpers(runtimed):
            cg = cgroups_of(pid)
            if cg is not None and not is_exiting(pid):
                seen[pid] = cg
        bad += outsiders(runtimed, sid, baseline)[0]
        t.join(0.02)
    code, out = result["r"]
    assert code == 0, out
    assert "Loaded image: many:1" in out, out
    assert seen, "no unpacking helper was ever seen under runtimed: the layer was unpacked elsewhere"
    for pid, cg in seen.items():
        assert inside(cg, sid), f"unpacking helper {pid} ran outside the sandbox's cgroup: {cg}"
    assert not bad, "runtimed ran these for the sandbox outside its cgroup:\n" + "\n".join(bad[:20])
    # every file arrived (no shell in this rootfs: counted from its export)
    code, out = sh(
        client,
        sid,
        "docker create --name many1 many:1 x >/dev/null && docker export many1 | tar t | "
        "grep -c '/f[0-9]*$'; docker rm many1 >/dev/null",
    )
    assert code == 0 and out.split()[0] == "30000", out


def test_a_decompression_bomb_costs_the_sandbox_not_runtimed(daemon: RealDaemon, client: Client, sid: str) -> None:
    assert daemon.proc is not None
    runtimed = daemon.proc.pid
    code, out = sh(
        client,
        sid,
        "rm -rf /tmp/bomb && mkdir -p /tmp/bomb && head -c 400M /dev/zero > /tmp/bomb/zeros && "
        "tar c -C /tmp/bomb . | gzip -1 > /tmp/bomb.tgz && rm -rf /tmp/bomb && stat -c %s /tmp/bomb.tgz",
    )
    assert code == 0, out
    assert int(out.split()[-1]) < 4 << 20, out  # a bomb: a few hundred KiB for 400 MiB
    threads_before = threads(runtimed)
    runtimed_before, sandbox_before = cpu_ns(runtimed), sandbox_cpu_ns(sid)
    code, out = sh(client, sid, "docker import /tmp/bomb.tgz bomb:1 2>&1; docker rmi bomb:1 >/dev/null 2>&1; true")
    runtimed_used = cpu_ns(runtimed) - runtimed_before
    sandbox_used = sandbox_cpu_ns(sid) - sandbox_before
    # 400 MiB were decompressed, hashed twice and written (or refused at the disk's limit):
    # seconds of CPU, charged to the sandbox; runtimed only copied the gzip stream
    assert sandbox_used > 4 * runtimed_used, (
        f"runtimed used {runtimed_used / 1e9:.2f}s CPU, the sandbox {sandbox_used / 1e9:.2f}s: {out}"
    )
    assert threads(runtimed) - threads_before < 4, "runtimed grew threads for one import"


def test_a_killed_unpack_is_a_clear_error_and_leaves_nothing(daemon: RealDaemon, client: Client, sid: str) -> None:
    assert daemon.proc is not None
    runtimed = daemon.proc.pid
    code, out = sh(client, sid, MANY + " && docker images -q | wc -l")
    assert code == 0, out
    images_before = int(out.split()[-1])
    t, result = in_background(client, sid, "docker import /tmp/many.tar killed:1")
    killed = 0
    while t.is_alive() and not killed:
        for pid in ingest_helpers(runtimed):
            os.kill(pid, signal.SIGKILL)  # what the OOM killer or the pids limit does to it
            killed = pid
            break
        t.join(0.01)
    t.join()
    code, out = result["r"]
    assert killed, f"the import ended before its unpack could be killed: {out}"
    assert code != 0, out
    assert "Error response from daemon" in out and "unpacking the layer was stopped (killed by signal 9)" in out, out
    assert "nothing of it was kept" in out, out
    code, out = sh(client, sid, "docker images -q | wc -l; docker images -q killed:1 | wc -l")
    assert out.split()[-2:] == [str(images_before), "0"], out
    # the store is consistent: the same archive imports now, and prune has nothing half-made
    code, out = sh(client, sid, "docker import /tmp/many.tar killed:1 && docker image prune -f")
    assert code == 0, out
    code, out = sh(client, sid, "docker images -q killed:1 | wc -l")
    assert out.split()[-1] == "1", out


def test_a_commits_tar_and_unpack_run_in_the_sandboxs_cgroup(daemon: RealDaemon, client: Client, sid: str) -> None:
    assert daemon.proc is not None
    runtimed = daemon.proc.pid
    code, out = sh(
        client,
        sid,
        # the other tests' images and archives out of the way: 30000 more files need inodes
        "docker rmi -f many:1 killed:1 >/dev/null 2>&1; rm -f /tmp/many.tar /tmp/m.tar /tmp/bomb.tgz; "
        "docker image prune -f >/dev/null; "
        "docker run -d --name changer busybox:1.35 sh -c 'mkdir /m && cd /m && seq 1 30000 | xargs touch "
        "&& touch /done && sleep 600' >/dev/null && "
        "until docker exec changer test -e /done; do sleep 0.2; done; echo changed",
        timeout=600,
    )
    assert code == 0 and "changed" in out, out
    baseline = set(children(runtimed))
    t, result = in_background(client, sid, "docker commit changer changed:1 && echo committed")
    tar_helpers: dict[int, dict[str, str]] = {}
    unpack_helpers: dict[int, dict[str, str]] = {}
    bad: list[str] = []
    while t.is_alive():
        for pid in children(runtimed):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
                cwd = os.readlink(f"/proc/{pid}/cwd")
            except OSError:
                continue
            cg = cgroups_of(pid)
            if b"runtime.dockerapi._enginehelper" not in cmd or cg is None or is_exiting(pid):
                continue
            if cwd.endswith("/upper"):
                tar_helpers[pid] = cg
            elif "/scratch-" in cwd:
                unpack_helpers[pid] = cg
        bad += outsiders(runtimed, sid, baseline)[0]
        t.join(0.02)
    code, out = result["r"]
    assert code == 0 and "committed" in out, out
    assert tar_helpers, "the commit's tar was never made by a helper: runtimed walked the container itself"
    assert unpack_helpers, "the commit's layer was never unpacked by a helper"
    for pid, cg in {**tar_helpers, **unpack_helpers}.items():
        assert inside(cg, sid), f"helper {pid} ran outside the sandbox's cgroup: {cg}"
    assert not bad, "runtimed ran these for the sandbox outside its cgroup:\n" + "\n".join(bad[:20])
    code, out = sh(client, sid, "docker run --rm changed:1 sh -c 'ls /m | wc -l'; docker rm -f changer >/dev/null")
    assert out.split()[0] == "30000", out
