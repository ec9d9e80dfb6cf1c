"""runtime/proxy.py relays HTTP and WebSocket traffic to an address and port.

Here the upstream is an aiohttp app on loopback standing in for a student's
app (the sandbox network itself is exercised by tests/labs/test_preview.py
through a real runtimed)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from runtime.proxy import SandboxProxy

pytestmark = pytest.mark.asyncio


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def echo_ws(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(protocols=("chat",))
    await ws.prepare(request)
    async for msg in ws:
        if msg.type == aiohttp.WSMsgType.TEXT:
            await ws.send_str("echo:" + msg.data)
        elif msg.type == aiohttp.WSMsgType.BINARY:
            await ws.send_bytes(msg.data[::-1])
    return ws


async def hello(request: web.Request) -> web.Response:
    return web.Response(text=f"{request.method} {request.path_qs} {await request.text()}", headers={"X-App": "1"})


RELEASE: web.AppKey[asyncio.Event] = web.AppKey("release", asyncio.Event)


async def hang(request: web.Request) -> web.Response:
    await request.app[RELEASE].wait()  # an app that does not answer until the test ends
    return web.Response()


@pytest.fixture
async def gateway() -> AsyncIterator[str]:
    upstream_port, gateway_port = free_port(), free_port()
    upstream = web.Application()
    upstream.router.add_get("/ws", echo_ws)
    upstream[RELEASE] = asyncio.Event()
    upstream.router.add_get("/hang", hang)
    upstream.router.add_route("*", "/{tail:.*}", hello)
    proxy = SandboxProxy(per_sandbox=3)

    async def relay(request: web.Request) -> web.StreamResponse:
        path = request.raw_path.split("/", 3)[3].split("?", 1)[0]
        return await proxy.handle(
            request, "127.0.0.1", int(request.match_info["port"]), path, request.rel_url.raw_query_string
        )

    front = web.Application()
    front.router.add_route("*", "/proxy/{port}/{path:.*}", relay)
    runners = [web.AppRunner(upstream), web.AppRunner(front)]
    for runner in runners:
        await runner.setup()
    await web.TCPSite(runners[0], "127.0.0.1", upstream_port).start()
    await web.TCPSite(runners[1], "127.0.0.1", gateway_port).start()
    yield f"127.0.0.1:{gateway_port}/proxy/{upstream_port}"
    upstream[RELEASE].set()
    await proxy.close()
    for runner in runners:
        await runner.cleanup()


async def test_http_requests_are_relayed_with_method_path_query_and_body(gateway: str) -> None:
    async with aiohttp.ClientSession() as http, http.post(f"http://{gateway}/api/items?x=1", data=b"payload") as r:
        assert r.status == 200
        assert await r.text() == "POST /api/items?x=1 payload"
        assert r.headers["X-App"] == "1"


async def test_websocket_frames_are_relayed_both_ways_with_the_subprotocol(gateway: str) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(f"ws://{gateway}/ws", protocols=("chat",)) as ws:
        assert ws.protocol == "chat"
        await ws.send_str("hi")
        assert (await ws.receive(timeout=5)).data == "echo:hi"
        await ws.send_bytes(b"abc")
        assert (await ws.receive(timeout=5)).data == b"cba"


async def test_a_closed_port_is_a_clear_gateway_error(gateway: str) -> None:
    closed = gateway.rsplit("/", 1)[0] + f"/{free_port()}"
    async with aiohttp.ClientSession() as http, http.get(f"http://{closed}/") as r:
        assert r.status == 502
        assert r.headers["X-Runtime-Error"] == "unreachable"
        assert "Nothing answers on port" in await r.text()


async def test_one_sandbox_holds_a_bounded_share_of_the_relay(gateway: str) -> None:
    """Past its share, a sandbox's next request is refused at once (429), never queued: one
    student's hanging app cannot hold the relay that every classmate's preview goes through."""
    async with aiohttp.ClientSession() as http:
        hanging = [asyncio.create_task(http.get(f"http://{gateway}/hang")) for _ in range(3)]
        await asyncio.sleep(0.5)  # let them reach the app (no timing is asserted)
        async with http.get(f"http://{gateway}/index.html", timeout=aiohttp.ClientTimeout(total=30)) as r:
            assert r.status == 429
            assert "preview requests open" in await r.text()
            assert r.headers["X-Runtime-Error"] == "busy"
        for task in hanging:
            task.cancel()
        await asyncio.gather(*hanging, return_exceptions=True)
        for _ in range(50):  # the share frees as the hanging requests end
            async with http.get(f"http://{gateway}/index.html") as r:
                if r.status == 200:
                    break
            await asyncio.sleep(0.1)
        assert r.status == 200
