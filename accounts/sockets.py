"""A WebSocket lives only as long as the sign-in that opened it.

Channels' ``AuthMiddlewareStack`` decides who a socket belongs to once, at the
handshake. A lab tab left open on a shared computer would otherwise keep a
writable shell after its student signed out. Mature products end such sockets
two ways, and so does every consumer here (``SignedInSocket``):

* **pushed**: signing out, signing in as someone else in the same browser (the
  old session is flushed), a password change and a deactivation each send an
  event to the channel-layer groups of the session (``session_group``) and of the
  user (``user_auth_group``); a socket in those groups closes at once (``auth.ended``)
  or checks its session again (``auth.recheck``). The group of a session is named by
  a digest of its key: the key itself is a credential and never goes to Redis.
* **checked**: at most every ``RECHECK_SECONDS`` on input, the socket asks the
  session store whether its session still exists, still belongs to the same active
  user and still carries that user's current session auth hash (what
  ``django.contrib.auth.get_user`` verifies on every HTTP request). Between checks
  the hot path (a keystroke) costs one clock read: no query per keystroke.

A socket whose sign-in ended is closed with ``CLOSE_SIGNED_OUT`` (4401); the page
then says "signed out" instead of reconnecting.

The pushes ride on the channel layer, which terminals and the preview relay
otherwise do without (a busy Redis must not take a shell down): the listener is
a task of its own, and if the layer is unreachable the socket keeps working and
relies on the checks alone.

Ending the listener, and the consumer's own channel-layer receive, must not depend on
one cancellation reaching a task that talks to Redis: on Python 3.11 such a cancel can
be lost (``config.aio``). The listener is ended when the consumer ends, whatever ended
it (a disconnect, a close during ``connect``, daphne cancelling the application).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from importlib import import_module
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.utils.crypto import constant_time_compare

from config.aio import LosslessChannelReceive, cancel_and_wait

log = logging.getLogger(__name__)

CLOSE_SIGNED_OUT = 4401
RECHECK_SECONDS = 30.0
# How long joining the groups may take before the socket gives up on pushes.
SUBSCRIBE_TIMEOUT = 5.0
EVENT_ENDED = "auth.ended"
EVENT_RECHECK = "auth.recheck"


def session_group(session_key: str) -> str:
    return "auth.session." + hashlib.sha256(session_key.encode()).hexdigest()[:40]


def user_auth_group(user_id: Any) -> str:
    return f"auth.user.{user_id}"


def session_is_current(*, session_key: str | None, user_id: Any) -> bool:
    """Whether the session ``session_key`` still signs in ``user_id``: it exists in the
    session store, names that user, the user exists and is active, and the session's auth
    hash is the user's current one (or one made with a SECRET_KEY_FALLBACKS key, as
    Django accepts). Read-only: unlike ``get_user`` it never flushes or cycles the session
    (that is the browser's business on its next request).

    ``session_key`` None is a socket opened without a session (only tests that set
    ``scope["user"]`` directly): then the user alone is checked."""
    user = get_user_model()._default_manager.filter(pk=user_id).first()
    if user is None or not user.is_active:
        return False
    if session_key is None:
        return True
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    data = store.load()
    if not data or str(data.get(SESSION_KEY)) != str(user.pk):
        return False
    backend = data.get(BACKEND_SESSION_KEY)
    if backend not in settings.AUTHENTICATION_BACKENDS:
        return False
    stored = str(data.get(HASH_SESSION_KEY) or "")
    if not stored:
        return False
    if constant_time_compare(stored, user.get_session_auth_hash()):
        return True
    return any(constant_time_compare(stored, h) for h in user.get_session_auth_fallback_hash())


_session_is_current = database_sync_to_async(session_is_current)


class SignedInSocket(LosslessChannelReceive):
    """Mixin for a Channels consumer: ``watch_sign_in()`` after access was granted,
    ``signed_in()`` before acting on input, ``unwatch_sign_in()`` in ``disconnect``."""

    sign_in_key: str | None = None
    sign_in_user: Any = None
    sign_in_checked = 0.0
    sign_in_ended = False
    sign_in_task: asyncio.Task[None] | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)  # type: ignore[misc]
        finally:
            await self.unwatch_sign_in()

    async def watch_sign_in(self) -> None:
        scope: dict[str, Any] = self.scope  # type: ignore[attr-defined]
        user = scope.get("user")
        self.sign_in_user = getattr(user, "pk", None)
        session = scope.get("session")
        self.sign_in_key = getattr(session, "session_key", None) if session is not None else None
        self.sign_in_checked = time.monotonic()
        groups = [user_auth_group(self.sign_in_user)]
        if self.sign_in_key:
            groups.append(session_group(self.sign_in_key))
        self.sign_in_task = asyncio.create_task(self._listen(groups))

    async def _listen(self, groups: list[str]) -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        channel = ""
        try:
            channel = await asyncio.wait_for(layer.new_channel(), SUBSCRIBE_TIMEOUT)
            for group in groups:
                await asyncio.wait_for(layer.group_add(group, channel), SUBSCRIBE_TIMEOUT)
            while not self.sign_in_ended:
                event = await layer.receive(channel)
                kind = event.get("type") if isinstance(event, dict) else None
                if kind == EVENT_ENDED:
                    await self.sign_in_end()
                elif kind == EVENT_RECHECK:
                    self.sign_in_checked = float("-inf")
                    await self.signed_in()
        except asyncio.CancelledError:
            raise
        except Exception:
            # Redis away: the socket keeps working, ended by its checks on input alone.
            log.warning("sign-in pushes unavailable for a socket; input checks only", exc_info=True)
        finally:
            if channel:
                for group in groups:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(layer.group_discard(group, channel))

    async def signed_in(self) -> bool:
        """False once the socket's sign-in ended (then it is closed with 4401). Checks the
        session store at most every RECHECK_SECONDS; otherwise a clock read."""
        if self.sign_in_ended:
            return False
        now = time.monotonic()
        if now - self.sign_in_checked < RECHECK_SECONDS:
            return True
        self.sign_in_checked = now
        if await _session_is_current(session_key=self.sign_in_key, user_id=self.sign_in_user):
            return True
        await self.sign_in_end()
        return False

    async def sign_in_end(self) -> None:
        if self.sign_in_ended:
            return
        self.sign_in_ended = True
        await self.close(code=CLOSE_SIGNED_OUT)  # type: ignore[attr-defined]

    async def unwatch_sign_in(self) -> None:
        task, self.sign_in_task = self.sign_in_task, None
        if task is not None and task is not asyncio.current_task():
            await cancel_and_wait(task)
