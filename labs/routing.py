from __future__ import annotations

from django.urls import path

from labs import consumers, preview

websocket_urlpatterns = [
    path("ws/labs/<str:session>/term/<int:n>/", consumers.TerminalConsumer.as_asgi()),
    path("ws/labs/<str:session>/events/", consumers.LabEventsConsumer.as_asgi()),
    path("labs/<str:session>/port/<int:port>/", preview.PortProxyConsumer.as_asgi()),
    path("labs/<str:session>/port/<int:port>/<path:path>", preview.PortProxyConsumer.as_asgi()),
]
