"""Reads of the courses app (CONVENTIONS.md #3).

Courses, modules, lessons and labs are read here for the pages; archived
rows (content removed from the files) are never listed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model

from accounts.roles import INSTRUCTOR, STUDENT


def course_list(*, user: Any) -> list[Any]:
    """The courses ``user`` may see, in display order."""
    from courses.models import Course

    return list(Course.objects.active().order_by("order", "title"))


@dataclass(frozen=True)
class ClassSummary:
    students: int
    instructors: int


def class_summary() -> ClassSummary:
    users = get_user_model().objects.filter(is_active=True)
    return ClassSummary(
        students=users.filter(groups__name=STUDENT).distinct().count(),
        instructors=users.filter(groups__name=INSTRUCTOR).distinct().count(),
    )
