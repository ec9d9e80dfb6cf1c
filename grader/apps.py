from __future__ import annotations

from django.apps import AppConfig


class GraderConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "grader"
    verbose_name = "Grader"

    def ready(self) -> None:
        # The check types declare themselves (grader.checks.base.register), and with them the
        # fields content import accepts (courses.content.CHECK_TYPES): loaded with the app, so
        # a course imported in any process knows every type.
        import grader.checks  # noqa: F401
