"""Writes of the labs app: the lifecycle of a lab session.

    start ──> starting ──(provision task)──> ready ──(stop / idle / expiry)──> stopping ──> stopped
                  └──(provisioning failed)──> failed ──(retry = start again)

The view calls a service; the service changes rows in one transaction and,
only after commit, enqueues the Celery task and pushes the new state to the
page (CONVENTIONS.md #3, #4). Provisioning and release talk to the sandbox
backend and are idempotent: a retried task finds the sandbox it created
before through its ``session`` label instead of creating a second one.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from courses.models import Lab
from labs import push, sandboxes, selectors
from labs.models import LabSession

log = logging.getLogger(__name__)


class LabUnavailable(Exception):
    """The lab cannot be started (disabled, archived); the message says why."""


class SandboxLimitReached(Exception):
    """The student already runs as many sandboxes as allowed."""


# --- pushing state to the page ------------------------------------------------


def session_state(session: LabSession) -> dict[str, Any]:
    """What the lab page shows about a session (also its first message)."""
    now = timezone.now()
    idle_deadline = session.last_activity_at + timedelta(seconds=settings.LAB_IDLE_TIMEOUT)
    return {
        "type": "status",
        "session": str(session.pk),
        "status": session.status,
        "end_reason": session.end_reason,
        "progress": session.progress,
        "error": session.error,
        "expires_at": session.expires_at.isoformat(),
        "seconds_left": max(0, int((session.expires_at - now).total_seconds())),
        "idle_deadline": idle_deadline.isoformat(),
        "warn_before": settings.LAB_WARN_BEFORE,
        "terminals": sorted(int(n) for n in session.terminals),
        # Waiting for a provisioning worker: {"ahead": N, "estimate_seconds": S or None}.
        "queue": selectors.queue_position_of(session),
    }


def _push(session: LabSession) -> None:
    """Send the session's state to its page once the transaction commits."""
    state = session_state(session)
    group = session.group_name

    def send() -> None:
        try:
            push.group_send(group, {"type": "lab.status", "state": state})
        except Exception:
            log.warning("could not push the state of lab session %s", state["session"], exc_info=True)

    transaction.on_commit(send)


def _push_queue(*, left: LabSession | None = None, builds_changed: bool = False) -> None:
    """After commit, tell the sessions waiting for a provisioning worker their new place.

    ``left``: a session that just left the queue (claimed by a worker, or stopped) —
    only those that waited behind it moved. ``builds_changed``: a sandbox just became
    ready, so the estimate may have changed for everyone waiting. One query for the
    queue and one for recent builds, whatever its length; the events consumer sends
    the page at most one such update a second (LabEventsConsumer.lab_queue)."""
    if left is None and not builds_changed:
        return
    moved_after = (left.created_at, str(left.pk)) if left is not None else None

    def send() -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        try:
            now = timezone.now()
            queue = selectors.provisioning_queue(now)
            if not queue:
                return
            recent = selectors.recent_build_seconds(selectors.RECENT_BUILDS + 1)
            builds = recent[: selectors.RECENT_BUILDS]
            slots = selectors.provisioning_slots()
            estimate_moved = builds_changed and (
                selectors.wait_estimate(ahead=0, builds=builds, slots=slots)
                != selectors.wait_estimate(ahead=0, builds=recent[1:], slots=slots)
            )
            events = [
                (f"lab.{pk}", selectors.queue_position(ahead=ahead, builds=builds, slots=slots))
                for ahead, (pk, created_at) in enumerate(queue)
                if estimate_moved or (moved_after is not None and (created_at, str(pk)) > moved_after)
            ]
        except Exception:
            log.warning("could not compute the provisioning queue", exc_info=True)
            return

        if events:
            try:
                push.group_send_many([(group, {"type": "lab.queue", "queue": pos}) for group, pos in events])
            except Exception:
                log.warning("could not push the provisioning queue", exc_info=True)

    transaction.on_commit(send)


def _add_progress(session: LabSession, stage: str, message: str) -> None:
    session.progress = [
        *session.progress,
        {"stage": stage, "message": message, "at": timezone.now().isoformat()},
    ]


# --- the student's actions ----------------------------------------------------


def _time_limit(lab: Lab) -> int:
    """Seconds a session of ``lab`` may last: the lab's own limit, capped by LAB_MAX_DURATION."""
    own = (lab.environment or {}).get("time_limit")
    return min(int(own), settings.LAB_MAX_DURATION) if own else settings.LAB_MAX_DURATION


