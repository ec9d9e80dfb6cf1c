"""Writes of the accounts app (CONVENTIONS.md #3, #4)."""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import transaction

from accounts.roles import STUDENT, add_role

log = logging.getLogger(__name__)


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


def sign_in_ended(*, session_key: str) -> None:
    """Close every WebSocket opened by the session ``session_key`` (signed out, or replaced by
    another sign-in in the same browser): accounts.sockets. Sent at once, not on commit: the
    session is gone whether or not a transaction around it commits, and a socket that is told
    too early only checks the store again."""
    from accounts.sockets import EVENT_ENDED, session_group

    _auth_push(session_group(session_key), EVENT_ENDED)


def user_sign_ins_changed(*, user_id: Any) -> None:
    """Every WebSocket of ``user_id`` checks its session again (password changed, account
    deactivated or deleted), once the change has committed."""
    from accounts.sockets import EVENT_RECHECK, user_auth_group

    transaction.on_commit(lambda: _auth_push(user_auth_group(user_id), EVENT_RECHECK))


def _auth_push(group: str, kind: str) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, {"type": kind})
    except Exception as exc:
        # Redis away (e.g. `make setup` saving the demo users before Redis runs): the sockets
        # still end at their next check on input (accounts.sockets). One line, no traceback.
        log.warning("could not push %s to %s: %s", kind, group, exc)
