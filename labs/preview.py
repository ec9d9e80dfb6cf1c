"""Port preview: a web app the student runs inside their sandbox, reached from the browser
(like Killercoda's traffic URLs).

Two hops, both streaming: Django → runtimed's ``/v1/preview``, through the session's sandbox
backend (``runtime.backends``: this host's runtimed over its unix socket; with
SANDBOX_BACKEND=kubernetes the TLS listener of the lab node holding the sandbox, checked
against RUNTIME_CA) → the sandbox's own address. HTTP goes through async views, WebSockets through
``PortProxyConsumer``. Only the owner and observing instructors get through
(``lab_session_for_user``), and runtimed itself lets the session's credential reach
that one sandbox and nothing else (``runtime.auth``).

The path is the browser's to choose, so it is data, never routing: it is taken as it
came on the wire (``raw_path``), checked by ``runtime.urlsafety.app_path`` (dot
segments, encoded slashes and dots, double encoding, backslashes, absolute URLs, CR/LF
and overlong forms are refused with 400), and sent to runtimed in a header, not in
the URL it routes on.

Two ways to serve it (``PREVIEW_HOST``):

same origin (default, for a one-box install)
    ``/labs/<session>/port/<p>/...`` on the platform's own origin. The answer carries
    ``Content-Security-Policy: sandbox``, so a browser that honours it runs the app in
    an opaque origin; cookies, ``Set-Cookie`` and CORS grants are stripped both ways.
    A browser that ignores CSP ``sandbox`` would run the app's scripts on the platform's
    origin: that is the restriction the README states for this mode.
separate origin (``PREVIEW_HOST=preview.example.org``)
    Each session and port gets its own origin, ``p<port>-<session hex>.<PREVIEW_HOST>``,
    so the app never runs on the platform's origin whatever the browser does. The
    platform's URL redirects there with a one-minute signed hand-off; the preview origin
    turns it into its own short-lived signed cookie (host-only, HttpOnly), checked on
    every request together with the student's access to the session.

    Cookie tossing: every preview origin is a sibling under PREVIEW_HOST, so an app's
    scripts can set a cookie for ``Domain=<PREVIEW_HOST>`` that every other preview
    receives. Under HTTPS the cookie is named ``__Host-kubelab_preview``: browsers take
    such a cookie only from the host itself (Secure, ``Path=/``, no ``Domain``), so no
    sibling can plant or shadow it, and it is read in preference to a plain one. (A plain
    cookie another preview planted carries only that preview's own signed grant, which names
    another session or port: it opens nothing here.) The platform's own cookies are
    ``__Host-`` under HTTPS for the same reason (``config/settings.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import quote

import aiohttp
from asgiref.sync import sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import signing
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.utils.decorators import sync_and_async_middleware
from django.views.decorators.csrf import csrf_exempt

from accounts.sockets import SignedInSocket
from labs import sandboxes
from labs.models import LabSession
from labs.selectors import Granted, LabSessionNotFound, lab_session_for_user
from runtime import client as runtime_client
from runtime import errors as runtime_errors
from runtime.backends import SandboxBackend
from runtime.client import PreviewSocket

log = logging.getLogger(__name__)

# Headers that describe one hop, not the message (RFC 9110 §7.6.1).
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
# The platform's own credentials: never sent to a student's app on the platform's origin.
PRIVATE = {"cookie", "authorization", "x-csrftoken"}
# CORS grants by the student's app: on the platform's origin they would let other sites read
# the platform's answers with the student's cookies; on a preview origin, credentialed reads
# by a sibling preview (same site) are refused all the same.
CORS_SAME_ORIGIN = {"access-control-allow-origin", "access-control-allow-credentials"}
CORS_PREVIEW_ORIGIN = {"access-control-allow-credentials"}
COOKIE = "kubelab_preview"
SECURE_COOKIE = "__Host-" + COOKIE  # under HTTPS: no other host can set it (cookie tossing)
HANDOFF_AGE = 60  # seconds a hand-off link is good for
COOKIE_AGE = 12 * 3600
LOGIN_PATH = "/__kubelab/preview-login"
_LABEL = re.compile(r"p([0-9]{1,5})-([0-9a-f]{32})")


class BadPreviewPath(Exception):
    """The path the browser asked for is not a path inside the app."""


# -- where a request is going --------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    session: LabSession
    port: int
    path: str  # percent-encoded, checked, no leading slash
    query: str
    can_write: bool = True  # False: an observing instructor (looks, never acts)


def _check_port(port: int) -> None:
    if not 1 <= port <= 65535:
        raise Http404("No such port.")


def app_path(raw_path: bytes | str | None, decoded: str, prefix: str) -> str:
    """The app's part of a request path, as it came on the wire.

    ``raw_path`` is the ASGI scope's (daphne gives it); ``prefix`` is what precedes the
    app's path in it (``/labs/<id>/port/<p>/``). Without a raw path (Django's test client
    sends none) the decoded path is encoded again, so a ``%2f`` the client sent becomes a
    ``/`` and its dot segments are refused all the same."""
    if raw_path is not None:
        raw = raw_path.decode("latin-1") if isinstance(raw_path, bytes) else raw_path
        if raw + "/" == prefix:
            raw += "/"
        if not raw.startswith(prefix):
            raise BadPreviewPath("the request path does not start with the preview's own prefix")
        tail = raw[len(prefix) :]
    else:
        tail = quote(decoded, safe="/:@!$&'()*+,;=-._~")
    try:
        return runtime_client.app_path(tail)
    except runtime_client.UnsafePath as e:
        raise BadPreviewPath(str(e)) from None


def _query(raw: bytes | str) -> str:
    text = raw.decode("latin-1") if isinstance(raw, bytes) else raw
    try:
        return runtime_client.query_string(text)
    except runtime_client.UnsafePath as e:
        raise BadPreviewPath(str(e)) from None


SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def _refusal(request: HttpRequest, granted: Granted, allowed_origins: set[str]) -> HttpResponse | None:
    """Why this request may not reach the app, or None.

    An observing instructor may look, not act: only safe methods. A state-changing request
    must come from a page of the app itself (its Origin), from an opaque origin ("null": the
    CSP-sandboxed preview page, which carries no SameSite=Lax cookie from anywhere else), or
    name no Origin at all. The view is exempt from Django's CSRF check because the app's own
    forms carry no platform token; this is the check in its place, so a page on another port of
    this host (same site: the Lax cookie would go along) cannot drive the student's app."""
    method = (request.method or "GET").upper()
    if method in SAFE_METHODS:
        return None
    if not granted.can_write:
        return HttpResponse("Observers may look at a preview, not act in it.\n", status=403, content_type="text/plain")
    origin = request.headers.get("Origin")
    if origin is None or origin == "null" or origin.lower() in allowed_origins:
        return None
    return HttpResponse(
        f"Refused: a {method} from {origin} may not reach this preview.\n", status=403, content_type="text/plain"
    )


