"""The port preview on its own origin (``PREVIEW_HOST``): a student's app never runs on the
platform's origin, and a preview origin lets in only the holder of its own cookie.

A real daphne started with ``PREVIEW_HOST=preview.test`` (``preview_asgi_server``), raw HTTP
with the Host header a browser would send for each origin, a real runtimed sandbox running
the app."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from django.conf import settings
from django.core import signing
from django.db import transaction
from django.test import Client

from labs import preview, services
from labs.models import LabSession
from runtime.client import Client as RuntimeClient
from tests.conftest import PREVIEW_HOST
from tests.factories import InstructorFactory, LabFactory, StudentFactory
from tests.labs.helpers import provisioned
from tests.security import rawhttp

pytestmark = pytest.mark.django_db(transaction=True)

# The student's app: a page, and an endpoint that sets cookies (its own, one for every
# preview, and one named like ours) and CORS grants, and echoes the cookies it was sent.
APP = f"""
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class App(BaseHTTPRequestHandler):
    def answer(self):
        if self.path == "/index.html":
            body, extra = b"hello-from-the-sandbox\\n", []
        else:
            body = ("cookie=[%s]\\n" % self.headers.get("Cookie", "")).encode()
            extra = [("Set-Cookie", "app=1; Path=/"), ("Set-Cookie", "wide=1; Domain={PREVIEW_HOST}; Path=/"),
                     ("Set-Cookie", "{preview.COOKIE}=overwritten; Path=/"),
                     ("Access-Control-Allow-Origin", "http://evil.example"),
                     ("Access-Control-Allow-Credentials", "true")]
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        for k, v in [("Content-Type", "text/plain"), ("Content-Length", str(len(body))), *extra]:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
    do_GET = do_POST = answer
ThreadingHTTPServer(("0.0.0.0", 8080), App).serve_forever()
"""


@dataclass
class Site:
    base: str
    session: LabSession

    def host(self, port: int = 8080, session: Any = None) -> str:
        return f"{preview.preview_label(session or self.session.pk, port)}.{PREVIEW_HOST}"

    def login_cookie(self, user: Any) -> str:
        browser = Client()
        browser.force_login(user)
        return f"{settings.SESSION_COOKIE_NAME}={browser.cookies[settings.SESSION_COOKIE_NAME].value}"

    def handoff(self, user: Any, rest: str = "8080/index.html") -> rawhttp.Answer:
        return rawhttp.request(
            self.base, "GET", f"/labs/{self.session.pk}/port/{rest}", headers={"Cookie": self.login_cookie(user)}
        )

    def signed_in(self, user: Any | None = None, port: int = 8080) -> str:
        """The preview cookie of this session's ``port``, obtained as a browser would."""
        location = urlparse(self.handoff(user or self.session.user, f"{port}/").header("Location") or "")
        login = rawhttp.request(self.base, "GET", f"{location.path}?{location.query}", host=location.netloc)
        assert login.status == 302, login
        return f"{preview.COOKIE}={login.cookies()[preview.COOKIE]}"


