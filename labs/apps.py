from __future__ import annotations

from typing import Any

from django.apps import AppConfig


def _deliver_class_messages(sender: Any, *, pushes: list[tuple[str, dict[str, Any]]], **_: Any) -> None:
    from labs.push import group_send_many

    group_send_many(pushes)


class LabsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "labs"
    verbose_name = "Labs"

    def ready(self) -> None:
        # Class messages (courses/messages.py) reach the students' lab pages through this app's
        # sockets; courses sits below labs, so it signals and labs delivers.
        from courses.signals import class_message_pushes

        class_message_pushes.connect(_deliver_class_messages, dispatch_uid="labs.deliver_class_messages")
