"""The cast of the attack battery: one lab session and the people around it.

``world`` is a course taught by ``instructor`` (listed on the course), a lab
with an exercise that has hints and a solution, and ``owner``'s ready session
in it with one finished submission. ``classmate`` is another student with a
session of their own in the same lab; ``outsider`` is a signed-up user with no
role; ``other_instructor`` is an instructor who does not teach this course.

The sandbox id is made up: nothing here talks to runtimed. Views and
consumers decide access before they would, which is what these tests check.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from courses.models import Course, Exercise, Lab, Step
from grader.models import ExerciseProgress, Submission
from labs.models import LabSession
from tests.factories import (
    CourseFactory,
    InstructorFactory,
    LabFactory,
    ModuleFactory,
    StepFactory,
    StudentFactory,
    UserFactory,
)


@dataclass
class World:
    course: Course
    lab: Lab
    step: Step
    exercise: Exercise
    owner: User
    classmate: User
    outsider: User
    instructor: User
    other_instructor: User
    session: LabSession
    classmate_session: LabSession
    submission: Submission
    classmate_submission: Submission

    def user(self, who: str) -> User | None:
        return None if who == "anonymous" else getattr(self, who)


def _session(user: User, lab: Lab) -> LabSession:
    now = timezone.now()
    return LabSession.objects.create(
        user=user,
        lab=lab,
        status=LabSession.Status.READY,
        sandbox_id=f"sb-fake-{user.pk}",
        ready_at=now,
        expires_at=now + timedelta(hours=1),
    )


def _submission(user: User, exercise: Exercise, session: LabSession, output: str) -> Submission:
    submission = Submission.objects.create(
        user=user,
        exercise=exercise,
        lab_session=session,
        status=Submission.Status.FAILED,
        results={
            "score": 0,
            "max_score": 1,
            "output": output,
            "tests": [{"name": "always", "status": "failed", "output": output, "hint": ""}],
        },
        max_score=1,
        finished_at=timezone.now(),
    )
    ExerciseProgress.objects.create(
        user=user,
        exercise=exercise,
        status=ExerciseProgress.Status.ATTEMPTED,
        attempts=1,
        failed_attempts=1,
        last_submission=submission,
    )
    return submission


@pytest.fixture
def world(db: None) -> World:
    instructor = InstructorFactory.create(username="teacher")
    course = CourseFactory.create(slug="secure-course")
    course.instructors.add(instructor)
    module = ModuleFactory.create(course=course, slug="basics")
    lab = LabFactory.create(module=module, slug="first-lab")
    step = StepFactory.create(lab=lab, order=1)
    exercise = Exercise.objects.create(
        lab=lab,
        step=step,
        slug="make-a-pod",
        title="Make a pod",
        checks=[{"type": "run", "name": "always", "command": "true"}],
        hints=["first hint", "second hint"],
        solution="the secret solution",
        solution_after_attempts=3,
    )
    owner = StudentFactory.create(username="owner")
    classmate = StudentFactory.create(username="classmate")
    session = _session(owner, lab)
    classmate_session = _session(classmate, lab)
    return World(
        course=course,
        lab=lab,
        step=step,
        exercise=exercise,
        owner=owner,
        classmate=classmate,
        outsider=UserFactory.create(username="outsider"),
        instructor=instructor,
        other_instructor=_other_instructor(),
        session=session,
        classmate_session=classmate_session,
        submission=_submission(owner, exercise, session, "OWNER-PRIVATE-OUTPUT"),
        classmate_submission=_submission(classmate, exercise, classmate_session, "CLASSMATE-PRIVATE-OUTPUT"),
    )


def _other_instructor() -> User:
    """An instructor of another course only (listing them there keeps them
    from teaching ``secure-course``, which lists its own instructor)."""
    teacher: User = InstructorFactory.create(username="other-teacher")
    CourseFactory.create(slug="other-course").instructors.add(teacher)
    return teacher


def client_for(user: User | None, *, enforce_csrf: bool = False) -> Client:
    client = Client(enforce_csrf_checks=enforce_csrf)
    if user is not None:
        client.force_login(user)
    return client


def session_cookie(user: User | None) -> list[tuple[bytes, bytes]]:
    """The ``cookie`` header of a browser logged in as ``user`` (none for anonymous)."""
    if user is None:
        return []
    client = client_for(user)
    value = client.cookies[settings.SESSION_COOKIE_NAME].value
    return [(b"cookie", f"{settings.SESSION_COOKIE_NAME}={value}".encode())]


def ws_outcome(connected: bool, code: Any, first: dict[str, Any] | None) -> str:
    """What a WebSocket handshake came to: ``open`` (accepted and talking),
    ``denied`` (closed before accept: the origin check or a consumer's refusal
    before accept) or ``closed:<code>`` (accepted, then closed with ``code``)."""
    if not connected:
        return f"denied:{code}"
    if first is not None and first.get("type") == "websocket.close":
        return f"closed:{first.get('code')}"
    return "open"


@pytest.fixture
def fresh_channel_layer() -> Any:
    # channels_redis binds its pools to one event loop; every async test has its own.
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()
