"""``kubectl drain`` and the eviction subresource (policy/v1 Eviction).

kubectl drain cordons the node, then evicts each pod through ``POST pods/NAME/eviction``
(it checks discovery for the subresource first) and retries while the API server answers
429 because a PodDisruptionBudget allows no disruption ("Cannot evict pod as it would
violate the pod's disruption budget."). Without a kubelet nothing would ever become
ready, so the tests mark the pods Running and Ready through the status subresource, as a
kubelet does. The drain runs on a cluster of its own (cordoning the compat cluster's only
node would leave other tests' pods Pending).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.compat.kube.conftest import Kubectl
from tests.runtime.kube.apiserver.test_pod_io import HostPodIO, InProcessServer

CLIENT = "kubectl"

DEPLOY = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, image: nginx:1.27}]}
"""

PDB = """
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: keep-two, namespace: default}
spec:
  minAvailable: 2
  selector: {matchLabels: {app: web}}
"""


def _ready(kc: Kubectl, pod: str) -> None:
    st = {
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
        }
    }
    kc("patch", "pod", pod, "-n", "default", "--subresource=status", "--type=merge", "-p", json.dumps(st))


@pytest.fixture
def drainable(compat_server: InProcessServer, pod_io: HostPodIO) -> Any:
    import uuid

    kc = compat_server.cluster_with(f"drain-{uuid.uuid4().hex[:6]}", pod_io)
    kc("apply", "-f", "-", stdin=DEPLOY)
    for p in kc("get", "pods", "-l", "app=web", "-o", "name").split():
        _ready(kc, p.split("/")[1])
    node = kc("get", "nodes", "-o", "jsonpath={.items[0].metadata.name}")
    return kc, node


def test_drain_is_held_by_a_disruption_budget_then_evicts(drainable: Any) -> None:
    kc, node = drainable
    kc("apply", "-f", "-", stdin=PDB)
    assert kc("get", "pdb", "keep-two", "-o", "jsonpath={.status.disruptionsAllowed}") == "0"
    r = kc.run("drain", node, "--ignore-daemonsets", "--timeout=2s", timeout=60)
    assert r.returncode != 0
    assert "Cannot evict pod as it would violate the pod's disruption budget." in r.stderr
    assert len(kc("get", "pods", "-l", "app=web", "-o", "name").split()) == 2
    kc("delete", "pdb", "keep-two")
    r = kc.run("drain", node, "--ignore-daemonsets", "--timeout=30s", timeout=60)
    assert r.returncode == 0, r.stderr
    assert f"node/{node} drained" in r.stdout
    assert r.stdout.count(" evicted\n") == 2 and "pod/web-" in r.stdout
    assert kc("get", "node", node, "-o", "jsonpath={.spec.unschedulable}") == "true"
    kc("uncordon", node)


def test_python_client_eviction_answers(drainable: Any, compat_server: InProcessServer) -> None:
    from kubernetes import client, config

    kc, _node = drainable
    kc("apply", "-f", "-", stdin=PDB.replace("minAvailable: 2", "minAvailable: 1"))
    api = config.new_client_from_config(config_file=str(kc.kubeconfig))
    core = client.CoreV1Api(api)
    pods = sorted(kc("get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].metadata.name}").split())
    body = client.V1Eviction(metadata=client.V1ObjectMeta(name=pods[0], namespace="default"))
    core.create_namespaced_pod_eviction(pods[0], "default", body)  # one disruption allowed
    second = client.V1Eviction(metadata=client.V1ObjectMeta(name=pods[1], namespace="default"))
    with pytest.raises(client.ApiException) as e:
        core.create_namespaced_pod_eviction(pods[1], "default", second)
    assert e.value.status == 429
    st = json.loads(e.value.body or "")
    assert st["reason"] == "TooManyRequests"
    assert st["message"] == "Cannot evict pod as it would violate the pod's disruption budget."
    assert st["details"]["causes"] == [
        {
            "reason": "DisruptionBudget",
            "message": "The disruption budget keep-two needs 1 healthy pods and has 1 currently",
        }
    ]
    wrong = client.V1Eviction(metadata=client.V1ObjectMeta(name="other", namespace="default"))
    with pytest.raises(client.ApiException) as e:
        core.create_namespaced_pod_eviction(pods[1], "default", wrong)
    assert e.value.status == 400
    assert json.loads(e.value.body or "")["message"] == "name in URL does not match name in Eviction object"
    api.close()
