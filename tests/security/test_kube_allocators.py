"""A lab cluster's allocators cannot be made to search forever (issue #12).

A Service's node ports are picked at random among the free ones of 30000-32767. One
Service with more ports than that range holds (a 40 KiB manifest a student can apply, or
just type into the lab editor, whose validation dry-runs it) used to make the search loop
forever on the cluster's thread: runtimed's CPU and that cluster gone for good. The answer
must be kube-apiserver's: 500 ``InternalError`` "failed to allocate a nodePort: range is
full", and nothing stored.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from runtime.kube.apiserver import dryrun
from runtime.kube.apiserver.cluster import Cluster
from runtime.kube.meta import Reply
from tests.security.test_kube_exhaustion import call, cluster

RANGE = 32768 - 30000
SVCS = "/api/v1/namespaces/default/services"


def node_port_service(name: str, nports: int) -> dict[str, Any]:
    ports = [{"name": f"p{i}", "port": i + 1} for i in range(nports)]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"type": "NodePort", "ports": ports},
    }


def finishes(fn: Any) -> Any:
    """fn's result; fails (rather than hanging the suite) if it has not returned in 60 s,
    which a request that takes well under a second only misses when it never returns."""
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    t.start()
    t.join(60)
    assert out, "the request never returned: the cluster's thread is spinning"
    return out[0]


def test_more_ports_than_the_range_is_refused_not_searched_forever(tmp_path: Path) -> None:
    c = cluster(tmp_path)
    reply: Reply = finishes(lambda: call(c, "POST", SVCS, node_port_service("flood", RANGE + 1)))
    assert reply.status == 500
    assert reply.body["reason"] == "InternalError"
    assert reply.body["message"] == "Internal error occurred: failed to allocate a nodePort: range is full"
    assert c.store.get("services", "default", "flood") is None


def test_the_lab_editors_dry_run_of_it_returns_too(tmp_path: Path) -> None:
    c: Cluster = cluster(tmp_path)
    [res] = finishes(lambda: dryrun.validate_all(c, [node_port_service("flood", RANGE + 1)]))
    assert res["code"] == 500 and "range is full" in res["status"]["message"]


def test_a_full_range_refuses_the_next_node_port_and_keeps_what_was_allocated(tmp_path: Path) -> None:
    c = cluster(tmp_path)
    full = call(c, "POST", SVCS, node_port_service("all", RANGE))
    assert full.status == 201, full.body
    ports = {p["nodePort"] for p in full.body["spec"]["ports"]}
    assert ports == set(range(30000, 32768))  # every one allocated, each once
    more: Reply = finishes(lambda: call(c, "POST", SVCS, node_port_service("one-more", 1)))
    assert more.status == 500 and "range is full" in more.body["message"]
    assert c.store.get("services", "default", "one-more") is None
    # a ClusterIP Service needs no node port: still served
    plain = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "plain"}, "spec": {"ports": [{"port": 80}]}}
    assert call(c, "POST", SVCS, plain).status == 201
