"""`make run`'s supervisor, started for real: it serves / and /healthz on PORT;
SIGTERM stops every process it started; a child killed after start-up is
restarted (with back-off) while the others keep running; a child that cannot
start at all stops the whole with status 1."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

BASE = Path(__file__).resolve().parents[2]
WITH_RUNTIME = (BASE / "runtime" / "__main__.py").exists() and os.geteuid() == 0


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


class Supervisor:
    """scripts/run.py in its own session, its output collected by a thread."""

    def __init__(self, var_dir: Path, port: int) -> None:
        self.port = port
        env = {
            **{k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DATABASE_URL", "RUNTIME_SOCKET"}},
            "VAR_DIR": str(var_dir),
            "PORT": str(port),
            "HOST": "127.0.0.1",
            "RUNTIME_REQUIRED": "true" if WITH_RUNTIME else "false",
        }
        # What `make run` does before it starts the supervisor.
        for command in (["migrate", "--noinput"], ["collectstatic", "--noinput"]):
            subprocess.run(
                [sys.executable, "manage.py", *command, "-v", "0"], cwd=BASE, env=env, check=True, timeout=300
            )
        self.proc = subprocess.Popen(
            [sys.executable, "scripts/run.py"],
            cwd=BASE,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def output(self) -> str:
        return "".join(self.lines)

    def tail(self) -> str:
        return "".join(self.lines[-60:])

    def wait_for(self, condition: Callable[[], object], what: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} within {timeout:g} s:\n{self.tail()}")
            time.sleep(0.1)

    def wait_up(self) -> None:
        def up() -> bool:
            if self.proc.poll() is not None:
                self.reader.join(10)
                pytest.fail("run.py ended before the platform was up:\n" + self.tail())
            return "KubeLab is up" in self.output()

        self.wait_for(up, "'KubeLab is up'", timeout=300)

    def pids(self, name: str) -> list[int]:
        """Every pid the supervisor said it started ``name`` as, in order."""
        return [int(pid) for pid in re.findall(rf"started {re.escape(name)} \(pid (\d+)\)", self.output())]

    def healthz(self) -> tuple[int, dict[str, object]]:
        status, body = get(f"http://127.0.0.1:{self.port}/healthz")
        return status, json.loads(body)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.reader.join(10)
        return self.proc.returncode


def test_run_serves_pages_and_stops_cleanly_on_sigterm(var_dir: Path) -> None:
    run = Supervisor(var_dir, free_port())
    try:
        run.wait_up()
        status, _ = get(f"http://127.0.0.1:{run.port}/")
        assert status == 200
        status, health = run.healthz()
        assert status == 200, health
        assert health["status"] == "ok"
        started = descendants(run.proc.pid)
        assert len(started) >= 5  # redis, web, two workers, beat (+ runtimed, worker children)
        assert run.pids("worker") and run.pids("grader"), run.tail()
    finally:
        code = run.stop()
    assert code == 0, run.tail()
    assert "stopped" in run.output()
    alive = [pid for pid in started if os.path.exists(f"/proc/{pid}")]
    assert alive == [], f"processes left running: {alive}"


def _restarted(run: Supervisor, name: str, old: int) -> Callable[[], bool]:
    def check() -> bool:
        pids = run.pids(name)
        return bool(pids) and pids[-1] != old and os.path.exists(f"/proc/{pids[-1]}")

    return check


def _kill_and_watch(run: Supervisor, name: str, *, healthy_throughout: bool) -> int:
    """kill -9 ``name``; /healthz must answer (200 when ``healthy_throughout``) until it is back."""
    old = run.pids(name)[-1]
    os.kill(old, signal.SIGKILL)
    restarted = _restarted(run, name, old)

    def answered_and_restarted() -> bool:
        status, health = run.healthz()  # raises (fails the test) if the web stopped answering
        if healthy_throughout:
            assert status == 200, health
        assert run.proc.poll() is None, run.tail()
        return restarted()

    run.wait_for(answered_and_restarted, f"restart of {name}")
    assert re.search(rf"{name} \(pid {old}\) was killed by SIGKILL", run.output()), run.tail()
    return run.pids(name)[-1]


def test_children_killed_after_start_up_are_restarted_and_the_rest_stays_up(var_dir: Path) -> None:
    run = Supervisor(var_dir, free_port())
    try:
        run.wait_up()
        web, redis = run.pids("web")[-1], run.pids("redis")[-1]

        # A worker: back, and consuming again (Celery logs "<hostname> ready." once connected).
        def worker_ready() -> int:
            return len(re.findall(r"provisioning@\S+ ready\.", run.output()))

        run.wait_for(worker_ready, "provisioning worker ready")
        _kill_and_watch(run, "worker", healthy_throughout=True)
        run.wait_for(lambda: worker_ready() > 1, "restarted worker ready")

        # beat in a crash loop: each new process killed at once is restarted all the same,
        # with a growing back-off, and reported as a crash loop.
        for _ in range(3):
            _kill_and_watch(run, "beat", healthy_throughout=True)
        assert re.search(r"beat \(pid \d+\) was killed by SIGKILL.*crash loop", run.output()), run.tail()
        delays = [
            float(d) for d in re.findall(r"beat \(pid \d+\) was killed.*restarting it in ([\d.]+) s", run.output())
        ]
        assert delays == sorted(delays) and delays[-1] > delays[0], delays

        if WITH_RUNTIME and shutil.which("runc"):
            # runtimed: /healthz says the runtime is down meanwhile, and ok once it is back.
            _kill_and_watch(run, "runtimed", healthy_throughout=False)
            run.wait_for(lambda: run.healthz()[0] == 200, "healthy again after runtimed's restart")

        # Nobody else was touched.
        assert run.pids("web") == [web] and run.pids("redis") == [redis], run.tail()
        assert os.path.exists(f"/proc/{web}") and os.path.exists(f"/proc/{redis}")
        status, health = run.healthz()
        assert status == 200 and health["status"] == "ok", health
        assert run.proc.poll() is None
        started = descendants(run.proc.pid)
    finally:
        code = run.stop()
    assert code == 0, run.tail()
    alive = [pid for pid in started if os.path.exists(f"/proc/{pid}")]
    assert alive == [], f"processes left running: {alive}"


def test_a_child_that_cannot_start_stops_everything_with_status_1(var_dir: Path) -> None:
    # The port is taken (bound, not listening: nothing answers on it), so daphne cannot start.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        run = Supervisor(var_dir, int(taken.getsockname()[1]))
        try:
            run.wait_for(lambda: run.proc.poll() is not None or "during start-up" in run.output(), "start-up failure")
            started = descendants(run.proc.pid)
            run.proc.wait(60)
        finally:
            code = run.stop()
    assert code == 1, run.tail()
    assert re.search(r"web exited with status \d+ during start-up; stopping everything", run.output()), run.tail()
    assert "KubeLab is up" not in run.output()
    assert "restarting" not in run.output()
    alive = [pid for pid in started if os.path.exists(f"/proc/{pid}")]
    assert alive == [], f"processes left running: {alive}"


def test_backoff_doubles_from_one_second_up_to_thirty() -> None:
    spec = importlib.util.spec_from_file_location("kubelab_run", BASE / "scripts" / "run.py")
    assert spec is not None and spec.loader is not None
    run = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = run  # dataclasses look their module up there
    try:
        spec.loader.exec_module(run)
    finally:
        del sys.modules[spec.name]
    assert [run.backoff(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