async def _runtimed_refusal(upstream: aiohttp.ClientResponse) -> HttpResponse | None:
    """A page for runtimed's own refusals (its JSON is not the student's app answering);
    None for the app's answers and for the gateway errors meant for the browser as they are."""
    code = upstream.headers.get(runtime_client.ERROR_HEADER)
    if code is None or code in ("unreachable", "busy"):
        return None
    if code in ("unauthorized", "forbidden"):
        text = (
            "The preview cannot reach this lab's sandbox (its credential is missing or expired): "
            "stop the lab and start it again."
        )
        status = 503
    elif code in ("sandbox_not_found", "not_available"):
        text, status = "This lab's sandbox is not running.", 503
    else:
        try:
            message = (await upstream.json()).get("message", code)
        except (ValueError, aiohttp.ClientError):
            message = code
        text, status = f"Refused: {message}", upstream.status
    return HttpResponse(text + "\n", status=status, content_type="text/plain")


def _bad_path(exc: BadPreviewPath) -> HttpResponse:
    return HttpResponse(f"Refused: {exc}.\n", status=400, content_type="text/plain")


async def _granted(user: Any, session_id: Any) -> Granted:
    granted: Granted = await sync_to_async(lab_session_for_user)(user, session_id)
    return granted


async def _backend(session: LabSession) -> SandboxBackend | None:
    """The session's sandbox backend with the session's own credential (give it back with
    ``sandboxes.release``); None when this process has no such backend (off the loop: the
    kubernetes backend reads its kubeconfig)."""
    try:
        if session.backend == "namespace":  # this host's runtimed: nothing blocks
            return sandboxes.for_session(session)
        return await sync_to_async(sandboxes.for_session)(session)
    except sandboxes.SandboxError:
        return None


