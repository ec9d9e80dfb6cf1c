"""A student who completes a module 2 lab of the bundled course sees module
and course progress move, and the instructor dashboard shows it.

Real all the way: the course imported from content/, a lab session on the
test runtimed (lab-base), the lab's own solution.sh, and each exercise graded
by the grader's own service (in this process; the Celery round trip has its
own tests in tests/grader)."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse

from courses.content import read_course
from courses.importer import import_course
from courses.models import Lab
from courses.progress import course_progress
from grader import services as grading
from labs import services
from runtime.client import Client as RuntimeClient
from tests.factories import PASSWORD, InstructorFactory, StudentFactory
from tests.labs.helpers import provisioned

COURSE = Path(__file__).resolve().parents[2] / "content" / "intro-to-kubernetes"
pytestmark = [pytest.mark.django_db, pytest.mark.slow]


def test_completing_the_namespaces_lab_moves_progress_and_shows_on_the_dashboard(
    runtime_socket: str, django_capture_on_commit_callbacks
) -> None:
    course, _ = import_course(read_course(COURSE))
    lab = Lab.objects.get(module__slug="basics-of-docker", slug="namespaces-by-hand")
    student = StudentFactory.create()
    assert course_progress(student, course).passed == 0

    with django_capture_on_commit_callbacks(execute=False):
        session = services.lab_session_start(user=student, lab=lab)
    session = provisioned(session)
    assert session.status == "ready", session.error
    solution = (COURSE / "02-basics-of-docker" / "labs" / "01-namespaces-by-hand" / "solution.sh").read_text()
    with RuntimeClient(runtime_socket) as rt:
        assert rt.exec(session.sandbox_id, ["bash", "-c", solution], timeout=300, cwd="/root").exit_code == 0
    for exercise in lab.exercises.active():
        with django_capture_on_commit_callbacks(execute=False):
            submission = grading.submission_create(user=student, exercise=exercise, session=session)
        graded = grading.grade_submission(submission.pk)
        assert graded is not None and graded.status == "passed", graded and graded.results

    figures = course_progress(student, course)
    module = next(m for m in figures.modules if m.module is not None and m.module.slug == "basics-of-docker")
    lab_figures = next(lp for lp in module.labs if lp.lab is not None and lp.lab.pk == lab.pk)
    assert lab_figures.percent == 100
    assert 0 < module.percent < 100 and 0 < figures.percent < 100
    assert figures.passed == lab.exercises.active().count()

    student_view = Client()
    student_view.login(username=student.username, password=PASSWORD)
    page = student_view.get(reverse("courses:course", kwargs={"course": course.slug}))
    assert f'aria-valuenow="{figures.percent}"' in page.content.decode()

    teacher = Client()
    teacher.login(username=InstructorFactory.create().username, password=PASSWORD)
    dashboard = teacher.get(reverse("courses:instructor"), {"course": course.slug})
    row = next(r for r in dashboard.context["matrix"].rows if r.student == student)
    assert student.username in dashboard.content.decode()
    assert sum(1 for cell in row.cells if getattr(cell, "status", None) == "passed") == figures.passed
