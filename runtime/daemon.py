"""runtimed: the runtime's JSON HTTP API on a unix socket.

Protocol
    HTTP/1.1 over a unix socket (mode 0660; its directory is created 0750),
    every path under ``/v1``.  Requests and responses are JSON, except image
    import/export (a tar body) and image build (chunked NDJSON progress).
    Errors are ``{"error": code, "message": text}`` with the HTTP status of the
    ``runtime.errors`` class whose ``code`` it is; ``runtime.client`` raises
    that class again on the far side.

    GET    /v1/healthz
    GET    /v1/images                          {"images": [ImageConfig...]}
    POST   /v1/images/{name}/build             NDJSON: {"type":"progress","line"}..., then
                                               {"type":"done","image":{...}} or {"type":"error",...}
    POST   /v1/images/import?name=N            body: OCI layout tar  -> {"image": ...}
    GET    /v1/images/{name}/export            -> OCI layout tar
    DELETE /v1/images/{name}
    POST   /v1/sandboxes                       SandboxSpec JSON -> SandboxInfo (201)
    GET    /v1/sandboxes                       {"sandboxes": [SandboxInfo...]}
    GET    /v1/sandboxes/{id}                  SandboxInfo
    GET    /v1/sandboxes/{id}/stats            {memory_bytes, ..., "sessions": n}
    POST   /v1/sandboxes/{id}/stop | /touch
    POST   /v1/sandboxes/{id}/pause            (admin) -> SandboxInfo + {"shells": {session id: cwd},
                                               "disk_image_bytes"}: every process stopped (shells,
                                               containers, pods), the lab cluster unloaded, the disk
                                               kept (SandboxManager.pause); each shell's working
                                               directory is read from /proc before it ends
    POST   /v1/sandboxes/{id}/resume           (admin) -> SandboxInfo: the same sandbox started again
                                               on its disk; containers that ran are started, the lab
                                               cluster's kubelet recreates the Pods
    DELETE /v1/sandboxes/{id}
    GET    /v1/sandboxes/{id}/kubeconfig       {cluster, server, kubeconfig}: the admin kubeconfig of
                                               the sandbox's lab cluster, for the host (graders);
                                               only with services: ["kubernetes"] (runtime.kube.service)
    POST   /v1/sandboxes/{id}/kube-users       {user, groups=[], ttl_seconds?} -> {cluster, user, kubeconfig,
                                               kubeconfig_inside}: a token for a named user (RBAC applies)
    POST   /v1/sandboxes/{id}/kube/connectivity {namespace, pod, host, port, protocol="TCP"|"UDP", timeout=2}
                                               -> {result: open|refused|timeout|unreachable|error, detail}:
                                               one connection from inside that pod's network namespace
                                               (op exec; runtime.kube.node.netpol.probe)
    POST   /v1/sandboxes/{id}/kube/validate    {objects: [manifest, ...]} -> {results: [{code, status, warnings}]}:
                                               each a dry run (dryRun=All, fieldValidation=Strict) against
                                               the sandbox's lab cluster; nothing stored (op validate: the
                                               lab editor; runtime.kube.apiserver.dryrun)
    GET    /v1/sandboxes/{id}/docker           {socket}: host path of the sandbox's Docker Engine API
                                               socket (graders); only with services: ["docker"]
                                               (runtime.dockerapi.service)
    *      /v1/sandboxes/{id}/kube-api/<path>  the sandbox's lab-cluster API relayed with the cluster's
                                               grader credential (op kubeconfig); plain HTTP, no
                                               upgrades; <path> checked as data (runtime.relay)
    *      /v1/sandboxes/{id}/docker-api/<path> the sandbox's Docker Engine API relayed (op docker)
    POST   /v1/sandboxes/{id}/exec             {argv, timeout=30, env, cwd, stdin, stdin_encoding,
                                                encoding="utf-8"|"base64", max_output}
                                               -> {exit_code, stdout, stderr, encoding,
                                                   stdout_truncated, stderr_truncated,
                                                   timed_out, duration_ms}
    GET    /v1/sandboxes/{id}/exec/stream      WebSocket, streaming non-tty exec (below)
    POST   /v1/sandboxes/{id}/sessions         {argv?, rows, cols, env, cwd} -> session info
    GET    /v1/sandboxes/{id}/sessions         {"sessions": [...]}
    GET    /v1/sandboxes/{id}/sessions/{sid}
    DELETE /v1/sandboxes/{id}/sessions/{sid}
    POST   /v1/sandboxes/{id}/sessions/{sid}/resize   {rows, cols}
    GET    /v1/sandboxes/{id}/sessions/{sid}/attach[?mode=ro]   WebSocket (below)

    Beside it, ``<socket>.handoff``: the terminal handoff broker (below), the same attach
    without runtimed in the data path.

Exec timeouts are reported, not raised: ``timed_out: true`` with whatever
output came before the process tree was killed (``exit_code`` is then the
kill status, e.g. -9, or null if the process could not be reaped).  Session
input and output count as activity (``SandboxManager.touch``), at most once a
second per sandbox; ``spawn`` itself also touches (so an exec counts too).

Attach WebSocket
    Binary frames both ways are PTY bytes.  Text frames are JSON control:
    client → server ``{"type":"resize","rows":R,"cols":C}``; server → client
    ``{"type":"exit","code":N}`` (then close: the server lets the client close
    first, for up to CLOSE_GRACE seconds), ``{"type":"error",...}``, and
    ``{"type":"closing"}`` when the daemon shuts down.  On connect the server
    first sends the scrollback replay, then live output.  With ``mode=ro``
    input and resizes are dropped.  Flow control is described in
    ``runtime.sessions``.

Terminal handoff
    ``<socket>.handoff`` is an ``AF_UNIX`` ``SOCK_SEQPACKET`` socket with the API socket's
    owner, group and mode. It hands a client a socket connected straight to a PTY
    session's holder (``runtime.sessions.holder``, protocol v2), so the session's bytes
    never pass through runtimed's loop, which also serves every sandbox's Docker API and
    lab cluster (issue #13), and the stream outlives a runtimed restart. One request per
    connection, one datagram of JSON of at most 8 KiB, sent within HANDOFF_TIMEOUT seconds
    (else the connection is closed unanswered)::

        {"authorization": "Bearer <token>", "sandbox": ID, "session": SID, "mode": "rw"|"ro"}

    authorized as the attach route is (op ``terminal`` on that sandbox; ids checked as
    path segments are: no ``.``/``..``, no ``/``; the session must be that sandbox's).
    The answer is one datagram: ``{"ok": true}`` with exactly one fd in ``SCM_RIGHTS``,
    or ``{"error": code, "message": text, "status": n}`` with none (``status`` the
    route's HTTP status). ``not_offered`` (409) means this session cannot be handed off
    (no holder, or one that only speaks v1, or it has exited): attach with the WebSocket.
    Requests are read with a plain ``recv``: fds a client sends are closed by the kernel,
    never kept. The handed socket carries the holder's datagrams ('H' hello, 'O' output,
    'E' exit; 'I' input and 'R' resize back, ignored for ``ro``); ``runtime.client``'s
    ``DirectAttach`` reads them. runtimed keeps its own connection to the holder
    (scrollback, exit) and never sees the client's input.

Exec stream WebSocket
    The client's first text frame is ``{"argv", "env", "cwd", "timeout"}``.
    Then binary frames client → server are stdin, and the text frame
    ``{"type":"eof"}`` closes stdin.  Server → client binary frames start with
    one byte, 1 = stdout or 2 = stderr, followed by data; the last text frame is
    ``{"type":"exit","code":N,"timed_out":bool}`` or ``{"type":"error",...}``.
    Closing the socket early kills the process tree.

Lifecycle
    On start: lock ``<socket>.lock`` (flock) so two daemons never share a
    socket, refuse if something answers on the socket, remove a stale one
    (and a stale ``<socket>.handoff``),
    build ``ImageStore`` and ``SandboxManager`` on ``--root`` and
    ``reconcile()`` (re-adopting running sandboxes), then re-adopt the PTY
    sessions of running sandboxes from their holders (``<root>/sessions``, same
    session ids, scrollback replayed; holders of sandboxes that are gone are
    ended: ``runtime.sessions.holder``).  On SIGTERM/SIGINT: attach streams get
    ``closing`` and are closed (handed-off terminals are not runtimed's: they
    go on); PTY sessions keep running in their holder
    processes, sandboxes keep running, and the next daemon re-adopts both;
    exit 0.  (Without the holder binary a session's PTY is held here and ends
    with the daemon.)  A SIGKILL'd daemon leaves the same state behind.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import dataclasses
import fcntl
import grp
import json
import logging
import os
import re
import signal
import socket
import ssl
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from aiohttp import WSCloseCode, WSMsgType, web

from runtime import auth, errors, urlsafety
from runtime.client import HANDOFF_MAX_REQUEST, HANDOFF_TIMEOUT, handoff_path
from runtime.loops import StallWatch
from runtime.proxy import (
    ERROR_HEADER,
    PREVIEW_PATH_HEADER,
    PREVIEW_PORT_HEADER,
    PREVIEW_ROUTE,
    PREVIEW_SANDBOX_HEADER,
    SandboxProxy,
)
from runtime.relay import DOCKER_API, KUBE_API, ApiRelay
from runtime.relay import tail as relay_tail
from runtime.sandbox import files as sandbox_files
from runtime.sandbox.cgexec import Placement
from runtime.sessions import SessionRegistry, run_exec, stream_exec
from runtime.sessions.base import SpawnedProcess
from runtime.sessions.exec import check_timeout
from runtime.sessions.holder import HolderStore
from runtime.sessions.pty import DEFAULT_SCROLLBACK, cancel_quietly
from runtime.unixsock import bind_unix

log = logging.getLogger("runtime.daemon")

API_VERSION = 1
DEFAULT_SOCKET = "/run/kubelab/runtimed.sock"
MAX_JSON_BODY = 16 * 2**20
FILE_OPS_AT_ONCE = 4  # editor helpers (runtime.sandbox.files) running at once, all sandboxes
WS_WRITER_LIMIT = 64 * 1024
CLOSE_GRACE = 5.0  # after the last frame, how long the server waits for the client to close
HANDOFF_AT_ONCE = 256  # handoff requests served at once; a connection beyond is closed unanswered
# a sandbox's or session's id as the routes take them (runtime.sandbox.manager, runtime.sessions)
_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# -- what the daemon needs from the images and sandbox layers ------------------------------
_List = list  # the protocols below have a method named list


class SpecLike(Protocol):
    @property
    def image(self) -> str: ...


class InfoLike(Protocol):
    @property
    def spec(self) -> Any: ...

    def to_json(self) -> dict[str, Any]: ...


class ManagerLike(Protocol):
    def create(self, spec: Any) -> Any: ...
    def get(self, sid: str) -> Any: ...
    def list(self) -> list[Any]: ...
    def stop(self, sid: str) -> None: ...
    def pause(self, sid: str) -> Any: ...
    def resume(self, sid: str) -> Any: ...
    def disk_image_bytes(self, sid: str) -> int: ...
    def remove(self, sid: str) -> None: ...
    def stats(self, sid: str) -> dict[str, float | int]: ...
    def touch(self, sid: str) -> None: ...
    def init_process(self, sid: str) -> tuple[int, int, Placement]: ...
    def spawn(
        self,
        sid: str,
        argv: _List[str],
        *,
        tty: bool,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        rows: int = 24,
        cols: int = 80,
    ) -> SpawnedProcess: ...
    def reconcile(self) -> _List[str]: ...
    def close(self) -> None: ...


class KubeLike(Protocol):
    @property
    def server(self) -> str: ...

    def kubeconfig_for_host(self, sid: str) -> dict[str, str]: ...
    def user_kubeconfig(self, sid: str, user: str, groups: list[str], ttl_seconds: int | None) -> dict[str, str]: ...
    def connectivity(
        self, sid: str, namespace: str, pod: str, host: str, port: int, protocol: str, timeout: float
    ) -> dict[str, str]: ...
    def dry_run(self, sid: str, objects: _List[Any]) -> _List[dict[str, Any]]: ...
    def loaded(self, sid: str) -> bool: ...


class DockerLike(Protocol):
    def socket_for_host(self, sid: str) -> str: ...


class ImagesLike(Protocol):
    def list(self) -> list[Any]: ...
    def get(self, name: str) -> Any: ...
    def layer_dirs(self, name: str) -> _List[Path]: ...
    def build(self, name: str, progress: Callable[[str], None]) -> Any: ...
    def import_oci(self, tar_path: Path, name: str | None = None) -> Any: ...
    def export_oci(self, name: str, tar_path: Path) -> None: ...
    def remove(self, name: str) -> None: ...


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "to_json"):
        return obj.to_json()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    return obj


def error_body(exc: errors.RuntimeError) -> dict[str, str]:
    return {"error": exc.code, "message": str(exc)}


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except errors.RuntimeError as e:
        if e.status >= 500:
            log.warning("%s %s: %s: %s", request.method, request.path, e.code, e)
        # the header tells runtimed's own answers from a sandbox app's (the port preview relays both)
        return web.json_response(error_body(e), status=e.status, headers={ERROR_HEADER: e.code})
    except web.HTTPException as e:
        if e.status < 400:
            raise
        code = "not_found" if e.status == 404 else "bad_request" if e.status < 500 else "runtime_error"
        return web.json_response(
            {"error": code, "message": f"{request.method} {request.path}: {e.reason}"},
            status=e.status,
        )
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception as e:
        log.exception("%s %s failed", request.method, request.path)
        return web.json_response(
            {"error": "runtime_error", "message": f"internal error: {type(e).__name__}: {e}"},
            status=500,
        )


async def _json(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise errors.BadRequest(f"request body is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise errors.BadRequest("request body must be a JSON object")
    return body


def _str_map(value: Any, what: str) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise errors.BadRequest(f"{what} must be an object of strings")
    return dict(value)


def _argv(value: Any, *, required: bool = True) -> list[str] | None:
    if value is None and not required:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(a, str) for a in value):
        raise errors.BadRequest("argv must be a non-empty list of strings")
    return list(value)


def _int(body: Mapping[str, Any], key: str, default: int) -> int:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise errors.BadRequest(f"{key} must be an integer")
    return value


def _decode(data: Any, encoding: Any, what: str) -> bytes | None:
    if data is None:
        return None
    if not isinstance(data, str):
        raise errors.BadRequest(f"{what} must be a string")
    if encoding in (None, "utf-8"):
        return data.encode()
    if encoding == "base64":
        try:
            return base64.b64decode(data, validate=True)
        except binascii.Error as e:
            raise errors.BadRequest(f"{what} is not valid base64: {e}") from None
    raise errors.BadRequest(f"unknown encoding {encoding!r} (utf-8 or base64)")


class HandoffNotOffered(errors.Conflict):
    """The session cannot be handed off (the terminal handoff); the client uses the WebSocket."""

    code = "not_offered"


class Daemon:
    """The aiohttp application around an image store, a sandbox manager and the sessions."""

    def __init__(
        self,
        manager: ManagerLike,
        images: ImagesLike,
        *,
        spec_from_json: Callable[[dict[str, Any]], Any],
        tmp_dir: Path,
        authority: auth.Authority,
        scrollback: int = DEFAULT_SCROLLBACK,
        sessions_dir: Path | None = None,
    ) -> None:
        """``sessions_dir``: where PTY holders keep their sockets (runtime.sessions.holder);
        None keeps every PTY in this process (sessions then end with it)."""
        self.manager = manager
        self.images = images
        self.spec_from_json = spec_from_json
        self.tmp_dir = tmp_dir
        holders = HolderStore(sessions_dir) if sessions_dir is not None else None
        self.sessions = SessionRegistry(manager, scrollback=scrollback, holders=holders)
        self.proxy = SandboxProxy()
        self.relay = ApiRelay()
        self.authority = authority
        self.kube: KubeLike | None = None  # the kubernetes service, when runtimed runs it
        self.docker: DockerLike | None = None  # the docker service, when runtimed runs it
        self._websockets: set[web.WebSocketResponse] = set()
        self._file_ops = asyncio.Semaphore(FILE_OPS_AT_ONCE)
        self._closing = False
        self.app = web.Application(middlewares=[error_middleware], client_max_size=MAX_JSON_BODY)
        self.app.on_startup.append(self._adopt_sessions)
        self._routes()

    def _routes(self) -> None:
        """Every route names what it needs (``runtime.auth``): ``None`` is open (health only),
        ``"admin"`` the admin token, anything else a sandbox operation on ``{id}``."""
        sb = "/v1/sandboxes/{id}"
        ss = sb + "/sessions/{sid}"
        table: list[tuple[str, str, Handler, str | None]] = [
            ("GET", "/v1/healthz", self.healthz, None),
            ("GET", "/v1/images", self.images_list, "admin"),
            ("POST", "/v1/images/import", self.image_import, "admin"),
            ("POST", "/v1/images/{name}/build", self.image_build, "admin"),
            ("GET", "/v1/images/{name}/export", self.image_export, "admin"),
            ("DELETE", "/v1/images/{name}", self.image_remove, "admin"),
            ("POST", "/v1/sandboxes", self.sandbox_create, "admin"),
            ("GET", "/v1/sandboxes", self.sandbox_list, "admin"),
            ("GET", sb, self.sandbox_get, auth.READ),
            ("DELETE", sb, self.sandbox_remove, "admin"),
            ("GET", sb + "/stats", self.sandbox_stats, auth.READ),
            ("POST", sb + "/stop", self.sandbox_stop, "admin"),
            ("POST", sb + "/pause", self.sandbox_pause, "admin"),
            ("POST", sb + "/resume", self.sandbox_resume, "admin"),
            ("POST", sb + "/touch", self.sandbox_touch, auth.TOUCH),
            ("POST", sb + "/tokens", self.sandbox_token, "admin"),
            ("GET", sb + "/kubeconfig", self.sandbox_kubeconfig, auth.KUBECONFIG),
            ("POST", sb + "/kube-users", self.sandbox_kube_user, auth.KUBECONFIG),
            ("POST", sb + "/kube/connectivity", self.sandbox_kube_connectivity, auth.EXEC),
            ("POST", sb + "/kube/validate", self.sandbox_kube_validate, auth.VALIDATE),
            ("GET", sb + "/docker", self.sandbox_docker, auth.DOCKER),
            # The lab cluster's and the docker engine's APIs relayed, for graders on other
            # machines (SANDBOX_BACKEND=kubernetes; runtime.relay: the path is data)
            ("*", sb + "/" + KUBE_API + "{tail:(/(?s:.*))?}", self.sandbox_kube_api, auth.KUBECONFIG),
            ("*", sb + "/" + DOCKER_API + "{tail:(/(?s:.*))?}", self.sandbox_docker_api, auth.DOCKER),
            ("POST", sb + "/exec", self.exec, auth.EXEC),
            ("GET", sb + "/exec/stream", self.exec_stream, auth.EXEC),
            ("POST", sb + "/sessions", self.session_create, auth.TERMINAL),
            ("GET", sb + "/sessions", self.session_list, auth.TERMINAL),
            ("GET", ss, self.session_get, auth.TERMINAL),
            ("DELETE", ss, self.session_remove, auth.TERMINAL),
            ("POST", ss + "/resize", self.session_resize, auth.TERMINAL),
            ("GET", ss + "/attach", self.session_attach, auth.TERMINAL),
            # The lab editor: files under the sandbox's /root (runtime.sandbox.files).
            ("GET", sb + "/files", self.files_list, auth.FILES),
            ("GET", sb + "/files/content", self.file_read, auth.FILES),
            ("PUT", sb + "/files/content", self.file_write, auth.FILES),
            # The port preview: the sandbox, port and path travel in headers, so nothing a
            # browser sends can turn into a route of this API (runtime.urlsafety).
            ("*", PREVIEW_ROUTE, self.preview, auth.PREVIEW),
        ]
        for method, path, handler, op in table:
            self.app.router.add_route(method, path, self._guarded(handler, op))

    def _guarded(self, handler: Handler, op: str | None) -> Handler:
        if op is None:
            return handler

        async def guarded(request: web.Request) -> web.StreamResponse:
            sandbox = request.match_info.get("id")
            if op == auth.PREVIEW:
                sandbox = request.headers.get(PREVIEW_SANDBOX_HEADER)
            self.authority.check(request.headers.get("Authorization"), op, sandbox)
            return await handler(request)

        return guarded

    # -- lifecycle -------------------------------------------------------------------------
    async def _adopt_sessions(self, app: web.Application) -> None:
        """Before serving: take back the PTY sessions whose holders outlived the last daemon."""

        def running(sid: str) -> bool:
            try:
                return bool(getattr(self.manager.get(sid), "status", "running") == "running")
            except errors.RuntimeError:
                return False

        cgroups = getattr(self.manager, "cgroups", None)
        kill_cgroup = None
        if cgroups is not None:

            def kill_cgroup(d: Path) -> None:
                cgroups.kill_cgroup(d)
                with contextlib.suppress(OSError):
                    d.rmdir()

        n = await self.sessions.adopt(running, kill_cgroup)
        if n:
            log.info("re-adopted %d PTY sessions from their holders", n)

    async def serve_handoff(self, lsock: socket.socket) -> None:
        """The terminal handoff broker (the module docstring) on the listening ``lsock``, until
        cancelled; each connection is served in a task of its own, at most HANDOFF_AT_ONCE."""
        loop = asyncio.get_running_loop()
        tasks: set[asyncio.Task[None]] = set()
        try:
            while True:
                try:
                    conn, _ = await loop.sock_accept(lsock)
                except OSError as e:  # EMFILE and the like: let others finish, then go on
                    log.warning("terminal handoff: accept failed: %s", e)
                    await asyncio.sleep(0.1)
                    continue
                if len(tasks) >= HANDOFF_AT_ONCE:
                    conn.close()  # the client falls back to the WebSocket
                    continue
                task = loop.create_task(self._handoff_one(conn))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _handoff_one(self, conn: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        direct: socket.socket | None = None
        try:
            conn.setblocking(False)
            try:
                # a plain recv: SCM_RIGHTS a client sends are closed by the kernel, never ours
                data = await asyncio.wait_for(loop.sock_recv(conn, HANDOFF_MAX_REQUEST + 1), HANDOFF_TIMEOUT)
            except TimeoutError:
                return
            if not data:
                return
            try:
                direct = self._handoff(data)
                reply: dict[str, Any] = {"ok": True}
            except errors.RuntimeError as e:
                reply = {**error_body(e), "status": e.status}
                log.info("terminal handoff refused: %s: %s", e.code, e)
            body = json.dumps(reply).encode()
            if direct is not None:
                socket.send_fds(conn, [body], [direct.fileno()])
            else:
                conn.send(body)
        except OSError as e:
            # the client left: what was to be handed is closed below, and the holder drops
            # the other end when it sees EOF
            log.info("terminal handoff: the client left before the answer: %s", e)
        except Exception:
            log.exception("terminal handoff failed")
        finally:
            conn.close()
            if direct is not None:
                direct.close()

    def _handoff(self, data: bytes) -> socket.socket:
        """Check one handoff request as the attach route checks its request; the socket to hand."""
        if len(data) > HANDOFF_MAX_REQUEST:
            raise errors.BadRequest(f"a handoff request is one JSON datagram of at most {HANDOFF_MAX_REQUEST} bytes")
        try:
            req = json.loads(data)
        except (ValueError, RecursionError) as e:
            raise errors.BadRequest(f"the handoff request is not valid JSON: {type(e).__name__}") from None
        if not isinstance(req, dict):
            raise errors.BadRequest("the handoff request must be a JSON object")
        authorization, sandbox, session_id = req.get("authorization"), req.get("sandbox"), req.get("session")
        if not isinstance(sandbox, str) or not isinstance(session_id, str) or not isinstance(authorization, str | None):
            raise errors.BadRequest("sandbox and session are strings, authorization a string or null")
        self.authority.check(authorization, auth.TERMINAL, sandbox)
        for name in (sandbox, session_id):
            if not _ID.fullmatch(name) or name in (".", ".."):
                raise errors.BadRequest(f"{name[:64]!r} is not a name runtimed's API knows")
        session = self.sessions.get(sandbox, session_id)
        mode = req.get("mode", "rw")
        if mode not in ("rw", "ro"):
            raise errors.BadRequest(f"mode must be rw or ro, not {str(mode)[:16]!r}")
        if self._closing:
            raise errors.NotAvailable("runtimed is shutting down; attach again in a moment")
        try:
            direct = session.handoff(read_only=mode == "ro")
        except OSError as e:  # no socketpair (EMFILE): the WebSocket may still do
            raise HandoffNotOffered(f"session {session_id} cannot be handed off now ({e})") from None
        if direct is None:
            raise HandoffNotOffered(f"session {session_id} cannot be handed off: attach with the WebSocket")
        log.info("session %s in %s handed off (%s)", session_id, sandbox, mode)
        return direct

    async def shutdown(self) -> None:
        self._closing = True
        await self.proxy.close()
        await self.relay.close()
        await self.sessions.shutdown()
        await asyncio.gather(
            *(
                ws.close(code=WSCloseCode.GOING_AWAY, message=b"runtimed shutting down")
                for ws in list(self._websockets)
            ),
            return_exceptions=True,
        )

    async def _sandbox(self, sid: str) -> Any:
        return await asyncio.to_thread(self.manager.get, sid)

    # -- misc ------------------------------------------------------------------------------
    async def healthz(self, request: web.Request) -> web.StreamResponse:
        sandboxes = await asyncio.to_thread(self.manager.list)
        return web.json_response(
            {
                "ok": True,
                "api_version": API_VERSION,
                "pid": os.getpid(),
                "sandboxes": len(sandboxes),
                "sessions": len([s for s in self.sessions.all() if not s.exited]),
                "kube_server": self.kube.server if self.kube is not None else None,
            }
        )

    # -- images ----------------------------------------------------------------------------
    async def images_list(self, request: web.Request) -> web.StreamResponse:
        images = await asyncio.to_thread(self.images.list)
        return web.json_response({"images": [_jsonable(i) for i in images]})

    async def image_build(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

        def progress(line: str) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, {"type": "progress", "line": str(line)})

        async def build() -> None:
            try:
                image = await asyncio.to_thread(self.images.build, name, progress)
                await queue.put({"type": "done", "image": _jsonable(image)})
            except errors.RuntimeError as e:
                await queue.put({"type": "error", **error_body(e)})
            except Exception as e:
                log.exception("building image %s failed", name)
                await queue.put(
                    {
                        "type": "error",
                        "error": "runtime_error",
                        "message": f"{type(e).__name__}: {e}",
                    }
                )
            finally:
                await queue.put(None)

        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        task = asyncio.create_task(build())
        try:
            while (item := await queue.get()) is not None:
                await resp.write(json.dumps(item).encode() + b"\n")
        finally:
            if not task.done():
                # the client left; the build itself runs to completion in its thread
                log.info("client left during build of %s", name)
        await task
        await resp.write_eof()
        return resp

    async def image_import(self, request: web.Request) -> web.StreamResponse:
        name = request.query.get("name") or None
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix="import-", suffix=".tar", dir=self.tmp_dir)
        path = Path(tmp)
        try:
            with os.fdopen(fd, "wb") as f:
                async for chunk in request.content.iter_chunked(1 << 20):
                    f.write(chunk)
            image = await asyncio.to_thread(self.images.import_oci, path, name)
        finally:
            await asyncio.to_thread(path.unlink, missing_ok=True)
        return web.json_response({"image": _jsonable(image)}, status=201)

    async def image_export(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix="export-", suffix=".tar", dir=self.tmp_dir)
        os.close(fd)
        path = Path(tmp)
        try:
            await asyncio.to_thread(self.images.export_oci, name, path)
            size = (await asyncio.to_thread(path.stat)).st_size
            resp = web.StreamResponse(headers={"Content-Type": "application/x-tar", "Content-Length": str(size)})
            await resp.prepare(request)
            f = await asyncio.to_thread(path.open, "rb")
            try:
                while chunk := await asyncio.to_thread(f.read, 1 << 20):
                    await resp.write(chunk)
            finally:
                f.close()
            await resp.write_eof()
            return resp
        finally:
            await asyncio.to_thread(path.unlink, missing_ok=True)

    async def image_remove(self, request: web.Request) -> web.StreamResponse:
        await asyncio.to_thread(self.images.remove, request.match_info["name"])
        return web.json_response({"removed": request.match_info["name"]})

    # -- sandboxes -------------------------------------------------------------------------
    async def sandbox_create(self, request: web.Request) -> web.StreamResponse:
        spec = self.spec_from_json(await _json(request))
        info = await asyncio.to_thread(self.manager.create, spec)
        log.info("sandbox %s created (image %s)", getattr(info, "id", "?"), spec.image)
        return web.json_response(_jsonable(info), status=201)

    async def sandbox_list(self, request: web.Request) -> web.StreamResponse:
        infos = await asyncio.to_thread(self.manager.list)
        return web.json_response({"sandboxes": [_jsonable(i) for i in infos]})

    async def sandbox_get(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(_jsonable(await self._sandbox(request.match_info["id"])))

    async def sandbox_stats(self, request: web.Request) -> web.StreamResponse:
        sid = request.match_info["id"]
        stats: dict[str, Any] = dict(await asyncio.to_thread(self.manager.stats, sid))
        stats["sessions"] = len([s for s in self.sessions.for_sandbox(sid) if not s.exited])
        if self.kube is not None:  # is its lab cluster's store in this process's memory?
            stats["cluster_loaded"] = self.kube.loaded(sid)
        return web.json_response(stats)

    # -- the lab editor's files ------------------------------------------------------------
    async def _files(self, sid: str, req: dict[str, Any]) -> dict[str, Any]:
        await self._sandbox(sid)
        pid, pid_start, place = await asyncio.to_thread(self.manager.init_process, sid)
        async with self._file_ops:  # a bound on helper processes, whatever the callers send
            return await asyncio.to_thread(sandbox_files.run, pid, req, pid_start=pid_start, place=place)

    async def files_list(self, request: web.Request) -> web.StreamResponse:
        req = {"op": "list", "path": request.query.get("path", "")}
        return web.json_response(await self._files(request.match_info["id"], req))

    async def file_read(self, request: web.Request) -> web.StreamResponse:
        req = {"op": "read", "path": request.query.get("path", "")}
        return web.json_response(await self._files(request.match_info["id"], req))

    async def file_write(self, request: web.Request) -> web.StreamResponse:
        """``{"path", "content", "etag"}``: ``etag`` of the version the editor read (a
        changed file is a 409), ``null`` to create a file, ``"*"`` to overwrite whatever is there."""
        sid = request.match_info["id"]
        body = await _json(request)
        req = {"op": "write", "path": body.get("path", ""), "content": body.get("content"), "etag": body.get("etag")}
        out = await self._files(sid, req)
        await asyncio.to_thread(self.manager.touch, sid)
        return web.json_response(out)

    async def sandbox_stop(self, request: web.Request) -> web.StreamResponse:
        sid = request.match_info["id"]
        await self._sandbox(sid)
        await self.sessions.close_sandbox(sid)
        await asyncio.to_thread(self.manager.stop, sid)
        return web.json_response(_jsonable(await self._sandbox(sid)))

    async def sandbox_pause(self, request: web.Request) -> web.StreamResponse:
        sid = request.match_info["id"]
        await self._sandbox(sid)
        # before the shells end: where each one was, for the resume to open its shell there
        shells = {s.session_id: cwd for s in self.sessions.for_sandbox(sid) if (cwd := shell_cwd(s)) is not None}
        await self.sessions.close_sandbox(sid)
        info = _jsonable(await asyncio.to_thread(self.manager.pause, sid))
        info["shells"] = shells
        info["disk_image_bytes"] = await asyncio.to_thread(self.manager.disk_image_bytes, sid)
        return web.json_response(info)

    async def sandbox_resume(self, request: web.Request) -> web.StreamResponse:
        sid = request.match_info["id"]
        await self._sandbox(sid)
        return web.json_response(_jsonable(await asyncio.to_thread(self.manager.resume, sid)))

    async def sandbox_remove(self, request: web.Request) -> web.StreamResponse:
        sid = request.match_info["id"]
        await self._sandbox(sid)
        await self.sessions.close_sandbox(sid)
        await asyncio.to_thread(self.manager.remove, sid)
        log.info("sandbox %s removed", sid)
        return web.json_response({"removed": sid})

    async def _kube_for(self, sid: str) -> KubeLike:
        """The kubernetes service, for sandbox ``sid`` made with it (else NotAvailable, why)."""
        info = await self._sandbox(sid)
        if "kubernetes" not in info.spec.services:
            raise errors.NotAvailable(f"sandbox {sid} was not created with the kubernetes service")
        if self.kube is None:
            raise errors.NotAvailable("this runtimed does not run the kubernetes service (--kube-listen off)")
        return self.kube

    async def _docker_for(self, sid: str) -> DockerLike:
        """The docker service, for sandbox ``sid`` made with it (else NotAvailable, why)."""
        info = await self._sandbox(sid)
        if "docker" not in info.spec.services:
            raise errors.NotAvailable(f"sandbox {sid} was not created with the docker service")
        if self.docker is None:
            raise errors.NotAvailable("this runtimed does not run the docker service")
        return self.docker

    async def sandbox_kubeconfig(self, request: web.Request) -> web.StreamResponse:
        sid = request.match_info["id"]
        kube = await self._kube_for(sid)
        return web.json_response(await asyncio.to_thread(kube.kubeconfig_for_host, sid))

    async def sandbox_kube_user(self, request: web.Request) -> web.StreamResponse:
        sid = request.match_info["id"]
        body = await _json(request)
        user, groups, ttl = body.get("user"), body.get("groups", []), body.get("ttl_seconds")
        if not isinstance(user, str) or not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise errors.BadRequest('expected {"user": str, "groups": [str...], "ttl_seconds": int?}')
        if ttl is not None and (not isinstance(ttl, int) or isinstance(ttl, bool)):
            raise errors.BadRequest("ttl_seconds must be an integer")
        kube = await self._kube_for(sid)
        return web.json_response(await asyncio.to_thread(kube.user_kubeconfig, sid, user, groups, ttl))

    async def sandbox_kube_validate(self, request: web.Request) -> web.StreamResponse:
        """``{"objects": [...]}``: each manifest dry-run against this sandbox's cluster only."""
        from runtime.kube.apiserver.dryrun import MAX_OBJECTS

        sid = request.match_info["id"]
        objects = (await _json(request)).get("objects")
        if not isinstance(objects, list) or len(objects) > MAX_OBJECTS:
            raise errors.BadRequest(f'expected {{"objects": [manifest, ...]}}, at most {MAX_OBJECTS} objects')
        kube = await self._kube_for(sid)
        return web.json_response({"results": await asyncio.to_thread(kube.dry_run, sid, objects)})

    async def sandbox_kube_connectivity(self, request: web.Request) -> web.StreamResponse:
        """One connection from a pod (``{namespace, pod, host, port, protocol?, timeout?}``) made
        in the pod's own network namespace: ``{result, detail}`` (runtime/kube/node/netpol.py ``probe``)."""
        sid = request.match_info["id"]
        body = await _json(request)
        namespace, pod, host, port = body.get("namespace"), body.get("pod"), body.get("host"), body.get("port")
        protocol, timeout = body.get("protocol", "TCP"), body.get("timeout", 2)
        if (
            not isinstance(namespace, str)
            or not isinstance(pod, str)
            or not isinstance(host, str)
            or not isinstance(protocol, str)
            or not isinstance(port, int)
        ):
            raise errors.BadRequest(
                'expected {"namespace": str, "pod": str, "host": str, "port": int, "protocol"?: str, "timeout"?: s}'
            )
        kube = await self._kube_for(sid)
        result = await asyncio.to_thread(kube.connectivity, sid, namespace, pod, host, port, protocol, timeout)
        return web.json_response(result)

    async def sandbox_docker(self, request: web.Request) -> web.StreamResponse:
        sid = request.match_info["id"]
        docker = await self._docker_for(sid)
        return web.json_response({"socket": docker.socket_for_host(sid)})

    async def sandbox_kube_api(self, request: web.Request) -> web.StreamResponse:
        """The sandbox's lab-cluster API with the cluster's grader credential (runtime.relay)."""
        sid = request.match_info["id"]
        path, query = relay_tail(request, sid, KUBE_API)
        kube = await self._kube_for(sid)
        server, ctx, sni, token = await asyncio.to_thread(lambda: _cluster_access(kube.kubeconfig_for_host(sid)))
        return await self.relay.handle(
            request,
            sid,
            server,
            authorization=f"Bearer {token}",
            ssl_context=ctx,
            server_hostname=sni,
            path=path,
            query=query,
        )

    async def sandbox_docker_api(self, request: web.Request) -> web.StreamResponse:
        """The sandbox's Docker Engine API from its host socket (runtime.relay)."""
        sid = request.match_info["id"]
        path, query = relay_tail(request, sid, DOCKER_API)
        docker = await self._docker_for(sid)
        return await self.relay.handle(
            request,
            sid,
            "http://docker",
            # the host socket checks the same sandbox token again (runtime.dockerapi.service)
            authorization=request.headers.get("Authorization"),
            unix_socket=docker.socket_for_host(sid),
            path=path,
            query=query,
        )

    async def sandbox_token(self, request: web.Request) -> web.StreamResponse:
        """Mint a sandbox token (admin only): ``{"role": "web"|"grader"}`` or ``{"ops": [...]}``,
        with ``ttl_seconds``."""
        sid = request.match_info["id"]
        body = await _json(request)
        role, ops = body.get("role"), body.get("ops")
        if role is not None:
            if role not in auth.ROLES:
                raise errors.BadRequest(f"unknown role {role!r} (one of {sorted(auth.ROLES)})")
            ops = sorted(auth.ROLES[role])
        if not isinstance(ops, list) or not all(isinstance(op, str) for op in ops):
            raise errors.BadRequest('expected {"role": name} or {"ops": [operation...]}')
        ttl = _int(body, "ttl_seconds", 3600)
        await self._sandbox(sid)  # no tokens for sandboxes that do not exist
        token = self.authority.mint(sid, ops, ttl)
        return web.json_response({"token": token, "sandbox": sid, "ops": sorted(set(ops)), "ttl_seconds": ttl})

    async def sandbox_touch(self, request: web.Request) -> web.StreamResponse:
        sid = request.match_info["id"]
        await asyncio.to_thread(self.manager.touch, sid)
        return web.json_response(_jsonable(await self._sandbox(sid)))

    # -- exec ------------------------------------------------------------------------------
    async def exec(self, request: web.Request) -> web.StreamResponse:
        sid = request.match_info["id"]
        body = await _json(request)
        argv = _argv(body.get("argv"))
        assert argv is not None
        timeout = body.get("timeout", 30)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float):
            raise errors.BadRequest("timeout must be a number of seconds")
        encoding = body.get("encoding", "utf-8")
        if encoding not in ("utf-8", "base64"):
            raise errors.BadRequest(f"unknown encoding {encoding!r} (utf-8 or base64)")
        cwd = body.get("cwd")
        if cwd is not None and not isinstance(cwd, str):
            raise errors.BadRequest("cwd must be a string")
        max_output = _int(body, "max_output", 1024 * 1024)
        if not 0 <= max_output <= 64 * 2**20:
            raise errors.BadRequest("max_output must be between 0 and 64 MiB")
        outcome = await run_exec(
            self.manager,
            sid,
            argv,
            timeout=float(timeout),
            env=_str_map(body.get("env"), "env"),
            cwd=cwd,
            stdin=_decode(body.get("stdin"), body.get("stdin_encoding"), "stdin"),
            max_output=max_output,
        )
        return web.json_response(outcome.to_json(encoding))

    async def exec_stream(self, request: web.Request) -> web.StreamResponse:
        sid = request.match_info["id"]
        await self._sandbox(sid)  # a plain HTTP error before the upgrade
        ws = web.WebSocketResponse(heartbeat=30, compress=False, max_msg_size=4 * 2**20, writer_limit=WS_WRITER_LIMIT)
        await ws.prepare(request)
        self._websockets.add(ws)
        tasks: list[asyncio.Task[Any]] = []
        try:
            first = await ws.receive(timeout=30)
            if first.type != WSMsgType.TEXT:
                raise errors.BadRequest("the first frame must be the JSON exec request")
            try:
                body = json.loads(first.data)
            except json.JSONDecodeError as e:
                raise errors.BadRequest(f"exec request is not valid JSON: {e}") from None
            if not isinstance(body, dict):
                raise errors.BadRequest("exec request must be a JSON object")
            argv = _argv(body.get("argv"))
            assert argv is not None
            timeout = body.get("timeout")
            if timeout is not None:
                if isinstance(timeout, bool) or not isinstance(timeout, int | float):
                    raise errors.BadRequest("timeout must be a number of seconds")
                timeout = check_timeout(float(timeout))
            stdin_q: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=16)

            async def stdin_iter() -> AsyncIterator[bytes]:
                while (chunk := await stdin_q.get()) is not None:
                    yield chunk

            async def out(tag: int, data: bytes) -> None:
                await ws.send_bytes(bytes([tag]) + data)

            async def receive() -> None:
                async for msg in ws:
                    if msg.type == WSMsgType.BINARY:
                        await stdin_q.put(msg.data)
                    elif msg.type == WSMsgType.TEXT:
                        with contextlib.suppress(json.JSONDecodeError, TypeError, AttributeError):
                            if json.loads(msg.data).get("type") == "eof":
                                await stdin_q.put(None)

            run = asyncio.create_task(
                stream_exec(
                    self.manager,
                    sid,
                    argv,
                    stdout=lambda d: out(1, d),
                    stderr=lambda d: out(2, d),
                    stdin=stdin_iter(),
                    env=_str_map(body.get("env"), "env"),
                    cwd=body.get("cwd") if isinstance(body.get("cwd"), str) else None,
                    timeout=timeout,
                )
            )
            recv = asyncio.create_task(receive())
            tasks += [run, recv]
            done, _ = await asyncio.wait({run, recv}, return_when=asyncio.FIRST_COMPLETED)
            if run not in done:  # the client went away: kill the process tree
                run.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await run
                return ws
            code, timed_out = run.result()
            await ws.send_json({"type": "exit", "code": code, "timed_out": timed_out})
            # the client closes once it has the exit event (see CLOSE_GRACE)
            with contextlib.suppress(TimeoutError, asyncio.CancelledError, Exception):
                await asyncio.wait_for(recv, CLOSE_GRACE)
        except errors.RuntimeError as e:
            if not ws.closed:
                await ws.send_json({"type": "error", **error_body(e)})
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            self._websockets.discard(ws)
            await ws.close()
        return ws

    # -- sessions --------------------------------------------------------------------------
    async def default_shell(self, sid: str) -> list[str]:
        """The image's login shell: bash when the image has it, else sh."""
        info = await self._sandbox(sid)
        return await asyncio.to_thread(self._shell_of_image, info.spec.image)

    def _shell_of_image(self, image: str) -> list[str]:
        try:
            dirs = self.images.layer_dirs(image)
        except errors.RuntimeError:
            dirs = []
        for d in reversed(dirs):
            for cand in ("bin/bash", "usr/bin/bash"):
                if os.path.lexists(Path(d) / cand):
                    return ["/bin/bash", "-l"]
        return ["/bin/sh", "-l"]

    async def session_create(self, request: web.Request) -> web.StreamResponse:
        sid = request.match_info["id"]
        body = await _json(request)
        argv = _argv(body.get("argv"), required=False) or await self.default_shell(sid)
        cwd = body.get("cwd")
        if cwd is not None and not isinstance(cwd, str):
            raise errors.BadRequest("cwd must be a string")
        await self._sandbox(sid)
        session = await self.sessions.create(
            sid,
            argv,
            rows=_int(body, "rows", 24),
            cols=_int(body, "cols", 80),
            env=_str_map(body.get("env"), "env"),
            cwd=cwd,
        )
        return web.json_response(session.info(), status=201)

    async def session_list(self, request: web.Request) -> web.StreamResponse:
        sid = request.match_info["id"]
        await self._sandbox(sid)
        return web.json_response({"sessions": [s.info() for s in self.sessions.for_sandbox(sid)]})

    async def session_get(self, request: web.Request) -> web.StreamResponse:
        m = request.match_info
        return web.json_response(self.sessions.get(m["id"], m["sid"]).info())

    async def session_remove(self, request: web.Request) -> web.StreamResponse:
        m = request.match_info
        await self.sessions.remove(m["id"], m["sid"])
        return web.json_response({"removed": m["sid"]})

    async def session_resize(self, request: web.Request) -> web.StreamResponse:
        m = request.match_info
        body = await _json(request)
        session = self.sessions.get(m["id"], m["sid"])
        session.resize(_int(body, "rows", session.rows), _int(body, "cols", session.cols))
        return web.json_response(session.info())

    async def preview(self, request: web.Request) -> web.StreamResponse:
        sid = request.headers.get(PREVIEW_SANDBOX_HEADER, "")
        try:
            port = int(request.headers.get(PREVIEW_PORT_HEADER, ""))
        except ValueError:
            raise errors.BadRequest(f"{PREVIEW_PORT_HEADER} must be a port number") from None
        try:
            path = urlsafety.app_path(request.headers.get(PREVIEW_PATH_HEADER, ""))
            query = urlsafety.query_string(request.rel_url.raw_query_string)
        except urlsafety.UnsafePath as e:
            raise errors.BadRequest(f"refused preview path: {e}") from None
        info = await self._sandbox(sid)
        ip = getattr(info, "ip", None)
        if not ip or getattr(info, "status", "running") != "running":
            raise errors.NotAvailable("the sandbox is not running, so nothing in it can be reached")
        await asyncio.to_thread(self.manager.touch, sid)
        return await self.proxy.handle(request, ip, port, path, query, sandbox=sid)

    async def session_attach(self, request: web.Request) -> web.StreamResponse:
        m = request.match_info
        session = self.sessions.get(m["id"], m["sid"])
        mode = request.query.get("mode", "rw")
        if mode not in ("rw", "ro"):
            raise errors.BadRequest(f"mode must be rw or ro, not {mode!r}")
        if self._closing:
            raise errors.NotAvailable("runtimed is shutting down; attach again in a moment")
        ws = web.WebSocketResponse(heartbeat=30, compress=False, max_msg_size=1 << 20, writer_limit=WS_WRITER_LIMIT)
        await ws.prepare(request)
        att = session.attach(read_only=mode == "ro")
        self._websockets.add(ws)

        async def pump() -> None:
            while (item := await att.get()) is not None:
                if isinstance(item, bytes):
                    await ws.send_bytes(item)
                    att.sent(len(item))
                else:
                    await ws.send_json(item)
            # Let the client close first: some clients drop frames still queued
            # when the server closes under them.  Close anyway after a grace period.
            await asyncio.sleep(CLOSE_GRACE)
            await ws.close()

        sender = asyncio.create_task(pump())
        try:
            async for msg in ws:
                if msg.type == WSMsgType.BINARY:
                    att.write(msg.data)
                elif msg.type == WSMsgType.TEXT:
                    self._control(att, msg.data)
        finally:
            att.detach()
            self._websockets.discard(ws)
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender
            await ws.close()
        return ws

    @staticmethod
    def _control(att: Any, data: str) -> None:
        try:
            ctrl = json.loads(data)
            if not isinstance(ctrl, dict):
                raise errors.BadRequest("control frames are JSON objects")
            if ctrl.get("type") == "resize":
                att.resize(int(ctrl["rows"]), int(ctrl["cols"]))
            elif ctrl.get("type") == "input" and isinstance(ctrl.get("data"), str):
                att.write(ctrl["data"].encode())
            else:
                raise errors.BadRequest(f"unknown control message {ctrl.get('type')!r}")
        except errors.RuntimeError as e:
            att._push_event({"type": "error", **error_body(e)})
        except (ValueError, KeyError, TypeError) as e:
            att._push_event({"type": "error", "error": "bad_request", "message": str(e)})


