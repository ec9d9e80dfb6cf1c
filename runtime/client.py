"""Python clients for runtimed's unix-socket API (protocol in ``runtime.daemon``).

``Client`` is synchronous (httpx over the unix socket; WebSockets through
``websockets.sync``), for the CLI, Celery tasks and graders.  ``AsyncClient``
(aiohttp) is for the Channels terminal consumer and other asyncio code.  Both
return plain JSON dicts for sandboxes, sessions and images (what the web side
stores), an ``ExecResult`` for exec, and raise the ``runtime.errors`` class the
daemon named, so callers catch ``errors.SandboxNotFound`` whichever side of
the socket raised it.  Every call has a timeout; a daemon that cannot be
reached raises ``errors.NotAvailable`` saying where it looked.

Socket path: the argument, else ``$RUNTIME_SOCKET``, else
``/run/kubelab/runtimed.sock``. An ``https://HOST:PORT`` address instead reaches a
runtimed that serves its API over TCP with TLS (``--listen-tls``: a lab node's runtimed
under the ``kubernetes`` sandbox backend, docs/scaling-out.md); the server's certificate
is checked against ``ca`` (a PEM, or a file's path; else ``$RUNTIME_CA_FILE``) and nothing else, never the
system's CAs. The same bearer tokens authenticate the caller either way.

Terminals: ``AsyncClient.attach`` on a unix socket first asks runtimed's terminal handoff
broker (``<socket>.handoff``, protocol in ``runtime.daemon``) for a socket straight to the
session's PTY holder, and reads it as a ``DirectAttach``; where that is not offered (no
holder, no broker, a runtimed over TLS) it attaches through runtimed's WebSocket
(``AsyncAttach``), as ``Client.attach`` always does. Both give the same items.

Credential (``runtime.auth``): the ``token`` argument, else ``$RUNTIME_TOKEN``. The
web tier always passes its lab session's sandbox token explicitly; the admin token
belongs to provisioning only.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import socket
import ssl
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self, cast
from urllib.parse import quote

import aiohttp
import httpx
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, unix_connect
from websockets.sync.client import connect as ws_connect

from runtime import errors
from runtime.sessions import holder as holders
from runtime.urlsafety import UnsafePath, app_path, query_string

__all__ = ["UnsafePath", "app_path", "query_string"]  # the web tier checks preview paths with these

DEFAULT_SOCKET = "/run/kubelab/runtimed.sock"
DEFAULT_TIMEOUT = 30.0
CREATE_TIMEOUT = 600.0  # image unpacking + the lab's setup script
BUILD_TIMEOUT = 3600.0
EXEC_MARGIN = 15.0  # on top of the exec's own timeout, for spawn and kill
BASE = "http://runtimed"
WS_BASE = "ws://runtimed"

ControlEvent = dict[str, Any]

log = logging.getLogger(__name__)

# The terminal handoff (runtime.daemon, "Terminal handoff"): a SOCK_SEQPACKET socket beside the API's
HANDOFF_SUFFIX = ".handoff"
HANDOFF_MAX_REQUEST = 8 * 1024  # bytes of one request datagram
HANDOFF_MAX_REPLY = 8 * 1024
HANDOFF_TIMEOUT = 5.0  # for the broker's answer, and then for the holder's hello
HANDOFF_REFUSALS = (401, 403, 404)  # raised as the WebSocket's would be; any other refusal falls back to it
DIRECT_COALESCE = 64 * 1024  # output bytes one recv() of a handed-off stream returns at most


def resolve_socket_path(path: str | os.PathLike[str] | None = None) -> str:
    if path:
        return os.fspath(path)
    return os.environ.get("RUNTIME_SOCKET") or DEFAULT_SOCKET


def is_remote(address: str) -> bool:
    """An ``https://HOST:PORT`` address of a runtimed serving TLS (else a unix socket path)."""
    return address.startswith("https://")


_remote_tls_lock = threading.Lock()
_remote_tls: dict[str, ssl.SSLContext] = {}


def remote_tls_context(ca: str | None = None) -> ssl.SSLContext:
    """A client TLS context trusting only one CA: ``ca`` is its PEM certificate or the path of
    a file holding it (else ``$RUNTIME_CA_FILE``, a path). A lab node's runtimed presents a
    certificate that CA signed for the node's address."""
    given = ca or os.environ.get("RUNTIME_CA_FILE") or ""
    if not given:
        raise errors.BadRequest(
            "reaching runtimed over TLS needs the CA that signed its certificate: pass ca or set RUNTIME_CA_FILE"
        )
    with _remote_tls_lock:
        ctx = _remote_tls.get(given)
        if ctx is None:
            if given.lstrip().startswith("-----BEGIN"):
                ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=given)
            else:
                ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=given)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            _remote_tls[given] = ctx
        return ctx


def handoff_path(socket_path: str | os.PathLike[str]) -> str:
    """The terminal handoff socket of the runtimed whose API socket is ``socket_path``."""
    return os.fspath(socket_path) + HANDOFF_SUFFIX


def resolve_token(token: str | None = None) -> str | None:
    """``token``; when None, ``$RUNTIME_TOKEN``. An empty string means no credential at all
    (and no fallback): runtimed then answers 401 for everything but its health."""
    if token is not None:
        return token or None
    return os.environ.get("RUNTIME_TOKEN") or None


def _auth_headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def preview_headers(token: str, sandbox: str, port: int, path: str) -> dict[str, str]:
    """The headers of a port-preview request to ``PREVIEW_URL`` (``runtime.proxy``): the
    app path travels as data, checked here and again by runtimed (``runtime.urlsafety``)."""
    return {
        **_auth_headers(token),
        "X-Kubelab-Sandbox": sandbox,
        "X-Kubelab-Port": str(port),
        "X-Kubelab-Path": app_path(path),
    }


def _runtimed_header(name: str) -> bool:
    """A header runtimed reads for itself on a preview request (its credential, its routing):
    only ``preview_headers`` sets those, never the caller."""
    low = name.lower()
    return low == "authorization" or low.startswith("x-kubelab-")


