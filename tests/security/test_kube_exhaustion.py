"""A student's lab cluster cannot grow runtimed or the host (issues #12, #13).

Each test is an attack a hostile student can make with their cluster-admin credential;
it fails if the attack gets through (the store, its log or the watch cache grows past the
cluster's limits, or the flood is accepted). The cluster is served in-process (the same
``Cluster.handle`` and aiohttp app runtimed serves), so what it holds can be measured.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from runtime.kube.apiserver.cluster import Cluster
from runtime.kube.apiserver.provision import ADMIN_USER, create_cluster
from runtime.kube.apiserver.server import Hub, make_app
from runtime.kube.apiserver.store import COMPACT_FLOOR_BYTES, Watcher
from runtime.kube.controllers.manager import Controllers
from runtime.kube.machinery.limits import Limits
from runtime.kube.meta import Reply, Request, User

MiB = 1024 * 1024
STUDENT = User(ADMIN_USER, ("system:masters", "system:authenticated"))


def cluster(tmp_path: Path, **limits: Any) -> Cluster:
    create_cluster(tmp_path, "victim", "https://127.0.0.1:1", limits or None, controllers=Controllers)
    return Cluster("victim", tmp_path / "clusters" / "victim", controllers=Controllers)


def call(c: Cluster, method: str, path: str, body: Any = None, ctype: str = "application/json") -> Reply:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode() if body is not None else b""
    req = Request.build(method, path, "", {"Content-Type": ctype}, raw)
    req.user = STUDENT
    reply = c.handle(req)
    assert isinstance(reply, Reply)
    return reply


def cm(name: str, size: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "x" * size}}


CMS = "/api/v1/namespaces/default/configmaps"


def test_object_flood_stops_at_the_count_quota(tmp_path: Path) -> None:
    c = cluster(tmp_path, max_objects=100)
    codes = [call(c, "POST", CMS, cm(f"f{i}", 1)).status for i in range(300)]
    assert codes.count(201) < 100 and codes.count(403) > 200
    assert c.store.nobjects <= 100


def test_max_size_objects_stop_at_the_byte_quota(tmp_path: Path) -> None:
    c = cluster(tmp_path, max_bytes=8 * MiB)
    codes = [call(c, "POST", CMS, cm(f"f{i}", 1400 * 1024)).status for i in range(20)]
    assert 403 in codes
    assert c.store.nbytes <= 8 * MiB


def test_an_object_over_the_size_limit_is_not_stored(tmp_path: Path) -> None:
    c = cluster(tmp_path)
    r = call(c, "POST", CMS, cm("big", 2 * MiB))
    assert r.status == 500 and r.body["message"] == "etcdserver: request is too large"
    assert c.store.get("configmaps", "default", "big") is None


def test_a_deployment_cannot_make_the_controllers_create_past_the_ceiling(tmp_path: Path) -> None:
    c = cluster(tmp_path, max_objects=60)
    dep = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "many"},
        "spec": {
            "replicas": 5000,
            "selector": {"matchLabels": {"app": "many"}},
            "template": {
                "metadata": {"labels": {"app": "many"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            },
        },
    }
    assert call(c, "POST", "/apis/apps/v1/namespaces/default/deployments", dep).status == 201
    c.controllers.reconcile()
    assert c.store.nobjects <= 60 * (1 + c.limits.platform_reserve)
    assert len(c.store.list("pods", "default")) < 60


def test_event_flood_is_rotated_not_kept(tmp_path: Path) -> None:
    c = cluster(tmp_path, max_events=50, max_event_bytes=MiB)
    for i in range(500):
        ev = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"e{i}"},
            "involvedObject": {"kind": "ConfigMap", "name": "x", "namespace": "default"},
            "reason": "Flood",
            "message": "m" * (10 * 1024),
        }
        assert call(c, "POST", "/api/v1/namespaces/default/events", ev).status == 201  # never refused
    assert len(c.store.list("events")) <= 50
    assert c.store.event_bytes <= MiB
    assert c.store.get("events", "default", "e499") is not None  # the newest are kept


def test_repeated_large_updates_do_not_grow_the_log_on_disk(tmp_path: Path) -> None:
    c = cluster(tmp_path)
    assert call(c, "POST", CMS, cm("big", 10)).status == 201
    for i in range(80):
        assert call(c, "PUT", f"{CMS}/big", cm("big", 1400 * 1024 + i)).status == 200
    size = (tmp_path / "clusters" / "victim" / "store.jsonl").stat().st_size
    live = c.store.nbytes + c.store.event_bytes
    assert size <= max(COMPACT_FLOOR_BYTES, 2 * live) + 2 * MiB  # one record past the threshold at most
    assert size < 10 * MiB  # 80 records of 1.4 MiB would be 112 MiB


def test_unread_watches_do_not_pin_the_updates(tmp_path: Path) -> None:
    c = cluster(tmp_path)
    assert call(c, "POST", CMS, cm("big", 10)).status == 201
    watchers = [Watcher("configmaps", "default", lambda o: True) for _ in range(10)]
    for w in watchers:
        c.store.add_watcher(w)
    for i in range(80):
        assert call(c, "PUT", f"{CMS}/big", cm("big", 1400 * 1024 + i)).status == 200
    assert c.store.history_bytes <= Limits().watch_cache_bytes
    assert all(w.expired for w in watchers)
    assert all(c.store.next_event(w) is None for w in watchers)  # an expired watcher gets 410, no more events


def test_watches_past_the_limit_are_refused(tmp_path: Path) -> None:
    c = cluster(tmp_path, max_watches=5)
    replies = []
    for _ in range(8):
        req = Request.build("GET", CMS, "watch=true", {}, b"")
        req.user = STUDENT
        replies.append(c.handle(req))
    refused = [r for r in replies if isinstance(r, Reply)]
    assert len(refused) == 3 and all(r.status == 429 for r in refused)
    assert len(c.store.watchers) == 5


def test_json_patch_copy_bomb_is_refused(tmp_path: Path) -> None:
    c = cluster(tmp_path)
    assert call(c, "POST", CMS, cm("bomb", 1024)).status == 201
    ops: list[dict[str, Any]] = [{"op": "add", "path": "/data/a", "value": {"k": "x" * 1024}}]
    # each copy doubles the document: 2**40 KiB if nothing stops it
    ops += [{"op": "copy", "from": "/data", "path": f"/data/c{i}"} for i in range(40)]
    r = call(c, "PATCH", f"{CMS}/bomb", ops, "application/json-patch+json")
    assert r.status == 422 and "accumulated size increase of copy" in r.body["message"]
    too_many = [{"op": "test", "path": "/kind", "value": "ConfigMap"}] * 10001
    r = call(c, "PATCH", f"{CMS}/bomb", too_many, "application/json-patch+json")
    assert r.status == 413
    assert c.store.get("configmaps", "default", "bomb")["data"] == {"k": "x" * 1024}  # type: ignore[index]


def test_yaml_alias_bomb_is_refused(tmp_path: Path) -> None:
    c = cluster(tmp_path)
    lines = ["apiVersion: v1", "kind: ConfigMap", "metadata: {name: lol}", 'x0: &a0 ["lollollollollollol"]']
    for i in range(1, 40):
        lines.append(f"x{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]")
    r = call(c, "POST", CMS, "\n".join(lines).encode(), "application/yaml")
    assert r.status == 400 and "excessive aliasing" in r.body["message"]
    assert c.store.get("configmaps", "default", "lol") is None


async def test_a_chunked_body_over_the_limit_is_refused_with_a_status(tmp_path: Path) -> None:
    import yaml

    token = yaml.safe_load(create_cluster(tmp_path, "victim", "https://127.0.0.1:1", controllers=Controllers))["users"][
        0
    ]["user"]["token"]

    async def body() -> AsyncIterator[bytes]:
        for _ in range(64):  # 64 MiB, no Content-Length: the server must stop reading on its own
            yield b"a" * MiB

    hub = Hub(tmp_path, controllers=Controllers)
    try:
        async with TestClient(TestServer(make_app(hub))) as tc:
            resp = await tc.post(
                f"/clusters/victim{CMS}",
                data=body(),
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                chunked=True,
            )
            st = await resp.json()
        assert resp.status == 413
        assert st["reason"] == "RequestEntityTooLarge"
        assert st["message"] == "Request entity too large: limit is 3145728"
        assert hub.clusters["victim"].store.get("configmaps", "default", "a") is None
    finally:
        hub.close()
