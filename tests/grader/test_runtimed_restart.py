"""A Check in flight when runtimed is killed -9 is retried and reaches its verdict, counted once.

A private runtimed (its own root and host resources, as tests/labs/test_terminal_restart.py),
a real Celery worker on a queue of this test, and a check that is still running inside the
sandbox when runtimed dies: the grader's exec loses its connection mid-request. That is the
platform's failure, not the student's: the claim is released and the task retries until
runtimed is back (grader.tasks), and the second grading finishes the submission, once.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from grader.models import ExerciseProgress, Submission
from runtime.client import Client as RuntimeClient
from runtime.sessions.holder import HOLDER_BUILT
from tests.factories import StepFactory, StudentFactory
from tests.grader.helpers import ExerciseFactory, ready_session, release, wait_finished, wait_status
from tests.grader.test_grading import _start_worker, _stop, check_url, client_for, post
from tests.runtime.conftest_daemon import private_daemon
from tests.runtime.daemon_helpers import RealDaemon

pytestmark = pytest.mark.django_db(transaction=True)

RESOURCES = [
    "--subnet",
    "10.239.144.0/20",
    "--bridge",
    "kltestrk",
    "--cgroup-parent",
    "kubelab-testrk",
    "--uid-start",
    str(3_450_000_000),
]


@pytest.fixture(scope="module")
def own_runtimed() -> Iterator[RealDaemon]:
    if os.geteuid() != 0:
        pytest.skip("runtimed needs root (it drives runc)")
    if not HOLDER_BUILT.is_file():
        pytest.skip("kl-pty-holder is not built (make agent)")
    with private_daemon("rtk-", RESOURCES, None) as d:
        yield d


def _exists(sock: str, sandbox_id: str, path: str) -> bool:
    try:
        with RuntimeClient(sock) as rt:
            return rt.exec(sandbox_id, ["test", "-f", path], timeout=5).ok
    except RuntimeError:  # runtime errors derive from RuntimeError
        return False


def test_a_check_in_flight_when_runtimed_dies_reaches_its_verdict_once(
    settings: Any, own_runtimed: RealDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    sock = str(own_runtimed.socket)
    settings.RUNTIME_SOCKET = sock
    queue = f"kubelab-rtkill-{os.getpid()}"
    settings.GRADER_QUEUE = queue
    monkeypatch.setenv("RUNTIME_SOCKET", sock)  # the worker's settings come from its environment
    student = StudentFactory.create()
    step = StepFactory.create()
    session = ready_session(student, step.lab)
    exercise = ExerciseFactory.create(
        step=step,
        checks=[
            {
                "type": "run",
                "name": "slow the first time",
                "command": "if [ -f /root/second ]; then exit 0; fi; touch /root/second; sleep 30",
                "timeout": 20,
            }
        ],
    )
    worker, worker_log = _start_worker(queue)
    try:
        response = post(client_for(student), check_url(session, exercise))
        submission_id = response.json()["submission"]["submission"]
        wait_status(submission_id, "running", timeout=60)
        deadline = time.monotonic() + 30
        while not _exists(sock, session.sandbox_id, "/root/second"):  # the check runs in the sandbox
            assert time.monotonic() < deadline, "the check never started"
            time.sleep(0.05)
        assert own_runtimed.proc is not None
        own_runtimed.proc.send_signal(signal.SIGKILL)  # the grader's exec is cut off mid-request
        own_runtimed.proc.wait(30)
        time.sleep(1)  # down for a moment: the retry meets a refused socket first
        own_runtimed.start()
        done = wait_finished(submission_id, timeout=150)
    finally:
        _stop(worker, worker_log)
        release(session)
    assert done.status == "passed", (done.status, done.error)  # the retry found /root/second
    assert done.grading_attempts >= 2  # claimed again after the claim was released
    assert Submission.objects.filter(user=student, exercise=exercise).count() == 1
    progress = ExerciseProgress.objects.get(user=student, exercise=exercise)
    assert progress.attempts == 1 and progress.status == ExerciseProgress.Status.PASSED


def test_a_grading_that_finds_runtimed_down_gives_its_claim_back(settings: Any, tmp_path: Any) -> None:
    """runtimed down when a grading starts (the sandbox's kubeconfig cannot be asked for):
    InfrastructureError, and the submission is queued again at once, so the task's retry
    claims it; it is not left running under a lease for the beat sweeper to find."""
    from datetime import timedelta

    from django.utils import timezone

    from grader import services
    from grader.checks import InfrastructureError
    from labs.models import LabSession

    settings.RUNTIME_SOCKET = str(tmp_path / "no-runtimed.sock")
    student = StudentFactory.create()
    step = StepFactory.create()
    now = timezone.now()
    session = LabSession.objects.create(
        user=student,
        lab=step.lab,
        status=LabSession.Status.READY,
        sandbox_id="0123456789ab",
        grader_token="a-grader-token",
        ready_at=now,
        expires_at=now + timedelta(hours=1),
    )
    exercise = ExerciseFactory.create(step=step, checks=[{"type": "kube", "kind": "Pod", "name": "web"}])
    submission = Submission.objects.create(user=student, exercise=exercise, lab_session=session, max_score=1)
    with pytest.raises(InfrastructureError, match="unreachable"):
        services.grade_submission(submission.pk)
    submission.refresh_from_db()
    assert submission.status == Submission.Status.QUEUED and submission.lease_until is None
    assert submission.grading_attempts == 1
    assert not ExerciseProgress.objects.filter(user=student, exercise=exercise, attempts__gt=0).exists()
