"""Submissions and the progress they add up to.

A ``Submission`` is one press of **Check**: queued by the web process, claimed
and graded by a Celery worker, finished as passed, failed or error. Its
``results`` document is shaped like Gradescope's ``results.json``::

    {"score": 1, "max_score": 2, "output": "...",
     "tests": [{"name", "status", "output", "hint", "duration_ms"}, ...]}

where a test's status is ``passed``, ``failed``, ``timeout`` or ``error``.

Exactly-once grading (see ``grader.services.grade_submission``): a worker
claims a submission by a conditional UPDATE that sets a fresh
``claim_token`` and a ``lease_until``; only the holder of the current token
can finish it, and finishing is the single place that counts the attempt in
``ExerciseProgress``. A worker that dies leaves a ``running`` row whose lease
runs out; the redelivered (or swept) task then claims it again.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class SubmissionQuerySet(models.QuerySet["Submission"]):
    def pending(self) -> SubmissionQuerySet:
        return self.filter(status__in=Submission.PENDING)

    def finished(self) -> SubmissionQuerySet:
        return self.filter(status__in=Submission.FINISHED)

    def graded(self) -> SubmissionQuerySet:
        """Finished with a verdict about the student's work (not an infrastructure error)."""
        return self.filter(status__in=(Submission.Status.PASSED, Submission.Status.FAILED))

    def for_user(self, user: Any) -> SubmissionQuerySet:
        return self.filter(user=user)

    def stale(self, now: datetime, *, queued_for: float) -> SubmissionQuerySet:
        """Work that a worker should have picked up or finished by ``now``:
        running with an expired lease, or queued for longer than ``queued_for`` seconds."""
        return self.filter(
            Q(status=Submission.Status.RUNNING, lease_until__lt=now)
            | Q(status=Submission.Status.QUEUED, created_at__lt=now - timedelta(seconds=queued_for))
        )


class Submission(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Checking"
        PASSED = "passed", "Passed"
        FAILED = "failed", "Failed"
        ERROR = "error", "Error"

    PENDING = (Status.QUEUED, Status.RUNNING)
    FINISHED = (Status.PASSED, Status.FAILED, Status.ERROR)

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="submissions")
    exercise = models.ForeignKey("courses.Exercise", on_delete=models.CASCADE, related_name="submissions")
    lab_session = models.ForeignKey(
        "labs.LabSession", on_delete=models.SET_NULL, null=True, blank=True, related_name="submissions"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    # The student's n-th press of Check on this exercise.
    attempt = models.PositiveIntegerField(default=1)
    results = models.JSONField(default=dict, blank=True)
    score = models.FloatField(default=0)
    max_score = models.FloatField(default=0)
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    # Claim bookkeeping (exactly-once grading).
    claim_token = models.CharField(max_length=64, blank=True, default="")
    grading_attempts = models.PositiveIntegerField(default=0)
    lease_until = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True, default="", help_text="host:pid of the claim holder")

    objects = SubmissionQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [
            models.Index(fields=["user", "exercise", "-created_at"]),
            models.Index(fields=["status", "lease_until"]),
        ]

    def __str__(self) -> str:
        return f"{self.user} · {self.exercise_id} #{self.attempt} · {self.status}"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED


class ExerciseProgressQuerySet(models.QuerySet["ExerciseProgress"]):
    def passed(self) -> ExerciseProgressQuerySet:
        return self.filter(status=ExerciseProgress.Status.PASSED)

    def for_user(self, user: Any) -> ExerciseProgressQuerySet:
        return self.filter(user=user)


class ExerciseProgress(models.Model):
    """Where one student stands on one exercise."""

    class Status(models.TextChoices):
        NOT_STARTED = "not_started", "Not started"
        ATTEMPTED = "attempted", "Attempted"
        PASSED = "passed", "Passed"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="exercise_progress")
    exercise = models.ForeignKey("courses.Exercise", on_delete=models.CASCADE, related_name="progress")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.NOT_STARTED)
    # Graded submissions (passed or failed; infrastructure errors are not the student's attempts).
    attempts = models.PositiveIntegerField(default=0)
    failed_attempts = models.PositiveIntegerField(default=0)
    passed_at = models.DateTimeField(null=True, blank=True)
    hints_revealed = models.PositiveIntegerField(default=0)
    solution_shown = models.BooleanField(default=False)
    solution_shown_at = models.DateTimeField(null=True, blank=True)
    last_submission = models.ForeignKey(Submission, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    last_activity_at = models.DateTimeField(default=timezone.now)

    objects = ExerciseProgressQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "exercise"], name="one_progress_per_student_exercise")]

    def __str__(self) -> str:
        return f"{self.user} · {self.exercise_id} · {self.status}"

    @property
    def passed(self) -> bool:
        return self.status == self.Status.PASSED

    def solution_available(self, exercise: Any) -> bool:
        """Offered without asking once the student failed often enough."""
        return bool(exercise.solution) and (
            self.solution_shown or self.failed_attempts >= exercise.solution_after_attempts
        )

    def hint_available(self, exercise: Any) -> bool:
        """One more hint after each failed attempt, in order."""
        return self.hints_revealed < len(exercise.hints or []) and self.hints_revealed < self.failed_attempts
