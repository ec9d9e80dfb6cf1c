"""The exercise card partial: what the owner and an observer see."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.template.loader import render_to_string
from django.utils import timezone

from grader.models import ExerciseProgress
from labs.models import LabSession
from tests.factories import StudentFactory
from tests.grader.helpers import ExerciseFactory

pytestmark = pytest.mark.django_db


def test_card_offers_a_hint_after_a_failure_and_hides_buttons_from_observers() -> None:
    student = StudentFactory.create()
    exercise = ExerciseFactory.create(
        hints=["First <b>hint</b>", "Second"], solution="Do it.", solution_after_attempts=2
    )
    session = LabSession.objects.create(
        user=student, lab=exercise.lab, status="ready", sandbox_id="sb", expires_at=timezone.now() + timedelta(hours=1)
    )
    fresh = render_to_string("grader/_exercise.html", {"exercise": exercise, "progress": None, "session": session})
    assert f"/labs/{session.pk}/exercises/{exercise.pk}/check/" in fresh
    assert "hidden" in fresh.split('data-role="hint"')[1].split(">")[0]
    assert "Give up and show the solution" in fresh
    progress = ExerciseProgress.objects.create(
        user=student, exercise=exercise, status="attempted", attempts=2, failed_attempts=2, hints_revealed=1
    )
    failed = render_to_string("grader/_exercise.html", {"exercise": exercise, "progress": progress, "session": session})
    assert "hidden" not in failed.split('data-role="hint"')[1].split(">")[0]
    assert "First &lt;b&gt;hint&lt;/b&gt;" in failed and "Second" not in failed
    assert "Show the solution" in failed and "Give up" not in failed
    observed = render_to_string(
        "grader/_exercise.html", {"exercise": exercise, "progress": progress, "session": session, "mode": "ro"}
    )
    assert 'data-role="check"' not in observed and "observing" in observed


def test_exercises_with_progress_gives_the_owners_rendered_hints() -> None:
    from grader.selectors import exercises_with_progress

    student = StudentFactory.create()
    exercise = ExerciseFactory.create(hints=["Use `unshare`.", "Second"])
    ExerciseProgress.objects.create(user=student, exercise=exercise, failed_attempts=1, hints_revealed=1)
    (item,) = exercises_with_progress(user=student, step=exercise.step)
    assert item["exercise"] == exercise and item["progress"].hints_revealed == 1
    assert len(item["hints_html"]) == 1 and "<code>unshare</code>" in item["hints_html"][0]
    (other,) = exercises_with_progress(user=StudentFactory.create(), step=exercise.step)
    assert other["progress"] is None and other["hints_html"] == []
