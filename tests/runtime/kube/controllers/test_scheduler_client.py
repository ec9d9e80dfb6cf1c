"""The scheduler writes as an API client with its identity (apiserver/client.py, #16): a pod it
cannot place gets its PodScheduled=False condition through an update of the status
subresource (managedFields: kube-scheduler, subresource status, as a real cluster shows),
a pod it places is bound through the Binding path (nodeName, PodScheduled=True), and it
reports through an event recorder, not the whole controller manager."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runtime.kube import registry, scheduler
from runtime.kube.apiserver.client import SCHEDULER, Client
from runtime.kube.apiserver.cluster import Cluster
from runtime.kube.apiserver.provision import clusters_dir, create_cluster
from runtime.kube.controllers.manager import Controllers
from runtime.kube.meta import Obj, Reply, Request, User

ADMIN = User("admin", ("system:masters", "system:authenticated"))
PODS = registry.BY_GR["pods"]


@pytest.fixture
def cluster(tmp_path: Path) -> Cluster:
    create_cluster(tmp_path, "lab", "https://127.0.0.1:1", controllers=Controllers)
    return Cluster("lab", clusters_dir(tmp_path) / "lab", controllers=Controllers)


def post(cluster: Cluster, path: str, obj: dict[str, Any]) -> None:
    r = cluster.handle(
        Request(
            "POST",
            path,
            {"fieldManager": "student"},
            {"content-type": "application/json"},
            json.dumps(obj).encode(),
            ADMIN,
        )
    )
    assert isinstance(r, Reply) and r.status == 201, r


def pod(name: str, selector: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"nodeSelector": selector, "containers": [{"name": "c", "image": "busybox"}]},
    }


def node(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"pool": "a"}}}


class Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []

    def event(self, obj: Obj, typ: str, reason: str, message: str) -> None:
        self.seen.append((obj["metadata"]["name"], typ, reason))


def test_the_scheduler_writes_status_and_bindings_through_the_api(cluster: Cluster) -> None:
    post(cluster, "/api/v1/nodes", node("n1"))
    post(cluster, "/api/v1/namespaces/default/pods", pod("fits", {"pool": "a"}))
    post(cluster, "/api/v1/namespaces/default/pods", pod("waits", {"pool": "nowhere"}))
    fits = cluster.store.get("pods", "default", "fits")
    waits = cluster.store.get("pods", "default", "waits")
    assert fits is not None and fits["spec"]["nodeName"] == "n1"
    cond = next(c for c in waits["status"]["conditions"] if c["type"] == "PodScheduled")  # type: ignore[index]
    assert (cond["status"], cond["reason"]) == ("False", "Unschedulable")
    entries = [(m["manager"], m["operation"], m.get("subresource")) for m in waits["metadata"]["managedFields"]]  # type: ignore[index]
    assert ("kube-scheduler", "Update", "status") in entries
    assert ("student", "Update", None) in entries
    reasons = {(e["involvedObject"]["name"], e["reason"]) for e in cluster.store.list("events")}
    assert {("fits", "Scheduled"), ("waits", "FailedScheduling")} <= reasons


def test_schedule_takes_a_writer_and_an_event_recorder(cluster: Cluster) -> None:
    post(cluster, "/api/v1/nodes", node("n1"))
    post(cluster, "/api/v1/namespaces/default/pods", pod("p", {"pool": "a"}))
    # undo the binding the reconcile made, then run the scheduler alone with our recorder
    p = cluster.store.get("pods", "default", "p")
    assert p is not None
    del p["spec"]["nodeName"]
    cluster.store.put("pods", p, "MODIFIED")
    events = Events()
    scheduler.schedule(cluster.store, scheduler.Queue(), Client(cluster, "kube-scheduler", SCHEDULER), events)
    bound = cluster.store.get("pods", "default", "p")
    assert bound is not None and bound["spec"]["nodeName"] == "n1"
    assert events.seen == [("p", "Normal", "Scheduled")]


def test_a_binding_the_api_refuses_is_not_counted_as_placed(cluster: Cluster) -> None:
    post(cluster, "/api/v1/nodes", node("n1"))
    post(cluster, "/api/v1/namespaces/default/pods", pod("p", {"pool": "a"}))
    p = cluster.store.get("pods", "default", "p")
    assert p is not None

    class Refusing(Client):
        def bind(self, pod: Obj, node: str) -> Obj:
            return super().bind({"metadata": {"namespace": "default", "name": "gone"}}, node)

    del p["spec"]["nodeName"]
    cluster.store.put("pods", p, "MODIFIED")
    events = Events()
    scheduler.schedule(cluster.store, scheduler.Queue(), Refusing(cluster, "kube-scheduler", SCHEDULER), events)
    still = cluster.store.get("pods", "default", "p")
    assert still is not None and not still["spec"].get("nodeName")
    assert events.seen == []