@transaction.atomic
def lab_session_start(*, user: Any, lab: Lab) -> LabSession:
    """Start ``lab`` for ``user``, or return the live session they already have."""
    from labs.tasks import provision_sandbox

    existing = LabSession.objects.live().select_for_update().filter(user=user, lab=lab).first()
    if existing is not None:
        return existing
    if lab.archived_at is not None or not lab.enabled:
        raise LabUnavailable(lab.disabled_reason or "This lab is not available at the moment.")
    live = LabSession.objects.live().filter(user=user).count()
    if live >= settings.LAB_MAX_LIVE_PER_STUDENT:
        raise SandboxLimitReached(
            f"You already have {live} lab sandbox{'es' if live != 1 else ''} running, the most allowed "
            f"at once. Stop one of them (My progress lists them) and try again."
        )
    now = timezone.now()
    try:
        with transaction.atomic():
            session = LabSession.objects.create(
                user=user,
                lab=lab,
                backend=settings.SANDBOX_BACKEND,
                expires_at=now + timedelta(seconds=_time_limit(lab)),
                last_activity_at=now,
            )
    except IntegrityError:
        # A concurrent request created it first: resume that one.
        return LabSession.objects.live().get(user=user, lab=lab)
    _add_progress(session, "queued", "Waiting for a worker to build your sandbox")
    session.save(update_fields=["progress"])
    provision_sandbox.delay_on_commit(str(session.pk))
    _push(session)
    return session


@transaction.atomic
def lab_session_stop(*, session: LabSession, reason: str = LabSession.EndReason.STOPPED) -> LabSession:
    """End ``session``; its sandbox is released by a task after commit."""
    from labs.tasks import release_sandbox

    session = LabSession.objects.select_for_update().get(pk=session.pk)
    if session.status in (LabSession.Status.STOPPING, LabSession.Status.STOPPED):
        return session
    if selectors.is_waiting_for_a_worker(session, timezone.now()):
        _push_queue(left=session)
    session.status = LabSession.Status.STOPPING if session.sandbox_id else LabSession.Status.STOPPED
    session.end_reason = reason
    session.ended_at = timezone.now()
    session.save(update_fields=["status", "end_reason", "ended_at"])
    if session.sandbox_id:
        release_sandbox.delay_on_commit(str(session.pk))
    _push(session)
    return session


@transaction.atomic
def lab_session_reset(*, session: LabSession) -> LabSession:
    """A fresh sandbox for the same lab: stop this session, start a new one."""
    lab_session_stop(session=session, reason=LabSession.EndReason.RESET)
    return lab_session_start(user=session.user, lab=session.lab)


def lab_session_record_activity(*, session: LabSession, at: Any = None) -> None:
    """Note activity (input, output, checks, heartbeats): it keeps the sandbox
    from being culled. Throttled to one write every few seconds."""
    now = at or timezone.now()
    if now - session.last_activity_at < timedelta(seconds=5):
        return
    LabSession.objects.filter(pk=session.pk, last_activity_at__lt=now).update(last_activity_at=now)
    session.last_activity_at = now


@transaction.atomic
def lab_session_open_terminal(*, session: LabSession, number: int, session_id: str) -> None:
    """Record the runtimed PTY session behind terminal ``number``."""
    locked = LabSession.objects.select_for_update().get(pk=session.pk)
    locked.terminals = {**locked.terminals, str(number): session_id}
    locked.save(update_fields=["terminals"])
    session.terminals = locked.terminals
    _push(locked)


# --- what the tasks do ------------------------------------------------------------


PROVISION_LEASE = timedelta(seconds=900)  # the provisioning task's own time limit
WEB_TOKEN_SLACK = 600.0  # the web credential outlives the session's time limit by this much


def _claim_for_provisioning(session_id: str) -> LabSession | None:
    """Claim a starting session for one worker, by a conditional update: a
    second delivery of the task (or a second task) while the first worker
    holds the lease finds nothing to do; a crashed worker's lease runs out."""
    now = timezone.now()
    claimed = (
        LabSession.objects.filter(pk=session_id, status=LabSession.Status.STARTING)
        .filter(Q(provision_lease_until__isnull=True) | Q(provision_lease_until__lt=now))
        .update(provision_lease_until=now + PROVISION_LEASE, provision_attempts=F("provision_attempts") + 1)
    )
    if not claimed:
        return None
    session = LabSession.objects.get(pk=session_id)
    _push_queue(left=session)  # those that waited behind it move up
    if session.provision_attempts > settings.LAB_PROVISION_ATTEMPTS:
        return _provision_failed(
            session, f"Gave up after {settings.LAB_PROVISION_ATTEMPTS} attempts to start the sandbox."
        )
    return session


