"""Signing out in one tab ends the lab terminal in another (issue #12 follow-up), in Chromium
against daphne, Redis, a Celery worker and runtimed."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.test_lab_terminal import lab_stack, start_lab_at_step_one, type_line, wait_screen
from tests.factories import LabFactory, StepFactory, StudentFactory

__all__ = ["lab_stack"]  # the fixture, imported for pytest to find

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_logging_out_in_another_tab_shows_signed_out_in_the_terminal_tab(lab_stack: str, page: Any) -> None:
    base = lab_stack
    student = StudentFactory.create()
    lab = LabFactory.create(title="Sign-out")
    StepFactory.create(lab=lab, title="One", body="Nothing to do.")
    start_lab_at_step_one(page, base, student.username, lab.pk)
    type_line(page, "echo still-$((1+1))")
    wait_screen(page, r"^still-2$")

    other = page.context.new_page()  # a second tab of the same browser
    other.goto(f"{base}/")
    other.evaluate("() => document.querySelector(\"form[action$='/logout/']\").submit()")
    other.wait_for_load_state("networkidle")

    page.wait_for_selector('#lab-app[data-signed-out="true"]', timeout=30_000)
    assert page.is_visible('[data-overlay="signed-out"]')
    assert page.get_attribute("#terminal-1", "data-state") == "disconnected"
    assert "signed out" in page.inner_text('[data-overlay="signed-out"]').lower()
