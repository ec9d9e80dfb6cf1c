"""An LTI launch inside the LMS's iframe, in Chromium (issue #18).

The LMS's course page (its own origin, as Canvas's is) frames the tool's login URL; the
tool sends the frame to the test LMS's authorization endpoint (tests/lti/platform.py),
whose form_post page posts the signed id_token back to the tool, which signs the student
in and lands them on the lab, still inside the frame; they start it from there (a POST
with the CSRF token, from the frame). The registration's frame origins name the course
page's origin: the tool's pages answer ``frame-ancestors 'self' <LMS origins>``.

Everything is on 127.0.0.1 (one site, other ports), over HTTP: the set-up docs/lti.md
gives for trying things out. Browsers keep one cookie jar per site, not per port or tab,
which the second test shows.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlencode

import pytest
from django.utils import timezone

from labs.models import LabSession
from lti.models import LtiIdentity, Platform
from tests.e2e.test_lab_terminal import login
from tests.factories import StudentFactory
from tests.lti.platform import LEARNER, LMS, SmallCourse, running_lms, small_course

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def lms(asgi_server: str) -> Iterator[LMS]:
    with running_lms() as started:
        started.redirect_uris = (f"{asgi_server}/lti/launch/",)
        yield started


@pytest.fixture
def course_page() -> Iterator[dict[str, Any]]:
    """The LMS's course page: a real HTTP server on loopback (Chromium's local network
    access checks refuse a loopback frame in a page Playwright made up)."""
    page: dict[str, Any] = {"html": ""}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = page["html"].encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, name="lms-course-page", daemon=True).start()
    page["origin"] = f"http://127.0.0.1:{server.server_address[1]}"
    page["url"] = page["origin"] + "/course/101"
    try:
        yield page
    finally:
        server.shutdown()
        server.server_close()


def _launch_in_frame(tab: Any, lms: LMS, base: str, course_page: dict[str, Any], claims: dict[str, Any]) -> Any:
    """Open the LMS's course page in ``tab``; the launch runs in its frame. Returns the frame
    once the tool's landing page is in it."""
    login_url = f"{base}/lti/login/?" + urlencode(
        {
            "iss": lms.issuer,
            "login_hint": lms.prepare(claims),
            "target_link_uri": lms.redirect_uris[0],
            "client_id": lms.client_id,
            "lti_deployment_id": lms.deployment_id,
        }
    )
    course_page["html"] = (
        "<!doctype html><title>LMS course 101</title><h1>LMS course 101</h1>"
        f'<iframe id="tool" title="KubeLab" src="{login_url.replace("&", "&amp;")}" width="1200" height="650"></iframe>'
    )
    tab.goto(course_page["url"])
    frame = tab.frame_locator("#tool")
    # the test LMS's form_post page has no script: submit it as an LMS's own script does
    frame.locator(f'form[action="{base}/lti/launch/"]').evaluate("form => form.submit()")
    return frame


def test_a_launch_in_the_lms_frame_lands_the_student_in_the_lab_and_they_can_start_it(
    asgi_server: str, page: Any, lms: LMS, course_page: dict[str, Any], tmp_path: Any
) -> None:
    base = asgi_server
    course: SmallCourse = small_course()
    Platform.objects.update(frame_origins=course_page["origin"])
    frame = _launch_in_frame(
        page, lms, base, course_page, lms.claims(sub="pupil", roles=LEARNER, target=course.lab_target)
    )

    start = frame.locator("#start-lab")
    start.wait_for(timeout=20_000)
    assert "First Pod" in frame.locator("h1").first.inner_text()
    pupil = LtiIdentity.objects.get(issuer=lms.issuer, sub="pupil").user
    tool = next(f for f in page.frames if f.url.startswith(base))
    assert tool.url == f"{base}/labs/{course.lab.pk}/"
    start.click()  # a POST with the CSRF token, from inside the frame
    frame.locator("#lab-app").wait_for(timeout=20_000)
    session = LabSession.objects.get(user=pupil, lab=course.lab)
    tool = next(f for f in page.frames if f.url.startswith(base))
    assert tool.url.startswith(f"{base}/labs/{session.pk}/")
    page.screenshot(path=str(tmp_path / "lti-frame.png"))


def test_a_launch_in_the_frame_signs_the_whole_browser_in_as_the_lms_user(
    asgi_server: str, chromium: Any, lms: LMS, course_page: dict[str, Any]
) -> None:
    """What a student meets when the same browser has the site open in another tab as
    another account (their own site account, or a classmate's on a shared computer): a
    browser keeps one session cookie per site, so the launch replaces it for every tab.

    The other tab's lab page keeps its sockets (they were authorised when they opened) but
    its next request is the LMS user's: a POST with the page's CSRF token is refused (the
    sign-in rotated the token) and a reload is the "no such session" page. Nothing of the
    first account's lab is lost: signing out and in again brings it back."""
    base = asgi_server
    course: SmallCourse = small_course()
    Platform.objects.update(frame_origins=course_page["origin"])
    ada = StudentFactory.create(username="ada")
    now = timezone.now()
    session = LabSession.objects.create(
        user=ada,
        lab=course.lab,
        status=LabSession.Status.READY,
        sandbox_id="sb-e2e-none",
        created_at=now,
        ready_at=now,
        expires_at=now + timedelta(hours=1),
    )
    browser = chromium.new_context(viewport={"width": 1280, "height": 800})
    try:
        tab_a = browser.new_page()
        login(tab_a, base, ada.username)
        tab_a.goto(f"{base}/labs/{session.pk}/")
        tab_a.wait_for_selector('#lab-app[data-events="open"]', timeout=20_000)

        tab_b = browser.new_page()
        frame = _launch_in_frame(
            tab_b, lms, base, course_page, lms.claims(sub="pupil", roles=LEARNER, target=course.lab_target)
        )
        frame.locator("#start-lab").wait_for(timeout=20_000)

        stop = tab_a.evaluate(
            """async () => {
                const config = JSON.parse(document.getElementById("lab-config").textContent);
                const answer = await fetch(config.stop_url, {
                    method: "POST", credentials: "same-origin", headers: {"X-CSRFToken": config.csrf_token},
                });
                return answer.status;
            }"""
        )
        assert stop == 403
        assert tab_a.goto(f"{base}/labs/{session.pk}/").status == 404
        session.refresh_from_db()
        assert session.status == LabSession.Status.READY  # nothing happened to Ada's lab
        browser.clear_cookies()  # signed out (the login page sends a signed-in user away)
        login(tab_a, base, ada.username)
        assert tab_a.goto(f"{base}/labs/{session.pk}/").status == 200
    finally:
        browser.close()