def _unavailable(exc: runtime_errors.RuntimeError) -> HttpResponse:
    """The backend's own refusal before any app answered (a lost lab node, no preview there)."""
    if isinstance(exc, runtime_errors.Unreachable):
        # the exception names runtimed's socket and how to start it: for the operator's log only
        log.info("preview: runtimed unreachable: %s", exc)
        return HttpResponse(
            "Could not reach the lab's sandbox; try again in a moment.", status=502, content_type="text/plain"
        )
    return HttpResponse("This lab's sandbox is not running.", status=503, content_type="text/plain")


# -- HTTP ----------------------------------------------------------------------------------------------
async def _relay(request: HttpRequest, target: Target, *, own_origin: bool, prefix: str) -> HttpResponseBase:
    session = target.session
    if session.status != LabSession.Status.READY or not session.sandbox_id:
        return HttpResponse("This lab's sandbox is not running.", status=503, content_type="text/plain")
    backend = await _backend(session)
    if backend is None:
        return HttpResponse("This lab's sandbox is not running.", status=503, content_type="text/plain")
    try:
        return await _relay_through(backend, request, target, own_origin=own_origin, prefix=prefix)
    except BaseException:
        await sandboxes.release(backend)
        raise


async def _relay_through(
    backend: SandboxBackend, request: HttpRequest, target: Target, *, own_origin: bool, prefix: str
) -> HttpResponseBase:
    """``_relay`` once the backend is known; the backend is released when the answer ends."""
    session = target.session
    dropped = HOP_BY_HOP if own_origin else HOP_BY_HOP | PRIVATE
    headers = {
        k: v for k, v in request.headers.items() if k.lower() not in dropped and not k.lower().startswith("x-kubelab-")
    }
    if own_origin and "Cookie" in headers:
        headers["Cookie"] = _without_our_cookie(headers["Cookie"])
        if not headers["Cookie"]:
            del headers["Cookie"]
    if prefix:
        headers["X-Forwarded-Prefix"] = prefix
    headers["X-Forwarded-Host"] = request.get_host()
    headers["X-Forwarded-Proto"] = request.scheme or "http"
    try:
        answer = await backend.preview(
            session.sandbox_id,
            target.port,
            target.path,
            target.query,
            method=request.method or "GET",
            headers=headers,
            body=request.body,
        )
    except runtime_errors.RuntimeError as exc:
        await sandboxes.release(backend)
        return _unavailable(exc)
    upstream = answer.response
    refused = await _runtimed_refusal(upstream)
    if refused is not None:
        await answer.close()
        await sandboxes.release(backend)
        return refused

    async def body() -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.content.iter_chunked(65536):
                yield chunk
        finally:
            await answer.close()
            await sandboxes.release(backend)

    response = StreamingHttpResponse(body(), status=upstream.status)
    cors = CORS_PREVIEW_ORIGIN if own_origin else CORS_SAME_ORIGIN
    for name, value in upstream.headers.items():
        low = name.lower()
        if low in HOP_BY_HOP or low in cors:
            continue
        if low == "set-cookie":
            if not own_origin or not _app_cookie_allowed(value):
                continue
            response.cookies.load(value)
            continue
        if low == "location" and prefix and value.startswith("/") and not value.startswith("//"):
            value = prefix + value
        response[name] = value
    if not own_origin:
        # The student's page must not be able to script the platform's pages.
        response["Content-Security-Policy"] = "sandbox allow-scripts allow-forms allow-popups allow-modals"
    return response


