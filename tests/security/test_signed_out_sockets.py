"""A socket lives only as long as the sign-in that opened it (issue #12 follow-up).

Before, the terminal, the lab's events, the preview relay and /ws/whoami/ checked the user
once, at the handshake: a lab tab left open on a shared computer kept a writable root shell
after its student signed out, and a password change, a deactivation or another account
signing in in the same browser (an LTI launch replaces the session cookie) ended nothing.

Every socket here goes through the real ASGI application (origin check, session cookie,
AuthMiddlewareStack) and the real Redis channel layer; the browser is Django's test client,
whose cookie the socket carries, as a second tab of the same browser would.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from accounts import sockets
from tests.factories import PASSWORD
from tests.security.conftest import World, client_for

HOST = b"localhost:8000"
OWN = "http://localhost:8000"

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def fresh_channel_layer(settings: Any) -> Iterator[None]:
    """The Redis layer's connections belong to one event loop: each test gets its own."""
    from channels.layers import channel_layers

    settings.ALLOWED_HOSTS = ["localhost", "testserver"]
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


def _cookie(client: Client) -> list[tuple[bytes, bytes]]:
    value = client.cookies[django_settings.SESSION_COOKIE_NAME].value
    return [(b"cookie", f"{django_settings.SESSION_COOKIE_NAME}={value}".encode())]


async def _open(path: str, client: Client) -> WebsocketCommunicator:
    """A socket of the browser ``client``, open and past its first message."""
    from config.asgi import application

    cookie = await database_sync_to_async(_cookie)(client)
    communicator = WebsocketCommunicator(
        application, path, headers=[(b"host", HOST), (b"origin", OWN.encode()), *cookie]
    )
    connected, code = await communicator.connect(timeout=20)
    assert connected, code
    first = await communicator.receive_output(timeout=20)
    assert first["type"] == "websocket.send", first
    return communicator


async def _closed_with(communicator: WebsocketCommunicator, timeout: float = 20) -> int | None:
    """The close code the socket ends with (messages before it are skipped)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        message = await communicator.receive_output(timeout=max(0.1, deadline - loop.time()))
        if message["type"] == "websocket.close":
            code: int | None = message.get("code")
            # what the server sends once the browser answered the close: the consumer cleans up
            await communicator.disconnect()
            return code


async def _events_and_whoami(client: Client, world: World) -> list[WebsocketCommunicator]:
    return [await _open(f"/ws/labs/{world.session.pk}/events/", client), await _open("/ws/whoami/", client)]


def _browser(user: User) -> Client:
    return client_for(user)


async def test_sockets_of_a_session_that_stays_signed_in_keep_working(world: World, monkeypatch: Any) -> None:
    """The happy path: checks and pushes end nothing that is still signed in, even when every
    message is checked (RECHECK_SECONDS 0) and the user's account is saved meanwhile."""
    monkeypatch.setattr(sockets, "RECHECK_SECONDS", 0.0)
    browser = await database_sync_to_async(_browser)(world.owner)
    events, whoami = await _events_and_whoami(browser, world)

    def touch_account() -> None:
        world.owner.first_name = "Renamed"
        world.owner.save()  # a recheck is pushed: the session still holds

    await database_sync_to_async(touch_account)()
    for _ in range(3):
        await whoami.send_json_to({"type": "ping"})
        assert await whoami.receive_json_from(timeout=20) == {"type": "pong"}
        await events.send_json_to({"type": "state"})
        assert "status" in await events.receive_json_from(timeout=20)
        await asyncio.sleep(1.1)  # the events socket answers "state" once a second
    await events.disconnect()
    await whoami.disconnect()


async def test_logout_in_another_tab_closes_the_sockets(world: World) -> None:
    browser = await database_sync_to_async(_browser)(world.owner)
    opened = await _events_and_whoami(browser, world)
    answer = await database_sync_to_async(browser.post)(reverse("logout"))
    assert answer.status_code == 302
    for communicator in opened:
        assert await _closed_with(communicator) == sockets.CLOSE_SIGNED_OUT


async def test_another_browsers_sign_out_does_not_close_this_ones(world: World) -> None:
    mine = await database_sync_to_async(_browser)(world.owner)
    theirs = await database_sync_to_async(_browser)(world.owner)
    events = await _open(f"/ws/labs/{world.session.pk}/events/", mine)
    await database_sync_to_async(theirs.post)(reverse("logout"))
    await asyncio.sleep(1.1)
    await events.send_json_to({"type": "state"})
    assert "status" in await events.receive_json_from(timeout=20)
    await events.disconnect()


