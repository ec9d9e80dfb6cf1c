"""Attacks on the class view's messages (issue #18, courses/messages.py): who may send, to
whom, what the text can do on a student's page, cross-site posts, and reading or
dismissing another student's messages.

``world`` (tests/security/conftest.py): ``instructor`` teaches ``secure-course``, whose lab
``owner`` and ``classmate`` have sessions in; ``other_instructor`` teaches another course;
``outsider`` has no role. LMS scoping runs real launches against tests/lti's platform.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import channel_layers
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from courses.models import ClassMessage
from labs.models import LabSession
from labs.routing import websocket_urlpatterns
from lti.models import LtiIdentity
from tests.factories import StudentFactory
from tests.lti.platform import INSTRUCTOR, LEARNER, LMS, launch, running_lms, small_course
from tests.security.conftest import World, client_for

XSS = """<script>window.pwned=1</script><img src=x onerror="window.pwned=2">"'&amp;{{ x }}"""


def _send(client: Client, slug: str, to: Any, text: str = "a hint") -> Any:
    return client.post(
        reverse("courses:instructor-message", kwargs={"course": slug}),
        {"to": str(to), "text": text},
        HTTP_ACCEPT="application/json",
    )


def _message_to_owner(w: World, text: str = "for the owner only") -> ClassMessage:
    assert _send(client_for(w.instructor), w.course.slug, w.owner.pk, text).status_code == 201
    return ClassMessage.objects.get(recipient=w.owner, text=text)


# --- who may send -------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["owner", "classmate", "outsider"])
@pytest.mark.parametrize("to", ["all", "owner"])
def test_students_and_outsiders_cannot_send(world: World, who: str, to: str) -> None:
    target = "all" if to == "all" else world.owner.pk
    answer = _send(client_for(world.user(who)), world.course.slug, target)
    assert answer.status_code == 403
    assert not ClassMessage.objects.exists()


@pytest.mark.django_db
def test_anonymous_is_sent_to_log_in(world: World) -> None:
    answer = _send(Client(), world.course.slug, "all")
    assert answer.status_code == 302 and reverse("login") in answer["Location"]
    assert not ClassMessage.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("slug", ["secure-course", "no-such-course"])
def test_an_instructor_of_another_course_gets_what_an_unknown_course_gets(world: World, slug: str) -> None:
    answer = _send(client_for(world.other_instructor), slug, world.owner.pk)
    assert answer.status_code == 404
    answer = _send(client_for(world.other_instructor), slug, "all")
    assert answer.status_code == 404
    assert not ClassMessage.objects.exists()


@pytest.mark.django_db
def test_sending_is_a_post(world: World) -> None:
    url = reverse("courses:instructor-message", kwargs={"course": world.course.slug})
    client = client_for(world.instructor)
    assert client.get(url, {"to": "all", "text": "x"}).status_code == 405
    assert not ClassMessage.objects.exists()


# --- to whom --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_only_students_of_the_class_can_be_messaged(world: World) -> None:
    lms_student = StudentFactory.create()  # an LMS account of another LMS course: not this class
    LtiIdentity.objects.create(issuer="https://lms.example", sub="elsewhere", user=lms_student)
    client = client_for(world.instructor)
    for to in (
        world.outsider.pk,  # no role, never worked in the course
        world.other_instructor.pk,
        world.instructor.pk,  # themself
        lms_student.pk,
        10**9,
        -1,
        "1 OR 1=1",
        f"{world.owner.pk}.0",
        "",
        "../../admin",
        "ALL",
    ):
        answer = _send(client, world.course.slug, to)
        assert answer.status_code == 404, to
        assert answer.json() == {"error": "No such student in this class."}
    assert not ClassMessage.objects.exists()
    # A broadcast reaches the class and nobody else.
    assert _send(client, world.course.slug, "all").json()["sent"] == 2
    assert set(ClassMessage.objects.values_list("recipient", flat=True)) == {world.owner.pk, world.classmate.pk}


@pytest.fixture
def lms(db: None) -> Iterator[LMS]:
    with running_lms() as started:
        yield started


def _lti_user(lms: LMS, sub: str) -> Any:
    return LtiIdentity.objects.select_related("user").get(issuer=lms.issuer, sub=sub).user


@pytest.mark.django_db
def test_an_lms_instructor_messages_only_their_lms_courses_roster(lms: LMS) -> None:
    course = small_course()
    teacher = Client()
    launch(teacher, lms, lms.claims(sub="teach", roles=INSTRUCTOR, context="mine", target="course:k8s"))
    launch(Client(), lms, lms.claims(sub="pupil", roles=LEARNER, context="mine", target="course:k8s"))
    # another LMS course bound to the same course of ours, and a site student working in it
    launch(Client(), lms, lms.claims(sub="not-mine", roles=LEARNER, context="theirs", target="course:k8s"))
    site_student = StudentFactory.create()
    now = timezone.now()
    LabSession.objects.create(user=site_student, lab=course.lab, created_at=now, expires_at=now + timedelta(hours=1))
    other = type(course.course).objects.create(slug="other", title="Other")

    assert _send(teacher, "k8s", _lti_user(lms, "pupil").pk).status_code == 201
    assert _send(teacher, "k8s", _lti_user(lms, "not-mine").pk).status_code == 404
    assert _send(teacher, "k8s", site_student.pk).status_code == 404
    assert _send(teacher, "other", site_student.pk).status_code == 404  # a course they do not teach
    assert _send(teacher, other.slug, "all").status_code == 404
    assert _send(teacher, "k8s", "all").json()["sent"] == 1
    assert set(ClassMessage.objects.values_list("recipient", flat=True)) == {_lti_user(lms, "pupil").pk}


