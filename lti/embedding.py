"""Pages of an LTI session work inside the LMS's iframe; nobody else's change.

Inside the LMS's iframe the tool is a third party: browsers send a cookie
there only when it is ``SameSite=None; Secure``, and show the page only when
the response allows that LMS as a frame ancestor. Making that the site's
default would send every user's session cookie on cross-site requests and
let any site frame every page. So it is done per session instead:

- a launch marks its session with the registration's frame origins
  (``Platform.allowed_frame_origins``);
- for a marked session this middleware replaces ``X-Frame-Options`` with
  ``Content-Security-Policy: frame-ancestors 'self' <those origins>`` (only
  that LMS may frame it, never any site), and, over HTTPS, re-issues the
  session, CSRF and messages cookies as ``SameSite=None; Secure``;
- every other session keeps ``SameSite=Lax`` cookies and ``X-Frame-Options:
  SAMEORIGIN``.

A marked session still has Django's CSRF protection on every POST (a token
and, over HTTPS, the Origin/Referer check): SameSite was a second layer for
it, not the only one. Over plain HTTP no browser accepts ``SameSite=None``;
an LMS on the same site (e.g. both on localhost) still works, one on another
site needs HTTPS (docs/lti.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from lti.models import Platform

SESSION_KEY = "lti_frame_origins"


def mark_embedded(request: HttpRequest, platform: Platform) -> None:
    request.session[SESSION_KEY] = platform.allowed_frame_origins()


def embedded_origins(request: HttpRequest) -> list[str]:
    session = getattr(request, "session", None)
    if session is None:
        return []
    origins = session.get(SESSION_KEY)
    if not isinstance(origins, list):
        return []
    return [o for o in origins if isinstance(o, str) and o and " " not in o and ";" not in o and "'" not in o]


class LtiEmbeddingMiddleware:
    """Sits outside SessionMiddleware, CsrfViewMiddleware and MessageMiddleware
    (config/settings.py) so it sees the cookies they set."""

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response: HttpResponse = self.get_response(request)
        origins = embedded_origins(request)
        if not origins:
            return response
        if "X-Frame-Options" in response:
            del response["X-Frame-Options"]
        ancestors = "frame-ancestors 'self' " + " ".join(origins)
        policy = response.get("Content-Security-Policy", "")
        if "frame-ancestors" not in policy:
            response["Content-Security-Policy"] = f"{policy}; {ancestors}" if policy else ancestors
        if request.is_secure():
            names = (settings.SESSION_COOKIE_NAME, settings.CSRF_COOKIE_NAME, "messages")
            for name in names:
                if name in response.cookies:
                    response.cookies[name]["samesite"] = "None"
                    response.cookies[name]["secure"] = True
        return response
