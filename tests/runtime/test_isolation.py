"""The isolation battery: each test is one attack from inside a sandbox while a classmate's
sandbox runs beside it. After every attack the host and the classmate must be unharmed and
responsive (checked by the ``attacker`` fixture's teardown)."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from runtime import errors
from runtime.sandbox.bundle import seccomp_profile
from runtime.sandbox.cgroups import is_v2
from runtime.sandbox.manager import SandboxManager
from runtime.sandbox.spec import SandboxSpec
from tests.runtime.sandbox_helpers import destroy_manager, make_manager, run_in

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="sandboxes need root"),
    pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed"),
]

TAG = random.randrange(120, 240)
SECRET = "classmate-secret-7f3a"
MARKER = "31337"


@dataclass
class Classmate:
    id: str
    ip: str
    marker_pid: int  # host pid of the classmate's `sleep 31337`


def http_get(ip: str, port: int, timeout: float = 5) -> bytes:
    with socket.create_connection((ip, port), timeout=timeout) as s:
        s.sendall(b"GET /index.html HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    return data


@pytest.fixture(scope="module")
def mgr() -> Iterator[SandboxManager]:
    m = make_manager(TAG)
    yield m
    destroy_manager(m)


@pytest.fixture(scope="module")
def classmate(mgr: SandboxManager) -> Iterator[Classmate]:
    info = mgr.create(
        SandboxSpec(
            files={"secret.txt": SECRET + "\n", "www/index.html": "classmate page\n"},
            setup=f"httpd -p 8080 -h /root/www; sleep {MARKER} >/dev/null 2>&1 &",
        )
    )
    assert info.ip is not None
    pid = None
    for _ in range(100):
        for p in Path("/proc").iterdir():
            if p.name.isdigit():
                with contextlib.suppress(OSError):
                    if (p / "cmdline").read_bytes() == f"sleep\0{MARKER}\0".encode() and (
                        info.id in (p / "cgroup").read_text()
                    ):
                        pid = int(p.name)
        if pid:
            break
        time.sleep(0.05)
    assert pid is not None
    yield Classmate(info.id, info.ip, pid)
    mgr.remove(info.id)


def assert_classmate_unharmed(mgr: SandboxManager, cm: Classmate) -> None:
    rc, out, _ = run_in(mgr, cm.id, "cat /root/secret.txt", timeout=30)
    assert (rc, out) == (0, SECRET + "\n")
    assert Path(f"/proc/{cm.marker_pid}").exists(), "classmate's process was killed"
    assert b"classmate page" in http_get(cm.ip, 8080)
    assert mgr.get(cm.id).status == "running"


@pytest.fixture
def attacker(mgr: SandboxManager, classmate: Classmate) -> Iterator[str]:
    info = mgr.create(SandboxSpec(memory=64 * 2**20, pids=64, disk=32 * 2**20))
    yield info.id
    assert_classmate_unharmed(mgr, classmate)
    mgr.remove(info.id)
    assert subprocess.run(["true"], timeout=10).returncode == 0  # the host still forks


# resources ----------------------------------------------------------------------------------------


def test_fork_bomb_stays_inside_its_pids_cap(mgr: SandboxManager, attacker: str) -> None:
    sp = mgr.spawn(attacker, ["/bin/sh", "-c", "b() { b | b & }; b; sleep 3"], tty=False)
    with contextlib.suppress(subprocess.TimeoutExpired):
        sp.proc.communicate(timeout=10)
    assert mgr.stats(attacker)["pids"] <= 64
    sp.kill_tree()
    assert run_in(mgr, attacker, "echo alive")[1] == "alive\n"


def test_memory_hog_is_killed_inside_its_own_limit(mgr: SandboxManager, attacker: str) -> None:
    rc, _, _ = run_in(mgr, attacker, "dd if=/dev/zero of=/dev/null bs=256M count=1")
    assert rc in (137, -9)
    rc, _, _ = run_in(mgr, attacker, "x=$(head -c 300000000 /dev/zero | tr '\\0' a); echo ${#x}")
    assert rc != 0
    assert mgr.stats(attacker)["memory_bytes"] <= 64 * 2**20


def test_disk_fill_stops_at_its_quota(mgr: SandboxManager, attacker: str) -> None:
    free = shutil.disk_usage(mgr.root).free
    rc, _, err = run_in(mgr, attacker, "dd if=/dev/zero of=/root/fill bs=1M count=200")
    assert rc != 0 and "No space left on device" in err
    rc, _, err = run_in(mgr, attacker, "dd if=/dev/zero of=/tmp/more bs=1M count=10")
    assert "No space left on device" in err
    assert shutil.disk_usage(mgr.root).free > free - 48 * 2**20


def test_inode_exhaustion_stops_at_its_quota(mgr: SandboxManager, attacker: str) -> None:
    _rc, out, err = run_in(
        mgr,
        attacker,
        "mkdir /root/i && cd /root/i && n=0; while echo -n > f$n; do n=$((n+1)); done; echo $n",
        timeout=120,
    )
    assert "No space left on device" in err
    assert 1000 < int(out.split()[-1]) < 100_000
    assert "No space left" in run_in(mgr, attacker, "mkdir /root/one-more")[2]


# kernel interfaces --------------------------------------------------------------------------------


def test_writes_to_proc_sys_sys_and_cgroup_limits_are_refused(mgr: SandboxManager, attacker: str) -> None:
    host_before = {
        p: Path(p).read_text() for p in ("/proc/sys/kernel/randomize_va_space", "/proc/sys/vm/overcommit_memory")
    }
    if is_v2():
        limits = ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/pids.max", "/sys/fs/cgroup/cpu.max"]
    else:
        limits = [
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes",
            "/sys/fs/cgroup/pids/pids.max",
            "/sys/fs/cgroup/cpu/cpu.cfs_quota_us",
        ]
    writes = [
        ("0", "/proc/sys/kernel/randomize_va_space"),
        ("1", "/proc/sys/vm/overcommit_memory"),
        ("3", "/proc/sys/vm/drop_caches"),
        ("c", "/proc/sysrq-trigger"),
        ("1", "/sys/kernel/mm/ksm/run"),
        ("x", "/sys/class/net/eth0/ifalias"),
        *(("max" if is_v2() else "-1", p) for p in limits),
    ]
    script = "".join(f"echo {v} > {p} 2>/dev/null && echo WROTE {p};" for v, p in writes)
    # Remounting its own /proc/sys read-write is allowed; the files stay the host's.
    script += "mount -o remount,rw /proc/sys 2>/dev/null; "
    script += "echo 0 > /proc/sys/kernel/randomize_va_space 2>/dev/null && echo WROTE aslr;"
    script += "mkdir -p /tmp/cg && mount -t cgroup -o memory cg /tmp/cg 2>/dev/null;"
    script += "echo /tmp/x > /tmp/cg/release_agent 2>/dev/null && echo WROTE release_agent;"
    _rc, out, _err = run_in(mgr, attacker, script)
    assert "WROTE" not in out, out
    for p, v in host_before.items():
        assert Path(p).read_text() == v
    stats = mgr.stats(attacker)
    assert stats["memory_limit"] == 64 * 2**20 and stats["pids_limit"] == 64


def test_mount_umount_and_pivot_root_cannot_reach_the_host(mgr: SandboxManager, attacker: str) -> None:
    def host_mounts() -> list[str]:
        return [
            ln.split()[4]
            for ln in Path("/proc/self/mountinfo").read_text().splitlines()
            if attacker in ln or ln.split()[4] in ("/mnt", "/tmp/escape")
        ]

    before = host_mounts()
    _rc, out, _err = run_in(
        mgr,
        attacker,
        "mkdir -p /mnt/t /tmp/escape;"
        "mount -t tmpfs t /mnt/t && echo own-mount-ok;"  # its own mount namespace: fine
        "mount /dev/vda /tmp/escape 2>/dev/null && echo MOUNTED-HOST-DISK;"
        "mount -t ext4 /dev/loop0 /tmp/escape 2>/dev/null && echo MOUNTED-LOOP;"
        "umount /proc/kcore 2>/dev/null; cat /proc/kcore 2>/dev/null | head -c 1 | wc -c;"
        "cd /mnt/t && mkdir old && pivot_root . old 2>/dev/null && echo PIVOTED;"
        "umount -l / 2>/dev/null; ls /bin/busybox >/dev/null && echo still-own-root",
    )
    assert "own-mount-ok" in out and "still-own-root" in out
    for bad in ("MOUNTED-HOST-DISK", "MOUNTED-LOOP", "PIVOTED"):
        assert bad not in out
    assert out.split("\n")[1].strip() == "0"  # no byte of /proc/kcore
    assert host_mounts() == before


def test_mknod_of_a_block_device_is_refused(mgr: SandboxManager, attacker: str) -> None:
    _rc, out, _err = run_in(
        mgr,
        attacker,
        "mknod /tmp/vda b 253 0 && echo MADE-BLOCK; mknod /tmp/mem c 1 1 && echo MADE-MEM;ls /dev",
    )
    assert "MADE" not in out
    devs = set(out.split())
    assert not devs & {"vda", "sda", "mem", "kmsg", "loop0", "loop-control"}


def test_kernel_keyring_is_unreachable(mgr: SandboxManager, attacker: str) -> None:
    # busybox has no keyctl; the profile's allow-list (what runc loads) is the proof, and the
    # masked /proc/keys shows nothing of the host's keys.
    allowed = {n for rule in seccomp_profile()["syscalls"] for n in rule["names"] if rule["action"] == "SCMP_ACT_ALLOW"}
    assert not allowed & {
        "keyctl",
        "add_key",
        "request_key",
        "kexec_load",
        "bpf",
        "init_module",
        "pivot_root",
        "perf_event_open",
        "open_by_handle_at",
        "swapon",
    }
    _rc, out, _ = run_in(
        mgr,
        attacker,
        "cat /proc/keys 2>/dev/null | wc -c;grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status",
    )
    lines = out.split("\n")
    assert lines[0].strip() == "0"
    assert "Seccomp:\t2" in out and "NoNewPrivs:\t1" in out


# the network --------------------------------------------------------------------------------------


class Listener:
    """A TCP listener on the host that records whether anyone connected."""

    def __init__(self, host: str) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop = True
        self._t.join(timeout=5)
        self.sock.close()


def test_host_services_are_unreachable(mgr: SandboxManager, attacker: str) -> None:
    gw = mgr.net.gateway
    loopback = Listener("127.0.0.1")  # where Redis and runtimed's peers listen
    bridge = Listener(gw)  # the web port bound to the bridge address
    anyaddr = Listener("0.0.0.0")  # anything bound to all host addresses
    try:
        probes = [("127.0.0.1", loopback.port), (gw, bridge.port), (gw, anyaddr.port)]
        script = "".join(f"echo x | nc -w 2 {h} {p} && echo REACHED {h}:{p};" for h, p in probes)
        _rc, out, _ = run_in(mgr, attacker, script)
        assert "REACHED" not in out
        time.sleep(0.3)
        assert (loopback.accepted, bridge.accepted, anyaddr.accepted) == (0, 0, 0)
        # the host itself still reaches its own services
        socket.create_connection((gw, bridge.port), timeout=2).close()
    finally:
        for lst in (loopback, bridge, anyaddr):
            lst.close()


def test_runtimed_socket_is_unreachable(mgr: SandboxManager, attacker: str) -> None:
    path = mgr.root / "runtimed.sock"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    abstract.bind(f"\0kubelab-runtimed-{TAG}")
    try:
        srv.listen(1)
        abstract.listen(1)
        _rc, out, _ = run_in(
            mgr,
            attacker,
            f"test -e {path} && echo SEES-SOCKET; find / -xdev -name runtimed.sock 2>/dev/null;"
            f"grep -c kubelab-runtimed /proc/net/unix",
        )
        assert out.split() == ["0"]
    finally:
        srv.close()
        abstract.close()
        path.unlink()


def test_classmate_ip_is_unreachable_even_when_spoofing(
    mgr: SandboxManager, attacker: str, classmate: Classmate
) -> None:
    ip = classmate.ip
    _rc, out, _ = run_in(
        mgr,
        attacker,
        f"echo x | nc -w 2 {ip} 8080 && echo REACHED-HTTP;"
        f"ping -c 1 -W 1 {ip} >/dev/null && echo REACHED-PING;"
        # take over the classmate's address and shout about it
        f"mkdir -p /tmp/www && echo attacker page > /tmp/www/index.html;"
        f"httpd -p 8080 -h /tmp/www;"
        f"ip addr flush dev eth0; ip addr add {ip}/24 dev eth0;"
        f"arping -U -c 2 -I eth0 -s {ip} {mgr.net.gateway} >/dev/null 2>&1;"
        f"ip link set eth0 address 02:6b:00:00:00:01 2>/dev/null;"
        f"arping -U -c 2 -I eth0 -s {ip} {mgr.net.gateway} >/dev/null 2>&1; echo done",
    )
    assert "REACHED" not in out and "done" in out
    page = http_get(ip, 8080)
    assert b"classmate page" in page and b"attacker" not in page


def test_classmate_is_unreachable_through_the_gateway_even_with_allow_outbound(
    mgr: SandboxManager, classmate: Classmate
) -> None:
    info = mgr.create(SandboxSpec(allow_outbound=(str(mgr.net.subnet), "0.0.0.0/1")))
    try:
        ip, gw = classmate.ip, mgr.net.gateway
        _rc, out, _ = run_in(
            mgr,
            info.id,
            f"ip route replace {ip}/32 via {gw} dev eth0;"
            f"echo x | nc -w 2 {ip} 8080 && echo REACHED-HTTP;"
            f"echo x | nc -w 2 {gw} 22 && echo REACHED-HOST; echo done",
        )
        assert "REACHED" not in out and "done" in out
    finally:
        mgr.remove(info.id)
    assert_classmate_unharmed(mgr, classmate)


def test_classmate_processes_cannot_be_seen_killed_or_traced(
    mgr: SandboxManager, attacker: str, classmate: Classmate
) -> None:
    pid = classmate.marker_pid
    _rc, out, _ = run_in(
        mgr,
        attacker,
        f"ps -o args | grep -c '[s]leep {MARKER}';"
        f"kill -9 {pid} 2>/dev/null && echo KILLED;"
        f"test -e /proc/{pid}/mem && echo SEES-PROC; kill -9 -1 2>/dev/null; echo done",
    )
    assert out.split()[0] == "0"
    assert "KILLED" not in out and "SEES-PROC" not in out
    assert Path(f"/proc/{pid}").exists()


def test_classmate_files_are_invisible(mgr: SandboxManager, attacker: str, classmate: Classmate) -> None:
    _rc, out, _ = run_in(
        mgr,
        attacker,
        f"grep -rl {SECRET} / 2>/dev/null | grep -v -e ^/proc -e ^/sys; find / -xdev -name secret.txt; echo end",
    )
    assert out.split() == ["end"]


# the host writing into the workspace ----------------------------------------------------------


def test_symlink_planted_in_workspace_is_not_followed_by_the_host(mgr: SandboxManager, attacker: str) -> None:
    victim_dir = Path(f"/tmp/kltvictim{TAG}")
    victim_dir.mkdir(exist_ok=True)
    victim = victim_dir / "shadow"
    victim.write_text("host secret\n")
    try:
        rc, _, _ = run_in(
            mgr,
            attacker,
            f"ln -s {victim} /root/notes.txt && ln -s {victim_dir} /root/labdir && echo ok",
        )
        assert rc == 0
        mgr.write_file(attacker, "notes.txt", "lab notes\n")
        with contextlib.suppress(errors.RuntimeError):
            mgr.write_file(attacker, "labdir/shadow", "lab file\n")
        assert victim.read_text() == "host secret\n"
        assert sorted(os.listdir(victim_dir)) == ["shadow"]
        rc, out, _ = run_in(mgr, attacker, "test -L /root/notes.txt || cat /root/notes.txt")
        assert out == "lab notes\n"
        st = mgr.stats(attacker)  # host-side reads of the sandbox do not follow it either
        assert st["disk_limit"] == 32 * 2**20
        mgr.stop(attacker)
        assert victim.read_text() == "host secret\n"
    finally:
        shutil.rmtree(victim_dir)


def test_state_files_are_not_reachable_from_inside(mgr: SandboxManager, attacker: str) -> None:
    state = json.loads((mgr.root / "sandboxes" / attacker / "state.json").read_text())
    _rc, out, _ = run_in(mgr, attacker, "find / -xdev -name state.json -o -name config.json; echo end")
    assert out.split() == ["end"]
    assert state["status"] == "running"


def test_exec_agent_can_be_neither_inspected_nor_hijacked(mgr: SandboxManager, attacker: str) -> None:
    """The resident exec agent (runtime/sandbox/fastexec.py) runs in the sandbox as its root:
    root inside must not read its memory, fds or binary, find a socket or file to talk to or
    replace, nor make the next exec run elsewhere than a fresh process of the sandbox."""
    run_in(mgr, attacker, "true")
    agent = mgr.agents.pid(attacker)
    if agent is None:
        pytest.skip("exec agent not built (runtime/sandbox/agent/build.sh)")
    _rc, out, _ = run_in(
        mgr,
        attacker,
        "a=$(ps -o pid,args | awk '/\\[kl-exec-agent\\]/ && !/awk/ {print $1}');"
        "for f in fd/0 fd/1 fd/3 exe mem environ maps; do cat /proc/$a/$f >/dev/null 2>&1 && echo LEAK-$f; done;"
        "find / -xdev \\( -name '*kl-exec*' -o -type s \\) 2>/dev/null | grep -v ^/proc;"
        "kill -STOP $a; kill -9 $a; echo done",
    )
    assert out.split() == ["done"]
    probe = "grep -E '^(Cap|NoNewPrivs|Seccomp)' /proc/self/status; readlink /proc/self/ns/pid"
    got = run_in(mgr, attacker, probe)  # through a new agent
    assert mgr.agents.pid(attacker) not in (None, agent)
    mgr.fast_exec = False
    try:
        assert got == run_in(mgr, attacker, probe)  # what runc exec gives
    finally:
        mgr.fast_exec = True
    assert "NoNewPrivs:\t1" in got[1]
