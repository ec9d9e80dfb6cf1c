"""The whole URL space of a preview origin (``PREVIEW_HOST``): the hand-off, then the app.

``labs.preview.preview_host_middleware`` selects this URLconf for requests to
``p<port>-<session>.<PREVIEW_HOST>``; none of the platform's pages exist there.
"""

from __future__ import annotations

from django.urls import path

from labs import preview

urlpatterns = [
    path(preview.LOGIN_PATH.lstrip("/"), preview.preview_host_login),
    path("", preview.preview_host_proxy),
    path("<path:path>", preview.preview_host_proxy),
]
