"""Resumable labs (#18) through the services, the tasks' functions and the real terminal
consumer, against the tests' real runtimed: pause keeps the sandbox (same id), its files
and the student's progress, the shells' working directories; resume brings it back; the
quota, the expiry and the state rules. Containers and a Deployment across a pause are
proved on runtimed itself (tests/runtime/test_pause.py): the tests' runtimed here has the
busybox image only.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.conf import settings as django_settings
from django.utils import timezone

from courses.models import Exercise
from grader.models import ExerciseProgress
from labs import sandboxes, services
from labs.models import LabSession
from runtime import errors as runtime_errors
from runtime.backends import DockerBackend
from runtime.client import Client
from tests.factories import LabFactory, StepFactory, StudentFactory
from tests.grader.helpers import ready_session
from tests.labs.test_consumers import connect
from tests.labs.test_consumers import read_until as read_ws_until
from tests.runtime.daemon_helpers import read_until

pytestmark = [pytest.mark.django_db(transaction=True)]


def settled(session: LabSession, run: Any, moving: str, timeout: float = 120) -> LabSession:
    """Run the task's function (pause or resume); if a test session's Celery worker took the
    task first, wait for it instead."""
    result = run(session_id=str(session.pk))
    deadline = time.monotonic() + timeout
    while result is None or result.status == moving:
        if time.monotonic() > deadline:
            raise AssertionError(f"session {session.pk} still {moving}")
        time.sleep(0.1)
        result = LabSession.objects.get(pk=session.pk)
    return result


def pause(session: LabSession) -> LabSession:
    services.lab_session_pause(session=session)
    return settled(session, services.lab_session_do_pause, LabSession.Status.PAUSING)


def resume(session: LabSession) -> LabSession:
    services.lab_session_resume(session=LabSession.objects.get(pk=session.pk))
    return settled(session, services.lab_session_do_resume, LabSession.Status.RESUMING)


def sh(session: LabSession, script: str) -> str:
    with Client(django_settings.RUNTIME_SOCKET, timeout=60, token=session.grader_token) as c:
        r = c.exec(session.sandbox_id, ["sh", "-c", script])
    assert r.exit_code == 0, r.stderr_text
    return r.stdout_text


def shell_in(session: LabSession, number: int, where: str) -> None:
    """Terminal ``number`` opened (as the consumer does) and moved to ``where``."""
    with Client(django_settings.RUNTIME_SOCKET, timeout=60, token=session.runtime_token) as c:
        pty = c.create_session(session.sandbox_id, ["/bin/sh", "-i"])
        att = c.attach(session.sandbox_id, pty["session_id"])
        att.send(f"cd {where} && echo in-''place\n".encode())
        read_until(att, b"in-place\r\n")
        att.close()
    services.lab_session_open_terminal(session=session, number=number, session_id=str(pty["session_id"]))


def test_pause_keeps_the_sandbox_and_resume_brings_it_back(runtime_socket: str) -> None:
    student = StudentFactory.create()
    lab = LabFactory.create()
    step = StepFactory.create(lab=lab)
    exercise = Exercise.objects.create(lab=lab, step=step, slug="one", title="One")
    ExerciseProgress.objects.create(user=student, exercise=exercise, status="passed", attempts=2)
    session = ready_session(student, lab)
    sandbox = session.sandbox_id
    try:
        sh(session, "mkdir -p /root/work/deep && echo kept > /root/work/notes.txt")
        shell_in(session, 1, "/root/work/deep")
        shell_in(session, 2, "/tmp")

        paused = pause(session)
        assert paused.status == LabSession.Status.PAUSED
        assert paused.sandbox_id == sandbox
        assert paused.resume_cwds == {"1": "/root/work/deep", "2": "/tmp"}
        assert paused.terminals == {}
        assert paused.paused_bytes > 0
        assert paused.paused_until is not None and paused.paused_at is not None
        kept_for = paused.paused_until - paused.paused_at
        assert kept_for == timedelta(seconds=7 * 86400)  # LAB_PAUSED_RETENTION's default
        # nothing runs: no pid in its cgroup; its sandbox is paused, not gone
        with Client(django_settings.RUNTIME_SOCKET, timeout=60, token=paused.runtime_token) as c:
            assert c.get_sandbox(sandbox)["status"] == "paused"
            assert c.stats(sandbox)["pids"] == 0
        state = services.session_state(paused)
        assert state["status"] == "paused" and state["paused_until"] == paused.paused_until.isoformat()
        # starting the lab again returns the paused session: no second sandbox
        assert services.lab_session_start(user=student, lab=lab).pk == session.pk

        resumed = resume(paused)
        assert resumed.status == LabSession.Status.READY
        assert resumed.sandbox_id == sandbox
        assert (resumed.paused_at, resumed.paused_until, resumed.paused_bytes) == (None, None, 0)
        assert resumed.expires_at > timezone.now() + timedelta(minutes=30)
        assert sh(resumed, "cat /root/work/notes.txt").strip() == "kept"
        progress = ExerciseProgress.objects.get(user=student, exercise=exercise)
        assert (progress.status, progress.attempts) == ("passed", 2)
        assert LabSession.objects.filter(user=student, lab=lab).count() == 1
    finally:
        sandboxes.backend_for("namespace").remove(sandbox)


@pytest.mark.asyncio
async def test_a_resumed_terminal_opens_where_its_shell_was(runtime_socket: str) -> None:
    student = await database_sync_to_async(StudentFactory.create)()
    lab = await database_sync_to_async(LabFactory.create)()
    session = await database_sync_to_async(ready_session)(student, lab)
    try:
        await database_sync_to_async(sh)(session, "mkdir -p '/root/a dir'")
        await database_sync_to_async(shell_in)(session, 1, "'/root/a dir'")
        await database_sync_to_async(pause)(session)
        resumed = await database_sync_to_async(resume)(session)

        communicator, admitted, code = await connect(student, resumed, 1)
        assert admitted, code
        await communicator.send_to(bytes_data=b"pwd; echo done-''here\n")
        seen = await read_ws_until(communicator, b"done-here")
        assert b"/root/a dir" in seen
        await communicator.disconnect()
        # used once: a shell opened later in that terminal starts at home
        after = await database_sync_to_async(LabSession.objects.get)(pk=session.pk)
        assert after.resume_cwds == {}
    finally:
        await database_sync_to_async(sandboxes.backend_for("namespace").remove)(session.sandbox_id)


def test_paused_labs_count_against_the_students_disk_quota(runtime_socket: str, settings: Any) -> None:
    student = StudentFactory.create()
    first = ready_session(student, LabFactory.create())
    second = ready_session(student, LabFactory.create())
    try:
        kept = pause(first)
        # room for exactly the first one and a byte: the second cannot be paused
        settings.LAB_PAUSED_QUOTA = kept.paused_bytes + 1
        with pytest.raises(services.PauseRefused, match="Not enough room to keep this lab") as refused:
            services.lab_session_pause(session=second)
        assert "Discard a paused lab" in str(refused.value)
        second.refresh_from_db()
        assert second.status == LabSession.Status.READY
        assert second.paused_bytes == 0
        # a classmate's paused labs are not this student's
        settings.LAB_PAUSED_QUOTA = kept.paused_bytes * 2 + 2**20
        assert pause(second).status == LabSession.Status.PAUSED
    finally:
        for s in (first, second):
            sandboxes.backend_for("namespace").remove(s.sandbox_id)


def test_expiry_deletes_a_paused_lab_and_its_sandbox(runtime_socket: str) -> None:
    session = ready_session(StudentFactory.create(), LabFactory.create())
    sandbox = session.sandbox_id
    paused = pause(session)
    LabSession.objects.filter(pk=paused.pk).update(paused_until=timezone.now() - timedelta(seconds=1))
    fresh = ready_session(StudentFactory.create(), LabFactory.create())
    kept = pause(fresh)
    try:
        assert services.expire_paused_sessions() == 1
        services.lab_session_release(session_id=str(paused.pk))
        gone = LabSession.objects.get(pk=paused.pk)
        assert (gone.status, gone.end_reason) == (LabSession.Status.STOPPED, LabSession.EndReason.PAUSE_EXPIRED)
        with pytest.raises(runtime_errors.SandboxNotFound):
            sandboxes.backend_for("namespace").backend.get(sandbox)
        assert LabSession.objects.get(pk=kept.pk).status == LabSession.Status.PAUSED
    finally:
        sandboxes.backend_for("namespace").remove(kept.sandbox_id)


def test_discarding_a_paused_lab_removes_it_and_the_lab_starts_afresh(
    runtime_socket: str, django_capture_on_commit_callbacks: Any
) -> None:
    student, lab = StudentFactory.create(), LabFactory.create()
    session = pause(ready_session(student, lab))
    services.lab_session_stop(session=session)
    services.lab_session_release(session_id=str(session.pk))
    with pytest.raises(runtime_errors.SandboxNotFound):
        sandboxes.backend_for("namespace").backend.get(session.sandbox_id)
    with django_capture_on_commit_callbacks(execute=False):
        again = services.lab_session_start(user=student, lab=lab)
    assert again.pk != session.pk and again.status == LabSession.Status.STARTING


def test_only_a_running_lab_pauses_and_only_a_paused_one_resumes(runtime_socket: str) -> None:
    session = ready_session(StudentFactory.create(), LabFactory.create())
    ended = LabSession.objects.create(
        user=session.user,
        lab=session.lab,
        status=LabSession.Status.STOPPED,
        sandbox_id="gone",
        expires_at=timezone.now(),
    )
    try:
        with pytest.raises(services.PauseRefused, match="Only a paused lab can be resumed"):
            services.lab_session_resume(session=ended)
        with pytest.raises(services.PauseRefused, match="Only a running lab can be paused"):
            services.lab_session_pause(session=ended)
        # resuming a running lab (a second click) changes nothing
        assert services.lab_session_resume(session=session).status == LabSession.Status.READY
        paused = pause(session)
        # a second pause of a paused lab changes nothing
        assert services.lab_session_pause(session=paused).status == LabSession.Status.PAUSED
        LabSession.objects.filter(pk=paused.pk).update(status=LabSession.Status.RESUMING)
        with pytest.raises(services.PauseRefused, match="resuming; try again"):
            services.lab_session_stop(session=paused)
    finally:
        sandboxes.backend_for("namespace").remove(session.sandbox_id)


def test_resume_respects_the_running_sandbox_cap(runtime_socket: str, settings: Any) -> None:
    settings.LAB_MAX_LIVE_PER_STUDENT = 1
    student = StudentFactory.create()
    paused = pause(ready_session(student, LabFactory.create()))
    other = ready_session(student, LabFactory.create())
    try:
        with pytest.raises(services.SandboxLimitReached, match="Stop or pause one of them"):
            services.lab_session_resume(session=paused)
        assert LabSession.objects.get(pk=paused.pk).status == LabSession.Status.PAUSED
    finally:
        for s in (paused, other):
            sandboxes.backend_for("namespace").remove(s.sandbox_id)


def test_the_docker_backend_refuses_to_pause_with_the_reason(settings: Any) -> None:
    """The real DockerBackend class (not connected: pausing never reaches its engine)."""
    session = LabSession.objects.create(
        user=StudentFactory.create(),
        lab=LabFactory.create(),
        backend="docker",
        status=LabSession.Status.READY,
        sandbox_id="kubelab-none",
        expires_at=timezone.now() + timedelta(hours=1),
    )
    key = ("docker", settings.RUNTIME_SOCKET)
    saved = sandboxes._BACKENDS.get(key)
    sandboxes._BACKENDS[key] = sandboxes.LabSandboxes(object.__new__(DockerBackend))
    try:
        assert services.pausable(session) is False
        assert services.session_state(session)["can_pause"] is False
        with pytest.raises(services.PauseRefused, match="cannot keep a stopped sandbox"):
            services.lab_session_pause(session=session)
        with pytest.raises(runtime_errors.NotAvailable, match="docker sandbox backend cannot pause"):
            DockerBackend.pause(object.__new__(DockerBackend), "kubelab-none")
    finally:
        if saved is None:
            sandboxes._BACKENDS.pop(key, None)
        else:
            sandboxes._BACKENDS[key] = saved
    assert LabSession.objects.get(pk=session.pk).status == LabSession.Status.READY
