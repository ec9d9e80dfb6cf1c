"""The live class view (issue #18): who is passed, trying or stuck, the charts, the
HTML page and the JSON its refresh polls (with ETag), and a check that passes
showing up in the next refresh."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from courses import classview
from grader.models import ExerciseProgress, Submission
from labs.models import LabSession
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

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=timezone.get_fixed_timezone(0))


def _course() -> dict[str, Any]:
    course = CourseFactory.create()
    module = ModuleFactory.create(course=course)
    lab1, lab2 = LabFactory.create(module=module, order=1), LabFactory.create(module=module, order=2)
    s1, s2 = StepFactory.create(lab=lab1, order=1), StepFactory.create(lab=lab1, order=2)
    e1 = ExerciseFactory.create(step=s1, title="Make a pod")
    e2 = ExerciseFactory.create(step=s2, title="Scale it")
    e3 = ExerciseFactory.create(step=StepFactory.create(lab=lab2, order=1), title="Expose it")
    return {"course": course, "labs": (lab1, lab2), "exercises": (e1, e2, e3)}


def _session(user: Any, lab: Any, *, started: datetime, ended: datetime | None = None) -> LabSession:
    return LabSession.objects.create(
        user=user,
        lab=lab,
        status=LabSession.Status.STOPPED if ended else LabSession.Status.READY,
        created_at=started,
        ready_at=started,
        ended_at=ended,
        expires_at=started + timedelta(hours=2),
    )


def _progress(user: Any, exercise: Any, *, passed_at: datetime | None = None, failed: int = 0) -> ExerciseProgress:
    return ExerciseProgress.objects.create(
        user=user,
        exercise=exercise,
        status="passed" if passed_at else ("attempted" if failed else "not_started"),
        attempts=failed + (1 if passed_at else 0),
        failed_attempts=failed,
        passed_at=passed_at,
    )


def _states(view: classview.ClassView) -> dict[str, dict[str, int]]:
    return {s.exercise.title: s.counts for s in view.exercises}


@pytest.fixture(autouse=True)
def stuck_rules(settings: Any) -> None:
    settings.CLASS_STUCK_FAILED_CHECKS = 3
    settings.CLASS_STUCK_IDLE = 600


def test_passed_trying_and_stuck_after_failed_checks() -> None:
    c = _course()
    e1 = c["exercises"][0]
    done, trying, failing, absent = (StudentFactory.create() for _ in range(4))
    _progress(done, e1, passed_at=NOW - timedelta(hours=1))
    _progress(trying, e1, failed=2)
    _progress(failing, e1, failed=3)
    view = classview.class_view(course=c["course"], now=NOW)
    assert view.students == 4
    assert _states(view)["Make a pod"] == {"passed": 1, "trying": 1, "stuck": 1, "not_started": 1}
    assert _states(view)["Scale it"]["not_started"] == 4
    assert [(s.student, s.exercise, s.reason, s.failed_checks) for s in view.stuck] == [(failing, e1, "failed", 3)]
    stats = view.exercises[0]
    assert (stats.attempts, stats.pass_rate) == (1 + 2 + 3, 25)
    assert absent not in [s.student for s in view.stuck]


def test_a_pass_ends_being_stuck() -> None:
    c = _course()
    e1 = c["exercises"][0]
    student = StudentFactory.create()
    row = _progress(student, e1, failed=5)
    assert [s.student for s in classview.class_view(course=c["course"], now=NOW).stuck] == [student]
    row.status, row.passed_at = "passed", NOW
    row.save()
    view = classview.class_view(course=c["course"], now=NOW)
    assert view.stuck == [] and _states(view)["Make a pod"]["passed"] == 1


def test_no_progress_for_the_idle_limit_in_the_lab_is_stuck_on_the_next_exercise() -> None:
    c = _course()
    lab1 = c["labs"][0]
    e1, e2, _ = c["exercises"]
    student = StudentFactory.create()
    _session(student, lab1, started=NOW - timedelta(minutes=30))
    _progress(student, e1, passed_at=NOW - timedelta(minutes=9, seconds=59))
    view = classview.class_view(course=c["course"], now=NOW)
    assert view.stuck == []
    assert [(i.student, i.current, i.state) for i in view.in_lab] == [(student, e2, "trying")]
    assert _states(view)["Scale it"]["trying"] == 1
    later = classview.class_view(course=c["course"], now=NOW + timedelta(seconds=1))
    assert [(s.student, s.exercise, s.reason) for s in later.stuck] == [(student, e2, "idle")]
    assert later.stuck[0].since == NOW - timedelta(minutes=9, seconds=59)
    assert later.in_lab[0].state == "stuck"


def test_the_idle_limit_counts_from_the_lab_start_without_a_pass() -> None:
    c = _course()
    student = StudentFactory.create()
    _session(student, c["labs"][0], started=NOW - timedelta(minutes=10))
    view = classview.class_view(course=c["course"], now=NOW)
    assert [(s.exercise, s.reason) for s in view.stuck] == [(c["exercises"][0], "idle")]


def test_the_idle_rule_only_counts_students_in_the_lab_now() -> None:
    """Yesterday's student who left is not stuck in today's class for not passing."""
    c = _course()
    student = StudentFactory.create()
    _session(
        student, c["labs"][0], started=NOW - timedelta(days=1), ended=NOW - timedelta(days=1) + timedelta(minutes=40)
    )
    _progress(student, c["exercises"][0], failed=1)
    view = classview.class_view(course=c["course"], now=NOW)
    assert view.stuck == [] and view.in_lab == []
    assert _states(view)["Make a pod"]["trying"] == 1


def test_settings_change_the_stuck_rules(settings: Any) -> None:
    c = _course()
    student = StudentFactory.create()
    _progress(student, c["exercises"][0], failed=3)
    settings.CLASS_STUCK_FAILED_CHECKS = 4
    assert classview.class_view(course=c["course"], now=NOW).stuck == []
    _session(student, c["labs"][0], started=NOW - timedelta(minutes=20))
    settings.CLASS_STUCK_IDLE = 1800
    assert classview.class_view(course=c["course"], now=NOW).stuck == []
    settings.CLASS_STUCK_IDLE = 1200
    assert [s.reason for s in classview.class_view(course=c["course"], now=NOW).stuck] == ["idle"]


def test_time_spent_per_lab_is_the_median_over_students() -> None:
    c = _course()
    lab1, lab2 = c["labs"]
    a, b, d = (StudentFactory.create() for _ in range(3))
    _session(a, lab1, started=NOW - timedelta(hours=5), ended=NOW - timedelta(hours=5) + timedelta(minutes=10))
    _session(a, lab1, started=NOW - timedelta(hours=3), ended=NOW - timedelta(hours=3) + timedelta(minutes=20))
    _session(b, lab1, started=NOW - timedelta(minutes=12))  # live: counted up to now
    _session(d, lab1, started=NOW - timedelta(hours=1), ended=NOW - timedelta(minutes=10))
    times = {t.lab: t for t in classview.class_view(course=c["course"], now=NOW).lab_times}
    assert (times[lab1].students, times[lab1].median_minutes) == (3, 30.0)  # 30, 12, 50
    assert (times[lab2].students, times[lab2].median_minutes) == (0, 0.0)


def test_another_courses_students_and_sessions_stay_out() -> None:
    c, other = _course(), _course()
    stranger = StudentFactory.create(roles=[])
    _session(stranger, other["labs"][0], started=NOW - timedelta(minutes=5))
    _progress(stranger, other["exercises"][0], failed=9)
    view = classview.class_view(course=c["course"], now=NOW)
    assert view.students == 0 and view.stuck == [] and view.in_lab == []


# --- the page and its JSON ------------------------------------------------------------------------


def _instructor_of(course: Any) -> Client:
    instructor = InstructorFactory.create()
    course.instructors.add(instructor)
    client = Client()
    client.login(username=instructor.username, password=PASSWORD)
    return client


def test_page_shows_charts_stuck_list_and_observe_link() -> None:
    c = _course()
    student = StudentFactory.create(first_name="Ada", last_name="<b>Lovelace</b>")
    session = _session(student, c["labs"][0], started=timezone.now() - timedelta(minutes=1))
    _progress(student, c["exercises"][0], failed=4)
    client = _instructor_of(c["course"])
    response = client.get(reverse("courses:instructor-live", kwargs={"course": c["course"].slug}))
    assert response.status_code == 200
    body = response.content.decode()
    assert 'data-testid="pass-chart"' in body and 'data-testid="time-chart"' in body
    assert 'role="img"' in body and "<title" in body
    assert 'data-state="stuck" data-count="1"' in body
    assert reverse("labs:session", kwargs={"session_id": session.pk}) in body
    assert "&lt;b&gt;Lovelace&lt;/b&gt;" in body and "<b>Lovelace</b>" not in body
    assert "4 failed checks" in body


def test_json_answers_304_until_something_changes() -> None:
    c = _course()
    student = StudentFactory.create()
    client = _instructor_of(c["course"])
    url = reverse("courses:instructor-live-json", kwargs={"course": c["course"].slug})
    first = client.get(url)
    assert first.status_code == 200 and first["Content-Type"] == "application/json"
    data = json.loads(first.content)
    assert data["students"] == 1 and data["stuck"] == [] and "pass-chart" in data["html"]
    assert client.get(url, HTTP_IF_NONE_MATCH=first["ETag"]).status_code == 304
    _progress(student, c["exercises"][0], failed=3)
    changed = client.get(url, HTTP_IF_NONE_MATCH=first["ETag"])
    assert changed.status_code == 200 and changed["ETag"] != first["ETag"]
    assert [s["student"]["username"] for s in json.loads(changed.content)["stuck"]] == [student.username]


def test_a_check_that_passes_reaches_the_next_refresh() -> None:
    """Through the grader's own finish (claim, then verdict), as a worker records it."""
    from grader import services as grader_services

    c = _course()
    student = StudentFactory.create()
    session = _session(student, c["labs"][0], started=timezone.now())
    client = _instructor_of(c["course"])
    url = reverse("courses:instructor-live-json", kwargs={"course": c["course"].slug})
    before = client.get(url)
    assert json.loads(before.content)["exercises"][0]["passed"] == 0
    submission = Submission.objects.create(user=student, exercise=c["exercises"][0], lab_session=session, max_score=1)
    claim = grader_services._claim(submission.pk)
    assert claim is not None
    grader_services._finish(claim, status="passed", results={"score": 1, "max_score": 1, "tests": []})
    after = client.get(url, HTTP_IF_NONE_MATCH=before["ETag"])
    assert after.status_code == 200
    data = json.loads(after.content)
    assert data["exercises"][0]["passed"] == 1 and data["exercises"][0]["pass_rate"] == 100
    assert data["in_lab"][0]["current"] == c["exercises"][1].pk
