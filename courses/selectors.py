"""Reads of the courses app (CONVENTIONS.md #3).

Courses, modules, lessons and labs are read here for the pages; archived
rows (content removed from the files) are never listed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user_model

from accounts.roles import INSTRUCTOR, STUDENT

if TYPE_CHECKING:
    from courses.models import Course


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


# Students listed in a class view (and reached by one broadcast) at most.
MAX_STUDENTS = 1000


def class_members(course: Course, *, viewer: Any = None) -> Any:
    """The students of ``course`` as ``viewer`` (an instructor who teaches it) may see them:
    a QuerySet of users, each once.

    * An LMS course (an LMS course of a registered platform is bound to it): its roster,
      the active Learner enrolments from launches and roster imports (lti/), plus anyone
      who opened its labs or has progress in it.
    * A site course (no LMS course bound to it): the site's own student accounts (the
      student role, not made by an LMS launch: those belong to their LMS course), plus
      anyone who opened its labs or has progress in it.
    * An instructor whose role came from an LMS launch sees only the roster of the LMS
      courses they teach that are bound to this one: the LMS vouches for its course, not
      for the site's other students (labs.selectors.teaches).

    The one rule of who an instructor sees: the class view, class messages and
    ``labs.selectors.observes`` all ask it.
    """
    from django.apps import apps
    from django.db.models import Q

    users = get_user_model().objects.filter(is_active=True)
    if not apps.is_installed("lti"):
        engaged = Q(exercise_progress__exercise__lab__module__course=course) | Q(
            lab_sessions__lab__module__course=course
        )
        return users.filter(Q(groups__name=STUDENT) | engaged).distinct()
    contexts = apps.get_model("lti", "LtiContext").objects.filter(course=course)
    identity = getattr(viewer, "lti_identity", None) if viewer is not None else None
    if identity is not None and identity.instructor_from_lti and not viewer.is_superuser:
        taught = contexts.filter(memberships__user=viewer, memberships__role=INSTRUCTOR, memberships__active=True)
        return users.filter(
            lti_memberships__context__in=taught, lti_memberships__role=STUDENT, lti_memberships__active=True
        ).distinct()
    engaged = Q(pk__in=users.filter(exercise_progress__exercise__lab__module__course=course).values("pk")) | Q(
        pk__in=users.filter(lab_sessions__lab__module__course=course).values("pk")
    )
    if contexts.exists():
        roster = users.filter(
            lti_memberships__context__in=contexts, lti_memberships__role=STUDENT, lti_memberships__active=True
        ).values("pk")
        return users.filter(Q(pk__in=roster) | engaged)
    site_students = users.filter(groups__name=STUDENT, lti_identity__isnull=True).values("pk")
    return users.filter(Q(pk__in=site_students) | engaged)
