"""Writes of the grader: submitting, grading exactly once, hints and solutions.

Exactly-once grading. ``grade_submission`` claims a submission with one
conditional UPDATE: ``status='queued'``, or ``status='running'`` whose lease
ran out (its worker died). The claim sets a fresh ``claim_token``, bumps
``grading_attempts`` and sets ``lease_until`` to the longest the checks can
take (their time limits plus a margin). Finishing is a second conditional
UPDATE ``WHERE claim_token=<mine> AND status='running'`` in the same
transaction that counts the attempt in ``ExerciseProgress``: only one grading
can ever finish a submission, and the attempt is counted by that one alone.

A worker killed mid-grade: Celery (``acks_late`` + ``reject_on_worker_lost``)
redelivers the task; it finds the row still ``running`` under a live lease and
retries itself once the lease has run out, then claims and grades. If the
broker lost the message too (the whole worker host died), the periodic
``requeue_stale_submissions`` enqueues it again. Duplicate deliveries are
harmless: they find nothing to claim.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone

from courses.models import Exercise
from courses.rendering import render_markdown
from grader.checks import InfrastructureError, Target, check_timeout, run_checks
from grader.checks.base import SANDBOX_GONE
from grader.models import ExerciseProgress, Submission
from labs import push
from labs import services as lab_services
from labs.models import LabSession
from labs.selectors import lab_session_for_user
from runtime import errors as runtime_errors

log = logging.getLogger(__name__)

LEASE_MARGIN = 5  # seconds on top of the checks' own limits
LEASE_PER_CHECK = 3


def _setting(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


class SubmissionRefused(Exception):
    """The check cannot run now; the message says why and what to do."""


class RateLimited(SubmissionRefused):
    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ClaimBusy(Exception):
    """Another grading holds a live lease on the submission."""

    def __init__(self, retry_in: float) -> None:
        super().__init__(f"submission busy for {retry_in:.0f} s more")
        self.retry_in = retry_in


# --- what the page shows --------------------------------------------------------------


def submission_state(submission: Submission, progress: ExerciseProgress | None = None) -> dict[str, Any]:
    """A submission as the page shows it (the ``check`` event and the status JSON)."""
    exercise = submission.exercise
    results = submission.results or {}
    state: dict[str, Any] = {
        "type": "check",
        "submission": submission.pk,
        "exercise": submission.exercise_id,
        "status": submission.status,
        "finished": submission.is_finished,
        "attempt": submission.attempt,
        "score": results.get("score", 0),
        "max_score": results.get("max_score", len(exercise.checks or [])),
        "tests": results.get("tests", []),
        "error": submission.error,
        "duration_ms": submission.duration_ms,
        "url": reverse(
            "grader:submission", kwargs={"session_id": submission.lab_session_id, "submission_id": submission.pk}
        )
        if submission.lab_session_id
        else None,
    }
    if progress is not None:
        state["progress"] = progress_state(exercise, progress)
    return state


def progress_state(exercise: Exercise, progress: ExerciseProgress | None) -> dict[str, Any]:
    if progress is None:
        return {
            "status": ExerciseProgress.Status.NOT_STARTED,
            "attempts": 0,
            "failed_attempts": 0,
            "hints_revealed": 0,
            "hints_total": len(exercise.hints or []),
            "hint_available": False,
            "solution_available": False,
            "has_solution": bool(exercise.solution),
        }
    return {
        "status": progress.status,
        "attempts": progress.attempts,
        "failed_attempts": progress.failed_attempts,
        "hints_revealed": progress.hints_revealed,
        "hints_total": len(exercise.hints or []),
        "hint_available": progress.hint_available(exercise),
        "solution_available": progress.solution_available(exercise),
        "has_solution": bool(exercise.solution),
    }


def _push(session_id: Any, state: dict[str, Any]) -> None:
    """Send ``state`` to the lab page's events socket once the transaction commits."""
    if session_id is None:
        return
    group = f"lab.{session_id}"

    def send() -> None:
        try:
            push.group_send(group, {"type": "grader.result", "result": state})
        except Exception:
            log.warning("could not push check result to %s", group, exc_info=True)

    transaction.on_commit(send)


# --- the student's actions ----------------------------------------------------------------


def _exercise_in_session(user: Any, exercise: Exercise | int, session: Any) -> tuple[Exercise, LabSession]:
    granted = lab_session_for_user(user, getattr(session, "pk", session), write=True)
    pk = exercise.pk if isinstance(exercise, Exercise) else exercise
    found = Exercise.objects.active().filter(pk=pk, lab_id=granted.session.lab_id).first()
    if found is None:
        raise SubmissionRefused("This exercise is not part of this lab.")
    return found, granted.session


