"""Fixtures shared by the daemon/client/session/CLI tests (imported by those modules)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from runtime import errors
from runtime.client import Client
from tests.runtime.daemon_helpers import TEST_HOST_RESOURCES, RealDaemon, ThreadedDaemon


def real_sandboxes_available() -> str | None:
    """None if real runc sandboxes can run here, else why not."""
    if os.geteuid() != 0:
        return "needs root (runtimed drives runc)"
    if shutil.which("runc") is None:
        return "runc is not installed (apt-get install runc)"
    return None


def short_tmp(prefix: str) -> Path:
    # unix socket paths are limited to 108 bytes: pytest's tmp_path can be longer
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


@dataclass
class Env:
    kind: str  # "standin" | "runc"
    client: Client
    socket: Path
    daemon: RealDaemon | None = None
    threaded: ThreadedDaemon | None = None

    def sandbox(self, **spec: object) -> str:
        spec.setdefault("image", "busybox")
        return str(self.client.create_sandbox(spec)["id"])


@pytest.fixture(scope="session")
def real_daemon() -> Iterator[RealDaemon]:
    why = real_sandboxes_available()
    if why:
        pytest.skip(why)
    with private_daemon("rtd-", TEST_HOST_RESOURCES, None) as d:
        yield d


@pytest.fixture
def standin_env() -> Iterator[Env]:
    tmp = short_tmp("rts-")
    t = ThreadedDaemon(tmp).start()
    client = Client(t.socket, timeout=20)
    try:
        yield Env("standin", client, t.socket, threaded=t)
    finally:
        client.close()
        t.stop()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def runc_env(real_daemon: RealDaemon) -> Iterator[Env]:
    client = Client(real_daemon.socket, timeout=60)
    before = {b["id"] for b in client.list_sandboxes()}
    try:
        yield Env("runc", client, real_daemon.socket, daemon=real_daemon)
    finally:
        for box in client.list_sandboxes():
            if box["id"] not in before:
                with contextlib.suppress(errors.RuntimeError):
                    client.remove_sandbox(box["id"])
        client.close()


@pytest.fixture(params=["standin", "runc"])
def env(request: pytest.FixtureRequest) -> Env:
    return request.getfixturevalue(f"{request.param}_env")


@contextlib.contextmanager
def holder_daemon(prefix: str, host_resources: list[str]) -> Iterator[RealDaemon]:
    """``private_daemon`` for the modules that need shells held by ``kl-pty-holder``: skips
    (with the reason) where real sandboxes cannot run or the holder is not built."""
    from runtime.sessions.holder import HOLDER_BUILT

    why = real_sandboxes_available()
    if why:
        pytest.skip(why)
    if not HOLDER_BUILT.is_file():
        pytest.skip("kl-pty-holder is not built (make agent)")
    with private_daemon(prefix, host_resources, None) as d:
        yield d


@contextlib.contextmanager
def private_daemon(prefix: str, host_resources: list[str], images: Path | None) -> Iterator[RealDaemon]:
    """A real runtimed of a test module: a temp root (with a *copy* of the image store
    ``images``, so it never writes into the shared one), its own host resources (bridge,
    subnet, cgroup parent, uid range), busybox built; everything removed afterwards, and
    the daemon must have exited cleanly."""
    from runtime.sandbox.cgroups import Cgroups
    from runtime.sandbox.network import Network

    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    root.chmod(0o711)
    if images is not None:
        subprocess.run(["cp", "-a", str(images), str(root / "images")], check=True, timeout=600)
    d = RealDaemon(root, host_resources=host_resources)
    try:
        d.start()
        with Client(d.socket, timeout=60) as c:
            if not any(i["name"] == "busybox" for i in c.images()):
                c.build_image("busybox")
        yield d
    finally:
        # A test may have stopped (or killed) the daemon on purpose (a lost node, a restart):
        # its sandboxes outlive it by design and only a daemon can remove them, so start it
        # again (it re-adopts them, runtime/daemon.py reconcile) and remove them through it.
        restart_error = ""
        if d.proc is not None and d.proc.poll() is not None:
            try:
                d.start()
            except AssertionError as exc:
                restart_error = f"restarting the daemon to remove its sandboxes failed: {exc}"
        with contextlib.suppress(errors.RuntimeError), Client(d.socket) as c:
            for box in c.list_sandboxes():
                with contextlib.suppress(errors.RuntimeError):
                    c.remove_sandbox(box["id"])
        code = d.stop() if d.proc is not None and d.proc.poll() is None else 0
        logs = d.logs()
        subprocess.run(["umount", "-R", "-l", str(root)], capture_output=True, timeout=30)
        shutil.rmtree(root, ignore_errors=True)
        opts = dict(zip(host_resources[::2], host_resources[1::2], strict=True))
        Network(opts["--subnet"], opts["--bridge"]).destroy()
        cgroups = Cgroups(opts["--cgroup-parent"])
        leaked = kill_leftovers(cgroups)
        cgroups.remove_parent()
        assert not leaked, f"{len(leaked)} processes left in {opts['--cgroup-parent']} {restart_error}\n{logs}"
        assert code == 0, logs


def kill_leftovers(cgroups: Any) -> list[int]:
    """The pids still in the cgroup parent of a test daemon (a leak: every sandbox should have
    been removed); they are SIGKILLed so the leak fails one test and not the machine."""
    from runtime.sandbox.cgroups import CGROUP_ROOT

    parents = [CGROUP_ROOT / cgroups.parent] if cgroups.v2 else [m / cgroups.parent for m in cgroups.v1.values()]
    pids: set[int] = set()
    for parent in set(parents):
        if not parent.is_dir():
            continue
        for procs in parent.rglob("cgroup.procs"):
            with contextlib.suppress(OSError):
                pids.update(int(x) for x in procs.read_text().split())
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return sorted(pids)


@contextlib.contextmanager
def cleaning_client(socket: Path, timeout: float = 120) -> Iterator[Client]:
    """A client of a module's daemon that removes, afterwards, the sandboxes made meanwhile."""
    c = Client(socket, timeout=timeout)
    before = {b["id"] for b in c.list_sandboxes()}
    try:
        yield c
    finally:
        for box in c.list_sandboxes():
            if box["id"] not in before:
                with contextlib.suppress(errors.RuntimeError):
                    c.remove_sandbox(box["id"])
        c.close()
