"""runtime.client.AsyncClient's preview: the caller's headers never name the sandbox, the port,
the path or the credential runtimed acts with (brief A of round 5, the web tier's single route).

The web tier hands ``preview`` the browser's request headers (labs/preview.py, on a preview
origin with ``Authorization`` kept: the student's app may use Basic auth). runtimed reads its
routing from ``X-Kubelab-Sandbox``/``-Port``/``-Path`` and its credential from
``Authorization``, the first of each it sees. A caller header with the same name in another
case (``x-kubelab-sandbox``, ``AUTHORIZATION``) is another key of a ``dict``: merged next to
ours it went out too, and first. Here a fake runtimed on a unix socket records exactly what
arrives; no sandbox is involved.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
from aiohttp import web

from runtime.client import AsyncClient

HOSTILE = {
    "x-kubelab-sandbox": "victim",
    "X-KUBELAB-PORT": "22",
    "x-Kubelab-Path": "../../v1/sandboxes",
    "authorization": "Bearer stolen-or-forged",
    "AUTHORIZATION": "Basic c3R1ZGVudDpwdw==",
    "X-App-Header": "kept",
}


async def _record(socket_path: Path, call: str, token: str) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.extend((k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers)
        if request.headers.get("Upgrade", "").lower() == "websocket":
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            await ws.close()
            return ws
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_route("*", "/v1/preview", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.UnixSite(runner, str(socket_path))
    await site.start()
    client = AsyncClient(str(socket_path), token=token)
    try:
        if call == "http":
            answer = await client.preview(
                "mine", 8080, "index.html", "", method="POST", headers=dict(HOSTILE), body=b"x"
            )
            assert answer.response.status == 200
            await answer.close()
        else:
            sock = await client.preview_ws("mine", 8080, "ws", "")
            await sock.close()
    finally:
        await client.close()
        await runner.cleanup()
    return seen


def _values(seen: list[tuple[str, str]], name: str) -> list[str]:
    return [v for k, v in seen if k.lower() == name.lower()]


def test_a_callers_routing_and_credential_headers_never_reach_runtimed(tmp_path: Path) -> None:
    seen = asyncio.run(_record(tmp_path / "rt.sock", "http", "kls1.the-sessions-own"))
    assert _values(seen, "X-Kubelab-Sandbox") == ["mine"]
    assert _values(seen, "X-Kubelab-Port") == ["8080"]
    assert _values(seen, "X-Kubelab-Path") == ["index.html"]
    assert _values(seen, "Authorization") == ["Bearer kls1.the-sessions-own"]
    assert _values(seen, "X-App-Header") == ["kept"]  # the app's own headers still go on


def test_without_a_credential_of_its_own_the_callers_is_not_used_instead(tmp_path: Path) -> None:
    # a session whose web token is empty (the editor refuses those; the preview asked runtimed
    # anyway): the browser's Authorization header must not become runtimed's credential
    seen = asyncio.run(_record(tmp_path / "rt.sock", "http", ""))
    assert _values(seen, "Authorization") == []
    assert _values(seen, "X-Kubelab-Sandbox") == ["mine"]


def test_the_websocket_half_sends_ours_alone(tmp_path: Path) -> None:
    seen = asyncio.run(_record(tmp_path / "rt.sock", "ws", "kls1.the-sessions-own"))
    assert _values(seen, "X-Kubelab-Sandbox") == ["mine"]
    assert _values(seen, "Authorization") == ["Bearer kls1.the-sessions-own"]


def test_aiohttp_keeps_the_last_spelling_of_a_header_only(tmp_path: Path) -> None:
    """Why the routing headers above were never the hole and the credential was: aiohttp keeps
    one header per name whatever its case, the last set; ``preview_headers`` sets its own last.
    With no token of its own the client sets no Authorization, and the caller's went."""

    async def go() -> list[tuple[str, str]]:
        seen: list[tuple[str, str]] = []

        async def handler(request: web.Request) -> web.Response:
            seen.extend((k.decode(), v.decode()) for k, v in request.raw_headers)
            return web.Response()

        app = web.Application()
        app.router.add_get("/", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.UnixSite(runner, str(tmp_path / "p.sock")).start()
        try:
            connector = aiohttp.UnixConnector(path=str(tmp_path / "p.sock"))
            headers = {"x-kubelab-sandbox": "a", "X-Kubelab-Sandbox": "b"}
            async with aiohttp.ClientSession(connector=connector) as http, http.get("http://x/", headers=headers):
                pass
        finally:
            await runner.cleanup()
        return seen

    assert _values(asyncio.run(go()), "X-Kubelab-Sandbox") == ["b"]
