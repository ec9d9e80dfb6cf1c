"""ASGI entry point: Django for HTTP, Channels' URL router for WebSockets."""

from __future__ import annotations

import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Django must be set up before anything imports models (the consumers do).
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from config.origins import SameOriginValidator  # noqa: E402
from config.routing import websocket_urlpatterns  # noqa: E402
from labs.preview import PreviewOriginRouter  # noqa: E402
from runtime.loops import StallWatch  # noqa: E402

_router = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # Same scheme, host and port only (config/origins.py): another site, or another
        # server on this host, must not open a terminal with a student's cookies.
        # A preview origin's WebSockets (PREVIEW_HOST) go to the student's app, checked by that
        # origin's own cookie and Origin (labs/preview.py); the rest to the platform's consumers.
        "websocket": PreviewOriginRouter(SameOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))),
    }
)


_stall: StallWatch | None = StallWatch.from_env("daphne")


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The router; with ``KUBELAB_STALL_MS`` set, the first connection also starts the loop's
    stall watch (runtime/loops.py), the diagnostic runtimed has too."""
    global _stall
    if _stall is not None:
        _stall.start()
        _stall = None
    await _router(scope, receive, send)