@csrf_exempt  # the student's own app decides about its forms; our cookies are not forwarded
async def port_proxy(request: HttpRequest, session_id: Any, port: int, path: str = "") -> HttpResponseBase:
    """``/labs/<session>/port/<p>/<path>`` on the platform's origin."""
    user = await request.auser()
    try:
        granted = await _granted(user, session_id)
    except LabSessionNotFound:
        raise Http404("No such lab session.") from None
    _check_port(port)
    session = granted.session
    prefix = f"/labs/{session_id}/port/{port}"
    scope = getattr(request, "scope", None) or {}
    try:
        target = Target(
            session,
            port,
            app_path(scope.get("raw_path"), path, prefix + "/"),
            _query(request.META.get("QUERY_STRING", "")),
        )
    except BadPreviewPath as exc:
        return _bad_path(exc)
    if settings.PREVIEW_HOST:
        return HttpResponseRedirect(_handoff_url(request, target, user))
    if refused := _refusal(request, granted, {f"{request.scheme}://{request.get_host()}".lower()}):
        return refused
    return await _relay(request, target, own_origin=False, prefix=prefix)


# -- the separate preview origin ----------------------------------------------------------------------
def preview_label(session_id: uuid.UUID | str, port: int) -> str:
    return f"p{port}-{uuid.UUID(str(session_id)).hex}"


def preview_origin_host(session_id: uuid.UUID | str, port: int) -> str:
    return f"{preview_label(session_id, port)}.{settings.PREVIEW_HOST}"


def _handoff_url(request: HttpRequest, target: Target, user: Any) -> str:
    grant = signing.dumps(
        {"s": str(target.session.pk), "p": target.port, "u": user.pk}, salt="labs.preview.handoff", compress=True
    )
    nxt = "/" + target.path + (f"?{target.query}" if target.query else "")
    scheme = "https" if request.is_secure() else "http"
    return (
        f"{scheme}://{preview_origin_host(target.session.pk, target.port)}{LOGIN_PATH}"
        f"?t={quote(grant, safe='')}&next={quote(nxt, safe='')}"
    )


def _under_preview_host(host: str) -> bool:
    """Whether ``host`` is PREVIEW_HOST or any name beneath it (with or without the root's
    dot): all of them are the same site as every student's app, so none may serve a page
    of the platform's."""
    name = host.split(":", 1)[0].lower().rstrip(".")
    return bool(settings.PREVIEW_HOST) and (name == settings.PREVIEW_HOST or name.endswith("." + settings.PREVIEW_HOST))


def _parse_host(host: str) -> tuple[uuid.UUID, int] | None:
    """(session, port) of a preview origin's host name, or None when it is not one (written
    exactly: ``p<port>-<session hex>.<PREVIEW_HOST>``, no trailing dot, nothing beneath)."""
    suffix = "." + settings.PREVIEW_HOST
    name = host.split(":", 1)[0].lower()
    if not settings.PREVIEW_HOST or not name.endswith(suffix):
        return None
    match = _LABEL.fullmatch(name[: -len(suffix)])
    if match is None:
        return None
    return uuid.UUID(match.group(2)), int(match.group(1))


def _without_our_cookie(header: str) -> str:
    jar: SimpleCookie = SimpleCookie()
    with contextlib.suppress(Exception):
        jar.load(header)
    return "; ".join(f"{k}={m.coded_value}" for k, m in jar.items() if k not in (COOKIE, SECURE_COOKIE))


def _app_cookie_allowed(set_cookie: str) -> bool:
    """An app's own cookie on its own preview origin: host-only, and never ours."""
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(set_cookie)
    except Exception:
        return False
    return bool(jar) and all(
        name not in (COOKIE, SECURE_COOKIE) and not morsel["domain"] for name, morsel in jar.items()
    )


def _cookie_user(cookies: Mapping[str, str], session_id: uuid.UUID, port: int) -> Any:
    """The user the preview cookie of this origin names, or None. The ``__Host-`` cookie,
    which only this host can have set, wins over a plain one (see the module docstring)."""
    value = cookies.get(SECURE_COOKIE) or cookies.get(COOKIE)
    if not value:
        return None
    try:
        claims = signing.loads(value, salt="labs.preview.cookie", max_age=COOKIE_AGE)
    except signing.BadSignature:
        return None
    if claims.get("s") != str(session_id) or claims.get("p") != port:
        return None
    return get_user_model().objects.filter(pk=claims.get("u"), is_active=True).first()


def _preview_grant(cookies: Mapping[str, str], session_id: uuid.UUID, port: int) -> Granted | None:
    user = _cookie_user(cookies, session_id, port)
    if user is None:
        return None
    try:
        return lab_session_for_user(user, session_id)
    except LabSessionNotFound:
        return None


