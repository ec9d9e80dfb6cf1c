"""PodGC in a multi-node lab cluster, through the real kubectl: a student deletes a worker
Node; its pods are marked (DisruptionTarget, reason DeletionByPodGC) and then deleted, the
Deployment's replacements are bound to the nodes left, and pods on other nodes are untouched.

The server here runs no kubelet (``python -m runtime.kube serve``): pods are bound and stay
Pending, which is all PodGC looks at (spec.nodeName against the Nodes that exist). That a pod
bound to a missing Node is left alone for the quarantine (40 s by default) is what
tests/security/test_kube_exec_message_bounds.py and test_kube_port_forward.py rely on (their
pod is bound to a Node that does not exist).
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime.kube.controllers.manager import Controllers
from tests.runtime.kube.conftest import KUBECTL, Kubectl, Server, free_port
from tests.runtime.kube.test_multinode import deployment, new_cluster, pods


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server of its own: its pod GC quarantine (40 s, as kube-controller-manager's) is
    1 s here, and a Node is deleted, which the shared server's other tests must not see."""
    srv = Server(tmp_path_factory.mktemp("podgc"), free_port())
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KUBE_POD_GC_QUARANTINE", "1")
        srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def kc(server: Server) -> Kubectl:
    name = f"gc{uuid.uuid4().hex[:6]}"
    out = new_cluster(server, name, "--nodes", "3")
    assert out.returncode == 0, out.stderr
    path = server.data / f"{name}.kubeconfig"
    path.write_bytes(out.stdout)
    return Kubectl(path)


def nodes(kc: Kubectl) -> list[str]:
    return [n["metadata"]["name"] for n in json.loads(kc("get", "nodes", "-o", "json"))["items"]]


def wait_for(check: Callable[[], Any], what: str, timeout: float = 20) -> Any:
    end = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < end, what
        time.sleep(0.2)


