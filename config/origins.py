"""The WebSocket origin check: a browser's handshake is let through only when
its ``Origin`` is this site's own origin (scheme, host *and* port) or one the
operator trusts in ``CSRF_TRUSTED_ORIGINS``.

Browsers attach cookies to a WebSocket handshake whatever page opened it, and
no CORS or CSRF token stands in the way, so this check is what keeps a page
elsewhere from opening a student's terminal with the student's session.
Channels' ``AllowedHostsOriginValidator`` compares host names only: any other
web server on the same host (``http://localhost:31337``) passed it. The rules
here are the ones Django's ``CsrfViewMiddleware`` applies to an ``Origin`` on
a POST, so one setting describes the site's origins for both:

* the request's own origin is ``scheme://Host``: the scheme is ``https`` when
  the connection is ``wss``, or, when ``SECURE_PROXY_SSL_HEADER`` is set (it
  is with ``SECURE_HTTPS=true``), whatever that header says, exactly as
  ``HttpRequest.is_secure()`` decides; the ``Host`` must be in ALLOWED_HOSTS;
* host names compare case-insensitively and a default port may be written or
  left out (``http://a`` is ``http://a:80``), because that is what an origin
  is; everything else must match exactly;
* ``CSRF_TRUSTED_ORIGINS`` entries match exactly (same normalisation), and
  ``https://*.example.org`` entries match that domain and its subdomains, as
  in Django;
* no ``Origin``, ``Origin: null`` (sandboxed frames, ``file:`` pages, the
  port previews), anything that is not an ``http(s)`` origin, or more than
  one ``Origin`` or ``Host`` header: refused.

A missing ``Origin`` stays refused, as it was under Channels' validator.
Browsers always send one on a WebSocket handshake, so refusing costs a browser
nothing; clients that omit it (scripts, benchmarks) cannot carry a victim's
cookies anyway and can send the header as easily as they send the cookie.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host
from django.utils.http import is_same_domain

DEFAULT_PORTS = {"http": 80, "https": 443}

Origin = tuple[str, str, int]  # (scheme, host, port), normalised


def parse_origin(value: str) -> Origin | None:
    """``value`` as a normalised (scheme, host, port), or None unless it is
    exactly a serialised http(s) origin: no path, query, fragment or user."""
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    if parts.path or parts.query or parts.fragment or "@" in parts.netloc or value.endswith(("?", "#")):
        return None
    # An origin is written with ASCII host names (browsers send IDNA), and no
    # whitespace or control character can be part of one.
    if not value.isascii() or any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return None
    return scheme, parts.hostname.lower(), port if port is not None else DEFAULT_PORTS[scheme]


def _headers(scope: dict[str, Any], name: bytes) -> list[str]:
    return [value.decode("latin-1") for key, value in scope.get("headers", []) if key.lower() == name]


def _is_secure(scope: dict[str, Any]) -> bool:
    """As ``HttpRequest.is_secure()``: the proxy's header when the settings
    trust one, else the connection's own scheme."""
    proxy_header = settings.SECURE_PROXY_SSL_HEADER
    if proxy_header:
        meta_name, secure_value = proxy_header
        name = meta_name.removeprefix("HTTP_").replace("_", "-").lower().encode("latin-1")
        values = _headers(scope, name)
        if values:
            return values[0].split(",", 1)[0].strip() == secure_value
    return scope.get("scheme", "ws") in ("wss", "https")


def _allowed_hosts() -> list[str]:
    hosts = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not hosts:  # as HttpRequest.get_host()
        hosts = [".localhost", "127.0.0.1", "[::1]"]
    return hosts


def request_origin(scope: dict[str, Any]) -> Origin | None:
    """The handshake's own origin, or None when its Host is missing, repeated
    or not one of ALLOWED_HOSTS (then only a trusted origin can match)."""
    hosts = _headers(scope, b"host")
    if getattr(settings, "USE_X_FORWARDED_HOST", False):
        forwarded = _headers(scope, b"x-forwarded-host")
        if forwarded:
            hosts = forwarded  # as HttpRequest._get_raw_host(): the header replaces Host
    if len(hosts) != 1:
        return None
    host = hosts[0]
    domain, _port = split_domain_port(host)
    if not domain or not validate_host(domain, _allowed_hosts()):
        return None
    scheme = "https" if _is_secure(scope) else "http"
    return parse_origin(f"{scheme}://{host}")


class TrustedOrigins:
    """``CSRF_TRUSTED_ORIGINS`` with Django's meaning: exact origins, and
    ``scheme://*.domain`` for a domain and its subdomains."""

    def __init__(self, entries: Iterable[str]) -> None:
        self.exact: set[Origin] = set()
        self.wildcards: list[tuple[str, str]] = []  # (scheme, ".domain[:port]")
        for entry in entries:
            if "*" in entry:
                parts = urlsplit(entry)
                self.wildcards.append((parts.scheme.lower(), parts.netloc.lstrip("*")))
            else:
                parsed = parse_origin(entry)
                if parsed is not None:
                    self.exact.add(parsed)

    def __contains__(self, origin: tuple[Origin, str]) -> bool:
        parsed, raw = origin
        if parsed in self.exact:
            return True
        netloc = urlsplit(raw).netloc
        return any(parsed[0] == scheme and is_same_domain(netloc, pattern) for scheme, pattern in self.wildcards)


def origin_allowed(scope: dict[str, Any]) -> bool:
    """Whether the WebSocket handshake in ``scope`` comes from an origin of this site."""
    values = _headers(scope, b"origin")
    if len(values) != 1:
        return False
    raw = values[0]
    parsed = parse_origin(raw)
    if parsed is None:
        return False
    own = request_origin(scope)
    if own is not None and parsed == own:
        return True
    return (parsed, raw) in TrustedOrigins(settings.CSRF_TRUSTED_ORIGINS)


class _Denier(WebsocketDenier):
    channel_layer_alias = "none"  # refuses at once: no channel layer to receive from (config.aio)


class SameOriginValidator:
    """ASGI middleware: WebSocket handshakes from another origin are refused
    (the connection is closed before it is accepted; daphne answers 403)."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] != "websocket":
            raise ValueError("SameOriginValidator is for WebSocket connections only")
        if origin_allowed(scope):
            return await self.application(scope, receive, send)
        denier = _Denier()
        return await denier(scope, receive, send)
