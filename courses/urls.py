from __future__ import annotations

from django.urls import path

from courses import pages, views

app_name = "courses"

urlpatterns = [
    path("", views.home, name="home"),
    path("progress/", views.progress, name="progress"),
    path("instructor/", views.instructor_dashboard, name="instructor"),
    path("instructor/progress.csv", views.instructor_csv, name="instructor-csv"),
    path("instructor/students/<int:user_id>/", views.instructor_student, name="instructor-student"),
    path("instructor/courses/<slug:course>/live/", views.instructor_live, name="instructor-live"),
    path("instructor/courses/<slug:course>/live.json", views.instructor_live_json, name="instructor-live-json"),
    path("instructor/courses/<slug:course>/messages/", views.instructor_message_send, name="instructor-message"),
    path("messages/<int:message_id>/dismiss/", views.message_dismiss, name="message-dismiss"),
    path("courses/<slug:course>/", pages.course_page, name="course"),
    path("courses/<slug:course>/assets/<path:path>", pages.course_asset, name="asset"),
    path("courses/<slug:course>/<slug:module>/", pages.module_page, name="module"),
    path("courses/<slug:course>/<slug:module>/<slug:lesson>/", pages.lesson_page, name="lesson"),
]
