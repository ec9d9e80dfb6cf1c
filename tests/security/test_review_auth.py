"""Review (runtimed's credential check): a sandbox token holder naming a sandbox id that is
not ASCII gets runtimed's 403, not an internal error.

``runtime.auth.Grant.allows`` compares the requested sandbox id with the token's using
``hmac.compare_digest`` on ``str``; for a non-ASCII string that raises ``TypeError``
("comparing strings with non-ASCII characters is not supported"), which
``runtime.daemon.error_middleware`` turns into a 500 with the exception's text. Nothing is
let through, but the check fails open into the generic error path instead of refusing.
Served by the real ``Daemon`` app on the host stand-in, as ``tests/runtime/test_auth.py``."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import httpx
import pytest

from runtime.client import Client
from tests.runtime.conftest_daemon import short_tmp
from tests.runtime.daemon_helpers import ThreadedDaemon

ADMIN = os.environ["RUNTIME_ADMIN_TOKEN"]


@pytest.fixture
def web_token() -> Iterator[tuple[str, str]]:
    tmp = short_tmp("rtr-")
    daemon = ThreadedDaemon(tmp).start()
    try:
        with Client(daemon.socket, token=ADMIN) as admin:
            sid = admin.create_sandbox({"image": "busybox"})["id"]
            yield str(daemon.socket), admin.mint_token(sid, role="web", ttl=600)
    finally:
        daemon.stop()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.parametrize(
    "path", ["/v1/sandboxes/%C3%A9", "/v1/sandboxes/%E2%80%AE/stats", "/v1/sandboxes/%C3%A9/touch"]
)
def test_a_non_ascii_sandbox_id_is_refused_not_an_internal_error(web_token: tuple[str, str], path: str) -> None:
    sock, token = web_token
    method = "POST" if path.endswith("/touch") else "GET"
    with httpx.Client(transport=httpx.HTTPTransport(uds=sock), base_url="http://runtimed") as http:
        answer = http.request(method, path, headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 403, (answer.status_code, answer.text)