@transaction.atomic
def submission_create(*, user: Any, exercise: Exercise | int, session: LabSession | str) -> Submission:
    """Queue a grading of ``exercise`` in the student's ``session``.

    Raises ``LabSessionNotFound`` (not the student's session),
    ``SubmissionRefused`` (session not ready, exercise not in this lab) or
    ``RateLimited``. A second press while one is still pending returns that one.
    """
    exercise, lab_session = _exercise_in_session(user, exercise, session)
    if lab_session.status != LabSession.Status.READY or not lab_session.sandbox_id:
        raise SubmissionRefused("Your sandbox is not running. Start the lab (or reset it) and check again.")
    if not exercise.checks:
        raise SubmissionRefused("This exercise has nothing to check.")
    progress, _ = ExerciseProgress.objects.select_for_update().get_or_create(user=user, exercise=exercise)
    pending = Submission.objects.pending().filter(user=user, exercise=exercise).first()
    if pending is not None:
        return pending
    per_minute = int(_setting("GRADER_CHECKS_PER_MINUTE", 20))
    now = timezone.now()
    recent = list(
        Submission.objects.filter(user=user, created_at__gte=now - timedelta(seconds=60))
        .order_by("created_at")
        .values_list("created_at", flat=True)[:per_minute]
    )
    if len(recent) >= per_minute:
        retry_after = max(1, int(60 - (now - recent[0]).total_seconds()) + 1)
        raise RateLimited(
            f"That is {per_minute} checks in a minute, the most allowed. Wait {retry_after} s and check again.",
            retry_after,
        )
    attempt = Submission.objects.filter(user=user, exercise=exercise).count() + 1
    submission = Submission.objects.create(
        user=user,
        exercise=exercise,
        lab_session=lab_session,
        attempt=attempt,
        max_score=len(exercise.checks),
        created_at=now,
    )
    progress.last_activity_at = now
    progress.save(update_fields=["last_activity_at"])
    lab_services.lab_session_record_activity(session=lab_session, at=now)
    _enqueue(submission.pk)
    return submission


def _enqueue(submission_id: int) -> None:
    from grader.tasks import grade

    queue = _setting("GRADER_QUEUE", None)
    if queue:
        transaction.on_commit(lambda: grade.apply_async((submission_id,), queue=queue))
    else:
        grade.delay_on_commit(submission_id)


@transaction.atomic
def exercise_reveal_hint(*, user: Any, exercise: Exercise | int, session: LabSession | str) -> dict[str, Any]:
    """Reveal the next hint, allowed one per failed attempt."""
    exercise, _ = _exercise_in_session(user, exercise, session)
    progress, _ = ExerciseProgress.objects.select_for_update().get_or_create(user=user, exercise=exercise)
    hints = list(exercise.hints or [])
    if not progress.hint_available(exercise):
        if progress.hints_revealed >= len(hints):
            raise SubmissionRefused("There are no more hints for this exercise.")
        raise SubmissionRefused("The next hint unlocks after your next failed check.")
    progress.hints_revealed += 1
    progress.last_activity_at = timezone.now()
    progress.save(update_fields=["hints_revealed", "last_activity_at"])
    return {
        "hints": [render_markdown(str(h)) for h in hints[: progress.hints_revealed]],
        "progress": progress_state(exercise, progress),
    }


@transaction.atomic
def exercise_show_solution(*, user: Any, exercise: Exercise | int, session: LabSession | str) -> dict[str, Any]:
    """Show the solution: offered after enough failed attempts, or on request (recorded either way)."""
    exercise, _ = _exercise_in_session(user, exercise, session)
    if not exercise.solution:
        raise SubmissionRefused("This exercise has no written solution.")
    progress, _ = ExerciseProgress.objects.select_for_update().get_or_create(user=user, exercise=exercise)
    if not progress.solution_shown:
        now = timezone.now()
        progress.solution_shown = True
        progress.solution_shown_at = now
        progress.last_activity_at = now
        progress.save(update_fields=["solution_shown", "solution_shown_at", "last_activity_at"])
    return {"solution": render_markdown(exercise.solution), "progress": progress_state(exercise, progress)}


# --- grading (run by the task) ----------------------------------------------------------------


def lease_seconds(checks: list[Any]) -> float:
    total = float(LEASE_MARGIN)
    for spec in checks:
        try:
            total += check_timeout(spec) + LEASE_PER_CHECK
        except Exception:
            total += LEASE_PER_CHECK
    return total


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:200]


@dataclass(frozen=True)
class Claim:
    submission: Submission
    token: str


