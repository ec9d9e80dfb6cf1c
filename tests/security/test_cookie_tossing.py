"""Cookie tossing: a page on one name of a site setting cookies for another.

Every preview origin is ``p<port>-<session>.<PREVIEW_HOST>``: a student's app's scripts can
set ``document.cookie = "...; Domain=<PREVIEW_HOST>"`` (every sibling preview gets it) or,
when PREVIEW_HOST sits under the platform's domain, ``Domain=<platform's domain>`` (the
platform gets it). Under HTTPS every cookie we rely on is a ``__Host-`` cookie, which a
browser accepts only from the host itself (Secure, ``Path=/``, no ``Domain``): no sibling can
plant one, so a planted plain cookie can neither fix a classmate's platform session nor
shadow their preview sign-in. These tests check the names and attributes we send (browsers
enforce the prefix) and that a planted plain cookie beside ours changes nothing.

Django's test client with ``PREVIEW_HOST=preview.test``; no runtimed is needed.
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core import signing
from django.test import Client, override_settings
from django.utils import timezone

from labs import preview
from labs.models import LabSession
from tests.factories import LabFactory, StudentFactory

pytestmark = pytest.mark.django_db

PREVIEW = "preview.test"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def preview_host() -> object:
    with override_settings(PREVIEW_HOST=PREVIEW, ALLOWED_HOSTS=["testserver", "." + PREVIEW]):
        yield


def _settings_under(env: dict[str, str]) -> list[str]:
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.SESSION_COOKIE_NAME, s.CSRF_COOKIE_NAME, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, "
        "s.SESSION_COOKIE_DOMAIN, s.CSRF_COOKIE_DOMAIN, s.SESSION_COOKIE_PATH, s.CSRF_COOKIE_PATH)"
    )
    full = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", **env}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=full, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.split()


def test_under_https_the_platforms_cookies_are_host_cookies() -> None:
    assert _settings_under({"SECURE_HTTPS": "true"}) == [
        "__Host-sessionid",
        "__Host-csrftoken",
        "True",
        "True",
        "None",
        "None",
        "/",
        "/",
    ]


def test_without_https_the_names_stay_plain() -> None:
    # a __Host- cookie needs Secure: over plain HTTP browsers would drop it (no sign-in at all)
    assert _settings_under({"SECURE_HTTPS": "false"})[:3] == ["sessionid", "csrftoken", "False"]


# -- the preview origin ---------------------------------------------------------------------------


def _session(user: Any = None) -> LabSession:
    return LabSession.objects.create(
        user=user or StudentFactory.create(),
        lab=LabFactory.create(),
        status=LabSession.Status.READY,
        expires_at=timezone.now() + datetime.timedelta(hours=1),
    )


def _host(session: LabSession, port: int = 8080) -> str:
    return f"{preview.preview_label(session.pk, port)}.{PREVIEW}"


def _signed_in(session: LabSession, *, secure: bool, port: int = 8080) -> Any:
    """The preview origin's answer to a fresh hand-off of ``session``'s owner."""
    token = signing.dumps({"s": str(session.pk), "p": port, "u": session.user_id}, salt="labs.preview.handoff")
    return Client().get(f"{preview.LOGIN_PATH}?t={token}", HTTP_HOST=_host(session, port), secure=secure)


def test_under_https_the_preview_cookie_is_a_host_cookie() -> None:
    session = _session()
    answer = _signed_in(session, secure=True)
    assert answer.status_code == 302
    assert set(answer.cookies) == {preview.SECURE_COOKIE}
    morsel = answer.cookies[preview.SECURE_COOKIE]
    assert morsel["secure"] and morsel["httponly"] and morsel["path"] == "/" and not morsel["domain"]


def test_over_plain_http_the_preview_cookie_keeps_its_plain_name() -> None:
    answer = _signed_in(_session(), secure=False)
    assert set(answer.cookies) == {preview.COOKIE}
    assert not answer.cookies[preview.COOKIE]["domain"]


def test_a_planted_plain_cookie_does_not_shadow_the_host_cookie() -> None:
    victim, attacker = _session(), _session()
    theirs = _signed_in(victim, secure=True).cookies[preview.SECURE_COOKIE].value
    planted = _signed_in(attacker, secure=False).cookies[preview.COOKIE].value
    # the browser sends both (the planted one for Domain=PREVIEW_HOST, maybe last)
    granted = preview._preview_grant({preview.SECURE_COOKIE: theirs, preview.COOKIE: planted}, victim.pk, 8080)
    assert granted is not None and granted.session.pk == victim.pk
    # and alone, the planted cookie (the attacker's own grant) opens nothing of the victim's
    assert preview._preview_grant({preview.COOKIE: planted}, victim.pk, 8080) is None
    answer = Client().get("/", HTTP_HOST=_host(victim), HTTP_COOKIE=f"{preview.COOKIE}={planted}", secure=True)
    assert answer.status_code == 403


def test_an_app_cannot_set_or_read_either_preview_cookie() -> None:
    for name in (preview.COOKIE, preview.SECURE_COOKIE):
        assert not preview._app_cookie_allowed(f"{name}=x; Path=/; Secure")
    assert preview._app_cookie_allowed("__Host-app=1; Path=/; Secure")  # the app's own is fine
    assert not preview._app_cookie_allowed("wide=1; Domain=preview.test; Path=/")
    header = f"app=1; {preview.COOKIE}=a; {preview.SECURE_COOKIE}=b; other=2"
    assert preview._without_our_cookie(header) == "app=1; other=2"


def test_the_platform_session_cookie_name_is_what_the_settings_say() -> None:
    # the rest of the suite runs without HTTPS: plain names, so nothing above is vacuous
    assert settings.SESSION_COOKIE_NAME == "sessionid"
