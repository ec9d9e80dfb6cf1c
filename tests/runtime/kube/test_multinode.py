"""Multi-node lab clusters through the real kubectl (and the kubernetes Python client): a
control plane and two workers, the scheduler spreading and filtering across them, DaemonSets
on every eligible node, cordon and drain honouring a PodDisruptionBudget.

The server here runs no kubelet (``python -m runtime.kube serve``): pods are bound and stay
Pending. Where a test needs pods Running and Ready (a budget counts only healthy pods), it
writes the status subresource as a kubelet would, and says so.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.runtime.kube.conftest import KUBECTL, PY, ROOT, Kubectl, Server

CP, W1, W2 = "multi-control-plane", "multi-worker", "multi-worker2"
WORKERS = {W1, W2}


def new_cluster(server: Server, name: str, *extra: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [PY, "-m", "runtime.kube", "new-cluster", "--data", str(server.data), "--server", server.url, *extra, name],
        cwd=ROOT,
        capture_output=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def kc(server: Server) -> Kubectl:
    out = new_cluster(server, "multi", "--nodes", "3")
    assert out.returncode == 0, out.stderr
    path = server.data / "multi.kubeconfig"
    path.write_bytes(out.stdout)
    return Kubectl(path)


@pytest.fixture
def ns(kc: Kubectl) -> Iterator[str]:
    name = f"m-{uuid.uuid4().hex[:8]}"
    kc("create", "namespace", name)
    yield name
    kc.run("delete", "namespace", name, "--wait=false")


def pods(kc: Kubectl, ns: str, selector: str) -> list[dict]:
    return list(json.loads(kc("get", "pods", "-n", ns, "-l", selector, "-o", "json"))["items"])


def placement(kc: Kubectl, ns: str, selector: str) -> Counter[str]:
    return Counter(p["spec"].get("nodeName") or "<none>" for p in pods(kc, ns, selector))


def deployment(name: str, replicas: int, spec_extra: str = "") -> str:
    return f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers: [{{name: c, image: busybox:1.35}}]
{spec_extra}"""


def failed_scheduling(kc: Kubectl, ns: str, pod: str) -> list[str]:
    out = json.loads(kc("get", "events", "-n", ns, "--field-selector", f"involvedObject.name={pod}", "-o", "json"))
    return [e["message"] for e in out["items"] if e["reason"] == "FailedScheduling"]


def make_ready(kc: Kubectl, ns: str, pod: str) -> None:
    """What the kubelet would write once the pod's containers run (no kubelet here)."""
    st = {
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
        }
    }
    kc("patch", "pod", pod, "-n", ns, "--subresource=status", "--type=merge", "-p", json.dumps(st))


def test_nodes_are_a_control_plane_and_workers_each_with_its_own_labels_taints_and_address(kc: Kubectl) -> None:
    wide = kc("get", "nodes", "-o", "wide").splitlines()
    rows = {line.split()[0]: line.split() for line in wide[1:]}
    assert set(rows) == {CP, W1, W2}
    assert rows[CP][1:3] == ["Ready", "control-plane"] and rows[W1][1:3] == ["Ready", "<none>"]
    assert [rows[n][5] for n in (CP, W1, W2)] == ["172.18.0.2", "172.18.0.3", "172.18.0.4"]
    nodes = {n["metadata"]["name"]: n for n in json.loads(kc("get", "nodes", "-o", "json"))["items"]}
    for name, node in nodes.items():
        labels = node["metadata"]["labels"]
        assert labels["kubernetes.io/hostname"] == name
        assert labels["kubernetes.io/os"] == "linux" and labels["kubernetes.io/arch"] == "amd64"
        assert ("node-role.kubernetes.io/control-plane" in labels) == (name == CP)
        # no sandbox behind this server's clusters: the default figure on each node
        assert node["status"]["capacity"] == {"cpu": "2", "ephemeral-storage": "20Gi", "memory": "4Gi", "pods": "110"}
        assert node["status"]["allocatable"] == node["status"]["capacity"]
        assert node["status"]["nodeInfo"]["kubeletVersion"].startswith("v1.")
        conditions = {c["type"]: (c["status"], c["reason"]) for c in node["status"]["conditions"]}
        assert conditions == {
            "MemoryPressure": ("False", "KubeletHasSufficientMemory"),
            "DiskPressure": ("False", "KubeletHasNoDiskPressure"),
            "PIDPressure": ("False", "KubeletHasSufficientPID"),
            "Ready": ("True", "KubeletReady"),
        }
    assert nodes[CP]["spec"]["taints"] == [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]
    assert "taints" not in nodes[W1]["spec"] and "taints" not in nodes[W2]["spec"]
    assert "node-role.kubernetes.io/control-plane:NoSchedule" in kc("describe", "node", CP)