def _claim(submission_id: int) -> Claim | None:
    submission = Submission.objects.select_related("exercise", "lab_session").filter(pk=submission_id).first()
    if submission is None or submission.is_finished:
        return None
    now = timezone.now()
    token = uuid.uuid4().hex
    lease = now + timedelta(seconds=lease_seconds(list(submission.exercise.checks or [])))
    claimed = (
        Submission.objects.filter(pk=submission_id)
        .filter(Q(status=Submission.Status.QUEUED) | Q(status=Submission.Status.RUNNING, lease_until__lt=now))
        .update(
            status=Submission.Status.RUNNING,
            claim_token=token,
            grading_attempts=F("grading_attempts") + 1,
            lease_until=lease,
            started_at=now,
            worker=_worker_name(),
        )
    )
    submission.refresh_from_db()
    if claimed != 1:
        if submission.status == Submission.Status.RUNNING and submission.lease_until is not None:
            raise ClaimBusy(max(1.0, (submission.lease_until - now).total_seconds() + 1))
        return None
    return Claim(submission, token)


def _ask(backend: Any, what: str, sandbox_id: str) -> str | None:
    """The backend's ``what`` for the sandbox (docker_url, kubeconfig), or None
    when the backend has none or the sandbox was made without that service."""
    method = getattr(backend, what, None)
    if not callable(method):
        return None
    try:
        answer = method(sandbox_id)
    except runtime_errors.Unreachable as exc:  # runtimed down or restarting: retry, never "no cluster"
        raise InfrastructureError(f"The sandbox service is unreachable: {exc}") from exc
    except (RuntimeError, OSError, LookupError):  # runtime errors derive from RuntimeError
        return None
    return str(answer) if answer else None


def _target(session: LabSession | None) -> Target | None:
    if session is None or session.status != LabSession.Status.READY or not session.sandbox_id:
        return None
    # The backend names the sandbox's own Docker engine and lab cluster once it has them;
    # until then an operator may point every lab at one engine / cluster by settings.
    from labs import sandboxes

    try:
        backend: Any = sandboxes.backend_for(session.backend)
    except sandboxes.SandboxError:
        backend = None
    # The session's grader credential (runtime.auth: this sandbox, the graders' operations
    # only), minted when it was provisioned; the grading worker holds no admin token.
    token: str | None = session.grader_token or None
    scoped: Any = backend
    if backend is not None and token is None:
        # a session provisioned before graders had their own credential: mint one, where this
        # process may (it holds the admin token), for this grading only
        try:
            token = backend.token(session.sandbox_id, "grader", settings.GRADER_TOKEN_TTL) or None
        except sandboxes.SandboxGone:
            return Target(sandbox_id=session.sandbox_id, gone=SANDBOX_GONE)
        except sandboxes.SandboxError as exc:
            raise InfrastructureError(str(exc)) from exc
    if backend is not None and token:
        scoped = backend.scoped(token)
    try:
        docker_url = _ask(scoped, "docker_url", session.sandbox_id) or _setting("GRADER_DOCKER_URL", "") or None
        kubeconfig = _ask(scoped, "kubeconfig", session.sandbox_id) or _setting("GRADER_KUBECONFIG", "") or None
        # the lab node that holds the sandbox must still be there (SANDBOX_BACKEND=kubernetes), and
        # the runtimed CA its relayed Docker engine is checked against
        gone = False
        ca = None
        try:
            ca = sandboxes.runtime_address(session)[2]
        except sandboxes.SandboxGone:
            gone = True
        except sandboxes.SandboxError as exc:
            raise InfrastructureError(str(exc)) from exc
    except BaseException:
        if scoped is not backend:
            scoped.close()
        raise
    if gone:  # the lab node that held the sandbox is gone
        if scoped is not backend:
            scoped.close()
        return Target(sandbox_id=session.sandbox_id, gone=SANDBOX_GONE)
    if scoped is not None and scoped is backend:
        # no sandbox token (a backend without them): checks share the process's backend, not closed
        return Target(
            sandbox_id=session.sandbox_id,
            backend=scoped.backend,
            close_backend=False,
            runtime_ca=ca,
            docker_url=docker_url,
            kubeconfig=kubeconfig,
        )
    # The checks reach the sandbox through the session's backend, as the web tier does
    # (runtime.backends; the Target closes this scoped copy), with the grader's token.
    return Target(
        sandbox_id=session.sandbox_id,
        backend=scoped.backend if scoped is not None else None,
        runtime_token=token,
        runtime_ca=ca,
        docker_url=docker_url,
        docker_token=token,
        kubeconfig=kubeconfig,
    )


