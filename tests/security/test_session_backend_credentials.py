"""``labs.sandboxes.for_session``: the web tier's one route to runtimed acts with the session's
own credential only, never the process's (brief A of round 5).

The process keeps one backend per name (``backend_for``: its connections are reused); a
worker's carries runtimed's admin token. Terminals, the preview and the editor speak through
``for_session(session)``: each must carry exactly that session's web token (a token runtimed
scopes to that session's sandbox), whichever sessions this process served before or serves at
the same time, and a session with no token must get no credential at all, not the admin's.
Giving one back (``release``) never closes the process's own backend. A fake runtimed on a
unix socket records the credential of every request; no sandbox is involved.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from aiohttp import web
from django.test import override_settings

from labs import sandboxes
from runtime.backends import DockerBackend, SandboxBackend

ADMIN = "admin-secret-of-the-worker"


@pytest.fixture
def socket_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    # a worker's environment: runtimed's clients fall back to $RUNTIME_TOKEN when given None
    monkeypatch.setenv("RUNTIME_TOKEN", ADMIN)
    path = tmp_path / "rt.sock"
    with override_settings(RUNTIME_SOCKET=str(path), RUNTIME_ADMIN_TOKEN=ADMIN):
        yield path
        sandboxes._BACKENDS.pop(("namespace", str(path)), None)


def _session(token: str, sandbox: str) -> SimpleNamespace:
    return SimpleNamespace(backend="namespace", runtime_token=token, sandbox_id=sandbox)


async def _serve(socket_path: Path, seen: list[tuple[str, str | None]]) -> web.AppRunner:
    async def handler(request: web.Request) -> web.Response:
        seen.append((request.headers.get("X-Kubelab-Sandbox", ""), request.headers.get("Authorization")))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_route("*", "/v1/preview", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.UnixSite(runner, str(socket_path)).start()
    return runner


async def _preview(backend: SandboxBackend, sandbox: str) -> None:
    answer = await backend.preview(sandbox, 8080, "", "", method="GET", headers={}, body=b"")
    await answer.close()


def test_each_session_speaks_with_its_own_token_even_at_once(socket_path: Path) -> None:
    # the process's own backend is made (and used) first, as a worker's is
    shared = sandboxes.backend_for("namespace").backend
    seen: list[tuple[str, str | None]] = []

    async def go() -> None:
        runner = await _serve(socket_path, seen)
        try:
            a = sandboxes.for_session(_session("kls1.token-of-a", "box-a"))
            b = sandboxes.for_session(_session("kls1.token-of-b", "box-b"))
            assert a is not shared and b is not shared and a is not b
            await asyncio.gather(*(_preview(x, box) for _ in range(5) for x, box in ((a, "box-a"), (b, "box-b"))))
            await sandboxes.release(a)
            await sandboxes.release(b)
        finally:
            await runner.cleanup()

    asyncio.run(go())
    assert sorted(set(seen)) == [("box-a", "Bearer kls1.token-of-a"), ("box-b", "Bearer kls1.token-of-b")]
    assert len(seen) == 10


def test_a_session_without_a_token_gets_no_credential_not_the_processs(socket_path: Path) -> None:
    """Found in this review: ``scoped("")`` kept None as "no credential" and its async client
    (terminals, the preview) read None as "fall back to $RUNTIME_TOKEN": in a process holding
    the admin token, a session without a web token acted as admin."""
    sandboxes.backend_for("namespace")
    seen: list[tuple[str, str | None]] = []

    async def go() -> None:
        runner = await _serve(socket_path, seen)
        try:
            for token in ("", None):
                backend = sandboxes.for_session(_session(token, "box-c"))  # type: ignore[arg-type]
                await _preview(backend, "box-c")
                await sandboxes.release(backend)
        finally:
            await runner.cleanup()

    asyncio.run(go())
    assert seen == [("box-c", None), ("box-c", None)]


def test_giving_a_sessions_backend_back_leaves_the_processs_open(socket_path: Path) -> None:
    shared = sandboxes.backend_for("namespace").backend
    client = shared.client  # type: ignore[attr-defined]  # NamespaceBackend: made on first use

    async def go() -> None:
        backend = sandboxes.for_session(_session("kls1.t", "box"))
        await sandboxes.release(backend)

    asyncio.run(go())
    sandboxes.release_sync(shared)  # the editor's path, handed the shared one (a docker session's)
    assert shared.client is client  # type: ignore[attr-defined]  # not closed and made again


def test_a_backend_without_tokens_is_shared_and_never_closed_by_a_session() -> None:
    """The docker backend trusts its callers (no tokens): ``scoped`` gives the process's own,
    and a session's ``release`` must not close it under every other session of the process."""
    backend = DockerBackend.__new__(DockerBackend)  # no Docker engine needed for this
    closed: list[bool] = []
    backend.close = lambda: closed.append(True)  # type: ignore[method-assign]
    key = ("docker", "test-session-backend-credentials")
    sandboxes._BACKENDS[key] = sandboxes.LabSandboxes(backend)
    try:
        assert backend.scoped("") is backend
        sandboxes.release_sync(backend)
        asyncio.run(sandboxes.release(backend))
        assert closed == []
    finally:
        sandboxes._BACKENDS.pop(key, None)
