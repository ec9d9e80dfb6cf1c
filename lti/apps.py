from __future__ import annotations

from django.apps import AppConfig


class LtiConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "lti"
    verbose_name = "LTI (LMS integration)"

    def ready(self) -> None:
        from lti import receivers

        receivers.connect()
