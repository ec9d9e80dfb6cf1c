"""The live class view in Chromium (issue #18): 20 students in different states, the
charts drawn, the stuck list right, and the page updating by itself when a student's
check passes.

The pass is recorded by the grader's own claim-and-finish (``grader.services``), as a
worker does after a check; the sandbox and the check run are what tests/grader covers,
so no runtimed is needed here. daphne serves the page; the test database is shared.
"""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from courses.charts import COLOURS, PASSED, STUCK, TRYING
from grader import services as grader_services
from grader.models import ExerciseProgress, Submission
from labs.models import LabSession
from tests.e2e.test_lab_terminal import login
from tests.factories import CourseFactory, InstructorFactory, LabFactory, ModuleFactory, StepFactory, StudentFactory
from tests.grader.helpers import ExerciseFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def pixels_of_colour(page: Any, png: bytes, colour: str) -> int:
    """How many pixels of a screenshot have this colour, decoded by Chromium itself on a blank
    page of the same browser (the platform's pages forbid data: images by CSP)."""
    rgb = [int(colour[i : i + 2], 16) for i in (1, 3, 5)]
    blank = page.context.new_page()
    try:
        count: int = blank.evaluate(
            """async ([b64, rgb]) => {
                const img = new Image();
                img.src = "data:image/png;base64," + b64;
                await img.decode();
                const canvas = document.createElement("canvas");
                canvas.width = img.width; canvas.height = img.height;
                const ctx = canvas.getContext("2d");
                ctx.drawImage(img, 0, 0);
                const d = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
                let n = 0;
                for (let i = 0; i < d.length; i += 4) {
                    const near = (k) => Math.abs(d[i + k] - rgb[k]) < 6;
                    if (near(0) && near(1) && near(2)) n++;
                }
                return n;
            }""",
            [base64.b64encode(png).decode(), rgb],
        )
    finally:
        blank.close()
    return count


def test_class_view_shows_twenty_students_and_updates_when_a_check_passes(
    asgi_server: str, page: Any, tmp_path: Any
) -> None:
    course = CourseFactory.create()
    module = ModuleFactory.create(course=course)
    lab = LabFactory.create(module=module, title="Pods")
    first = ExerciseFactory.create(step=StepFactory.create(lab=lab, order=1), title="Make a pod")
    ExerciseFactory.create(step=StepFactory.create(lab=lab, order=2), title="Scale it")
    teacher = InstructorFactory.create()
    course.instructors.add(teacher)
    now = timezone.now()
    students = [StudentFactory.create(username=f"pupil{i:02d}") for i in range(20)]
    for i, student in enumerate(students):
        if i < 6:  # passed the first exercise
            ExerciseProgress.objects.create(user=student, exercise=first, status="passed", attempts=1, passed_at=now)
        elif i < 10:  # stuck: four failed checks
            ExerciseProgress.objects.create(
                user=student, exercise=first, status="attempted", attempts=4, failed_attempts=4
            )
        elif i < 14:  # trying: one failed check
            ExerciseProgress.objects.create(
                user=student, exercise=first, status="attempted", attempts=1, failed_attempts=1
            )
    # pupil19 is in the lab now, just started: trying the first exercise
    session = LabSession.objects.create(
        user=students[19], lab=lab, status=LabSession.Status.READY, ready_at=now, expires_at=now + timedelta(hours=1)
    )

    login(page, asgi_server, teacher.username)
    page.goto(f"{asgi_server}/instructor/courses/{course.slug}/live/")
    stuck = page.locator('[data-testid="stuck-list"] li')
    assert sorted(stuck.evaluate_all("els => els.map(e => e.dataset.student)")) == [
        f"pupil{i:02d}" for i in range(6, 10)
    ]
    passed_bar = page.locator('[data-testid="pass-chart"] rect[data-state="passed"]').first
    assert passed_bar.get_attribute("data-count") == "6"
    box = passed_bar.bounding_box()
    assert box is not None and box["width"] > 0 and box["height"] > 0  # drawn, not just in the DOM
    assert page.locator('[data-testid="time-chart"] rect').count() == 1
    assert page.locator('[data-testid="in-lab"] tr[data-student="pupil19"]').get_attribute("data-state") == "trying"
    page.screenshot(path=str(tmp_path / "class-view.png"), full_page=True)
    # The screenshot itself shows the charts: each state's bar in its colour, in proportion
    # (6 passed, more than the 4 stuck and the 4-5 trying, of 20). The time chart's one bar is
    # a student who just started: too short to count pixels of, checked in the DOM above.
    chart = page.locator('[data-testid="pass-chart"]').screenshot()
    passed_px = pixels_of_colour(page, chart, COLOURS[PASSED])
    stuck_px = pixels_of_colour(page, chart, COLOURS[STUCK])
    trying_px = pixels_of_colour(page, chart, COLOURS[TRYING])
    assert passed_px > 0 and stuck_px > 0 and trying_px > 0
    assert passed_px > trying_px and passed_px > stuck_px

    # pupil19's check passes: the page shows it on its next refresh, without a reload.
    page.evaluate("window.sameDocument = true")
    submission = Submission.objects.create(user=students[19], exercise=first, lab_session=session, max_score=1)
    claim = grader_services._claim(submission.pk)
    assert claim is not None
    grader_services._finish(claim, status="passed", results={"score": 1, "max_score": 1, "tests": []})
    page.wait_for_selector(
        '[data-testid="pass-chart"] rect[data-state="passed"][data-count="7"]', state="attached", timeout=30_000
    )
    row = page.locator('[data-testid="in-lab"] tr[data-student="pupil19"]')
    assert "1/2" in row.inner_text()
    assert page.evaluate("window.sameDocument === true")  # updated in place, not reloaded
