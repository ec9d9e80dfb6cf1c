"""One student's unschedulable Deployment must not stall every lab cluster (brief N).

The attack: a Deployment whose 1500 replicas cannot fit. Before the fix the scheduler
retried every Pending pod on every reconcile, listing all pods and building a scheduling
cycle per pod (O(pending x pods) on runtimed's one event loop, on every request). Now a pod
that did not fit waits in the scheduler's queue until something that could make it fit
changes or its backoff runs out, and one reconcile tries at most ``MAX_PER_PASS`` pods.
The work is counted (scheduling cycles, store lists), not timed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runtime.kube import scheduler
from runtime.kube.apiserver.cluster import Cluster
from runtime.kube.controllers.manager import Controllers
from tests.security.test_kube_exhaustion import call, cluster

REPLICAS = 1500
DEPLOY = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "flood"},
    "spec": {
        "replicas": REPLICAS,
        "selector": {"matchLabels": {"app": "flood"}},
        "template": {
            "metadata": {"labels": {"app": "flood"}},
            "spec": {"containers": [{"name": "c", "image": "busybox:1.35"}]},
        },
    },
}
MERGE = "application/merge-patch+json"


class Counts:
    def __init__(self, monkeypatch: pytest.MonkeyPatch, *clusters: Cluster) -> None:
        self.cycles = 0
        self.lists = 0
        real_cycle = scheduler._Cycle

        def counting_cycle(*a: Any, **kw: Any) -> Any:
            self.cycles += 1
            return real_cycle(*a, **kw)

        monkeypatch.setattr(scheduler, "_Cycle", counting_cycle)
        for c in clusters:
            real_list = c.store.list

            def counting_list(*a: Any, _real: Any = real_list, **kw: Any) -> Any:
                self.lists += 1
                return _real(*a, **kw)

            monkeypatch.setattr(c.store, "list", counting_list)

    def reset(self) -> None:
        self.cycles = self.lists = 0


def pods(c: Cluster) -> list[dict[str, Any]]:
    return [p for p in c.store.list("pods") if p["metadata"].get("labels", {}).get("app") == "flood"]


def bound(c: Cluster) -> int:
    return sum(1 for p in pods(c) if (p.get("spec") or {}).get("nodeName"))


def told(c: Cluster) -> int:
    """Pending pods that were told why they wait (PodScheduled=False)."""
    return sum(
        1
        for p in pods(c)
        if any(
            x.get("type") == "PodScheduled" and x.get("status") == "False"
            for x in (p.get("status") or {}).get("conditions") or []
        )
    )


def node_name(c: Cluster) -> str:
    (node,) = c.store.list("nodes")
    return str(node["metadata"]["name"])


def get(c: Cluster) -> None:
    """A request, then what runtimed's timer tick does (Hub.tick): pods left over by a pass
    are due at once (next_due)."""
    assert call(c, "GET", "/api/v1/namespaces/default/configmaps").status == 200
    if c.controllers.has_timers():
        c.controllers.reconcile()


def test_unschedulable_flood_costs_bounded_work_and_pods_fit_when_room_appears(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    victim = cluster(tmp_path / "a")
    other = cluster(tmp_path / "b")
    node = node_name(victim)
    assert call(victim, "PATCH", f"/api/v1/nodes/{node}", {"spec": {"unschedulable": True}}, MERGE).status == 200
    counts = Counts(monkeypatch, victim, other)

    assert call(victim, "POST", "/apis/apps/v1/namespaces/default/deployments", DEPLOY).status == 201
    assert len(pods(victim)) == REPLICAS
    assert counts.cycles <= scheduler.MAX_PER_PASS
    # the rest are tried by later requests (or the timer tick), a bounded number each time
    for _ in range(REPLICAS // scheduler.MAX_PER_PASS + 5):
        counts.reset()
        get(victim)
        assert counts.cycles <= 2 * scheduler.MAX_PER_PASS  # the request's pass and the tick's
        if told(victim) == REPLICAS:
            break
    assert told(victim) == REPLICAS and bound(victim) == 0
    msg = next(x["message"] for x in pods(victim)[0]["status"]["conditions"] if x["type"] == "PodScheduled")
    assert msg.startswith("0/1 nodes are available: 1 node(s) were unschedulable.")

    # once every pod was told, a request does no per-pod work: the pods wait for a change
    # (their backoff may run out meanwhile: still at most one pass)
    counts.reset()
    get(victim)
    assert counts.cycles <= 2 * scheduler.MAX_PER_PASS
    assert counts.lists < REPLICAS // 10  # the old loop listed all pods once per pending pod
    counts.reset()
    get(other)
    assert counts.cycles == 0
    assert counts.lists < REPLICAS // 10
    # and FailedScheduling was said once per pod, not once per retry
    events = [
        e
        for e in victim.store.list("events")
        if e.get("reason") == "FailedScheduling" and e["involvedObject"]["name"].startswith("flood-")
    ]
    assert sum(int(e.get("count") or 1) for e in events) <= REPLICAS

    # capacity appears: the node is uncordoned; 110 pods (the node's pod limit) are bound
    assert call(victim, "PATCH", f"/api/v1/nodes/{node}", {"spec": {"unschedulable": False}}, MERGE).status == 200
    for _ in range(20):
        if bound(victim) >= 110:
            break
        counts.reset()
        get(victim)
        assert counts.cycles <= 2 * scheduler.MAX_PER_PASS
    assert bound(victim) == 110

    # pods deleted from the node: the waiting pods (and the replacements) take their places
    gone = [p["metadata"]["name"] for p in pods(victim) if p["spec"].get("nodeName")][:5]
    for name in gone:
        options = {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0}
        assert call(victim, "DELETE", f"/api/v1/namespaces/default/pods/{name}", options).status == 200
    assert all(victim.store.get("pods", "default", n) is None for n in gone)
    for _ in range(20):
        if bound(victim) == 110:
            break
        get(victim)
    assert bound(victim) == 110
    assert len(pods(victim)) == REPLICAS


def test_a_pod_that_does_not_fit_is_retried_when_it_changes_or_its_backoff_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = cluster(tmp_path)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "picky"},
        "spec": {"nodeSelector": {"disk": "ssd"}, "containers": [{"name": "c", "image": "busybox:1.35"}]},
    }
    assert call(c, "POST", "/api/v1/namespaces/default/pods", pod).status == 201
    counts = Counts(monkeypatch, c)
    clock = [1_000_000.0]
    monkeypatch.setattr("runtime.kube.scheduler.time.time", lambda: clock[0])
    get(c)
    counts.reset()
    get(c)  # nothing changed, backoff not over: not tried
    assert counts.cycles == 0
    assert isinstance(c.controllers, Controllers)
    queued = c.controllers.sched_queue
    (waiting,) = queued.waiting.values()
    clock[0] = waiting.retry_at + 0.1
    assert c.controllers.next_due() is not None
    c.controllers.reconcile()  # what the timer tick does
    assert counts.cycles == 1
    (again,) = queued.waiting.values()
    assert again.attempts == waiting.attempts + 1
    assert again.retry_at - clock[0] == pytest.approx(min(scheduler.MAX_BACKOFF, 2 ** (again.attempts - 1)))
    # the pod itself is updated: tried at once
    counts.reset()
    patch = {"metadata": {"labels": {"touched": "yes"}}}
    assert call(c, "PATCH", "/api/v1/namespaces/default/pods/picky", patch, MERGE).status == 200
    assert counts.cycles == 1
    # the node gets the label: bound at once
    counts.reset()
    node = node_name(c)
    assert call(c, "PATCH", f"/api/v1/nodes/{node}", {"metadata": {"labels": {"disk": "ssd"}}}, MERGE).status == 200
    assert counts.cycles == 1
    placed = c.store.get("pods", "default", "picky")
    assert placed is not None and placed["spec"]["nodeName"] == node
    assert not queued.waiting
