"""The lab cluster's scheduler, through the real kubectl: pods are bound to the node, or
wait with kube-scheduler's own reasons, and are bound as soon as the cluster changes so
that they fit. A cluster of this module's own: the tests label, taint and cordon its node."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

from tests.runtime.kube.conftest import Kubectl, Server

NODE = "sched-control-plane"


@pytest.fixture(scope="module")
def kc(server: Server) -> Kubectl:
    return Kubectl(server.new_cluster("sched"))


@pytest.fixture
def ns(kc: Kubectl) -> Iterator[str]:
    name = f"s-{uuid.uuid4().hex[:8]}"
    kc("create", "namespace", name)
    yield name
    kc.run("delete", "namespace", name, "--wait=false")


def pod(kc: Kubectl, ns: str, name: str) -> dict:
    return json.loads(kc("get", "pod", name, "-n", ns, "-o", "json"))


def scheduled(p: dict) -> dict:
    return next(c for c in p["status"]["conditions"] if c["type"] == "PodScheduled")


def events(kc: Kubectl, ns: str, name: str) -> list[tuple[str, str, str]]:
    out = json.loads(kc("get", "events", "-n", ns, "--field-selector", f"involvedObject.name={name}", "-o", "json"))
    return [(e["type"], e["reason"], e["message"]) for e in out["items"]]


def make(kc: Kubectl, ns: str, name: str, spec_yaml: str) -> None:
    body = f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n{spec_yaml}"
    kc("apply", "-n", ns, "-f", "-", stdin=body)


def container(cpu: str | None = None, memory: str | None = None) -> str:
    res = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v}
    resources = f", resources: {{requests: {json.dumps(res)}}}" if res else ""
    return f"  containers: [{{name: main, image: busybox:1.35{resources}}}]\n"


def test_a_pod_is_bound_to_the_node_with_an_event(kc: Kubectl, ns: str) -> None:
    assert kc("run", "web", "--image=busybox:1.35", "-n", ns) == "pod/web created\n"
    p = pod(kc, ns, "web")
    assert p["spec"]["nodeName"] == NODE
    assert scheduled(p)["status"] == "True" and p["status"]["phase"] == "Pending"
    assert ("Normal", "Scheduled", f"Successfully assigned {ns}/web to {NODE}") in events(kc, ns, "web")
    wide = kc("get", "pod", "web", "-n", ns, "-o", "wide").splitlines()
    assert wide[1].split()[6] == NODE
    described = kc("describe", "pod", "web", "-n", ns)
    assert f"Node:             {NODE}/" in described
    assert "default-scheduler  Successfully assigned" in described


def test_requests_beyond_the_node_wait_and_fit_when_room_is_made(kc: Kubectl, ns: str) -> None:
    make(kc, ns, "huge", container(cpu="3"))
    p = pod(kc, ns, "huge")
    want = (
        "0/1 nodes are available: 1 Insufficient cpu. "
        "preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
    )
    assert "nodeName" not in p["spec"]
    assert scheduled(p) | {"lastTransitionTime": ""} == {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": want,
        "lastProbeTime": None,
        "lastTransitionTime": "",
    }
    assert events(kc, ns, "huge") == [("Warning", "FailedScheduling", want)]
    # two pods of 1.5 cpu on a 2-cpu node: the second waits until the first is gone
    make(kc, ns, "first", container(cpu="1500m", memory="1Gi"))
    make(kc, ns, "second", container(cpu="1500m", memory="1Gi"))
    assert pod(kc, ns, "first")["spec"]["nodeName"] == NODE
    assert "Insufficient cpu" in scheduled(pod(kc, ns, "second"))["message"]
    kc("delete", "pod", "first", "-n", ns, "--wait=false")
    assert pod(kc, ns, "second")["spec"]["nodeName"] == NODE
    assert scheduled(pod(kc, ns, "second"))["status"] == "True"
    # memory is counted too, and both reasons are given at once
    make(kc, ns, "greedy", container(cpu="1", memory="5Gi"))
    assert scheduled(pod(kc, ns, "greedy"))["message"].startswith(
        "0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory. "
    )


def test_node_selector_waits_for_the_label(kc: Kubectl, ns: str) -> None:
    make(kc, ns, "fast", "  nodeSelector: {disktype: ssd}\n" + container())
    want = (
        "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector. "
        "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
    )
    assert scheduled(pod(kc, ns, "fast"))["message"] == want
    describe = kc("describe", "pod", "fast", "-n", ns)
    assert "FailedScheduling" in describe and "didn't match Pod's node affinity/selector" in describe
    try:
        kc("label", "nodes", "--all", "disktype=ssd")
        assert pod(kc, ns, "fast")["spec"]["nodeName"] == NODE
    finally:
        kc("label", "nodes", "--all", "disktype-")
    # required node affinity: NotIn the node's own hostname never fits
    affinity = (
        "  affinity:\n    nodeAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n"
        "        nodeSelectorTerms:\n          - matchExpressions:\n"
        f"              - {{key: kubernetes.io/hostname, operator: NotIn, values: [{NODE}]}}\n"
    )
    make(kc, ns, "elsewhere", affinity + container())
    assert "didn't match Pod's node affinity/selector" in scheduled(pod(kc, ns, "elsewhere"))["message"]


def test_taints_keep_out_pods_that_do_not_tolerate_them(kc: Kubectl, ns: str) -> None:
    kc("taint", "nodes", NODE, "dedicated=lab:NoSchedule")
    try:
        make(kc, ns, "plain", container())
        assert scheduled(pod(kc, ns, "plain"))["message"] == (
            "0/1 nodes are available: 1 node(s) had untolerated taint {dedicated: lab}. "
            "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
        )
        toleration = "  tolerations: [{key: dedicated, operator: Equal, value: lab, effect: NoSchedule}]\n"
        make(kc, ns, "tolerant", toleration + container())
        assert pod(kc, ns, "tolerant")["spec"]["nodeName"] == NODE
    finally:
        kc("taint", "nodes", NODE, "dedicated=lab:NoSchedule-")
    assert pod(kc, ns, "plain")["spec"]["nodeName"] == NODE  # bound once the taint is gone
    # PreferNoSchedule only prefers: the lone node still takes the pod
    kc("taint", "nodes", NODE, "dedicated=lab:PreferNoSchedule")
    try:
        make(kc, ns, "preferred", container())
        assert pod(kc, ns, "preferred")["spec"]["nodeName"] == NODE
    finally:
        kc("taint", "nodes", NODE, "dedicated=lab:PreferNoSchedule-")


def test_a_cordoned_node_takes_no_new_pods(kc: Kubectl, ns: str) -> None:
    kc("cordon", NODE)
    try:
        make(kc, ns, "later", container())
        assert scheduled(pod(kc, ns, "later"))["message"].startswith(
            "0/1 nodes are available: 1 node(s) were unschedulable. "
        )
    finally:
        kc("uncordon", NODE)
    assert pod(kc, ns, "later")["spec"]["nodeName"] == NODE


def test_controllers_pods_are_scheduled_and_a_pod_for_another_scheduler_is_left_alone(kc: Kubectl, ns: str) -> None:
    kc("create", "deployment", "web", "--image=busybox:1.35", "--replicas=3", "-n", ns)
    nodes = kc("get", "pods", "-n", ns, "-l", "app=web", "-o", "jsonpath={.items[*].spec.nodeName}").split()
    assert nodes == [NODE] * 3
    make(kc, ns, "custom", "  schedulerName: my-scheduler\n" + container())
    p = pod(kc, ns, "custom")
    assert "nodeName" not in p["spec"] and not p["status"].get("conditions")
