"""Attacks on the lab cluster's new endpoints: ReplicationControllers and APIServices (#15).

A hostile student holds cluster-admin on their own lab cluster. An RC must not let them
make the controllers create objects past the cluster's limits (the same bound as a
ReplicaSet's); an APIService must not let them make the API server a proxy: one backed by
a Service is refused whichever verb writes it (create, update, merge/JSON/strategic patch,
server-side apply), and a local one adds no route and no discovery entry. The cluster is
served in-process (the same ``Cluster.handle`` runtimed serves), so what it holds can be
measured.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runtime.kube.apiserver.cluster import Cluster
from runtime.kube.apiserver.provision import ADMIN_USER, create_cluster
from runtime.kube.controllers.manager import Controllers
from runtime.kube.meta import Reply, Request, User

STUDENT = User(ADMIN_USER, ("system:masters", "system:authenticated"))
RCS = "/api/v1/namespaces/default/replicationcontrollers"
APIS = "/apis/apiregistration.k8s.io/v1/apiservices"


def cluster(tmp_path: Path, **limits: Any) -> Cluster:
    create_cluster(tmp_path, "victim", "https://127.0.0.1:1", limits or None, controllers=Controllers)
    return Cluster("victim", tmp_path / "clusters" / "victim", controllers=Controllers)


def call(
    c: Cluster, method: str, path: str, body: Any = None, ctype: str = "application/json", query: str = ""
) -> Reply:
    raw = json.dumps(body).encode() if body is not None else b""
    req = Request.build(method, path, query, {"Content-Type": ctype}, raw)
    req.user = STUDENT
    reply = c.handle(req)
    assert isinstance(reply, Reply)
    return reply


def rc(name: str, replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ReplicationController",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            },
        },
    }


def test_an_rc_cannot_make_the_controller_create_past_the_ceiling(tmp_path: Path) -> None:
    c = cluster(tmp_path, max_objects=60)
    assert call(c, "POST", RCS, rc("many", 5000)).status == 201
    c.controllers.reconcile()
    assert c.store.nobjects <= 60 * (1 + c.limits.platform_reserve)
    assert len(c.store.list("pods", "default")) < 60
    # the refusal is the controller's FailedCreate event, recorded once, not once per pass
    failed = [e for e in c.store.list("events", "default") if e.get("reason") == "FailedCreate"]
    assert len(failed) == 1 and "exceeded quota" in failed[0]["message"]


def test_scaling_an_rc_through_the_scale_subresource_is_bounded_too(tmp_path: Path) -> None:
    c = cluster(tmp_path, max_objects=60)
    assert call(c, "POST", RCS, rc("s", 1)).status == 201
    scale = call(c, "GET", f"{RCS}/s/scale").body
    scale["spec"]["replicas"] = 10**6
    assert call(c, "PUT", f"{RCS}/s/scale", scale).status == 200
    c.controllers.reconcile()
    assert c.store.nobjects <= 60 * (1 + c.limits.platform_reserve)
    scale = call(c, "GET", f"{RCS}/s/scale").body
    scale["spec"]["replicas"] = -1
    r = call(c, "PUT", f"{RCS}/s/scale", scale)
    assert r.status == 422 and r.body["reason"] == "Invalid"


def test_an_rc_with_an_empty_selector_cannot_adopt_every_pod(tmp_path: Path) -> None:
    c = cluster(tmp_path)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "bystander", "labels": {"x": "y"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }
    assert call(c, "POST", "/api/v1/namespaces/default/pods", pod).status == 201
    bad = rc("greedy", 0)
    bad["spec"]["template"]["metadata"]["labels"] = {}
    r = call(c, "POST", RCS, bad)
    assert r.status == 422
    assert {"reason": "FieldValueRequired", "message": "Required value", "field": "spec.selector"} in r.body["details"][
        "causes"
    ]
    assert not c.store.get("pods", "default", "bystander")["metadata"].get("ownerReferences")  # type: ignore[index]


def _svc_backed(name: str = "v1beta1.metrics.k8s.io") -> dict[str, Any]:
    return {
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {"name": name},
        "spec": {
            "group": "metrics.k8s.io",
            "version": "v1beta1",
            "groupPriorityMinimum": 100,
            "versionPriority": 100,
            "insecureSkipTLSVerify": True,
            "service": {"name": "evil", "namespace": "default", "port": 443},
        },
    }


def _assert_proxy_refused(r: Reply) -> None:
    assert r.status == 403, r.body
    assert r.body["reason"] == "Forbidden"
    assert "does not serve the aggregation layer" in r.body["message"]


def test_an_apiservice_backed_by_a_service_is_refused(tmp_path: Path) -> None:
    c = cluster(tmp_path)
    _assert_proxy_refused(call(c, "POST", APIS, _svc_backed()))
    assert c.store.get("apiservices.apiregistration.k8s.io", "", "v1beta1.metrics.k8s.io") is None
    # nor by server-side apply, which creates through the same path
    r = call(
        c,
        "PATCH",
        f"{APIS}/v1beta1.metrics.k8s.io",
        _svc_backed(),
        "application/apply-patch+yaml",
        "fieldManager=evil",
    )
    _assert_proxy_refused(r)
    assert c.store.get("apiservices.apiregistration.k8s.io", "", "v1beta1.metrics.k8s.io") is None


def test_a_built_in_apiservice_cannot_be_turned_into_a_proxy(tmp_path: Path) -> None:
    c = cluster(tmp_path)
    path = f"{APIS}/v1.apps"
    before = call(c, "GET", path).body
    svc = {"service": {"name": "evil", "namespace": "default"}}
    attempts = [
        ("PUT", {**before, "spec": {**before["spec"], **svc}}, "application/json"),
        ("PATCH", {"spec": svc}, "application/merge-patch+json"),
        ("PATCH", {"spec": svc}, "application/strategic-merge-patch+json"),
        ("PATCH", [{"op": "add", "path": "/spec/service", "value": svc["service"]}], "application/json-patch+json"),
    ]
    for method, body, ctype in attempts:
        _assert_proxy_refused(call(c, method, path, body, ctype))
    r = call(
        c,
        "PATCH",
        path,
        {**before, "spec": {**before["spec"], **svc}},
        "application/apply-patch+yaml",
        "fieldManager=evil&force=true",
    )
    _assert_proxy_refused(r)
    after = call(c, "GET", path).body
    assert "service" not in after["spec"]
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def test_a_local_apiservice_adds_no_route_and_no_discovery(tmp_path: Path) -> None:
    c = cluster(tmp_path)
    local = {
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {"name": "v1.evil.example.com"},
        "spec": {"group": "evil.example.com", "version": "v1", "groupPriorityMinimum": 19999, "versionPriority": 999},
    }
    assert call(c, "POST", APIS, local).status == 201
    groups = [g["name"] for g in call(c, "GET", "/apis").body["groups"]]
    assert "evil.example.com" not in groups
    assert call(c, "GET", "/apis/evil.example.com/v1").status == 404
    assert call(c, "GET", "/apis/evil.example.com/v1/namespaces/default/anything").status == 404


def test_apiservice_names_are_checked_not_routed(tmp_path: Path) -> None:
    c = cluster(tmp_path)
    for name in ("..", "a/b", "v1.x%2F..%2Fy"):
        body = {
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {"name": name},
            "spec": {"group": "x.example.com", "version": "v1", "groupPriorityMinimum": 10, "versionPriority": 10},
        }
        r = call(c, "POST", APIS, body)
        assert r.status == 422, (name, r.body)
        assert c.store.get("apiservices.apiregistration.k8s.io", "", name) is None