PREVIEW_URL = "http://runtimed/v1/preview"
ERROR_HEADER = "X-Runtime-Error"  # runtimed's own answers carry it (runtime.proxy), an app's never


def _q(part: str) -> str:
    """One path segment of runtimed's API (a sandbox, session or image name), percent-encoded.
    ``quote`` leaves dots alone and both HTTP clients resolve dot segments before sending
    (``/v1/sandboxes/../images`` is ``/v1/images``): an empty, ``.`` or ``..`` segment is
    refused, never sent as another route."""
    if part in ("", ".", ".."):
        raise errors.BadRequest(f"{part!r} is not a name runtimed's API knows")
    return quote(part, safe="")


_tls_lock = threading.Lock()
_tls: ssl.SSLContext | None = None


def tls_context() -> ssl.SSLContext:
    """The TLS context of every Client's transport, made once per process: httpx otherwise
    builds one per transport (the CA bundle parsed, ~90 ms of CPU), although a unix socket
    to runtimed never speaks TLS; a class's provisioning and grading make Clients per task,
    and py-spy found a quarter of those workers' time in ``ssl.create_default_context``.
    A prefork worker calls it before forking (labs/grader tasks), so its pool inherits it."""
    global _tls
    with _tls_lock:
        if _tls is None:
            _tls = ssl.create_default_context()
        return _tls


def warm_up() -> None:
    """What a prefork worker's main process calls before forking its pool: the TLS context
    and httpx's transport modules (httpcore, imported on the first transport: py-spy saw
    each pool process pay for it on its first task while a class was starting)."""
    httpx.HTTPTransport(uds="/nonexistent", verify=tls_context())


def _unreachable(path: str, exc: BaseException) -> errors.Unreachable:
    return errors.Unreachable(
        f"runtimed is not reachable on {path} ({exc}); is it running? "
        "(start it with `python -m runtime daemon`, or point RUNTIME_SOCKET/--socket at it)"
    )


def _cut_off(method: str, path: str, exc: BaseException) -> errors.Unreachable:
    return errors.Unreachable(
        f"runtimed closed the connection before answering {method} {path} ({type(exc).__name__}: {exc}); "
        "it may be restarting"
    )


def error_from(status: int, body: Any) -> errors.RuntimeError:
    """The exception the daemon described in an error response."""
    if isinstance(body, Mapping) and isinstance(body.get("error"), str):
        cls = errors.ERRORS.get(body["error"], errors.RuntimeError)
        return cls(str(body.get("message", body["error"])))
    text = body if isinstance(body, str) else json.dumps(body)
    return errors.RuntimeError(f"runtimed answered HTTP {status}: {text[:500]}")


def _spec_json(spec: Any) -> dict[str, Any]:
    if hasattr(spec, "to_json"):
        return cast(dict[str, Any], spec.to_json())
    if isinstance(spec, Mapping):
        return dict(spec)
    raise TypeError(f"spec must be a SandboxSpec or a mapping, not {type(spec).__name__}")


@dataclass(frozen=True)
class ExecResult:
    exit_code: int | None
    stdout: bytes
    stderr: bytes
    stdout_truncated: bool
    stderr_truncated: bool
    timed_out: bool
    duration_ms: float

    @property
    def stdout_text(self) -> str:
        return self.stdout.decode("utf-8", errors="replace")

    @property
    def stderr_text(self) -> str:
        return self.stderr.decode("utf-8", errors="replace")

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ExecResult:
        def dec(s: str) -> bytes:
            if d.get("encoding") == "base64":
                return base64.b64decode(s)
            return s.encode()

        return cls(
            exit_code=d["exit_code"],
            stdout=dec(d["stdout"]),
            stderr=dec(d["stderr"]),
            stdout_truncated=bool(d["stdout_truncated"]),
            stderr_truncated=bool(d["stderr_truncated"]),
            timed_out=bool(d["timed_out"]),
            duration_ms=float(d["duration_ms"]),
        )


def _exec_body(
    argv: list[str],
    timeout: float,
    env: Mapping[str, str] | None,
    cwd: str | None,
    stdin: bytes | str | None,
    max_output: int | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"argv": list(argv), "timeout": timeout, "encoding": "base64"}
    if env:
        body["env"] = dict(env)
    if cwd:
        body["cwd"] = cwd
    if stdin is not None:
        raw = stdin.encode() if isinstance(stdin, str) else stdin
        body["stdin"] = base64.b64encode(raw).decode("ascii")
        body["stdin_encoding"] = "base64"
    if max_output is not None:
        body["max_output"] = max_output
    return body


def _session_body(
    argv: list[str] | None, rows: int, cols: int, env: Mapping[str, str] | None, cwd: str | None
) -> dict[str, Any]:
    body: dict[str, Any] = {"rows": rows, "cols": cols}
    if argv:
        body["argv"] = list(argv)
    if env:
        body["env"] = dict(env)
    if cwd:
        body["cwd"] = cwd
    return body


