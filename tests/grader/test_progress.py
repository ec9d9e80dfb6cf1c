"""Progress roll-up, My progress, and the instructor dashboard with its CSV."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from courses.progress import course_progress, csv_safe, lab_progress
from grader.models import ExerciseProgress
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


def _course() -> dict[str, Any]:
    course = CourseFactory.create()
    m1, m2 = ModuleFactory.create(course=course, order=1), ModuleFactory.create(course=course, order=2)
    lab1, lab2 = LabFactory.create(module=m1, order=1), LabFactory.create(module=m2, order=1)
    s1, s2 = StepFactory.create(lab=lab1, order=1), StepFactory.create(lab=lab1, order=2)
    s3 = StepFactory.create(lab=lab2, order=1)
    e = [ExerciseFactory.create(step=s1), ExerciseFactory.create(step=s2), ExerciseFactory.create(step=s3)]
    return {"course": course, "modules": (m1, m2), "labs": (lab1, lab2), "exercises": e}


def _passed(user: Any, exercise: Any, **kwargs: Any) -> ExerciseProgress:
    defaults = {"status": "passed", "attempts": 1, "passed_at": timezone.now()}
    return ExerciseProgress.objects.create(user=user, exercise=exercise, **{**defaults, **kwargs})


def test_progress_rolls_up_from_exercises_to_the_course() -> None:
    c = _course()
    student = StudentFactory.create()
    fresh = course_progress(student, c["course"])
    assert (fresh.passed, fresh.total, fresh.percent) == (0, 3, 0)
    _passed(student, c["exercises"][0])
    ExerciseProgress.objects.create(user=student, exercise=c["exercises"][1], status="attempted", attempts=2)
    half = course_progress(student, c["course"])
    assert (half.passed, half.percent) == (1, 33)
    lab1 = lab_progress(student, c["labs"][0])
    assert not lab1.complete and lab1.steps[c["exercises"][0].step_id].complete
    assert half.next_item == c["labs"][0]  # continue where you left off
    ExerciseProgress.objects.filter(user=student, exercise=c["exercises"][1]).update(status="passed")
    later = course_progress(student, c["course"])
    assert later.modules[0].complete and not later.complete
    assert later.next_item == c["labs"][1]
    _passed(student, c["exercises"][2])
    done = course_progress(student, c["course"])
    assert done.complete and done.percent == 100 and done.next_item is None
    # Another student's progress is theirs alone.
    assert course_progress(StudentFactory.create(), c["course"]).passed == 0


def test_my_progress_page_shows_the_course_bar() -> None:
    c = _course()
    student = StudentFactory.create()
    _passed(student, c["exercises"][0])
    client = Client()
    client.login(username=student.username, password=PASSWORD)
    page = client.get(reverse("courses:progress"))
    assert page.status_code == 200
    assert b'aria-valuenow="33"' in page.content and b"Continue where you left off" in page.content


def test_instructor_dashboard_matrix_filters_and_csv() -> None:
    c = _course()
    alice = StudentFactory.create(username="alice", email="alice@example.com")
    bob = StudentFactory.create(username="bob", email="=cmd|' /C calc'!A0")
    _passed(alice, c["exercises"][0])
    ExerciseProgress.objects.create(user=bob, exercise=c["exercises"][0], status="attempted", attempts=4)
    instructor = InstructorFactory.create()
    client = Client()
    client.login(username=instructor.username, password=PASSWORD)
    url = reverse("courses:instructor")
    page = client.get(url, {"course": c["course"].slug})
    assert page.status_code == 200
    matrix = page.context["matrix"]
    assert [len(matrix.exercises), [r.student.username for r in matrix.rows]] == [3, ["alice", "bob"]]
    stuck = client.get(url, {"course": c["course"].slug, "status": "attempted"}).context["matrix"]
    assert [r.student.username for r in stuck.rows] == ["bob"]
    found = client.get(url, {"course": c["course"].slug, "q": "ALI"}).context["matrix"]
    assert [r.student.username for r in found.rows] == ["alice"]
    module = client.get(url, {"course": c["course"].slug, "module": c["modules"][1].pk}).context["matrix"]
    assert len(module.exercises) == 1
    exported = client.get(reverse("courses:instructor-csv"), {"course": c["course"].slug})
    assert exported["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.content.decode())))
    assert len(rows) == 6
    bob_row = next(r for r in rows if r["student"] == "bob" and r["status"] == "attempted")
    assert bob_row["attempts"] == "4" and bob_row["email"].startswith("'=")
    assert csv_safe("+1") == "'+1" and csv_safe("plain") == "plain"


def test_students_and_outsiders_cannot_see_the_dashboard() -> None:
    c = _course()
    student = StudentFactory.create()
    client = Client()
    client.login(username=student.username, password=PASSWORD)
    assert client.get(reverse("courses:instructor")).status_code == 403
    assert client.get(reverse("courses:instructor-csv")).status_code == 403
    assert client.get(reverse("courses:instructor-student", kwargs={"user_id": student.pk})).status_code == 403
    # An instructor of another course (this one lists its instructors) is refused the course.
    c["course"].instructors.add(InstructorFactory.create())
    other = InstructorFactory.create()
    client.login(username=other.username, password=PASSWORD)
    assert client.get(reverse("courses:instructor"), {"course": c["course"].slug}).status_code == 404
