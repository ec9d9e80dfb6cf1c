"""runtimed's Python helper children started as modules (runtime/kernel/children.py, issue #16).

``helper_argv`` starts only a listed helper module, with arguments as data; the child imports
``runtime`` from the tree it belongs to (``helper_env``'s PYTHONPATH), never from the current
directory nor from runtimed's environment. The netns socket helper (kube/node/_netns_sockets.py,
formerly inline ``python -c`` strings in kubelet.py) is run for real: a socket made in the
namespace it entered comes back over the unix socket."""

from __future__ import annotations

import ast
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


# --- one mechanism, and what a helper's start costs ------------------------------------------

ROOT = Path(__file__).resolve().parents[3]
# the one Python program started by path, with its reason (see children.py's docstring)
NOT_HELPER_MODULES = {
    "runtime.sandbox._cgexec": "kl-cgexec's stand-in: execs the caller's program with the caller's environment",
}


def _source(module: str) -> Path:
    path = ROOT.joinpath(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _packages(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def test_every_python_helper_program_is_a_listed_helper_module() -> None:
    """A private module of runtime/ run as a program (``if __name__ == "__main__"``) is a helper:
    it is started with ``helper_argv``, so it is in ``HELPERS`` (or, with its reason, in
    ``NOT_HELPER_MODULES``), and every listed helper exists."""
    programs = set()
    for path in (ROOT / "runtime").rglob("_*.py"):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        if not path.name.startswith("__") and '__name__ == "__main__"' in path.read_text():
            programs.add(module)
    assert programs - set(NOT_HELPER_MODULES) == set(children.HELPERS)
    assert set(NOT_HELPER_MODULES) <= programs


@pytest.mark.parametrize("module", sorted(children.HELPERS))
def test_every_package_on_a_helpers_path_imports_nothing(module: str) -> None:
    """Starting ``-m a.b.c`` imports ``a`` and ``a.b`` first: their ``__init__`` must import
    nothing (``from __future__`` aside), or every helper start pays for their packages."""
    for package in _packages(module):
        tree = ast.parse(_source(package).read_text())
        imports = [
            f"{package}:{node.lineno}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Import) or (isinstance(node, ast.ImportFrom) and node.module != "__future__")
        ]
        assert not imports, f"{module}'s package imports at package import: {imports}"


@pytest.mark.parametrize("module", sorted(children.HELPERS))
def test_a_helper_start_imports_no_other_module_of_ours(module: str, tmp_path: Path) -> None:
    """What a helper imports when it starts, as Python reports it (``-X importtime``): its
    packages, itself and the shared kernel primitives, no other module of ours (no sandbox
    manager, engine or cluster). Started with no arguments and an empty stdin, every helper
    stops at its own usage or request error (an answer, or an exit status) before any kernel work."""
    argv = children.helper_argv(module, [])
    argv[1:1] = ["-X", "importtime"]
    cp = subprocess.run(
        argv, env=children.helper_env(), stdin=subprocess.DEVNULL, capture_output=True, cwd=tmp_path, timeout=60
    )
    loaded = {
        line.rpartition("|")[2].strip()
        for line in cp.stderr.decode().splitlines()
        if line.startswith("import time:") and "self [us]" not in line
    }
    ours = {m for m in loaded if m == "runtime" or m.startswith("runtime.")}
    # runpy runs the module itself as __main__ (not reported); its packages are imported
    assert set(_packages(module)) <= ours, cp.stderr.decode()[-2000:]
    assert ours - {*_packages(module), "runtime.kernel", "runtime.kernel.mounts"} == set()
