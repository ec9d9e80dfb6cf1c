"""A provisioning worker killed mid-build: its session is taken over, not left starting.

The worker that claims a starting session holds it by a lease it renews while it builds
(labs.services.PROVISION_LEASE / PROVISION_HEARTBEAT). Killed, it stops renewing; the
task's redelivery, finding the lease still live, retries when it ends, and the beat's
``requeue_stale_provisioning`` enqueues what has no live lease any more. Before, the lease
was the task's whole time limit (900 s) and a redelivery that found it live was simply
acknowledged: the student's lab said "starting" until the lab's maximum duration.

The backend here is a stand-in (the build itself is not under test: tests/labs/test_services.py
builds for real); the lease, the claim, the retry and the requeue are the real ones on the
test database. Enqueued tasks are recorded, not sent: the suite's real Celery worker would
otherwise take them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from labs import sandboxes, services, tasks
from labs.models import LabSession
from tests.factories import LabFactory, StudentFactory


class StandInSandboxes:
    """Answers the calls provisioning makes; ``create`` may be held open by the test."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.release.set()
        self.creating = threading.Event()

    def ensure_image(self, image: str) -> None:
        pass

    def find(self, *, session: str) -> str | None:
        return None

    def create(self, spec: dict[str, Any], on_wait: Callable[[str], None] | None = None) -> str:
        self.creating.set()
        assert self.release.wait(30)
        return "sb-standin"

    def token(self, sandbox_id: str, role: str, lifetime: float) -> str:
        return f"token-{role}"


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> StandInSandboxes:
    backend = StandInSandboxes()
    monkeypatch.setattr(sandboxes, "backend_for", lambda name: backend)
    return backend


@pytest.fixture
def enqueued(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    sent: list[str] = []
    monkeypatch.setattr(tasks.provision_sandbox, "delay", lambda session_id: sent.append(session_id))
    return sent


def _starting(**fields: Any) -> LabSession:
    now = timezone.now()
    return LabSession.objects.create(
        user=StudentFactory.create(), lab=LabFactory.create(), expires_at=now + timedelta(hours=2), **fields
    )


@pytest.mark.django_db
def test_a_second_delivery_during_a_live_lease_is_retried_when_it_ends(
    stand_in: StandInSandboxes, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = _starting(provision_lease_until=timezone.now() + timedelta(seconds=60), provision_attempts=1)
    with pytest.raises(services.ProvisionBusy) as busy:
        services.lab_session_provision(session_id=str(session.pk))
    assert 55 < busy.value.retry_in <= 62

    retried: list[float] = []

    class Retry(Exception):
        pass

    def retry(countdown: float, **_: Any) -> Exception:
        retried.append(countdown)
        return Retry()

    monkeypatch.setattr(tasks.provision_sandbox, "retry", retry)
    with pytest.raises(Retry):
        tasks.provision_sandbox(str(session.pk))
    assert len(retried) == 1 and 55 < retried[0] <= 62
    session.refresh_from_db()
    assert session.status == LabSession.Status.STARTING and session.provision_attempts == 1  # not claimed


@pytest.mark.django_db
def test_a_session_that_is_not_starting_any_more_is_no_retry(stand_in: StandInSandboxes) -> None:
    session = _starting(status=LabSession.Status.STOPPED, provision_lease_until=timezone.now() + timedelta(seconds=60))
    assert services.lab_session_provision(session_id=str(session.pk)) is None


@pytest.mark.django_db
def test_only_sessions_whose_lease_ran_out_are_enqueued_again(enqueued: list[str]) -> None:
    now = timezone.now()
    lost = _starting(provision_lease_until=now - timedelta(seconds=1), provision_attempts=1)
    building = _starting(provision_lease_until=now + timedelta(seconds=90), provision_attempts=1)
    waiting = _starting()  # never claimed: its task is still in the queue
    ready = _starting(status=LabSession.Status.READY, provision_lease_until=now - timedelta(seconds=1))
    assert services.requeue_stale_provisioning() == 1
    assert enqueued == [str(lost.pk)]
    assert {building.pk, waiting.pk, ready.pk}.isdisjoint(enqueued)


@pytest.mark.django_db
def test_a_dead_workers_session_is_taken_over_and_built(stand_in: StandInSandboxes, enqueued: list[str]) -> None:
    session = _starting(provision_lease_until=timezone.now() - timedelta(seconds=1), provision_attempts=1)
    assert services.requeue_stale_provisioning() == 1
    assert enqueued == [str(session.pk)]
    ready = services.lab_session_provision(session_id=enqueued[0])
    assert ready is not None and ready.status == LabSession.Status.READY
    assert ready.provision_attempts == 2 and ready.sandbox_id == "sb-standin"
    assert services.requeue_stale_provisioning() == 0 and len(enqueued) == 1  # built: nothing more


@pytest.mark.django_db(transaction=True)
def test_a_living_worker_renews_its_lease_while_it_builds(
    stand_in: StandInSandboxes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(services, "PROVISION_HEARTBEAT", 0.2)
    monkeypatch.setattr(services, "PROVISION_LEASE", timedelta(seconds=2))
    session = _starting()
    stand_in.release.clear()
    result: list[Any] = []
    worker = threading.Thread(target=lambda: result.append(services.lab_session_provision(session_id=str(session.pk))))
    worker.start()
    try:
        assert stand_in.creating.wait(30)
        first = LabSession.objects.get(pk=session.pk).provision_lease_until
        time.sleep(3)  # longer than the lease itself: only renewal keeps it live
        later = LabSession.objects.get(pk=session.pk).provision_lease_until
        assert first is not None and later is not None and later > first
        assert later > timezone.now()
        # meanwhile a second delivery is told to wait, not given the session
        with pytest.raises(services.ProvisionBusy):
            services.lab_session_provision(session_id=str(session.pk))
    finally:
        stand_in.release.set()
        worker.join(30)
    assert result and result[0].status == LabSession.Status.READY
