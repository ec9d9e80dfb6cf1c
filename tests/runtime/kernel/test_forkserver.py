"""The fork server of runtimed's Python helpers (runtime/kernel/forkserver.py, issue #13).

A helper forked by the server must be exactly what a directly started one was: our child
(so Popen waits for it), in our cgroup and namespaces, with only the descriptors it was
given, its own session when asked; a dead server is replaced; concurrent callers each get
their own child. The test process plays runtimed: a child subreaper while a test runs."""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.kernel import children, forkserver
from runtime.kernel._forkserver import FORKED
from runtime.kube.service import open_listeners_in_netns
from runtime.sandbox.manager import PR_SET_CHILD_SUBREAPER
from tests.runtime.sandbox_helpers import as_subreaper

NAMESPACES = ("mnt", "net", "pid", "user", "ipc", "uts", "cgroup")
MOUNT = "runtime.sandbox._mounthelper"


@pytest.fixture
def subreaper() -> Iterator[forkserver.ForkServer]:
    with as_subreaper():
        yield forkserver.shared()


def mount_helper(start_new_session: bool = False) -> subprocess.Popen[bytes]:
    return forkserver.spawn(
        MOUNT,
        [],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=start_new_session,
    )


def stat_fields(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()


def ask(proc: subprocess.Popen[bytes], op: str) -> tuple[int, dict[str, str]]:
    """Send the mount helper a request it refuses (nothing is mounted) and read its answer."""
    out, _err = proc.communicate(json.dumps({"op": op}).encode(), timeout=30)
    return proc.returncode, json.loads(out)


def test_a_forked_helper_is_our_child_in_our_cgroup_and_namespaces_with_only_its_fds(
    subreaper: forkserver.ForkServer,
) -> None:
    before = subreaper.launched
    proc = mount_helper()
    try:
        # it waits for its request on stdin: look at it while it runs
        fields = stat_fields(proc.pid)
        assert int(fields[1]) == os.getpid()  # ppid: ours, not the server's
        assert subreaper.pid is not None and subreaper.pid != proc.pid
        assert subreaper.launched == before + 1
        assert Path(f"/proc/{proc.pid}/cgroup").read_text() == Path("/proc/self/cgroup").read_text()
        for ns in NAMESPACES:
            assert os.readlink(f"/proc/{proc.pid}/ns/{ns}") == os.readlink(f"/proc/self/ns/{ns}"), ns
        assert sorted(os.listdir(f"/proc/{proc.pid}/fd"), key=int) == ["0", "1", "2"]
        # no session of its own unless asked: the server's, which no terminal's Ctrl-C reaches
        assert int(fields[3]) == subreaper.pid
        env = Path(f"/proc/{proc.pid}/environ").read_bytes().split(b"\0")
        # a helper's environment (children.helper_env), not runtimed's
        assert sorted(e.partition(b"=")[0] for e in env if e) == [b"LANG", b"PATH", b"PYTHONPATH"]
    finally:
        rc, answer = ask(proc, "no-such-op")
    assert rc == 1
    assert answer == {"error": "unknown op 'no-such-op'"}


def test_a_helper_asked_for_a_session_leads_its_own(subreaper: forkserver.ForkServer) -> None:
    proc = mount_helper(start_new_session=True)
    try:
        assert int(stat_fields(proc.pid)[3]) == proc.pid
    finally:
        assert ask(proc, "x")[0] == 1


def test_a_killed_server_is_reaped_and_started_again(subreaper: forkserver.ForkServer) -> None:
    assert ask(mount_helper(), "first")[0] == 1
    old = subreaper.pid
    assert old is not None
    os.kill(old, signal.SIGKILL)
    os.waitid(os.P_PID, old, os.WEXITED | os.WNOWAIT)  # dead (not yet reaped)
    before = subreaper.launched
    rc, answer = ask(mount_helper(), "after-the-kill")
    assert (rc, answer) == (1, {"error": "unknown op 'after-the-kill'"})
    assert subreaper.launched == before + 1  # through a new server, not directly
    assert subreaper.pid is not None and subreaper.pid != old
    with pytest.raises(ChildProcessError):
        os.waitpid(old, os.WNOHANG)  # the old one was reaped: no zombie left


def test_concurrent_callers_each_get_their_own_child(subreaper: forkserver.ForkServer) -> None:
    results: dict[int, tuple[int, dict[str, str]]] = {}
    before = subreaper.launched

    def one(i: int) -> None:
        results[i] = ask(mount_helper(), f"op-{i}")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == {i: (1, {"error": f"unknown op 'op-{i}'"}) for i in range(20)}
    assert subreaper.launched == before + 20


@pytest.fixture
def not_subreaper() -> Iterator[None]:
    """This process not a subreaper (in-process SandboxManager tests make pytest one)."""
    libc = ctypes.CDLL(None, use_errno=True)
    was = forkserver.is_subreaper()
    assert libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0) == 0
    try:
        yield
    finally:
        if was:
            libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def test_without_a_subreaper_the_helper_is_started_directly(not_subreaper: None) -> None:
    assert not forkserver.is_subreaper()
    before = forkserver.shared().launched
    proc = mount_helper()
    assert proc.args == [sys.executable, "-P", "-s", "-S", "-m", MOUNT]  # a Popen of its own
    assert ask(proc, "direct") == (1, {"error": "unknown op 'direct'"})
    assert forkserver.shared().launched == before


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare(1)")
def test_the_netns_helper_gets_its_socket_at_the_same_number(subreaper: forkserver.ForkServer) -> None:
    ns = subprocess.Popen(
        ["unshare", "--net", "sh", "-c", "ip link set lo up && echo up && exec sleep 60"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert ns.stdout is not None and ns.stdout.readline().strip() == "up"
        before = subreaper.launched
        (sock,) = open_listeners_in_netns(ns.pid, [("127.0.0.1", 0, "tcp")])
        with sock:
            assert subreaper.launched == before + 1
            port = sock.getsockname()[1]
            # listening on the loopback of the sandbox's namespace (ours is not reachable there)
            conn = subprocess.run(
                ["nsenter", f"--net=/proc/{ns.pid}/ns/net", "python3", "-c",
                 f"import socket; socket.create_connection(('127.0.0.1', {port}), 5)"],
                timeout=30,
            )  # fmt: skip
            assert conn.returncode == 0
    finally:
        ns.kill()
        ns.wait(10)


def test_a_server_that_cannot_start_leaves_the_helper_started_directly(
    subreaper: forkserver.ForkServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    broken = forkserver.ForkServer()
    monkeypatch.setattr(forkserver, "_server", broken)
    missing = "runtime.kernel._no_such_server"  # python -m exits at once: no module of that name
    monkeypatch.setattr(children, "HELPERS", children.HELPERS | {missing})
    monkeypatch.setattr(forkserver, "SERVER", missing)
    proc = mount_helper()
    assert proc.args == [sys.executable, "-P", "-s", "-S", "-m", MOUNT]
    assert ask(proc, "fallback") == (1, {"error": "unknown op 'fallback'"})
    assert broken.launched == 0
    assert broken.pid is None


def test_the_server_forks_only_listed_helper_modules() -> None:
    """Every module the server imports is a listed helper (started alike when forked or not);
    ``spawn`` refuses any other name before anything starts."""
    assert set(FORKED) <= children.HELPERS
    for name in ("mount", "runtime.kube.node._netns_sockets", "runtime.sandbox.manager", "os"):
        with pytest.raises(ValueError, match="not a helper the fork server starts"):
            forkserver.spawn(name, [])
