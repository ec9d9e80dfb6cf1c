"""One sandbox cannot spend runtimed's file descriptors through its API listener.

runtimed serves every sandbox's lab cluster on ``127.0.0.1:6443`` inside that sandbox
(runtime/kube/service.py), each accepted connection a descriptor of runtimed's one process,
which every sandbox, every engine and the graders share. Nothing bounded them: a student
opening connections (no TLS hello even: aiohttp and asyncio wait) until runtimed's
``RLIMIT_NOFILE`` made every other student's API calls, terminals and checks fail with
EMFILE. The listener now counts its connections from accept to close (before TLS, so a
stalled handshake counts) and closes what comes past ``MAX_CONNECTIONS`` at once.

The listener is served here by aiohttp on a host loopback socket (the netns helper needs a
sandbox); ``KubeService._serve`` wraps the sandbox's socket the same way.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from runtime.kube import service

LIMIT = 8


@pytest.fixture
async def listener() -> AsyncIterator[tuple[int, service.CappedListener]]:
    async def ok(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", ok)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    raw = socket.socket()
    raw.bind(("127.0.0.1", 0))
    raw.listen(64)
    capped = service.CappedListener(raw, LIMIT)
    await web.SockSite(runner, capped).start()
    try:
        yield capped.getsockname()[1], capped
    finally:
        await runner.cleanup()


async def dial(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def dropped(reader: asyncio.StreamReader) -> bool:
    """The server closed the connection (EOF or reset) rather than holding it open."""
    try:
        async with asyncio.timeout(2):
            return await reader.read(1) == b""
    except TimeoutError:
        return False
    except ConnectionError:
        return True


async def test_connections_past_the_limit_are_closed_at_once(listener: tuple[int, service.CappedListener]) -> None:
    port, capped = listener
    held = [await dial(port) for _ in range(LIMIT)]
    for _ in range(50):  # let the loop accept them all
        if capped.open == LIMIT:
            break
        await asyncio.sleep(0.02)
    assert capped.open == LIMIT
    extra = [await dial(port) for _ in range(4)]
    assert all([await dropped(r) for r, _ in extra])
    assert capped.open == LIMIT
    # the ones held are still served
    r, w = held[0]
    w.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    await w.drain()
    assert b"200 OK" in await r.readuntil(b"\r\n")
    # closing one makes room for one
    for _, w in held[1:3]:
        w.close()
    for _ in range(100):
        if capped.open == LIMIT - 2:
            break
        await asyncio.sleep(0.02)
    assert capped.open == LIMIT - 2
    again = await dial(port)
    assert not await dropped(again[0])
    for _, w in [*held, *extra, again]:
        w.close()
