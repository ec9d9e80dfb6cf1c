"""Claiming and finishing without a worker: the exactly-once rules themselves."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from grader import services
from grader.models import ExerciseProgress, Submission
from labs.models import LabSession
from labs.selectors import LabSessionNotFound
from tests.factories import StepFactory, StudentFactory
from tests.grader.helpers import ExerciseFactory

pytestmark = pytest.mark.django_db


def _session(user: Any, lab: Any, **kwargs: Any) -> LabSession:
    now = timezone.now()
    defaults = {"status": "ready", "sandbox_id": "sb-none", "expires_at": now + timedelta(hours=1)}
    return LabSession.objects.create(user=user, lab=lab, **{**defaults, **kwargs})


def test_submission_needs_a_ready_session_of_the_exercises_lab(settings: Any) -> None:
    settings.GRADER_QUEUE = "kubelab-test-nobody"
    student = StudentFactory.create()
    exercise = ExerciseFactory.create()
    with pytest.raises(services.SubmissionRefused, match="not running"):
        services.submission_create(
            user=student, exercise=exercise, session=_session(student, exercise.lab, status="starting")
        )
    other_lab_session = _session(student, StepFactory.create().lab)
    with pytest.raises(services.SubmissionRefused, match="not part of this lab"):
        services.submission_create(user=student, exercise=exercise, session=other_lab_session)
    with pytest.raises(LabSessionNotFound):
        services.submission_create(
            user=student, exercise=exercise, session=_session(StudentFactory.create(), exercise.lab)
        )


def test_a_finished_submission_is_never_graded_again(settings: Any, django_capture_on_commit_callbacks: Any) -> None:
    settings.GRADER_QUEUE = "kubelab-test-nobody"
    student = StudentFactory.create()
    exercise = ExerciseFactory.create()
    session = _session(student, exercise.lab, status="ready")
    with django_capture_on_commit_callbacks(execute=False):
        submission = services.submission_create(user=student, exercise=exercise, session=session)
    # The sandbox row points at nothing runtimed knows: the session "ended" for the grader.
    LabSession.objects.filter(pk=session.pk).update(status="stopped")
    with django_capture_on_commit_callbacks(execute=False):
        first = services.grade_submission(submission.pk)
        again = services.grade_submission(submission.pk)
    assert first is not None and first.status == "error" and again is None
    assert Submission.objects.get(pk=submission.pk).grading_attempts == 1


def test_only_the_current_claim_may_finish(settings: Any, django_capture_on_commit_callbacks: Any) -> None:
    settings.GRADER_QUEUE = "kubelab-test-nobody"
    student = StudentFactory.create()
    exercise = ExerciseFactory.create()
    session = _session(student, exercise.lab)
    with django_capture_on_commit_callbacks(execute=False):
        submission = services.submission_create(user=student, exercise=exercise, session=session)
    stale = services._claim(submission.pk)
    assert stale is not None
    # While the lease is live, nobody else may claim: the task retries later.
    with pytest.raises(services.ClaimBusy):
        services._claim(submission.pk)
    # The first worker "dies": its lease runs out and a second grading claims.
    Submission.objects.filter(pk=submission.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert services.requeue_stale_submissions() == 1
    current = services._claim(submission.pk)
    assert current is not None and current.token != stale.token
    passed = {"score": 1, "max_score": 1, "passed": True, "tests": []}
    with django_capture_on_commit_callbacks(execute=False):
        # The zombie wakes up and tries to finish: refused, nothing counted.
        assert services._finish(stale, status="failed", results=passed) is None
        assert services._finish(current, status="passed", results=passed) is not None
        assert services._finish(current, status="passed", results=passed) is None
    progress = ExerciseProgress.objects.get(user=student, exercise=exercise)
    assert (progress.attempts, progress.failed_attempts, progress.status) == (1, 0, "passed")
    assert Submission.objects.get(pk=submission.pk).grading_attempts == 2
