"""A student's sandbox for one lab, and the record of who watched it.

``LabSession`` is the database's view of a sandbox that runtimed (or another
backend) runs: its lifecycle status, the terminals opened in it and the
activity that keeps it alive. At most one *open* session (live: starting or
ready; or kept: pausing, paused, resuming) exists per student and lab, enforced
by a partial unique constraint, so a paused lab is resumed, never started a
second time beside it; ended sessions stay as history. Only live sessions hold
a running sandbox (and count against LAB_MAX_LIVE_PER_STUDENT); paused ones hold
disk (``paused_bytes``, against LAB_PAUSED_QUOTA) until ``paused_until``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from labs.sealed import SealedTextField


class LabSessionQuerySet(models.QuerySet["LabSession"]):
    def live(self) -> LabSessionQuerySet:
        return self.filter(status__in=LabSession.LIVE)

    def open(self) -> LabSessionQuerySet:
        """Live or kept (paused): the one a student returns to for a lab."""
        return self.filter(status__in=LabSession.OPEN)

    def kept(self) -> LabSessionQuerySet:
        """Pausing, paused or resuming: their disk counts against LAB_PAUSED_QUOTA."""
        return self.filter(status__in=LabSession.KEPT)

    def pause_expired_at(self, moment: datetime) -> LabSessionQuerySet:
        return self.filter(status=LabSession.Status.PAUSED, paused_until__lt=moment)

    def for_user(self, user: Any) -> LabSessionQuerySet:
        return self.filter(user=user)

    def idle_since(self, moment: datetime) -> LabSessionQuerySet:
        return self.filter(status=LabSession.Status.READY, last_activity_at__lt=moment)

    def expired_at(self, moment: datetime) -> LabSessionQuerySet:
        return self.live().filter(expires_at__lt=moment)


class LabSession(models.Model):
    class Status(models.TextChoices):
        STARTING = "starting", "Starting"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"
        STOPPING = "stopping", "Stopping"
        STOPPED = "stopped", "Stopped"
        PAUSING = "pausing", "Pausing"
        PAUSED = "paused", "Paused"
        RESUMING = "resuming", "Resuming"

    class EndReason(models.TextChoices):
        NONE = "", "—"
        STOPPED = "stopped", "stopped by the student"
        RESET = "reset", "reset to a fresh sandbox"
        IDLE = "idle", "idle for too long"
        EXPIRED = "expired", "time limit reached"
        FAILED = "failed", "could not start"
        LOST = "lost", "the sandbox disappeared"
        PAUSE_EXPIRED = "pause-expired", "paused for longer than allowed"

    LIVE = (Status.STARTING, Status.READY)
    KEPT = (Status.PAUSING, Status.PAUSED, Status.RESUMING)
    OPEN = LIVE + KEPT

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="lab_sessions")
    lab = models.ForeignKey("courses.Lab", on_delete=models.CASCADE, related_name="sessions")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.STARTING)
    end_reason = models.CharField(max_length=16, choices=EndReason.choices, blank=True, default="")
    backend = models.CharField(max_length=32, default="namespace")
    sandbox_id = models.CharField(max_length=128, blank=True, default="")
    # runtimed's credential for this sandbox and the web tier's operations only (terminal,
    # preview, read: runtime.auth), minted by provisioning; never shown to the student.
    # Both tokens are sealed at rest under a key from SECRET_KEY (labs.sealed).
    runtime_token = SealedTextField(blank=True, default="", editable=False)
    # ... and the graders' (exec, kubeconfig, docker, read): the grading worker needs no admin
    # credential of runtimed's at all.
    grader_token = SealedTextField(blank=True, default="", editable=False)
    # Terminal number (as a string, JSON keys are strings) -> runtimed session id.
    terminals = models.JSONField(default=dict, blank=True)
    # Provisioning stages shown on the page: [{"stage", "message", "at"}].
    progress = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True, default="")
    provision_attempts = models.PositiveIntegerField(default=0)
    # Held by the worker that builds the sandbox; a crashed worker's lease runs out.
    provision_lease_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    ready_at = models.DateTimeField(null=True, blank=True)
    last_activity_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    # Paused (resumable labs): since when, until when it is kept (LAB_PAUSED_RETENTION), the
    # disk it keeps on the host (against LAB_PAUSED_QUOTA), and terminal number -> the
    # working directory its shell had, for the shells the resume opens.
    paused_at = models.DateTimeField(null=True, blank=True)
    paused_until = models.DateTimeField(null=True, blank=True)
    paused_bytes = models.PositiveBigIntegerField(default=0)
    resume_cwds = models.JSONField(default=dict, blank=True)

    objects = LabSessionQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "lab"],
                condition=Q(status__in=["starting", "ready", "pausing", "paused", "resuming"]),
                name="one_open_session_per_student_and_lab",
            )
        ]
        indexes = [models.Index(fields=["status", "last_activity_at"])]

    def __str__(self) -> str:
        return f"{self.user} · {self.lab} · {self.status}"

    @property
    def is_live(self) -> bool:
        return self.status in self.LIVE

    @property
    def is_kept(self) -> bool:
        return self.status in self.KEPT

    @property
    def group_name(self) -> str:
        """Channel-layer group of everything pushed about this session."""
        return f"lab.{self.pk}"


class TerminalObservation(models.Model):
    """An instructor watching a student's terminal (read-only), recorded."""

    session = models.ForeignKey(LabSession, on_delete=models.CASCADE, related_name="observations")
    observer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    terminal = models.PositiveSmallIntegerField()
    started_at = models.DateTimeField(default=timezone.now)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"{self.observer} watched {self.session_id} #{self.terminal}"
