from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from config import health

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("accounts/", include("accounts.urls")),
    path("labs/", include("labs.urls")),
    path("lti/", include("lti.urls")),
    path("", include("grader.urls")),
    path("", include("courses.urls")),
]

handler404 = "accounts.views.page_not_found"
handler500 = "accounts.views.server_error"
