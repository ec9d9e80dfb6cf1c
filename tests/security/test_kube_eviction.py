"""Attacks on the eviction subresource (``POST pods/NAME/eviction``, #15).

Eviction deletes a pod, so it must be exactly as strong as a delete and no stronger: it
needs RBAC ``create`` on ``pods/eviction`` in the pod's namespace, the Eviction body cannot
name a pod other than the URL's or another namespace, and a PodDisruptionBudget holds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runtime.kube.apiserver.cluster import Cluster
from runtime.kube.apiserver.provision import ADMIN_USER, create_cluster
from runtime.kube.controllers.manager import Controllers
from runtime.kube.meta import Reply, Request, User

ADMIN = User(ADMIN_USER, ("system:masters", "system:authenticated"))
NOBODY = User("mallory", ("system:authenticated",))


def cluster(tmp_path: Path) -> Cluster:
    create_cluster(tmp_path, "victim", "https://127.0.0.1:1", controllers=Controllers)
    c = Cluster("victim", tmp_path / "clusters" / "victim", controllers=Controllers)
    for ns in ("a", "b"):
        assert call(c, "POST", "/api/v1/namespaces", {"metadata": {"name": ns}}).status == 201
        pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
        assert call(c, "POST", f"/api/v1/namespaces/{ns}/pods", pod).status == 201
        st = {"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}
        r = call(c, "PATCH", f"/api/v1/namespaces/{ns}/pods/p/status", st, "application/merge-patch+json")
        assert r.status == 200
    return c


def call(
    c: Cluster, method: str, path: str, body: Any = None, ctype: str = "application/json", user: User = ADMIN
) -> Reply:
    req = Request.build(
        method, path, "", {"Content-Type": ctype}, json.dumps(body).encode() if body is not None else b""
    )
    req.user = user
    reply = c.handle(req)
    assert isinstance(reply, Reply)
    return reply


def eviction(name: str, ns: str) -> dict[str, Any]:
    return {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": ns}}


def test_eviction_needs_create_on_pods_eviction(tmp_path: Path) -> None:
    c = cluster(tmp_path)
    r = call(c, "POST", "/api/v1/namespaces/a/pods/p/eviction", eviction("p", "a"), user=NOBODY)
    assert r.status == 403
    assert 'cannot create resource "pods/eviction"' in r.body["message"]
    assert c.store.get("pods", "a", "p") is not None


def test_the_body_cannot_redirect_the_eviction(tmp_path: Path) -> None:
    c = cluster(tmp_path)
    r = call(c, "POST", "/api/v1/namespaces/a/pods/p/eviction", eviction("p", "b"))
    assert r.status == 400
    r = call(c, "POST", "/api/v1/namespaces/a/pods/p/eviction", eviction("kube-apiserver", "a"))
    assert r.status == 400
    assert c.store.get("pods", "a", "p") is not None and c.store.get("pods", "b", "p") is not None


def test_a_disruption_budget_holds_against_eviction(tmp_path: Path) -> None:
    c = cluster(tmp_path)
    pdb = {"metadata": {"name": "all"}, "spec": {"minAvailable": "100%", "selector": {"matchLabels": {}}}}
    assert call(c, "POST", "/apis/policy/v1/namespaces/a/poddisruptionbudgets", pdb).status == 201
    for _ in range(3):
        r = call(c, "POST", "/api/v1/namespaces/a/pods/p/eviction", eviction("p", "a"))
        assert r.status == 429 and r.body["details"]["causes"][0]["reason"] == "DisruptionBudget"
    assert c.store.get("pods", "a", "p") is not None
    # the other namespace's budget-less pod goes, and only it
    assert call(c, "POST", "/api/v1/namespaces/b/pods/p/eviction", eviction("p", "b")).status == 201
    assert c.store.get("pods", "b", "p") is None and c.store.get("pods", "a", "p") is not None