# -- process entry point -------------------------------------------------------------------
class AlreadyRunning(errors.Conflict):
    pass


def shell_cwd(session: Any) -> str | None:
    """The working directory of a session's shell as the sandbox sees it (/proc/<pid>/cwd
    resolves in the process's own mount namespace), or None (exited, gone, deleted)."""
    pid = getattr(session, "shell_pid", None)
    if session.exited or not isinstance(pid, int) or pid <= 0:
        return None
    try:
        cwd = str(Path(f"/proc/{pid}/cwd").readlink())
    except OSError:
        return None
    if not cwd.startswith("/") or cwd.endswith(" (deleted)") or len(cwd) > 4096:
        return None
    return cwd


def prepare_socket(path: Path) -> int:
    """Lock ``<path>.lock``, refuse a live socket, remove a stale one (and a stale terminal
    handoff socket beside it); returns the lock fd."""
    parent = path.parent
    if not parent.exists():
        parent.mkdir(mode=0o750, parents=True)
        parent.chmod(0o750)
    lock_fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock_fd)
        raise AlreadyRunning(f"another runtimed holds {path}.lock") from None
    for p in (path, Path(handoff_path(path))):
        if p.is_symlink() or (p.exists() and not p.is_socket()):
            os.close(lock_fd)
            raise errors.Conflict(f"{p} exists and is not a socket; remove it or pick --socket")
    if path.exists():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(2)
        try:
            probe.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            path.unlink(missing_ok=True)
            log.info("removed stale socket %s", path)
        except OSError as e:
            os.close(lock_fd)
            raise AlreadyRunning(f"cannot tell whether {path} is live: {e}") from None
        else:
            os.close(lock_fd)
            raise AlreadyRunning(f"another daemon is listening on {path}")
        finally:
            probe.close()
    # the daemon that bound it held this lock: it is gone
    Path(handoff_path(path)).unlink(missing_ok=True)
    return lock_fd


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


