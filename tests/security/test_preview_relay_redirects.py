"""runtimed's preview relay (runtime/proxy.py) reaches the sandbox's own address only, even
when the student's app answers with a redirect.

runtimed runs on the host's network as root: if it followed an app's
``302 Location: http://127.0.0.1:<port>/`` it would connect wherever the student says (the
host's services, a lab cluster's API, a classmate's sandbox) and tell the student whether
something answers there. HTTP requests are sent without following redirects (the browser
gets the 3xx as it is); aiohttp's ``ws_connect`` follows them by default, so a WebSocket
handshake answered with a redirect was followed.

The relay is the real ``SandboxProxy``; the app and the place it points to are aiohttp
servers on loopback (a stand-in for the sandbox's address and for a host service: the
relay treats both as addresses). Each attack test fails if the host service is reached.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web

from runtime.proxy import SandboxProxy

pytestmark = pytest.mark.asyncio


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Stage:
    gateway: str  # host:port/proxy/<app port>
    host_service_hits: list[str] = field(default_factory=list)


async def echo_ws(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for msg in ws:
        await ws.send_str("echo:" + msg.data)
    return ws


@pytest.fixture
async def stage() -> AsyncIterator[Stage]:
    app_port, service_port, gateway_port = free_port(), free_port(), free_port()
    st = Stage("")

    async def service(request: web.Request) -> web.StreamResponse:
        st.host_service_hits.append(request.path)
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await echo_ws(request)  # would even complete the handshake
        return web.Response(text="host-secret")

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"http://127.0.0.1:{service_port}/steal{request.path}")

    app = web.Application()
    app.router.add_get("/ws", echo_ws)
    app.router.add_route("*", "/{tail:.*}", redirect)
    host_service = web.Application()
    host_service.router.add_route("*", "/{tail:.*}", service)
    proxy = SandboxProxy()

    async def relay(request: web.Request) -> web.StreamResponse:
        path = request.raw_path.split("/", 3)[3].split("?", 1)[0]
        return await proxy.handle(request, "127.0.0.1", int(request.match_info["port"]), path, "")

    front = web.Application()
    front.router.add_route("*", "/proxy/{port}/{path:.*}", relay)
    runners = [web.AppRunner(app), web.AppRunner(host_service), web.AppRunner(front)]
    for runner, port in zip(runners, (app_port, service_port, gateway_port), strict=True):
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
    st.gateway = f"127.0.0.1:{gateway_port}/proxy/{app_port}"
    yield st
    await proxy.close()
    for runner in runners:
        await runner.cleanup()


async def test_a_websocket_handshake_answered_with_a_redirect_is_not_followed(stage: Stage) -> None:
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
            async with http.ws_connect(f"ws://{stage.gateway}/chat"):
                pass
        assert exc.value.status != 101
    assert stage.host_service_hits == [], "runtimed followed the app's redirect to another address"


async def test_an_http_redirect_goes_back_to_the_browser_as_it_is(stage: Stage) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://{stage.gateway}/login", allow_redirects=False) as r,
    ):
        assert r.status == 302
        assert r.headers["Location"].endswith("/steal/login")
        assert "host-secret" not in await r.text()
    assert stage.host_service_hits == []


async def test_a_websocket_without_a_redirect_is_still_relayed(stage: Stage) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(f"ws://{stage.gateway}/ws") as ws:
        await ws.send_str("hi")
        assert (await ws.receive(timeout=5)).data == "echo:hi"
    assert stage.host_service_hits == []
