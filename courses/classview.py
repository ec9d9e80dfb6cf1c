"""The live class view: where an instructor's class is right now (issue #18).

Read-only (a selector, CONVENTIONS.md #3), a fixed number of queries per course
whatever the class size, and bounded like ``class_matrix`` (at most
``MAX_STUDENTS`` students).

Per student and exercise, one state, decided in this order:

* ``passed`` — every check of the exercise passed once;
* ``stuck`` — ``CLASS_STUCK_FAILED_CHECKS`` failed checks or more, or the student is in
  the exercise's lab now, it is the first exercise of that lab they have not passed,
  and they made no progress (passed nothing, and the lab did not start) for
  ``CLASS_STUCK_IDLE``;
* ``trying`` — checked it at least once, or is in its lab now and it is the next one;
* ``not_started`` — none of the above.

"Progress" is a passed exercise, not typing: a student who types for twenty minutes
without a check passing is who the instructor wants to see.

Time spent per lab is the wall time of the students' lab sessions (from start to end,
or to now for a live one), summed per student; the chart shows the median over the
students who opened the lab.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings

from courses.models import Course, Exercise, Lab
from courses.selectors import MAX_STUDENTS, class_members
from grader.models import ExerciseProgress
from labs.models import LabSession

PASSED, STUCK, TRYING, NOT_STARTED = "passed", "stuck", "trying", "not_started"
STATES = (PASSED, TRYING, STUCK, NOT_STARTED)


@dataclass
class ExerciseStats:
    exercise: Exercise
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATES, 0))
    attempts: int = 0

    @property
    def students(self) -> int:
        return sum(self.counts.values())

    @property
    def pass_rate(self) -> int:
        """Percent of the class that passed it."""
        return int(100 * self.counts[PASSED] / self.students) if self.students else 0


@dataclass
class Stuck:
    student: Any
    exercise: Exercise
    reason: str  # "failed" or "idle"
    failed_checks: int
    since: datetime | None  # last progress, for "idle"


@dataclass
class InLab:
    """A student in a lab now: a live session and where they are in it."""

    student: Any
    session: LabSession
    passed: int
    total: int
    current: Exercise | None
    state: str  # of ``current``: stuck or trying; passed when the lab is complete


@dataclass
class LabTime:
    lab: Lab
    students: int
    median_minutes: float


@dataclass
class ClassView:
    course: Course
    now: datetime
    students: int
    exercises: list[ExerciseStats]
    stuck: list[Stuck]
    in_lab: list[InLab]
    lab_times: list[LabTime]
    stuck_failed_checks: int
    stuck_idle_minutes: int


def stuck_settings() -> tuple[int, timedelta]:
    return int(settings.CLASS_STUCK_FAILED_CHECKS), timedelta(seconds=int(settings.CLASS_STUCK_IDLE))


def _students(course: Course, viewer: Any) -> list[Any]:
    return list(class_members(course, viewer=viewer).order_by("username")[:MAX_STUDENTS])


def class_view(*, course: Course, now: datetime, viewer: Any = None) -> ClassView:
    """Where the class of ``course`` stands at ``now`` (passed in: tests fix the clock), as
    ``viewer`` sees it (``class_members``)."""
    failed_limit, idle = stuck_settings()
    exercises = list(
        Exercise.objects.active()
        .filter(lab__module__course=course, lab__archived_at__isnull=True, lab__module__archived_at__isnull=True)
        .select_related("lab__module")
        .order_by("lab__module__order", "lab__module__slug", "lab__order", "lab__slug", "step__order", "order", "slug")
    )
    labs: list[Lab] = []
    by_lab: dict[int, list[Exercise]] = {}
    for exercise in exercises:
        if exercise.lab_id not in by_lab:
            labs.append(exercise.lab)
        by_lab.setdefault(exercise.lab_id, []).append(exercise)
    students = _students(course, viewer)
    ids = {s.pk for s in students}
    progress: dict[tuple[int, int], ExerciseProgress] = {
        (p.user_id, p.exercise_id): p for p in ExerciseProgress.objects.filter(exercise__in=exercises, user_id__in=ids)
    }
    sessions = list(
        LabSession.objects.filter(lab__module__course=course, user_id__in=ids)
        .select_related("lab")
        .only("id", "user_id", "lab_id", "lab__title", "lab__slug", "status", "created_at", "ended_at")
    )
    live = {(s.user_id, s.lab_id): s for s in sessions if s.is_live}

    stats = {e.pk: ExerciseStats(exercise=e) for e in exercises}
    stuck: list[Stuck] = []
    in_lab: list[InLab] = []
    for student in students:
        for lab_id, lab_exercises in by_lab.items():
            rows = [progress.get((student.pk, e.pk)) for e in lab_exercises]
            current = next((e for e, p in zip(lab_exercises, rows, strict=True) if not (p and p.passed)), None)
            session = live.get((student.pk, lab_id))
            last_progress = None
            if session is not None:
                passed_at = [p.passed_at for p in rows if p is not None and p.passed_at is not None]
                last_progress = max([session.created_at, *passed_at])
            current_state = PASSED
            for exercise, row in zip(lab_exercises, rows, strict=True):
                state, reason = NOT_STARTED, ""
                if row is not None and row.passed:
                    state = PASSED
                elif row is not None and row.failed_attempts >= failed_limit:
                    state, reason = STUCK, "failed"
                elif session is not None and exercise is current and last_progress is not None:
                    state = STUCK if now - last_progress >= idle else TRYING
                    reason = "idle" if state == STUCK else ""
                elif row is not None and row.attempts > 0:
                    state = TRYING
                stats[exercise.pk].counts[state] += 1
                stats[exercise.pk].attempts += row.attempts if row is not None else 0
                if state == STUCK:
                    stuck.append(
                        Stuck(
                            student=student,
                            exercise=exercise,
                            reason=reason,
                            failed_checks=row.failed_attempts if row is not None else 0,
                            since=last_progress if reason == "idle" else None,
                        )
                    )
                if exercise is current:
                    current_state = state
            if session is not None:
                in_lab.append(
                    InLab(
                        student=student,
                        session=session,
                        passed=sum(1 for p in rows if p is not None and p.passed),
                        total=len(lab_exercises),
                        current=current,
                        state=current_state,
                    )
                )
    return ClassView(
        course=course,
        now=now,
        students=len(students),
        exercises=list(stats.values()),
        stuck=stuck,
        in_lab=in_lab,
        lab_times=_lab_times(labs, sessions, now),
        stuck_failed_checks=failed_limit,
        stuck_idle_minutes=int(idle.total_seconds() // 60),
    )


def _lab_times(labs: list[Lab], sessions: list[LabSession], now: datetime) -> list[LabTime]:
    per: dict[int, dict[int, float]] = {}
    for session in sessions:
        end = now if session.is_live else (session.ended_at or session.created_at)
        minutes = max(0.0, (end - session.created_at).total_seconds() / 60)
        spent = per.setdefault(session.lab_id, {})
        spent[session.user_id] = spent.get(session.user_id, 0.0) + minutes
    return [
        LabTime(
            lab=lab,
            students=len(per.get(lab.pk, {})),
            median_minutes=round(statistics.median(per[lab.pk].values()), 1) if per.get(lab.pk) else 0.0,
        )
        for lab in labs
    ]


def as_dict(view: ClassView) -> dict[str, Any]:
    """The view as JSON (the live endpoint): ids, names and counts, nothing of a terminal."""

    def who(user: Any) -> dict[str, Any]:
        return {"id": user.pk, "username": user.username, "name": user.get_full_name() or user.username}

    return {
        "course": view.course.slug,
        "students": view.students,
        "stuck_failed_checks": view.stuck_failed_checks,
        "stuck_idle_minutes": view.stuck_idle_minutes,
        "exercises": [
            {
                "id": s.exercise.pk,
                "lab": s.exercise.lab.slug,
                "slug": s.exercise.slug,
                "title": s.exercise.title,
                **s.counts,
                "attempts": s.attempts,
                "pass_rate": s.pass_rate,
            }
            for s in view.exercises
        ],
        "stuck": [
            {
                "student": who(s.student),
                "exercise": s.exercise.pk,
                "reason": s.reason,
                "failed_checks": s.failed_checks,
                "since": s.since.isoformat() if s.since else None,
            }
            for s in view.stuck
        ],
        "in_lab": [
            {
                "student": who(i.student),
                "session": str(i.session.pk),
                "lab": i.session.lab.slug,
                "passed": i.passed,
                "total": i.total,
                "current": i.current.pk if i.current else None,
                "state": i.state,
            }
            for i in view.in_lab
        ],
        "lab_times": [
            {"lab": t.lab.slug, "students": t.students, "median_minutes": t.median_minutes} for t in view.lab_times
        ],
    }