# A WebSocket server in the sandbox on port 8090 (the standard library has none): it
# answers the handshake and sends one text frame, "hi".
WS_SERVER = """
import base64, hashlib, socket, threading
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8090))
s.listen()
def serve(c):
    data = b""
    while b"\\r\\n\\r\\n" not in data:
        more = c.recv(4096)
        if not more:
            return
        data += more
    key = [v.split(b":", 1)[1].strip() for v in data.split(b"\\r\\n") if v.lower().startswith(b"sec-websocket-key:")][0]
    accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
    c.sendall(b"HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\n"
              b"Sec-WebSocket-Accept: " + accept + b"\\r\\n\\r\\n\\x81\\x02hi")
    c.recv(1)
while True:
    conn, _ = s.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""


@pytest.fixture
def site(runtime_socket: str, preview_asgi_server: str, transactional_db: None) -> Iterator[Site]:
    lab = LabFactory.create(environment={"image": "lab-base", "memory": 256 * 2**20, "pids": 256})
    with transaction.atomic():
        session = services.lab_session_start(user=StudentFactory.create(), lab=lab)
    ready = provisioned(session)
    assert ready is not None and ready.status == "ready", ready and ready.error
    script = (
        f"cat > /root/app.py <<'EOF'\n{APP}EOF\n"
        f"cat > /root/ws.py <<'EOF'\n{WS_SERVER}EOF\n"
        "(setsid python3 /root/app.py </dev/null >/dev/null 2>&1 &)"
        " && (setsid python3 /root/ws.py </dev/null >/dev/null 2>&1 &)"
        " && for i in $(seq 100); do curl -sf http://127.0.0.1:8080/index.html >/dev/null && break; sleep 0.1; done"
    )
    with RuntimeClient(runtime_socket) as rt:
        result = rt.exec(ready.sandbox_id, ["sh", "-c", script], timeout=30)
        assert result.exit_code == 0, result.stderr_text
    yield Site(preview_asgi_server, ready)


def test_the_platform_url_hands_off_to_the_sessions_own_origin(site: Site) -> None:
    answer = site.handoff(site.session.user, "8080/cgi-bin/env?x=1")
    assert answer.status == 302
    location = urlparse(answer.header("Location") or "")
    assert location.hostname == site.host()
    assert location.path == preview.LOGIN_PATH
    assert parse_qs(location.query)["next"] == ["/cgi-bin/env?x=1"]


def test_the_app_answers_on_its_origin_after_the_handoff(site: Site) -> None:
    location = urlparse(site.handoff(site.session.user).header("Location") or "")
    login = rawhttp.request(site.base, "GET", f"{location.path}?{location.query}", host=site.host())
    assert login.status == 302 and login.header("Location") == "/index.html"
    assert "httponly" in (login.header("Set-Cookie") or "").lower()
    ours = f"{preview.COOKIE}={login.cookies()[preview.COOKIE]}"
    page = rawhttp.request(site.base, "GET", "/index.html", host=site.host(), headers={"Cookie": ours})
    assert page.status == 200 and page.body.strip() == b"hello-from-the-sandbox"
    assert page.header("Content-Security-Policy") is None  # its own origin: nothing to sandbox
    env = rawhttp.request(site.base, "GET", "/cgi-bin/env", host=site.host(), headers={"Cookie": f"app=1; {ours}"})
    assert env.status == 200, env
    assert b"cookie=[app=1]" in env.body  # the app's own cookie reaches it; ours never does
    assert env.header("Access-Control-Allow-Credentials") is None
    assert set(env.cookies()) == {"app"}  # no cookie for every preview, ours not overwritten


def test_without_the_cookie_a_preview_origin_lets_nobody_in(site: Site) -> None:
    platform_cookie = site.login_cookie(site.session.user)  # not sent to another origin, but try
    for path in ("/index.html", "/accounts/login/", "/admin/", f"/labs/{site.session.pk}/port/8080/index.html"):
        for headers in ({}, {"Cookie": platform_cookie}):
            answer = rawhttp.request(site.base, "GET", path, host=site.host(), headers=headers)
            assert answer.status == 403, (path, answer.status)
            assert b"hello-from-the-sandbox" not in answer.body


def test_a_forged_or_stale_handoff_is_refused(site: Site) -> None:
    claims = {"s": str(site.session.pk), "p": 8080, "u": site.session.user_id}
    forged = signing.dumps(claims, salt="another.salt")
    for token in (forged, "garbage", ""):
        answer = rawhttp.request(site.base, "GET", f"{preview.LOGIN_PATH}?t={token}&next=/", host=site.host())
        assert answer.status == 403
        assert preview.COOKIE not in answer.cookies()


def test_a_grant_for_one_port_or_session_does_not_open_another(site: Site) -> None:
    location = urlparse(site.handoff(site.session.user).header("Location") or "")
    for other in (site.host(9090), site.host(8080, "00000000-0000-0000-0000-000000000001")):
        answer = rawhttp.request(site.base, "GET", f"{location.path}?{location.query}", host=other)
        assert answer.status == 403, other
    ours = site.signed_in()
    answer = rawhttp.request(site.base, "GET", "/", host=site.host(9090), headers={"Cookie": ours})
    assert answer.status == 403


def test_a_classmate_gets_no_handoff_and_an_instructor_does(site: Site) -> None:
    assert site.handoff(StudentFactory.create()).status == 404
    assert site.handoff(InstructorFactory.create()).status == 302


def test_the_next_url_cannot_leave_the_preview_origin(site: Site) -> None:
    grant = signing.dumps(
        {"s": str(site.session.pk), "p": 8080, "u": site.session.user_id}, salt="labs.preview.handoff", compress=True
    )
    for nxt in ("//evil.example/", "https://evil.example/", "/%5Cevil.example", "javascript:alert(1)"):
        path = f"{preview.LOGIN_PATH}?t={grant}&next={nxt.replace('/', '%2F').replace(':', '%3A')}"
        answer = rawhttp.request(site.base, "GET", path, host=site.host())
        assert answer.status == 302 and answer.header("Location") == "/", (nxt, answer.header("Location"))


def test_an_observer_looks_but_does_not_act_and_other_origins_cannot_post(site: Site) -> None:
    teacher = site.signed_in(InstructorFactory.create())
    owner = site.signed_in()
    body = b"x=1"
    assert rawhttp.request(site.base, "GET", "/index.html", host=site.host(), headers={"Cookie": teacher}).status == 200
    answer = rawhttp.request(
        site.base, "POST", "/cgi-bin/env", host=site.host(), headers={"Cookie": teacher}, body=body
    )
    assert answer.status == 403
    own = f"http://{site.host()}"
    sibling = f"http://{site.host(3000)}"  # the app's front end on another port of the same session
    for origin, expected in ((own, 200), (sibling, 200), (f"http://{site.host(8080, 'ab' * 16)}", 403)):
        headers = {"Cookie": owner, "Origin": origin}
        answer = rawhttp.request(site.base, "POST", "/cgi-bin/env", host=site.host(), headers=headers, body=body)
        assert answer.status == expected, origin


def test_a_preview_websocket_opens_only_from_its_own_origin_with_its_cookie(site: Site) -> None:
    ours = site.signed_in(port=8090)
    host = site.host(8090)
    assert (
        rawhttp.websocket_status(site.base, "/ws", host=host, headers={"Cookie": ours, "Origin": f"http://{host}"})
        == 101
    )
    for headers in (
        {"Cookie": ours, "Origin": "http://evil.example"},
        {"Cookie": ours, "Origin": f"http://{site.host(9090)}"},
        {"Cookie": ours},
        {"Origin": f"http://{host}"},
    ):
        assert rawhttp.websocket_status(site.base, "/ws", host=host, headers=headers) != 101, headers
    # the platform's own WebSockets are not served on a preview origin
    status = rawhttp.websocket_status(
        site.base, f"/ws/labs/{site.session.pk}/term/1/", host=site.host(), headers={"Origin": f"http://{site.host()}"}
    )
    assert status != 101


def test_a_cookie_of_a_session_that_ended_opens_nothing(site: Site) -> None:
    ours = site.signed_in()
    LabSession.objects.filter(pk=site.session.pk).update(status=LabSession.Status.STOPPED)
    answer = rawhttp.request(site.base, "GET", "/index.html", host=site.host(), headers={"Cookie": ours})
    assert answer.status in (403, 503)
    assert b"hello-from-the-sandbox" not in answer.body
