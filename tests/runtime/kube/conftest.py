"""Fixtures: a real ``python -m runtime.kube serve`` subprocess and clusters made by ``new-cluster``.

Tests drive the real kubectl 1.37 binary against it (see ``Kubectl``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
KUBECTL = str(ROOT / ".venv" / "bin" / "kubectl")
PY = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    data: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> None:
        with open(self.data / "server.log", "ab") as log:
            self.proc = subprocess.Popen(
                [PY, "-m", "runtime.kube", "serve", "--data", str(self.data), "--listen", f"127.0.0.1:{self.port}"],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError((self.data / "server.log").read_text())
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("server did not start")

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def new_cluster(self, name: str) -> Path:
        out = subprocess.run(
            [PY, "-m", "runtime.kube", "new-cluster", "--data", str(self.data), "--server", self.url, name],
            cwd=ROOT,
            capture_output=True,
            check=True,
            timeout=60,
        )
        path = self.data / f"{name}.kubeconfig"
        path.write_bytes(out.stdout)
        return path


@dataclass
class Kubectl:
    kubeconfig: Path

    def run(self, *args: str, stdin: str | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [KUBECTL, "--kubeconfig", str(self.kubeconfig), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "KUBECACHEDIR": str(self.kubeconfig.parent / "cache")},
        )

    def __call__(self, *args: str, stdin: str | None = None, timeout: float = 30) -> str:
        r = self.run(*args, stdin=stdin, timeout=timeout)
        assert r.returncode == 0, f"kubectl {' '.join(args)} failed: {r.stderr}"
        return r.stdout

    def fails(self, *args: str, stdin: str | None = None) -> str:
        r = self.run(*args, stdin=stdin)
        assert r.returncode != 0, f"kubectl {' '.join(args)} unexpectedly succeeded: {r.stdout}"
        return r.stderr


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("kube"), free_port())
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def alpha(server: Server) -> Kubectl:
    return Kubectl(server.new_cluster("alpha"))


@pytest.fixture(scope="session")
def beta(server: Server) -> Kubectl:
    return Kubectl(server.new_cluster("beta"))


@pytest.fixture
def ns(alpha: Kubectl) -> Iterator[str]:
    """A fresh namespace in cluster alpha, deleted afterwards."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    alpha("create", "namespace", name)
    yield name
    alpha.run("delete", "namespace", name, "--wait=false")
