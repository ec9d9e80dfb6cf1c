from __future__ import annotations

from django.urls import path

from courses import views

app_name = "courses"

urlpatterns = [
    path("", views.home, name="home"),
    path("progress/", views.progress, name="progress"),
    path("instructor/", views.instructor_dashboard, name="instructor"),
]
