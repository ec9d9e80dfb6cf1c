"""A real sandbox with the docker service's disk, and Engines on it, for the engine's tests.

``docker_sandbox`` (module scope) starts a manager (``make_manager(tag)``) and one sandbox
with ``services: ["docker"]``. The service hook registered here is a stand-in for
``DockerService`` (which is not what these tests are about): it only asks the manager
to keep the sandbox's disk mounted (``keep_disk``), and the tests drive ``Engine``
directly on ``SandboxManager.service_context``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from runtime import errors
from runtime.dockerapi.engine import Engine
from runtime.sandbox.manager import SandboxManager
from runtime.sandbox.spec import SandboxContext, SandboxSpec
from tests.runtime.sandbox_helpers import destroy_manager, make_manager, run_in


class KeepDiskHook:
    """Stand-in for DockerService: keeps the disk mounted, serves nothing."""

    keep_disk = True

    def start(self, sid: str, pid: int) -> dict[str, str]:
        return {}

    def stop(self, sid: str, *, remove: bool) -> None:
        return None


@dataclass
class DockerSandbox:
    mgr: SandboxManager
    sid: str
    ctx: SandboxContext

    def sh(self, script: str, timeout: float = 60) -> tuple[int, str, str]:
        """Run a shell script inside the sandbox (not in a container)."""
        return run_in(self.mgr, self.sid, script, timeout=timeout)


@contextlib.contextmanager
def docker_sandbox(tag: int, *, memory: int = 256 * 2**20, disk: int = 2**30) -> Iterator[DockerSandbox]:
    mgr = make_manager(tag)
    mgr.service_hooks["docker"] = KeepDiskHook()
    try:
        info = mgr.create(SandboxSpec(image="busybox", services=("docker",), memory=memory, disk=disk))
        yield DockerSandbox(mgr, info.id, mgr.service_context(info.id))
    finally:
        destroy_manager(mgr)


@contextlib.contextmanager
def engine_on(sb: DockerSandbox) -> Iterator[Engine]:
    """An Engine for the test; every container it made is gone afterwards."""
    eng = Engine(sb.ctx, sb.mgr.images)  # type: ignore[arg-type]
    try:
        yield eng
    finally:
        for c in eng.list(all=True):
            with contextlib.suppress(errors.RuntimeError):
                eng.remove(c["Id"], force=True, volumes=True)


def output(eng: Engine, cid: str) -> tuple[str, str]:
    """(stdout, stderr) of a container's log."""
    out, err = b"", b""
    for s, data in eng.logs(cid, follow=False, stdout=True, stderr=True):
        if s == 1:
            out += data
        else:
            err += data
    return out.decode(), err.decode()


def run(eng: Engine, body: dict[str, object]) -> tuple[str, int]:
    """docker run without -d: create, start, wait; returns (id, exit code)."""
    cid, _ = eng.create(body)
    eng.start(cid)
    return cid, eng.wait(cid)
