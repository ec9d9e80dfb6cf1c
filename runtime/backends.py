"""Sandbox backends: the interface ``labs/`` and ``grader/`` program against.

``SandboxBackend`` is deliberately small and JSON-shaped, so a lab session can
store what it gets back and a backend can live in another process or on
another machine:

* lifecycle and exec are synchronous (services, Celery tasks, graders);
* PTY sessions and the port preview are ``async`` (the Channels consumers and the preview's
  async views run on a loop). The web tier reaches a sandbox only through these, with the
  backend ``scoped`` to the lab session's own credential: which runtimed (this host's socket,
  or the lab node's TLS listener) is the backend's business, never the caller's.

Sandbox info is the ``SandboxInfo`` JSON (``id, spec, status, created_at,
last_activity, ip, pid``); exec returns ``runtime.client.ExecResult`` (a
timeout is ``timed_out=True`` after the process tree was killed); errors are
``runtime.errors`` classes whatever the backend.

``NamespaceBackend``
    runtimed on this host, through ``runtime.client``.  Sessions live in the
    daemon: they survive web-process restarts and replay their scrollback.
    ``attach`` gives the terminal handoff when runtimed offers it (``DirectAttach``:
    the bytes go between this process and the shell's PTY holder, not through
    runtimed), else runtimed's WebSocket; both are ``AttachStream``s.

``KubernetesBackend`` (``runtime.placement``)
    each sandbox is asked of a Kubernetes cluster as a placeholder Pod; the runtimed of the
    node the scheduler picks builds it, and every call goes to that runtimed over TLS.

``DockerBackend``
    each sandbox is a container on a Docker Engine, through the ``docker`` SDK:
    memory/pids/CPU limits map to ``mem_limit``/``pids_limit``/``nano_cpus``
    (no swap); no outbound network unless ``allow_outbound`` is set (then the
    engine's default network; CIDR filtering is not applied); ``disk`` is not
    enforced (it needs overlay2 on xfs with pquota).  Exec uses the exec API
    with a deadline; on timeout the exec's process tree is killed from the host
    (this assumes a local engine, whose pids are visible here).  PTY sessions
    are execs with a TTY whose attach socket is held by this process, wrapped in
    the same ``runtime.sessions.pty.Session`` runtimed uses (scrollback,
    several clients, read-only observers, flow control); they live on the event
    loop of the process that created them, so a web restart ends them.
    ``last_activity`` is kept in memory per process (labels are immutable).
"""

from __future__ import annotations

import abc
import asyncio
import builtins
import contextlib
import io
import json
import logging
import os
import secrets
import signal
import socket
import tarfile
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol, cast

from runtime import errors
from runtime.client import (
    AsyncClient,
    Client,
    ExecResult,
    PreviewResponse,
    PreviewSocket,
    resolve_socket_path,
    resolve_token,
)
from runtime.sessions.pty import Attachment, Session

log = logging.getLogger(__name__)

Json = dict[str, Any]


class AttachStream(Protocol):
    """A client's end of a PTY session (what the terminal consumer pumps)."""

    async def send(self, data: bytes) -> None: ...

    async def resize(self, rows: int, cols: int) -> None: ...

    async def recv(self, timeout: float | None = None) -> bytes | Json | None: ...  # noqa: ASYNC109

    async def close(self) -> None: ...


