"""ReplicationController and APIService through the real kubectl 1.37.

RC (core/v1): what older tutorials and multi-document YAMLs use. Written from the API
reference: the selector is a plain map that defaults to the template's labels (and so do
the object's labels), replicas defaults to 1, the controller keeps that many pods
(owned by the RC, named ``NAME-xxxxx``), the scale subresource serves ``kubectl scale``,
deleting the RC deletes its pods (garbage collection), ``kubectl get rc`` prints
DESIRED/CURRENT/READY.

APIService (apiregistration.k8s.io/v1): a real API server lists one local APIService per
built-in group-version, ``Available=True`` with reason ``Local``; one backed by a Service
would be a proxy, which the lab cluster refuses (see tests/security for the attack side).
"""

from __future__ import annotations

import json
import time

from tests.compat.kube.conftest import Kubectl

CLIENT = "kubectl"

RC = """
apiVersion: v1
kind: ReplicationController
metadata:
  name: web
spec:
  replicas: 2
  template:
    metadata:
      labels: {app: web, tier: front}
    spec:
      containers:
      - {name: nginx, image: nginx:1.27, ports: [{containerPort: 80}]}
"""


def _pods(kubectl: Kubectl, ns: str, selector: str) -> list[dict[str, object]]:
    out = json.loads(kubectl("get", "pods", "-n", ns, "-l", selector, "-o", "json"))
    return [p for p in out["items"] if not p["metadata"].get("deletionTimestamp")]


def _wait(cond: object, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_rc_defaults_and_keeps_its_pods(kubectl: Kubectl, ns: str) -> None:
    assert kubectl("apply", "-n", ns, "-f", "-", stdin=RC).strip() == "replicationcontroller/web created"
    rc = json.loads(kubectl("get", "rc", "web", "-n", ns, "-o", "json"))
    assert rc["spec"]["selector"] == {"app": "web", "tier": "front"}
    assert rc["metadata"]["labels"] == {"app": "web", "tier": "front"}
    pods = _pods(kubectl, ns, "app=web")
    assert len(pods) == 2
    for p in pods:
        ref = p["metadata"]["ownerReferences"][0]  # type: ignore[index]
        assert (ref["kind"], ref["name"], ref["controller"]) == ("ReplicationController", "web", True)
        assert p["metadata"]["name"].startswith("web-")  # type: ignore[index]
    # a pod deleted by hand is replaced
    kubectl("delete", "pod", pods[0]["metadata"]["name"], "-n", ns, "--grace-period=0", "--force")  # type: ignore[index]
    _wait(lambda: len(_pods(kubectl, ns, "app=web")) == 2, "the RC to replace its pod")
    table = kubectl("get", "rc", "-n", ns).splitlines()
    assert table[0].split() == ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]
    assert table[1].split()[:3] == ["web", "2", "2"]
    wide = kubectl("get", "rc", "web", "-n", ns, "-o", "wide").splitlines()
    assert wide[0].split()[-1] == "SELECTOR" and wide[1].split()[-1] == "app=web,tier=front"


def test_kubectl_scale_rc_uses_the_scale_subresource(kubectl: Kubectl, ns: str) -> None:
    kubectl("apply", "-n", ns, "-f", "-", stdin=RC)
    assert kubectl("scale", "rc", "web", "-n", ns, "--replicas=3").strip() == "replicationcontroller/web scaled"
    _wait(lambda: len(_pods(kubectl, ns, "app=web")) == 3, "three pods")
    scale = json.loads(kubectl("get", "--raw", f"/api/v1/namespaces/{ns}/replicationcontrollers/web/scale"))
    assert scale["kind"] == "Scale" and scale["apiVersion"] == "autoscaling/v1"
    assert scale["spec"] == {"replicas": 3}
    assert scale["status"]["selector"] == "app=web,tier=front"
    kubectl("scale", "rc", "web", "-n", ns, "--replicas=1")
    _wait(lambda: len(_pods(kubectl, ns, "app=web")) == 1, "one pod")
    st = json.loads(kubectl("get", "rc", "web", "-n", ns, "-o", "jsonpath={.status}"))
    assert st["replicas"] == 1 and st["observedGeneration"] == 3
    assert "terminatingReplicas" not in st  # not a ReplicationControllerStatus field


def test_deleting_the_rc_deletes_its_pods(kubectl: Kubectl, ns: str) -> None:
    kubectl("apply", "-n", ns, "-f", "-", stdin=RC)
    kubectl("delete", "rc", "web", "-n", ns)
    _wait(lambda: not _pods(kubectl, ns, "app=web"), "the pods to go with their RC")


