"""runtimed's Python helper children started as modules (runtime/kernel/children.py, issue #16).

``helper_argv`` starts only a listed helper module, with arguments as data; the child imports
``runtime`` from the tree it belongs to (``helper_env``'s PYTHONPATH), never from the current
directory nor from runtimed's environment. The netns socket helper (kube/node/_netns_sockets.py,
formerly inline ``python -c`` strings in kubelet.py) is run for real: a socket made in the
namespace it entered comes back over the unix socket."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from runtime.kernel import children

SOCKETS = "runtime.kube.node._netns_sockets"


def test_only_listed_modules_are_helpers() -> None:
    for module in ("os", "runtime.kube.node.kubelet", "runtime.kube.node._netns_sockets; import os", ""):
        with pytest.raises(ValueError, match="not a helper module"):
            children.helper_argv(module, [])


def test_arguments_are_strings_without_nul() -> None:
    with pytest.raises(ValueError, match="without NUL"):
        children.helper_argv(SOCKETS, ["pod", "3\0-c", "4"])
    with pytest.raises(ValueError, match="without NUL"):
        children.helper_argv(SOCKETS, ["pod", 3, "4"])  # type: ignore[list-item]


def test_argv_runs_the_module_and_passes_arguments_as_data(tmp_path: Path) -> None:
    argv = children.helper_argv(SOCKETS, ["sandbox", "1; import os", "--help"])
    assert argv[-4:] == [SOCKETS, "sandbox", "1; import os", "--help"]
    assert "-c" not in argv
    cp = subprocess.run(argv, env=children.helper_env(), capture_output=True, cwd=tmp_path, timeout=30, check=False)
    # the helper's own int() refusal: the argument reached it as a string, nothing ran it
    assert cp.returncode == 1
    assert b"invalid literal for int() with base 10: '1; import os'" in cp.stderr


def test_a_runtime_package_in_the_cwd_or_env_is_not_imported(tmp_path: Path) -> None:
    """A ``runtime/`` planted in the current directory is not what ``-m`` finds (``-P``), and
    runtimed's environment (PYTHONPATH, PYTHONSTARTUP...) does not reach the helper."""
    fake = tmp_path / "runtime" / "kube" / "node"
    fake.mkdir(parents=True)
    for d in (tmp_path / "runtime", tmp_path / "runtime" / "kube", fake):
        (d / "__init__.py").write_text("")
    (fake / "_netns_sockets.py").write_text("import sys\nsys.exit(99)\n")
    env = children.helper_env()
    assert set(env) == {"PYTHONPATH", "PATH", "LANG"}
    assert env["PYTHONPATH"] == str(Path(__file__).resolve().parents[3])
    cp = subprocess.run(
        children.helper_argv(SOCKETS, []), env=env, capture_output=True, cwd=tmp_path, timeout=30, check=False
    )
    assert cp.returncode == 2, cp.stderr  # the real helper's usage error, not the planted 99
    assert b"usage: _netns_sockets" in cp.stderr


def _start(mode: str, target: int, pass_fds: tuple[int, ...] = ()) -> tuple[subprocess.Popen[bytes], socket.socket]:
    ours, theirs = socket.socketpair()
    try:
        proc = subprocess.Popen(
            children.helper_argv(SOCKETS, [mode, str(target), str(theirs.fileno())]),
            env=children.helper_env(),
            pass_fds=(*pass_fds, theirs.fileno()),
            stderr=subprocess.PIPE,
        )
    finally:
        theirs.close()
    ours.settimeout(30)
    return proc, ours


SO_NETNS_COOKIE = 71  # Linux 5.14: the id of the netns a socket belongs to (not in Python 3.11's socket)


def _netns_cookie(s: socket.socket) -> int:
    return int.from_bytes(s.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8), "little")


def _is_tcp_socket(sock_fd: int) -> None:
    s = socket.socket(fileno=sock_fd)
    try:
        assert (s.family, s.type) == (socket.AF_INET, socket.SOCK_STREAM)
    finally:
        s.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="setns(2) needs CAP_SYS_ADMIN")
def test_sandbox_mode_hands_out_a_socket_per_request_until_closed() -> None:
    proc, chan = _start("sandbox", os.getpid())
    try:
        for _ in range(2):
            chan.sendall(b"s")
            msg, fds, _, _ = socket.recv_fds(chan, 1, 1)
            assert msg == b"s" and len(fds) == 1
            _is_tcp_socket(fds[0])
    finally:
        chan.close()
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err


@pytest.mark.skipif(os.geteuid() != 0, reason="setns(2) needs CAP_SYS_ADMIN")
def test_the_socket_is_made_in_the_other_namespace() -> None:
    """The socket handed back belongs to the namespace the helper entered, not to ours."""
    # unshare (no --fork) enters the new netns, then execs sh with the same pid: once sh speaks,
    # that pid's netns is the new one
    holder = subprocess.Popen(
        ["unshare", "--net", "--", "sh", "-c", "echo ready; exec sleep 60"], stdout=subprocess.PIPE
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"ready\n"
        assert os.readlink(f"/proc/{holder.pid}/ns/net") != os.readlink("/proc/self/ns/net")
        proc, chan = _start("sandbox", holder.pid)
        try:
            chan.sendall(b"s")
            _, fds, _, _ = socket.recv_fds(chan, 1, 1)
            with socket.socket(fileno=fds[0]) as theirs, socket.socket() as here:
                assert _netns_cookie(theirs) != _netns_cookie(here)
        finally:
            chan.close()
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.skipif(os.geteuid() != 0, reason="setns(2) needs CAP_SYS_ADMIN")
def test_pod_mode_hands_out_one_socket_from_the_descriptor() -> None:
    ns_fd = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        proc, chan = _start("pod", ns_fd, (ns_fd,))
    finally:
        os.close(ns_fd)
    try:
        msg, fds, _, _ = socket.recv_fds(chan, 1, 1)
        assert msg == b"s" and len(fds) == 1
        _is_tcp_socket(fds[0])
    finally:
        chan.close()
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err


@pytest.mark.skipif(os.geteuid() != 0, reason="setns(2) needs CAP_SYS_ADMIN")
def test_a_descriptor_that_is_no_namespace_is_refused() -> None:
    r, w = os.pipe()
    try:
        proc, chan = _start("pod", r, (r,))
    finally:
        os.close(r)
        os.close(w)
    chan.close()
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert b"setns: Invalid argument" in err