async def serve(
    daemon: Daemon,
    socket_path: Path,
    *,
    group: str | None = None,
    ready: asyncio.Event | None = None,
    tls_listen: tuple[str, int, ssl.SSLContext] | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT (or until the task is cancelled). ``tls_listen``: also
    serve the same API on ``(host, port)`` over TLS (a lab node's runtimed under the
    ``kubernetes`` sandbox backend, reached by the platform's web and workers across the
    network: docs/scaling-out.md). Every route checks the caller's token there as here."""
    runner = web.AppRunner(daemon.app, access_log_format='"%r" %s %b %Tfs', handle_signals=False)
    await runner.setup()
    # Bound here and given its mode before listen(): no window where it is wider than 0660,
    # and no process-wide umask changed while sandbox starts run in other threads (#13).
    gid = grp.getgrnam(group).gr_gid if group else -1
    sock = bind_unix(socket_path, gid=gid)
    site = web.SockSite(runner, sock, shutdown_timeout=5)
    await site.start()
    handoff = Path(handoff_path(socket_path))
    broker: asyncio.Task[None] | None = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    try:
        # the terminal handoff: whoever may use the API socket may use this one
        hsock = bind_unix(handoff, gid=gid, kind=socket.SOCK_SEQPACKET)
        broker = loop.create_task(daemon.serve_handoff(hsock))
        broker.add_done_callback(lambda _: hsock.close())
        if tls_listen is not None:
            host, port, ctx = tls_listen
            await web.TCPSite(runner, host, port, ssl_context=ctx, shutdown_timeout=5).start()
            log.info("runtimed also listening on https://%s:%d", host, port)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        log.info("runtimed listening on %s and %s (pid %d)", socket_path, handoff, os.getpid())
        if ready is not None:
            ready.set()
        await stop.wait()
        log.info("shutting down: sandboxes and PTY sessions keep running")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await daemon.shutdown()
        if broker is not None:
            await cancel_quietly(broker)
        await runner.cleanup()
        for path in (handoff, socket_path):
            await asyncio.to_thread(path.unlink, missing_ok=True)


def build_daemon(
    root: Path,
    *,
    authority: auth.Authority,
    scrollback: int = DEFAULT_SCROLLBACK,
    manager_options: dict[str, Any] | None = None,
) -> Daemon:
    """The production wiring: ImageStore + SandboxManager on ``root``, reconciled."""
    from runtime.images.store import ImageStore
    from runtime.sandbox.manager import SandboxManager
    from runtime.sandbox.spec import SandboxSpec

    root.mkdir(parents=True, exist_ok=True)
    images = ImageStore(root / "images")
    manager = SandboxManager(root, images, **(manager_options or {}))
    dead = manager.reconcile()
    adopted = [i.id for i in manager.list() if i.status == "running"]
    log.info("reconciled: %d running sandboxes re-adopted, dead: %s", len(adopted), dead or "none")
    # the default disk template, built now rather than under the first class's herd
    threading.Thread(target=manager.warm, name="disk-template", daemon=True).start()
    return Daemon(
        manager,
        images,
        spec_from_json=SandboxSpec.from_json,
        tmp_dir=root / "tmp",
        authority=authority,
        scrollback=scrollback,
        sessions_dir=root / "sessions",
    )


def _cluster_access(answer: Mapping[str, str]) -> tuple[str, ssl.SSLContext, str | None, str]:
    """(server, TLS context trusting only the cluster's CA, its TLS server name, grader token)
    of a host kubeconfig (runtime.kube.apiserver.provision.kubeconfig)."""
    import yaml

    cfg = yaml.safe_load(answer["kubeconfig"])
    cluster = cfg["clusters"][0]["cluster"]
    ctx = ssl.create_default_context(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
    sni = cluster.get("tls-server-name")
    return str(cluster["server"]).rstrip("/"), ctx, str(sni) if sni else None, str(cfg["users"][0]["user"]["token"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="runtimed", description="Run the runtime daemon.")
    add_daemon_arguments(p)
    return run_daemon(p.parse_args(argv))


def add_daemon_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", type=Path, default=Path("/var/lib/kubelab-runtime"))
    p.add_argument("--socket", type=Path, default=Path(os.environ.get("RUNTIME_SOCKET", DEFAULT_SOCKET)))
    p.add_argument(
        "--group",
        default=os.environ.get("RUNTIME_SOCKET_GROUP") or None,
        help="group that may use the socket (chgrp of the 0660 socket; default $RUNTIME_SOCKET_GROUP)",
    )
    p.add_argument("--scrollback", type=int, default=DEFAULT_SCROLLBACK, help="bytes per session")
    p.add_argument(
        "--admin-token-file",
        default=os.environ.get("RUNTIME_ADMIN_TOKEN_FILE") or None,
        help="file holding the admin token (made, 0600, when missing; default <socket>.admin-token; "
        "$RUNTIME_ADMIN_TOKEN, when set, is the token instead)",
    )
    p.add_argument("--log-level", default=os.environ.get("RUNTIME_LOG_LEVEL", "INFO"))
    p.add_argument(
        "--listen-tls",
        default=os.environ.get("RUNTIME_LISTEN_TLS") or None,
        help="also serve the API over TLS on HOST:PORT (a lab node reached across the network; "
        "callers still need a token; default $RUNTIME_LISTEN_TLS, off)",
    )
    p.add_argument("--tls-cert", default=os.environ.get("RUNTIME_TLS_CERT") or None, help="PEM serving certificate")
    p.add_argument("--tls-key", default=os.environ.get("RUNTIME_TLS_KEY") or None, help="PEM key of --tls-cert")
    g = p.add_argument_group("host resources (two daemons on one host must not share them)")
    # From the environment too, so a supervisor (scripts/run.py) started with them gives them to
    # its runtimed: a second platform on a host (a bench, a test) keeps off the first one's.
    g.add_argument(
        "--subnet", default=os.environ.get("RUNTIME_SUBNET") or None, help="sandbox subnet (default 10.77.0.0/16)"
    )
    g.add_argument("--bridge", default=os.environ.get("RUNTIME_BRIDGE") or None, help="bridge device (default kl0)")
    g.add_argument(
        "--cgroup-parent",
        default=os.environ.get("RUNTIME_CGROUP_PARENT") or None,
        help="cgroup parent (default kubelab)",
    )
    g.add_argument(
        "--uid-start",
        type=int,
        default=os.environ.get("RUNTIME_UID_START") or None,
        help="first host uid for sandboxes",
    )
    g.add_argument(
        "--kube-listen",
        default=os.environ.get("RUNTIME_KUBE_LISTEN", "127.0.0.1:0"),
        help="host loopback HOST:PORT serving the lab clusters to graders (port 0: pick one and "
        "keep it across restarts; 'off' disables the kubernetes service; default $RUNTIME_KUBE_LISTEN "
        "or 127.0.0.1:0)",
    )


def tls_listen_from(args: argparse.Namespace) -> tuple[str, int, ssl.SSLContext] | None:
    """``--listen-tls HOST:PORT`` with ``--tls-cert``/``--tls-key``: the TLS listener, or None."""
    listen = getattr(args, "listen_tls", None)
    if not listen:
        return None
    host, sep, port = str(listen).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise errors.BadRequest(f"--listen-tls: expected HOST:PORT, got {listen!r}")
    if not args.tls_cert or not args.tls_key:
        raise errors.BadRequest("--listen-tls needs --tls-cert and --tls-key (the node's serving certificate)")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
    except (OSError, ssl.SSLError) as e:
        raise errors.BadRequest(f"--tls-cert/--tls-key: cannot load the serving certificate: {e}") from None
    return host.strip("[]"), int(port), ctx


def run_daemon(args: argparse.Namespace) -> int:
    setup_logging(args.log_level)
    if os.geteuid() != 0:
        log.error("runtimed must run as root (it drives runc, mounts and cgroups)")
        return 1
    socket_path = Path(args.socket).absolute()
    root = Path(args.root).absolute()
    try:
        tls_listen = tls_listen_from(args)
    except errors.RuntimeError as e:
        log.error("%s", e)
        return 1
    try:
        lock_fd = prepare_socket(socket_path)
    except errors.RuntimeError as e:
        log.error("%s", e)
        return 1
    try:

        async def run() -> None:
            loop = asyncio.get_running_loop()
            loop.set_default_executor(ThreadPoolExecutor(max_workers=64, thread_name_prefix="rt"))
            if (stall := StallWatch.from_env("runtimed")) is not None:
                stall.start()
            options = {
                k: v
                for k in ("subnet", "bridge", "cgroup_parent", "uid_start")
                if (v := getattr(args, k, None)) is not None
            }
            authority = auth.Authority(
                auth.signing_key(root),
                auth.admin_token(
                    Path(args.admin_token_file)
                    if args.admin_token_file
                    else auth.default_admin_token_path(socket_path),
                    given=os.environ.get("RUNTIME_ADMIN_TOKEN"),
                ),
            )
            daemon = await asyncio.to_thread(
                build_daemon, root, authority=authority, scrollback=args.scrollback, manager_options=options
            )
            kube = docker = None
            try:
                from runtime.dockerapi.service import start_for_daemon as start_docker

                # the docker service first: the lab clusters' kubelets run pods on its engines
                docker = await start_docker(daemon, socket_path.parent / "docker", group=args.group)
                kube_listen = getattr(args, "kube_listen", "off")
                if kube_listen and kube_listen != "off":
                    from runtime.kube.service import start_for_daemon

                    kube = await start_for_daemon(daemon, root / "kube", kube_listen)
                await serve(daemon, socket_path, group=args.group, tls_listen=tls_listen)
            finally:
                if kube is not None:
                    await kube.close()
                if docker is not None:
                    await docker.close()
                await asyncio.to_thread(daemon.manager.close)

        asyncio.run(run())
    except errors.RuntimeError as e:
        log.error("%s", e)
        return 1
    finally:
        os.close(lock_fd)
    log.info("runtimed stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