def test_a_one_node_cluster_keeps_its_untainted_control_plane(server: Server) -> None:
    out = new_cluster(server, f"one-{uuid.uuid4().hex[:6]}")
    assert out.returncode == 0, out.stderr
    path = server.data / "one.kubeconfig"
    path.write_bytes(out.stdout)
    nodes = json.loads(Kubectl(path)("get", "nodes", "-o", "json"))["items"]
    assert len(nodes) == 1 and "taints" not in nodes[0]["spec"]


@pytest.mark.parametrize("count", ["0", "6", "three"])
def test_a_node_count_out_of_range_is_refused(server: Server, count: str) -> None:
    name = f"bad-{uuid.uuid4().hex[:6]}"
    out = new_cluster(server, name, "--nodes", count)
    assert out.returncode != 0
    assert not (server.data / "clusters" / name).exists()
    if count.isdigit():
        assert f"invalid node count {count}: must be 1 to 5" in out.stderr.decode()


def test_a_deployment_spreads_over_the_workers_and_keeps_off_the_control_plane(kc: Kubectl, ns: str) -> None:
    kc("apply", "-n", ns, "-f", "-", stdin=deployment("web", 4))
    assert placement(kc, ns, "app=web") == {W1: 2, W2: 2}
    wide = kc("get", "pods", "-n", ns, "-o", "wide")
    assert wide.splitlines()[0].split()[6] == "NODE" and W1 in wide and W2 in wide


def test_required_anti_affinity_puts_one_replica_per_node_and_says_why_the_third_waits(kc: Kubectl, ns: str) -> None:
    anti = """      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - labelSelector: {matchLabels: {app: one}}
            topologyKey: kubernetes.io/hostname
"""
    kc("apply", "-n", ns, "-f", "-", stdin=deployment("one", 3, anti))
    where = placement(kc, ns, "app=one")
    assert where == {W1: 1, W2: 1, "<none>": 1}
    waiting = next(p for p in pods(kc, ns, "app=one") if not p["spec"].get("nodeName"))
    message = (
        "0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, "
        "2 node(s) didn't match pod anti-affinity rules. preemption: 0/3 nodes are available: "
        "1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod."
    )
    assert failed_scheduling(kc, ns, waiting["metadata"]["name"]) == [message]
    # tolerating the control plane's taint, three replicas get a node each
    tolerant = anti.replace("app: one", "app: three") + (
        "      tolerations: [{key: node-role.kubernetes.io/control-plane, effect: NoSchedule}]\n"
    )
    kc("apply", "-n", ns, "-f", "-", stdin=deployment("three", 3, tolerant))
    assert placement(kc, ns, "app=three") == {CP: 1, W1: 1, W2: 1}


def test_required_pod_affinity_follows_the_pod_it_names(kc: Kubectl, ns: str) -> None:
    kc("run", "cache", "--image=busybox:1.35", "-n", ns, "--labels=app=cache")
    cache_node = pods(kc, ns, "app=cache")[0]["spec"]["nodeName"]
    near = """      affinity:
        podAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - labelSelector: {matchLabels: {app: cache}}
            topologyKey: kubernetes.io/hostname
"""
    kc("apply", "-n", ns, "-f", "-", stdin=deployment("near", 3, near))
    assert placement(kc, ns, "app=near") == {cache_node: 3}


def test_topology_spread_keeps_the_skew_and_refuses_a_missing_label(kc: Kubectl, ns: str) -> None:
    spread = """      tolerations: [{{key: node-role.kubernetes.io/control-plane, effect: NoSchedule}}]
      topologySpreadConstraints:
      - maxSkew: 1
        topologyKey: {key}
        whenUnsatisfiable: DoNotSchedule
        labelSelector: {{matchLabels: {{app: {app}}}}}
"""
    kc(
        "apply",
        "-n",
        ns,
        "-f",
        "-",
        stdin=deployment("even", 6, spread.format(key="kubernetes.io/hostname", app="even")),
    )
    assert placement(kc, ns, "app=even") == {CP: 2, W1: 2, W2: 2}
    kc(
        "apply",
        "-n",
        ns,
        "-f",
        "-",
        stdin=deployment("zoned", 1, spread.format(key="topology.kubernetes.io/zone", app="zoned")),
    )
    (pod,) = pods(kc, ns, "app=zoned")
    assert not pod["spec"].get("nodeName")
    assert failed_scheduling(kc, ns, pod["metadata"]["name"]) == [
        "0/3 nodes are available: 3 node(s) didn't match pod topology spread constraints (missing required label). "
        "preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
    ]
    for node, zone in ((CP, "a"), (W1, "a"), (W2, "b")):
        kc("label", "node", node, f"topology.kubernetes.io/zone={zone}")
    try:
        kc("scale", "deployment", "zoned", "-n", ns, "--replicas=4")
        zones = Counter({CP: "a", W1: "a", W2: "b"}[n] for n in placement(kc, ns, "app=zoned").elements())
        assert zones == {"a": 2, "b": 2}
    finally:
        for node in (CP, W1, W2):
            kc("label", "node", node, "topology.kubernetes.io/zone-")