async def test_a_lost_push_still_ends_the_socket_at_its_next_input(world: World, monkeypatch: Any) -> None:
    """Redis lost the push (or was away): the check on input ends the socket, and the
    message it carried is not acted on."""
    monkeypatch.setattr("accounts.services._auth_push", lambda group, kind: None)
    browser = await database_sync_to_async(_browser)(world.owner)
    events, whoami = await _events_and_whoami(browser, world)
    await database_sync_to_async(browser.post)(reverse("logout"))
    monkeypatch.setattr(sockets, "RECHECK_SECONDS", 0.0)
    await whoami.send_json_to({"type": "ping"})
    await events.send_json_to({"type": "state"})
    for communicator in (whoami, events):
        message = await communicator.receive_output(timeout=20)
        assert message == {"type": "websocket.close", "code": sockets.CLOSE_SIGNED_OUT}, message
        await communicator.disconnect()


async def test_a_password_change_in_another_browser_closes_the_sockets(world: World) -> None:
    browser = await database_sync_to_async(_browser)(world.owner)
    opened = await _events_and_whoami(browser, world)
    elsewhere = await database_sync_to_async(_browser)(world.owner)
    answer = await database_sync_to_async(elsewhere.post)(
        reverse("password_change"),
        {
            "old_password": PASSWORD,
            "new_password1": "a-new-Passw0rd-for-owner",
            "new_password2": "a-new-Passw0rd-for-owner",
        },
    )
    assert answer.status_code == 302, answer.content[:500]
    for communicator in opened:
        assert await _closed_with(communicator) == sockets.CLOSE_SIGNED_OUT
    # The browser that changed it stays signed in (Django keeps its session's hash current).
    assert (await database_sync_to_async(elsewhere.get)(reverse("password_change"))).status_code == 200


async def test_a_deactivated_account_loses_its_sockets(world: World) -> None:
    browser = await database_sync_to_async(_browser)(world.owner)
    opened = await _events_and_whoami(browser, world)

    def deactivate() -> None:
        world.owner.is_active = False
        world.owner.save()  # what the admin's change form does

    await database_sync_to_async(deactivate)()
    for communicator in opened:
        assert await _closed_with(communicator) == sockets.CLOSE_SIGNED_OUT


async def test_an_lti_launch_as_someone_else_in_the_same_browser_closes_the_old_sockets(world: World) -> None:
    from tests.lti.platform import LEARNER, launch, running_lms, small_course

    browser = await database_sync_to_async(_browser)(world.owner)
    opened = await _events_and_whoami(browser, world)

    def launch_as_another() -> None:
        small_course()
        with running_lms() as lms:
            answer = launch(browser, lms, lms.claims(sub="someone-else", roles=LEARNER, target="course:k8s"))
            assert answer.status_code in (302, 303), answer.status_code

    await database_sync_to_async(launch_as_another)()
    for communicator in opened:
        assert await _closed_with(communicator) == sockets.CLOSE_SIGNED_OUT


async def test_a_socket_cannot_outlive_its_session_in_the_store(world: World, monkeypatch: Any) -> None:
    """The session expired or was deleted server-side (clearsessions, an admin): gone."""
    from django.contrib.sessions.models import Session

    monkeypatch.setattr(sockets, "RECHECK_SECONDS", 0.0)
    browser = await database_sync_to_async(_browser)(world.owner)
    whoami = await _open("/ws/whoami/", browser)
    await database_sync_to_async(lambda: Session.objects.all().delete())()
    await whoami.send_json_to({"type": "ping"})
    assert await _closed_with(whoami) == sockets.CLOSE_SIGNED_OUT


def test_the_session_group_does_not_carry_the_session_key() -> None:
    """A session key is a credential: the group named after it goes to Redis as a digest."""
    key = "k" * 32
    group = sockets.session_group(key)
    assert key not in group and len(group) < 100


# --- observing is for the instructor's own class ----------------------------------------------


@pytest.fixture
def lms() -> Iterator[Any]:
    from tests.lti.platform import running_lms

    with running_lms() as started:
        yield started


def test_an_lms_instructor_cannot_observe_a_site_student_off_their_roster(lms: Any) -> None:
    """``lab_session_for_user`` let an instructor made by an LMS launch observe any session of
    a course they teach; the class view showed them only their roster. One rule now:
    ``courses.selectors.class_members``."""
    from datetime import timedelta

    from django.utils import timezone

    from labs.models import LabSession
    from labs.selectors import LabSessionNotFound, lab_session_for_user
    from tests.factories import StudentFactory
    from tests.lti.platform import INSTRUCTOR, LEARNER, launch, small_course

    course = small_course()
    teacher = Client()
    launch(teacher, lms, lms.claims(sub="teach-x", roles=INSTRUCTOR, context="mine", target="course:k8s"))
    launch(Client(), lms, lms.claims(sub="pupil-x", roles=LEARNER, context="mine", target="course:k8s"))
    launch(Client(), lms, lms.claims(sub="other-x", roles=LEARNER, context="theirs", target="course:k8s"))
    from lti.models import LtiIdentity

    def user(sub: str) -> Any:
        return LtiIdentity.objects.select_related("user").get(issuer=lms.issuer, sub=sub).user

    now = timezone.now()

    def session_of(student: Any) -> LabSession:
        return LabSession.objects.create(
            user=student,
            lab=course.lab,
            status=LabSession.Status.READY,
            sandbox_id=f"sb-fake-{student.pk}",
            created_at=now,
            ready_at=now,
            expires_at=now + timedelta(hours=1),
        )

    pupil = session_of(user("pupil-x"))
    off_roster = [session_of(StudentFactory.create(username="site-student-x")), session_of(user("other-x"))]
    instructor = user("teach-x")
    # their own roster: observed, read-only
    assert not lab_session_for_user(instructor, pupil.pk).can_write
    assert teacher.get(reverse("labs:session", args=[pupil.pk])).status_code == 200
    for session in off_roster:
        with pytest.raises(LabSessionNotFound):
            lab_session_for_user(instructor, session.pk)
        assert teacher.get(reverse("labs:session", args=[session.pk])).status_code == 404
        assert teacher.get(reverse("labs:files", args=[session.pk])).status_code == 404


