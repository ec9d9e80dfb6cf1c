"""The editor's answers carry no text of the host: when the sandbox backend cannot be built
(its reason names runtimed's socket path and settings) or runtimed fails inside (its message
may name host paths), the student gets a plain sentence and the operator the log; an error
about the student's own request (a path, a version) keeps its words.

The sandbox backend is a stand-in raising what runtime's backends raise (a real one would need
the failure it stands for: a runtimed gone or broken); the views, the session's access rules
and the error mapping are the real ones."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction
from django.test import Client

from labs import sandboxes, services
from labs.models import LabSession
from runtime import errors as runtime_errors
from tests.factories import LabFactory, StudentFactory

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "/srv/kubelab/var/run/runtimed.sock"


@pytest.fixture
def session() -> LabSession:
    with transaction.atomic():
        started = services.lab_session_start(user=StudentFactory.create(), lab=LabFactory.create())
    LabSession.objects.filter(pk=started.pk).update(
        status=LabSession.Status.READY, sandbox_id="sb-1", runtime_token="t", backend="namespace"
    )
    return LabSession.objects.get(pk=started.pk)


def _get(session: LabSession) -> Any:
    c = Client()
    c.force_login(session.user)
    return c.get(f"/labs/{session.pk}/files/", {"path": "/root"})


class _Raising:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def files_list(self, sandbox_id: str, path: str) -> Any:
        raise self.exc


def test_a_backend_that_cannot_be_built_says_nothing_of_the_host(
    session: LabSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unavailable(s: Any) -> Any:
        raise sandboxes.SandboxError(f"the 'namespace' sandbox backend is not available for labs: {SECRET}: refused")

    monkeypatch.setattr(sandboxes, "for_session", unavailable)
    r = _get(session)
    assert r.status_code == 503
    assert SECRET not in r.content.decode() and "namespace" not in r.json()["error"]
    assert "not available" in r.json()["error"]


@pytest.mark.parametrize(
    ("exc", "status", "shown"),
    [
        (runtime_errors.RuntimeError(f"mount helper failed: {SECRET}"), 500, False),
        (runtime_errors.Unreachable(f"connect {SECRET}: refused"), 503, False),
        (runtime_errors.BadRequest("/root/x: no such file or directory"), 400, True),
        (runtime_errors.NotAvailable("the editor is not available in this image: no /bin/sh"), 501, True),
    ],
)
def test_runtimeds_failures_are_told_plainly_and_request_errors_as_they_are(
    session: LabSession, monkeypatch: pytest.MonkeyPatch, exc: Exception, status: int, shown: bool
) -> None:
    monkeypatch.setattr(sandboxes, "for_session", lambda s: _Raising(exc))
    monkeypatch.setattr(sandboxes, "release_sync", lambda b: None)
    r = _get(session)
    assert r.status_code == status
    assert (r.json()["error"] == str(exc)) is shown
    assert SECRET not in r.content.decode()
