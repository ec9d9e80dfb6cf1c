"""Attacks on ``pods/binding`` and the ``services|nodes/proxy`` subresources (#15).

Binding writes ``spec.nodeName``: it needs RBAC ``create`` on ``pods/binding``, binds a
pod once (no moving a running pod by binding it again), and cannot reach another
namespace through its body. The proxy subresources are refused whatever follows them in
the path: nothing the student puts there is ever used as a destination.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runtime.kube.apiserver.cluster import Cluster
from runtime.kube.apiserver.provision import ADMIN_USER, create_cluster
from runtime.kube.controllers.manager import Controllers
from runtime.kube.meta import Reply, Request, User

ADMIN = User(ADMIN_USER, ("system:masters", "system:authenticated"))
NOBODY = User("mallory", ("system:authenticated",))


def call(c: Cluster, method: str, path: str, body: Any = None, user: User = ADMIN) -> Reply:
    req = Request.build(
        method, path, "", {"Content-Type": "application/json"}, json.dumps(body).encode() if body is not None else b""
    )
    req.user = user
    reply = c.handle(req)
    assert isinstance(reply, Reply)
    return reply


@pytest.fixture
def c(tmp_path: Path) -> Cluster:
    create_cluster(tmp_path, "victim", "https://127.0.0.1:1", controllers=Controllers)
    cl = Cluster("victim", tmp_path / "clusters" / "victim", controllers=Controllers)
    pod = {
        "metadata": {"name": "p"},
        "spec": {"schedulerName": "mine", "containers": [{"name": "c", "image": "busybox"}]},
    }
    assert call(cl, "POST", "/api/v1/namespaces/default/pods", pod).status == 201
    return cl


def binding(name: str, node: str, ns: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": name, "namespace": ns},
        "target": {"kind": "Node", "name": node},
    }


def test_binding_needs_rbac(c: Cluster) -> None:
    r = call(c, "POST", "/api/v1/namespaces/default/pods/p/binding", binding("p", "n1"), user=NOBODY)
    assert r.status == 403 and 'cannot create resource "pods/binding"' in r.body["message"]
    assert not c.store.get("pods", "default", "p")["spec"].get("nodeName")  # type: ignore[index]


def test_a_bound_pod_cannot_be_moved_or_redirected(c: Cluster) -> None:
    assert call(c, "POST", "/api/v1/namespaces/default/pods/p/binding", binding("p", "n1")).status == 201
    r = call(c, "POST", "/api/v1/namespaces/default/pods/p/binding", binding("p", "n2"))
    assert r.status == 409
    assert call(c, "POST", "/api/v1/namespaces/default/pods/p/binding", binding("p", "n2", "kube-system")).status == 400
    assert call(c, "POST", "/api/v1/namespaces/default/pods/p/binding", binding("other", "n2")).status == 400
    assert c.store.get("pods", "default", "p")["spec"]["nodeName"] == "n1"  # type: ignore[index]


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/namespaces/default/services/kubernetes:443/proxy/",
        "/api/v1/namespaces/default/services/https:kubernetes:443/proxy/../../../../etc/passwd",
        "/api/v1/namespaces/default/services/http:169.254.169.254:80/proxy/latest/meta-data",
        "/api/v1/nodes/victim-control-plane/proxy/metrics",
        "/api/v1/nodes/127.0.0.1:10250/proxy/pods",
    ],
)
def test_proxy_paths_are_never_followed(c: Cluster, path: str) -> None:
    for method in ("GET", "POST", "PUT", "DELETE"):
        r = call(c, method, path, {} if method in ("POST", "PUT") else None)
        assert r.status == 503, (method, path, r.body)
        assert r.body["reason"] == "ServiceUnavailable"


def test_the_legacy_bindings_collection_is_as_strong(c: Cluster) -> None:
    r = call(c, "POST", "/api/v1/namespaces/default/bindings", binding("p", "n1"), user=NOBODY)
    assert r.status == 403 and 'cannot create resource "bindings"' in r.body["message"]
    assert call(c, "POST", "/api/v1/namespaces/default/bindings", binding("p", "n1", "kube-system")).status == 400
    assert call(c, "POST", "/api/v1/namespaces/default/bindings", binding("p", "n1")).status == 201
    assert call(c, "POST", "/api/v1/namespaces/default/bindings", binding("p", "n2")).status == 409
    assert c.store.get("pods", "default", "p")["spec"]["nodeName"] == "n1"  # type: ignore[index]
    assert c.store.list("bindings") == []  # nothing of its own is stored
