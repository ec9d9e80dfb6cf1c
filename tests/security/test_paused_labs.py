"""Attacks on resumable labs (#18): another student's paused lab, the disk quota, runtimed's
pause/resume with a session's credential.

The URL battery (test_idor.py) attacks labs:pause and labs:resume on a running session; here
the session is paused, which is when resume and discard matter. The quota is attacked the
way a student would: many pauses at once, each in its own request thread. And runtimed's
pause/resume need the admin credential: a web or grader token (what the web tier and the
graders hold) pauses nothing, its own sandbox included.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from labs import sandboxes, services
from labs.models import LabSession
from runtime import errors as runtime_errors
from runtime.client import Client
from tests.factories import LabFactory, StudentFactory
from tests.grader.helpers import ready_session
from tests.security.conftest import World, client_for


def _paused(w: World) -> LabSession:
    now = timezone.now()
    LabSession.objects.filter(pk=w.session.pk).update(
        status=LabSession.Status.PAUSED,
        paused_at=now,
        paused_until=now + timedelta(days=7),
        paused_bytes=12345,
        terminals={},
    )
    return LabSession.objects.get(pk=w.session.pk)


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["classmate", "outsider", "other_instructor", "instructor"])
@pytest.mark.parametrize("action", ["labs:resume", "labs:stop", "labs:pause", "labs:reset"])
def test_no_one_but_the_owner_resumes_discards_or_pauses_a_paused_lab(world: World, who: str, action: str) -> None:
    session = _paused(world)
    answer = client_for(world.user(who)).post(reverse(action, kwargs={"session_id": session.pk}))
    assert answer.status_code == 404
    after = LabSession.objects.get(pk=session.pk)
    assert (after.status, after.sandbox_id, after.paused_bytes) == (LabSession.Status.PAUSED, session.sandbox_id, 12345)


@pytest.mark.django_db
def test_a_classmate_cannot_see_when_someone_elses_paused_lab_expires(world: World) -> None:
    session = _paused(world)
    page = client_for(world.classmate).get(reverse("courses:progress"))
    assert page.status_code == 200
    assert str(session.pk).encode() not in page.content
    own = client_for(world.owner).get(reverse("courses:progress"))
    assert str(session.pk).encode() in own.content


@pytest.mark.django_db(transaction=True)
def test_pausing_many_labs_at_once_cannot_exceed_the_quota(runtime_socket: str, settings: Any) -> None:
    student = StudentFactory.create()
    sessions = [ready_session(student, LabFactory.create()) for _ in range(4)]
    try:
        admin = sandboxes.backend_for("namespace").backend
        sizes = [int(admin.stats(s.sandbox_id)["disk_image_bytes"]) for s in sessions]
        # room for two of them, not for three
        settings.LAB_PAUSED_QUOTA = quota = sum(sorted(sizes)[-2:]) + sorted(sizes)[0] // 2
        results: dict[str, str] = {}
        start = threading.Barrier(len(sessions))

        def pause(session: LabSession) -> None:
            try:
                start.wait(30)
                services.lab_session_pause(session=session)
                results[str(session.pk)] = "pausing"
            except services.PauseRefused as exc:
                results[str(session.pk)] = str(exc)
            except Exception as exc:  # a concurrent writer refused by the database: not kept either
                results[str(session.pk)] = f"error: {exc}"
            finally:
                connection.close()

        threads = [threading.Thread(target=pause, args=(s,)) for s in sessions]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        kept = LabSession.objects.kept().filter(user=student)
        total = sum(s.paused_bytes for s in kept)
        assert total <= quota, (total, quota, results)
        assert 1 <= kept.count() <= 2, results
        refused = [r for r in results.values() if r != "pausing"]
        assert len(refused) == len(sessions) - kept.count()
        assert any("Not enough room to keep this lab" in r for r in refused), results
        # what was refused is untouched: still running, nothing reserved
        for s in LabSession.objects.filter(user=student).exclude(pk__in=kept.values("pk")):
            assert (s.status, s.paused_bytes) == (LabSession.Status.READY, 0)
    finally:
        for s in sessions:
            sandboxes.backend_for("namespace").remove(s.sandbox_id)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("role", ["web", "grader"])
def test_a_session_token_cannot_pause_or_resume_a_sandbox(runtime_socket: str, role: str) -> None:
    mine = ready_session(StudentFactory.create(), LabFactory.create())
    theirs = ready_session(StudentFactory.create(), LabFactory.create())
    admin = sandboxes.backend_for("namespace")
    try:
        admin.pause(theirs.sandbox_id)
        token = mine.runtime_token if role == "web" else mine.grader_token
        with Client(django_settings.RUNTIME_SOCKET, timeout=60, token=token) as c:
            for sandbox in (mine.sandbox_id, theirs.sandbox_id):
                with pytest.raises(runtime_errors.Forbidden):
                    c.pause_sandbox(sandbox)
                with pytest.raises(runtime_errors.Forbidden):
                    c.resume_sandbox(sandbox)
            # nor read the other's: the token is scoped to its own sandbox
            with pytest.raises(runtime_errors.Forbidden):
                c.stats(theirs.sandbox_id)
        assert admin.status(mine.sandbox_id) == "running"
        assert admin.status(theirs.sandbox_id) == "paused"
    finally:
        for s in (mine, theirs):
            admin.remove(s.sandbox_id)
