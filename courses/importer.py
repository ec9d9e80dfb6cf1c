"""Writing a course read by ``courses.content`` into the database.

Importing is idempotent and never loses a student's progress: rows are
matched by slug (course; module in course; lesson and lab in module; exercise
in lab) and updated in place. Whatever the files no longer contain is
archived (``archived_at``), not deleted, so progress rows that point at it
stay valid and the item comes back, with its history, if it returns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import Model
from django.utils import timezone

from courses.content import CourseDef, LabDef, ModuleDef
from courses.models import Course, Exercise, Lab, Lesson, Module, Step

ASSET_LINK = re.compile(r"\]\((?:\./)?assets/")


@dataclass
class ImportReport:
    created: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)
    archived: dict[str, int] = field(default_factory=dict)

    def count(self, bucket: dict[str, int], kind: str) -> None:
        bucket[kind] = bucket.get(kind, 0) + 1

    def summary(self) -> str:
        def fmt(bucket: dict[str, int]) -> str:
            return ", ".join(f"{n} {kind}" for kind, n in sorted(bucket.items())) or "nothing"

        return f"created {fmt(self.created)}; updated {fmt(self.updated)}; archived {fmt(self.archived)}"


def _assets(text: str, course_slug: str) -> str:
    return ASSET_LINK.sub(f"](/courses/{course_slug}/assets/", text)


def _upsert(model: type[Model], report: ImportReport, kind: str, lookup: dict[str, Any], values: dict[str, Any]) -> Any:
    obj = model._default_manager.filter(**lookup).first()
    values = {**values, "archived_at": None}
    if obj is None:
        obj = model._default_manager.create(**lookup, **values)
        report.count(report.created, kind)
        return obj
    changed = [name for name, value in values.items() if getattr(obj, name) != value]
    if changed:
        for name in changed:
            setattr(obj, name, values[name])
        obj.save(update_fields=changed)
        report.count(report.updated, kind)
    return obj


def _archive(queryset: Any, report: ImportReport, kind: str) -> None:
    now = timezone.now()
    for obj in queryset.filter(archived_at__isnull=True):
        obj.archived_at = now
        obj.save(update_fields=["archived_at"])
        report.count(report.archived, kind)


def _import_lab(module: Module, lab_def: LabDef, course_slug: str, report: ImportReport) -> Lab:
    lab = _upsert(
        Lab,
        report,
        "labs",
        {"module": module, "slug": lab_def.slug},
        {
            "title": lab_def.title,
            "order": lab_def.order,
            "intro": _assets("\n\n".join(p for p in (lab_def.summary, lab_def.intro) if p), course_slug),
            "finish": _assets(lab_def.finish, course_slug),
            "environment": lab_def.environment,
            "enabled": lab_def.enabled,
            "disabled_reason": lab_def.disabled_reason,
        },
    )
    kept_steps, kept_exercises = [], []
    for step_def in lab_def.steps:
        step = _upsert(
            Step,
            report,
            "steps",
            {"lab": lab, "order": step_def.order},
            {"title": step_def.title, "body": _assets(step_def.body, course_slug)},
        )
        kept_steps.append(step.pk)
        for ex in step_def.exercises:
            exercise = _upsert(
                Exercise,
                report,
                "exercises",
                {"lab": lab, "slug": ex.slug},
                {
                    "step": step,
                    "title": ex.title,
                    "order": ex.order,
                    "checks": ex.checks,
                    "hints": ex.hints,
                    "solution": ex.solution,
                    "solution_after_attempts": ex.solution_after,
                },
            )
            kept_exercises.append(exercise.pk)
    _archive(lab.steps.exclude(pk__in=kept_steps), report, "steps")
    _archive(lab.exercises.exclude(pk__in=kept_exercises), report, "exercises")
    return lab


def _import_module(course: Course, module_def: ModuleDef, report: ImportReport) -> Module:
    module = _upsert(
        Module,
        report,
        "modules",
        {"course": course, "slug": module_def.slug},
        {"title": module_def.title, "summary": module_def.summary, "order": module_def.order},
    )
    kept_lessons = [
        _upsert(
            Lesson,
            report,
            "lessons",
            {"module": module, "slug": lesson.slug},
            {"title": lesson.title, "order": lesson.order, "body": _assets(lesson.body, course.slug)},
        ).pk
        for lesson in module_def.lessons
    ]
    kept_labs = [_import_lab(module, lab, course.slug, report).pk for lab in module_def.labs]
    _archive(module.lessons.exclude(pk__in=kept_lessons), report, "lessons")
    archived_labs = module.labs.exclude(pk__in=kept_labs)
    for lab in archived_labs.filter(archived_at__isnull=True):
        _archive(lab.exercises.all(), report, "exercises")
    _archive(archived_labs, report, "labs")
    return module


@transaction.atomic
def import_course(course_def: CourseDef) -> tuple[Course, ImportReport]:
    report = ImportReport()
    course = _upsert(
        Course,
        report,
        "courses",
        {"slug": course_def.slug},
        {"title": course_def.title, "summary": course_def.summary, "source": str(course_def.path)},
    )
    course.imported_at = timezone.now()
    course.save(update_fields=["imported_at"])
    kept = [_import_module(course, module, report).pk for module in course_def.modules]
    for module in course.modules.exclude(pk__in=kept).filter(archived_at__isnull=True):
        for lab in module.labs.all():
            _archive(lab.exercises.all(), report, "exercises")
        _archive(module.labs.all(), report, "labs")
        _archive(module.lessons.all(), report, "lessons")
    _archive(course.modules.exclude(pk__in=kept), report, "modules")
    return course, report
