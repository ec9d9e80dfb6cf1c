"""The exercise card in a real Chromium: Check, live verdict over the events
socket (or by polling), hostile output shown as text, hints, a pass."""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from django.template.loader import render_to_string

from runtime.client import Client as RuntimeClient
from tests.factories import StepFactory, StudentFactory
from tests.grader.helpers import ExerciseFactory, ready_session, release

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

SCRIPT = (Path(__file__).resolve().parents[2] / "static" / "js" / "lab-checks.js").read_text()

# What the lab page does (templates/labs/session.html, the lead's): re-dispatch
# every events-socket message as a "kubelab:event".
RELAY = """
const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + %s);
ws.onmessage = (m) => window.dispatchEvent(new CustomEvent("kubelab:event", {detail: JSON.parse(m.data)}));
window.relayOpen = new Promise((ok) => ws.addEventListener("open", ok));
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium under Playwright, stopped at the end of this module.

    Not the session-wide ``chromium`` fixture: Playwright's sync API keeps an
    event loop running in the main thread for as long as it lives, and the
    asyncio tests of the packages collected after this one (tests/labs) then
    cannot start theirs."""
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(executable):
        pytest.skip("chromium is not installed")
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            launched = playwright.chromium.launch(
                executable_path=executable,
                headless=True,
                args=["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
            )
            yield launched
            launched.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    yield context.new_page()
    context.close()


def _login(page: Any, base: str, user: Any) -> str:
    store = SessionStore()
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.create()
    token = secrets.token_hex(16)
    page.context.add_cookies(
        [
            {"name": "sessionid", "value": store.session_key, "url": base},
            {"name": "csrftoken", "value": token, "url": base},
        ]
    )
    return token


def _open_card(page: Any, base: str, exercise: Any, session: Any, *, relay: bool) -> None:
    card = render_to_string("grader/_exercise.html", {"exercise": exercise, "progress": None, "session": session})
    relay_js = RELAY % json.dumps(f"/ws/labs/{session.pk}/events/") if relay else ""
    page.goto(f"{base}/healthz")
    page.set_content(
        f"<!doctype html><html><body>{card}<script>{relay_js}</script><script>{SCRIPT}</script></body></html>"
    )
    if relay:
        page.evaluate("window.relayOpen")


def test_check_hint_and_pass_in_the_browser(
    asgi_server: str, celery_worker: Any, runtime_socket: str, page: Any
) -> None:
    student, step = StudentFactory.create(), StepFactory.create()
    session = ready_session(student, step.lab)
    exercise = ExerciseFactory.create(
        step=step,
        title="Save a greeting",
        checks=[
            {
                "type": "run",
                "name": "greeting saved",
                "command": (
                    "test -f /root/greeting.txt || { echo 'FAIL: <img src=x onerror=alert(1)> missing'; exit 1; }"
                ),
                "hint": "Use `echo` and >.",
            }
        ],
        hints=["Try `echo hello > /root/greeting.txt`."],
    )
    try:
        _login(page, asgi_server, student)
        _open_card(page, asgi_server, exercise, session, relay=True)
        card = page.locator(f"#exercise-{exercise.pk}")
        card.locator('[data-role="check"]').click()
        page.wait_for_selector(f'#exercise-{exercise.pk}[data-state="failed"]', timeout=30000)
        output = card.locator(".check-output")
        assert output.inner_text() == "<img src=x onerror=alert(1)> missing"
        assert card.locator("img").count() == 0  # shown as text, never as HTML
        assert card.locator(".check-hint").inner_text() == "Use echo and >."
        assert card.locator(".check-hint code").inner_text() == "echo"  # `code` spans, never HTML
        hint_button = card.locator('[data-role="hint"]')
        hint_button.wait_for(state="visible")
        hint_button.click()
        page.wait_for_selector(f"#exercise-{exercise.pk} .hint code")
        assert "echo hello" in card.locator('[data-role="hints"]').inner_text()
        with RuntimeClient(runtime_socket) as rt:
            rt.exec(session.sandbox_id, ["sh", "-c", "echo hello > /root/greeting.txt"], timeout=10)
        card.locator('[data-role="check"]').click()
        page.wait_for_selector(f'#exercise-{exercise.pk}[data-state="passed"]', timeout=30000)
        assert card.locator('[data-role="badge"]').inner_text().strip() == "Passed"
    finally:
        release(session)


def test_without_the_events_socket_the_card_polls(
    asgi_server: str, celery_worker: Any, runtime_socket: str, page: Any
) -> None:
    student, step = StudentFactory.create(), StepFactory.create()
    session = ready_session(student, step.lab)
    exercise = ExerciseFactory.create(step=step, checks=[{"type": "run", "name": "ok", "command": "true"}])
    try:
        _login(page, asgi_server, student)
        _open_card(page, asgi_server, exercise, session, relay=False)
        page.locator(f'#exercise-{exercise.pk} [data-role="check"]').click()
        page.wait_for_selector(f'#exercise-{exercise.pk}[data-state="passed"]', timeout=30000)
        assert page.locator(f'#exercise-{exercise.pk} .check[data-status="passed"]').count() == 1
    finally:
        release(session)
