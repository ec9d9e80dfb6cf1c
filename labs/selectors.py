"""Reads of the labs app, and the one access check for a lab session.

Every view, consumer and task that touches a session goes through
``lab_session_for_user`` (CONVENTIONS.md #5): the owner gets read-write
access, an instructor of the session's course gets read-only access (to
observe), and anyone else learns nothing — not even that the session exists.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from typing import Any

from django.db.models import Q

from accounts.roles import is_instructor
from courses.models import Course, Lab
from labs.models import LabSession


class Access(enum.StrEnum):
    OWNER = "rw"
    OBSERVER = "ro"


class LabSessionNotFound(Exception):
    """No such session, or not one this user may see (deliberately the same)."""


@dataclass(frozen=True)
class Granted:
    session: LabSession
    access: Access

    @property
    def can_write(self) -> bool:
        return self.access is Access.OWNER


def teaches(user: Any, course: Course) -> bool:
    """Whether ``user`` is an instructor of ``course``.

    Instructors listed on the course teach it; superusers teach every course.
    A course with no instructors listed is taught by every instructor, so a
    one-teacher installation needs no extra set-up.
    """
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    if user.is_superuser:
        return True
    if not is_instructor(user):
        return False
    listed = course.instructors.all()
    return not listed.exists() or listed.filter(pk=user.pk).exists()


def lab_session_for_user(user: Any, session_id: uuid.UUID | str, *, write: bool = False) -> Granted:
    """The session ``session_id`` and what ``user`` may do with it.

    ``write=True`` asks for owner access (typing, reset, stop, port preview
    writes); observers are refused then. Raises ``LabSessionNotFound``.
    """
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        raise LabSessionNotFound(session_id)
    try:
        key = uuid.UUID(str(session_id))
    except ValueError:
        raise LabSessionNotFound(session_id) from None
    session = LabSession.objects.select_related("lab__module__course", "user").filter(pk=key).first()
    if session is None:
        raise LabSessionNotFound(session_id)
    if session.user_id == user.pk:
        return Granted(session, Access.OWNER)
    if not write and teaches(user, session.lab.module.course):
        return Granted(session, Access.OBSERVER)
    raise LabSessionNotFound(session_id)


def live_session(*, user: Any, lab: Lab) -> LabSession | None:
    return LabSession.objects.live().filter(user=user, lab=lab).first()


def live_sessions_of(user: Any) -> int:
    return LabSession.objects.live().filter(user=user).count()


def observable_sessions(*, user: Any) -> list[LabSession]:
    """Live sessions an instructor may watch, newest first."""
    sessions = LabSession.objects.live().select_related("user", "lab__module__course")
    if not getattr(user, "is_superuser", False):
        sessions = sessions.filter(
            Q(lab__module__course__instructors=user) | Q(lab__module__course__instructors__isnull=True)
        )
    return [s for s in sessions.distinct() if teaches(user, s.lab.module.course)]