def test_deleting_a_worker_node_deletes_its_pods_and_replacements_go_to_the_remaining_nodes(
    kc: Kubectl, tmp_path: Path
) -> None:
    ns = f"gc-{uuid.uuid4().hex[:6]}"
    kc("create", "namespace", ns)
    cp = next(n for n in nodes(kc) if n.endswith("control-plane"))
    workers = sorted(n for n in nodes(kc) if n != cp)
    assert len(workers) == 2
    victim, survivor = workers
    kc("apply", "-n", ns, "-f", "-", stdin=deployment("web", 4))
    before = wait_for(
        lambda: (lambda ps: ps if len(ps) == 4 and all(p["spec"].get("nodeName") for p in ps) else None)(
            pods(kc, ns, "app=web")
        ),
        "4 pods bound",
    )
    doomed = {p["metadata"]["name"] for p in before if p["spec"]["nodeName"] == victim}
    kept = {p["metadata"]["name"]: p["metadata"]["uid"] for p in before if p["spec"]["nodeName"] == survivor}
    assert doomed and kept, "the scheduler spreads 4 replicas over both workers"
    # a bare pod on the surviving node: nobody's, and PodGC has no business with it
    kc("run", "bare", "-n", ns, "--image=busybox:1.35", f"--overrides={json.dumps({'spec': {'nodeName': survivor}})}")
    bare_uid = json.loads(kc("get", "pod", "bare", "-n", ns, "-o", "json"))["metadata"]["uid"]

    # watch every change to the pods, as a client would see it, while the node goes
    log = tmp_path / "watch.jsonl"
    with log.open("w") as fh:
        watcher = subprocess.Popen(
            [
                KUBECTL,
                "--kubeconfig",
                str(kc.kubeconfig),
                "get",
                "pods",
                "-n",
                ns,
                "--watch-only",
                "--output-watch-events",
                "-o",
                "json",
            ],
            stdout=fh,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(1.0)  # the watch is established before the change it must see
            kc("delete", "node", victim)
            after = wait_for(
                lambda: (
                    lambda ps: (
                        ps
                        if len([p for p in ps if not p["metadata"].get("deletionTimestamp")]) == 4
                        and not doomed & {p["metadata"]["name"] for p in ps}
                        and all(p["spec"].get("nodeName") for p in ps)
                        else None
                    )
                )(pods(kc, ns, "app=web")),
                "orphaned pods deleted and replaced",
            )
            time.sleep(1.0)
        finally:
            watcher.terminate()
            watcher.wait(timeout=10)

    assert {p["spec"]["nodeName"] for p in after} <= {survivor}, "replacements bound to the node left (cp tainted)"
    for p in after:
        if p["metadata"]["name"] in kept:
            assert p["metadata"]["uid"] == kept[p["metadata"]["name"]], "a pod on an existing node is untouched"
    assert len(kept.keys() & {p["metadata"]["name"] for p in after}) == len(kept)
    bare = json.loads(kc("get", "pod", "bare", "-n", ns, "-o", "json"))
    assert bare["metadata"]["uid"] == bare_uid and bare["spec"]["nodeName"] == survivor
    assert not any(c["type"] == "DisruptionTarget" for c in bare.get("status", {}).get("conditions") or [])

    decoder = json.JSONDecoder()
    text, pos, events = log.read_text(), 0, []
    while pos < len(text):
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            break
        obj, pos = decoder.raw_decode(text, pos)
        events.append(obj)
    for name in doomed:
        seen = [(e["type"], e["object"]) for e in events if e["object"]["metadata"]["name"] == name]
        kinds = [t for t, _ in seen]
        assert "DELETED" in kinds, f"{name} deleted: {kinds}"
        marked = [
            i
            for i, (t, o) in enumerate(seen)
            if t == "MODIFIED"
            and any(
                c["type"] == "DisruptionTarget" and c["status"] == "True" and c["reason"] == "DeletionByPodGC"
                for c in (o.get("status") or {}).get("conditions") or []
            )
        ]
        assert marked and marked[0] < kinds.index("DELETED"), f"{name}: condition written before deletion: {kinds}"
        assert seen[marked[0]][1]["status"]["phase"] == "Failed"
    kc.run("delete", "namespace", ns, "--wait=false")


# -- in process: the quarantine and the terminated-pod threshold, on a clock of our own -----


def _cluster(tmp_path: Path) -> Any:
    from runtime.kube.apiserver.cluster import Cluster
    from runtime.kube.apiserver.provision import create_cluster

    create_cluster(tmp_path, "gc", "https://127.0.0.1:1", controllers=Controllers)
    return Cluster("gc", tmp_path / "clusters" / "gc", controllers=Controllers)


def _post_pod(cl: Any, name: str, **spec: Any) -> None:
    from tests.security.test_kube_binding_proxy import call

    pod = {"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "busybox"}], **spec}}
    assert call(cl, "POST", "/api/v1/namespaces/default/pods", pod).status == 201


def test_a_pod_on_a_missing_node_waits_out_the_quarantine_then_is_marked_and_deleted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runtime.kube.controllers import podgc

    monkeypatch.setenv("KUBE_POD_GC_QUARANTINE", "40")
    clock = [1_000_000.0]
    monkeypatch.setattr(podgc, "_now", lambda: clock[0])
    cl = _cluster(tmp_path)
    _post_pod(cl, "lost", nodeName="ghost")
    cl.controllers.reconcile()
    assert cl.store.get("pods", "default", "lost") is not None, "within the quarantine: left alone"
    assert 1_000_040.0 in podgc.next_due(cl.controllers), "the reconcile is woken when it ends"
    clock[0] += 39
    cl.controllers.reconcile()
    assert cl.store.get("pods", "default", "lost") is not None
    seen: list[dict[str, Any]] = []
    real_put = cl.store.put

    def put(gr: str, obj: dict[str, Any], event_type: str, **kw: Any) -> Any:
        if gr == "pods":
            seen.append(json.loads(json.dumps(obj)))
        return real_put(gr, obj, event_type, **kw)

    monkeypatch.setattr(cl.store, "put", put)
    clock[0] += 1
    cl.controllers.reconcile()
    assert cl.store.get("pods", "default", "lost") is None
    marked = [o for o in seen if o["metadata"]["name"] == "lost"]
    cond = [c for c in marked[0]["status"]["conditions"] if c["type"] == "DisruptionTarget"]
    assert cond and cond[0]["reason"] == "DeletionByPodGC" and cond[0]["message"] == "PodGC: node no longer exists"
    assert marked[0]["status"]["phase"] == "Failed"
    assert podgc.next_due(cl.controllers) == [], "nothing left to wait for: no entry kept"


def test_finished_pods_beyond_the_threshold_are_deleted_oldest_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBE_TERMINATED_POD_GC_THRESHOLD", "2")
    cl = _cluster(tmp_path)
    for i, phase in enumerate(["Succeeded", "Failed", "Running", "Succeeded", "Failed"]):
        _post_pod(cl, f"p{i}", schedulerName="nobody")
        pod = json.loads(json.dumps(cl.store.get("pods", "default", f"p{i}")))
        pod["metadata"]["creationTimestamp"] = f"2026-01-01T00:00:0{i}Z"
        pod["status"] = {"phase": phase}
        cl.store.put("pods", pod, "MODIFIED")
    cl.controllers.reconcile()
    left = {p["metadata"]["name"] for p in cl.store.list("pods", "default")}
    assert left == {"p2", "p3", "p4"}, "the two oldest of four finished pods went; the running one stays"
