"""The session-scoped WebSocket routes (terminal, events, port preview) fuzzed with every
encoding of a way out, as test_preview_traversal.py does for the preview's own path.

A signed-in student writes the path: their own session id followed by ``..`` and a
classmate's session id, in plain, ``%2f``/``%2e``, double-encoded, backslash, overlong
UTF-8 and CRLF forms, or in place of the terminal number. Whatever the router decodes, the
classmate's session must never be the one reached: every handshake is refused as for an
unknown session (or finds no route), and the classmate's session shows no attach, no
observation and no terminal. The real ASGI application (origin check, auth, URL router,
consumers); no runtimed is needed: a route that reached one would already be the defect.
"""

from __future__ import annotations

import itertools
from typing import Any
from urllib.parse import unquote, urlparse

import pytest
from channels.db import database_sync_to_async

from config.routing import websocket_urlpatterns
from labs.models import LabSession, TerminalObservation
from labs.selectors import LabSessionNotFound, lab_session_for_user
from tests.security.conftest import World
from tests.security.test_idor import _handshake
from tests.security.test_preview_traversal import DOTS, SLASHES

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

CRLF = ["%0d%0a", "%0D%0A", "\\r\\n"]


def _escapes(mine: str, theirs: str) -> list[str]:
    """Session segments that try to name ``theirs`` from ``mine``."""
    out = [theirs.replace("-", "%2d"), theirs.upper(), f"{theirs}%00", f"%20{theirs}"]
    for dot, slash in itertools.product(DOTS, SLASHES):
        out.append(f"{mine}{slash}{dot}{slash}{theirs}")
    out += [f"{mine}{c}{theirs}" for c in CRLF]
    out += [f"http:%2f%2flocalhost%2fws%2flabs%2f{theirs}", f"%2f%2flocalhost/ws/labs/{theirs}"]
    return out


def _routed(path: str) -> dict[str, Any] | None:
    """The arguments the ASGI app's WebSocket router gives a consumer for ``path`` (decoded, as
    the server hands it over), or None when no route takes it but the catch-all, which refuses
    every path with 4404 (config.routing, tests/security/test_ws_unknown_path.py)."""
    rest = unquote(urlparse(path).path).lstrip("/")
    for route in websocket_urlpatterns:
        match = route.pattern.match(rest)
        if match:
            return None if str(route.pattern) == "" else dict(match[2])
    return None


def _paths(mine: str, theirs: str) -> list[str]:
    paths = []
    for seg in _escapes(mine, theirs):
        paths += [f"/ws/labs/{seg}/term/1/", f"/ws/labs/{seg}/events/", f"/labs/{seg}/port/8080/"]
    for dot, slash in itertools.product(DOTS[:4], SLASHES[:4]):
        # the terminal number and the preview's port are the only other segments
        paths.append(f"/ws/labs/{mine}/term/1{slash}{dot}{slash}{dot}{slash}{theirs}/term/1/")
        paths.append(f"/labs/{mine}/port/8080{slash}{dot}{slash}{dot}{slash}{theirs}/port/8080/")
    return paths


async def test_no_encoding_of_a_classmates_session_opens_their_sockets(world: World, fresh_channel_layer: None) -> None:
    mine, theirs = str(world.session.pk), str(world.classmate_session.pk)
    world.classmate_session.terminals = {"1": "pty-classmate"}
    await database_sync_to_async(world.classmate_session.save)(update_fields=["terminals"])
    tried = routed = 0
    for path in _paths(mine, theirs):
        tried += 1
        kwargs = _routed(path)
        if kwargs is None:
            continue  # channels' URLRouter refuses it before any consumer (a handshake waits 20 s for that)
        routed += 1
        # every consumer of these routes asks the one access check with the segment it got:
        # it names no session, or the student's own (a way out after it is the preview's
        # path, refused by runtime.urlsafety: test_preview_traversal.py), never the classmate's
        try:
            granted = await database_sync_to_async(lab_session_for_user)(world.owner, kwargs["session"])
        except LabSessionNotFound:
            granted = None
        assert granted is None or str(granted.session.pk) == mine, path
        if routed % 8 == 1:  # and, for a sample, the whole handshake
            outcome, received = await _handshake(world.owner, path)
            assert outcome != "open", (path, outcome)
            assert not any(m.get("type") == "websocket.send" for m in received), (path, received)
    assert tried > 150 and routed > 100  # the battery really reached the consumers
    assert not await database_sync_to_async(TerminalObservation.objects.exists)()
    again: Any = await database_sync_to_async(LabSession.objects.get)(pk=world.classmate_session.pk)
    assert again.terminals == {"1": "pty-classmate"}


async def test_the_owners_own_events_socket_still_opens(world: World, fresh_channel_layer: None) -> None:
    outcome, _ = await _handshake(world.owner, f"/ws/labs/{world.session.pk}/events/")
    assert outcome == "open"
