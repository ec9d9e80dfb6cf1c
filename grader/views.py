"""JSON endpoints of the Check button, hints and solutions.

Thin: each view asks ``lab_session_for_user`` (through the services) and calls
one service. POSTs are CSRF-protected by Django's middleware; the page's
script sends the token in ``X-CSRFToken``.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET, require_POST

from grader import selectors, services
from labs.selectors import LabSessionNotFound, lab_session_for_user

NOT_FOUND = {"error": "No such lab session or exercise."}


def _refused(exc: services.SubmissionRefused) -> JsonResponse:
    if isinstance(exc, services.RateLimited):
        response = JsonResponse({"error": str(exc), "retry_after": exc.retry_after}, status=429)
        response["Retry-After"] = str(exc.retry_after)
        return response
    return JsonResponse({"error": str(exc)}, status=409)


@require_POST
def check(request: HttpRequest, session_id: Any, exercise_id: int) -> JsonResponse:
    try:
        submission = services.submission_create(user=request.user, exercise=exercise_id, session=str(session_id))
    except LabSessionNotFound:
        return JsonResponse(NOT_FOUND, status=404)
    except services.SubmissionRefused as exc:
        return _refused(exc)
    return JsonResponse({"submission": services.submission_state(submission)}, status=202)


@require_GET
def submission(request: HttpRequest, session_id: Any, submission_id: int) -> JsonResponse:
    try:
        granted = lab_session_for_user(request.user, session_id)
    except LabSessionNotFound:
        return JsonResponse(NOT_FOUND, status=404)
    found = selectors.submission_in_session(session=granted.session, submission_id=submission_id)
    if found is None:
        return JsonResponse({"error": "No such submission."}, status=404)
    progress = selectors.progress_of(user=found.user, exercise=found.exercise)
    return JsonResponse(services.submission_state(found, progress))


@require_POST
def reveal_hint(request: HttpRequest, session_id: Any, exercise_id: int) -> JsonResponse:
    try:
        return JsonResponse(
            services.exercise_reveal_hint(user=request.user, exercise=exercise_id, session=str(session_id))
        )
    except LabSessionNotFound:
        return JsonResponse(NOT_FOUND, status=404)
    except services.SubmissionRefused as exc:
        return _refused(exc)


@require_POST
def show_solution(request: HttpRequest, session_id: Any, exercise_id: int) -> JsonResponse:
    try:
        return JsonResponse(
            services.exercise_show_solution(user=request.user, exercise=exercise_id, session=str(session_id))
        )
    except LabSessionNotFound:
        return JsonResponse(NOT_FOUND, status=404)
    except services.SubmissionRefused as exc:
        return _refused(exc)
