"""Signal receivers of the accounts app: thin, each calls one service.

Sign-ins that end or change reach the open WebSockets (accounts/sockets.py)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from accounts.services import sign_in_ended, user_sign_ins_changed


def _cookie_session_key(request: Any) -> str | None:
    cookies = getattr(request, "COOKIES", None) or {}
    key = cookies.get(settings.SESSION_COOKIE_NAME)
    return key if isinstance(key, str) and key else None


@receiver(user_logged_out, dispatch_uid="accounts.sockets.logged_out")
def _logged_out(sender: Any, request: Any = None, user: Any = None, **kwargs: Any) -> None:
    session = getattr(request, "session", None)
    keys = {getattr(session, "session_key", None), _cookie_session_key(request)}
    for key in keys - {None}:
        sign_in_ended(session_key=str(key))


@receiver(user_logged_in, dispatch_uid="accounts.sockets.logged_in")
def _logged_in(sender: Any, request: Any = None, user: Any = None, **kwargs: Any) -> None:
    # login() flushed (another user's sign-in) or cycled the session the browser came with:
    # that key no longer signs anyone in, and its sockets end.
    old = _cookie_session_key(request)
    session = getattr(request, "session", None)
    if old is not None and old != getattr(session, "session_key", None):
        sign_in_ended(session_key=old)


def _user_saved(sender: Any, instance: Any, created: bool = False, update_fields: Any = None, **kwargs: Any) -> None:
    if created:
        return
    if update_fields is not None and not {"password", "is_active"} & set(update_fields):
        return  # e.g. last_login at every sign-in
    user_sign_ins_changed(user_id=instance.pk)


def _user_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    user_sign_ins_changed(user_id=instance.pk)


def connect() -> None:
    model = get_user_model()
    post_save.connect(_user_saved, sender=model, dispatch_uid="accounts.sockets.user_saved")
    post_delete.connect(_user_deleted, sender=model, dispatch_uid="accounts.sockets.user_deleted")