# -- sync ----------------------------------------------------------------------------------
class SyncAttach:
    """A blocking attach stream: ``recv()`` returns bytes, a control event dict, or None at the end.

    ``recv(timeout)`` raises ``TimeoutError`` when nothing arrived in time.
    ``send``/``resize`` may be called from another thread than ``recv``.
    Always the WebSocket through runtimed: the terminal handoff (``DirectAttach``) is the
    async client's, for the web tier's terminals; the CLI, tests and graders keep this path.
    """

    def __init__(self, conn: ClientConnection) -> None:
        self._conn = conn
        self.exit_code: int | None = None

    def send(self, data: bytes) -> None:
        self._conn.send(data)

    def resize(self, rows: int, cols: int) -> None:
        self._conn.send(json.dumps({"type": "resize", "rows": rows, "cols": cols}))

    def recv(self, timeout: float | None = None) -> bytes | ControlEvent | None:
        try:
            msg = self._conn.recv(timeout=timeout)
        except ConnectionClosed:
            return None
        if isinstance(msg, bytes):
            return msg
        event = cast(ControlEvent, json.loads(msg))
        if event.get("type") == "exit":
            self.exit_code = event.get("code")
        return event

    def __iter__(self) -> Iterator[bytes | ControlEvent]:
        while (item := self.recv()) is not None:
            yield item

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> SyncAttach:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SyncExecStream:
    """A streaming non-tty exec: ``send``/``close_stdin`` in, (stream, bytes) and the exit out."""

    def __init__(self, conn: ClientConnection) -> None:
        self._conn = conn
        self.exit_code: int | None = None
        self.timed_out = False
        self._lock = threading.Lock()

    def send(self, data: bytes) -> None:
        with self._lock:
            self._conn.send(data)

    def close_stdin(self) -> None:
        with self._lock:
            self._conn.send(json.dumps({"type": "eof"}))

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        """Yields (1 for stdout | 2 for stderr, data) until the process exits."""
        while True:
            try:
                msg = self._conn.recv()
            except ConnectionClosed:
                raise errors.RuntimeError("runtimed closed the exec stream early") from None
            if isinstance(msg, bytes):
                if msg:
                    yield msg[0], msg[1:]
                continue
            event = json.loads(msg)
            if event.get("type") == "exit":
                self.exit_code = event.get("code")
                self.timed_out = bool(event.get("timed_out"))
                return
            if event.get("type") == "error":
                raise error_from(500, event)

    def close(self) -> None:
        self._conn.close()


