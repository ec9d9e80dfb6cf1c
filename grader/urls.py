from __future__ import annotations

from django.urls import path

from grader import views

app_name = "grader"

urlpatterns = [
    path("labs/<uuid:session_id>/exercises/<int:exercise_id>/check/", views.check, name="check"),
    path("labs/<uuid:session_id>/exercises/<int:exercise_id>/hint/", views.reveal_hint, name="hint"),
    path("labs/<uuid:session_id>/exercises/<int:exercise_id>/solution/", views.show_solution, name="solution"),
    path("labs/<uuid:session_id>/submissions/<int:submission_id>/", views.submission, name="submission"),
]
