from __future__ import annotations

from django.urls import path

from labs import consumers

websocket_urlpatterns = [
    path("ws/labs/<str:session>/term/<int:n>/", consumers.TerminalConsumer.as_asgi()),
    path("ws/labs/<str:session>/events/", consumers.LabEventsConsumer.as_asgi()),
]
