"""Hints and messages from the live class view to students' lab pages (issue #18):
the send endpoint, the stored rows, the lab page, the events socket that pushes them,
dismissal; and who counts as the class (``class_members``).

The events socket runs for real (Channels' WebsocketCommunicator on the test Redis);
the sandbox is made up (nothing here talks to runtimed)."""

from __future__ import annotations

from collections.abc import AsyncIterator
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

from courses import classview, messages
from courses.models import ClassMessage
from grader.models import ExerciseProgress
from labs.models import LabSession
from labs.routing import websocket_urlpatterns
from lti.models import LtiContext, LtiIdentity, LtiMembership, Platform
from tests.factories import (
    PASSWORD,
    CourseFactory,
    InstructorFactory,
    LabFactory,
    ModuleFactory,
    StepFactory,
    StudentFactory,
)
from tests.grader.helpers import ExerciseFactory


def _course() -> Any:
    course = CourseFactory.create()
    lab = LabFactory.create(module=ModuleFactory.create(course=course))
    ExerciseFactory.create(step=StepFactory.create(lab=lab, order=1), title="Make a pod")
    return course


def _lab(course: Any) -> Any:
    return course.modules.get().labs.get()


def _session(user: Any, lab: Any) -> LabSession:
    now = timezone.now()
    return LabSession.objects.create(
        user=user,
        lab=lab,
        status=LabSession.Status.READY,
        sandbox_id="sb-made-up",
        created_at=now,
        ready_at=now,
        expires_at=now + timedelta(hours=2),
    )


def _teacher(course: Any) -> Any:
    teacher = InstructorFactory.create(first_name="Grace", last_name="Hopper")
    course.instructors.add(teacher)
    return teacher


def _client(user: Any) -> Client:
    client = Client()
    client.login(username=user.username, password=PASSWORD)
    return client


def _send(client: Client, course: Any, to: Any, text: str) -> Any:
    return client.post(
        reverse("courses:instructor-message", kwargs={"course": course.slug}),
        {"to": str(to), "text": text},
        HTTP_ACCEPT="application/json",
    )


# --- sending, storing, showing, dismissing ----------------------------------------------------


@pytest.mark.django_db
def test_a_hint_to_one_student_is_stored_and_shown_on_their_lab_page_until_dismissed() -> None:
    course = _course()
    teacher = _teacher(course)
    student, classmate = StudentFactory.create(), StudentFactory.create()
    session = _session(student, _lab(course))
    answer = _send(_client(teacher), course, student.pk, "  Try kubectl describe pod web\n  ")
    assert answer.status_code == 201 and answer.json()["sent"] == 1
    row = ClassMessage.objects.get()
    assert (row.sender, row.recipient, row.course, row.broadcast, row.read_at) == (
        teacher,
        student,
        course,
        False,
        None,
    )
    assert row.text == "Try kubectl describe pod web"

    page = _client(student)
    body = page.get(reverse("labs:session", kwargs={"session_id": session.pk})).content.decode()
    assert "Try kubectl describe pod web" in body and "Grace Hopper" in body
    assert f'data-message-id="{row.pk}"' in body
    # the classmate's lab page of the same course shows nothing of it
    other = _session(classmate, _lab(course))
    assert "kubectl describe" not in _client(classmate).get(f"/labs/{other.pk}/").content.decode()

    dismissed = page.post(reverse("courses:message-dismiss", kwargs={"message_id": row.pk}))
    assert dismissed.status_code == 200
    row.refresh_from_db()
    assert row.read_at is not None
    assert "kubectl describe" not in page.get(f"/labs/{session.pk}/").content.decode()
    # dismissing again is harmless
    assert page.post(reverse("courses:message-dismiss", kwargs={"message_id": row.pk})).status_code == 200