def test_rc_validation_messages(kubectl: Kubectl, ns: str) -> None:
    bad = RC.replace("labels: {app: web, tier: front}", "labels: {app: other}").replace(
        "spec:\n  replicas: 2", "spec:\n  replicas: 2\n  selector: {app: web}"
    )
    err = kubectl.fails("apply", "-n", ns, "-f", "-", stdin=bad)
    assert 'ReplicationController "web" is invalid: spec.template.metadata.labels: Invalid value:' in err
    assert "`selector` does not match template `labels`" in err


def test_describe_rc_shows_the_controller_events(kubectl: Kubectl, ns: str) -> None:
    kubectl("apply", "-n", ns, "-f", "-", stdin=RC)
    out = kubectl("describe", "rc", "web", "-n", ns)
    assert "Selector:" in out and "app=web,tier=front" in out
    assert "Replicas:     2 current / 2 desired" in out
    assert "SuccessfulCreate" in out and "replication-controller" in out


def test_apiservices_list_the_built_in_groups(kubectl: Kubectl) -> None:
    lines = kubectl("get", "apiservices").splitlines()
    assert lines[0].split() == ["NAME", "SERVICE", "AVAILABLE", "AGE"]
    rows = {ln.split()[0]: ln.split()[1:3] for ln in lines[1:]}
    for name in (
        "v1.",
        "v1.apps",
        "v1.batch",
        "v2.autoscaling",
        "v1.rbac.authorization.k8s.io",
        "v1.apiregistration.k8s.io",
    ):
        assert rows[name] == ["Local", "True"], (name, rows.get(name))
    apps = json.loads(kubectl("get", "apiservice", "v1.apps", "-o", "json"))
    assert apps["spec"] == {"group": "apps", "version": "v1", "groupPriorityMinimum": 17800, "versionPriority": 15}
    cond = apps["status"]["conditions"][0]
    assert (cond["type"], cond["status"], cond["reason"]) == ("Available", "True", "Local")
    assert cond["message"] == "Local APIServices are always available"


def test_a_deleted_built_in_apiservice_comes_back(kubectl: Kubectl) -> None:
    kubectl("delete", "apiservice", "v1.coordination.k8s.io")
    spec = json.loads(kubectl("get", "apiservice", "v1.coordination.k8s.io", "-o", "jsonpath={.spec}"))
    assert spec["group"] == "coordination.k8s.io"


def test_an_apiservice_backed_by_a_service_is_refused_with_the_reason(kubectl: Kubectl) -> None:
    svc = """
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1beta1.metrics.k8s.io}
spec:
  group: metrics.k8s.io
  version: v1beta1
  groupPriorityMinimum: 100
  versionPriority: 100
  insecureSkipTLSVerify: true
  service: {name: metrics-server, namespace: kube-system}
"""
    err = kubectl.fails("apply", "-f", "-", stdin=svc)
    assert 'Error from server (Forbidden): error when creating "STDIN": apiservices.apiregistration.k8s.io ' in err
    assert '"v1beta1.metrics.k8s.io" is forbidden: spec.service: this lab cluster does not serve the aggregation' in err
    assert kubectl.run("get", "apiservice", "v1beta1.metrics.k8s.io").returncode != 0


def test_apiservice_name_must_be_version_dot_group(kubectl: Kubectl) -> None:
    bad = """
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: wrong-name}
spec: {group: x.example.com, version: v1, groupPriorityMinimum: 100, versionPriority: 10}
"""
    err = kubectl.fails("apply", "-f", "-", stdin=bad)
    assert (
        'metadata.name: Invalid value: "wrong-name": must be `spec.version+"."+spec.group`: "v1.x.example.com"' in err
    )


def test_kubectl_autoscale_rc(kubectl: Kubectl, ns: str) -> None:
    """An HPA may target an RC (scaleTargetRef kind ReplicationController, through its scale
    subresource); with no metrics the lab's HPA keeps replicas within [min, max]."""
    kubectl("apply", "-n", ns, "-f", "-", stdin=RC)
    out = kubectl("autoscale", "rc", "web", "-n", ns, "--min=3", "--max=5")
    assert out.strip() == "horizontalpodautoscaler.autoscaling/web autoscaled"
    _wait(lambda: kubectl("get", "rc", "web", "-n", ns, "-o", "jsonpath={.spec.replicas}") == "3", "min replicas")
    _wait(lambda: len(_pods(kubectl, ns, "app=web")) == 3, "three pods")
