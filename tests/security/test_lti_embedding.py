"""Inside the LMS's iframe, without weakening the rest of the site (lti/embedding.py).

An LTI session gets SameSite=None; Secure cookies (over HTTPS) and may be framed by its
own LMS only; everyone else keeps SameSite=Lax cookies and X-Frame-Options: SAMEORIGIN;
and an LTI session is still CSRF-protected.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from lti.models import Platform
from tests.factories import PASSWORD, StudentFactory
from tests.lti.platform import LEARNER, LMS, SmallCourse, launch, running_lms, small_course

pytestmark = pytest.mark.django_db


@pytest.fixture
def lms(db: None) -> Iterator[LMS]:
    with running_lms() as started:
        yield started


@pytest.fixture
def course(db: None) -> SmallCourse:
    return small_course()


def _ancestors(response: Any) -> str:
    policy = response.get("Content-Security-Policy", "")
    return next((p.strip() for p in policy.split(";") if p.strip().startswith("frame-ancestors")), "")


def test_an_lti_session_works_in_its_lms_frame_over_https(lms: Any, course: Any) -> None:
    Platform.objects.update(frame_origins="https://school.lms.example")
    client = Client()
    response = launch(client, lms, lms.claims(sub="s", roles=LEARNER, target=course.lab_target), secure=True)
    assert response.status_code == 302
    for name in ("sessionid", "csrftoken"):
        cookie = response.cookies[name]
        assert cookie["samesite"] == "None" and cookie["secure"] is True, (name, cookie.output())
    assert "X-Frame-Options" not in response
    assert _ancestors(response) == f"frame-ancestors 'self' {lms.base} https://school.lms.example"
    page = client.get(response["Location"], secure=True)
    assert page.status_code == 200
    assert "X-Frame-Options" not in page and _ancestors(page).startswith("frame-ancestors 'self' ")
    assert "*" not in _ancestors(page)


def test_the_rest_of_the_site_keeps_lax_cookies_and_sameorigin_framing(course: Any) -> None:
    student = StudentFactory.create()
    client = Client()
    response = client.post("/accounts/login/", {"username": student.username, "password": PASSWORD}, secure=True)
    assert response.status_code == 302
    assert response.cookies["sessionid"]["samesite"] == "Lax"
    page = client.get(f"/labs/{course.lab.pk}/", secure=True)
    assert page["X-Frame-Options"] == "SAMEORIGIN" and not _ancestors(page)
    anonymous = Client().get("/", secure=True)
    assert anonymous["X-Frame-Options"] == "SAMEORIGIN" and not _ancestors(anonymous)


def test_over_plain_http_cookies_are_not_marked_none(lms: Any, course: Any) -> None:
    # Browsers refuse SameSite=None without Secure: over HTTP the defaults stay.
    response = launch(Client(), lms, lms.claims(sub="s", roles=LEARNER), secure=False)
    assert response.cookies["sessionid"]["samesite"] == "Lax"
    assert _ancestors(response).startswith("frame-ancestors 'self' ")


def test_an_lti_session_is_still_csrf_protected(lms: Any, course: Any) -> None:
    client = Client(enforce_csrf_checks=True)
    response = launch(client, lms, lms.claims(sub="s", roles=LEARNER, target=course.lab_target), secure=True)
    assert response.status_code == 302
    forged = client.post(f"/labs/{course.lab.pk}/start/", secure=True, headers={"origin": "https://evil.example"})
    assert forged.status_code == 403
    tokenless = client.post(f"/labs/{course.lab.pk}/start/", secure=True)
    assert tokenless.status_code == 403
