"""``DockerService``: runtimed's hook for sandboxes created with ``services: ["docker"]``.

For each such sandbox runtimed keeps one ``Engine`` (engine/) and serves the Docker
Engine API (http/) for it on two unix sockets, both answered by the same app:

In the sandbox
    ``D/svc-docker/docker.sock``. The directory ``D/svc-docker`` holds nothing else and is
    bind-mounted read-only at ``/run/kubelab-docker`` when runc creates the sandbox
    (``mounts``), so a runtimed restart may re-create the socket and the sandbox sees the
    new one; ``start`` links ``/var/run/docker.sock`` to it from inside (the student may
    remove the link, as they may on any Docker host). The socket belongs to the sandbox's
    mapped root, mode 0660: root inside connects, nobody else on the host does (the
    directory is root's, 0755, and the socket is not the platform's user's).
On the host (graders)
    ``<runtimed socket dir>/docker/<id>.sock``, mode 0660 with runtimed's ``--group``, as
    runtimed's own socket. ``GET /v1/sandboxes/{id}/docker`` names it, so a Celery worker's
    ``docker`` SDK client (the ``image`` check) talks to the student's own engine.

Sandboxes get ``DOCKER_BUILDKIT=0`` (``env``): the docker CLI then uses the classic
builder API the engine implements. ``keep_disk``: the sandbox's ext4 stays mounted, and
the engine keeps everything on it (``D/disk/engine``), within the sandbox's disk quota.

Lifecycle: ``start`` (worker thread, once the sandbox runs) builds the engine and opens
both sockets; ``stop`` closes them and the engine (every container is killed; on removal
their mounts go too, before the manager unmounts the disk). When runtimed restarts,
``adopt`` re-creates the engines of running sandboxes (their containers kept running;
the engine re-adopts them from its state on disk) and re-opens their sockets.
``pause`` (a paused sandbox, ``SandboxManager.pause``) notes on the engine's disk which
containers ran, then stops as ``stop``; the ``start`` of the resume starts them again, as
``docker start`` would (their processes start afresh; files, images and volumes were kept).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import grp
import json
import logging
import os
import re
import subprocess
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from runtime import auth, errors
from runtime.dockerapi import NAME, SANDBOX_SOCKET, SANDBOX_SOCKET_DIR, SOCKET_DIR
from runtime.dockerapi.engine import Engine
from runtime.dockerapi.http.api import DockerAPI, make_app
from runtime.dockerapi.http.server import Request
from runtime.images.store import ImageStore
from runtime.loops import call_on_loop
from runtime.unixsock import bind_unix

log = logging.getLogger("runtime.dockerapi.service")

LOOP_TIMEOUT = 60.0
LINK_TIMEOUT = 30.0
# on the engine's disk: the containers that ran when the sandbox was paused (DockerService.pause)
RESUME_FILE = "paused-running.json"
# /var/run is a symlink to /run on Debian; busybox images may have neither.
LINK_SCRIPT = f"[ -e /var/run ] || [ -L /var/run ] || mkdir -p /var/run; ln -sfn {SANDBOX_SOCKET} /var/run/docker.sock"

T = TypeVar("T")
BACKLOG = 128
# answered on the host socket without a credential (docker-py asks /version before it can be
# given headers): version strings only
_OPEN_ON_HOST = re.compile(r"(/v[0-9.]+)?/(_ping|version)")


@dataclass
class _Served:
    engine: Engine
    api: DockerAPI
    host_socket: Path


class DockerService:
    """Per-sandbox Docker engines of one runtimed; implements the manager's service hook."""

    env = {"DOCKER_BUILDKIT": "0"}
    keep_disk = True

    def __init__(
        self,
        manager: Any,
        catalog: ImageStore,
        host_dir: Path,
        *,
        group: str | None = None,
        authority: auth.Authority | None = None,
    ) -> None:
        self.authority = authority
        self.manager = manager
        self.catalog = catalog
        self.host_dir = host_dir
        self.group = group
        self.loop: asyncio.AbstractEventLoop | None = None
        self._served: dict[str, _Served] = {}

    # -- daemon side ---------------------------------------------------------------------------
    async def start_server(self) -> None:
        self.loop = asyncio.get_running_loop()
        await asyncio.to_thread(self._prepare_host_dir)

    async def close(self) -> None:
        """Close every socket; engines' containers keep running (the next runtimed adopts them)."""
        for sid in list(self._served):
            served = self._served.pop(sid)
            await served.api.close()
            await asyncio.to_thread(served.engine.detach)

    def adopt(self, sandboxes: list[tuple[str, int | None, str]]) -> None:
        """After a restart (worker thread): serve again every running sandbox with the service."""
        for sid, pid, status in sandboxes:
            if status == "running" and pid is not None:
                try:
                    self._open(sid)
                except errors.RuntimeError as e:
                    log.warning("sandbox %s: docker engine not restored: %s", sid, e)
        known = {sid for sid, _pid, _status in sandboxes}
        for stale in self.host_dir.glob("*.sock"):
            if stale.stem not in known:
                stale.unlink(missing_ok=True)

    def socket_for_host(self, sid: str) -> str:
        served = self._served.get(sid)
        if served is None:
            raise errors.NotAvailable(f"sandbox {sid} has no running docker engine")
        return str(served.host_socket)

    def engine(self, sid: str) -> Engine:
        served = self._served.get(sid)
        if served is None:
            raise errors.NotAvailable(f"sandbox {sid} has no running docker engine")
        return served.engine

    # -- the manager's hook (worker threads) ---------------------------------------------------
    def mounts(self, sid: str, sandbox_dir: Path) -> list[dict[str, Any]]:
        d = sandbox_dir / SOCKET_DIR
        d.mkdir(mode=0o755, exist_ok=True)
        return [
            {
                "destination": SANDBOX_SOCKET_DIR,
                "type": "bind",
                "source": str(d),
                "options": ["bind", "ro", "nosuid", "nodev", "noexec"],
            }
        ]

    def start(self, sid: str, pid: int) -> dict[str, str]:
        self._open(sid)
        # A sandbox being created gets the link from the host, with no process in it (no
        # `runc exec` on the ready path: runtime/sandbox/placefiles.py); a resumed one from inside.
        if not self.manager.place_symlink(sid, "/var/run/docker.sock", SANDBOX_SOCKET):
            self._link_from_inside(sid)
        self._restart_paused(sid)
        return {}

    def _link_from_inside(self, sid: str) -> None:
        sp = self.manager.spawn(sid, ["/bin/sh", "-c", LINK_SCRIPT], tty=False)
        try:
            _out, err = sp.proc.communicate(timeout=LINK_TIMEOUT)
        except subprocess.TimeoutExpired:
            sp.kill_tree()
            raise errors.RuntimeError("linking /var/run/docker.sock in the sandbox timed out") from None
        if sp.proc.returncode != 0:
            why = err.decode(errors="replace").strip()[-300:]
            raise errors.RuntimeError(f"could not link /var/run/docker.sock in the sandbox: {why}")

    def pause(self, sid: str) -> None:
        """The sandbox is being paused (``SandboxManager.pause``): note which containers run,
        on the engine's own disk, then stop as for a stopped sandbox (every container is
        killed, all state kept). ``start`` after the resume starts them again as
        ``docker start`` does. A pod's containers are left to the lab cluster's kubelet."""
        served = self._served.get(sid)
        if served is not None:
            running = [
                str(c["Id"]) for c in served.engine.list() if "io.kubernetes.pod.uid" not in (c.get("Labels") or {})
            ]
            path = served.engine.root / RESUME_FILE
            tmp = path.with_name(path.name + ".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump({"running": running}, fh)
            tmp.replace(path)
        self.stop(sid, remove=False)

    def _restart_paused(self, sid: str) -> None:
        """After a resume: start the containers that ran when the sandbox was paused."""
        served = self._served.get(sid)
        if served is None:
            return
        path = served.engine.root / RESUME_FILE
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            return
        with os.fdopen(fd) as fh:
            try:
                running = json.load(fh).get("running") or []
            except (ValueError, AttributeError):
                running = []
        for cid in running:
            try:
                served.engine.start(str(cid))
            except errors.RuntimeError as e:  # removed meanwhile, or its start fails: as docker start
                log.warning("sandbox %s: container %s not restarted after the resume: %s", sid, str(cid)[:12], e)
        path.unlink(missing_ok=True)

    def stop(self, sid: str, *, remove: bool) -> None:
        served = self._served.get(sid)
        if served is not None:
            self._on_loop(self._close(sid))
            served.engine.close(remove=remove)
        else:  # not served by this runtimed (e.g. it failed to adopt): still clean up
            with contextlib.suppress(errors.RuntimeError):
                Engine(self.manager.service_context(sid), self.catalog).close(remove=remove)
        (self.host_dir / f"{sid}.sock").unlink(missing_ok=True)

    # -- internals -----------------------------------------------------------------------------
    def _prepare_host_dir(self) -> None:
        """Create the graders' socket directory, 0750 root:group. Its parent may belong to
        the platform's service user (``var/run`` under ``make run``): never follow a symlink
        put there, and refuse a directory runtimed does not own."""
        self.host_dir.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            self.host_dir.mkdir(mode=0o750)
        try:
            fd = os.open(self.host_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as e:
            raise errors.Conflict(f"{self.host_dir} is not a directory ({e.strerror}); remove it") from None
        try:
            if os.fstat(fd).st_uid != os.geteuid():
                raise errors.Conflict(f"{self.host_dir} is not owned by runtimed's user; remove it")
            os.fchmod(fd, 0o750)
            if self.group:
                os.fchown(fd, -1, grp.getgrnam(self.group).gr_gid)
        finally:
            os.close(fd)

    def _open(self, sid: str) -> None:
        ctx = self.manager.service_context(sid)
        if sid in self._served:
            return
        engine = Engine(ctx, self.catalog)
        try:
            self._on_loop(self._serve(sid, engine, ctx.dir / SOCKET_DIR / "docker.sock", ctx.uid_base))
        except BaseException:
            engine.close(remove=False)
            raise

    async def _serve(self, sid: str, engine: Engine, inside: Path, uid_base: int) -> None:
        host = self.host_dir / f"{sid}.sock"
        api = make_app(engine)
        try:
            inside.parent.mkdir(mode=0o755, exist_ok=True)
            gid = grp.getgrnam(self.group).gr_gid if self.group else -1
            await api.serve_socket(bind_unix(inside, uid=uid_base, gid=uid_base))
            # the host side is for graders holding this sandbox's token (runtime.auth), not for
            # every process of the platform's group
            await api.serve_socket(bind_unix(host, gid=gid), guard=functools.partial(self._authorize, sid))
        except BaseException:
            await api.close()
            raise
        self._served[sid] = _Served(engine, api, host)
        log.info("sandbox %s: docker engine served", sid)

    def _authorize(self, sid: str, req: Request) -> None:
        if self.authority is None:
            return
        if req.method in ("GET", "HEAD") and _OPEN_ON_HOST.fullmatch(req.path):
            return  # the SDK's version negotiation, before it can send its headers; tells nothing
        self.authority.check(req.headers.get("authorization"), auth.DOCKER, sid)

    async def _close(self, sid: str) -> None:
        served = self._served.pop(sid, None)
        if served is not None:
            await served.api.close()

    def _on_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        return call_on_loop(self.loop, coro, what="docker service", timeout=LOOP_TIMEOUT)


async def start_for_daemon(daemon: Any, host_dir: Path, *, group: str | None = None) -> DockerService:
    """Start the service in runtimed: register the manager's hook, re-serve re-adopted
    sandboxes, expose it to the API (``GET /v1/sandboxes/{id}/docker``)."""
    svc = DockerService(daemon.manager, daemon.images, host_dir, group=group, authority=daemon.authority)
    await svc.start_server()
    try:
        await asyncio.to_thread(daemon.manager.register_service, NAME, svc)
    except BaseException:
        await svc.close()
        raise
    daemon.docker = svc
    return svc
