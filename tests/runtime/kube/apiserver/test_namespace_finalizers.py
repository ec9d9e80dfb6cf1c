"""A Namespace's ``spec.finalizers`` as kube-apiserver keeps them (registry/core/namespace's
strategy): a create always gets ``kubernetes`` (appended to any finalizers given); a PUT,
a merge patch or a dry run of the namespace itself cannot change them (PrepareForUpdate puts
the stored ones back); only the ``finalize`` subresource does, and emptying them there is
what lets a namespace marked for deletion go."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runtime.kube.apiserver.cluster import Cluster
from runtime.kube.apiserver.provision import clusters_dir, create_cluster
from runtime.kube.controllers.manager import Controllers
from runtime.kube.meta import Reply, Request, User

ADMIN = User("admin", ("system:masters", "system:authenticated"))
JSON = {"content-type": "application/json"}


@pytest.fixture
def cluster(tmp_path: Path) -> Cluster:
    create_cluster(tmp_path, "lab", "https://127.0.0.1:1", controllers=Controllers)
    return Cluster("lab", clusters_dir(tmp_path) / "lab", controllers=Controllers)


def call(
    cluster: Cluster, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None, **query: str
) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body).encode() if body is not None else b""
    reply = cluster.handle(Request(method, path, dict(query), headers or JSON, data, ADMIN))
    assert isinstance(reply, Reply)
    out = reply.body  # in process, the store's own dict: a copy, as the wire would give
    return reply.status, json.loads(out if isinstance(out, (bytes, str)) else json.dumps(out))


def fins(cluster: Cluster, name: str) -> list[str] | None:
    status, ns = call(cluster, "GET", f"/api/v1/namespaces/{name}")
    assert status == 200, ns
    return ns.get("spec", {}).get("finalizers")


def test_a_new_namespace_always_carries_the_kubernetes_finalizer(cluster: Cluster) -> None:
    status, _ = call(cluster, "POST", "/api/v1/namespaces", {"metadata": {"name": "plain"}})
    assert status == 201
    assert fins(cluster, "plain") == ["kubernetes"]
    body = {"metadata": {"name": "own"}, "spec": {"finalizers": ["example.com/keep"]}}
    assert call(cluster, "POST", "/api/v1/namespaces", body)[0] == 201
    assert fins(cluster, "own") == ["example.com/keep", "kubernetes"]


def test_a_put_or_patch_of_the_namespace_cannot_change_its_finalizers(cluster: Cluster) -> None:
    assert call(cluster, "POST", "/api/v1/namespaces", {"metadata": {"name": "team"}})[0] == 201
    _, ns = call(cluster, "GET", "/api/v1/namespaces/team")
    ns["spec"]["finalizers"] = []
    ns["metadata"]["labels"]["owner"] = "me"
    status, out = call(cluster, "PUT", "/api/v1/namespaces/team", ns)
    assert status == 200, out
    assert out["spec"]["finalizers"] == ["kubernetes"]  # the answer shows what was written
    assert out["metadata"]["labels"]["owner"] == "me"  # the rest of the update went through
    patch = {"spec": {"finalizers": ["example.com/other"]}}
    status, out = call(
        cluster, "PATCH", "/api/v1/namespaces/team", patch, {"content-type": "application/merge-patch+json"}
    )
    assert status == 200 and out["spec"]["finalizers"] == ["kubernetes"]
    _, ns = call(cluster, "GET", "/api/v1/namespaces/team")
    ns["spec"]["finalizers"] = []
    status, out = call(cluster, "PUT", "/api/v1/namespaces/team", ns, dryRun="All")
    assert status == 200 and out["spec"]["finalizers"] == ["kubernetes"]
    assert fins(cluster, "team") == ["kubernetes"]


def test_only_the_finalize_subresource_changes_them(cluster: Cluster) -> None:
    assert call(cluster, "POST", "/api/v1/namespaces", {"metadata": {"name": "fin"}})[0] == 201
    _, ns = call(cluster, "GET", "/api/v1/namespaces/fin")
    ns["spec"]["finalizers"] = ["kubernetes", "example.com/x"]
    status, out = call(cluster, "PUT", "/api/v1/namespaces/fin/finalize", ns)
    assert status == 200, out
    assert fins(cluster, "fin") == ["kubernetes", "example.com/x"]


def test_a_put_does_not_give_a_finalized_namespace_its_finalizers_back(cluster: Cluster) -> None:
    """Deleted, the namespace controller empties its content and finalizes it at once; held by
    a metadata finalizer, it stays Terminating with no spec.finalizers, and a PUT that writes
    them again is not obeyed (it would keep the namespace forever)."""
    body = {"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}
    assert call(cluster, "POST", "/api/v1/namespaces", body)[0] == 201
    assert call(cluster, "DELETE", "/api/v1/namespaces/held")[0] == 200
    status, ns = call(cluster, "GET", "/api/v1/namespaces/held")
    assert status == 200 and ns["status"]["phase"] == "Terminating"
    assert fins(cluster, "held") is None
    ns["spec"]["finalizers"] = ["kubernetes"]
    status, ns = call(cluster, "PUT", "/api/v1/namespaces/held", ns)
    assert status == 200 and ns["spec"].get("finalizers") is None, ns
    ns["metadata"]["finalizers"] = []
    assert call(cluster, "PUT", "/api/v1/namespaces/held", ns)[0] == 200
    assert call(cluster, "GET", "/api/v1/namespaces/held")[0] == 404
