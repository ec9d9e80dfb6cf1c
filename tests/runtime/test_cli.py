"""``python -m runtime``: size parsing, and the commands against a live daemon."""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import select
import signal
import struct
import subprocess
import sys
import termios
import time

import pytest

from runtime.__main__ import parse_size
from tests.runtime.conftest_daemon import Env
from tests.runtime.daemon_helpers import REPO


def cli(env: Env, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "runtime", "--socket", str(env.socket), *args],
        cwd=REPO,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("4096", 4096),
        ("256M", 256 * 2**20),
        ("256m", 256 * 2**20),
        ("1G", 2**30),
        ("1.5G", 3 * 2**29),
        ("512Ki", 512 * 1024),
        ("2Gi", 2 * 2**30),
        ("64MiB", 64 * 2**20),
    ],
)
def test_sizes_parse(text: str, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "12X", "M", "-1G", "1.3", "1i", "ten"])
def test_bad_sizes_are_refused_clearly(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="bad size"):
        parse_size(text)


def test_bad_size_is_a_usage_error() -> None:
    p = subprocess.run(
        [sys.executable, "-m", "runtime", "run", "--memory", "12X", "--", "true"],
        cwd=REPO,
        capture_output=True,
        timeout=60,
    )
    assert p.returncode == 2
    assert b"bad size '12X'" in p.stderr


def test_unreachable_daemon_is_explained(tmp_path) -> None:
    p = subprocess.run(
        [sys.executable, "-m", "runtime", "--socket", str(tmp_path / "none.sock"), "ls"],
        cwd=REPO,
        capture_output=True,
        timeout=60,
    )
    assert p.returncode == 2
    assert b"not reachable" in p.stderr and b"none.sock" in p.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="layers are unpacked with their owners: root")
def test_build_image_unpack_leaves_the_layers_a_sandbox_uses_unpacked(tmp_path) -> None:
    """``make images`` unpacks the sandbox images' layers at set-up (``--unpack``), so the
    first class after an install does not wait for it under its herd."""
    from runtime.images import default_store

    root = tmp_path / "root"
    p = subprocess.run(
        [sys.executable, "-m", "runtime", "build-image", "--root", str(root), "--unpack", "busybox"],
        cwd=REPO,
        capture_output=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    assert b"layer(s) unpacked" in p.stderr
    store = default_store(root)
    unpacked = [store.layers_root / d.split(":", 1)[1] for d in store.get("busybox").layers]
    assert unpacked and all(d.is_dir() for d in unpacked)


def test_unpack_needs_a_root() -> None:
    p = subprocess.run(
        [sys.executable, "-m", "runtime", "build-image", "--unpack", "busybox"],
        cwd=REPO,
        capture_output=True,
        timeout=60,
    )
    assert p.returncode != 0 and b"--unpack needs --root" in p.stderr


def test_run_prints_output_and_removes_the_sandbox(env: Env) -> None:
    p = cli(env, "run", "--", "echo", "hi")
    assert (p.returncode, p.stdout) == (0, b"hi\n"), p.stderr
    assert env.client.list_sandboxes() == []


def test_run_returns_the_command_status(env: Env) -> None:
    p = cli(env, "run", "--memory", "128M", "--pids", "64", "--", "sh", "-c", "echo err >&2; exit 3")
    assert (p.returncode, p.stderr) == (3, b"err\n")
    assert env.client.list_sandboxes() == []


def test_run_pipes_stdin_through(env: Env) -> None:
    p = cli(
        env,
        "run",
        "--env",
        "WHO=world",
        "--",
        "sh",
        "-c",
        'tr a-z A-Z; echo "$WHO"',
        stdin=b"shout\n",
    )
    assert (p.returncode, p.stdout) == (0, b"SHOUT\nworld\n"), p.stderr


def test_run_with_the_docker_service(env: Env) -> None:
    p = cli(
        env, "run", "--service", "docker", "--", "sh", "-c", 'test -S /var/run/docker.sock && echo "$DOCKER_BUILDKIT"'
    )
    if env.kind == "standin":  # no service hooks in the stand-in: refused clearly, nothing left
        assert p.returncode == 2
        assert b"docker" in p.stderr and b"not available" in p.stderr
    else:
        assert (p.returncode, p.stdout) == (0, b"0\n"), p.stderr
    assert env.client.list_sandboxes() == []


def test_create_ls_exec_stats_rm(env: Env) -> None:
    p = cli(env, "create", "--label", "who=cli")
    assert p.returncode == 0, p.stderr
    sid = p.stdout.decode().strip()
    ls = cli(env, "ls")
    assert ls.returncode == 0 and sid in ls.stdout.decode()
    ex = cli(env, "exec", sid, "--", "sh", "-c", "echo in-$((1+1)); exit 5")
    assert (ex.returncode, ex.stdout) == (5, b"in-2\n")
    st = cli(env, "stats", sid)
    assert st.returncode == 0 and b"memory_bytes" in st.stdout
    rm = cli(env, "rm", sid)
    assert (rm.returncode, rm.stdout.decode().strip()) == (0, sid)
    gone = cli(env, "stats", sid)
    assert gone.returncode == 1 and sid.encode() in gone.stderr


class Terminal:
    """The CLI on a real PTY, as a person at a terminal would run it."""

    def __init__(self, env: Env, *args: str, rows: int = 33, cols: int = 101) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runtime", "--socket", str(env.socket), *args],
            cwd=REPO,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
        )
        os.close(slave)
        self.out = b""

    def read_until(self, needle: bytes, timeout: float = 30) -> bytes:
        deadline = time.monotonic() + timeout
        while needle not in self.out:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{needle!r} not seen; got {self.out[-1000:]!r}")
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"EOF before {needle!r}; got {self.out[-1000:]!r}")
                self.out += chunk
        return self.out

    def wait(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:
                with contextlib.suppress(OSError):
                    self.out += os.read(self.master, 65536)
        code = self.proc.wait(max(deadline - time.monotonic(), 0.1))
        os.close(self.master)
        return code


def test_run_on_a_terminal_gets_a_pty_of_the_same_size(env: Env) -> None:
    t = Terminal(env, "run", "--", "sh", "-c", "stty size; tty; exit 6")
    assert t.wait() == 6, t.out
    assert b"33 101" in t.out and b"/dev/pts/" in t.out
    assert env.client.list_sandboxes() == []


def test_attach_types_into_the_shell_and_ctrl_bracket_detaches(env: Env) -> None:
    sid = env.sandbox()
    s = env.client.create_session(sid, ["/bin/sh", "-i"])
    t = Terminal(env, "attach", sid)
    t.read_until(b"# ")  # the replayed prompt: the CLI is attached and in raw mode
    os.write(t.master, b"echo typed-$((20+3))\r")
    t.read_until(b"typed-23")
    os.write(t.master, b"\x1d")  # Ctrl-]
    assert t.wait() == 0
    assert b"detached" in t.out
    # the shell lives on
    info = env.client.get_session(sid, s["session_id"])
    assert info["exited"] is False


def test_ctrl_c_during_run_removes_the_sandbox(env: Env) -> None:
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runtime",
            "--socket",
            str(env.socket),
            "run",
            "--",
            "sh",
            "-c",
            "echo started; sleep 1000",
        ],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert p.stdout is not None
    assert p.stdout.readline() == b"started\n"
    assert len(env.client.list_sandboxes()) == 1
    p.send_signal(signal.SIGINT)
    assert p.wait(60) == 130
    assert env.client.list_sandboxes() == []
