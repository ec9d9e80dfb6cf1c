from __future__ import annotations

from django.urls import path

from lti import views

app_name = "lti"

urlpatterns = [
    path("login/", views.login, name="login"),
    path("launch/", views.launch, name="launch"),
    path("jwks.json", views.jwks, name="jwks"),
    path("deep-link/", views.deep_link_respond, name="deep-link"),
    path("classes/", views.classes, name="classes"),
    path("classes/<int:context_id>/roster/", views.roster_import, name="roster-import"),
]
