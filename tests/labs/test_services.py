from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from labs import services
from labs.models import LabSession
from runtime.client import Client
from tests.factories import LabFactory, StudentFactory

pytestmark = pytest.mark.django_db


def test_start_creates_a_starting_session_and_enqueues_provisioning(django_capture_on_commit_callbacks) -> None:
    student, lab = StudentFactory.create(), LabFactory.create()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        session = services.lab_session_start(user=student, lab=lab)
    assert session.status == LabSession.Status.STARTING
    assert session.expires_at > timezone.now()
    # One callback enqueues the provisioning task, one pushes the state.
    assert len(callbacks) == 2


def test_start_twice_resumes_the_same_session(django_capture_on_commit_callbacks) -> None:
    student, lab = StudentFactory.create(), LabFactory.create()
    with django_capture_on_commit_callbacks(execute=False):
        first = services.lab_session_start(user=student, lab=lab)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        again = services.lab_session_start(user=student, lab=lab)
    assert again.pk == first.pk
    assert callbacks == []
    assert LabSession.objects.live().filter(user=student).count() == 1


def test_cap_on_live_sandboxes_per_student(settings, django_capture_on_commit_callbacks) -> None:
    settings.LAB_MAX_LIVE_PER_STUDENT = 2
    student = StudentFactory.create()
    with django_capture_on_commit_callbacks(execute=False):
        services.lab_session_start(user=student, lab=LabFactory.create())
        services.lab_session_start(user=student, lab=LabFactory.create())
        with pytest.raises(services.SandboxLimitReached, match="2 lab sandboxes running"):
            services.lab_session_start(user=student, lab=LabFactory.create())
    # A classmate is not affected by this student's cap.
    with django_capture_on_commit_callbacks(execute=False):
        services.lab_session_start(user=StudentFactory.create(), lab=LabFactory.create())


def test_a_disabled_lab_cannot_be_started() -> None:
    lab = LabFactory.create(enabled=False, disabled_reason="Needs the Docker engine, which arrives later.")
    with pytest.raises(services.LabUnavailable, match="Docker engine"):
        services.lab_session_start(user=StudentFactory.create(), lab=lab)


def test_stop_without_a_sandbox_ends_at_once(django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=False):
        session = services.lab_session_start(user=StudentFactory.create(), lab=LabFactory.create())
        stopped = services.lab_session_stop(session=session)
    assert stopped.status == LabSession.Status.STOPPED
    assert stopped.end_reason == LabSession.EndReason.STOPPED


def test_reset_ends_the_session_and_starts_a_fresh_one(django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=False):
        session = services.lab_session_start(user=StudentFactory.create(), lab=LabFactory.create())
        fresh = services.lab_session_reset(session=session)
    session.refresh_from_db()
    assert fresh.pk != session.pk
    assert session.end_reason == LabSession.EndReason.RESET
    assert fresh.status == LabSession.Status.STARTING


def test_idle_ready_sessions_are_culled_and_active_ones_kept(settings, django_capture_on_commit_callbacks) -> None:
    settings.LAB_IDLE_TIMEOUT = 600
    now = timezone.now()
    idle = LabSession.objects.create(
        user=StudentFactory.create(),
        lab=LabFactory.create(),
        status="ready",
        sandbox_id="sb-idle",
        last_activity_at=now - timedelta(seconds=900),
        expires_at=now + timedelta(hours=1),
    )
    active = LabSession.objects.create(
        user=StudentFactory.create(),
        lab=LabFactory.create(),
        status="ready",
        sandbox_id="sb-active",
        last_activity_at=now - timedelta(seconds=60),
        expires_at=now + timedelta(hours=1),
    )
    with django_capture_on_commit_callbacks(execute=False):
        assert services.cull_idle_sessions() == 1
    idle.refresh_from_db()
    active.refresh_from_db()
    assert (idle.status, idle.end_reason) == ("stopping", "idle")
    assert active.status == "ready"


def test_sessions_past_their_time_limit_expire(django_capture_on_commit_callbacks) -> None:
    now = timezone.now()
    over = LabSession.objects.create(
        user=StudentFactory.create(),
        lab=LabFactory.create(),
        status="ready",
        sandbox_id="sb-over",
        expires_at=now - timedelta(seconds=1),
    )
    with django_capture_on_commit_callbacks(execute=False):
        assert services.expire_sessions() == 1
    over.refresh_from_db()
    assert over.end_reason == LabSession.EndReason.EXPIRED


def test_provision_builds_a_real_sandbox_and_release_removes_it(
    runtime_socket: str, django_capture_on_commit_callbacks
) -> None:
    lab = LabFactory.create(environment={"image": "busybox", "setup": "echo prepared > /root/ready.txt"})
    with django_capture_on_commit_callbacks(execute=False):
        session = services.lab_session_start(user=StudentFactory.create(), lab=lab)
        ready = services.lab_session_provision(session_id=str(session.pk))
    assert ready is not None and ready.status == LabSession.Status.READY
    stages = [p["stage"] for p in ready.progress]
    assert stages[0] == "queued" and stages[-1] == "ready" and "image-ready" in stages
    with Client(runtime_socket) as rt:
        result = rt.exec(ready.sandbox_id, ["cat", "/root/ready.txt"], timeout=10)
        assert result.stdout_text.strip() == "prepared"
        assert rt.get_sandbox(ready.sandbox_id)["spec"]["labels"]["session"] == str(session.pk)
    # A retried task finds nothing to do: the session is no longer starting.
    assert services.lab_session_provision(session_id=str(session.pk)) is None

    with django_capture_on_commit_callbacks(execute=False):
        services.lab_session_stop(session=ready)
    services.lab_session_release(session_id=str(session.pk))
    session.refresh_from_db()
    assert session.status == LabSession.Status.STOPPED
    with Client(runtime_socket) as rt:
        assert all(box["id"] != ready.sandbox_id for box in rt.list_sandboxes())


def test_provision_failure_is_shown_with_its_reason(runtime_socket: str, django_capture_on_commit_callbacks) -> None:
    lab = LabFactory.create(environment={"image": "busybox", "setup": "echo the setup broke >&2; exit 3"})
    with django_capture_on_commit_callbacks(execute=False):
        session = services.lab_session_start(user=StudentFactory.create(), lab=lab)
        failed = services.lab_session_provision(session_id=str(session.pk))
    assert failed is not None and failed.status == LabSession.Status.FAILED
    assert "the setup broke" in failed.error
    with Client(runtime_socket) as rt:
        labels = [(box.get("spec") or {}).get("labels", {}).get("session") for box in rt.list_sandboxes()]
    assert str(session.pk) not in labels


def test_a_labs_own_time_limit_shortens_the_session(settings, django_capture_on_commit_callbacks) -> None:
    settings.LAB_MAX_DURATION = 7200
    lab = LabFactory.create(environment={"image": "busybox", "time_limit": 600})
    with django_capture_on_commit_callbacks(execute=False):
        session = services.lab_session_start(user=StudentFactory.create(), lab=lab)
    assert 590 <= (session.expires_at - session.created_at).total_seconds() <= 600
