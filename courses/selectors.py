"""Reads of the courses app (CONVENTIONS.md #3).

The course models arrive with the content issue; until then there is
nothing to list, and the pages say so honestly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model

from accounts.roles import INSTRUCTOR, STUDENT


def course_list(*, user: Any) -> list[Any]:
    """The courses ``user`` may see, in display order. None are loaded yet."""
    return []


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
