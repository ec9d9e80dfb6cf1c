"""HTTP and WebSocket proxy from runtimed to a port inside a sandbox.

``/v1/preview`` (any method) forwards the request to
``http://<sandbox address>:<port>/<path>?<query>`` and streams the answer back; a
WebSocket upgrade is relayed frame by frame. The sandbox, port and path come in
the ``X-Kubelab-Sandbox``, ``X-Kubelab-Port`` and ``X-Kubelab-Path`` headers and
the query in the request's own query string: nothing the browser chose is ever
part of the URL that runtimed routes on, so no path (``..%2f``, double encoding,
an absolute URL) can reach another route of the API. The path is checked by
``runtime.urlsafety.app_path`` on both sides, and the upstream URL is built from
it without normalisation. The caller's ``Authorization`` (its runtimed token) and
the ``X-Kubelab-*`` headers are never forwarded to the app. The web tier's port preview
(``/labs/<session>/port/<p>/``) uses it, so the web tier needs no route into
the sandbox network and never learns sandbox addresses. runtimed reaches the
sandbox from the host side of its bridge, where the sandbox's firewall lets
replies back; only the sandbox's own address is ever a target.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable

import aiohttp
from aiohttp import WSMsgType, web
from yarl import URL

from runtime import errors

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-accept",
    }
)
TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=300)

ERROR_HEADER = "X-Runtime-Error"  # on runtimed's own answers, never on an app's
CLIENT_CHECK = 1.0  # seconds between looks at whether the browser's side is still there
PREVIEW_ROUTE = "/v1/preview"
PREVIEW_SANDBOX_HEADER = "X-Kubelab-Sandbox"
PREVIEW_PORT_HEADER = "X-Kubelab-Port"
PREVIEW_PATH_HEADER = "X-Kubelab-Path"
# the caller's credential for runtimed, and our control headers: never the app's business
_NOT_FORWARDED = HOP_BY_HOP | {"authorization"}


def _forwarded(name: str) -> bool:
    low = name.lower()
    return low not in _NOT_FORWARDED and not low.startswith("x-kubelab-")


class RedirectRefused(aiohttp.ClientError):
    """The app answered a relayed request with a redirect that aiohttp was about to follow."""


async def _refuse_redirect(
    session: aiohttp.ClientSession, ctx: object, params: aiohttp.TraceRequestRedirectParams
) -> None:
    # aiohttp follows redirects of a WebSocket handshake (ws_connect has no allow_redirects):
    # an app answering its upgrade with "302 Location: http://127.0.0.1:6443/" would make
    # runtimed, on the host's network, connect wherever the student says. The relay reaches
    # the sandbox's own address only: a redirect ends the handshake here (HTTP requests are
    # sent with allow_redirects=False and relay a 3xx to the browser as it is).
    raise RedirectRefused(f"the app answered with a redirect ({params.response.status}) to {params.url}")


def unreachable(message: str) -> web.Response:
    """A gateway error the browser shows as is; the header tells it came from us, not from the app."""
    return web.Response(status=502, text=message + "\n", headers={ERROR_HEADER: "unreachable"})


async def stream_back(request: web.Request, upstream: aiohttp.ClientResponse) -> web.StreamResponse:
    """Copy an upstream answer to the caller as it arrives (a watch or an event stream too):
    status, end-to-end headers (never hop-by-hop ones, nor our own error marker), body."""
    async with upstream:
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        for name, value in upstream.headers.items():
            if name.lower() not in HOP_BY_HOP and name.lower() != ERROR_HEADER.lower():  # ours alone
                response.headers.add(name, value)
        await response.prepare(request)
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
        await response.write_eof()
    return response


async def while_connected(request: web.Request, relay: Awaitable[web.StreamResponse]) -> web.StreamResponse:
    """``relay``, cancelled when the browser's side goes away: an app that never answers must
    not hold the sandbox's share of the relay (or a socket) until the read timeout."""
    task = asyncio.ensure_future(relay)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=CLIENT_CHECK)
            if done:
                return task.result()
            transport = request.transport
            if transport is None or transport.is_closing():
                raise ConnectionResetError("the client went away")
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