class Client:
    """Synchronous client; one instance may be shared by threads (httpx is thread-safe)."""

    def __init__(
        self,
        socket_path: str | os.PathLike[str] | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        token: str | None = None,
        ca: str | None = None,
    ) -> None:
        self.socket_path = resolve_socket_path(socket_path)
        self.timeout = timeout
        self.token = resolve_token(token)
        self.ca = ca
        self._remote_tls = remote_tls_context(ca) if is_remote(self.socket_path) else None
        if self._remote_tls is not None:
            transport = httpx.HTTPTransport(verify=self._remote_tls)
            base = self.socket_path.rstrip("/")
        else:
            transport = httpx.HTTPTransport(uds=self.socket_path, verify=tls_context())
            base = BASE
        self._http = httpx.Client(
            transport=transport,
            base_url=base,
            timeout=timeout,
            headers=_auth_headers(self.token),
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # -- plumbing --------------------------------------------------------------------------
    def _request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        timeout: float | None = None,
        content: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> Any:
        try:
            resp = self._http.request(
                method,
                path,
                json=json_body,
                content=content,
                params=params,
                timeout=timeout or self.timeout,
            )
        except (httpx.ConnectError, FileNotFoundError, ConnectionRefusedError) as e:
            raise _unreachable(self.socket_path, e) from None
        except httpx.TimeoutException as e:
            limit = timeout or self.timeout
            raise errors.RuntimeError(f"runtimed did not answer {method} {path} within {limit:.0f}s ({e})") from None
        except httpx.TransportError as e:  # read/write/protocol errors mid-request: runtimed went away
            raise _cut_off(method, path, e) from None
        return self._decode(resp)

    @staticmethod
    def _decode(resp: httpx.Response) -> Any:
        try:
            body = resp.json()
        except ValueError:
            body = resp.text
        if resp.status_code >= 400:
            raise error_from(resp.status_code, body)
        return body

    def _ws(self, path: str, timeout: float | None = None) -> ClientConnection:
        conn: ClientConnection
        options: dict[str, Any] = {
            "open_timeout": timeout or self.timeout,
            "compression": None,
            "proxy": None,
            "max_size": 8 * 2**20,
            "ping_interval": None,
            "legacy": True,
            "additional_headers": _auth_headers(self.token),
        }
        try:
            if self._remote_tls is not None:
                url = "wss://" + self.socket_path.removeprefix("https://").rstrip("/") + path
                conn = ws_connect(url, ssl=self._remote_tls, **options)
            else:
                conn = unix_connect(self.socket_path, WS_BASE + path, **options)
        except InvalidStatus as e:
            body: Any
            try:
                body = json.loads(e.response.body or b"")
            except ValueError:
                body = (e.response.body or b"").decode("utf-8", "replace")
            raise error_from(e.response.status_code, body) from None
        except (FileNotFoundError, ConnectionRefusedError) as e:
            raise _unreachable(self.socket_path, e) from None
        except TimeoutError as e:
            raise errors.RuntimeError(f"runtimed did not accept {path}: {e}") from None
        return conn

    # -- misc, images -------------------------------------------------------------------------
    def healthz(self) -> dict[str, Any]:
        return cast(dict[str, Any], self._request("GET", "/v1/healthz"))

    def images(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], self._request("GET", "/v1/images")["images"])

    def build_image(
        self,
        name: str,
        on_progress: Callable[[str], None] | None = None,
        *,
        timeout: float = BUILD_TIMEOUT,
    ) -> dict[str, Any]:
        """Build a base image from its recipe, streaming progress lines to ``on_progress``."""
        path = f"/v1/images/{_q(name)}/build"
        try:
            with self._http.stream("POST", path, timeout=httpx.Timeout(self.timeout, read=timeout)) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    self._decode(resp)
                for line in resp.iter_lines():
                    if not line.strip():
                        continue
                    item = json.loads(line)
                    if item["type"] == "progress":
                        if on_progress is not None:
                            on_progress(item["line"])
                    elif item["type"] == "done":
                        return cast(dict[str, Any], item["image"])
                    elif item["type"] == "error":
                        raise error_from(500, item)
        except (httpx.ConnectError, FileNotFoundError) as e:
            raise _unreachable(self.socket_path, e) from None
        except httpx.TimeoutException as e:
            raise errors.RuntimeError(f"building image {name} timed out ({e})") from None
        raise errors.RuntimeError(f"runtimed ended the build of {name} without a result")

    def import_image(self, tar_path: str | os.PathLike[str], name: str | None = None) -> dict[str, Any]:
        params = {"name": name} if name else None
        with Path(tar_path).open("rb") as f:
            body = self._request("POST", "/v1/images/import", content=f, params=params, timeout=BUILD_TIMEOUT)
        return cast(dict[str, Any], body["image"])

    def export_image(self, name: str, tar_path: str | os.PathLike[str]) -> None:
        path = f"/v1/images/{_q(name)}/export"
        try:
            with self._http.stream("GET", path, timeout=httpx.Timeout(self.timeout, read=BUILD_TIMEOUT)) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    self._decode(resp)
                tmp = Path(f"{os.fspath(tar_path)}.part")
                with tmp.open("wb") as f:
                    for chunk in resp.iter_bytes(1 << 20):
                        f.write(chunk)
                tmp.replace(tar_path)
        except (httpx.ConnectError, FileNotFoundError) as e:
            raise _unreachable(self.socket_path, e) from None

    def remove_image(self, name: str) -> None:
        self._request("DELETE", f"/v1/images/{_q(name)}")

    # -- sandboxes ---------------------------------------------------------------------------
    def create_sandbox(self, spec: Any, *, timeout: float = CREATE_TIMEOUT) -> dict[str, Any]:
        body = self._request("POST", "/v1/sandboxes", json_body=_spec_json(spec), timeout=timeout)
        return cast(dict[str, Any], body)

    def get_sandbox(self, sid: str) -> dict[str, Any]:
        return cast(dict[str, Any], self._request("GET", f"/v1/sandboxes/{_q(sid)}"))

    def list_sandboxes(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], self._request("GET", "/v1/sandboxes")["sandboxes"])

    def remove_sandbox(self, sid: str, *, timeout: float = 120.0) -> None:
        self._request("DELETE", f"/v1/sandboxes/{_q(sid)}", timeout=timeout)

    def stop_sandbox(self, sid: str, *, timeout: float = 120.0) -> dict[str, Any]:
        body = self._request("POST", f"/v1/sandboxes/{_q(sid)}/stop", timeout=timeout)
        return cast(dict[str, Any], body)

    def pause_sandbox(self, sid: str, *, timeout: float = 180.0) -> dict[str, Any]:
        """Pause a sandbox (admin): its processes stopped, its disk kept; the answer adds
        ``shells`` ({session id: working directory}) and ``disk_image_bytes``."""
        body = self._request("POST", f"/v1/sandboxes/{_q(sid)}/pause", timeout=timeout)
        return cast(dict[str, Any], body)

    def resume_sandbox(self, sid: str, *, timeout: float = 300.0) -> dict[str, Any]:
        """Start a paused sandbox again (admin), with its containers and lab cluster."""
        body = self._request("POST", f"/v1/sandboxes/{_q(sid)}/resume", timeout=timeout)
        return cast(dict[str, Any], body)

    def stats(self, sid: str) -> dict[str, Any]:
        return cast(dict[str, Any], self._request("GET", f"/v1/sandboxes/{_q(sid)}/stats"))

    def mint_token(self, sid: str, *, role: str | None = None, ops: Sequence[str] = (), ttl: float = 3600) -> str:
        """A sandbox token for ``sid`` (needs the admin token): a ``role`` of
        ``runtime.auth.ROLES`` or explicit ``ops``, good for ``ttl`` seconds."""
        req: dict[str, Any] = {"ttl_seconds": max(1, int(ttl))}
        if role is not None:
            req["role"] = role
        else:
            req["ops"] = list(ops)
        return cast(str, self._request("POST", f"/v1/sandboxes/{_q(sid)}/tokens", json_body=req)["token"])

    def touch(self, sid: str) -> dict[str, Any]:
        return cast(dict[str, Any], self._request("POST", f"/v1/sandboxes/{_q(sid)}/touch"))

    def docker_socket(self, sid: str) -> str:
        """Host path of the Docker Engine API socket of a sandbox created with the
        ``docker`` service (for graders: ``docker.DockerClient(base_url="unix://" + path)``)."""
        body = self._request("GET", f"/v1/sandboxes/{_q(sid)}/docker")
        return cast(str, body["socket"])

    # the lab editor (runtime.sandbox.files): paths are relative to the sandbox's /root
    def files_list(self, sid: str, path: str = "") -> dict[str, Any]:
        """``{"path", "entries": [{"name", "type", "size", "mtime"}], "truncated"}`` of one directory."""
        body = self._request("GET", f"/v1/sandboxes/{_q(sid)}/files", params={"path": path})
        return cast(dict[str, Any], body)

    def file_read(self, sid: str, path: str) -> dict[str, Any]:
        """``{"path", "content", "etag", "size", "mtime"}`` of a UTF-8 text file."""
        body = self._request("GET", f"/v1/sandboxes/{_q(sid)}/files/content", params={"path": path})
        return cast(dict[str, Any], body)

    def file_write(self, sid: str, path: str, content: str, etag: str | None) -> dict[str, Any]:
        """Save ``content``: ``etag`` of the version read (``Conflict`` if the file changed
        since), None to create a new file, ``"*"`` to overwrite. ``{"path", "etag", ...}``."""
        req = {"path": path, "content": content, "etag": etag}
        body = self._request("PUT", f"/v1/sandboxes/{_q(sid)}/files/content", json_body=req)
        return cast(dict[str, Any], body)

    def kubeconfig(self, sid: str) -> str:
        """Admin kubeconfig (YAML) of the lab cluster of a sandbox created with the
        ``kubernetes`` service, pointing at runtimed's host loopback listener (graders)."""
        body = self._request("GET", f"/v1/sandboxes/{_q(sid)}/kubeconfig")
        return cast(str, body["kubeconfig"])

    def kube_user(self, sid: str, user: str, groups: Sequence[str] = (), ttl: float | None = None) -> dict[str, str]:
        """Mint a token of the sandbox's lab cluster for ``user`` (in ``groups``; it can do
        what RBAC grants, nothing else), valid ``ttl`` seconds or for the cluster's life.
        Returns ``kubeconfig`` (host listener, graders) and ``kubeconfig_inside``
        (``https://127.0.0.1:6443``, to write into the sandbox)."""
        req: dict[str, Any] = {"user": user, "groups": list(groups)}
        if ttl is not None:
            req["ttl_seconds"] = int(ttl)
        return cast(dict[str, str], self._request("POST", f"/v1/sandboxes/{_q(sid)}/kube-users", json_body=req))

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
        made inside the pod's network namespace: ``{"result": "open"|"refused"|"timeout"|
        "unreachable"|"error", "detail": ...}`` (NetworkPolicies apply, as to the pod's own traffic)."""
        req = {"namespace": namespace, "pod": pod, "host": host, "port": port, "protocol": protocol, "timeout": timeout}
        path = f"/v1/sandboxes/{_q(sid)}/kube/connectivity"
        return cast(dict[str, str], self._request("POST", path, json_body=req, timeout=timeout + 30))

    def kube_validate(self, sid: str, objects: Sequence[Any]) -> dict[str, Any]:
        """Dry-run each manifest against the sandbox's lab cluster (``dryRun=All``,
        ``fieldValidation=Strict``; nothing is stored): ``{"results": [{"code", "status",
        "warnings"}]}``, ``status`` the cluster's v1 Status when it refuses the object, else None."""
        body = self._request("POST", f"/v1/sandboxes/{_q(sid)}/kube/validate", json_body={"objects": list(objects)})
        return cast(dict[str, Any], body)

    # -- exec --------------------------------------------------------------------------------
    def exec(
        self,
        sid: str,
        argv: list[str],
        *,
        timeout: float = 30.0,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        stdin: bytes | str | None = None,
        max_output: int | None = None,
    ) -> ExecResult:
        """Run argv in the sandbox; a timeout comes back as ``timed_out=True`` (tree killed)."""
        body = self._request(
            "POST",
            f"/v1/sandboxes/{_q(sid)}/exec",
            json_body=_exec_body(argv, timeout, env, cwd, stdin, max_output),
            timeout=timeout + EXEC_MARGIN,
        )
        return ExecResult.from_json(body)

    def exec_stream(
        self,
        sid: str,
        argv: list[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout: float | None = None,
    ) -> SyncExecStream:
        conn = self._ws(f"/v1/sandboxes/{_q(sid)}/exec/stream")
        req: dict[str, Any] = {"argv": list(argv), "timeout": timeout}
        if env:
            req["env"] = dict(env)
        if cwd:
            req["cwd"] = cwd
        conn.send(json.dumps(req))
        return SyncExecStream(conn)

    # -- sessions ----------------------------------------------------------------------------
    def create_session(
        self,
        sid: str,
        argv: list[str] | None = None,
        *,
        rows: int = 24,
        cols: int = 80,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> dict[str, Any]:
        body = self._request(
            "POST",
            f"/v1/sandboxes/{_q(sid)}/sessions",
            json_body=_session_body(argv, rows, cols, env, cwd),
        )
        return cast(dict[str, Any], body)

    def list_sessions(self, sid: str) -> list[dict[str, Any]]:
        body = self._request("GET", f"/v1/sandboxes/{_q(sid)}/sessions")
        return cast(list[dict[str, Any]], body["sessions"])

    def get_session(self, sid: str, session_id: str) -> dict[str, Any]:
        body = self._request("GET", f"/v1/sandboxes/{_q(sid)}/sessions/{_q(session_id)}")
        return cast(dict[str, Any], body)

    def remove_session(self, sid: str, session_id: str) -> None:
        self._request("DELETE", f"/v1/sandboxes/{_q(sid)}/sessions/{_q(session_id)}")

    def resize(self, sid: str, session_id: str, rows: int, cols: int) -> dict[str, Any]:
        body = self._request(
            "POST",
            f"/v1/sandboxes/{_q(sid)}/sessions/{_q(session_id)}/resize",
            json_body={"rows": rows, "cols": cols},
        )
        return cast(dict[str, Any], body)

    def attach(self, sid: str, session_id: str, *, read_only: bool = False) -> SyncAttach:
        mode = "ro" if read_only else "rw"
        path = f"/v1/sandboxes/{_q(sid)}/sessions/{_q(session_id)}/attach?mode={mode}"
        return SyncAttach(self._ws(path))


# -- async ---------------------------------------------------------------------------------
class _Stream:
    """What both async attach streams share: iteration over ``recv()`` until its None, and
    ``async with`` closing the stream."""

    async def recv(self, timeout: float | None = None) -> bytes | ControlEvent | None:  # noqa: ASYNC109
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    def __aiter__(self) -> AsyncIterator[bytes | ControlEvent]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[bytes | ControlEvent]:
        while (item := await self.recv()) is not None:
            yield item

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class AsyncAttach(_Stream):
    """An attach stream: ``await recv()`` → bytes, control event dict, or None at the end."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self.exit_code: int | None = None

    async def send(self, data: bytes) -> None:
        await self._ws.send_bytes(data)

    async def resize(self, rows: int, cols: int) -> None:
        await self._ws.send_json({"type": "resize", "rows": rows, "cols": cols})

    async def recv(self, timeout: float | None = None) -> bytes | ControlEvent | None:  # noqa: ASYNC109
        msg = await self._ws.receive(timeout=timeout)
        if msg.type == aiohttp.WSMsgType.BINARY:
            return cast(bytes, msg.data)
        if msg.type == aiohttp.WSMsgType.TEXT:
            event = cast(ControlEvent, json.loads(msg.data))
            if event.get("type") == "exit":
                self.exit_code = event.get("code")
            return event
        return None

    @property
    def closed(self) -> bool:
        return self._ws.closed

    async def close(self) -> None:
        await self._ws.close()


class DirectAttach(_Stream):
    """An attach stream runtimed handed off: a socket straight to the session's PTY holder.

    The same interface as ``AsyncAttach``, and the same items: ``recv()`` returns output
    bytes, ``{"type": "exit", "code": N}`` (None: unknown) once the shell has ended and all
    its output came, or None at the end of the stream. Underneath are the holder's datagrams
    (``runtime.sessions.holder``): its hello 'H' is skipped, 'O' is output (datagrams already
    waiting are joined, up to ``DIRECT_COALESCE`` bytes), 'E' is the exit; input goes as 'I'
    datagrams and a resize as 'R'. Read-only streams send neither (the holder would ignore
    them anyway). Nothing passes through runtimed, so the stream outlives a runtimed
    restart; flow control is the socket's: not calling ``recv()`` fills it, and the holder
    then stops reading the shell's terminal.
    """

    def __init__(self, sock: socket.socket, *, read_only: bool) -> None:
        sock.setblocking(False)
        self._sock = sock
        self.read_only = read_only
        self.exit_code: int | None = None
        self._ended = False
        self._closed = False
        self._ahead: deque[bytes] = deque()  # datagrams read while joining output

    async def send(self, data: bytes) -> None:
        if self.read_only or self._closed or not data:
            return
        for msg in holders.input_messages(data):
            if not await self._send(msg):
                return

    async def resize(self, rows: int, cols: int) -> None:
        if self.read_only or self._closed or not (0 < rows <= 1000 and 0 < cols <= 1000):
            return
        await self._send(holders.resize_message(rows, cols))

    async def _send(self, msg: bytes) -> bool:
        try:
            await asyncio.get_running_loop().sock_sendall(self._sock, msg)
        except (OSError, ValueError):  # the holder is gone (or we closed): recv() says the end
            return False
        return True

    async def recv(self, timeout: float | None = None) -> bytes | ControlEvent | None:  # noqa: ASYNC109
        """Raises ``TimeoutError`` when nothing arrived within ``timeout`` seconds."""
        if timeout is None:
            return await self._recv()
        return await asyncio.wait_for(self._recv(), timeout)

    async def _datagram(self) -> bytes:
        if self._ahead:
            return self._ahead.popleft()
        try:
            return await asyncio.get_running_loop().sock_recv(self._sock, holders.RECV_MAX)
        except (OSError, ValueError):
            return b""

    async def _recv(self) -> bytes | ControlEvent | None:
        while not self._ended and not self._closed:
            msg = await self._datagram()
            kind = msg[:1]
            if kind == b"O":
                parts = [msg[1:]]
                size = len(msg) - 1
                while size < DIRECT_COALESCE and not self._ahead:
                    try:
                        nxt = self._sock.recv(holders.RECV_MAX)
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        nxt = b""
                    if nxt[:1] != b"O":
                        self._ahead.append(nxt)
                        break
                    parts.append(nxt[1:])
                    size += len(nxt) - 1
                if size:
                    return b"".join(parts)
            elif kind == b"E":
                self._ended = True
                self.exit_code = holders.parse_exit(msg)
                return {"type": "exit", "code": self.exit_code}
            elif not msg:
                self._ended = True
            # 'H' (the hello), and any message a newer holder adds: skipped
        return None

    @property
    def closed(self) -> bool:
        return self._closed or self._ended

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            # A recv() or send() cancelled just now (the consumer's disconnect cancels its
            # reader, then closes) still has the fd registered with the loop until a callback
            # runs later in this turn; a socket opened meanwhile gets the same number, and its
            # registration would only update that stale entry, never reaching the kernel: it
            # would never wake. So the loop lets go of the fd before it is closed.
            fd = self._sock.fileno()
            if fd >= 0:
                loop = asyncio.get_running_loop()
                loop.remove_reader(fd)
                loop.remove_writer(fd)
            self._sock.close()  # the holder sees EOF and drops this client


async def _readable(sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    fd = sock.fileno()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        loop.remove_reader(fd)


async def _recv_with_fd(sock: socket.socket) -> tuple[bytes, socket.socket | None]:
    """One datagram and the socket passed with it, if any (received close-on-exec)."""
    while True:
        try:
            msg, fds, _flags, _addr = socket.recv_fds(sock, HANDOFF_MAX_REPLY, 1, socket.MSG_CMSG_CLOEXEC)
        except (BlockingIOError, InterruptedError):
            await _readable(sock)
            continue
        passed = None
        for fd in fds:  # at most one fits; a second would have been closed by the kernel
            if passed is None:
                try:
                    passed = socket.socket(fileno=fd)
                except OSError:
                    os.close(fd)
                    raise
            else:
                os.close(fd)
        return msg, passed


PREVIEW_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=300)


class PreviewResponse:
    """An app's answer through runtimed's ``/v1/preview``, streamed: ``response`` is the
    upstream answer as aiohttp gives it (``status``, ``headers``, ``content``); ``close()``
    releases it and its connection."""

    def __init__(self, response: aiohttp.ClientResponse, http: aiohttp.ClientSession) -> None:
        self.response = response
        self._http = http

    async def close(self) -> None:
        self.response.release()
        await self._http.close()


class PreviewSocket:
    """A WebSocket to an app through runtimed's ``/v1/preview``; ``close()`` ends it."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, http: aiohttp.ClientSession) -> None:
        self.ws = ws
        self._http = http

    async def close(self) -> None:
        try:
            await self.ws.close()
        finally:
            await self._http.close()


class AsyncClient:
    """asyncio client (aiohttp over the unix socket); use as ``async with AsyncClient() as c``."""

    def __init__(
        self,
        socket_path: str | os.PathLike[str] | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        token: str | None = None,
        ca: str | None = None,
    ) -> None:
        self.socket_path = resolve_socket_path(socket_path)
        self.timeout = timeout
        self.token = resolve_token(token)
        self._remote_tls = remote_tls_context(ca) if is_remote(self.socket_path) else None
        self._base = self.socket_path.rstrip("/") if self._remote_tls is not None else BASE
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector: aiohttp.BaseConnector = (
                aiohttp.TCPConnector(ssl=self._remote_tls)
                if self._remote_tls is not None
                else aiohttp.UnixConnector(path=self.socket_path)
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                headers=_auth_headers(self.token),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        timeout: float | None = None,  # noqa: ASYNC109 - a per-request HTTP timeout
    ) -> Any:
        try:
            async with self._http().request(
                method,
                self._base + path,
                json=json_body,
                timeout=aiohttp.ClientTimeout(total=timeout or self.timeout),
            ) as resp:
                text = await resp.text()
                status = resp.status
        except (aiohttp.ClientConnectorError, FileNotFoundError) as e:
            raise _unreachable(self.socket_path, e) from None
        except TimeoutError:
            raise errors.RuntimeError(
                f"runtimed did not answer {method} {path} within {timeout or self.timeout:.0f}s"
            ) from None
        try:
            body: Any = json.loads(text)
        except ValueError:
            body = text
        if status >= 400:
            raise error_from(status, body)
        return body

    async def healthz(self) -> dict[str, Any]:
        return cast(dict[str, Any], await self._request("GET", "/v1/healthz"))

    async def images(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], (await self._request("GET", "/v1/images"))["images"])

    async def create_sandbox(
        self,
        spec: Any,
        *,
        timeout: float = CREATE_TIMEOUT,  # noqa: ASYNC109 - a per-request HTTP timeout
    ) -> dict[str, Any]:
        body = await self._request("POST", "/v1/sandboxes", json_body=_spec_json(spec), timeout=timeout)
        return cast(dict[str, Any], body)

    async def get_sandbox(self, sid: str) -> dict[str, Any]:
        return cast(dict[str, Any], await self._request("GET", f"/v1/sandboxes/{_q(sid)}"))

    async def list_sandboxes(self) -> list[dict[str, Any]]:
        body = await self._request("GET", "/v1/sandboxes")
        return cast(list[dict[str, Any]], body["sandboxes"])

    async def remove_sandbox(self, sid: str) -> None:
        await self._request("DELETE", f"/v1/sandboxes/{_q(sid)}", timeout=120.0)

    async def stop_sandbox(self, sid: str) -> dict[str, Any]:
        body = await self._request("POST", f"/v1/sandboxes/{_q(sid)}/stop", timeout=120.0)
        return cast(dict[str, Any], body)

    async def stats(self, sid: str) -> dict[str, Any]:
        return cast(dict[str, Any], await self._request("GET", f"/v1/sandboxes/{_q(sid)}/stats"))

    async def touch(self, sid: str) -> dict[str, Any]:
        return cast(dict[str, Any], await self._request("POST", f"/v1/sandboxes/{_q(sid)}/touch"))

    async def docker_socket(self, sid: str) -> str:
        """See ``Client.docker_socket``."""
        body = await self._request("GET", f"/v1/sandboxes/{_q(sid)}/docker")
        return cast(str, body["socket"])

    async def kubeconfig(self, sid: str) -> str:
        """See ``Client.kubeconfig``."""
        body = await self._request("GET", f"/v1/sandboxes/{_q(sid)}/kubeconfig")
        return cast(str, body["kubeconfig"])

    async def kube_user(
        self, sid: str, user: str, groups: Sequence[str] = (), ttl: float | None = None
    ) -> dict[str, str]:
        """See ``Client.kube_user``."""
        req: dict[str, Any] = {"user": user, "groups": list(groups)}
        if ttl is not None:
            req["ttl_seconds"] = int(ttl)
        return cast(dict[str, str], await self._request("POST", f"/v1/sandboxes/{_q(sid)}/kube-users", json_body=req))

    async def exec(
        self,
        sid: str,
        argv: list[str],
        *,
        timeout: float = 30.0,  # noqa: ASYNC109 - the daemon kills the tree at this limit
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        stdin: bytes | str | None = None,
        max_output: int | None = None,
    ) -> ExecResult:
        body = await self._request(
            "POST",
            f"/v1/sandboxes/{_q(sid)}/exec",
            json_body=_exec_body(argv, timeout, env, cwd, stdin, max_output),
            timeout=timeout + EXEC_MARGIN,
        )
        return ExecResult.from_json(body)

    async def create_session(
        self,
        sid: str,
        argv: list[str] | None = None,
        *,
        rows: int = 24,
        cols: int = 80,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> dict[str, Any]:
        body = await self._request(
            "POST",
            f"/v1/sandboxes/{_q(sid)}/sessions",
            json_body=_session_body(argv, rows, cols, env, cwd),
        )
        return cast(dict[str, Any], body)

    async def list_sessions(self, sid: str) -> list[dict[str, Any]]:
        body = await self._request("GET", f"/v1/sandboxes/{_q(sid)}/sessions")
        return cast(list[dict[str, Any]], body["sessions"])

    async def get_session(self, sid: str, session_id: str) -> dict[str, Any]:
        path = f"/v1/sandboxes/{_q(sid)}/sessions/{_q(session_id)}"
        return cast(dict[str, Any], await self._request("GET", path))

    async def remove_session(self, sid: str, session_id: str) -> None:
        await self._request("DELETE", f"/v1/sandboxes/{_q(sid)}/sessions/{_q(session_id)}")

    async def resize(self, sid: str, session_id: str, rows: int, cols: int) -> dict[str, Any]:
        body = await self._request(
            "POST",
            f"/v1/sandboxes/{_q(sid)}/sessions/{_q(session_id)}/resize",
            json_body={"rows": rows, "cols": cols},
        )
        return cast(dict[str, Any], body)

    async def attach(self, sid: str, session_id: str, *, read_only: bool = False) -> AsyncAttach | DirectAttach:
        """A stream of the session's terminal. On this host's runtimed, the terminal handoff
        first (``DirectAttach``: the bytes then never pass through runtimed); when runtimed
        does not offer it (no holder, an exited session, no handoff socket) or over TLS (a
        lab node's runtimed), the WebSocket through runtimed (``AsyncAttach``)."""
        mode = "ro" if read_only else "rw"
        path = f"/v1/sandboxes/{_q(sid)}/sessions/{_q(session_id)}/attach?mode={mode}"
        if self._remote_tls is None:
            direct = await self._handoff(sid, session_id, read_only=read_only)
            if direct is not None:
                return direct
        try:
            ws = await self._http().ws_connect(
                self._base + path,
                timeout=aiohttp.ClientWSTimeout(ws_close=10),
                compress=0,
                max_msg_size=8 * 2**20,
                autoping=True,
            )
        except aiohttp.WSServerHandshakeError:
            # the daemon answered with a JSON error instead of upgrading: fetch it
            await self._request("GET", path)
            raise errors.RuntimeError(f"runtimed refused to attach to {session_id}") from None
        except (aiohttp.ClientConnectorError, FileNotFoundError) as e:
            raise _unreachable(self.socket_path, e) from None
        return AsyncAttach(ws)

    async def _handoff(self, sid: str, session_id: str, *, read_only: bool) -> DirectAttach | None:
        """Ask runtimed's handoff broker for a direct connection to the session's holder; None
        to use the WebSocket instead. Raises what the WebSocket would for 401/403/404."""
        where = handoff_path(self.socket_path)
        request = {
            "authorization": f"Bearer {self.token}" if self.token else None,
            "sandbox": sid,
            "session": session_id,
            "mode": "ro" if read_only else "rw",
        }
        loop = asyncio.get_running_loop()
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        conn.setblocking(False)
        direct: socket.socket | None = None
        try:
            async with asyncio.timeout(HANDOFF_TIMEOUT):
                await loop.sock_connect(conn, where)
                await loop.sock_sendall(conn, json.dumps(request).encode())
                data, direct = await _recv_with_fd(conn)
                reply = json.loads(data) if data else {}
                if not isinstance(reply, dict):
                    raise ValueError(f"a reply that is not an object: {data[:100]!r}")
                if reply.get("ok") is not True or direct is None:
                    status = reply.get("status")
                    if status in HANDOFF_REFUSALS:
                        raise error_from(int(status), reply)
                    if reply.get("error") != "not_offered":
                        log.info("terminal handoff of %s refused (%s); using the WebSocket", session_id, reply)
                    return None
                if direct.family != socket.AF_UNIX or direct.type != socket.SOCK_SEQPACKET:
                    raise ValueError(f"runtimed passed a {direct.family!r} {direct.type!r} socket")
                # the holder's hello says it took us (a holder with no room closes at once)
                direct.setblocking(False)
                hello = await loop.sock_recv(direct, holders.RECV_MAX)
                if hello[:1] != b"H":
                    log.info("the holder of %s did not take the handoff; using the WebSocket", session_id)
                    return None
                stream = DirectAttach(direct, read_only=read_only)
                direct = None  # the stream's now
                return stream
        except (FileNotFoundError, ConnectionRefusedError):
            return None  # no broker (an older runtimed, or none running): the WebSocket says which
        except (OSError, ValueError, TimeoutError) as e:
            log.warning("terminal handoff via %s failed (%s); using the WebSocket", where, e)
            return None
        finally:
            conn.close()
            if direct is not None:
                direct.close()

    # -- port preview (runtime.proxy) ------------------------------------------------------------
    def _preview_http(self, timeout: aiohttp.ClientTimeout | None = PREVIEW_TIMEOUT) -> aiohttp.ClientSession:
        # one session per preview request or socket, never this client's own: an app's
        # Set-Cookie must not land in a jar that another request would send on (DummyCookieJar),
        # and its body goes on as the app encoded it (no decompression)
        connector: aiohttp.BaseConnector = (
            aiohttp.TCPConnector(ssl=self._remote_tls)
            if self._remote_tls is not None
            else aiohttp.UnixConnector(path=self.socket_path)
        )
        return aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            timeout=timeout or aiohttp.client.DEFAULT_TIMEOUT,
        )

    def _preview_url(self, query: str) -> str:
        return self._base + "/v1/preview" + (f"?{query}" if query else "")

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
        """One HTTP request to the app on ``port`` of sandbox ``sid`` (``path`` percent-encoded,
        no leading slash; ``query`` as sent): the answer, streaming. This client's token is
        the credential; ``headers`` go on to the app as they are, but for its ``Authorization`` and
        ``X-Kubelab-*`` (runtimed's own, dropped here whatever the caller dropped).
        runtimed's own refusals carry ``ERROR_HEADER``; an unreachable runtimed raises
        ``errors.Unreachable``."""
        # the caller's own Authorization and X-Kubelab-* never go, in any spelling: with no
        # token of this client's, a browser's Authorization would otherwise be runtimed's credential
        sent = {k: v for k, v in headers.items() if not _runtimed_header(k)}
        sent.update(preview_headers(self.token or "", sid, port, path))
        http = self._preview_http()
        try:
            response = await http.request(
                method, self._preview_url(query_string(query)), headers=sent, data=body, allow_redirects=False
            )
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            await http.close()
            raise _unreachable(self.socket_path, e) from None
        except BaseException:
            await http.close()
            raise
        return PreviewResponse(response, http)

    async def preview_ws(
        self, sid: str, port: int, path: str, query: str, *, protocols: Sequence[str] = ()
    ) -> PreviewSocket:
        """A WebSocket to the app on ``port`` of sandbox ``sid`` (see ``preview``)."""
        http = self._preview_http(timeout=None)  # aiohttp's defaults; the socket's own timeouts below
        try:
            ws = await http.ws_connect(
                self._preview_url(query_string(query)),
                headers=preview_headers(self.token or "", sid, port, path),
                protocols=tuple(protocols),
                timeout=aiohttp.ClientWSTimeout(10),
            )
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            await http.close()
            raise _unreachable(self.socket_path, e) from None
        except BaseException:
            await http.close()
            raise
        return PreviewSocket(ws, http)
