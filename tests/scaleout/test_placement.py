"""Sandboxes placed by Kubernetes across two lab nodes (issue #17), at the runtime level:
``python -m runtime kube serve`` with two Nodes, two runtimed daemons serving TLS, their node
agents, and ``KubernetesBackend`` as the provisioning worker and the web tier use it.

The tests run in order on one topology: the last one takes node a out of service.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from runtime import errors
from runtime.client import Client
from runtime.placement import KubernetesBackend, split_id
from tests.scaleout.topology import GRACE, TOLERATION, Topology

pytestmark = [pytest.mark.root, pytest.mark.slow]

SPEC: dict[str, Any] = {"image": "busybox", "cpus": 1, "memory": 64 * 2**20}


NODE_CPU = "10"  # two nodes of 10 cpus: room for 20 one-cpu sandboxes (conftest.topo)


@pytest.fixture(scope="module")
def backend(topo: Topology) -> Iterator[KubernetesBackend]:
    b = KubernetesBackend(
        topo.kubeconfig,
        ca=str(topo.ca),
        port=topo.port,
        token=topo.admin_token,
        toleration_seconds=TOLERATION,
        wait_timeout=120,
    )
    yield b
    b.close()


def spec(session: str, **extra: Any) -> dict[str, Any]:
    return {**SPEC, "labels": {"session": session}, **extra}


def pods(topo: Topology) -> list[dict[str, Any]]:
    return list(json.loads(topo.kubectl("get", "pods", "-n", "kubelab-sandboxes", "-o", "json"))["items"])


created: dict[str, str] = {}  # session -> sandbox id, shared by the tests in order


def test_twenty_sandboxes_spread_over_both_nodes(topo: Topology, backend: KubernetesBackend) -> None:
    errs: list[BaseException] = []

    def make(i: int) -> None:
        try:
            created[f"s{i:02d}"] = backend.create(spec(f"s{i:02d}"))["id"]
        except BaseException as e:
            errs.append(e)

    threads = [threading.Thread(target=make, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errs, f"{errs}\n{topo.logs()}"
    on = {name: [sid for sid in created.values() if split_id(sid)[1] == name] for name in topo.nodes}
    assert len(on["kl-node-a"]) == len(on["kl-node-b"]) == 10, on
    # each node's runtimed holds exactly the sandboxes placed on it
    for name, node in topo.nodes.items():
        with Client(node.daemon.socket) as c:
            held = {b["id"] for b in c.list_sandboxes()}
        assert {split_id(sid)[2] for sid in on[name]} == held
    # the Pods are bound, Running and ready by their readiness gate
    for p in pods(topo):
        assert p["spec"]["nodeName"] in topo.nodes
        assert p["status"]["phase"] == "Running"
        gate = next(c for c in p["status"]["conditions"] if c["type"] == "kubelab.io/sandbox-ready")
        assert gate["status"] == "True"


def test_exec_and_terminals_reach_the_sandbox_on_its_node(topo: Topology, backend: KubernetesBackend) -> None:
    for session in ("s00", "s01", "s02", "s03"):
        sid = created[session]
        r = backend.exec(sid, ["sh", "-c", f"echo {session} > /root/mark; cat /root/mark"])
        assert r.ok and r.stdout_text == f"{session}\n"
        info = backend.get(sid)
        assert info["spec"]["labels"]["session"] == session and info["node"] == split_id(sid)[1]

    async def shell(sid: str) -> bytes:
        web = backend.scoped(backend.mint_token(sid, "web", 300))
        try:
            s = await web.create_session(sid, ["/bin/sh"])
            att = await web.attach(sid, s["session_id"])
            await att.send(b"cat /root/mark; exit\n")
            out = b""
            while True:
                item = await att.recv(timeout=20)
                if item is None or isinstance(item, dict):
                    break
                out += item
            await att.close()
            return out
        finally:
            await web.aclose()
            web.close()

    for name in topo.nodes:  # a terminal on each node
        session, sid = next((k, v) for k, v in sorted(created.items()) if split_id(v)[1] == name)
        backend.exec(sid, ["sh", "-c", f"echo {session} > /root/mark"])
        assert session.encode() in asyncio.run(shell(sid))


def test_a_full_cluster_leaves_the_session_waiting_until_capacity_frees(
    topo: Topology, backend: KubernetesBackend
) -> None:
    # 20 cpus allocatable, 20 taken: one more waits, Pending, with the scheduler's reason
    waits: list[str] = []
    result: dict[str, Any] = {}

    def make() -> None:
        try:
            result["info"] = backend.create(spec("waiting"), on_wait=waits.append)
        except BaseException as e:
            result["error"] = e

    t = threading.Thread(target=make)
    t.start()
    deadline = time.monotonic() + 30
    while not waits:
        assert time.monotonic() < deadline, topo.logs()
        time.sleep(0.1)
    assert "Waiting for capacity" in waits[0] and "Insufficient cpu" in waits[0], waits
    pending = [p for p in pods(topo) if p["metadata"]["labels"]["kubelab.io/session"] == "waiting"]
    assert len(pending) == 1 and pending[0]["status"]["phase"] == "Pending" and "nodeName" not in pending[0]["spec"]
    # a student stops their lab: the waiting one starts in its place
    freed = created.pop("s05")
    backend.remove(freed)
    t.join(120)
    assert "info" in result, f"{result}\n{topo.logs()}"
    assert split_id(result["info"]["id"])[1] == split_id(freed)[1]
    assert backend.exec(result["info"]["id"], ["true"]).ok
    created["waiting"] = result["info"]["id"]


def test_a_retried_start_of_a_session_reuses_its_placeholder(topo: Topology, backend: KubernetesBackend) -> None:
    # provisioning retried after a lost worker: the same session gets the same Pod and sandbox
    first = created["s00"]
    again = backend.create(spec("s00"))
    assert again["id"] == first
    assert [p["metadata"]["labels"]["kubelab.io/session"] for p in pods(topo)].count("s00") == 1


def test_a_token_of_one_session_is_worthless_on_another_node(topo: Topology, backend: KubernetesBackend) -> None:
    a = next(sid for sid in created.values() if split_id(sid)[1] == "kl-node-a")
    b = next(sid for sid in created.values() if split_id(sid)[1] == "kl-node-b")
    token = backend.mint_token(a, "web", 300)
    addr_b = backend.node_address("kl-node-b")
    with Client(addr_b, token=token, ca=str(topo.ca)) as c:
        with pytest.raises(errors.Unauthorized):
            c.get_sandbox(split_id(b)[2])
        with pytest.raises(errors.Unauthorized):
            c.get_sandbox(split_id(a)[2])
    # nor without a token, nor with the grader role for what only the web role may do
    with Client(addr_b, token="", ca=str(topo.ca)) as c, pytest.raises(errors.Unauthorized):
        c.list_sandboxes()


def test_losing_a_node_ends_its_sessions_and_new_ones_land_on_the_other(
    topo: Topology, backend: KubernetesBackend
) -> None:
    on_a = [sid for sid in created.values() if split_id(sid)[1] == "kl-node-a"]
    on_b = [sid for sid in created.values() if split_id(sid)[1] == "kl-node-b"]
    topo.nodes["kl-node-a"].stop()
    # the node lifecycle controller: NotReady after the grace period, then the placeholders'
    # tolerationSeconds, then eviction
    deadline = time.monotonic() + GRACE + TOLERATION + 60
    while any(p["spec"].get("nodeName") == "kl-node-a" for p in pods(topo)):
        assert time.monotonic() < deadline, topo.logs()
        time.sleep(0.5)
    node = json.loads(topo.kubectl("get", "node", "kl-node-a", "-o", "json"))
    ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "Unknown" and ready["reason"] == "NodeStatusUnknown"
    assert any(t["key"] == "node.kubernetes.io/unreachable" for t in node["spec"]["taints"])
    for sid in on_a:
        with pytest.raises(errors.SandboxNotFound, match="taken out of service"):
            backend.get(sid)
    for sid in on_b:
        assert backend.get(sid)["status"] == "running"
    # node b holds 10 one-cpu sandboxes on 10 cpus: a classmate stops, and the restart fits there
    backend.remove(on_b.pop())
    again = backend.create(spec("restarted"))
    assert split_id(again["id"])[1] == "kl-node-b"
    assert backend.exec(again["id"], ["true"]).ok