class SandboxBackend(abc.ABC):
    name: ClassVar[str]

    # -- lifecycle (sync) ----------------------------------------------------------------------
    @abc.abstractmethod
    def create(self, spec: Mapping[str, Any]) -> Json:
        """Create and start a sandbox (setup included); returns its info."""

    @abc.abstractmethod
    def get(self, sid: str) -> Json: ...

    @abc.abstractmethod
    def list(self) -> builtins.list[Json]: ...

    @abc.abstractmethod
    def stop(self, sid: str) -> None: ...

    @abc.abstractmethod
    def remove(self, sid: str) -> None: ...

    @abc.abstractmethod
    def stats(self, sid: str) -> Json: ...

    @abc.abstractmethod
    def touch(self, sid: str) -> None: ...

    @abc.abstractmethod
    def exec(
        self,
        sid: str,
        argv: builtins.list[str],
        *,
        timeout: float = 30.0,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        stdin: bytes | str | None = None,
        max_output: int | None = None,
    ) -> ExecResult:
        """Run argv in the sandbox; a timeout comes back as ``timed_out=True`` (tree killed).
        ``max_output``: bytes kept per stream (None: the backend's own bound)."""

    # -- terminals (async) -----------------------------------------------------------------
    @abc.abstractmethod
    async def create_session(
        self,
        sid: str,
        argv: builtins.list[str] | None = None,
        *,
        rows: int = 24,
        cols: int = 80,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> Json:
        """Start a shell (the image's login shell by default; in ``cwd``, a path inside the
        sandbox, when given); returns {"session_id", ...}."""

    @abc.abstractmethod
    async def list_sessions(self, sid: str) -> builtins.list[Json]: ...

    @abc.abstractmethod
    async def get_session(self, sid: str, session_id: str) -> Json:
        """One session's info (``exited`` once its shell ended); ``SessionNotFound``."""

    @abc.abstractmethod
    async def resize(self, sid: str, session_id: str, rows: int, cols: int) -> None: ...

    @abc.abstractmethod
    async def attach(self, sid: str, session_id: str, *, read_only: bool = False) -> AttachStream:
        """Scrollback replay first, then live output; ``recv`` ends with {"type":"exit"}."""

    @abc.abstractmethod
    async def remove_session(self, sid: str, session_id: str) -> None: ...

    # -- the lab editor (sync): paths relative to the sandbox's /root ------------------------------
    def files_list(self, sid: str, path: str = "") -> Json:
        """``{"path", "entries", "truncated"}`` of one directory (``runtime.sandbox.files``)."""
        raise errors.NotAvailable(f"the {self.name} sandbox backend has no editor")

    def file_read(self, sid: str, path: str) -> Json:
        """``{"path", "content", "etag", "size", "mtime"}`` of a UTF-8 text file."""
        raise errors.NotAvailable(f"the {self.name} sandbox backend has no editor")

    def file_write(self, sid: str, path: str, content: str, etag: str | None) -> Json:
        """Save ``content`` (``etag`` of the version read; None creates; ``"*"`` overwrites)."""
        raise errors.NotAvailable(f"the {self.name} sandbox backend has no editor")

    def kube_validate(self, sid: str, objects: Sequence[Any]) -> Json:
        """Dry-run each manifest against the sandbox's lab cluster (nothing stored)."""
        raise errors.NotAvailable(f"the {self.name} sandbox backend has no lab clusters to validate against")

    # -- port preview (async) ------------------------------------------------------------------
    async def preview(
        self,
        sid: str,
        port: int,
        path: str,
        query: str,
        *,
        method: str,
        headers: Mapping[str, str],
        body: bytes,
    ) -> PreviewResponse:
        """One HTTP request to the app listening on ``port`` inside the sandbox (``path``:
        percent-encoded, checked by ``runtime.urlsafety.app_path``, no leading slash), its
        answer streamed back; runtimed's own refusals carry ``runtime.client.ERROR_HEADER``."""
        raise errors.NotAvailable(f"the {self.name} sandbox backend has no port preview")

    async def preview_ws(
        self, sid: str, port: int, path: str, query: str, *, protocols: Sequence[str] = ()
    ) -> PreviewSocket:
        """A WebSocket to the app listening on ``port`` inside the sandbox (see ``preview``)."""
        raise errors.NotAvailable(f"the {self.name} sandbox backend has no port preview")

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release this event loop's async connections (terminals, preview)."""

    def kubeconfig(self, sid: str) -> str:
        """Admin kubeconfig (YAML) of the lab cluster of a sandbox created with the
        ``kubernetes`` service, reachable from this host (graders use it)."""
        raise errors.NotAvailable(f"the {self.name} backend has no lab clusters yet")

    def docker_url(self, sid: str) -> str:
        """URL of the Docker Engine API of a sandbox created with the ``docker`` service,
        reachable from this host (graders' ``docker`` SDK clients)."""
        raise errors.NotAvailable(f"the {self.name} backend has no per-sandbox docker engines")

    def kube_connectivity(
        self,
        sid: str,
        *,
        namespace: str,
        pod: str,
        host: str,
        port: int,
        protocol: str = "TCP",
        timeout: float = 2.0,
    ) -> dict[str, str]:
        """One connection from pod ``namespace/pod`` of the sandbox's lab cluster to ``host:port``,
        made inside the pod's network namespace (``runtime.client.Client.kube_connectivity``;
        the graders' ``connectivity`` check)."""
        raise errors.NotAvailable(f"the {self.name} backend has no lab clusters yet")

    # Whether ``pause``/``resume`` keep a lab (labs offer "Pause" only where they do).
    supports_pause: ClassVar[bool] = False

    def pause(self, sid: str) -> Json:
        """Stop every process of the sandbox and keep its disk, engine and cluster state for
        ``resume``; returns its info plus ``shells`` ({session id: working directory}) and
        ``disk_image_bytes`` (what the host keeps for it)."""
        raise errors.NotAvailable(
            f"the {self.name} sandbox backend cannot pause a lab (its sandboxes cannot be stopped "
            "and started again with their state): stop it instead"
        )

    def resume(self, sid: str) -> Json:
        """Start a paused sandbox again (see ``pause``)."""
        raise errors.NotAvailable(f"the {self.name} sandbox backend cannot resume a lab: it cannot pause one")

    def mint_token(self, sid: str, role: str, ttl: float) -> str:
        """A credential for one sandbox and the operations of ``role`` (``runtime.auth.ROLES``),
        for ``ttl`` seconds; "" where the backend has no such credentials (it then trusts its
        callers, and says so in its docstring)."""
        return ""

    def scoped(self, token: str) -> SandboxBackend:
        """This backend acting with ``token`` (from ``mint_token``) instead of its own credential."""
        return self

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


def backend_from_name(name: str, **options: Any) -> SandboxBackend:
    """``namespace`` (default), ``docker`` or ``kubernetes`` (``runtime.placement``);
    options go to the constructor."""
    if name == "namespace":
        return NamespaceBackend(**options)
    if name == "docker":
        return DockerBackend(**options)
    if name == "kubernetes":
        from runtime.placement import KubernetesBackend

        return KubernetesBackend(**options)
    raise errors.BadRequest(f"unknown sandbox backend {name!r} (namespace, docker or kubernetes)")


# -- namespace: runtimed -------------------------------------------------------------------------
class NamespaceBackend(SandboxBackend):
    name = "namespace"

    def __init__(self, socket_path: str | os.PathLike[str] | None = None, token: str | None = None) -> None:
        self._socket_path = resolve_socket_path(socket_path)
        self._token = resolve_token(token)
        self._client: Client | None = None
        self._client_lock = threading.Lock()
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncClient] = weakref.WeakKeyDictionary()

    @property
    def client(self) -> Client:
        """The synchronous client, made on first use: a backend ``scoped`` for one terminal or
        one preview request only ever speaks async."""
        with self._client_lock:
            if self._client is None:
                self._client = Client(self._socket_path, token=self._token or "")
            return self._client

    def _aclient(self) -> AsyncClient:
        # an aiohttp session belongs to the loop it was made on: one per loop
        loop = asyncio.get_running_loop()
        client = self._async.get(loop)
        if client is None:
            # "" when this backend has no credential (``scoped("")``): None would make the client
            # fall back to $RUNTIME_TOKEN, a worker's admin token (runtime.client.resolve_token)
            client = self._async[loop] = AsyncClient(self._socket_path, token=self._token or "")
        return client

    def create(self, spec: Mapping[str, Any]) -> Json:
        return self.client.create_sandbox(spec)

    def get(self, sid: str) -> Json:
        return self.client.get_sandbox(sid)

    def list(self) -> builtins.list[Json]:
        return self.client.list_sandboxes()

    def stop(self, sid: str) -> None:
        self.client.stop_sandbox(sid)

    supports_pause = True

    def pause(self, sid: str) -> Json:
        return self.client.pause_sandbox(sid)

    def resume(self, sid: str) -> Json:
        return self.client.resume_sandbox(sid)

    def remove(self, sid: str) -> None:
        self.client.remove_sandbox(sid)

    def stats(self, sid: str) -> Json:
        return self.client.stats(sid)

    def touch(self, sid: str) -> None:
        self.client.touch(sid)

    def kubeconfig(self, sid: str) -> str:
        return self.client.kubeconfig(sid)

    def docker_url(self, sid: str) -> str:
        return "unix://" + self.client.docker_socket(sid)

    def mint_token(self, sid: str, role: str, ttl: float) -> str:
        return self.client.mint_token(sid, role=role, ttl=ttl)

    def scoped(self, token: str) -> NamespaceBackend:
        return NamespaceBackend(self._socket_path, token=token)

    def exec(
        self,
        sid: str,
        argv: builtins.list[str],
        *,
        timeout: float = 30.0,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        stdin: bytes | str | None = None,
        max_output: int | None = None,
    ) -> ExecResult:
        return self.client.exec(sid, argv, timeout=timeout, env=env, cwd=cwd, stdin=stdin, max_output=max_output)

    def kube_connectivity(
        self,
        sid: str,
        *,
        namespace: str,
        pod: str,
        host: str,
        port: int,
        protocol: str = "TCP",
        timeout: float = 2.0,
    ) -> dict[str, str]:
        return self.client.kube_connectivity(
            sid, namespace=namespace, pod=pod, host=host, port=port, protocol=protocol, timeout=timeout
        )

    def files_list(self, sid: str, path: str = "") -> Json:
        return self.client.files_list(sid, path)

    def file_read(self, sid: str, path: str) -> Json:
        return self.client.file_read(sid, path)

    def file_write(self, sid: str, path: str, content: str, etag: str | None) -> Json:
        return self.client.file_write(sid, path, content, etag)

    def kube_validate(self, sid: str, objects: Sequence[Any]) -> Json:
        return self.client.kube_validate(sid, objects)

    async def create_session(
        self,
        sid: str,
        argv: builtins.list[str] | None = None,
        *,
        rows: int = 24,
        cols: int = 80,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> Json:
        return await self._aclient().create_session(sid, argv, rows=rows, cols=cols, env=env, cwd=cwd)

    async def list_sessions(self, sid: str) -> builtins.list[Json]:
        return await self._aclient().list_sessions(sid)

    async def get_session(self, sid: str, session_id: str) -> Json:
        return await self._aclient().get_session(sid, session_id)

    async def resize(self, sid: str, session_id: str, rows: int, cols: int) -> None:
        await self._aclient().resize(sid, session_id, rows, cols)

    async def attach(self, sid: str, session_id: str, *, read_only: bool = False) -> AttachStream:
        return await self._aclient().attach(sid, session_id, read_only=read_only)

    async def remove_session(self, sid: str, session_id: str) -> None:
        await self._aclient().remove_session(sid, session_id)

    async def preview(
        self,
        sid: str,
        port: int,
        path: str,
        query: str,
        *,
        method: str,
        headers: Mapping[str, str],
        body: bytes,
    ) -> PreviewResponse:
        return await self._aclient().preview(sid, port, path, query, method=method, headers=headers, body=body)

    async def preview_ws(
        self, sid: str, port: int, path: str, query: str, *, protocols: Sequence[str] = ()
    ) -> PreviewSocket:
        return await self._aclient().preview_ws(sid, port, path, query, protocols=protocols)

    async def aclose(self) -> None:
        """Close this loop's async client."""
        client = self._async.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.close()

    def close(self) -> None:
        with self._client_lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()


# -- docker ----------------------------------------------------------------------------------------
KEEPALIVE = ["sh", "-c", "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done"]
LABEL = "io.kubelab.sandbox"


def kill_host_tree(pid: int) -> None:
    """SIGKILL ``pid`` and all its descendants, found through /proc (stopped first: no escapes)."""
    children: dict[int, builtins.list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, []))
    for sig in (signal.SIGSTOP, signal.SIGKILL):
        for p in tree:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, sig)


