"""The fast exec path (runtime/sandbox/fastexec.py): a resident agent per sandbox.

Every test runs against real runc sandboxes. The agent's children must be
indistinguishable from ``runc exec`` processes (namespaces, capabilities,
no_new_privs, seccomp, cgroups, ids) and the agent must give a student nothing.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import random
import re
import select
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime import errors
from runtime.sandbox import fastexec
from runtime.sandbox.manager import SandboxManager
from runtime.sandbox.spec import SandboxSpec
from tests.runtime.sandbox_helpers import destroy_manager, make_manager, run_in

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="sandboxes need root"),
    pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed"),
    pytest.mark.skipif(not fastexec.AGENT_BUILT.is_file(), reason="run runtime/sandbox/agent/build.sh first"),
]

TAG = random.randrange(240, 250)
SECURITY_LINES = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp", "Seccomp_filters")
ID_LINES = ("Uid", "Gid", "Groups", "PPid", "SigIgn", "SigBlk")
# What a process reports about itself: ids, security state, namespaces, cgroups, oom score.
SELF_REPORT = (
    "grep -E '^(Cap|NoNewPrivs|Seccomp|Uid|Gid|Groups|Sig(Ign|Blk))' /proc/self/status; umask;"
    "for n in user pid mnt net uts ipc cgroup; do echo $n $(readlink /proc/self/ns/$n); done;"
    "cat /proc/self/cgroup /proc/self/oom_score_adj; id"
)


@pytest.fixture(scope="module")
def mgr() -> Iterator[SandboxManager]:
    m = make_manager(TAG)
    yield m
    destroy_manager(m)


@pytest.fixture
def sandbox(mgr: SandboxManager) -> Iterator[str]:
    info = mgr.create(SandboxSpec(env={"LAB": "fast"}))
    yield info.id
    mgr.fast_exec = True
    with contextlib.suppress(errors.SandboxNotFound):
        mgr.remove(info.id)


@contextlib.contextmanager
def runc_exec_only(mgr: SandboxManager) -> Iterator[None]:
    mgr.fast_exec = False
    try:
        yield
    finally:
        mgr.fast_exec = True


def read_pty(fd: int, until: bytes, timeout: float = 10) -> bytes:
    buf = b""
    deadline = time.monotonic() + timeout
    while until not in buf and time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
    return buf


def status_lines(pid: int, keys: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in keys:
            out[k] = v.strip()
    return out


def normalise(report: str) -> str:
    return re.sub(r"\.exec-\d+", ".exec-N", report)


# the path itself -----------------------------------------------------------------------------


def test_spawn_goes_through_the_agent(mgr: SandboxManager, sandbox: str) -> None:
    rc, out, _ = run_in(mgr, sandbox, "ps -o pid,args")
    assert rc == 0
    agent = mgr.agents.pid(sandbox)
    assert agent is not None and Path(f"/proc/{agent}").exists()
    assert "[kl-exec-agent]" in out
    sp = mgr.spawn(sandbox, ["sleep", "5"], tty=False)
    try:
        # the process is ours (CLONE_PARENT), not the agent's: waitpid gives its own status
        assert status_lines(sp.proc.pid, ("PPid",))["PPid"] == str(os.getpid())
        assert mgr.agents.pid(sandbox) == agent  # one agent serves every exec
    finally:
        sp.kill_tree()


def test_exit_codes(mgr: SandboxManager, sandbox: str) -> None:
    for code in (0, 1, 7, 255):
        assert run_in(mgr, sandbox, f"exit {code}")[0] == code
    sp = mgr.spawn(sandbox, ["/bin/sh", "-c", "kill -TERM $$"], tty=False)
    sp.proc.communicate(timeout=30)
    assert sp.proc.returncode == -signal.SIGTERM


def test_stdout_stderr_and_stdin(mgr: SandboxManager, sandbox: str) -> None:
    data = os.urandom(300_000).hex().encode()  # larger than a pipe buffer
    sp = mgr.spawn(sandbox, ["/bin/sh", "-c", "cat; echo to-err >&2; echo to-out"], tty=False)
    out, err = sp.proc.communicate(data, timeout=30)
    assert (sp.proc.returncode, out, err) == (0, data + b"to-out\n", b"to-err\n")


def test_env_cwd_and_path_lookup(mgr: SandboxManager, sandbox: str) -> None:
    sp = mgr.spawn(sandbox, ["sh", "-c", "echo $LAB $A $HOME; pwd"], tty=False, env={"A": "b"}, cwd="/tmp")
    out, _ = sp.proc.communicate(timeout=30)
    assert out == b"fast b /root\n/tmp\n"
    sp = mgr.spawn(sandbox, ["env"], tty=False)
    out, _ = sp.proc.communicate(timeout=30)
    with runc_exec_only(mgr):
        ref = mgr.spawn(sandbox, ["env"], tty=False)
        ref_out, _ = ref.proc.communicate(timeout=30)
    assert sorted(out.split(b"\n")) == sorted(ref_out.split(b"\n"))


def test_missing_program_and_cwd_say_so(mgr: SandboxManager, sandbox: str) -> None:
    with pytest.raises(errors.RuntimeError, match="no-such-program"):
        mgr.spawn(sandbox, ["/no-such-program"], tty=False)
    with pytest.raises(errors.RuntimeError, match=r"no-such-command.*not found in \$PATH"):
        mgr.spawn(sandbox, ["no-such-command"], tty=False)
    with pytest.raises(errors.RuntimeError, match="/no/such/dir"):
        mgr.spawn(sandbox, ["true"], tty=False, cwd="/no/such/dir")
    assert mgr.agents.pid(sandbox) is not None  # a failed exec does not cost the agent
    assert run_in(mgr, sandbox, "echo ok")[1] == "ok\n"


def test_tty_size_resize_and_ctrl_c(mgr: SandboxManager, sandbox: str) -> None:
    sp = mgr.spawn(sandbox, ["/bin/sh"], tty=True, rows=30, cols=100)
    assert sp.pty_master is not None and sp.proc.stdin is None
    try:
        os.write(sp.pty_master, b"stty size; tty\n")
        assert b"30 100" in read_pty(sp.pty_master, b"/dev/pts/")
        sp.resize(40, 120)
        os.write(sp.pty_master, b"stty size\n")
        assert b"40 120" in read_pty(sp.pty_master, b"40 120")
        os.write(sp.pty_master, b"sleep 1000\n")
        time.sleep(0.3)
        os.write(sp.pty_master, b"\x03")  # Ctrl-C: SIGINT to the foreground job, not the shell
        os.write(sp.pty_master, b"echo after-$?\n")
        assert b"after-130" in read_pty(sp.pty_master, b"after-130")
        os.write(sp.pty_master, b"exit 3\n")
        assert sp.proc.wait(timeout=10) == 3
    finally:
        os.close(sp.pty_master)


def test_kill_tree_kills_a_process_tree(mgr: SandboxManager, sandbox: str) -> None:
    sp = mgr.spawn(sandbox, ["/bin/sh", "-c", "sleep 1000 & setsid sleep 1001 & (sleep 1002 &); sleep 1003"], tty=False)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        _, ps, _ = run_in(mgr, sandbox, "ps -o args")
        if all(f"sleep {n}" in ps for n in (1000, 1001, 1002, 1003)):
            break
        time.sleep(0.05)
    assert len((sp.cgroup_dir / "cgroup.procs").read_text().split()) >= 4
    sp.kill_tree()
    assert sp.proc.returncode == -9
    _, ps, _ = run_in(mgr, sandbox, "ps -o args")
    assert not any(f"sleep {n}" in ps for n in (1000, 1001, 1002, 1003)), ps
    assert not sp.cgroup_dir.exists()


def test_concurrent_spawns(mgr: SandboxManager, sandbox: str) -> None:
    def one(i: int) -> tuple[int, str, str]:
        return run_in(mgr, sandbox, f"echo out-{i}; echo err-{i} >&2; exit {i % 5}")

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(24)))
    assert results == [(i % 5, f"out-{i}\n", f"err-{i}\n") for i in range(24)]


def test_a_request_too_large_for_the_agent_goes_through_runc(mgr: SandboxManager, sandbox: str) -> None:
    args = ["x" * 10_000] * (fastexec.MAX_REQUEST // 10_000 + 1)
    sp = mgr.spawn(sandbox, ["/bin/sh", "-c", 'echo $# "${#1}"', "sh", *args], tty=False)
    out, _ = sp.proc.communicate(timeout=30)
    assert (sp.proc.returncode, out) == (0, f"{len(args)} 10000\n".encode())
    assert mgr.agents.pid(sandbox) is not None  # the agent is fine and serves the next one
    assert run_in(mgr, sandbox, "echo small") == (0, "small\n", "")


# the same security state as runc exec ---------------------------------------------------------


def test_self_reported_state_equals_runc_exec(mgr: SandboxManager, sandbox: str) -> None:
    rc, fast, err = run_in(mgr, sandbox, SELF_REPORT)
    assert (rc, err) == (0, "")
    with runc_exec_only(mgr):
        rc, ref, err = run_in(mgr, sandbox, SELF_REPORT)
    assert (rc, err) == (0, "")
    assert normalise(fast) == normalise(ref)
    assert "NoNewPrivs:\t1" in fast and "Seccomp:\t2" in fast and "/.exec-" in fast


def test_host_view_of_security_state_and_cgroups_equals_runc_exec(mgr: SandboxManager, sandbox: str) -> None:
    fast = mgr.spawn(sandbox, ["sleep", "100"], tty=False)
    with runc_exec_only(mgr):
        ref = mgr.spawn(sandbox, ["sleep", "100"], tty=False)
    try:
        keys = SECURITY_LINES + ID_LINES
        assert status_lines(fast.proc.pid, keys) == status_lines(ref.proc.pid, keys)
        for ns in ("user", "pid", "mnt", "net", "uts", "ipc", "cgroup"):
            assert os.readlink(f"/proc/{fast.proc.pid}/ns/{ns}") == os.readlink(f"/proc/{ref.proc.pid}/ns/{ns}")
        # the host cgroup path: the sandbox's, with the exec's own sub-cgroup for kill_tree
        fast_cg = Path(f"/proc/{fast.proc.pid}/cgroup").read_text()
        ref_cg = Path(f"/proc/{ref.proc.pid}/cgroup").read_text()
        assert normalise(fast_cg) == normalise(ref_cg)
        assert str(fast.proc.pid) in (fast.cgroup_dir / "cgroup.procs").read_text().split()
        assert Path(f"/proc/{fast.proc.pid}/oom_score_adj").read_text() == "500\n"
    finally:
        fast.kill_tree()
        ref.kill_tree()


def test_seccomp_and_capabilities_behave_as_under_runc_exec(mgr: SandboxManager, sandbox: str) -> None:
    script = (
        "mkdir -p /tmp/p/old; pivot_root /tmp/p /tmp/p/old 2>&1 | grep -o 'Operation not permitted';"
        "mknod /tmp/blk b 8 0 2>&1 | grep -o 'Operation not permitted';"
        "unshare --uts sh -c 'hostname inner && hostname'; echo rc=$?"
    )
    fast = run_in(mgr, sandbox, script)
    with runc_exec_only(mgr):
        ref = run_in(mgr, sandbox, script)
    assert fast == ref
    assert "inner" in fast[1]


# a student cannot use the agent -----------------------------------------------------------------


def test_agent_cannot_be_inspected_or_reached_from_inside(mgr: SandboxManager, sandbox: str) -> None:
    run_in(mgr, sandbox, "true")
    script = (
        "a=$(ps -o pid,args | awk '/\\[kl-exec-agent\\]/ && !/awk/ {print $1}'); echo agent=$a;"
        "ls /proc/$a/fd >/dev/null 2>&1 && echo FDS-VISIBLE;"
        "cat /proc/$a/exe >/dev/null 2>&1 && echo EXE-READABLE;"
        "cat /proc/$a/environ >/dev/null 2>&1 && echo ENVIRON-READABLE;"
        "cat /proc/$a/mem >/dev/null 2>&1 && echo MEM-READABLE;"
        "ls /proc/$$/fd >/dev/null && echo own-fds-ok;"
        "find / -xdev \\( -name '*kl-exec*' -o -type s \\) 2>/dev/null; grep -c kl /proc/net/unix; echo end"
    )
    _rc, out, _ = run_in(mgr, sandbox, script)
    assert re.search(r"agent=\d+", out), out
    for leak in ("FDS-VISIBLE", "EXE-READABLE", "ENVIRON-READABLE", "MEM-READABLE"):
        assert leak not in out
    assert "own-fds-ok" in out  # the same probe works on an ordinary process
    assert out.split()[-2:] == ["0", "end"]  # no agent file, no socket, no named unix socket


def test_killing_the_agent_from_inside_only_restarts_it(mgr: SandboxManager, sandbox: str) -> None:
    run_in(mgr, sandbox, "true")
    first = mgr.agents.pid(sandbox)
    assert first is not None
    rc, _, _ = run_in(mgr, sandbox, "kill -9 $(ps -o pid,args | awk '/\\[kl-exec-agent\\]/ {print $1}')")
    assert rc == 0
    assert run_in(mgr, sandbox, "echo again") == (0, "again\n", "")
    second = mgr.agents.pid(sandbox)
    assert second is not None and second != first
    assert not Path(f"/proc/{first}").exists()  # reaped, not a zombie


def test_a_stopped_agent_falls_back_to_runc_exec(mgr: SandboxManager, sandbox: str) -> None:
    run_in(mgr, sandbox, "true")
    agent = mgr.agents.pid(sandbox)
    assert agent is not None
    os.kill(agent, signal.SIGSTOP)  # what a student can do from inside (same uid)
    assert run_in(mgr, sandbox, "echo served") == (0, "served\n", "")
    assert not Path(f"/proc/{agent}").exists()
    assert run_in(mgr, sandbox, "echo next") == (0, "next\n", "")
    assert mgr.agents.pid(sandbox) not in (None, agent)


# lifecycle -----------------------------------------------------------------------------------------


def test_remove_leaves_nothing_behind(mgr: SandboxManager) -> None:
    info = mgr.create(SandboxSpec())
    sp = mgr.spawn(info.id, ["/bin/sh"], tty=True)
    assert sp.pty_master is not None
    agent = mgr.agents.pid(info.id)
    assert agent is not None
    cg_dirs = mgr.cgroups.dirs(info.id)
    mgr.remove(info.id)
    os.close(sp.pty_master)
    sp.proc.wait(timeout=10)
    assert not Path(f"/proc/{agent}").exists()
    assert not (mgr.root / "sandboxes" / info.id).exists()
    assert not any(d.exists() for d in cg_dirs)
    assert info.id not in Path("/proc/self/mountinfo").read_text()
    assert mgr.agents.pid(info.id) is None


def test_a_restarted_manager_starts_its_own_agent_and_old_processes_live_on(mgr: SandboxManager) -> None:
    """A new manager on the same root re-adopts the sandbox and starts its own agent; the old
    agent exits when the old manager closes, and the processes it started live on."""
    info = mgr.create(SandboxSpec())
    try:
        old_agent_sp = mgr.spawn(info.id, ["sleep", "100"], tty=False)
        old_agent = mgr.agents.pid(info.id)
        assert old_agent is not None
        mgr.agents.drop(info.id)  # what close() does for each sandbox when runtimed stops
        assert not Path(f"/proc/{old_agent}").exists()
        assert old_agent_sp.proc.poll() is None  # its process is still running
        second = SandboxManager(
            mgr.root,
            mgr.images,
            subnet=str(mgr.net.subnet),
            bridge=mgr.net.bridge,
            cgroup_parent=mgr.cgroups.parent,
            uid_start=mgr.uid_start,
        )
        try:
            assert second.reconcile() == []
            assert run_in(second, info.id, "echo readopted") == (0, "readopted\n", "")
            assert second.agents.pid(info.id) not in (None, old_agent)
        finally:
            second.close()
        old_agent_sp.kill_tree()
        assert run_in(mgr, info.id, "echo back") == (0, "back\n", "")
    finally:
        mgr.remove(info.id)


def test_missing_binary_means_runc_exec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fastexec, "AGENT_BUILT", tmp_path / "nope")
    assert fastexec.install_binary(tmp_path) is None


def test_installed_binary_is_executable_but_not_readable_by_others(tmp_path: Path) -> None:
    path = fastexec.install_binary(tmp_path)
    assert path is not None
    st = path.stat()
    assert (st.st_uid, st.st_mode & 0o7777) == (0, 0o711)
    assert fastexec.install_binary(tmp_path) == path  # idempotent


def test_runc_exec_only_still_works(mgr: SandboxManager, sandbox: str) -> None:
    with runc_exec_only(mgr):
        assert run_in(mgr, sandbox, "echo via-runc; exit 4") == (4, "via-runc\n", "")
        assert mgr.agents.pid(sandbox) is None
    with pytest.raises(subprocess.TimeoutExpired):
        run_in(mgr, sandbox, "sleep 5", timeout=0.2)