def bare_pod(name: str, labels: str, spec_extra: str = "") -> str:
    return f"""
apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {{{labels}}}}}
spec:
  containers: [{{name: c, image: busybox:1.35}}]
{spec_extra}"""


def node_of(kc: Kubectl, ns: str, pod: str) -> str:
    return str(kc("get", "pod", pod, "-n", ns, "-o", "jsonpath={.spec.nodeName}"))


def test_preferences_steer_pods_without_forbidding_nodes(kc: Kubectl, ns: str) -> None:
    """Each preference is asked against what the other scores (fewest pods first) would pick."""
    kc("apply", "-n", ns, "-f", "-", stdin=bare_pod("solo", "app: solo"))
    solo = node_of(kc, ns, "solo")
    other = (WORKERS - {solo}).pop()
    away = """  affinity:
    podAntiAffinity:
      preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm: {labelSelector: {matchLabels: {app: solo}}, topologyKey: kubernetes.io/hostname}
"""
    near = away.replace("podAntiAffinity", "podAffinity")
    kc("apply", "-n", ns, "-f", "-", stdin=bare_pod("near", "app: near", near))
    assert node_of(kc, ns, "near") == solo  # the emptier node is the other one
    for i in range(3):
        pinned = f"  nodeSelector: {{kubernetes.io/hostname: {other}}}\n"
        kc("apply", "-n", ns, "-f", "-", stdin=bare_pod(f"filler{i}", "app: filler", pinned))
    kc("apply", "-n", ns, "-f", "-", stdin=bare_pod("away", "app: away", away))
    assert node_of(kc, ns, "away") == other  # now the fuller one
    pick = f"""  affinity:
    nodeAffinity:
      preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        preference: {{matchExpressions: [{{key: kubernetes.io/hostname, operator: In, values: [{other}]}}]}}
"""
    kc("apply", "-n", ns, "-f", "-", stdin=bare_pod("picky", "app: picky", pick))
    assert node_of(kc, ns, "picky") == other
    # a preference for the tainted control plane does not get the pod past its taint
    kc("apply", "-n", ns, "-f", "-", stdin=bare_pod("hopeful", "app: hopeful", pick.replace(other, CP)))
    assert node_of(kc, ns, "hopeful") in WORKERS


DAEMONSET = """
apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: {name}}}
spec:
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers: [{{name: c, image: busybox:1.35}}]
{extra}"""


def test_a_daemonset_runs_one_pod_per_eligible_node(kc: Kubectl, ns: str) -> None:
    kc("apply", "-n", ns, "-f", "-", stdin=DAEMONSET.format(name="agent", extra=""))
    assert placement(kc, ns, "app=agent") == {W1: 1, W2: 1}
    st = json.loads(kc("get", "ds", "agent", "-n", ns, "-o", "json"))["status"]
    assert st["desiredNumberScheduled"] == 2 and st["currentNumberScheduled"] == 2
    everywhere = (
        "      tolerations: [{key: node-role.kubernetes.io/control-plane, operator: Exists, effect: NoSchedule}]\n"
    )
    kc("apply", "-n", ns, "-f", "-", stdin=DAEMONSET.format(name="logs", extra=everywhere))
    assert placement(kc, ns, "app=logs") == {CP: 1, W1: 1, W2: 1}
    # a node selector narrows it; the pod on a node that no longer matches goes
    kc("label", "node", W2, "disk=ssd")
    try:
        selected = "      nodeSelector: {disk: ssd}\n"
        kc("apply", "-n", ns, "-f", "-", stdin=DAEMONSET.format(name="agent", extra=selected))
        live = [p for p in pods(kc, ns, "app=agent") if not p["metadata"].get("deletionTimestamp")]
        assert Counter(p["spec"]["nodeName"] for p in live) == {W2: 1}
    finally:
        kc("label", "node", W2, "disk-")


