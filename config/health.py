"""``/healthz``: the state of what the platform needs, for probes and operators."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET


def _database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return "ok"


def _redis() -> str:
    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    finally:
        client.close()
    return "ok"


def _runtime() -> str:
    # A plain HTTP request over the unix socket: the health check must not
    # depend on the runtime client's own machinery working.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        sock.connect(settings.RUNTIME_SOCKET)
        sock.sendall(b"GET /v1/healthz HTTP/1.1\r\nHost: runtimed\r\nConnection: close\r\n\r\n")
        status_line = sock.recv(64).split(b"\r\n", 1)[0]
    if b" 200 " not in status_line + b" ":
        raise OSError(f"runtimed answered {status_line.decode(errors='replace')!r}")
    return "ok"


def _check(probe: Callable[[], str]) -> dict[str, object]:
    started = time.monotonic()
    try:
        state = probe()
        error = None
    except Exception as exc:
        state, error = "down", f"{type(exc).__name__}: {exc}"
    result: dict[str, object] = {
        "status": state,
        "ms": round((time.monotonic() - started) * 1000, 1),
    }
    if error:
        result["error"] = error
    return result


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    checks = {"database": _check(_database), "redis": _check(_redis), "runtime": _check(_runtime)}
    required = {"database", "redis"} | ({"runtime"} if settings.RUNTIME_REQUIRED else set())
    checks["runtime"]["required"] = settings.RUNTIME_REQUIRED
    healthy = all(checks[name]["status"] == "ok" for name in required)
    return JsonResponse({"status": "ok" if healthy else "down", "checks": checks}, status=200 if healthy else 503)