async def test_an_lms_instructor_off_the_roster_gets_no_socket(lms: Any) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from labs.models import LabSession
    from tests.factories import StudentFactory
    from tests.lti.platform import INSTRUCTOR, launch, small_course

    def setup() -> tuple[Client, LabSession]:
        course = small_course()
        teacher = Client()
        launch(teacher, lms, lms.claims(sub="teach-y", roles=INSTRUCTOR, context="mine", target="course:k8s"))
        now = timezone.now()
        session = LabSession.objects.create(
            user=StudentFactory.create(username="site-student-y"),
            lab=course.lab,
            status=LabSession.Status.READY,
            sandbox_id="sb-fake-y",
            created_at=now,
            ready_at=now,
            expires_at=now + timedelta(hours=1),
        )
        return teacher, session

    teacher, session = await database_sync_to_async(setup)()
    from config.asgi import application

    cookie = await database_sync_to_async(_cookie)(teacher)
    for path in (f"/ws/labs/{session.pk}/events/", f"/ws/labs/{session.pk}/term/1/"):
        communicator = WebsocketCommunicator(
            application, path, headers=[(b"host", HOST), (b"origin", OWN.encode()), *cookie]
        )
        connected, _ = await communicator.connect(timeout=20)
        assert connected
        message = await communicator.receive_output(timeout=20)
        assert message == {"type": "websocket.close", "code": 4404}, (path, message)
        await communicator.disconnect()


# --- the terminal, on a real sandbox -----------------------------------------------------------


async def _type_and_read(terminal: WebsocketCommunicator, line: bytes, needle: bytes) -> bytes:
    from tests.labs.test_consumers import read_until

    await terminal.send_to(bytes_data=line)
    return await read_until(terminal, needle)


async def test_logout_closes_the_terminal_and_later_input_is_not_run(runtime_socket: str, monkeypatch: Any) -> None:
    from tests.factories import StudentFactory
    from tests.labs.test_consumers import ready_session

    owner = await database_sync_to_async(StudentFactory.create)()
    session = await ready_session(owner)
    browser = await database_sync_to_async(_browser)(owner)
    path = f"/ws/labs/{session.pk}/term/1/?rows=30&cols=100"
    terminal = await _open(path, browser)  # hello
    await _type_and_read(terminal, b"echo sig''ned-in\n", b"signed-in")

    # Signed out in another tab: pushed, the terminal closes at once.
    await database_sync_to_async(browser.post)(reverse("logout"))
    assert await _closed_with(terminal) == sockets.CLOSE_SIGNED_OUT

    # Without the push (Redis lost it), the next keystrokes close it and are not run.
    monkeypatch.setattr("accounts.services._auth_push", lambda group, kind: None)
    second = await database_sync_to_async(_browser)(owner)
    terminal = await _open(path, second)
    await _type_and_read(terminal, b"echo ag''ain\n", b"again")
    await database_sync_to_async(second.post)(reverse("logout"))
    monkeypatch.setattr(sockets, "RECHECK_SECONDS", 0.0)
    await terminal.send_to(bytes_data=b"touch /tmp/pwned-after-logout\n")
    assert await _closed_with(terminal) == sockets.CLOSE_SIGNED_OUT

    # Signed in again: the shell is there and the command typed after signing out never ran.
    monkeypatch.setattr(sockets, "RECHECK_SECONDS", 30.0)
    third = await database_sync_to_async(_browser)(owner)
    terminal = await _open(path, third)
    seen = await _type_and_read(
        terminal, b"test -e /tmp/pwned-after-logout && echo FOU''ND || echo ABS''ENT\n", b"ABSENT"
    )
    assert b"FOUND" not in seen.replace(b"FOU''ND", b"")
    await terminal.send_to(text_data=json.dumps({"type": "ping"}))
    await terminal.disconnect()