@pytest.mark.django_db
def test_a_broadcast_reaches_every_student_of_the_class_once_and_no_one_else() -> None:
    course = _course()
    teacher = _teacher(course)
    in_lab, not_in_lab = StudentFactory.create(), StudentFactory.create()
    _session(in_lab, _lab(course))
    other_course = _course()
    lms_student = StudentFactory.create()  # an LMS account: belongs to its LMS course, not this one
    platform = Platform.objects.create(
        name="LMS",
        issuer="https://lms.example",
        client_id="c",
        auth_login_url="https://lms.example/auth",
        auth_token_url="https://lms.example/token",
        key_set_url="https://lms.example/jwks",
    )
    LtiIdentity.objects.create(issuer=platform.issuer, sub="s1", user=lms_student)
    context = LtiContext.objects.create(platform=platform, context_id="ctx", course=other_course)
    LtiMembership.objects.create(context=context, user=lms_student, role="student")

    answer = _send(_client(teacher), course, "all", "Break in 5 minutes")
    assert answer.status_code == 201 and answer.json()["sent"] == 2
    rows = ClassMessage.objects.all()
    assert sorted(r.recipient_id for r in rows) == sorted([in_lab.pk, not_in_lab.pk])
    assert {r.broadcast for r in rows} == {True} and len({r.batch for r in rows}) == 1
    # the one not in a lab sees it when they next open one
    later = _session(not_in_lab, _lab(course))
    assert "Break in 5 minutes" in _client(not_in_lab).get(f"/labs/{later.pk}/").content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "Write a message."),
        ("   \n ", "Write a message."),
        ("x" * (messages.MAX_LENGTH + 1), f"at most {messages.MAX_LENGTH}"),
        ("bell\x07", "control characters (U+0007)"),
        ("nul\x00", "control characters (U+0000)"),
    ],
)
def test_bad_text_is_refused_with_the_reason_and_nothing_is_stored(text: str, reason: str) -> None:
    course = _course()
    student = StudentFactory.create()
    answer = _send(_client(_teacher(course)), course, student.pk, text)
    assert answer.status_code == 400 and reason in answer.json()["error"]
    assert not ClassMessage.objects.exists()


@pytest.mark.django_db
def test_the_longest_message_and_its_line_breaks_are_kept() -> None:
    course = _course()
    student = StudentFactory.create()
    text = "line one\r\nline two\t" + "y" * (messages.MAX_LENGTH - 19)
    assert _send(_client(_teacher(course)), course, student.pk, text).status_code == 201
    assert ClassMessage.objects.get().text == text.replace("\r\n", "\n")


@pytest.mark.django_db
def test_sends_are_rate_limited_per_instructor_a_broadcast_counting_once() -> None:
    course = _course()
    teacher, colleague = _teacher(course), _teacher(course)
    students = [StudentFactory.create() for _ in range(3)]
    client = _client(teacher)
    assert _send(client, course, "all", "everyone").status_code == 201  # 3 rows, one send
    for n in range(messages.SENDS_PER_MINUTE - 1):
        assert _send(client, course, students[0].pk, f"hint {n}").status_code == 201
    refused = _send(client, course, students[0].pk, "one too many")
    assert refused.status_code == 429 and "At most" in refused.json()["error"]
    assert not ClassMessage.objects.filter(text="one too many").exists()
    # another instructor has their own budget
    assert _send(_client(colleague), course, students[0].pk, "from me").status_code == 201
    # a minute later the budget is back
    ClassMessage.objects.filter(sender=teacher).update(created_at=timezone.now() - timedelta(seconds=61))
    assert _send(client, course, students[0].pk, "again").status_code == 201


@pytest.mark.django_db
def test_the_form_without_javascript_comes_back_to_the_class_view_with_the_outcome() -> None:
    course = _course()
    student = StudentFactory.create()
    client = _client(_teacher(course))
    url = reverse("courses:instructor-message", kwargs={"course": course.slug})
    answer = client.post(url, {"to": student.pk, "text": "hello"}, follow=True)
    assert answer.redirect_chain[-1][0] == reverse("courses:instructor-live", kwargs={"course": course.slug})
    assert "Sent to 1 student." in answer.content.decode()
    answer = client.post(url, {"to": student.pk, "text": ""}, follow=True)
    assert "Write a message." in answer.content.decode()


