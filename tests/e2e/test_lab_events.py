"""The lab page in a real browser (Debian's Chromium under Playwright, against daphne
and Redis) reaches ``ready`` although no ``ready`` push ever came (issue #13): while its
sandbox starts, static/js/lab.js asks the events socket for the session's state every
few seconds (STATE_POLL_EVERY, 4 s). Before, it learnt of a lost push from its next
heartbeat, a minute later (94 s in one class of 50).

Nothing here builds a sandbox: the session is made ready in the database, with no push,
as a worker whose push the channel layer lost would leave it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from labs.models import LabSession
from tests.e2e.test_lab_terminal import login
from tests.factories import LabFactory, StepFactory, StudentFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_the_page_gets_to_ready_without_the_ready_push(asgi_server: str, page: Any) -> None:
    base = asgi_server
    student = StudentFactory.create()
    lab = LabFactory.create(title="Waiting for a sandbox")
    StepFactory.create(lab=lab, title="Hello", body="Hello.\n")
    now = timezone.now()
    session = LabSession.objects.create(user=student, lab=lab, created_at=now, expires_at=now + timedelta(hours=1))

    login(page, base, student.username)
    page.goto(f"{base}/labs/{session.pk}/")
    page.wait_for_selector('#session-status[data-status="starting"]', timeout=20_000)
    page.wait_for_selector('[data-events="open"]', timeout=20_000)

    LabSession.objects.filter(pk=session.pk).update(
        status=LabSession.Status.READY, sandbox_id="sb-e2e-none", ready_at=timezone.now()
    )
    # One poll interval (4 s) and slack for a loaded machine; the next heartbeat is 60 s away.
    page.wait_for_selector('#session-status[data-status="ready"]', timeout=15_000)
