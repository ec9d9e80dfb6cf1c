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