def _progress(session: LabSession, stage: str, message: str) -> None:
    with transaction.atomic():
        locked = LabSession.objects.select_for_update().get(pk=session.pk)
        _add_progress(locked, stage, message)
        locked.save(update_fields=["progress"])
        session.progress = locked.progress
        _push(locked)


def lab_session_provision(*, session_id: str) -> LabSession | None:
    """Build the sandbox of a starting session (idempotent; run by a task)."""
    session = _claim_for_provisioning(session_id)
    if session is None or session.status != LabSession.Status.STARTING:
        return None
    backend = sandboxes.backend_for(session.backend)
    lab = session.lab
    try:
        spec = sandboxes.spec_for(lab, session=session)
        _progress(session, "image", f"Preparing the {spec['image']} image")
        backend.ensure_image(spec["image"])
        _progress(session, "image-ready", "Image ready")
        existing = backend.find(session=str(session.pk))
        if existing is None:
            _progress(
                session,
                "sandbox",
                "Creating your sandbox" + (" and running the lab's setup" if spec.get("setup") else ""),
            )
            sandbox_id = backend.create(spec)
        else:
            sandbox_id = existing
        _progress(session, "sandbox-ready", "Sandbox created")
        # The web tier and the graders act on this sandbox, and on no other, with these
        # credentials (runtime.auth): neither needs runtimed's admin token.
        lifetime = max(60.0, (session.expires_at - timezone.now()).total_seconds() + WEB_TOKEN_SLACK)
        runtime_token = backend.token(sandbox_id, "web", lifetime)
        grader_token = backend.token(sandbox_id, "grader", lifetime)
    except sandboxes.SandboxError as exc:
        return _provision_failed(session, str(exc))
    with transaction.atomic():
        locked = LabSession.objects.select_for_update().get(pk=session.pk)
        if locked.status != LabSession.Status.STARTING:
            # Stopped while we were building: give the sandbox back.
            locked.sandbox_id = sandbox_id
            locked.save(update_fields=["sandbox_id"])
            transaction.on_commit(lambda: backend.remove(sandbox_id))
            return locked
        now = timezone.now()
        locked.sandbox_id = sandbox_id
        locked.runtime_token = runtime_token
        locked.grader_token = grader_token
        locked.status = LabSession.Status.READY
        locked.ready_at = now
        locked.last_activity_at = now
        locked.error = ""
        _add_progress(locked, "ready", "Ready")
        locked.save(
            update_fields=[
                "sandbox_id",
                "runtime_token",
                "grader_token",
                "status",
                "ready_at",
                "last_activity_at",
                "error",
                "progress",
            ]
        )
        _push(locked)
        _push_queue(builds_changed=True)
    return locked


def _provision_failed(session: LabSession, message: str) -> LabSession:
    with transaction.atomic():
        locked = LabSession.objects.select_for_update().get(pk=session.pk)
        locked.status = LabSession.Status.FAILED
        locked.end_reason = LabSession.EndReason.FAILED
        locked.error = message[-4000:]
        locked.ended_at = timezone.now()
        _add_progress(locked, "failed", "Could not start the sandbox")
        locked.save(update_fields=["status", "end_reason", "error", "ended_at", "progress"])
        _push(locked)
    log.warning("lab session %s failed to start: %s", session.pk, message)
    return locked


def lab_session_release(*, session_id: str) -> None:
    """Remove the sandbox of a stopping session (idempotent; run by a task)."""
    session = LabSession.objects.filter(pk=session_id).first()
    if session is None or session.status not in (
        LabSession.Status.STOPPING,
        LabSession.Status.STOPPED,
    ):
        return
    if session.sandbox_id:
        sandboxes.backend_for(session.backend).remove(session.sandbox_id)
    with transaction.atomic():
        locked = LabSession.objects.select_for_update().get(pk=session.pk)
        if locked.status == LabSession.Status.STOPPING:
            locked.status = LabSession.Status.STOPPED
            locked.save(update_fields=["status"])
            _push(locked)


def cull_idle_sessions() -> int:
    """Stop ready sessions with no activity for LAB_IDLE_TIMEOUT."""
    cutoff = timezone.now() - timedelta(seconds=settings.LAB_IDLE_TIMEOUT)
    count = 0
    for session in LabSession.objects.idle_since(cutoff):
        lab_session_stop(session=session, reason=LabSession.EndReason.IDLE)
        count += 1
    return count


def expire_sessions() -> int:
    """End live sessions past LAB_MAX_DURATION."""
    count = 0
    for session in LabSession.objects.expired_at(timezone.now()):
        lab_session_stop(session=session, reason=LabSession.EndReason.EXPIRED)
        count += 1
    return count
