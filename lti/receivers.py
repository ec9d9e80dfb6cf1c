"""Grading → grade passback, without the grader knowing about LTI.

``grader.services`` saves ``ExerciseProgress`` with ``update_fields``; when
the status is among them (first attempt, or passed) the lab's score may have
changed, and ``lti.services.score_changed`` enqueues the sends on commit.
The receiver only hands over ids (CONVENTIONS.md: no logic in signals).
"""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_save

from grader.models import ExerciseProgress


def _progress_saved(sender: Any, instance: ExerciseProgress, created: bool, update_fields: Any, **kwargs: Any) -> None:
    if update_fields is None or "status" not in update_fields:
        return
    from lti import services

    services.score_changed(user_id=instance.user_id, exercise_id=instance.exercise_id)


def connect() -> None:
    post_save.connect(_progress_saved, sender=ExerciseProgress, dispatch_uid="lti.progress_saved")