def grade_submission(submission_id: int) -> Submission | None:
    """Claim, grade and finish one submission (idempotent; run by the task).

    Returns the finished submission, or None when there was nothing to do.
    Raises ``ClaimBusy`` (retry later) and ``InfrastructureError`` (retry;
    the claim is released first).
    """
    claim = _claim(submission_id)
    if claim is None:
        return None
    submission = claim.submission
    # No "running" push: the page already shows "Checking…" from the POST's answer, and
    # a verdict typically follows within a tenth of a second; one push per grading.
    try:
        target = _target(submission.lab_session)
    except InfrastructureError:
        _release(claim)  # runtimed down: the retry must find it claimable, not under a live lease
        raise
    if target is None:
        return _finish(
            claim,
            status=Submission.Status.ERROR,
            results={},
            error="Your lab session ended before the check ran. Start the lab again and check again.",
        )
    started = timezone.now()
    try:
        results = run_checks(target, list(submission.exercise.checks or []))
    except InfrastructureError:
        _release(claim)
        raise
    finally:
        target.close()
    statuses = [t["status"] for t in results["tests"]]
    if "error" in statuses:
        status = Submission.Status.ERROR
        error = "A check could not run; this attempt is not counted. " + next(
            t["output"] for t in results["tests"] if t["status"] == "error"
        )
    else:
        status = Submission.Status.PASSED if results["passed"] else Submission.Status.FAILED
        error = ""
    elapsed = int((timezone.now() - started).total_seconds() * 1000)
    return _finish(claim, status=status, results=results, error=error, duration_ms=elapsed)


def _release(claim: Claim) -> None:
    """Give the submission back to the queue (an infrastructure failure: the task retries)."""
    Submission.objects.filter(pk=claim.submission.pk, claim_token=claim.token, status=Submission.Status.RUNNING).update(
        status=Submission.Status.QUEUED, lease_until=None
    )


@transaction.atomic
def _finish(
    claim: Claim, *, status: str, results: dict[str, Any], error: str = "", duration_ms: int | None = None
) -> Submission | None:
    now = timezone.now()
    done = Submission.objects.filter(
        pk=claim.submission.pk, claim_token=claim.token, status=Submission.Status.RUNNING
    ).update(
        status=status,
        results=results,
        score=results.get("score", 0),
        max_score=results.get("max_score", claim.submission.max_score),
        error=error[:4000],
        finished_at=now,
        duration_ms=duration_ms,
        lease_until=None,
    )
    if done != 1:
        log.warning("submission %s: lost its claim before finishing; another grading owns it", claim.submission.pk)
        return None
    submission = Submission.objects.select_related("exercise").get(pk=claim.submission.pk)
    progress, _ = ExerciseProgress.objects.select_for_update().get_or_create(
        user_id=submission.user_id, exercise_id=submission.exercise_id
    )
    fields = ["last_submission", "last_activity_at"]
    progress.last_submission = submission
    progress.last_activity_at = now
    if status in (Submission.Status.PASSED, Submission.Status.FAILED):
        progress.attempts += 1
        fields.append("attempts")
        if status == Submission.Status.PASSED:
            if progress.status != ExerciseProgress.Status.PASSED:
                progress.status = ExerciseProgress.Status.PASSED
                progress.passed_at = now
                fields += ["status", "passed_at"]
        else:
            progress.failed_attempts += 1
            fields.append("failed_attempts")
            if progress.status == ExerciseProgress.Status.NOT_STARTED:
                progress.status = ExerciseProgress.Status.ATTEMPTED
                fields.append("status")
    progress.save(update_fields=fields)
    _push(submission.lab_session_id, submission_state(submission, progress))
    return submission


@transaction.atomic
def grade_submission_failed(*, submission_id: int, message: str) -> Submission | None:
    """Give up on a submission the infrastructure could not grade (retries exhausted)."""
    submission = Submission.objects.select_for_update().filter(pk=submission_id).first()
    if submission is None or submission.is_finished:
        return None
    submission.status = Submission.Status.ERROR
    submission.error = message[:4000]
    submission.finished_at = timezone.now()
    submission.lease_until = None
    submission.save(update_fields=["status", "error", "finished_at", "lease_until"])
    progress = ExerciseProgress.objects.filter(user_id=submission.user_id, exercise_id=submission.exercise_id).first()
    _push(submission.lab_session_id, submission_state(submission, progress))
    return submission


def requeue_stale_submissions() -> int:
    """Enqueue again what no worker holds: running with an expired lease, or
    queued for longer than GRADER_REQUEUE_AFTER seconds (a lost message)."""
    from grader.tasks import grade

    stale = list(
        Submission.objects.stale(timezone.now(), queued_for=float(_setting("GRADER_REQUEUE_AFTER", 60))).values_list(
            "pk", flat=True
        )[:500]
    )
    queue = _setting("GRADER_QUEUE", None)
    for pk in stale:
        if queue:
            grade.apply_async((pk,), queue=queue)
        else:
            grade.delay(pk)
    return len(stale)