def _no_preview_here() -> HttpResponse:
    # plain text: the platform's 404 page links to platform URLs, which do not exist here
    return HttpResponse("There is no preview at this address.\n", status=404, content_type="text/plain")


def _not_signed_in() -> HttpResponse:
    return HttpResponse(
        "This preview opens from your lab page (its link signs you in here).\n", status=403, content_type="text/plain"
    )


@csrf_exempt
async def preview_host_login(request: HttpRequest) -> HttpResponseBase:
    """The hand-off: a signed, one-minute grant from the platform becomes this origin's cookie."""
    where = _parse_host(request.get_host())
    if where is None:
        return _no_preview_here()
    try:
        claims = signing.loads(request.GET.get("t", ""), salt="labs.preview.handoff", max_age=HANDOFF_AGE)
    except signing.BadSignature:
        return _not_signed_in()
    if claims.get("s") != str(where[0]) or claims.get("p") != where[1]:
        return _not_signed_in()
    nxt = request.GET.get("next", "/")
    # a path on this origin only: browsers drop tabs and newlines from URLs (so "/<TAB>/x" is
    # "//x", another site) and read a backslash as a slash
    if (
        not nxt.startswith("/")
        or nxt.startswith("//")
        or "\\" in nxt
        or any(ord(c) < 0x21 or ord(c) == 0x7F for c in nxt)
    ):
        nxt = "/"
    response = HttpResponseRedirect(nxt)
    response.set_cookie(
        SECURE_COOKIE if request.is_secure() else COOKIE,
        signing.dumps({"s": claims["s"], "p": claims["p"], "u": claims["u"]}, salt="labs.preview.cookie"),
        max_age=COOKIE_AGE,
        httponly=True,
        secure=request.is_secure(),
        samesite="Lax",
    )
    return response


@csrf_exempt
async def preview_host_proxy(request: HttpRequest, path: str = "") -> HttpResponseBase:
    """Every other request on a preview origin: the app, for the cookie's holder."""
    where = _parse_host(request.get_host())
    if where is None:
        return _no_preview_here()
    session_id, port = where
    granted = await sync_to_async(_preview_grant)(request.COOKIES, session_id, port)
    if granted is None:
        return _not_signed_in()
    # the app's own origins: every port of this session (a front end on one, its API on another)
    sibling = re.compile(rf"https?://p[0-9]{{1,5}}-{session_id.hex}\.{re.escape(settings.PREVIEW_HOST)}(:[0-9]+)?")
    origin = (request.headers.get("Origin") or "").lower()
    if refused := _refusal(request, granted, {origin} if sibling.fullmatch(origin) else set()):
        return refused
    scope = getattr(request, "scope", None) or {}
    try:
        target = Target(
            granted.session,
            port,
            app_path(scope.get("raw_path"), path, "/"),
            _query(request.META.get("QUERY_STRING", "")),
        )
    except BadPreviewPath as exc:
        return _bad_path(exc)
    return await _relay(request, target, own_origin=True, prefix="")


@sync_and_async_middleware
def preview_host_middleware(get_response: Any) -> Any:
    """Requests to a preview origin are routed by ``labs.preview_urls`` only: none of the
    platform's pages exist there (and the platform's cookies are not sent there)."""

    def route(request: HttpRequest) -> None:
        if settings.PREVIEW_HOST and _under_preview_host(request.get_host()):
            request.urlconf = "labs.preview_urls"  # type: ignore[attr-defined]  # Django reads it

    if asyncio.iscoroutinefunction(get_response):

        async def amiddleware(request: HttpRequest) -> Any:
            route(request)
            return await get_response(request)

        return amiddleware

    def middleware(request: HttpRequest) -> Any:
        route(request)
        return get_response(request)

    return middleware


