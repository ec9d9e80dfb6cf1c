"""Reads of the grader."""

from __future__ import annotations

from typing import Any

from courses.models import Exercise
from grader.models import ExerciseProgress, Submission
from labs.models import LabSession


def submission_in_session(*, session: LabSession, submission_id: int) -> Submission | None:
    """A submission made in ``session`` (the caller has passed the session's access check)."""
    return Submission.objects.select_related("exercise", "user").filter(pk=submission_id, lab_session=session).first()


def progress_of(*, user: Any, exercise: Exercise) -> ExerciseProgress | None:
    return ExerciseProgress.objects.filter(user=user, exercise=exercise).first()


def progress_by_exercise(*, user: Any, exercises: list[Exercise]) -> dict[int, ExerciseProgress]:
    rows = ExerciseProgress.objects.filter(user=user, exercise__in=exercises).select_related("last_submission")
    return {row.exercise_id: row for row in rows}


def exercises_with_progress(*, user: Any, step: Any) -> list[dict[str, Any]]:
    """What the lab page passes to ``grader/_exercise.html`` for one step:
    ``exercise``, ``progress`` (of ``user``, the session's owner) and
    ``hints_html`` (the hints already revealed, rendered and sanitised)."""
    from courses.rendering import render_markdown

    exercises = list(step.exercises.active().order_by("order", "slug"))
    progress = progress_by_exercise(user=user, exercises=exercises)
    items = []
    for exercise in exercises:
        row = progress.get(exercise.pk)
        revealed = list(exercise.hints or [])[: row.hints_revealed if row else 0]
        items.append({"exercise": exercise, "progress": row, "hints_html": [render_markdown(str(h)) for h in revealed]})
    return items


def submission_history(*, user: Any, exercises: Any = None, limit: int = 200) -> list[Submission]:
    rows = Submission.objects.filter(user=user).select_related("exercise__lab__module", "exercise__step")
    if exercises is not None:
        rows = rows.filter(exercise__in=exercises)
    return list(rows.order_by("-created_at", "-pk")[:limit])
