"""Review (attacks on ``PREVIEW_HOST`` mode): host names under the preview domain that are not
a preview origin get the platform's own pages.

Django's test client with ``PREVIEW_HOST=preview.test`` set as ``config.settings`` would
(the middleware and the views read the setting per request); no runtimed is needed: none of
these requests should reach a sandbox."""

from __future__ import annotations

import uuid

import pytest
from django.test import Client, override_settings

from labs import preview

pytestmark = pytest.mark.django_db

PREVIEW = "preview.test"
SESSION = uuid.UUID("12345678-1234-5678-1234-567812345678")
LABEL = preview.preview_label(SESSION, 8080)


@pytest.fixture(autouse=True)
def preview_host() -> object:
    with override_settings(PREVIEW_HOST=PREVIEW, ALLOWED_HOSTS=["testserver", "." + PREVIEW]):
        yield


@pytest.mark.parametrize(
    "host",
    [
        PREVIEW,  # the bare preview domain
        f"www.{PREVIEW}",  # any other name the wildcard DNS record and certificate cover
        f"{LABEL}.{PREVIEW}.",  # a preview origin's own name, written with the root's dot
        f"x.{LABEL}.{PREVIEW}",  # a name beneath a preview origin
    ],
)
def test_no_platform_page_is_served_on_a_name_under_the_preview_host(host: str) -> None:
    """Every name under PREVIEW_HOST is same-site with every student's app (and the apps' JS
    may set cookies for the whole domain): the platform's pages (sign-in form, lab pages) must
    not be served there. Today a name that is not exactly ``p<port>-<hex>.<PREVIEW_HOST>``
    falls through ``preview_host_middleware`` to the platform's URLconf, while ALLOWED_HOSTS
    (``.<PREVIEW_HOST>``) admits it."""
    for path in ("/accounts/login/", "/accounts/signup/"):
        answer = Client().get(path, HTTP_HOST=host)
        assert answer.status_code in (400, 403, 404), (host, path, answer.status_code)
