"""runtime.client: the names it puts in runtimed's URLs (a sandbox id, a terminal's session id,
an image name) are data, one path segment each, never a route (brief A of round 5).

``quote(name, safe="")`` encodes ``/`` but not dots, and both HTTP clients (httpx for the
synchronous client, aiohttp/yarl for the async one the terminals use) resolve dot segments
before sending: a sandbox id ``..`` made ``/v1/sandboxes/../sessions/x`` into
``/v1/sessions/x``. The web tier takes these names from its database, not from a request;
this is the layer below making sure of it. A fake runtimed records what arrives.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from runtime import errors
from runtime.client import AsyncClient, Client

BAD = ["..", ".", ""]


@pytest.fixture
def fake_runtimed(tmp_path: Path) -> Iterator[tuple[Path, list[str]]]:
    """A runtimed on a unix socket (its own thread and loop) answering ``{}`` to anything."""
    path = tmp_path / "rt.sock"
    seen: list[str] = []
    loop = asyncio.new_event_loop()
    started = threading.Event()
    runner: list[web.AppRunner] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.raw_path)
        return web.json_response({"session_id": "x", "exited": False})

    async def start() -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        r = web.AppRunner(app)
        await r.setup()
        await web.UnixSite(r, str(path)).start()
        runner.append(r)
        started.set()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(start()), loop.run_forever()), daemon=True)
    thread.start()
    assert started.wait(10)
    yield path, seen
    asyncio.run_coroutine_threadsafe(runner[0].cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


@pytest.mark.parametrize("bad", BAD)
def test_the_sync_client_never_sends_a_dot_segment_as_a_route(fake_runtimed: tuple[Path, list[str]], bad: str) -> None:
    path, seen = fake_runtimed
    client = Client(str(path), token="kls1.t")
    try:
        for call in (
            lambda: client.get_session(bad, "s1"),
            lambda: client.get_session("box", bad),
            lambda: client.files_list(bad, "/root"),
            lambda: client.stats(bad),
        ):
            with pytest.raises(errors.BadRequest):
                call()
        client.get_session("box", "s1")  # a real name still goes, as one segment
    finally:
        client.close()
    assert seen == ["/v1/sandboxes/box/sessions/s1"]


@pytest.mark.parametrize("bad", BAD)
def test_the_async_client_never_sends_a_dot_segment_as_a_route(fake_runtimed: tuple[Path, list[str]], bad: str) -> None:
    path, seen = fake_runtimed

    async def go() -> None:
        async with AsyncClient(str(path), token="kls1.t") as client:
            with pytest.raises(errors.BadRequest):
                await client.get_session(bad, "s1")
            with pytest.raises(errors.BadRequest):
                await client.get_session("box", bad)
            with pytest.raises(errors.BadRequest):
                await client.resize("box", bad, 24, 80)
            await client.get_session("box", "s1")

    asyncio.run(go())
    assert seen == ["/v1/sandboxes/box/sessions/s1"]


def test_a_slash_in_a_name_stays_in_its_segment(fake_runtimed: tuple[Path, list[str]]) -> None:
    path, seen = fake_runtimed
    client = Client(str(path), token="kls1.t")
    try:
        client.get_session("../../v1/images", "s1")
    finally:
        client.close()
    assert seen == ["/v1/sandboxes/..%2F..%2Fv1%2Fimages/sessions/s1"]
