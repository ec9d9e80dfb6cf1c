"""Shared pieces of the grader tests: exercises, ready sessions on the real
runtimed, and waiting for a worker to finish a submission."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from django.utils import timezone
from factory.declarations import LazyAttribute, Sequence, SubFactory
from factory.django import DjangoModelFactory

from courses.models import Exercise
from grader.models import Submission
from labs import sandboxes
from labs.models import LabSession
from tests.factories import StepFactory


class ExerciseFactory(DjangoModelFactory[Exercise]):
    class Meta:
        model = Exercise

    step = SubFactory(StepFactory)
    lab = LazyAttribute(lambda exercise: exercise.step.lab)
    slug = Sequence(lambda n: f"exercise-{n}")
    title = Sequence(lambda n: f"Exercise {n}")
    checks = LazyAttribute(lambda _: [{"type": "run", "name": "always", "command": "true"}])


def ready_session(owner: Any, lab: Any) -> LabSession:
    """A ready session with a real sandbox, made directly (no provisioning task,
    so a running worker cannot race the test for it)."""
    now = timezone.now()
    session = LabSession.objects.create(
        user=owner, lab=lab, status=LabSession.Status.STARTING, expires_at=now + timedelta(hours=1)
    )
    backend = sandboxes.backend_for("namespace")
    sandbox_id = backend.create(sandboxes.spec_for(lab, session=session))
    session.sandbox_id = sandbox_id
    session.status = LabSession.Status.READY
    session.ready_at = now
    # the sandbox's credentials, as provisioning mints them (labs.services)
    session.runtime_token = backend.token(sandbox_id, "web", 7200)
    session.grader_token = backend.token(sandbox_id, "grader", 7200)
    session.save(update_fields=["sandbox_id", "status", "ready_at", "runtime_token", "grader_token"])
    return session


def release(session: LabSession) -> None:
    sandboxes.backend_for("namespace").remove(session.sandbox_id)


def wait_finished(submission_id: int, timeout: float = 60) -> Submission:
    deadline = time.monotonic() + timeout
    while True:
        submission = Submission.objects.get(pk=submission_id)
        if submission.is_finished:
            return submission
        if time.monotonic() > deadline:
            raise AssertionError(f"submission {submission_id} still {submission.status} after {timeout} s")
        time.sleep(0.05)


def wait_status(submission_id: int, status: str, timeout: float = 60) -> Submission:
    deadline = time.monotonic() + timeout
    while True:
        submission = Submission.objects.get(pk=submission_id)
        if submission.status == status:
            return submission
        if time.monotonic() > deadline:
            raise AssertionError(f"submission {submission_id} is {submission.status}, never {status}")
        time.sleep(0.05)