def test_cordon_taints_the_node_and_uncordon_clears_it(kc: Kubectl, ns: str) -> None:
    kc("cordon", W1)
    try:
        node = json.loads(kc("get", "node", W1, "-o", "json"))
        assert node["spec"]["unschedulable"] is True
        assert [(t["key"], t["effect"]) for t in node["spec"]["taints"]] == [
            ("node.kubernetes.io/unschedulable", "NoSchedule")
        ]
        assert "SchedulingDisabled" in kc("get", "node", W1)
        kc("apply", "-n", ns, "-f", "-", stdin=deployment("after", 2))
        assert placement(kc, ns, "app=after") == {W2: 2}
    finally:
        kc("uncordon", W1)
    assert "taints" not in json.loads(kc("get", "node", W1, "-o", "json"))["spec"]


def test_drain_waits_for_the_budget_then_moves_the_pods_to_the_other_worker(kc: Kubectl, ns: str) -> None:
    kc("apply", "-n", ns, "-f", "-", stdin=deployment("shop", 2))
    kc("apply", "-n", ns, "-f", "-", stdin=DAEMONSET.format(name="agent", extra=""))
    assert placement(kc, ns, "app=shop") == {W1: 1, W2: 1}
    for p in pods(kc, ns, "app=shop"):
        make_ready(kc, ns, p["metadata"]["name"])
    kc("create", "pdb", "shop", "-n", ns, "--selector=app=shop", "--min-available=2")
    assert kc("get", "pdb", "shop", "-n", ns, "-o", "jsonpath={.status.disruptionsAllowed}") == "0"
    err_path = Path(kc.kubeconfig).parent / f"drain-{ns}.err"
    with open(err_path, "w") as err_file:
        drain = subprocess.Popen(
            [KUBECTL, "--kubeconfig", str(kc.kubeconfig), "drain", W1, "--ignore-daemonsets", "--timeout=90s"],
            stdout=subprocess.PIPE,
            stderr=err_file,
            text=True,
            env={**os.environ, "KUBECACHEDIR": str(Path(kc.kubeconfig).parent / "cache")},
        )
    refused = "Cannot evict pod as it would violate the pod's disruption budget."
    try:
        # kubectl retries the eviction while the budget forbids it; the pod stays where it is
        deadline = time.monotonic() + 60
        while refused not in err_path.read_text():
            assert drain.poll() is None, err_path.read_text()
            assert time.monotonic() < deadline, "kubectl drain never met the budget"
            time.sleep(0.2)
        assert placement(kc, ns, "app=shop") == {W1: 1, W2: 1}
        # a third replica (on W2: W1 is cordoned) becomes ready: the budget allows one eviction
        kc("scale", "deployment", "shop", "-n", ns, "--replicas=3")
        assert placement(kc, ns, "app=shop") == {W1: 1, W2: 2}
        for p in pods(kc, ns, "app=shop"):
            if p["spec"]["nodeName"] == W2:
                make_ready(kc, ns, p["metadata"]["name"])
        out, _ = drain.communicate(timeout=60)
    finally:
        if drain.poll() is None:
            drain.kill()
            drain.communicate()
    err = err_path.read_text()
    assert drain.returncode == 0, err
    assert refused in err
    assert f"node/{W1} drained" in out and "evicted" in out
    assert placement(kc, ns, "app=shop") == {W2: 3}  # the evicted pod's replacement too
    assert placement(kc, ns, "app=agent") == {W1: 1, W2: 1}  # --ignore-daemonsets: left alone
    kc("uncordon", W1)


def test_the_python_client_lists_and_patches_nodes(kc: Kubectl) -> None:
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=str(kc.kubeconfig))
    try:
        core: Any = client.CoreV1Api(api)  # its models' fields are all Optional: Any reads plainly
        names = sorted(n.metadata.name for n in core.list_node().items)
        assert names == [CP, W1, W2]
        workers = core.list_node(label_selector="!node-role.kubernetes.io/control-plane").items
        assert sorted(n.metadata.name for n in workers) == [W1, W2]
        core.patch_node(W2, {"metadata": {"labels": {"lab/tier": "gpu"}}})
        assert core.read_node(W2).metadata.labels["lab/tier"] == "gpu"
        core.patch_node(W2, {"spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}})
        taints = core.read_node(W2).spec.taints
        assert [(t.key, t.value, t.effect) for t in taints] == [("dedicated", "gpu", "NoSchedule")]
    finally:
        client.CoreV1Api(api).patch_node(W2, {"metadata": {"labels": {"lab/tier": None}}, "spec": {"taints": None}})
        api.close()
