"""Hostile protobuf bodies against every verb of the lab cluster's API server.

A student holds cluster-admin of their own cluster and can send any bytes as
``application/vnd.kubernetes.protobuf``. Malformed ones are 400 BadRequest, ones we
do not read are 415, oversized ones 413: always a ``Status`` of the real server's shape,
never a 500, never a change to what is stored. Requests go through server.py's HTTP app.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer

from runtime.kube.apiserver.provision import create_cluster
from runtime.kube.apiserver.server import Hub, make_app
from runtime.kube.controllers.manager import Controllers
from tests.runtime.kube import pbwire
from tests.runtime.kube.pbwire import MAGIC, envelope, field, varint

CT = pbwire.CONTENT_TYPE
CMS = "/api/v1/namespaces/default/configmaps"

MALFORMED = {
    "no envelope": b'{"kind": "DeleteOptions"}',
    "magic only": MAGIC,
    "truncated varint": MAGIC + b"\x0a\xff",
    "length past the end": MAGIC + b"\x0a\xff\xff\xff\xff\x0f" + b"x" * 16,
    "eleven-byte varint": MAGIC + b"\x08" + b"\xff" * 10 + b"\x01",
    "group wire type": MAGIC + b"\x0b\x0c",
    "wire type 7": MAGIC + b"\x0f",
    "field number 0": MAGIC + b"\x02\x00",
    "fixed64 cut short": MAGIC + b"\x09\x01\x02",
    "invalid utf-8 kind": MAGIC + field(1, field(2, b"\xff\xfe")),
    "varint where a string goes": envelope("v1", "DeleteOptions", field(4, 7)),
    "string where a varint goes": envelope("v1", "DeleteOptions", field(1, "thirty")),
    "invalid utf-8 in a name": envelope("v1", "ConfigMap", field(1, field(1, b"\xc3\x28"))),
    "truncated raw": MAGIC + field(1, field(2, "ConfigMap")) + b"\x12\x05ab",
    "wrong kind for the verb": envelope("v1", "Pod", field(1, field(1, "x"))),
}
UNSUPPORTED = {
    "unknown kind": envelope("v1", "Frobnicator", b""),
    "gzip content encoding": MAGIC + field(1, field(2, "ConfigMap")) + field(2, b"") + field(3, "gzip"),
    "a set field we do not read": envelope("v1", "DeleteOptions", field(77, "surprise")),
}
# a deep tower of length-delimited unknown fields: looked into only to a bounded depth
deep = field(1, "x")
for _ in range(200):
    deep = field(50, deep)
UNSUPPORTED["deeply nested unknown field"] = envelope("v1", "ConfigMap", field(1, field(1, "tower")) + deep)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[TestClient, dict[str, str], Hub]]:
    token = yaml.safe_load(create_cluster(tmp_path, "victim", "https://127.0.0.1:1", controllers=Controllers))["users"][
        0
    ]["user"]["token"]
    hub = Hub(tmp_path, controllers=Controllers)
    try:
        async with TestClient(TestServer(make_app(hub))) as tc:
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            for name in ("keep", "other"):
                doc = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}}
                resp = await tc.post(f"/clusters/victim{CMS}", json=doc, headers=headers)
                assert resp.status == 201
            yield tc, {**headers, "Content-Type": CT}, hub
    finally:
        hub.close()


VERBS = [
    ("POST", CMS),
    ("PUT", f"{CMS}/keep"),
    ("DELETE", f"{CMS}/keep"),
    ("DELETE", CMS),
    ("PATCH", f"{CMS}/keep"),
    ("PUT", "/apis/apps/v1/namespaces/default/deployments/keep/scale"),
    ("POST", "/api/v1/namespaces/default/serviceaccounts/default/token"),
    ("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"),
]


def stored(hub: Hub) -> list[tuple[str, dict[str, str]]]:
    cms = hub.clusters["victim"].store.list("configmaps", "default")
    return sorted(
        (o["metadata"]["name"], o.get("data", {})) for o in cms if o["metadata"]["name"] != "kube-root-ca.crt"
    )


@pytest.mark.parametrize("what", sorted(MALFORMED))
async def test_malformed_protobuf_is_a_bad_request_on_every_verb(
    api: tuple[TestClient, dict[str, str], Hub], what: str
) -> None:
    tc, headers, hub = api
    before = stored(hub)
    for method, path in VERBS:
        resp = await tc.request(method, f"/clusters/victim{path}", data=MALFORMED[what], headers=headers)
        st = await resp.json()
        assert st["kind"] == "Status" and st["status"] == "Failure", (method, path, st)
        assert resp.status == st["code"], (method, path, st)
        if path.endswith("/scale"):  # no such deployment: found missing before the body is read
            assert resp.status in (400, 404), (method, path, st)
        elif method == "PATCH":  # no patch type is protobuf
            assert resp.status == 415, (method, path, st)
        else:
            assert resp.status == 400 and st["reason"] == "BadRequest", (method, path, what, st)
    assert stored(hub) == before


@pytest.mark.parametrize("what", sorted(UNSUPPORTED))
async def test_protobuf_we_do_not_read_is_refused_never_ignored(
    api: tuple[TestClient, dict[str, str], Hub], what: str
) -> None:
    tc, headers, hub = api
    before = stored(hub)
    for method, path in VERBS:
        resp = await tc.request(method, f"/clusters/victim{path}", data=UNSUPPORTED[what], headers=headers)
        st = await resp.json()
        assert st["kind"] == "Status" and resp.status == st["code"], (method, path, st)
        assert resp.status in (400, 404, 415), (method, path, what, st)
        assert resp.status != 404 or path.endswith("/scale")
    assert stored(hub) == before


async def test_an_oversized_protobuf_body_is_413_and_not_read(api: tuple[TestClient, dict[str, str], Hub]) -> None:
    tc, headers, hub = api
    before = stored(hub)
    big = envelope("v1", "ConfigMap", field(1, field(1, "big")) + field(2, field(1, "k") + field(2, "x" * (4 << 20))))
    for method, path in (("POST", CMS), ("PUT", f"{CMS}/keep"), ("DELETE", f"{CMS}/keep"), ("DELETE", CMS)):
        resp = await tc.request(method, f"/clusters/victim{path}", data=big, headers=headers)
        st = await resp.json()
        assert resp.status == 413 and st["reason"] == "RequestEntityTooLarge", (method, st)
    assert stored(hub) == before


async def test_a_huge_declared_length_allocates_nothing(api: tuple[TestClient, dict[str, str], Hub]) -> None:
    tc, headers, hub = api
    body = MAGIC + b"\x12" + varint(1 << 62)  # raw claims 4 EiB
    resp = await tc.delete(f"/clusters/victim{CMS}/keep", data=body, headers=headers)
    assert resp.status == 400
    assert [n for n, _ in stored(hub)] == ["keep", "other"]


async def test_a_valid_protobuf_delete_only_touches_its_own_object(
    api: tuple[TestClient, dict[str, str], Hub],
) -> None:
    tc, headers, hub = api
    resp = await tc.delete(f"/clusters/victim{CMS}/keep", data=pbwire.delete_options(grace=0), headers=headers)
    assert resp.status == 200, await resp.text()
    assert [n for n, _ in stored(hub)] == ["other"]
