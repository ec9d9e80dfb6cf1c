"""Writes of the labs app: the lifecycle of a lab session.

    start ──> starting ──(provision task)──> ready ──(stop / idle / expiry)──> stopping ──> stopped
                  └──(provisioning failed)──> failed ──(retry = start again)

    ready ──(pause)──> pausing ──(pause task)──> paused ──(resume)──> resuming ──(resume task)──> ready
                                                   └──(discard = stop / LAB_PAUSED_RETENTION)──> stopping

A paused session keeps its sandbox (runtimed's ``pause``: no process, no memory, the disk
kept), so resuming is the same session and the same sandbox, never a second one: the
partial unique constraint counts paused sessions as open, and starting the lab again
returns the paused session, whose page offers Resume or Discard.

The view calls a service; the service changes rows in one transaction and,
only after commit, enqueues the Celery task and pushes the new state to the
page (CONVENTIONS.md #3, #4). Provisioning and release talk to the sandbox
backend and are idempotent: a retried task finds the sandbox it created
before through its ``session`` label instead of creating a second one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, connections, transaction
from django.db.models import F, Q, Sum
from django.utils import timezone

from courses.models import Lab
from labs import push, queuepush, sandboxes, selectors
from labs.models import LabSession

log = logging.getLogger(__name__)


class LabUnavailable(Exception):
    """The lab cannot be started (disabled, archived); the message says why."""


class SandboxLimitReached(Exception):
    """The student already runs as many sandboxes as allowed."""


class PauseRefused(Exception):
    """The lab cannot be paused or resumed now (backend, quota, state); the message says why."""


class ProvisionBusy(Exception):
    """Another worker holds a live provisioning lease on the session: look again in ``retry_in`` s."""

    def __init__(self, retry_in: float) -> None:
        super().__init__(f"another worker is building this session's sandbox; retry in {retry_in:.0f}s")
        self.retry_in = retry_in


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
        # a paused lab is kept (and deleted after) this moment
        "paused_until": session.paused_until.isoformat() if session.paused_until else None,
        "can_pause": pausable(session),
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

    ``left``: a session that just left the queue (claimed by a worker, or stopped).
    ``builds_changed``: a sandbox just became ready, so the estimate may have changed for
    everyone waiting (looked at here: one query). The push itself is coalesced across
    changes and processes, at most one batch a second (labs/queuepush.py): a class's herd
    costs O(N) messages a second, not O(N) per change."""
    if left is None and not builds_changed:
        return

    def send() -> None:
        if left is None:
            try:
                recent = selectors.recent_build_seconds(selectors.RECENT_BUILDS + 1)
                slots = selectors.provisioning_slots()
                builds = recent[: selectors.RECENT_BUILDS]
                if selectors.wait_estimate(ahead=0, builds=builds, slots=slots) == selectors.wait_estimate(
                    ahead=0, builds=recent[1:], slots=slots
                ):
                    return
            except Exception:
                log.warning("could not compute the provisioning estimate", exc_info=True)
                return
        queuepush.changed()

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

    existing = LabSession.objects.open().select_for_update().filter(user=user, lab=lab).first()
    if existing is not None:
        return existing  # a paused one too: its page offers Resume or Discard
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
        return LabSession.objects.open().get(user=user, lab=lab)
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
    if session.status in (LabSession.Status.PAUSING, LabSession.Status.RESUMING):
        # runtimed is stopping or starting it right now: never remove a sandbox half-way
        raise PauseRefused(f"The lab is {session.get_status_display().lower()}; try again in a few seconds.")
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
    # a shell reopened after a resume started where it was: later ones start at home
    locked.resume_cwds = {k: v for k, v in locked.resume_cwds.items() if k != str(number)}
    locked.save(update_fields=["terminals", "resume_cwds"])
    session.terminals = locked.terminals
    session.resume_cwds = locked.resume_cwds
    _push(locked)


# --- what the tasks do ------------------------------------------------------------


# A worker that builds a session's sandbox holds it by a lease it renews every
# PROVISION_HEARTBEAT seconds while it builds (an image build or a wait for capacity can take
# minutes). A worker killed mid-build stops renewing: within PROVISION_LEASE another worker
# takes the session over (the redelivered task retries when the lease ends; the beat's
# requeue_stale_provisioning catches a lost message), instead of the student waiting for
# the task's whole time limit or the lab's maximum duration.
PROVISION_LEASE = timedelta(seconds=120)
PROVISION_HEARTBEAT = 30.0
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
        held = (
            LabSession.objects.filter(pk=session_id, status=LabSession.Status.STARTING, provision_lease_until__gte=now)
            .values_list("provision_lease_until", flat=True)
            .first()
        )
        if held is not None:
            raise ProvisionBusy((held - now).total_seconds() + 1)
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


