"""runtimed's capability model (runtime/auth.py): one sandbox's token reaches that sandbox
and those operations only; the admin token is needed for everything else.

Served by the real ``Daemon`` app on the host stand-in (``ThreadedDaemon``): the routing
and the checks are the daemon's own; what a sandbox is does not matter here.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from runtime import auth, errors
from runtime.client import Client
from tests.runtime.conftest_daemon import short_tmp
from tests.runtime.daemon_helpers import ThreadedDaemon

ADMIN = os.environ["RUNTIME_ADMIN_TOKEN"]


@dataclass
class Two:
    socket: str
    a: str  # sandbox ids
    b: str
    web_a: str  # tokens
    grader_a: str
    served: frozenset[tuple[str, str]] = frozenset()  # the daemon's own route table (method, path)


@pytest.fixture
def two() -> Iterator[Two]:
    tmp = short_tmp("rta-")
    daemon = ThreadedDaemon(tmp).start()
    try:
        with Client(daemon.socket, token=ADMIN) as admin:
            a = admin.create_sandbox({"image": "busybox"})["id"]
            b = admin.create_sandbox({"image": "busybox"})["id"]
            assert daemon.daemon is not None
            yield Two(
                str(daemon.socket),
                a,
                b,
                admin.mint_token(a, role="web", ttl=600),
                admin.mint_token(a, role="grader", ttl=600),
                frozenset((r.method, r.resource.canonical) for r in daemon.daemon.app.router.routes() if r.resource),
            )
    finally:
        daemon.stop()
        shutil.rmtree(tmp, ignore_errors=True)


Call = tuple[str, str, dict[str, Any]]


def raw(
    sock: str, method: str, path: str, token: str | None, headers: dict[str, str] | None = None, **kw: Any
) -> httpx.Response:
    headers = {**(headers or {}), **({"Authorization": f"Bearer {token}"} if token else {})}
    with httpx.Client(transport=httpx.HTTPTransport(uds=sock), base_url="http://runtimed") as http:
        return http.request(method, path, headers=headers, **kw)


def routes(sid: str) -> list[Call]:
    sb = f"/v1/sandboxes/{sid}"
    return [
        ("GET", sb, {}),
        ("GET", sb + "/stats", {}),
        ("POST", sb + "/touch", {}),
        ("GET", sb + "/kubeconfig", {}),
        ("POST", sb + "/kube-users", {"json": {"user": "u"}}),
        ("POST", sb + "/kube/connectivity", {"json": {"namespace": "d", "pod": "p", "host": "10.0.0.1", "port": 1}}),
        ("GET", sb + "/docker", {}),
        ("POST", sb + "/exec", {"json": {"argv": ["true"]}}),
        ("POST", sb + "/sessions", {"json": {}}),
        ("GET", sb + "/sessions", {}),
        ("GET", sb + "/sessions/x", {}),
        ("DELETE", sb + "/sessions/x", {}),
        ("POST", sb + "/sessions/x/resize", {"json": {"rows": 1, "cols": 1}}),
        ("GET", sb + "/sessions/x/attach", {}),
        ("GET", sb + "/exec/stream", {}),
        ("GET", sb + "/files", {}),
        ("GET", sb + "/files/content", {"params": {"path": "x"}}),
        ("PUT", sb + "/files/content", {"json": {"path": "x", "content": "", "etag": None}}),
        ("POST", sb + "/stop", {}),
        ("POST", sb + "/pause", {}),
        ("POST", sb + "/resume", {}),
        ("POST", sb + "/kube/validate", {"json": {"objects": []}}),
        ("DELETE", sb, {}),
        ("POST", sb + "/tokens", {"json": {"role": "web"}}),
        # the relays of the lab cluster's and the docker engine's APIs (runtime.relay)
        ("GET", sb + "/kube-api/api/v1/namespaces", {}),
        ("POST", sb + "/kube-api/api/v1/namespaces/default/configmaps", {"json": {}}),
        ("GET", sb + "/docker-api/_ping", {}),
        ("DELETE", sb + "/docker-api/containers/x", {}),
    ]


ADMIN_ONLY: list[Call] = [
    ("GET", "/v1/sandboxes", {}),
    ("POST", "/v1/sandboxes", {"json": {"image": "busybox"}}),
    ("GET", "/v1/images", {}),
    ("POST", "/v1/images/busybox/build", {}),
    ("GET", "/v1/images/busybox/export", {}),
    ("DELETE", "/v1/images/busybox", {}),
    ("POST", "/v1/images/import", {"content": b""}),
]


def test_without_a_credential_only_health_answers(two: Two) -> None:
    assert raw(two.socket, "GET", "/v1/healthz", None).status_code == 200
    for method, path, kw in [*routes(two.a), *ADMIN_ONLY]:
        response = raw(two.socket, method, path, None, **kw)
        assert response.status_code == 401, (method, path, response.text)
        assert response.json()["error"] == "unauthorized"


def test_a_forged_or_foreign_token_is_unauthorized(two: Two) -> None:
    other = auth.Authority(b"another runtimed's key".ljust(32, b"!"), "another-admin-token-123456")
    forged = other.mint(two.a, auth.ROLES["web"], 600)
    tampered = two.web_a[:-2] + ("AA" if not two.web_a.endswith("AA") else "BB")
    for token in (forged, tampered, "kls1.e30.e30", ADMIN + "x", "not-a-token"):
        response = raw(two.socket, "GET", f"/v1/sandboxes/{two.a}", token)
        assert response.status_code == 401, (token, response.text)


def test_one_sandboxs_token_is_refused_for_every_route_of_another(two: Two) -> None:
    for token in (two.web_a, two.grader_a):
        for method, path, kw in routes(two.b):
            response = raw(two.socket, method, path, token, **kw)
            assert response.status_code == 403, (method, path, response.text)
            assert response.json()["error"] == "forbidden"
    # the sandbox is still there and untouched
    with Client(two.socket, token=ADMIN) as admin:
        assert admin.get_sandbox(two.b)["status"] == "running"


def test_sandbox_tokens_never_do_admin_work(two: Two) -> None:
    for token in (two.web_a, two.grader_a):
        for method, path, kw in [
            *ADMIN_ONLY,
            ("POST", f"/v1/sandboxes/{two.a}/stop", {}),
            ("DELETE", f"/v1/sandboxes/{two.a}", {}),
        ]:
            response = raw(two.socket, method, path, token, **kw)
            assert response.status_code == 403, (method, path, response.text)


def test_the_web_role_cannot_exec_and_the_grader_role_cannot_open_terminals(two: Two) -> None:
    with Client(two.socket, token=two.web_a) as web, Client(two.socket, token=two.grader_a) as grader:
        assert web.get_sandbox(two.a)["id"] == two.a
        with pytest.raises(errors.Forbidden, match="does not allow 'exec'"):
            web.exec(two.a, ["true"])
        with pytest.raises(errors.Forbidden):
            web.kubeconfig(two.a)
        with pytest.raises(errors.Forbidden):
            web.docker_socket(two.a)
        assert grader.exec(two.a, ["true"]).exit_code == 0
        with pytest.raises(errors.Forbidden, match="does not allow 'terminal'"):
            grader.list_sessions(two.a)
        with pytest.raises(errors.Forbidden, match="does not allow 'files'"):
            grader.files_list(two.a)
        assert web.list_sessions(two.a) == []


def test_an_expired_token_is_refused(two: Two) -> None:
    authority = auth.Authority(b"k" * 32, ADMIN)  # ThreadedDaemon's key
    old = authority.mint(two.a, ["read"], 60, now=0)
    response = raw(two.socket, "GET", f"/v1/sandboxes/{two.a}", old)
    assert response.status_code == 401 and "expired" in response.json()["message"]


def test_minting_checks_what_it_is_asked_for(two: Two) -> None:
    with Client(two.socket, token=ADMIN) as admin:
        with pytest.raises(errors.BadRequest, match="unknown operations"):
            admin.mint_token(two.a, ops=["admin"])
        with pytest.raises(errors.BadRequest, match="unknown role"):
            admin.mint_token(two.a, role="root")
        with pytest.raises(errors.SandboxNotFound):
            admin.mint_token("nope", role="web")
        with pytest.raises(errors.BadRequest, match="ttl_seconds"):
            admin.mint_token(two.a, role="web", ttl=auth.MAX_TTL + 1)


def test_the_preview_endpoint_checks_the_sandbox_named_in_its_header(two: Two) -> None:
    headers = {"X-Kubelab-Sandbox": two.b, "X-Kubelab-Port": "8080", "X-Kubelab-Path": ""}
    response = raw(two.socket, "GET", "/v1/preview", two.web_a, headers=headers)
    assert response.status_code == 403
    response = raw(two.socket, "GET", "/v1/preview", two.grader_a, headers={**headers, "X-Kubelab-Sandbox": two.a})
    assert response.status_code == 403  # graders do not preview


@pytest.mark.parametrize(
    "path",
    [
        "../v1/sandboxes",
        "..%2f..%2fv1%2fsandboxes",
        "%2e%2e/v1/sandboxes",
        "..%252fsandboxes",
        "a\\..\\b",
        "http://runtimed/v1/sandboxes",
        "//runtimed/v1/sandboxes",
        "%c0%ae%c0%ae/x",
        "x%0d%0aHost:%20evil",
    ],
)
def test_runtimed_refuses_a_preview_path_outside_the_app_itself(two: Two, path: str) -> None:
    headers = {"X-Kubelab-Sandbox": two.a, "X-Kubelab-Port": "8080", "X-Kubelab-Path": path}
    response = raw(two.socket, "GET", "/v1/preview", two.web_a, headers=headers)
    assert response.status_code == 400, response.text
    assert "refused preview path" in response.json()["message"]


def test_every_route_of_the_daemon_is_in_this_battery(two: Two) -> None:
    """A route added to runtimed without a line above would go untested for the two tests
    that prove one sandbox's token reaches nothing of another's (or of the admin's)."""
    tested = {(m, p.replace(two.b, "{id}").replace("/sessions/x", "/sessions/{sid}")) for m, p, _ in routes(two.b)}
    tested |= {(m, p.replace("/images/busybox", "/images/{name}")) for m, p, _ in ADMIN_ONLY}
    tested |= {("GET", "/v1/healthz"), ("*", "/v1/preview")}  # open; the preview has its own tests above
    # any method: the relays, tried above with GET, POST and DELETE
    tested |= {("*", "/v1/sandboxes/{id}/kube-api{tail}"), ("*", "/v1/sandboxes/{id}/docker-api{tail}")}
    served = {(m, p) for m, p in two.served if m != "HEAD"}
    assert served, "the daemon's route table was not read"
    missing = sorted(served - tested)
    assert not missing, f"routes of runtimed no attack test covers: {missing}"


def test_the_old_proxy_route_into_the_api_is_gone(two: Two) -> None:
    response = raw(two.socket, "GET", f"/v1/sandboxes/{two.a}/proxy/8080/", ADMIN)
    assert response.status_code in (404, 405)
