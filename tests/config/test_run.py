"""Smoke test of `make run`'s supervisor: it serves / and /healthz on PORT,
and SIGTERM stops every process it started."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

BASE = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def descendants(pid: int) -> set[int]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True, timeout=10)
    children: dict[int, list[int]] = {}
    for line in out.stdout.splitlines():
        child, parent = map(int, line.split())
        children.setdefault(parent, []).append(child)
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


@pytest.fixture
def var_dir() -> Iterator[Path]:
    # Under the checkout rather than /tmp: when run as root the supervisor
    # drops the web tier to the service user, which cannot enter pytest's
    # private tmp directories.
    path = BASE / "var" / f"smoke-{os.getpid()}"
    path.mkdir(parents=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_run_serves_pages_and_stops_cleanly_on_sigterm(var_dir: Path) -> None:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DATABASE_URL", "RUNTIME_SOCKET"}},
        "VAR_DIR": str(var_dir),
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "RUNTIME_REQUIRED": "true" if (BASE / "runtime" / "__main__.py").exists() and os.geteuid() == 0 else "false",
    }
    # What `make run` does before it starts the supervisor.
    for command in (["migrate", "--noinput"], ["collectstatic", "--noinput"]):
        subprocess.run([sys.executable, "manage.py", *command, "-v", "0"], cwd=BASE, env=env, check=True, timeout=300)
    proc = subprocess.Popen(
        [sys.executable, "scripts/run.py"],
        cwd=BASE,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line)
            if "KubeLab is up" in line:
                break
        else:
            pytest.fail("run.py ended before the platform was up:\n" + "".join(output[-40:]))
        status, _ = get(f"http://127.0.0.1:{port}/")
        assert status == 200
        status, body = get(f"http://127.0.0.1:{port}/healthz")
        assert status == 200, body
        assert json.loads(body)["status"] == "ok"
        started = descendants(proc.pid)
        assert len(started) >= 4  # redis, web, worker, beat (+ runtimed, worker children)
    finally:
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=60)
        output.append(rest)
    assert proc.returncode == 0, "".join(output[-40:])
    assert "stopped" in "".join(output)
    alive = [pid for pid in started if os.path.exists(f"/proc/{pid}")]
    assert alive == [], f"processes left running: {alive}"