@contextmanager
def _provision_lease_kept(session_pk: Any) -> Iterator[None]:
    """Renew the provisioning lease every PROVISION_HEARTBEAT seconds until the block ends
    (a thread of its own, with its own database connection, closed when it stops)."""
    stop = threading.Event()

    def renew() -> None:
        try:
            while not stop.wait(PROVISION_HEARTBEAT):
                LabSession.objects.filter(pk=session_pk, status=LabSession.Status.STARTING).update(
                    provision_lease_until=timezone.now() + PROVISION_LEASE
                )
        except Exception:
            log.warning("renewing the provisioning lease of session %s failed", session_pk, exc_info=True)
        finally:
            connections.close_all()

    thread = threading.Thread(target=renew, name=f"lease-{session_pk}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)


def lab_session_provision(*, session_id: str) -> LabSession | None:
    """Build the sandbox of a starting session (idempotent; run by a task). Raises
    ProvisionBusy while another worker holds a live lease on it."""
    session = _claim_for_provisioning(session_id)
    if session is None or session.status != LabSession.Status.STARTING:
        return None
    with _provision_lease_kept(session.pk):
        return _provision(session)


def _provision(session: LabSession) -> LabSession | None:
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
            # the kubernetes backend waits for room while every lab node is full: the page says so
            sandbox_id = backend.create(spec, on_wait=lambda message: _progress(session, "waiting", message))
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


def requeue_stale_provisioning() -> int:
    """Enqueue again the starting sessions whose provisioning lease ran out: the worker
    that claimed them died mid-build (it renews its lease while alive) and its task's
    redelivery may be lost or already spent. The claim's conditional update makes a
    duplicate harmless, and LAB_PROVISION_ATTEMPTS bounds the attempts."""
    from labs.tasks import provision_sandbox

    stale = list(
        LabSession.objects.filter(
            status=LabSession.Status.STARTING, provision_lease_until__lt=timezone.now()
        ).values_list("pk", flat=True)[:500]
    )
    for pk in stale:
        provision_sandbox.delay(str(pk))
    return len(stale)


def expire_sessions() -> int:
    """End live sessions past LAB_MAX_DURATION."""
    count = 0
    for session in LabSession.objects.expired_at(timezone.now()):
        lab_session_stop(session=session, reason=LabSession.EndReason.EXPIRED)
        count += 1
    return count


# --- resumable labs: pause, resume, expiry ------------------------------------------


TRANSITION_LEASE = timedelta(seconds=300)  # the pause/resume tasks' own time limit


def pausable(session: LabSession) -> bool:
    """Whether the session's backend can pause a lab (the page then offers Pause)."""
    try:
        return bool(getattr(sandboxes.backend_for(session.backend), "supports_pause", False))
    except sandboxes.SandboxError:
        return False


def _size(n: int) -> str:
    for unit, factor in (("GB", 2**30), ("MB", 2**20), ("kB", 2**10)):
        if n >= factor:
            return f"{n / factor:.1f} {unit}"
    return f"{n} bytes"


def lab_session_pause(*, session: LabSession) -> LabSession:
    """Ask for ``session``'s sandbox to be paused (kept on disk, no process) by a task.

    Refused (``PauseRefused``, with the reason) where the backend cannot pause, when the
    session is not running, or when the student's paused labs and this one together would
    keep more than LAB_PAUSED_QUOTA of disk."""
    labs = sandboxes.backend_for(session.backend)
    if not labs.supports_pause:
        raise PauseRefused(
            f"Labs cannot be paused on this server (the {session.backend} sandbox backend cannot keep a "
            "stopped sandbox). Stop the lab instead: its sandbox is discarded."
        )
    if session.status != LabSession.Status.READY or not session.sandbox_id:
        if session.status in (LabSession.Status.PAUSING, LabSession.Status.PAUSED):
            return session
        raise PauseRefused("Only a running lab can be paused.")
    # what the host keeps for it, measured now with the session's own credential (read)
    size = labs.disk_image_bytes(session.sandbox_id, token=session.runtime_token)
    return _claim_pause(session, size)


@transaction.atomic
def _claim_pause(session: LabSession, size: int) -> LabSession:
    from labs.tasks import pause_sandbox

    # One student's pauses one at a time (the quota is a sum): the user row's lock on
    # PostgreSQL; on SQLite the claim below is the transaction's first write, which
    # serialises writers, and a concurrent one fails rather than overshoot.
    if connection.features.has_select_for_update:
        get_user_model().objects.select_for_update().filter(pk=session.user_id).first()
    claimed = LabSession.objects.filter(pk=session.pk, status=LabSession.Status.READY).update(
        status=LabSession.Status.PAUSING, paused_bytes=size, provision_lease_until=None
    )
    locked = LabSession.objects.get(pk=session.pk)
    if not claimed:
        if locked.status in (LabSession.Status.PAUSING, LabSession.Status.PAUSED):
            return locked
        raise PauseRefused("Only a running lab can be paused.")
    kept = LabSession.objects.kept().filter(user_id=session.user_id).aggregate(total=Sum("paused_bytes"))["total"]
    quota = settings.LAB_PAUSED_QUOTA
    if (kept or 0) > quota:
        transaction.set_rollback(True)
        others = (kept or 0) - size
        raise PauseRefused(
            f"Not enough room to keep this lab: it uses {_size(size)} of disk, your paused labs already keep "
            f"{_size(others)}, and you may keep {_size(quota)} in all. Discard a paused lab (My progress lists "
            "them) or stop this one."
        )
    _add_progress(locked, "pausing", "Pausing: stopping every process, keeping the files")
    locked.save(update_fields=["progress"])
    pause_sandbox.delay_on_commit(str(locked.pk))
    _push(locked)
    return locked


def _claim_transition(session_id: str, status: str) -> LabSession | None:
    """Claim a pausing/resuming session for one worker (a lease, as provisioning's)."""
    now = timezone.now()
    claimed = (
        LabSession.objects.filter(pk=session_id, status=status)
        .filter(Q(provision_lease_until__isnull=True) | Q(provision_lease_until__lt=now))
        .update(provision_lease_until=now + TRANSITION_LEASE)
    )
    return LabSession.objects.get(pk=session_id) if claimed else None


def lab_session_do_pause(*, session_id: str) -> LabSession | None:
    """Pause the sandbox of a pausing session (run by a task; a second delivery finds nothing)."""
    session = _claim_transition(session_id, LabSession.Status.PAUSING)
    if session is None:
        return None
    labs = sandboxes.backend_for(session.backend)
    try:
        out = labs.pause(session.sandbox_id)
    except sandboxes.SandboxGone:
        with transaction.atomic():
            LabSession.objects.filter(pk=session.pk).update(status=LabSession.Status.READY)
        return lab_session_stop(session=session, reason=LabSession.EndReason.LOST)
    except sandboxes.SandboxError as exc:
        if labs.status(session.sandbox_id) != "paused":  # paused all the same: the answer was lost
            with transaction.atomic():
                locked = LabSession.objects.select_for_update().get(pk=session.pk)
                locked.status = LabSession.Status.READY
                locked.paused_bytes, locked.provision_lease_until = 0, None
                locked.error = f"The lab could not be paused: {exc}"[-4000:]
                locked.save(update_fields=["status", "paused_bytes", "provision_lease_until", "error"])
                _push(locked)
            log.warning("lab session %s could not be paused: %s", session.pk, exc)
            if labs.status(session.sandbox_id) is None:
                return lab_session_stop(session=locked, reason=LabSession.EndReason.LOST)
            return locked
        out = {}
    shells = out.get("shells") or {}
    with transaction.atomic():
        locked = LabSession.objects.select_for_update().get(pk=session.pk)
        now = timezone.now()
        locked.resume_cwds = {
            number: str(shells[pty]) for number, pty in locked.terminals.items() if isinstance(shells.get(pty), str)
        }
        locked.terminals = {}
        locked.status = LabSession.Status.PAUSED
        locked.paused_at = now
        locked.paused_until = now + timedelta(seconds=settings.LAB_PAUSED_RETENTION)
        locked.paused_bytes = max(locked.paused_bytes, int(out.get("disk_image_bytes") or 0))
        locked.provision_lease_until = None
        locked.error = ""
        _add_progress(locked, "paused", "Paused: files, containers and cluster kept, no process running")
        locked.save(
            update_fields=[
                "resume_cwds",
                "terminals",
                "status",
                "paused_at",
                "paused_until",
                "paused_bytes",
                "provision_lease_until",
                "error",
                "progress",
            ]
        )
        _push(locked)
    return locked


@transaction.atomic
def lab_session_resume(*, session: LabSession) -> LabSession:
    """Ask for a paused session's sandbox to run again (the same sandbox, by a task)."""
    from labs.tasks import resume_sandbox

    locked = LabSession.objects.select_for_update().get(pk=session.pk)
    if locked.status in (LabSession.Status.RESUMING, LabSession.Status.READY):
        return locked
    if locked.status != LabSession.Status.PAUSED:
        raise PauseRefused("Only a paused lab can be resumed.")
    running = LabSession.objects.filter(
        user_id=locked.user_id, status__in=(*LabSession.LIVE, LabSession.Status.RESUMING)
    ).count()
    if running >= settings.LAB_MAX_LIVE_PER_STUDENT:
        raise SandboxLimitReached(
            f"You already have {running} lab sandbox{'es' if running != 1 else ''} running, the most allowed "
            f"at once. Stop or pause one of them (My progress lists them) and resume this one again."
        )
    locked.status = LabSession.Status.RESUMING
    locked.provision_lease_until = None
    locked.error = ""
    _add_progress(locked, "resuming", "Resuming: starting your sandbox again")
    locked.save(update_fields=["status", "provision_lease_until", "error", "progress"])
    resume_sandbox.delay_on_commit(str(locked.pk))
    _push(locked)
    return locked


def lab_session_do_resume(*, session_id: str) -> LabSession | None:
    """Start a resuming session's sandbox again and give it fresh credentials (a task)."""
    session = _claim_transition(session_id, LabSession.Status.RESUMING)
    if session is None:
        return None
    labs = sandboxes.backend_for(session.backend)
    lifetime = _time_limit(session.lab)
    try:
        labs.resume(session.sandbox_id)
        runtime_token = labs.token(session.sandbox_id, "web", lifetime + WEB_TOKEN_SLACK)
        grader_token = labs.token(session.sandbox_id, "grader", lifetime + WEB_TOKEN_SLACK)
    except sandboxes.SandboxGone:
        with transaction.atomic():
            LabSession.objects.filter(pk=session.pk).update(status=LabSession.Status.READY)
        return lab_session_stop(session=session, reason=LabSession.EndReason.LOST)
    except sandboxes.SandboxError as exc:
        with transaction.atomic():
            locked = LabSession.objects.select_for_update().get(pk=session.pk)
            locked.status = LabSession.Status.PAUSED  # runtimed leaves it paused, its disk intact
            locked.provision_lease_until = None
            locked.error = f"The lab could not be resumed: {exc}. Your work is still kept; try again."[-4000:]
            locked.save(update_fields=["status", "provision_lease_until", "error"])
            _push(locked)
        log.warning("lab session %s could not be resumed: %s", session.pk, exc)
        return locked
    with transaction.atomic():
        locked = LabSession.objects.select_for_update().get(pk=session.pk)
        now = timezone.now()
        locked.runtime_token, locked.grader_token = runtime_token, grader_token
        locked.status = LabSession.Status.READY
        locked.ready_at = locked.last_activity_at = now
        locked.expires_at = now + timedelta(seconds=lifetime)
        locked.paused_at = locked.paused_until = None
        locked.paused_bytes = 0
        locked.provision_lease_until = None
        locked.error = ""
        _add_progress(locked, "ready", "Resumed: containers that were running started again")
        locked.save(
            update_fields=[
                "runtime_token",
                "grader_token",
                "status",
                "ready_at",
                "last_activity_at",
                "expires_at",
                "paused_at",
                "paused_until",
                "paused_bytes",
                "provision_lease_until",
                "error",
                "progress",
            ]
        )
        _push(locked)
    return locked


def expire_paused_sessions() -> int:
    """Discard paused sessions kept longer than LAB_PAUSED_RETENTION (their sandbox is removed)."""
    count = 0
    for session in LabSession.objects.pause_expired_at(timezone.now()):
        lab_session_stop(session=session, reason=LabSession.EndReason.PAUSE_EXPIRED)
        count += 1
    return count


def end_lost_placements() -> int:
    """SANDBOX_BACKEND=kubernetes: end the ready sessions whose placeholder Pod is gone (its
    node drained or lost, the Pod preempted), saying so on the page; starting the lab again
    lets Kubernetes place it on a node that is there. Sessions are read before the Pods, so a
    session that became ready meanwhile is never taken for lost."""
    live = list(LabSession.objects.filter(backend="kubernetes", status=LabSession.Status.READY).exclude(sandbox_id=""))
    if not live:
        return 0
    try:
        placed = sandboxes.backend_for("kubernetes").placements()
    except sandboxes.SandboxError:
        log.warning("could not list the placeholder Pods of lab sessions", exc_info=True)
        return 0
    count = 0
    for session in live:
        pod = session.sandbox_id.split("/", 1)[0]
        if pod in placed:
            continue
        with transaction.atomic():
            locked = LabSession.objects.select_for_update().get(pk=session.pk)
            if locked.status != LabSession.Status.READY or locked.sandbox_id != session.sandbox_id:
                continue
            locked.error = sandboxes.NODE_LOST
            locked.save(update_fields=["error"])
            lab_session_stop(session=locked, reason=LabSession.EndReason.LOST)
        count += 1
    return count