@pytest.mark.django_db
def test_the_class_view_has_the_form_and_a_message_button_per_student_in_a_lab() -> None:
    course = _course()
    student = StudentFactory.create(username="ada")
    _session(student, _lab(course))
    body = _client(_teacher(course)).get(reverse("courses:instructor-live", kwargs={"course": course.slug}))
    html = body.content.decode()
    assert 'id="class-message-form"' in html and f'<option value="{student.pk}">' in html
    assert f'data-message-to="{student.pk}"' in html
    assert 'name="csrfmiddlewaretoken"' in html


# --- the events socket ----------------------------------------------------------------------------


@pytest.fixture
def fresh_channel_layer() -> Any:
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.fixture
async def events(fresh_channel_layer: None) -> AsyncIterator[Any]:
    opened: list[WebsocketCommunicator] = []

    async def open_events(session: LabSession, user: Any) -> WebsocketCommunicator:
        communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws/labs/{session.pk}/events/")
        communicator.scope["user"] = user
        connected, _ = await communicator.connect(timeout=20)
        assert connected
        opened.append(communicator)
        first = await communicator.receive_json_from(timeout=20)
        assert first["type"] == "status"
        return communicator

    yield open_events
    for communicator in opened:
        await communicator.disconnect()


async def _next_message(socket: WebsocketCommunicator) -> dict[str, Any]:
    while True:
        message = await socket.receive_json_from(timeout=20)
        if message["type"] != "status":
            return message


@pytest.mark.django_db(transaction=True)
async def test_a_message_reaches_the_students_open_lab_page_and_no_observer(events: Any) -> None:
    def world() -> tuple[Any, Any, Any, LabSession, LabSession]:
        course = _course()
        teacher = _teacher(course)
        student, classmate = StudentFactory.create(), StudentFactory.create()
        return course, teacher, student, _session(student, _lab(course)), _session(classmate, _lab(course))

    course, teacher, student, session, classmate_session = await database_sync_to_async(world)()
    page = await events(session, student)
    observer = await events(session, teacher)  # the instructor watching this student's lab
    classmate = await events(classmate_session, classmate_session.user)

    sent = await database_sync_to_async(messages.send_class_message)(
        sender=teacher, course=course, text="<b>look</b> at the Service", to=student.pk
    )
    assert sent.recipients == 1
    pushed = await _next_message(page)
    assert pushed["type"] == "message"
    assert pushed["message"]["text"] == "<b>look</b> at the Service"  # text; the page sets textContent
    assert pushed["message"]["from"] == "Grace Hopper" and pushed["message"]["broadcast"] is False
    assert await observer.receive_nothing(timeout=1)
    assert await classmate.receive_nothing(timeout=0.5)

    # Reconnecting: the unread one comes with the state; dismissed, it is pushed away and gone.
    again = await events(session, student)
    unread = await _next_message(again)
    assert unread == {"type": "messages", "messages": [pushed["message"]]}
    await database_sync_to_async(messages.dismiss_class_message)(user=student, message_id=pushed["message"]["id"])
    assert await _next_message(page) == {"type": "message_dismissed", "id": pushed["message"]["id"]}
    assert await _next_message(again) == {"type": "message_dismissed", "id": pushed["message"]["id"]}
    third = await events(session, student)
    assert await third.receive_nothing(timeout=1)


@pytest.mark.django_db(transaction=True)
async def test_a_broadcast_reaches_each_open_lab_page_of_the_class(events: Any) -> None:
    def world() -> tuple[Any, Any, list[LabSession]]:
        course = _course()
        teacher = _teacher(course)
        return course, teacher, [_session(StudentFactory.create(), _lab(course)) for _ in range(3)]

    course, teacher, sessions = await database_sync_to_async(world)()
    pages = [await events(s, s.user) for s in sessions]
    await database_sync_to_async(messages.send_class_message)(sender=teacher, course=course, text="Break", to="all")
    ids = set()
    for page in pages:
        pushed = await _next_message(page)
        assert pushed["message"]["text"] == "Break" and pushed["message"]["broadcast"] is True
        ids.add(pushed["message"]["id"])
        assert await page.receive_nothing(timeout=0.5)
    assert len(ids) == 3  # each student dismisses their own copy


# --- who is the class (the class view counted every student of the site) --------------------------


