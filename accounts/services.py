"""Writes of the accounts app (CONVENTIONS.md #3, #4)."""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import transaction

from accounts.roles import STUDENT, add_role


def user_group(user_id: int) -> str:
    """The channel-layer group every WebSocket of one user joins."""
    return f"user.{user_id}"


@transaction.atomic
def user_sign_up(*, username: str, email: str, password: str) -> User:
    """Create an account with the student role. The caller validated the input."""
    user: User = get_user_model().objects.create_user(username=username, email=email, password=password)
    add_role(user, STUDENT)
    return user


def user_notify(*, user_id: int, payload: dict[str, Any]) -> None:
    """Push ``payload`` to every open WebSocket of the user, once the current
    transaction (if any) has committed. The consumers forward it as
    ``{"type": "notify", **payload}``."""
    event = {"type": "user.notify", "payload": payload}

    def send() -> None:
        layer = get_channel_layer()
        if layer is not None:
            async_to_sync(layer.group_send)(user_group(user_id), event)

    transaction.on_commit(send)
