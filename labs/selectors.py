"""Reads of the labs app, and the one access check for a lab session.

Every view, consumer and task that touches a session goes through
``lab_session_for_user`` (CONVENTIONS.md #5): the owner gets read-write
access, an instructor of the session's course whose class holds its student
(``observes``) gets read-only access (to observe), and anyone else learns
nothing — not even that the session exists.
"""

from __future__ import annotations

import enum
import math
import statistics
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from accounts.roles import is_instructor
from courses.models import Course, Lab
from courses.selectors import class_members
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
    A course that lists no instructor of this site's own (one not made by an LMS
    launch) is taught by every such instructor, so a one-teacher installation
    needs no extra set-up. An instructor whose role came from an LMS launch
    (lti/) teaches only the courses that list them: the LMS vouches for one LMS
    course, never for the whole site's students.
    """
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    if user.is_superuser:
        return True
    if not is_instructor(user):
        return False
    listed = course.instructors.all()
    if listed.filter(pk=user.pk).exists():
        return True
    if _instructor_from_lms(user):
        return False
    return not listed.exclude(lti_identity__instructor_from_lti=True).exists()


def _instructor_from_lms(user: Any) -> bool:
    # The reverse one-to-one of lti.models.LtiIdentity; absent for the site's own accounts.
    identity = getattr(user, "lti_identity", None)
    return bool(identity is not None and identity.instructor_from_lti)


def lab_session_for_user(user: Any, session_id: uuid.UUID | str, *, write: bool = False) -> Granted:
    """The session ``session_id`` and what ``user`` may do with it.

    ``write=True`` asks for owner access (typing, reset, stop, port preview
    writes); observers are refused then. An observer is an instructor who
    ``observes`` the session. Raises ``LabSessionNotFound``.
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
    if not write and observes(user, session):
        return Granted(session, Access.OBSERVER)
    raise LabSessionNotFound(session_id)


def observes(user: Any, session: LabSession) -> bool:
    """Whether ``user`` may watch ``session``: they teach its course and its student is in
    their class as the class view defines it (``courses.selectors.class_members``, the one
    rule of who an instructor sees): an instructor made by an LMS launch watches only their
    own roster, never the site's other students who opened a lab of the same course."""
    course = session.lab.module.course
    if not teaches(user, course):
        return False
    return bool(class_members(course, viewer=user).filter(pk=session.user_id).exists())


def live_session(*, user: Any, lab: Lab) -> LabSession | None:
    return LabSession.objects.live().filter(user=user, lab=lab).first()


def open_session(*, user: Any, lab: Lab) -> LabSession | None:
    """The student's running or paused session of ``lab`` (at most one)."""
    return LabSession.objects.open().filter(user=user, lab=lab).first()


def kept_sessions_of(user: Any) -> list[LabSession]:
    """The student's paused labs (with when each is deleted), soonest to go first."""
    if not getattr(user, "is_authenticated", False):
        return []
    return list(
        LabSession.objects.kept().filter(user=user).select_related("lab").order_by("paused_until", "created_at")
    )


def live_sessions_of(user: Any) -> int:
    return LabSession.objects.live().filter(user=user).count()


def observable_sessions(*, user: Any) -> list[LabSession]:
    """Live sessions an instructor may watch, newest first."""
    sessions = LabSession.objects.live().select_related("user", "lab__module__course")
    if not getattr(user, "is_superuser", False):
        sessions = sessions.filter(
            Q(lab__module__course__instructors=user) | Q(lab__module__course__instructors__isnull=True)
        )
    return [s for s in sessions.distinct() if observes(user, s)]


# --- the provisioning queue ------------------------------------------------------------
#
# A starting session waits for a provisioning worker until one claims it
# (services._claim_for_provisioning); the lab page shows how many wait before
# it and an estimate built from how long recent sandboxes took to build.

RECENT_BUILDS = 20


def waiting_for_a_worker(now: datetime) -> Any:
    """Starting sessions no worker holds: never claimed, or their worker's lease ran out
    (the same condition a worker claims by)."""
    return LabSession.objects.filter(status=LabSession.Status.STARTING).filter(
        Q(provision_lease_until__isnull=True) | Q(provision_lease_until__lt=now)
    )


def is_waiting_for_a_worker(session: LabSession, now: datetime) -> bool:
    lease = session.provision_lease_until
    return session.status == LabSession.Status.STARTING and (lease is None or lease < now)


def provisioning_queue(now: datetime) -> list[tuple[uuid.UUID, datetime]]:
    """(pk, created_at) of every session waiting for a worker, first come first: one query."""
    return list(waiting_for_a_worker(now).order_by("created_at", "pk").values_list("pk", "created_at"))


def ahead_of(session: LabSession, now: datetime) -> int:
    """Sessions waiting for a worker that were started before ``session``."""
    before = Q(created_at__lt=session.created_at) | Q(created_at=session.created_at, pk__lt=session.pk)
    return int(waiting_for_a_worker(now).filter(before).count())


def _build_started(progress: Any) -> datetime | None:
    """When the last (successful) provisioning attempt began: its "image" stage."""
    for entry in reversed(progress if isinstance(progress, list) else []):
        if isinstance(entry, dict) and entry.get("stage") == "image":
            try:
                return datetime.fromisoformat(str(entry.get("at")))
            except ValueError:
                return None
    return None


def recent_build_seconds(limit: int = RECENT_BUILDS) -> list[float]:
    """How long the ``limit`` most recently ready sandboxes took to build, newest first.

    Measured from the moment a worker began building (not from the click), so that
    the time a class's sandboxes spent waiting in the queue is not counted twice."""
    rows = (
        LabSession.objects.filter(ready_at__isnull=False)
        .order_by("-ready_at")
        .values_list("ready_at", "progress")[:limit]
    )
    seconds = []
    for ready_at, progress in rows:
        began = _build_started(progress)
        if began is not None and ready_at is not None and ready_at >= began:
            seconds.append((ready_at - began).total_seconds())
    return seconds


def provisioning_slots() -> int:
    """Sandboxes built at once: the provisioning worker's processes."""
    return max(1, int(settings.CELERY_PROVISIONING_CONCURRENCY))


def wait_estimate(*, ahead: int, builds: list[float], slots: int) -> int | None:
    """Seconds until a session with ``ahead`` sessions before it is ready, or None
    without any recent build to go by. Those ahead are built ``slots`` at a time,
    the first wave after the builds under way; then this session's own build."""
    if not builds:
        return None
    build = statistics.median(builds)
    return max(1, round(build * (1 + math.ceil(ahead / slots))))


def queue_position(*, ahead: int, builds: list[float], slots: int) -> dict[str, Any]:
    """What the lab page shows of a session waiting for a worker."""
    return {"ahead": ahead, "estimate_seconds": wait_estimate(ahead=ahead, builds=builds, slots=slots)}


def queue_position_of(session: LabSession) -> dict[str, Any] | None:
    """``queue_position`` of ``session``; None once a worker builds it (or it is not starting)."""
    now = timezone.now()
    if not is_waiting_for_a_worker(session, now):
        return None
    return queue_position(ahead=ahead_of(session, now), builds=recent_build_seconds(), slots=provisioning_slots())