def _lms(course: Any, context_id: str = "ctx") -> LtiContext:
    platform, _ = Platform.objects.get_or_create(
        issuer="https://lms.example",
        client_id="c",
        defaults={
            "name": "LMS",
            "auth_login_url": "https://lms.example/auth",
            "auth_token_url": "https://lms.example/token",
            "key_set_url": "https://lms.example/jwks",
        },
    )
    return LtiContext.objects.create(platform=platform, context_id=context_id, course=course)


def _lms_user(context: LtiContext | None, sub: str, role: str = "student", **kwargs: Any) -> Any:
    user = (InstructorFactory if role == "instructor" else StudentFactory).create()
    LtiIdentity.objects.create(issuer="https://lms.example", sub=sub, user=user, **kwargs)
    if context is not None:
        LtiMembership.objects.create(context=context, user=user, role=role)
    return user


@pytest.mark.django_db
def test_a_site_course_counts_the_sites_own_students_not_another_lms_courses() -> None:
    course, lms_course = _course(), _course()
    site_student = StudentFactory.create()
    elsewhere = _lms_user(_lms(lms_course), "s-elsewhere")
    view = classview.class_view(course=course, now=timezone.now(), viewer=_teacher(course))
    assert [s for s in classview.class_members(course).order_by("pk")] == [site_student]
    assert view.students == 1
    # an LMS student who opened this course's lab is in its class too
    _session(elsewhere, _lab(course))
    assert set(classview.class_members(course)) == {site_student, elsewhere}


@pytest.mark.django_db
def test_an_lms_course_counts_its_roster_and_who_worked_in_it() -> None:
    course = _course()
    context = _lms(course)
    on_roster = _lms_user(context, "s-1")
    gone = _lms_user(context, "s-2")
    LtiMembership.objects.filter(user=gone).update(active=False)
    site_student, worker = StudentFactory.create(), StudentFactory.create()
    ExerciseProgress.objects.create(
        user=worker, exercise=_lab(course).exercises.get(), status="attempted", attempts=1, failed_attempts=1
    )
    assert set(classview.class_members(course)) == {on_roster, worker}
    assert site_student not in classview.class_members(course)


@pytest.mark.django_db
def test_an_lms_instructor_sees_only_the_roster_of_their_lms_course() -> None:
    course = _course()
    mine, theirs = _lms(course, "mine"), _lms(course, "theirs")
    teacher = _lms_user(mine, "t-1", role="instructor", instructor_from_lti=True)
    course.instructors.add(teacher)
    pupil = _lms_user(mine, "s-mine")
    other_pupil = _lms_user(theirs, "s-theirs")
    site_worker = StudentFactory.create()
    _session(site_worker, _lab(course))
    assert set(classview.class_members(course, viewer=teacher)) == {pupil}
    assert classview.class_view(course=course, now=timezone.now(), viewer=teacher).students == 1
    # and a site instructor of the course sees both rosters and who worked in it
    assert set(classview.class_members(course, viewer=InstructorFactory.create())) == {
        pupil,
        other_pupil,
        site_worker,
    }


@pytest.mark.django_db
def test_the_class_view_lists_the_instructors_sends_and_how_many_read_them() -> None:
    course = _course()
    teacher, colleague = _teacher(course), _teacher(course)
    ada, bob = StudentFactory.create(username="ada"), StudentFactory.create(username="bob")
    client = _client(teacher)
    _send(client, course, "all", "Break <now>")
    _send(client, course, ada.pk, "Look at the events")
    _send(_client(colleague), course, bob.pk, "Not mine to see")
    messages.dismiss_class_message(user=bob, message_id=ClassMessage.objects.get(recipient=bob, broadcast=True).pk)

    sent = messages.sent_messages(course=course, sender=teacher)
    assert [(m.text, m.broadcast, m.recipients, m.read, m.to) for m in sent] == [
        ("Look at the events", False, 1, 0, "ada"),
        ("Break <now>", True, 2, 1, sent[1].to),
    ]
    data = client.get(reverse("courses:instructor-live-json", kwargs={"course": course.slug})).json()
    assert "to the class, read by 1 of 2:" in data["html"] and "Break &lt;now&gt;" in data["html"]
    assert "to ada, not read yet:" in data["html"] and "Not mine to see" not in data["html"]
