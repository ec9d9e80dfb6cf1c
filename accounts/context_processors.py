from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest

from accounts.roles import is_instructor


def site(request: HttpRequest) -> dict[str, object]:
    """What the base layout needs on every page."""
    return {
        "SITE_NAME": settings.SITE_NAME,
        "SIGNUP_OPEN": settings.SIGNUP_OPEN,
        "is_instructor": is_instructor(getattr(request, "user", None)),
    }
