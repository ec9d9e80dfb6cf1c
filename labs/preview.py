"""Port preview: ``/labs/<session>/port/<p>/...`` reaches a web app the student
runs inside their sandbox (like Killercoda's traffic URLs).

Two hops, both streaming: Django → runtimed's ``/v1/sandboxes/<id>/proxy/<p>/``
over its unix socket → the sandbox's own address. HTTP goes through an async
view, WebSockets through ``PortProxyConsumer``. Only the owner and observing
instructors get through (``lab_session_for_user``); the platform's own
cookies and credentials are stripped so the student's app never sees them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from asgiref.sync import sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from labs.models import LabSession
from labs.selectors import Granted, LabSessionNotFound, lab_session_for_user

# Headers that describe one hop, not the message (RFC 9110 §7.6.1), and the
# platform's own credentials, which must never reach the student's app.
HOP_BY_HOP = {
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
}
PRIVATE = {"cookie", "authorization", "x-csrftoken"}
UPSTREAM_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=300)


def _runtime_url(session: LabSession, port: int, path: str) -> str:
    return f"http://runtimed/v1/sandboxes/{session.sandbox_id}/proxy/{port}/{path}"


async def _granted(user: Any, session_id: Any) -> Granted:
    granted: Granted = await sync_to_async(lab_session_for_user)(user, session_id)
    return granted


def _check_port(port: int) -> None:
    if not 1 <= port <= 65535:
        raise Http404("No such port.")


@csrf_exempt  # the student's own app decides about its forms; our cookies are not forwarded
async def port_proxy(request: HttpRequest, session_id: Any, port: int, path: str = "") -> HttpResponseBase:
    user = await request.auser()
    try:
        granted = await _granted(user, session_id)
    except LabSessionNotFound:
        raise Http404("No such lab session.") from None
    _check_port(port)
    session = granted.session
    if session.status != LabSession.Status.READY or not session.sandbox_id:
        return HttpResponse("This lab's sandbox is not running.", status=503, content_type="text/plain")
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP | PRIVATE}
    prefix = f"/labs/{session.pk}/port/{port}"
    headers["X-Forwarded-Prefix"] = prefix
    headers["X-Forwarded-Host"] = request.get_host()
    headers["X-Forwarded-Proto"] = request.scheme or "http"
    url = _runtime_url(session, port, path)
    if request.META.get("QUERY_STRING"):
        url += "?" + request.META["QUERY_STRING"]
    http = aiohttp.ClientSession(
        connector=aiohttp.UnixConnector(path=settings.RUNTIME_SOCKET), timeout=UPSTREAM_TIMEOUT, auto_decompress=False
    )
    try:
        upstream = await http.request(
            request.method or "GET", url, headers=headers, data=request.body, allow_redirects=False
        )
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        await http.close()
        return HttpResponse(f"Could not reach the lab's sandbox: {exc}", status=502, content_type="text/plain")

    async def body() -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.content.iter_chunked(65536):
                yield chunk
        finally:
            upstream.release()
            await http.close()

    response = StreamingHttpResponse(body(), status=upstream.status)
    for name, value in upstream.headers.items():
        if name.lower() in HOP_BY_HOP or name.lower() == "set-cookie":
            continue
        if name.lower() == "location" and value.startswith("/") and not value.startswith("//"):
            value = prefix + value
        response[name] = value
    # The student's page must not be able to script the platform's pages.
    response["Content-Security-Policy"] = "sandbox allow-scripts allow-forms allow-popups allow-modals"
    return response


class PortProxyConsumer(AsyncWebsocketConsumer):
    """WebSocket half of the port preview: frames relayed both ways."""

    channel_layer_alias = "none"  # a relay to runtimed; no channel layer (see TerminalConsumer)

    upstream: aiohttp.ClientWebSocketResponse | None = None
    http: aiohttp.ClientSession | None = None
    relay: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        kwargs = self.scope["url_route"]["kwargs"]
        try:
            granted = await _granted(self.scope.get("user"), kwargs["session"])
        except LabSessionNotFound:
            await self.close(code=4404)
            return
        session = granted.session
        port = int(kwargs["port"])
        if not 1 <= port <= 65535 or session.status != LabSession.Status.READY:
            await self.close(code=4404)
            return
        url = _runtime_url(session, port, kwargs.get("path", ""))
        query = self.scope.get("query_string", b"").decode()
        if query:
            url += "?" + query
        protocols = self.scope.get("subprotocols") or []
        self.http = aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=settings.RUNTIME_SOCKET))
        try:
            self.upstream = await self.http.ws_connect(url, protocols=protocols, timeout=aiohttp.ClientWSTimeout(10))
        except (TimeoutError, aiohttp.ClientError, OSError):
            await self.http.close()
            await self.close(code=1011)
            return
        await self.accept(subprotocol=self.upstream.protocol)
        self.relay = asyncio.create_task(self._from_upstream())

    async def _from_upstream(self) -> None:
        assert self.upstream is not None
        async for msg in self.upstream:
            if msg.type == aiohttp.WSMsgType.TEXT:
                await self.send(text_data=msg.data)
            elif msg.type == aiohttp.WSMsgType.BINARY:
                await self.send(bytes_data=msg.data)
            else:
                break
        await self.close()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.upstream is None:
            return
        if bytes_data is not None:
            await self.upstream.send_bytes(bytes_data)
        elif text_data is not None:
            await self.upstream.send_str(text_data)

    async def disconnect(self, code: int) -> None:
        if self.relay is not None:
            self.relay.cancel()
        with contextlib.suppress(Exception):
            if self.upstream is not None:
                await self.upstream.close()
        if self.http is not None:
            await self.http.close()
