"""The per-sandbox APIs relayed through runtimed's own API (``SANDBOX_BACKEND=kubernetes``, #17).

On one box a grader reaches a sandbox's lab cluster on runtimed's loopback listener and its
Docker engine on a host unix socket. With sandboxes spread over lab nodes neither is reachable
from the workers, so runtimed relays both under its own routes, which its TLS listener
(``--listen-tls``) serves across the network:

``/v1/sandboxes/{id}/kube-api/<path>``
    to ``<lab cluster server>/<path>`` of that sandbox's cluster. The caller's credential is
    runtimed's sandbox token (operation ``kubeconfig``: the graders' role); the relay replaces
    it with the cluster's grader credential (what ``GET /v1/sandboxes/{id}/kubeconfig`` gives a
    grader on one box; its ``server`` is a loopback address of the node). A kubeconfig whose
    ``server`` is this prefix works with kubectl and the ``kubernetes`` client unchanged.
``/v1/sandboxes/{id}/docker-api/<path>``
    to the sandbox's host-side Docker socket (operation ``docker``); the token travels on, and
    that socket checks it again for the same sandbox. ``docker``/the SDK with ``base_url``
    ``https://<node>:<port>/v1/sandboxes/<id>/docker-api`` work unchanged.

The path is data: it is taken from the request line as sent (never from the router's decoded,
normalised view), must be exactly under the route's own sandbox, and passes
``runtime.urlsafety.app_path`` (no dot segments, encoded slashes, double encoding, absolute
URLs); it is then sent upstream without re-normalisation. Connection upgrades (exec, attach,
port-forward, docker's hijacked streams) are refused with 501: the relay carries plain HTTP
only. Each sandbox may hold ``per_sandbox`` relayed requests at once (429 past that); a request
whose caller has gone away (a watch abandoned mid-stream) is cancelled and gives its slot back.
"""

from __future__ import annotations

import ssl
from typing import Any

import aiohttp
from aiohttp import web
from yarl import URL

from runtime import errors, urlsafety
from runtime.proxy import ERROR_HEADER, HOP_BY_HOP, stream_back, while_connected

KUBE_API = "kube-api"
DOCKER_API = "docker-api"
TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=600)  # watches stream long
_NOT_FORWARDED = HOP_BY_HOP | {"authorization", "expect"}


def tail(request: web.Request, sid: str, kind: str) -> tuple[str, str]:
    """(path under ``/v1/sandboxes/<sid>/<kind>/``, query) from the request line as sent.

    Refuses (BadRequest) anything whose raw path is not literally under this sandbox's prefix,
    or whose rest ``urlsafety`` would not let through."""
    raw = request.raw_path
    path, _, query = raw.partition("?")
    prefix = f"/v1/sandboxes/{sid}/{kind}"
    if path == prefix:
        rest = ""
    elif path.startswith(prefix + "/"):
        rest = path[len(prefix) + 1 :]
    else:
        raise errors.BadRequest(f"refused relayed path: the request line is not under {prefix}/")
    try:
        return urlsafety.app_path(rest) if rest else "", urlsafety.query_string(query)
    except urlsafety.UnsafePath as e:
        raise errors.BadRequest(f"refused relayed path: {e}") from None


class ApiRelay:
    """Streams one HTTP request to a sandbox's own API and its answer back (module docstring)."""

    def __init__(self, per_sandbox: int = 16) -> None:
        self.per_sandbox = per_sandbox
        self._open: dict[str, int] = {}
        self._tcp: aiohttp.ClientSession | None = None

    def _session(self) -> aiohttp.ClientSession:
        if self._tcp is None or self._tcp.closed:
            self._tcp = aiohttp.ClientSession(
                timeout=TIMEOUT,
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                connector=aiohttp.TCPConnector(limit=0),
            )
        return self._tcp

    async def close(self) -> None:
        if self._tcp is not None:
            await self._tcp.close()

    async def handle(
        self,
        request: web.Request,
        sid: str,
        upstream: str,
        *,
        authorization: str | None,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        unix_socket: str | None = None,
        path: str,
        query: str,
    ) -> web.StreamResponse:
        """Relay to ``upstream`` (a base URL without trailing slash) + ``/path?query``, with
        ``authorization`` as the only credential sent (None: none)."""
        if request.headers.get("Upgrade") or "upgrade" in request.headers.get("Connection", "").lower():
            raise errors.NotAvailable(
                "the relay to a sandbox's API carries plain HTTP only: exec, attach and port-forward "
                "(connection upgrades) are not relayed"
            )
        if self._open.get(sid, 0) >= self.per_sandbox:
            return web.Response(
                status=429,
                text=f"this sandbox already has {self.per_sandbox} relayed API requests open\n",
                headers={ERROR_HEADER: "busy", "Retry-After": "2"},
            )
        url = URL(f"{upstream}/{path}" + (f"?{query}" if query else ""), encoded=True)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED}
        if authorization:
            headers["Authorization"] = authorization
        self._open[sid] = self._open.get(sid, 0) + 1
        session: aiohttp.ClientSession | None = None
        try:
            if unix_socket is not None:
                session = aiohttp.ClientSession(
                    timeout=TIMEOUT,
                    cookie_jar=aiohttp.DummyCookieJar(),
                    auto_decompress=False,
                    connector=aiohttp.UnixConnector(path=unix_socket),
                )
            tls: dict[str, Any] = {}
            if ssl_context is not None:
                tls = {"ssl": ssl_context, "server_hostname": server_hostname}
            # cancelled when the caller goes away: an abandoned watch must not hold one of the
            # sandbox's slots (and an upstream connection) until the upstream ends it
            return await while_connected(request, self._relay(request, session or self._session(), url, headers, tls))
        finally:
            self._open[sid] -= 1
            if not self._open[sid]:
                del self._open[sid]
            if session is not None:
                await session.close()

    async def _relay(
        self,
        request: web.Request,
        session: aiohttp.ClientSession,
        url: URL,
        headers: dict[str, str],
        tls: dict[str, Any],
    ) -> web.StreamResponse:
        try:
            upstream = await session.request(
                request.method,
                url,
                headers=headers,
                data=request.content if request.can_read_body else None,
                allow_redirects=False,
                **tls,
            )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise errors.Unreachable(f"the sandbox's API does not answer on its node: {exc}") from None
        return await stream_back(request, upstream)