class _DockerPty:
    """A docker exec's TTY attach socket, seen as a PTY master by ``Session``."""

    def __init__(self, backend: DockerBackend, exec_id: str, fd: int) -> None:
        self.backend = backend
        self.exec_id = exec_id
        self.pty_master: int | None = fd

    def kill_tree(self) -> None:
        pid = self.backend._exec_pid(self.exec_id)
        if pid:
            kill_host_tree(pid)


class _LocalAttach:
    """AttachStream over an in-process ``Attachment``."""

    def __init__(self, att: Attachment) -> None:
        self._att = att

    async def send(self, data: bytes) -> None:
        self._att.write(data)

    async def resize(self, rows: int, cols: int) -> None:
        self._att.resize(rows, cols)

    async def recv(self, timeout: float | None = None) -> bytes | Json | None:  # noqa: ASYNC109
        item = await asyncio.wait_for(self._att.get(), timeout)
        if isinstance(item, bytes):
            self._att.sent(len(item))
        return item

    async def close(self) -> None:
        self._att.detach()


class DockerBackend(SandboxBackend):
    name = "docker"

    def __init__(
        self,
        base_url: str | None = None,
        *,
        images: Mapping[str, str] | None = None,
        prefix: str = "kubelab-",
        timeout: float = 60.0,
    ) -> None:
        """``images`` maps spec image names to engine image references (default: the same)."""
        import docker

        self._docker_mod = docker
        self.docker = docker.DockerClient(base_url=base_url, timeout=int(timeout))
        self.api = self.docker.api
        self.images = dict(images or {})
        self.prefix = prefix
        self._activity: dict[str, float] = {}
        self._sessions: dict[str, dict[str, Session]] = {}
        self._lock = threading.Lock()

    # -- helpers ---------------------------------------------------------------------------
    def _name(self, sid: str) -> str:
        return f"{self.prefix}{sid}"

    def _container(self, sid: str) -> Any:
        try:
            c = self.docker.containers.get(self._name(sid))
        except self._docker_mod.errors.NotFound:
            raise errors.SandboxNotFound(f"no sandbox {sid} on the docker engine") from None
        if c.labels.get(LABEL) != "1":
            raise errors.SandboxNotFound(f"container {self._name(sid)} is not a kubelab sandbox")
        return c

    def _info(self, c: Any) -> Json:
        labels = c.labels
        sid = c.name.removeprefix(self.prefix)
        created = float(labels.get("io.kubelab.created_at", "0"))
        state = c.attrs.get("State", {})
        status = {"running": "running", "exited": "stopped", "created": "stopped"}.get(c.status, "dead")
        networks = c.attrs.get("NetworkSettings", {}).get("Networks") or {}
        ip = next((n.get("IPAddress") for n in networks.values() if n.get("IPAddress")), None)
        return {
            "id": sid,
            "spec": json.loads(labels.get("io.kubelab.spec", "{}")),
            "status": status,
            "created_at": created,
            "last_activity": self._activity.get(sid, created),
            "ip": ip,
            "pid": state.get("Pid") or None,
        }

    def _exec_pid(self, exec_id: str) -> int | None:
        try:
            return cast(int | None, self.api.exec_inspect(exec_id).get("Pid") or None)
        except self._docker_mod.errors.APIError:
            return None

    def _wrap(self, what: str, e: Exception) -> errors.RuntimeError:
        d = self._docker_mod.errors
        if isinstance(e, d.ImageNotFound):
            return errors.ImageNotFound(f"{what}: {e.explanation}")
        if isinstance(e, d.NotFound):
            return errors.SandboxNotFound(f"{what}: {e.explanation}")
        if isinstance(e, d.APIError):
            return errors.RuntimeError(f"{what}: docker engine: {e.explanation}")
        return errors.RuntimeError(f"{what}: {e}")

    # -- lifecycle -------------------------------------------------------------------------
    def create(self, spec: Mapping[str, Any]) -> Json:
        from runtime.sandbox.spec import SandboxSpec

        s = SandboxSpec.from_json(dict(spec))
        if s.services:
            raise errors.NotAvailable(f"service(s) {', '.join(s.services)} not available yet in the docker backend")
        sid = secrets.token_hex(6)
        now = time.time()
        labels = {
            LABEL: "1",
            "io.kubelab.spec": json.dumps(s.to_json()),
            "io.kubelab.created_at": repr(now),
        }
        labels.update({f"io.kubelab.label.{k}": v for k, v in s.labels.items()})
        ref = self.images.get(s.image, s.image)
        try:
            # never pull: the engine may have no registry access, and we must not reach out
            self.docker.images.get(ref)
        except self._docker_mod.errors.ImageNotFound:
            raise errors.ImageNotFound(
                f"image {ref!r} is not on the docker engine; load it there first (docker load / docker import)"
            ) from None
        except Exception as e:
            raise self._wrap(f"looking up image {ref!r}", e) from None
        try:
            c = self.docker.containers.create(
                ref,
                KEEPALIVE,
                name=self._name(sid),
                hostname=s.hostname or f"sandbox-{sid[:8]}",
                detach=True,
                environment=dict(s.env),
                labels=labels,
                mem_limit=s.memory,
                memswap_limit=s.memory,
                pids_limit=s.pids,
                nano_cpus=int(s.cpus * 1e9),
                network_mode="bridge" if s.allow_outbound else "none",
                stop_signal="SIGTERM",
            )
        except Exception as e:
            raise self._wrap(f"creating sandbox from {s.image!r}", e) from None
        try:
            c.start()
        except Exception as e:
            with contextlib.suppress(Exception):
                c.remove(force=True)
            raise self._wrap(f"starting sandbox {sid}", e) from None
        self._activity[sid] = now
        try:
            c.exec_run(["mkdir", "-p", "/root"])
            if s.files:
                c.put_archive("/root", _tar_of(s.files))
            if s.setup:
                r = self.exec(sid, ["sh", "-c", s.setup], timeout=300)
                if not r.ok:
                    raise errors.RuntimeError(
                        f"setup script failed (exit {r.exit_code}"
                        f"{', timed out' if r.timed_out else ''}): {r.stderr_text[-2000:]}"
                    )
        except BaseException:
            with contextlib.suppress(Exception):
                c.remove(force=True)
            raise
        c.reload()
        return self._info(c)

    def get(self, sid: str) -> Json:
        return self._info(self._container(sid))

    def list(self) -> builtins.list[Json]:
        found = self.docker.containers.list(all=True, filters={"label": f"{LABEL}=1"})
        return [self._info(c) for c in found if c.name.startswith(self.prefix)]

    def stop(self, sid: str) -> None:
        self._drop_sessions(sid)
        self._container(sid).stop(timeout=5)

    def remove(self, sid: str) -> None:
        c = self._container(sid)
        self._drop_sessions(sid)
        try:
            c.remove(force=True)
        except Exception as e:
            raise self._wrap(f"removing sandbox {sid}", e) from None
        self._activity.pop(sid, None)

    def stats(self, sid: str) -> Json:
        c = self._container(sid)
        spec = json.loads(c.labels.get("io.kubelab.spec", "{}"))
        st = c.stats(stream=False)
        mem = st.get("memory_stats") or {}
        pids = st.get("pids_stats") or {}
        cpu = (st.get("cpu_stats") or {}).get("cpu_usage") or {}
        return {
            "memory_bytes": int(mem.get("usage", 0)),
            "memory_limit": int(mem.get("limit", spec.get("memory", 0))),
            "pids": int(pids.get("current", 0)),
            "pids_limit": int(pids.get("limit", spec.get("pids", 0))),
            "cpu_usage_ns": int(cpu.get("total_usage", 0)),
            "disk_bytes": 0,
            "disk_limit": int(spec.get("disk", 0)),
        }

    def touch(self, sid: str) -> None:
        self._container(sid)
        self._activity[sid] = time.time()

    # -- exec ------------------------------------------------------------------------------
    def exec(
        self,
        sid: str,
        argv: builtins.list[str],
        *,
        timeout: float = 30.0,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        stdin: bytes | str | None = None,
        max_output: int | None = None,
    ) -> ExecResult:
        max_output = max_output or 1024 * 1024
        if not argv:
            raise errors.BadRequest("argv must be a non-empty list of strings")
        c = self._container(sid)
        start = time.monotonic()
        try:
            eid = self.api.exec_create(c.id, argv, stdin=True, environment=dict(env or {}), workdir=cwd or "/root")[
                "Id"
            ]
            sock = self.api.exec_start(eid, socket=True)
        except Exception as e:
            raise self._wrap(f"exec in {sid}", e) from None
        raw: socket.socket = sock._sock
        data = stdin.encode() if isinstance(stdin, str) else (stdin or b"")
        out = {1: bytearray(), 2: bytearray()}
        truncated = {1: False, 2: False}

        def pump() -> None:
            from docker.utils.socket import frames_iter

            with contextlib.suppress(OSError):
                if data:
                    raw.sendall(data)
                raw.shutdown(socket.SHUT_WR)  # stdin EOF
            with contextlib.suppress(Exception):
                for stream, chunk in frames_iter(sock, tty=False):
                    buf = out.get(stream)
                    if buf is None:
                        continue
                    room = max_output - len(buf)
                    buf += chunk[: max(room, 0)]
                    if len(chunk) > room:
                        truncated[stream] = True

        t = threading.Thread(target=pump, daemon=True, name=f"exec-{eid[:8]}")
        t.start()
        t.join(timeout)
        timed_out = t.is_alive()
        if timed_out:
            pid = self._exec_pid(eid)
            if pid:
                kill_host_tree(pid)
            t.join(10)
        with contextlib.suppress(OSError):
            sock.close()
        code: int | None = None
        for _ in range(100):
            info = self.api.exec_inspect(eid)
            if not info.get("Running"):
                code = info.get("ExitCode")
                break
            time.sleep(0.02)
        if timed_out and code is not None and code >= 128:
            code = -(code - 128)  # the runtimed convention: -signal
        return ExecResult(
            exit_code=code,
            stdout=bytes(out[1]),
            stderr=bytes(out[2]),
            stdout_truncated=truncated[1],
            stderr_truncated=truncated[2],
            timed_out=timed_out,
            duration_ms=(time.monotonic() - start) * 1000,
        )

    # -- sessions --------------------------------------------------------------------------
    def _session(self, sid: str, session_id: str) -> Session:
        s = self._sessions.get(sid, {}).get(session_id)
        if s is None:
            raise errors.SessionNotFound(f"no session {session_id} in sandbox {sid}")
        return s

    def _drop_sessions(self, sid: str) -> None:
        for s in self._sessions.pop(sid, {}).values():
            with contextlib.suppress(Exception):
                s.spawned.kill_tree()

    def _start_tty_exec(
        self, sid: str, argv: builtins.list[str], env: Mapping[str, str], rows: int, cols: int, cwd: str = "/root"
    ) -> tuple[str, int]:
        c = self._container(sid)
        try:
            eid = self.api.exec_create(c.id, argv, stdin=True, tty=True, environment=dict(env), workdir=cwd)["Id"]
            sock = self.api.exec_start(eid, socket=True, tty=True)
            fd = os.dup(sock._sock.fileno())
            sock.close()
            with contextlib.suppress(Exception):
                self.api.exec_resize(eid, height=rows, width=cols)
        except errors.RuntimeError:
            raise
        except Exception as e:
            raise self._wrap(f"starting a shell in {sid}", e) from None
        return eid, fd

    async def create_session(
        self,
        sid: str,
        argv: builtins.list[str] | None = None,
        *,
        rows: int = 24,
        cols: int = 80,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> Json:
        full_env = {"TERM": "xterm-256color", **dict(env or {})}
        argv = list(argv or ["/bin/sh", "-l"])
        eid, fd = await asyncio.to_thread(self._start_tty_exec, sid, argv, full_env, rows, cols, cwd or "/root")
        loop = asyncio.get_running_loop()

        async def wait_exit(session: Session) -> int:
            await session.eof.wait()
            for _ in range(250):
                info = await asyncio.to_thread(self.api.exec_inspect, eid)
                if not info.get("Running"):
                    return int(info.get("ExitCode") or 0)
                await asyncio.sleep(0.02)
            return -1

        def resize(r: int, c: int) -> None:
            loop.run_in_executor(None, lambda: self.api.exec_resize(eid, height=r, width=c))

        session = Session(
            sandbox_id=sid,
            session_id=eid[:12],
            argv=argv,
            spawned=_DockerPty(self, eid, fd),
            rows=rows,
            cols=cols,
            on_activity=lambda: self._activity.__setitem__(sid, time.time()),
            wait_exit=wait_exit,
            resize_hook=resize,
        )
        self._sessions.setdefault(sid, {})[session.session_id] = session
        return session.info()

    async def list_sessions(self, sid: str) -> builtins.list[Json]:
        await asyncio.to_thread(self._container, sid)
        return [s.info() for s in self._sessions.get(sid, {}).values()]

    async def get_session(self, sid: str, session_id: str) -> Json:
        return self._session(sid, session_id).info()

    async def resize(self, sid: str, session_id: str, rows: int, cols: int) -> None:
        self._session(sid, session_id).resize(rows, cols)

    async def attach(self, sid: str, session_id: str, *, read_only: bool = False) -> AttachStream:
        return _LocalAttach(self._session(sid, session_id).attach(read_only=read_only))

    async def remove_session(self, sid: str, session_id: str) -> None:
        session = self._session(sid, session_id)
        await session.terminate()
        self._sessions.get(sid, {}).pop(session_id, None)

    def close(self) -> None:
        self.docker.close()


def _tar_of(files: Mapping[str, str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for rel, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(rel)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = int(time.time())
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()
