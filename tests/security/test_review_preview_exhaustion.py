"""Review (resource exhaustion through the port preview): one student's app must not be able
to stall every other student's preview in runtimed.

runtimed relays every preview through one shared ``aiohttp.ClientSession``
(``runtime.proxy.SandboxProxy._http``), whose connector allows 100 connections in all and
whose timeout has no bound on the wait for a free one (``sock_read=300``, ``total=None``). A
student whose app accepts connections and never answers (or streams an endless response,
or holds WebSockets) and who opens ~100 previews of it from their browser (their own session
cookie is all it takes: ``curl -N`` in a loop against ``/labs/<session>/port/8080/``) holds
every slot; a classmate's preview then waits, with no timeout, until those requests end.

Served by the real ``Daemon`` app on the host stand-in (``ThreadedDaemon``, as in
``tests/runtime/test_auth.py``): the relay is the daemon's own code; the two "sandboxes" are
given 127.0.0.1 as their address and an app each on a host port, which is all the proxy
looks at.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from runtime.client import Client
from tests.runtime.conftest_daemon import short_tmp
from tests.runtime.daemon_helpers import ThreadedDaemon

ADMIN = os.environ["RUNTIME_ADMIN_TOKEN"]
HELD = 120  # a few more than the shared connector's 100


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\n")

    def log_message(self, *args: object) -> None:
        pass


@dataclass
class Stage:
    socket: str
    a: str
    b: str
    web_a: str
    web_b: str
    port_a: int  # a's app: accepts (the kernel does) and never answers
    port_b: int  # b's app: answers at once


@pytest.fixture
def stage() -> Iterator[Stage]:
    tmp = short_tmp("rtx-")
    daemon = ThreadedDaemon(tmp).start()
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1024)
    ok = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    threading.Thread(target=ok.serve_forever, daemon=True).start()
    try:
        with Client(daemon.socket, token=ADMIN) as admin:
            a = admin.create_sandbox({"image": "busybox"})["id"]
            b = admin.create_sandbox({"image": "busybox"})["id"]
            for sid in (a, b):
                daemon.manager.boxes[sid].ip = "127.0.0.1"
            yield Stage(
                str(daemon.socket),
                a,
                b,
                admin.mint_token(a, role="web", ttl=600),
                admin.mint_token(b, role="web", ttl=600),
                silent.getsockname()[1],
                ok.server_address[1],
            )
    finally:
        ok.shutdown()
        silent.close()
        daemon.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _preview_request(token: str, sandbox: str, port: int) -> bytes:
    return (
        "GET /v1/preview HTTP/1.1\r\nHost: runtimed\r\n"
        f"Authorization: Bearer {token}\r\nX-Kubelab-Sandbox: {sandbox}\r\n"
        f"X-Kubelab-Port: {port}\r\nX-Kubelab-Path: index.html\r\n\r\n"
    ).encode()


def test_one_students_hanging_app_does_not_stall_a_classmates_preview(stage: Stage) -> None:
    held: list[socket.socket] = []
    try:
        for _ in range(HELD):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(stage.socket)
            s.sendall(_preview_request(stage.web_a, stage.a, stage.port_a))
            held.append(s)
        # the classmate's preview, with a bound far above what it needs (a few milliseconds)
        headers = {
            "Authorization": f"Bearer {stage.web_b}",
            "X-Kubelab-Sandbox": stage.b,
            "X-Kubelab-Port": str(stage.port_b),
            "X-Kubelab-Path": "index.html",
        }
        transport = httpx.HTTPTransport(uds=stage.socket)
        with httpx.Client(transport=transport, base_url="http://runtimed", timeout=20) as http:
            try:
                answer = http.get("/v1/preview", headers=headers)
            except httpx.ReadTimeout:
                pytest.fail(f"{HELD} hanging previews of sandbox a stalled sandbox b's preview for 20 s")
        assert answer.status_code == 200 and answer.text == "ok\n"
    finally:
        for s in held:
            s.close()
