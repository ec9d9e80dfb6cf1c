from __future__ import annotations

from django.urls import path

from accounts.consumers import WhoAmIConsumer

websocket_urlpatterns = [
    path("ws/whoami/", WhoAmIConsumer.as_asgi()),
]