class SandboxProxy:
    """One relay for every sandbox. Each sandbox may hold at most ``per_sandbox`` upstream
    requests and WebSockets at once (past that: 429 at once, never a wait), and nothing is
    shared beyond that: aiohttp's connector pool is unbounded here, because a pool of 100
    shared by a class let one student's hanging app stall every classmate's preview."""

    def __init__(self, per_sandbox: int = 32) -> None:
        self._session: aiohttp.ClientSession | None = None
        self.per_sandbox = per_sandbox
        self._open: dict[str, int] = {}

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # No cookie jar: one daemon serves every student. No redirect is ever followed.
            never_follow = aiohttp.TraceConfig()
            never_follow.on_request_redirect.append(_refuse_redirect)
            self._session = aiohttp.ClientSession(
                timeout=TIMEOUT,
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                connector=aiohttp.TCPConnector(limit=0),
                trace_configs=[never_follow],
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def handle(
        self, request: web.Request, ip: str, port: int, path: str, query: str = "", *, sandbox: str | None = None
    ) -> web.StreamResponse:
        """Relay ``request`` to ``http://ip:port/path?query``; ``path`` and ``query`` as they
        came on the wire (percent-encoded), already checked by ``runtime.urlsafety``; counted
        against ``sandbox``'s share (default: the address's)."""
        if not 1 <= port <= 65535:
            raise errors.BadRequest(f"port must be 1-65535, not {port}")
        # encoded=True: sent exactly as checked, never re-normalised or re-decoded
        url = URL(f"http://{ip}:{port}/{path}" + (f"?{query}" if query else ""), encoded=True)
        headers = {k: v for k, v in request.headers.items() if _forwarded(k)}
        key = sandbox or ip
        if self._open.get(key, 0) >= self.per_sandbox:
            return web.Response(
                status=429,
                text=f"This sandbox already has {self.per_sandbox} preview requests open; close some (a page that "
                "keeps connections open, a download, a WebSocket) and reload.\n",
                headers={ERROR_HEADER: "busy", "Retry-After": "5"},
            )
        self._open[key] = self._open.get(key, 0) + 1
        try:
            if request.headers.get("Upgrade", "").lower() == "websocket":
                return await self._websocket(request, url, headers)
            return await while_connected(request, self._http_request(request, url, headers, port))
        finally:
            self._open[key] -= 1
            if not self._open[key]:
                del self._open[key]

    async def _http_request(
        self, request: web.Request, url: URL, headers: dict[str, str], port: int
    ) -> web.StreamResponse:
        try:
            upstream = await self._http().request(
                request.method,
                url,
                headers=headers,
                data=request.content if request.can_read_body else None,
                allow_redirects=False,
            )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return unreachable(f"Nothing answers on port {port} in the sandbox ({exc}). Is your app running?")
        return await stream_back(request, upstream)

    async def _websocket(self, request: web.Request, url: URL, headers: dict[str, str]) -> web.StreamResponse:
        protocols = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        headers.pop("Sec-WebSocket-Protocol", None)
        try:
            upstream = await self._http().ws_connect(
                url, headers=headers, protocols=protocols, timeout=aiohttp.ClientWSTimeout(ws_close=10)
            )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise errors.NotAvailable(f"no WebSocket answers at {url.raw_path} in the sandbox ({exc})") from None
        ws = web.WebSocketResponse(protocols=[upstream.protocol] if upstream.protocol else ())
        await ws.prepare(request)

        async def down() -> None:
            async for msg in upstream:
                if msg.type == WSMsgType.TEXT:
                    await ws.send_str(msg.data)
                elif msg.type == WSMsgType.BINARY:
                    await ws.send_bytes(msg.data)
                else:
                    break
            await ws.close()

        relay = asyncio.create_task(down())
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await upstream.send_str(msg.data)
                elif msg.type == WSMsgType.BINARY:
                    await upstream.send_bytes(msg.data)
        finally:
            relay.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await relay
            await upstream.close()
        return ws
