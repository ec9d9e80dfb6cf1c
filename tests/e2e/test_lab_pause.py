"""Pause and resume a lab from its page (#18), in Chromium against daphne, a real Celery
worker, Redis and runtimed: Stop offers "Pause (keep my work)" beside "Stop (discard)";
the paused page says when the lab is deleted and offers Resume; after Resume the file is
there and the terminal's new shell starts in the directory the old one was in."""

from __future__ import annotations

import re
from typing import Any

import pytest

from labs.models import LabSession
from tests.e2e.test_lab_terminal import login, type_line, wait_connected, wait_screen
from tests.factories import LabFactory, StepFactory, StudentFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def lab_stack(runtime_socket: str, celery_worker: object, asgi_server: str) -> str:
    return asgi_server


def test_pause_from_the_stop_dialog_then_resume_from_the_page(lab_stack: str, page: Any) -> None:
    base = lab_stack
    student = StudentFactory.create()
    lab = LabFactory.create(title="Keep my work")
    StepFactory.create(lab=lab, title="Work", body="Make a file.\n")

    login(page, base, student.username)
    page.goto(f"{base}/labs/{lab.pk}/")
    page.click("#start-lab")
    page.wait_for_url(re.compile(r"/labs/[0-9a-f-]{36}/$"))
    session_url = page.url.split("#", 1)[0]
    wait_connected(page)
    wait_screen(page, r"[#$] $")
    type_line(page, "mkdir -p /root/proj/src && cd /root/proj/src && echo kept-$((20+22)) > notes.txt && echo made")
    wait_screen(page, r"^made$")

    # Stop asks: pause (keep my work) or stop (discard)
    page.click("#stop-button")
    page.wait_for_selector("#confirm-dialog[open]")
    assert page.inner_text("#confirm-alt") == "Pause (keep my work)"
    assert page.inner_text("#confirm-ok") == "Stop (discard)"
    page.click("#confirm-alt")
    page.wait_for_selector('#session-status[data-status="paused"]', timeout=90_000)
    page.wait_for_selector('[data-overlay="paused"]:not([hidden])')
    assert "docker start" in page.inner_text('[data-overlay="paused"]')
    page.wait_for_selector("#paused-until-text:not([hidden])")
    session = LabSession.objects.get(user=student, lab=lab)
    assert session.status == LabSession.Status.PAUSED
    assert session.resume_cwds == {"1": "/root/proj/src"}
    assert session.paused_until is not None
    assert page.get_attribute("#paused-until", "datetime") == session.paused_until.isoformat()
    assert page.is_hidden("#pause-button")

    # a reload still shows it paused; the lab's own page lists it with its expiry
    page.goto(f"{base}/labs/{lab.pk}/")
    assert "Your lab is paused" in page.inner_text(".lab-start-card")
    page.goto(f"{base}/progress/")
    assert "Keep my work" in page.inner_text("#paused-labs")
    page.goto(session_url)
    page.wait_for_selector('[data-overlay="paused"]:not([hidden])')

    page.click("#resume-button")
    page.wait_for_selector('#session-status[data-status="ready"]', timeout=120_000)
    wait_connected(page)
    wait_screen(page, r"[#$] $")
    type_line(page, "pwd; cat notes.txt")
    wait_screen(page, r"^/root/proj/src$")
    wait_screen(page, r"^kept-42$")
    resumed = LabSession.objects.get(pk=session.pk)
    assert resumed.status == LabSession.Status.READY and resumed.sandbox_id == session.sandbox_id
