"""Grading end to end: the Check endpoint, a real Celery worker on real Redis,
checks run in a real runtimed sandbox, the verdict pushed to the events socket."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.test import Client as DjangoClient
from django.urls import reverse

from grader.models import ExerciseProgress, Submission
from labs.routing import websocket_urlpatterns
from runtime.client import Client as RuntimeClient
from tests.factories import PASSWORD, InstructorFactory, StepFactory, StudentFactory
from tests.grader.helpers import ExerciseFactory, ready_session, release, wait_finished, wait_status

pytestmark = pytest.mark.django_db(transaction=True)

BASE = Path(__file__).resolve().parents[2]


def client_for(user: Any) -> DjangoClient:
    client = DjangoClient(enforce_csrf_checks=True)
    client.login(username=user.username, password=PASSWORD)
    client.get("/")  # sets the CSRF cookie
    return client


def post(client: DjangoClient, url: str) -> Any:
    token = client.cookies["csrftoken"].value if "csrftoken" in client.cookies else ""
    return client.post(url, HTTP_X_CSRFTOKEN=token)


def check_url(session: Any, exercise: Any) -> str:
    return reverse("grader:check", kwargs={"session_id": session.pk, "exercise_id": exercise.pk})


@pytest.fixture
def lab_and_student(runtime_socket: str) -> Any:
    student = StudentFactory.create()
    step = StepFactory.create()
    session = ready_session(student, step.lab)
    yield student, step, session
    release(session)


def test_passing_check_is_pushed_to_the_events_socket_and_counted_once(
    celery_worker: Any, lab_and_student: Any
) -> None:
    student, step, session = lab_and_student
    exercise = ExerciseFactory.create(
        step=step,
        checks=[
            {"type": "run", "name": "greeting saved", "command": "grep -qx hello /root/greeting.txt"},
            {"type": "file", "name": "mode", "path": "/root/greeting.txt", "mode": "0600", "contains": "hello"},
        ],
    )
    with RuntimeClient(os.environ["RUNTIME_SOCKET"]) as rt:
        rt.exec(session.sandbox_id, ["sh", "-c", "echo hello > /root/greeting.txt; chmod 600 /root/greeting.txt"])

    client = client_for(student)

    async def scenario() -> dict[str, Any]:
        communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws/labs/{session.pk}/events/")
        communicator.scope["user"] = student
        connected, _ = await communicator.connect(timeout=10)
        assert connected
        assert json.loads(await communicator.receive_from(timeout=10))["type"] == "status"
        response = await asyncio.to_thread(post, client, check_url(session, exercise))
        assert response.status_code == 202, response.content
        while True:
            message = json.loads(await communicator.receive_from(timeout=30))
            if message["type"] == "check" and message["finished"]:
                await communicator.disconnect()
                return message

    message = async_to_sync(scenario)()
    assert message["status"] == "passed"
    assert [t["status"] for t in message["tests"]] == ["passed", "passed"]
    assert message["progress"]["status"] == "passed"
    progress = ExerciseProgress.objects.get(user=student, exercise=exercise)
    assert (progress.status, progress.attempts, progress.failed_attempts) == ("passed", 1, 0)


def test_failing_check_gives_feedback_and_unlocks_a_hint(celery_worker: Any, lab_and_student: Any) -> None:
    student, step, session = lab_and_student
    exercise = ExerciseFactory.create(
        step=step,
        checks=[
            {
                "type": "run",
                "name": "pid file",
                "command": "test -f /root/pid.txt || { echo 'FAIL: /root/pid.txt is missing'; exit 1; }",
                "hint": "Write it with `echo $$ > /root/pid.txt`.",
            }
        ],
        hints=["Use `unshare`.", "Add `--fork`."],
        solution="```sh\nunshare --pid --fork sh\n```",
        solution_after_attempts=1,
    )
    client = client_for(student)
    hint_url = reverse("grader:hint", kwargs={"session_id": session.pk, "exercise_id": exercise.pk})
    assert post(client, hint_url).status_code == 409  # nothing failed yet
    response = post(client, check_url(session, exercise))
    assert response.status_code == 202
    submission = wait_finished(response.json()["submission"]["submission"])
    assert submission.status == "failed"
    (test,) = submission.results["tests"]
    assert test["status"] == "failed"
    assert test["output"] == "/root/pid.txt is missing"
    assert "echo $$" in test["hint"]
    # One failure: one hint, and (solution_after_attempts=1) the solution is offered.
    status = client.get(response.json()["submission"]["url"]).json()
    assert status["progress"]["hint_available"] and status["progress"]["solution_available"]
    revealed = post(client, hint_url)
    assert revealed.status_code == 200 and len(revealed.json()["hints"]) == 1
    assert post(client, hint_url).status_code == 409  # the second hint needs another failure
    solution_url = reverse("grader:solution", kwargs={"session_id": session.pk, "exercise_id": exercise.pk})
    assert "unshare" in post(client, solution_url).json()["solution"]
    progress = ExerciseProgress.objects.get(user=student, exercise=exercise)
    assert (progress.attempts, progress.failed_attempts, progress.hints_revealed) == (1, 1, 1)
    assert progress.solution_shown and progress.solution_shown_at is not None


def test_a_hanging_check_is_reported_as_timed_out(celery_worker: Any, lab_and_student: Any) -> None:
    student, step, session = lab_and_student
    exercise = ExerciseFactory.create(
        step=step, checks=[{"type": "run", "name": "hangs", "command": "sleep 60", "timeout": 1}]
    )
    response = post(client_for(student), check_url(session, exercise))
    submission = wait_finished(response.json()["submission"]["submission"])
    (test,) = submission.results["tests"]
    assert test["status"] == "timeout"
    assert "did not finish within 1 s" in test["output"]
    assert submission.status == "failed"


def test_a_vanished_sandbox_is_an_error_not_an_attempt(celery_worker: Any, lab_and_student: Any) -> None:
    student, step, session = lab_and_student
    exercise = ExerciseFactory.create(step=step)
    release(session)  # the row still says ready; the sandbox is gone
    response = post(client_for(student), check_url(session, exercise))
    submission = wait_finished(response.json()["submission"]["submission"])
    assert submission.status == "error"
    assert "sandbox is gone" in submission.error
    assert ExerciseProgress.objects.get(user=student, exercise=exercise).attempts == 0


def test_hostile_output_is_capped_stripped_and_escaped(celery_worker: Any, lab_and_student: Any) -> None:
    student, step, session = lab_and_student
    command = (
        "printf 'FAIL: \\033[31mred\\033[0m \\033]0;title\\007<script>alert(1)</script> \\001\\002\\377\\n'; "
        "head -c 3000000 /dev/zero | tr '\\0' A; exit 1"
    )
    exercise = ExerciseFactory.create(step=step, checks=[{"type": "run", "name": "<b>bold</b>", "command": command}])
    response = post(client_for(student), check_url(session, exercise))
    submission = wait_finished(response.json()["submission"]["submission"])
    (test,) = submission.results["tests"]
    assert "\x1b" not in test["output"] and "\x01" not in test["output"] and "title" not in test["output"]
    assert "red" in test["output"] and "<script>" in test["output"]  # stored as text...
    assert len(json.dumps(submission.results)) < 40_000
    # ...and escaped wherever it is rendered.
    instructor = InstructorFactory.create()
    client = client_for(instructor)
    page = client.get(reverse("courses:instructor-student", kwargs={"user_id": student.pk}))
    assert page.status_code == 200
    assert b"<script>alert(1)" not in page.content and b"&lt;script&gt;alert(1)" in page.content
    assert b"<b>bold</b>" not in page.content


def test_outsiders_cannot_submit_or_read_results(celery_worker: Any, lab_and_student: Any) -> None:
    student, step, session = lab_and_student
    exercise = ExerciseFactory.create(step=step)
    response = post(client_for(student), check_url(session, exercise))
    submission = wait_finished(response.json()["submission"]["submission"])
    status_url = reverse("grader:submission", kwargs={"session_id": session.pk, "submission_id": submission.pk})
    classmate = StudentFactory.create()
    outsider_client = client_for(classmate)
    assert post(outsider_client, check_url(session, exercise)).status_code == 404
    assert outsider_client.get(status_url).status_code == 404
    hint_url = reverse("grader:hint", kwargs={"session_id": session.pk, "exercise_id": exercise.pk})
    assert post(outsider_client, hint_url).status_code == 404
    anonymous = DjangoClient()
    assert anonymous.get(status_url).status_code == 404
    # No CSRF token: refused.
    assert DjangoClient(enforce_csrf_checks=True).post(check_url(session, exercise)).status_code == 403
    # An instructor of the course may read it (observer), but may not submit.
    instructor = client_for(InstructorFactory.create())
    assert instructor.get(status_url).json()["status"] == "passed"
    assert post(instructor, check_url(session, exercise)).status_code == 404
    assert Submission.objects.filter(exercise=exercise).count() == 1


def test_rate_limit_per_student(settings: Any, lab_and_student: Any) -> None:
    settings.GRADER_CHECKS_PER_MINUTE = 2
    settings.GRADER_QUEUE = "kubelab-test-nobody"  # nobody grades: submissions stay queued
    student, step, session = lab_and_student
    first, second, third = (ExerciseFactory.create(step=step) for _ in range(3))
    client = client_for(student)
    assert post(client, check_url(session, first)).status_code == 202
    again = post(client, check_url(session, first))  # a double click returns the pending one
    assert again.status_code == 202
    assert Submission.objects.filter(user=student).count() == 1
    assert post(client, check_url(session, second)).status_code == 202
    limited = post(client, check_url(session, third))
    assert limited.status_code == 429 and int(limited["Retry-After"]) >= 1


# --- a worker killed mid-grade -----------------------------------------------------------


def _start_worker(queue: str) -> tuple[subprocess.Popen[bytes], Any]:
    from django.conf import settings

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": f"sqlite:///{settings.DATABASES['default']['NAME']}",
        "PYTHONUNBUFFERED": "1",
    }
    log = tempfile.NamedTemporaryFile(prefix="kubelab-crash-worker-", suffix=".log", delete=False)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--queues",
            queue,
            "--concurrency",
            "1",
            "--pool",
            "prefork",
            "--hostname",
            f"{queue}-{time.monotonic_ns()}@%h",
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            "INFO",
        ],
        cwd=BASE,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return proc, log


def _stop(proc: subprocess.Popen[bytes], log: Any) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    os.unlink(log.name)


def _exists(rt: RuntimeClient, sandbox_id: str, path: str) -> bool:
    try:
        return rt.exec(sandbox_id, ["test", "-f", path], timeout=5).ok
    except RuntimeError:  # runtimed's concurrent-exec cgroup race (reported); look again
        return False


@pytest.mark.parametrize("victim", ["pool-process", "whole-worker"])
def test_a_worker_killed_mid_grade_finishes_the_submission_exactly_once(
    settings: Any, runtime_socket: str, victim: str
) -> None:
    """kill -9 the process that is grading (Celery redelivers the task), or the
    whole worker (the sweeper re-enqueues); a fresh worker finishes it once."""
    from grader import services

    queue = f"kubelab-crash-{os.getpid()}-{victim}"
    settings.GRADER_QUEUE = queue
    student = StudentFactory.create()
    step = StepFactory.create()
    session = ready_session(student, step.lab)
    exercise = ExerciseFactory.create(
        step=step,
        checks=[
            {
                "type": "run",
                "name": "slow",
                "command": "if [ -f /root/second ]; then exit 0; fi; touch /root/second; sleep 30",
                "timeout": 3,
            }
        ],
    )
    first, first_log = _start_worker(queue)
    second = second_log = None
    try:
        response = post(client_for(student), check_url(session, exercise))
        submission_id = response.json()["submission"]["submission"]
        running = wait_status(submission_id, "running", timeout=60)
        _host, _, pid = running.worker.rpartition(":")
        with RuntimeClient(runtime_socket) as rt:  # the check is under way inside the sandbox
            deadline = time.monotonic() + 30
            while not _exists(rt, session.sandbox_id, "/root/second"):
                assert time.monotonic() < deadline
                time.sleep(0.05)
        if victim == "pool-process":
            os.kill(int(pid), signal.SIGKILL)  # the main process sees it lost and requeues
        else:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(10)
            second, second_log = _start_worker(queue)
            # The lease runs out, then the sweeper finds the orphan.
            deadline = time.monotonic() + 60
            while services.requeue_stale_submissions() == 0:
                assert time.monotonic() < deadline, "the orphaned submission was never found stale"
                time.sleep(0.5)
        done = wait_finished(submission_id, timeout=90)
    finally:
        _stop(first, first_log)
        if second is not None:
            _stop(second, second_log)
        release(session)
    assert done.status == "passed"  # the second grading found /root/second
    # Claimed at least twice (more if an exec hit an infrastructure error and was retried),
    # finished once, counted once.
    assert done.grading_attempts >= 2
    progress = ExerciseProgress.objects.get(user=student, exercise=exercise)
    assert (progress.attempts, progress.failed_attempts, progress.status) == (1, 0, "passed")
    assert Submission.objects.filter(exercise=exercise).count() == 1


def test_grading_needs_no_admin_credential_of_runtimeds(lab_and_student: Any, monkeypatch: Any) -> None:
    """The grading worker holds no admin token (scripts/run.py, docker-compose.yml): a
    grading acts with its session's grader token alone, here in a process that has no
    other credential at all."""
    from django.test import override_settings

    from grader import services
    from labs import sandboxes
    from runtime import errors as runtime_errors

    student, step, session = lab_and_student
    exercise = ExerciseFactory.create(step=step, checks=[{"type": "run", "name": "id", "command": "test -d /root"}])
    # made directly, not enqueued: a worker of another test must not grade it first
    submission = Submission.objects.create(user=student, exercise=exercise, lab_session=session, attempt=1, max_score=1)
    with override_settings(RUNTIME_ADMIN_TOKEN=""), monkeypatch.context() as m:
        m.delenv("RUNTIME_TOKEN", raising=False)
        m.setattr(sandboxes, "_BACKENDS", {})
        with pytest.raises(runtime_errors.Unauthorized):
            sandboxes.backend_for("namespace").backend.list()  # nothing else would work here
        graded = services.grade_submission(submission.pk)
    assert graded is not None and graded.status == Submission.Status.PASSED, graded and graded.error


def test_checks_reach_the_sandbox_through_the_sessions_backend(lab_and_student: Any, monkeypatch: Any) -> None:
    """The grader goes to runtimed as the web tier does (runtime.backends, the backend named by
    the session), with the session's grader token, not with a client of its own."""
    from grader import services
    from grader.checks.base import EXEC_CAPTURE
    from runtime.backends import NamespaceBackend

    student, step, session = lab_and_student
    exercise = ExerciseFactory.create(step=step, checks=[{"type": "run", "name": "id", "command": "test -d /root"}])
    submission = Submission.objects.create(user=student, exercise=exercise, lab_session=session, attempt=1, max_score=1)
    calls: list[tuple[str, str | None, int | None]] = []
    real_exec = NamespaceBackend.exec

    def spy(self: NamespaceBackend, sid: str, argv: list[str], **kw: Any) -> Any:
        calls.append((sid, self._token, kw.get("max_output")))
        return real_exec(self, sid, argv, **kw)

    monkeypatch.setattr(NamespaceBackend, "exec", spy)
    graded = services.grade_submission(submission.pk)
    assert graded is not None and graded.status == Submission.Status.PASSED, graded and graded.error
    assert calls == [(session.sandbox_id, session.grader_token, EXEC_CAPTURE)]
