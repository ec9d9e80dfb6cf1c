"""Review (the host side of a sandbox's Docker socket): the credential-free allow-list
(``/_ping`` and ``/version``, ``runtime.dockerapi.service._OPEN_ON_HOST``) lets through no
request that the engine then routes anywhere else.

The guard and the router both read ``Request.path`` as ``runtime.dockerapi.http.server`` parses it
from the raw request line, so each attempt below is parsed exactly as the host socket would
parse it, checked by the service's own guard, and, when the guard lets it through, routed by
the API's own table: it must land on ``ping`` or ``version`` (or nowhere)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

import pytest

from runtime import auth, errors
from runtime.dockerapi.engine import Engine
from runtime.dockerapi.http.api import DockerAPI
from runtime.dockerapi.http.server import HTTPError, Request, _parse_head
from runtime.dockerapi.service import DockerService

SID = "0123456789ab"
TARGETS = [
    "/_ping",
    "/version",
    "/v1.41/version",
    "/v1.41/_ping",
    "/v1.41/version/../containers/json",
    "/version/../containers/json",
    "/version/..%2fcontainers/json",
    "/version%2f..%2fcontainers%2fjson",
    "/v1.41/version%2F..%2Fcontainers%2Fjson",
    "/%76ersion",
    "/v1.41/%5fping",
    "/version%0a",
    "/version%0a/../containers/json",
    "/_ping%0acontainers/json",
    "/version/",
    "/version?x=/../containers/json",
    "/version#/../containers/json",
    "/version;/containers/json",
    "//version",
    "/v1.41//version",
    "/v1..41/version",
    "/v1.41.1/version",
    "/v1/version",
    "/VERSION",
    "/v1.41/version/containers/json",
    "http://docker/containers/json",
    "/containers/json?/version",
    "/containers/json#/_ping",
]
METHODS = ["GET", "HEAD", "get", "head", "POST", "DELETE"]


def _request(method: str, target: str, headers: dict[str, str] | None = None) -> Request:
    lines = [f"{method} {target} HTTP/1.1", "Host: docker", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return _parse_head(head, cast(asyncio.StreamReader, None), cast(asyncio.StreamWriter, None))


def _route(api: DockerAPI, req: Request) -> Any:
    try:
        api._route_version(req)
    except HTTPError:
        return None
    for method, pattern, fn in api.routes:
        if pattern.match(req.path) and method == req.method:
            return fn
    return None


@pytest.fixture
def service() -> DockerService:
    authority = auth.Authority(b"k" * 32, "admin-token-of-the-test-0123456789")
    return DockerService(None, cast(Any, None), Path("/nonexistent"), authority=authority)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("target", TARGETS)
def test_what_passes_the_host_sockets_allow_list_is_only_ping_or_version(
    service: DockerService, method: str, target: str
) -> None:
    api = DockerAPI(cast(Engine, None))
    req = _request(method, target)
    try:
        service._authorize(SID, req)
    except errors.RuntimeError:
        return  # refused without a credential: nothing to route
    handler = _route(api, _request(method, target))
    assert handler in (None, api.ping, api.version), (method, target, handler)


def test_a_token_of_another_sandbox_or_role_is_refused_on_any_other_path(service: DockerService) -> None:
    assert service.authority is not None
    foreign = service.authority.mint("ba9876543210", [auth.DOCKER], 60)
    web = service.authority.mint(SID, sorted(auth.ROLES["web"]), 60)
    prefix = service.authority.mint(SID[:-1], [auth.DOCKER], 60)
    for token in (foreign, web, prefix, "forged", ""):
        req = _request("GET", "/v1.41/containers/json", {"Authorization": f"Bearer {token}"})
        with pytest.raises((errors.Unauthorized, errors.Forbidden)):
            service._authorize(SID, req)
    ok = service.authority.mint(SID, [auth.DOCKER], 60)
    service._authorize(SID, _request("GET", "/v1.41/containers/json", {"Authorization": f"Bearer {ok}"}))
