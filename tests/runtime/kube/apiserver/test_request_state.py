"""Request-scoped state (who writes, with which field manager, whether it is an apply) belongs to
the request, not to the long-lived Cluster (runtime/kube/apiserver/cluster.py ``RequestState``):
two requests interleaved on one cluster keep their own user and field manager, and controllers
writing after a request write as kube-controller-manager. The interleaving is forced with
events at a fixed point (the authorization of the first request), not by timing."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from runtime.kube.apiserver import rbac
from runtime.kube.apiserver.cluster import Cluster
from runtime.kube.apiserver.provision import clusters_dir, create_cluster
from runtime.kube.controllers.manager import Controllers
from runtime.kube.meta import Reply, Request, User

ALICE = User("alice", ("system:masters", "system:authenticated"))
BOB = User("bob", ("system:masters", "system:authenticated"))
CMS = "/api/v1/namespaces/default/configmaps"


@pytest.fixture
def cluster(tmp_path: Path) -> Cluster:
    create_cluster(tmp_path, "lab", "https://127.0.0.1:1", controllers=Controllers)
    return Cluster("lab", clusters_dir(tmp_path) / "lab", controllers=Controllers)


def cm(name: str) -> bytes:
    return json.dumps(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}}
    ).encode()


def managers(cluster: Cluster, gr: str, name: str) -> list[tuple[str, str]]:
    obj = cluster.store.get(gr, "default", name)
    assert obj is not None
    return [(m["manager"], m["operation"]) for m in obj["metadata"].get("managedFields", [])]


def pause_first(monkeypatch: pytest.MonkeyPatch, who: str) -> tuple[threading.Event, threading.Event]:
    """Make ``who``'s first authorization wait until the test says go (after another request ran)."""
    paused, go = threading.Event(), threading.Event()
    real = rbac.allowed

    def allowed(c: Any, user: User, *args: Any) -> bool:
        if user.name == who and not paused.is_set():
            paused.set()
            assert go.wait(30), "the test never released the paused request"
        return real(c, user, *args)

    monkeypatch.setattr(rbac, "allowed", allowed)
    return paused, go


def run_paused(cluster: Cluster, req: Request, paused: threading.Event) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(cluster.handle(req)))
    t.start()
    assert paused.wait(30), "the first request never reached its authorization"
    return t, out


def test_an_apply_interleaved_with_another_users_create_keeps_its_field_manager(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    paused, go = pause_first(monkeypatch, "alice")
    apply = Request(
        "PATCH",
        f"{CMS}/mine",
        {"fieldManager": "alice-apply"},
        {"content-type": "application/apply-patch+yaml"},
        cm("mine"),
        ALICE,
    )
    t, out = run_paused(cluster, apply, paused)
    # bob's whole create (and the controller pass it triggers) runs while alice's apply waits
    reply = cluster.handle(
        Request("POST", CMS, {"fieldManager": "bob-edit"}, {"content-type": "application/json"}, cm("his"), BOB)
    )
    assert isinstance(reply, Reply) and reply.status == 201, reply
    go.set()
    t.join(30)
    assert not t.is_alive()
    assert isinstance(out[0], Reply) and out[0].status == 201, out[0].body
    assert managers(cluster, "configmaps", "mine") == [("alice-apply", "Apply")]
    assert managers(cluster, "configmaps", "his") == [("bob-edit", "Update")]


def test_two_updates_interleaved_record_each_ones_manager(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("one", "two"):
        r = cluster.handle(
            Request("POST", CMS, {"fieldManager": "setup"}, {"content-type": "application/json"}, cm(name), ALICE)
        )
        assert isinstance(r, Reply) and r.status == 201
    paused, go = pause_first(monkeypatch, "alice")
    merge = {"content-type": "application/merge-patch+json"}
    first = Request("PATCH", f"{CMS}/one", {"fieldManager": "first"}, merge, b'{"data":{"a":"1"}}', ALICE)
    t, out = run_paused(cluster, first, paused)
    second = Request("PATCH", f"{CMS}/two", {"fieldManager": "second"}, merge, b'{"data":{"b":"2"}}', BOB)
    r = cluster.handle(second)
    assert isinstance(r, Reply) and r.status == 200, r
    go.set()
    t.join(30)
    assert isinstance(out[0], Reply) and out[0].status == 200, out[0].body
    assert managers(cluster, "configmaps", "one") == [("setup", "Update"), ("first", "Update")]
    assert managers(cluster, "configmaps", "two") == [("setup", "Update"), ("second", "Update")]


def test_controllers_write_as_kube_controller_manager_after_a_request(cluster: Cluster) -> None:
    dep = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "w", "image": "x"}]}},
        },
    }
    r = cluster.handle(
        Request(
            "POST",
            "/apis/apps/v1/namespaces/default/deployments",
            {"fieldManager": "student"},
            {"content-type": "application/json"},
            json.dumps(dep).encode(),
            ALICE,
        )
    )
    assert isinstance(r, Reply) and r.status == 201
    assert managers(cluster, "deployments.apps", "web")[0] == ("student", "Update")
    rss = cluster.store.list("replicasets.apps")
    assert len(rss) == 1
    assert {m["manager"] for m in rss[0]["metadata"].get("managedFields", [])} <= {"kube-controller-manager"}
    # and a controller pass run outside any request (a timer, the kubelet's thread) too
    cluster.controllers.reconcile()
    assert cluster.request_state.requester is None and cluster.request_state.manager == "kube-controller-manager"
