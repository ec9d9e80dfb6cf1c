"""A three-node lab cluster in a real sandbox: runtimed + runc, ``kube_nodes: 3``, the real
kubectl inside it, pods on the sandbox's engine. The nodes are views of the one sandbox, so
pods bound to different nodes still reach each other and Services; one kubelet runs them all.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest

from runtime import errors
from runtime.client import Client
from tests.runtime.daemon_helpers import RealDaemon
from tests.runtime.labbox import lab_daemon, run

HOST_RESOURCES = [
    "--subnet",
    "10.235.0.0/20",
    "--bridge",
    "kltestmn",
    "--cgroup-parent",
    "kubelab-testmn",
    "--uid-start",
    str(3_800_000_000),
]

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]

SETUP = """
set -e
cat >/tmp/m.yaml <<'EOF'
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - labelSelector: {matchLabels: {app: web}}
            topologyKey: kubernetes.io/hostname
      containers:
      - name: httpd
        image: busybox:1.35
        command: [sh, -c, "mkdir -p /www && echo $NODE > /www/node && exec httpd -f -p 8080 -h /www"]
        env: [{name: NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}]
        ports: [{containerPort: 8080}]
        readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      containers: [{name: a, image: busybox:1.35, command: [sleep, "3600"]}]
EOF
kubectl apply -f /tmp/m.yaml >/dev/null
kubectl rollout status deploy/web --timeout=120s >/dev/null
kubectl rollout status ds/agent --timeout=120s >/dev/null
"""


@pytest.fixture(scope="module")
def daemon() -> Iterator[RealDaemon]:
    with lab_daemon("rtmn-", HOST_RESOURCES) as d:
        yield d


@pytest.fixture(scope="module")
def box(daemon: RealDaemon) -> Iterator[dict[str, Any]]:
    with Client(daemon.socket, timeout=60) as c:
        b = c.create_sandbox({"image": "lab-base", "services": ["kubernetes"], "kube_nodes": 3})
    try:
        code, out = run(daemon, b["id"], SETUP, timeout=240)
        assert code == 0, out
        yield b
    finally:
        with Client(daemon.socket, timeout=60) as c, contextlib.suppress(errors.RuntimeError):
            c.remove_sandbox(b["id"])


def test_the_sandbox_cluster_has_three_nodes_and_runs_pods_on_both_workers(
    daemon: RealDaemon, box: dict[str, Any]
) -> None:
    sid = box["id"]
    code, out = run(daemon, sid, "kubectl get nodes --no-headers -o custom-columns=N:.metadata.name")
    assert code == 0, out
    assert out.split() == [f"{sid}-control-plane", f"{sid}-worker", f"{sid}-worker2"]
    # each node shows a third of the sandbox's limits (the defaults: 1 cpu, 256 MiB, 1 GiB disk)
    code, out = run(daemon, sid, "kubectl get nodes -o jsonpath='{range .items[*]}{.status.allocatable}{\"\\n\"}{end}'")
    assert code == 0, out
    shares = [json.loads(line) for line in out.splitlines() if line.strip()]
    third = {"cpu": "333m", "ephemeral-storage": f"{2**30 // 3 // 1024}Ki", "memory": f"{2**28 // 3 // 1024}Ki"}
    assert shares == [{**third, "pods": "110"}] * 3, out
    code, out = run(
        daemon,
        sid,
        "kubectl get pods -o jsonpath='{range .items[*]}{.metadata.labels.app} {.spec.nodeName} "
        '{.status.phase}{"\\n"}{end}\'',
    )
    assert code == 0, out
    rows = sorted(tuple(line.split()) for line in out.splitlines() if line.strip())
    workers = [f"{sid}-worker", f"{sid}-worker2"]
    assert rows == sorted([("agent", w, "Running") for w in workers] + [("web", w, "Running") for w in workers])


def test_pods_on_different_nodes_reach_each_other_and_the_service(daemon: RealDaemon, box: dict[str, Any]) -> None:
    sid = box["id"]
    # a client pinned to the first worker fetches from each web pod (one per node) and the Service
    script = f"""
set -e
kubectl run client --image=busybox:1.35 --restart=Never \\
  --overrides='{{"spec": {{"nodeSelector": {{"kubernetes.io/hostname": "{sid}-worker"}}}}}}' \\
  --command -- sleep 3600 >/dev/null
kubectl wait --for=condition=Ready pod/client --timeout=120s >/dev/null
for ip in $(kubectl get pods -l app=web -o jsonpath='{{.items[*].status.podIP}}'); do
  echo "pod $(kubectl exec client -- timeout 20 wget -qO- http://$ip:8080/node)"
done
for i in $(seq 20); do echo "svc $(kubectl exec client -- timeout 20 wget -qO- http://web/node)"; done
echo "client on $(kubectl get pod client -o jsonpath='{{.spec.nodeName}}')"
"""
    code, out = run(daemon, sid, script, timeout=200)
    assert code == 0, out
    lines = out.split("\n")
    workers = {f"{sid}-worker", f"{sid}-worker2"}
    assert {line.split()[1] for line in lines if line.startswith("pod ")} == workers, out
    assert {line.split()[1] for line in lines if line.startswith("svc ")} == workers, out
    assert f"client on {sid}-worker" in out


def test_runtimed_refuses_a_node_count_beyond_the_bound(daemon: RealDaemon) -> None:
    with Client(daemon.socket, timeout=60) as c:
        before = {b["id"] for b in c.list_sandboxes()}
        with pytest.raises(errors.BadRequest) as caught:
            c.create_sandbox({"image": "lab-base", "services": ["kubernetes"], "kube_nodes": 1000})
        assert "kube_nodes: must be an integer in [1, 5], got 1000" in str(caught.value)
        assert {b["id"] for b in c.list_sandboxes()} == before