# --- what the text can do -------------------------------------------------------------------------


@pytest.mark.django_db
def test_message_text_is_escaped_on_the_students_page(world: World) -> None:
    _message_to_owner(world, XSS)
    body = client_for(world.owner).get(reverse("labs:session", kwargs={"session_id": world.session.pk}))
    html = body.content.decode()
    assert "<script>window.pwned" not in html and "<img src=x" not in html
    assert "&lt;script&gt;window.pwned=1&lt;/script&gt;&lt;img src=x onerror=&quot;window.pwned=2&quot;&gt;" in html
    assert "&amp;amp;{{ x }}" in html  # neither entity-decoded nor evaluated as a template


# --- cross-site ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_send_and_dismiss_need_the_csrf_token(world: World) -> None:
    teacher = client_for(world.instructor, enforce_csrf=True)
    assert _send(teacher, world.course.slug, "all").status_code == 403
    assert not ClassMessage.objects.exists()
    teacher.get(reverse("courses:instructor-live", kwargs={"course": world.course.slug}))
    token = teacher.cookies["csrftoken"].value
    answer = teacher.post(
        reverse("courses:instructor-message", kwargs={"course": world.course.slug}),
        {"to": "all", "text": "with the token", "csrfmiddlewaretoken": token},
        HTTP_ACCEPT="application/json",
    )
    assert answer.status_code == 201

    mine = ClassMessage.objects.get(recipient=world.owner)
    owner = client_for(world.owner, enforce_csrf=True)
    url = reverse("courses:message-dismiss", kwargs={"message_id": mine.pk})
    assert owner.post(url).status_code == 403
    mine.refresh_from_db()
    assert mine.read_at is None
    owner.get(reverse("labs:session", kwargs={"session_id": world.session.pk}))
    assert owner.post(url, HTTP_X_CSRFTOKEN=owner.cookies["csrftoken"].value).status_code == 200


# --- another student's messages ------------------------------------------------------------------


@pytest.mark.django_db
def test_a_student_cannot_see_or_dismiss_another_students_message(world: World) -> None:
    message = _message_to_owner(world)
    classmate = client_for(world.classmate)
    page = classmate.get(reverse("labs:session", kwargs={"session_id": world.classmate_session.pk}))
    assert "for the owner only" not in page.content.decode()
    # the owner's own session page is not the classmate's to open (the same 404 as no session)
    assert classmate.get(reverse("labs:session", kwargs={"session_id": world.session.pk})).status_code == 404
    for who in (world.classmate, world.outsider, world.instructor):
        answer = client_for(who).post(reverse("courses:message-dismiss", kwargs={"message_id": message.pk}))
        assert answer.status_code == 404
    message.refresh_from_db()
    assert message.read_at is None
    # the instructor observing the owner's lab page does not get the owner's inbox either
    observed = client_for(world.instructor).get(reverse("labs:session", kwargs={"session_id": world.session.pk}))
    assert observed.status_code == 200 and "for the owner only" not in observed.content.decode()


@pytest.fixture
def fresh_channel_layer() -> Iterator[None]:
    # channels_redis binds its pools to one event loop; every async test has its own.
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


async def _open(session: LabSession, user: Any) -> tuple[WebsocketCommunicator, list[dict[str, Any]]]:
    socket = WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws/labs/{session.pk}/events/")
    socket.scope["user"] = user
    connected, _ = await socket.connect(timeout=20)
    assert connected
    got = [await socket.receive_json_from(timeout=20)]
    while not await socket.receive_nothing(timeout=1):
        got.append(await socket.receive_json_from(timeout=5))
    return socket, got


@pytest.mark.django_db(transaction=True)
async def test_another_students_socket_never_carries_the_message(world: World, fresh_channel_layer: None) -> None:
    message = await database_sync_to_async(_message_to_owner)(world)
    owner, got = await _open(world.session, world.owner)
    assert [m["type"] for m in got] == ["status", "messages"] and got[1]["messages"][0]["id"] == message.pk
    classmate, got = await _open(world.classmate_session, world.classmate)
    assert [m["type"] for m in got] == ["status"]
    observer, got = await _open(world.session, world.instructor)
    assert [m["type"] for m in got] == ["status"]
    # a new message to the owner: the owner's socket only
    await database_sync_to_async(_message_to_owner)(world, "second")
    assert (await owner.receive_json_from(timeout=20))["message"]["text"] == "second"
    assert await classmate.receive_nothing(timeout=1) and await observer.receive_nothing(timeout=0.5)
    for socket in (owner, classmate, observer):
        await socket.disconnect()