# -- WebSockets ----------------------------------------------------------------------------------------
class PortProxyConsumer(SignedInSocket, AsyncWebsocketConsumer):
    """WebSocket half of the port preview: frames relayed both ways.

    On the platform's origin it is routed by ``labs.routing`` (the session cookie and
    ``lab_session_for_user`` decide); on a preview origin by ``PreviewOriginRouter``
    (that origin's cookie decides, and only pages of that origin may connect)."""

    channel_layer_alias = "none"  # a relay to runtimed; no channel layer (see TerminalConsumer)

    upstream: aiohttp.ClientWebSocketResponse | None = None
    socket: PreviewSocket | None = None
    backend: SandboxBackend | None = None
    relay: asyncio.Task[None] | None = None
    can_write = False

    async def _target(self) -> Target | None:
        where = self.scope.get("kubelab_preview")
        query = self.scope.get("query_string", b"")
        try:
            if where is not None:
                session_id, port = where
                granted = await sync_to_async(_preview_grant)(_scope_cookies(self.scope), session_id, port)
                if granted is None:
                    return None
                path = app_path(self.scope.get("raw_path"), "", "/")
                return Target(granted.session, port, path, _query(query), granted.can_write)
            kwargs = self.scope["url_route"]["kwargs"]
            granted = await _granted(self.scope.get("user"), kwargs["session"])
            port = int(kwargs["port"])
            prefix = f"/labs/{kwargs['session']}/port/{port}/"
            decoded = kwargs.get("path", "")
            path = app_path(self.scope.get("raw_path"), decoded, prefix)
            return Target(granted.session, port, path, _query(query), granted.can_write)
        except (LabSessionNotFound, BadPreviewPath, ValueError):
            return None

    async def connect(self) -> None:
        target = await self._target()
        if target is None or not 1 <= target.port <= 65535 or target.session.status != LabSession.Status.READY:
            await self.close(code=4404)
            return
        if settings.PREVIEW_HOST and self.scope.get("kubelab_preview") is None:
            await self.close(code=4404)  # apps are served on their own origin only
            return
        self.backend = await _backend(target.session)
        if self.backend is None:
            await self.close(code=4404)
            return
        protocols = self.scope.get("subprotocols") or []
        try:
            self.socket = await self.backend.preview_ws(
                target.session.sandbox_id, target.port, target.path, target.query, protocols=protocols
            )
        except runtime_errors.SandboxNotFound:
            await self.close(code=4404)
            return
        except (runtime_errors.RuntimeError, aiohttp.ClientError):
            await self.close(code=1011)
            return
        self.upstream = self.socket.ws
        self.can_write = target.can_write
        await self.accept(subprotocol=self.upstream.protocol)
        if self.scope.get("kubelab_preview") is None:
            # on the platform's origin the socket lasts as long as the sign-in (accounts/sockets.py);
            # a preview origin's was checked against that origin's own cookie when it opened
            await self.watch_sign_in()
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
        if self.upstream is None or not self.can_write:
            return  # an observer's frames never reach the app
        if self.scope.get("kubelab_preview") is None and not await self.signed_in():
            return
        if bytes_data is not None:
            await self.upstream.send_bytes(bytes_data)
        elif text_data is not None:
            await self.upstream.send_str(text_data)

    async def disconnect(self, code: int) -> None:
        await self.unwatch_sign_in()
        if self.relay is not None:
            self.relay.cancel()
        with contextlib.suppress(Exception):
            if self.socket is not None:
                await self.socket.close()
        if self.backend is not None:
            await sandboxes.release(self.backend)


def _scope_header(scope: Mapping[str, Any], name: bytes) -> str:
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return ""


def _scope_cookies(scope: Mapping[str, Any]) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    with contextlib.suppress(Exception):
        jar.load(_scope_header(scope, b"cookie"))
    return {k: m.value for k, m in jar.items()}


class PreviewOriginRouter:
    """ASGI router for WebSockets: a preview origin's go to ``PortProxyConsumer`` (when the
    page that opens them is of that same origin), everything else to ``platform``."""

    def __init__(self, platform: Any) -> None:
        self.platform = platform
        self.preview = PortProxyConsumer.as_asgi()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        host = _scope_header(scope, b"host").lower()
        if not _under_preview_host(host):
            return await self.platform(scope, receive, send)
        where = _parse_host(host)
        if where is None:  # a name under PREVIEW_HOST that is no preview origin: nothing there
            await send({"type": "websocket.close", "code": 4404})
            return None
        origin = _scope_header(scope, b"origin").lower()
        if origin not in (f"http://{host}", f"https://{host}"):
            # another site (or a sibling preview) must not drive this app with the cookie
            await send({"type": "websocket.close", "code": 4403})
            return None
        return await self.preview({**scope, "kubelab_preview": where}, receive, send)
