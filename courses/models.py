"""The course as the platform stores it: Course → Module → Lesson / Lab → Step → Exercise.

Content lives in files under ``content/`` and is imported (``import_course``);
these rows are its database image. Imports are idempotent and never delete a
row a student's progress points to: a removed exercise gets ``archived_at``.
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.urls import reverse


class ArchivableQuerySet(models.QuerySet):
    def active(self) -> ArchivableQuerySet:
        return self.filter(archived_at__isnull=True)


class Course(models.Model):
    slug = models.SlugField(unique=True)
    title = models.CharField(max_length=200)
    summary = models.TextField(blank=True)
    order = models.PositiveIntegerField(default=0)
    source = models.CharField(max_length=500, blank=True, help_text="directory it was imported from")
    imported_at = models.DateTimeField(null=True, blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)
    instructors = models.ManyToManyField("auth.User", blank=True, related_name="taught_courses")

    objects = ArchivableQuerySet.as_manager()

    class Meta:
        ordering = ["order", "slug"]

    def __str__(self) -> str:
        return self.title

    def get_absolute_url(self) -> str:
        return reverse("courses:course", kwargs={"course": self.slug})


class Module(models.Model):
    course = models.ForeignKey(Course, on_delete=models.CASCADE, related_name="modules")
    slug = models.SlugField()
    title = models.CharField(max_length=200)
    summary = models.TextField(blank=True)
    order = models.PositiveIntegerField(default=0)
    archived_at = models.DateTimeField(null=True, blank=True)

    objects = ArchivableQuerySet.as_manager()

    class Meta:
        ordering = ["order", "slug"]
        constraints = [models.UniqueConstraint(fields=["course", "slug"], name="module_slug_per_course")]

    def __str__(self) -> str:
        return f"{self.course.slug}/{self.slug}"


class Lesson(models.Model):
    module = models.ForeignKey(Module, on_delete=models.CASCADE, related_name="lessons")
    slug = models.SlugField()
    title = models.CharField(max_length=200)
    order = models.PositiveIntegerField(default=0)
    body = models.TextField(blank=True, help_text="Markdown")
    archived_at = models.DateTimeField(null=True, blank=True)

    objects = ArchivableQuerySet.as_manager()

    class Meta:
        ordering = ["order", "slug"]
        constraints = [models.UniqueConstraint(fields=["module", "slug"], name="lesson_slug_per_module")]

    def __str__(self) -> str:
        return f"{self.module}/{self.slug}"


class Lab(models.Model):
    module = models.ForeignKey(Module, on_delete=models.CASCADE, related_name="labs")
    slug = models.SlugField()
    title = models.CharField(max_length=200)
    order = models.PositiveIntegerField(default=0)
    intro = models.TextField(blank=True, help_text="Markdown shown before the first step")
    finish = models.TextField(blank=True, help_text="Markdown shown when every exercise passed")
    # What runtimed builds for this lab: image, memory, pids, cpus, disk,
    # services, env, files, setup, allow_outbound (runtime.sandbox.spec.SandboxSpec).
    environment = models.JSONField(default=dict, blank=True)
    enabled = models.BooleanField(default=True, help_text="off while a service it needs is not available")
    disabled_reason = models.CharField(max_length=300, blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)

    objects = ArchivableQuerySet.as_manager()

    class Meta:
        ordering = ["order", "slug"]
        constraints = [models.UniqueConstraint(fields=["module", "slug"], name="lab_slug_per_module")]

    def __str__(self) -> str:
        return f"{self.module}/{self.slug}"

    @property
    def course(self) -> Course:
        return self.module.course

    def sandbox_spec(self, *, labels: dict[str, str] | None = None) -> dict[str, Any]:
        env = dict(self.environment)
        spec: dict[str, Any] = {
            key: env[key]
            for key in (
                "image",
                "memory",
                "pids",
                "cpus",
                "disk",
                "env",
                "files",
                "setup",
                "services",
                "allow_outbound",
                "hostname",
                "kube_nodes",
            )
            if key in env
        }
        spec["labels"] = {"lab": str(self.pk), **(labels or {})}
        return spec


class Step(models.Model):
    lab = models.ForeignKey(Lab, on_delete=models.CASCADE, related_name="steps")
    order = models.PositiveIntegerField(default=0)
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True, help_text="Markdown with runnable and copy-only code blocks")
    archived_at = models.DateTimeField(null=True, blank=True)

    objects = ArchivableQuerySet.as_manager()

    class Meta:
        ordering = ["order"]

    def __str__(self) -> str:
        return f"{self.lab} step {self.order}"


class Exercise(models.Model):
    # Keyed by lab and slug, so moving an exercise to another step keeps its
    # students' progress.
    lab = models.ForeignKey(Lab, on_delete=models.CASCADE, related_name="exercises")
    step = models.ForeignKey(Step, on_delete=models.CASCADE, related_name="exercises")
    slug = models.SlugField()
    title = models.CharField(max_length=200)
    order = models.PositiveIntegerField(default=0)
    checks = models.JSONField(default=list, help_text="list of check definitions (docs/checks.md)")
    hints = models.JSONField(default=list, blank=True, help_text="list of Markdown hints, revealed in order")
    solution = models.TextField(blank=True, help_text="Markdown")
    solution_after_attempts = models.PositiveIntegerField(default=3)
    archived_at = models.DateTimeField(null=True, blank=True)

    objects = ArchivableQuerySet.as_manager()

    class Meta:
        ordering = ["order", "slug"]
        constraints = [models.UniqueConstraint(fields=["step", "slug"], name="exercise_slug_per_step")]

    def __str__(self) -> str:
        return f"{self.lab}/{self.slug}"


class ClassMessageQuerySet(models.QuerySet["ClassMessage"]):
    def unread(self) -> ClassMessageQuerySet:
        return self.filter(read_at__isnull=True)


class ClassMessage(models.Model):
    """A hint or message from an instructor to one student of a course, shown on that
    student's lab pages of the course until they dismiss it (courses/messages.py).

    A broadcast to the class is stored as one row per student (``broadcast`` set, one
    ``batch`` for them all), so each student dismisses their own copy."""

    course = models.ForeignKey(Course, on_delete=models.CASCADE, related_name="messages")
    sender = models.ForeignKey("auth.User", on_delete=models.CASCADE, related_name="sent_class_messages")
    recipient = models.ForeignKey("auth.User", on_delete=models.CASCADE, related_name="class_messages")
    text = models.TextField()
    broadcast = models.BooleanField(default=False)
    batch = models.UUIDField(help_text="one send: a broadcast's rows share it")
    created_at = models.DateTimeField()
    read_at = models.DateTimeField(null=True, blank=True)

    objects = ClassMessageQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "pk"]
        indexes = [
            models.Index(fields=["recipient", "course", "read_at"], name="class_message_inbox"),
            models.Index(fields=["sender", "created_at"], name="class_message_sent"),
        ]

    def __str__(self) -> str:
        return f"{self.sender} → {self.recipient}: {self.text[:40]}"
