"""Helpers for the daemon/client/session/CLI tests.

``HostManager`` is a stand-in for ``SandboxManager`` that spawns processes on
the host (no namespaces). It exists only so the HTTP and session layers can be
tested without root or runc; every behaviour test also runs against the real
daemon with real runc sandboxes (``RealDaemon``).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import fcntl
import os
import secrets
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime import errors
from runtime.auth import Authority
from runtime.client import Client, SyncAttach
from runtime.daemon import Daemon
from runtime.sandbox.cgexec import Placement
from runtime.sandbox.spec import SandboxSpec

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
# not the production defaults (kl0, 10.77.0.0/16, kubelab), nor the sandbox tests' ranges
TEST_HOST_RESOURCES = [
    "--subnet",
    "10.237.0.0/20",
    "--bridge",
    "kltestrd",
    "--cgroup-parent",
    "kubelab-testrd",
    "--uid-start",
    str(3_000_000_000),
]


# -- the stand-in ------------------------------------------------------------------------------
@dataclass
class HostSpawned:
    proc: subprocess.Popen[bytes]
    pty_master: int | None

    def kill_tree(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)


@dataclass
class HostInfo:
    id: str
    spec: SandboxSpec
    status: str = "running"
    created_at: float = field(default_factory=time.time)
    last_activity: float = field(default_factory=time.time)
    ip: str | None = None
    pid: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "spec": self.spec.to_json(),
            "status": self.status,
            "created_at": self.created_at,
            "last_activity": self.last_activity,
            "ip": self.ip,
            "pid": self.pid,
        }


class HostManager:
    """Runs "sandboxed" processes directly on the host, in their own session (setsid)."""

    def __init__(self) -> None:
        self.boxes: dict[str, HostInfo] = {}
        self.procs: dict[str, builtins.list[subprocess.Popen[bytes]]] = {}
        self.touches = 0

    def create(self, spec: SandboxSpec) -> HostInfo:
        if spec.services:
            raise errors.NotAvailable(f"service {spec.services[0]} is not available yet")
        info = HostInfo(id=secrets.token_hex(6), spec=spec)
        self.boxes[info.id] = info
        return info

    def get(self, sid: str) -> HostInfo:
        try:
            return self.boxes[sid]
        except KeyError:
            raise errors.SandboxNotFound(f"no sandbox {sid}") from None

    def list(self) -> list[HostInfo]:
        return list(self.boxes.values())

    def stop(self, sid: str) -> None:
        self.get(sid).status = "stopped"

    def remove(self, sid: str) -> None:
        self.get(sid)
        for proc in self.procs.pop(sid, []):
            HostSpawned(proc, None).kill_tree()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        del self.boxes[sid]

    def close(self) -> None:
        for sid in list(self.boxes):
            self.remove(sid)

    def stats(self, sid: str) -> dict[str, float | int]:
        self.get(sid)
        return {"memory_bytes": 1, "memory_limit": 2, "pids": 1, "pids_limit": 512}

    def touch(self, sid: str) -> None:
        self.get(sid).last_activity = time.time()
        self.touches += 1

    # What only real sandboxes can do: host processes have no disk image to keep, no cgroup to
    # empty and no init process to enter. Refused as runtimed refuses what a backend lacks.
    def pause(self, sid: str) -> HostInfo:
        self.get(sid)
        raise errors.NotAvailable("the tests' host manager cannot pause a sandbox")

    def resume(self, sid: str) -> HostInfo:
        self.get(sid)
        raise errors.NotAvailable("the tests' host manager cannot resume a sandbox")

    def disk_image_bytes(self, sid: str) -> int:
        self.get(sid)
        return 0

    def init_process(self, sid: str) -> tuple[int, int, Placement]:
        self.get(sid)
        raise errors.NotAvailable("the tests' host manager has no sandbox init process")

    def spawn(
        self,
        sid: str,
        argv: builtins.list[str],
        *,
        tty: bool,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        rows: int = 24,
        cols: int = 80,
    ) -> HostSpawned:
        box = self.get(sid)
        if box.status != "running":
            raise errors.Conflict(f"sandbox {sid} is {box.status}")
        full_env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/tmp"}
        full_env.update(box.spec.env)
        full_env.update(env or {})
        if tty:
            master, slave = os.openpty()
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
            # setsid -c: new session with the PTY as controlling terminal (job control, ^C)
            proc = subprocess.Popen(
                ["setsid", "-c", *argv],
                stdin=slave,
                stdout=slave,
                stderr=slave,
                env=full_env,
                cwd=cwd or "/tmp",
                close_fds=True,
            )
            os.close(slave)
            os.set_blocking(master, False)
            self.procs.setdefault(sid, []).append(proc)
            return HostSpawned(proc, master)
        proc = subprocess.Popen(
            ["setsid", *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=full_env,
            cwd=cwd or "/tmp",
            close_fds=True,
        )
        self.procs.setdefault(sid, []).append(proc)
        return HostSpawned(proc, None)

    def reconcile(self) -> builtins.list[str]:
        return []


class HostImages:
    def list(self) -> list[Any]:
        return []

    def get(self, name: str) -> Any:
        raise errors.ImageNotFound(f"no image {name}")

    def layer_dirs(self, name: str) -> builtins.list[Path]:
        return []

    def build(self, name: str, progress: Any) -> Any:
        progress(f"building {name}")
        raise errors.ImageNotFound(f"no recipe {name}")

    def import_oci(self, tar_path: Path, name: str | None = None) -> Any:
        raise errors.NotAvailable("stand-in")

    def export_oci(self, name: str, tar_path: Path) -> None:
        raise errors.ImageNotFound(f"no image {name}")

    def remove(self, name: str) -> None:
        raise errors.ImageNotFound(f"no image {name}")


class ThreadedDaemon:
    """The real ``Daemon`` app on the stand-in, served from a thread on a temp socket."""

    def __init__(self, tmp: Path) -> None:
        self.socket = tmp / "rt.sock"
        self.manager = HostManager()
        self.daemon: Daemon | None = None
        self.loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(tmp,), daemon=True)

    def _run(self, tmp: Path) -> None:
        from aiohttp import web

        asyncio.set_event_loop(self.loop)

        async def main() -> None:
            self.daemon = Daemon(
                self.manager,
                HostImages(),
                spec_from_json=SandboxSpec.from_json,
                tmp_dir=tmp / "tmp",
                authority=Authority(b"k" * 32, os.environ["RUNTIME_ADMIN_TOKEN"]),
            )
            runner = web.AppRunner(self.daemon.app)
            await runner.setup()
            site = web.UnixSite(runner, str(self.socket))
            await site.start()
            self._stop = asyncio.Event()
            self._ready.set()
            await self._stop.wait()
            await self.daemon.shutdown()
            await runner.cleanup()
            self.manager.close()

        self.loop.run_until_complete(main())
        self.loop.close()

    def start(self) -> ThreadedDaemon:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def stop(self) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(15)


# -- the real daemon -------------------------------------------------------------------------
class RealDaemon:
    """``python -m runtime daemon`` as a subprocess on a temp root and socket."""

    def __init__(self, root: Path, socket: Path | None = None, host_resources: list[str] | None = None) -> None:
        self.root = root
        self.socket = socket or root / "rt.sock"
        self.log = root / "daemon.log"
        self.host_resources = host_resources or TEST_HOST_RESOURCES
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> RealDaemon:
        self.root.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    PYTHON,
                    "-m",
                    "runtime",
                    "daemon",
                    "--root",
                    str(self.root),
                    "--socket",
                    str(self.socket),
                    *self.host_resources,
                ],
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}:\n{self.logs()}")
            try:
                with Client(self.socket, timeout=5) as c:
                    c.healthz()
                return self
            except errors.RuntimeError:
                time.sleep(0.1)
        raise AssertionError(f"daemon did not come up:\n{self.logs()}")

    def logs(self) -> str:
        return self.log.read_text(errors="replace")[-5000:]

    def stop(self, timeout: float = 30) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def rss_bytes(self) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")


# -- terminal helpers --------------------------------------------------------------------------
def read_until(att: SyncAttach, needle: bytes, timeout: float = 20) -> bytes:
    """Read attach output until ``needle`` appears; returns everything read."""
    buf = b""
    deadline = time.monotonic() + timeout
    while needle not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{needle!r} not seen in {timeout}s; got {buf[-2000:]!r}")
        try:
            item = att.recv(timeout=left)
        except TimeoutError:
            continue
        if item is None:
            raise AssertionError(f"stream ended before {needle!r}; got {buf[-2000:]!r}")
        if isinstance(item, bytes):
            buf += item
    return buf


def read_event(att: SyncAttach, kind: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no {kind} event in {timeout}s")
        item = att.recv(timeout=left)
        if item is None:
            raise AssertionError(f"stream ended before a {kind} event")
        if isinstance(item, dict) and item.get("type") == kind:
            return item
