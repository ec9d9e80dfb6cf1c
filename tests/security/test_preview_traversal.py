"""The port preview as a hostile student uses it (issue #12): paths that try to leave the
student's app and reach runtimed's API, a classmate's sandbox or the graders' credentials.

Everything goes through the real stack: raw HTTP and WebSocket requests on a socket to a
real daphne (so no client normalises or re-encodes the path on the way), the platform's
preview, a real runtimed and real sandboxes. Each test fails if an attack gets through:
a command run in the classmate's sandbox (a canary file), runtimed's list of sandboxes,
a kubeconfig, or any answer that is not a refusal.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.conf import settings
from django.db import transaction
from django.test import Client

from labs import services
from labs.models import LabSession
from runtime import errors
from runtime.client import Client as RuntimeClient
from tests.factories import LabFactory, StudentFactory
from tests.labs.helpers import provisioned
from tests.security import rawhttp

pytestmark = pytest.mark.django_db(transaction=True)

CGI = """#!/bin/sh
echo "Content-Type: text/plain"
echo "Access-Control-Allow-Origin: http://evil.example"
echo "Access-Control-Allow-Credentials: true"
echo "Set-Cookie: sessionid=planted; Path=/"
echo
echo "app-answer cookie=[$HTTP_COOKIE] auth=[$HTTP_AUTHORIZATION] kl=[$HTTP_X_KUBELAB_SANDBOX]"
"""


@dataclass
class Stage:
    base: str
    cookie: str
    mine: LabSession
    victim: LabSession

    @property
    def prefix(self) -> str:
        return f"/labs/{self.mine.pk}/port/8080/"


def _ready(user: Any, lab: Any) -> LabSession:
    with transaction.atomic():
        session = services.lab_session_start(user=user, lab=lab)
    ready = provisioned(session)
    assert ready is not None and ready.status == "ready", ready and ready.error
    assert ready.runtime_token, "provisioning gives the web tier a sandbox credential"
    return ready


@pytest.fixture
def stage(runtime_socket: str, asgi_server: str, transactional_db: None) -> Iterator[Stage]:
    lab = LabFactory.create()
    mine = _ready(StudentFactory.create(), lab)
    victim = _ready(StudentFactory.create(), lab)
    script = (
        "mkdir -p /root/www/cgi-bin && echo hello-from-the-sandbox > /root/www/index.html"
        f" && cat > /root/www/cgi-bin/app <<'EOF'\n{CGI}EOF\n"
        " chmod +x /root/www/cgi-bin/app && busybox httpd -p 8080 -h /root/www"
    )
    with RuntimeClient(runtime_socket) as rt:
        assert rt.exec(mine.sandbox_id, ["sh", "-c", script], timeout=10).exit_code == 0
        assert rt.exec(victim.sandbox_id, ["sh", "-c", "echo s3cret > /root/secret.txt"], timeout=10).exit_code == 0
    browser = Client()
    browser.force_login(mine.user)
    cookie = f"{settings.SESSION_COOKIE_NAME}={browser.cookies[settings.SESSION_COOKIE_NAME].value}"
    yield Stage(asgi_server, cookie, mine, victim)


def request(
    stage: Stage, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """One raw HTTP/1.1 request to daphne, the path sent exactly as given."""
    extra = {"Cookie": stage.cookie, **(headers or {})}
    if body:
        extra["Content-Type"] = "application/json"
    answer = rawhttp.request(stage.base, method, path, headers=extra, body=body)
    return answer.status, answer.body


def websocket(stage: Stage, path: str) -> int:
    """The status of a raw WebSocket handshake (101 means it was accepted)."""
    return rawhttp.websocket_status(stage.base, path, headers={"Cookie": stage.cookie, "Origin": stage.base})


def victim_was_not_touched(stage: Stage) -> None:
    with RuntimeClient(settings.RUNTIME_SOCKET) as rt:
        probe = rt.exec(stage.victim.sandbox_id, ["sh", "-c", "ls /root; cat /root/secret.txt"], timeout=10)
    assert probe.exit_code == 0
    assert "pwned" not in probe.stdout_text, "a command ran in the classmate's sandbox"
    assert probe.stdout_text.strip().endswith("s3cret")


def assert_refused(status: int, body: bytes, stage: Stage) -> None:
    """A refusal (400 from the preview, 404 from Django or from the student's own app),
    carrying nothing of runtimed's: no list of sandboxes, no exec result, no kubeconfig."""
    assert status in (400, 404), (status, body[:300])
    for leak in (b'"sandboxes"', b'"exit_code"', b"s3cret", b"certificate-authority-data", b"kind: Config"):
        assert leak not in body, (leak, body[:300])


UP = "..%2f"


def test_the_four_requests_of_the_report_reach_nothing(stage: Stage) -> None:
    vid = stage.victim.sandbox_id
    status, body = request(stage, "GET", stage.prefix + UP * 4 + "sandboxes")
    assert_refused(status, body, stage)
    exec_body = json.dumps({"argv": ["sh", "-c", "touch /root/pwned; id; cat /root/secret.txt"]}).encode()
    status, body = request(stage, "POST", stage.prefix + UP * 4 + f"sandboxes/{vid}/exec", exec_body)
    assert_refused(status, body, stage)
    status, body = request(stage, "GET", stage.prefix + UP * 4 + f"sandboxes/{vid}/kubeconfig")
    assert_refused(status, body, stage)
    assert websocket(stage, stage.prefix + UP * 4 + f"sandboxes/{vid}/exec/stream") != 101
    victim_was_not_touched(stage)


DOTS = ["..", "%2e%2e", "%2E%2E", ".%2e", "%252e%252e", "%c0%ae%c0%ae", "%e0%80%ae%e0%80%ae", "%u002e%u002e"]
SLASHES = ["/", "%2f", "%2F", "%252f", "\\", "%5c", "%c0%af", "%e0%80%af"]
TARGETS = ["sandboxes", "v1/sandboxes", "v1/sandboxes/{vid}/exec", "v1/sandboxes/{vid}/kubeconfig"]


def _fuzz_paths(vid: str) -> Iterator[str]:
    for dot, slash, depth in itertools.product(DOTS, SLASHES, (1, 4, 6)):
        yield (dot + slash) * depth + TARGETS[depth % len(TARGETS)].format(vid=vid)
    for target in TARGETS:
        t = target.format(vid=vid)
        yield f"http://runtimed/{t}"
        yield f"http:%2f%2fruntimed%2f{t}"
        yield f"%2f%2fruntimed/{t}"
        yield f"/{t}"
        yield f"x%0d%0aX-Kubelab-Sandbox:%20{vid}/{t}"
        yield f"%00/../{t}"


def test_every_encoding_of_a_way_out_is_refused_over_http(stage: Stage) -> None:
    exec_body = json.dumps({"argv": ["sh", "-c", "touch /root/pwned"]}).encode()
    seen = 0
    for path in _fuzz_paths(stage.victim.sandbox_id):
        for method in ("GET", "POST"):
            status, body = request(stage, method, stage.prefix + path, exec_body if method == "POST" else b"")
            if status == 0:
                continue  # daphne itself refused to parse the request line: nothing reached anything
            seen += 1
            assert_refused(status, body, stage)
    assert seen > 200  # the battery really ran through the preview
    victim_was_not_touched(stage)


def test_every_encoding_of_a_way_out_is_refused_over_websockets(stage: Stage) -> None:
    for path in itertools.islice(_fuzz_paths(stage.victim.sandbox_id), 0, None, 3):
        assert websocket(stage, stage.prefix + path + "/exec/stream") != 101, path
    victim_was_not_touched(stage)


def test_the_app_itself_is_still_reachable_and_stripped_of_cross_origin_grants(stage: Stage) -> None:
    status, body = request(stage, "GET", stage.prefix + "index.html")
    assert status == 200 and body.strip() == b"hello-from-the-sandbox"
    answer = rawhttp.request(
        stage.base,
        "GET",
        stage.prefix + "cgi-bin/app",
        headers={"Cookie": stage.cookie, "Authorization": "Bearer x", "X-Kubelab-Sandbox": stage.victim.sandbox_id},
    )
    assert answer.status == 200, answer
    names = {k.lower() for k, _ in answer.headers}
    assert not names & {"access-control-allow-origin", "access-control-allow-credentials", "set-cookie"}
    assert (answer.header("Content-Security-Policy") or "").startswith("sandbox")
    assert b"app-answer cookie=[] auth=[] kl=[]" in answer.body


def test_a_page_on_another_port_of_this_host_cannot_drive_the_app(stage: Stage) -> None:
    """SameSite=Lax sends the cookie from http://localhost:31337 (the same site): the Origin
    check stands in for the CSRF token the student's own forms cannot carry."""
    for origin in ("http://localhost:31337", "http://127.0.0.1:9999", "http://evil.example"):
        status, body = request(stage, "POST", stage.prefix + "cgi-bin/app", b"{}", headers={"Origin": origin})
        assert status == 403, (origin, status, body[:200])
    status, _ = request(stage, "POST", stage.prefix + "cgi-bin/app", b"{}", headers={"Origin": stage.base})
    assert status == 200
    status, _ = request(stage, "POST", stage.prefix + "cgi-bin/app", b"{}", headers={"Origin": "null"})
    assert status == 200  # the CSP-sandboxed preview page itself


def test_a_session_token_is_refused_by_runtimed_for_another_sandbox(stage: Stage) -> None:
    """What a web process made to call runtimed for someone else's sandbox gets: 403."""
    vid = stage.victim.sandbox_id
    with RuntimeClient(settings.RUNTIME_SOCKET, token=stage.mine.runtime_token) as web:
        assert web.get_sandbox(stage.mine.sandbox_id)["id"] == stage.mine.sandbox_id
        for attempt in (
            lambda: web.get_sandbox(vid),
            lambda: web.exec(vid, ["sh", "-c", "touch /root/pwned"]),
            lambda: web.kubeconfig(vid),
            lambda: web.docker_socket(vid),
            lambda: web.list_sessions(vid),
            lambda: web.create_session(vid),
            lambda: web.remove_sandbox(vid),
            lambda: web.list_sandboxes(),
        ):
            with pytest.raises(errors.Forbidden):
                attempt()
        with pytest.raises(errors.Forbidden):
            web.exec(stage.mine.sandbox_id, ["true"])  # the web role does not exec, even at home
    victim_was_not_touched(stage)


def test_runtimeds_refusals_are_shown_as_such_and_an_app_cannot_forge_them(stage: Stage) -> None:
    """A session whose credential is gone gets a page saying so, not runtimed's JSON; and the
    header that marks runtimed's own answers is never taken from the student's app."""
    LabSession.objects.filter(pk=stage.mine.pk).update(runtime_token="kls1.e30.forged")
    status, body = request(stage, "GET", stage.prefix + "index.html")
    assert status == 503 and b"credential" in body and b'"error"' not in body
    LabSession.objects.filter(pk=stage.mine.pk).update(runtime_token=stage.mine.runtime_token)
    forge = "printf 'X-Runtime-Error: unauthorized\\r\\nContent-Type: text/plain\\r\\n\\r\\nfrom-the-app\\n'"
    cgi = f"cat > /root/www/cgi-bin/forge <<'EOF'\n#!/bin/sh\n{forge}\nEOF\nchmod +x /root/www/cgi-bin/forge"
    with RuntimeClient(settings.RUNTIME_SOCKET) as rt:
        assert rt.exec(stage.mine.sandbox_id, ["sh", "-c", cgi], timeout=10).exit_code == 0
    answer = rawhttp.request(stage.base, "GET", stage.prefix + "cgi-bin/forge", headers={"Cookie": stage.cookie})
    assert answer.status == 200 and b"from-the-app" in answer.body
    assert answer.header("X-Runtime-Error") is None
