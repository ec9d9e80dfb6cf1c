"""``kubectl port-forward`` inside a sandbox against its lab cluster (portforward.py).

Real runtimed + runc, a lab-base sandbox with ``services: ["kubernetes"]``, the real kubectl
1.37 in it (WebSocket-tunnelled SPDY, ``SPDY/3.1+portforward.k8s.io``), pods on the
sandbox's engine. What the helm chart's NOTES and tutorials do: forward a local port to a
pod or a Service's pod, several connections, a large transfer intact, a pod listening on
its loopback only (the real kubelet dials the pod's own 127.0.0.1), and the errors kubectl
prints. The attacks: nothing but the pod's own ports is reachable, not the sandbox's
services (its API server listener), nor another sandbox's pods.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

from runtime import errors
from runtime.client import Client
from tests.runtime.daemon_helpers import RealDaemon
from tests.runtime.labbox import lab_box, lab_daemon, run

HOST_RESOURCES = [
    "--subnet",
    "10.234.0.0/20",
    "--bridge",
    "kltestpf",
    "--cgroup-parent",
    "kubelab-testpf",
    "--uid-start",
    str(3_950_000_000),
]

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]

MANIFESTS = """
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  containers:
  - name: httpd
    image: busybox:1.35
    command:
    - sh
    - -c
    - mkdir -p /www && hostname > /www/hostname && head -c 3000000 /dev/urandom > /www/big &&
      exec httpd -f -p 8080 -h /www
    ports: [{name: http, containerPort: 8080}]
    readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
---
apiVersion: v1
kind: Pod
metadata: {name: private}
spec:
  containers:
  - name: httpd
    image: busybox:1.35
    command:
    - sh
    - -c
    - mkdir -p /www && echo loopback-only > /www/index.html && exec httpd -f -p 127.0.0.1:9090 -h /www
"""

SETUP = (
    "set -e\n"
    "cat >/tmp/m.yaml <<'YAML'\n" + MANIFESTS + "\nYAML\n"
    "kubectl apply -f /tmp/m.yaml >/dev/null\n"
    "kubectl wait --for=condition=Ready pod/web pod/private --timeout=120s >/dev/null\n"
)


@pytest.fixture(scope="module")
def daemon() -> Iterator[RealDaemon]:
    with lab_daemon("rtpf-", HOST_RESOURCES) as d:
        yield d


@pytest.fixture(scope="module")
def box(daemon: RealDaemon) -> Iterator[dict[str, Any]]:
    with lab_box(daemon, SETUP, timeout=240) as b:
        yield b


def forwarding(target: str, ports: str, then: str) -> str:
    """A script: ``kubectl port-forward TARGET PORTS`` in the background (its output in a
    log), ``then`` once it listens, then the forwarder stopped and its log shown."""
    local = ports.split(":")[0]
    return (
        f"kubectl port-forward {target} {ports} >/tmp/pf{local}.log 2>&1 &\n"
        "pf=$!\n"
        f'for i in $(seq 100); do grep -q "Forwarding from 127.0.0.1:{local}" /tmp/pf{local}.log && break\n'
        "sleep 0.1; done\n"
        f"{then}\n"
        "status=$?\n"
        "kill $pf; wait $pf 2>/dev/null\n"
        f'echo "--- kubectl:"; cat /tmp/pf{local}.log\n'
        "exit $status\n"
    )


def test_a_pod_port_is_forwarded_to_the_terminal(daemon: RealDaemon, box: dict[str, Any]) -> None:
    script = forwarding("pod/web", "18080:8080", "curl -sS -m 10 http://127.0.0.1:18080/hostname")
    code, out = run(daemon, box["id"], script)
    assert code == 0, out
    assert out.startswith("web\n"), out
    assert "Forwarding from 127.0.0.1:18080 -> 8080" in out and "Handling connection for 18080" in out


def test_a_service_forwards_to_its_pod_over_many_connections(daemon: RealDaemon, box: dict[str, Any]) -> None:
    # (a bare `wait` would wait for the forwarder too)
    loop = 'for i in $(seq 8); do curl -sS -m 10 http://127.0.0.1:18081/hostname & c="$c $!"; done; wait $c'
    code, out = run(daemon, box["id"], forwarding("svc/web", "18081:80", loop))
    assert code == 0, out
    assert out.split("--- kubectl:")[0].split() == ["web"] * 8, out


def test_a_large_transfer_arrives_intact(daemon: RealDaemon, box: dict[str, Any]) -> None:
    code, want = run(daemon, box["id"], "kubectl exec web -- sha256sum /www/big")
    assert code == 0, want
    fetch = "curl -sS -m 60 http://127.0.0.1:18082/big | sha256sum"
    code, out = run(daemon, box["id"], forwarding("pod/web", "18082:8080", fetch))
    assert code == 0, out
    assert out.split()[0] == want.split()[0], out


def test_the_pods_own_loopback_is_reached_as_a_real_kubelet_does(daemon: RealDaemon, box: dict[str, Any]) -> None:
    script = forwarding("pod/private", "19090:9090", "curl -sS -m 10 http://127.0.0.1:19090/")
    code, out = run(daemon, box["id"], script)
    assert code == 0, out
    assert out.startswith("loopback-only\n"), out


def test_a_port_nothing_listens_on_is_an_error_kubectl_prints(daemon: RealDaemon, box: dict[str, Any]) -> None:
    script = forwarding("pod/web", "18083:7777", "curl -sS -m 10 http://127.0.0.1:18083/")
    code, out = run(daemon, box["id"], script)
    assert code != 0, out
    assert "error forwarding port 7777 to pod web, uid " in out and "connection refused" in out, out


def test_the_sandboxs_own_services_are_not_reachable_through_a_pod(daemon: RealDaemon, box: dict[str, Any]) -> None:
    # the sandbox's API server listens on its 127.0.0.1:6443: a pod's loopback is not the sandbox's
    code, out = run(daemon, box["id"], "curl -sk -m 10 https://127.0.0.1:6443/version && echo REACHED")
    assert "REACHED" in out, out  # it is there, from the terminal
    script = forwarding("pod/web", "18084:6443", "curl -sk -m 10 https://127.0.0.1:18084/version && echo REACHED")
    code, out = run(daemon, box["id"], script)
    assert code != 0 and "REACHED" not in out, out
    assert "connection refused" in out, out


def test_the_hosts_listeners_are_not_reachable_through_a_pod(daemon: RealDaemon, box: dict[str, Any]) -> None:
    # runtimed's host-loopback listener of this very cluster (the graders' kubeconfig): a port
    # that is open on the host's 127.0.0.1, and closed on the pod's
    import yaml

    with Client(daemon.socket, timeout=60) as c:
        server = yaml.safe_load(c.kubeconfig(box["id"]))["clusters"][0]["cluster"]["server"]
    host_port = int(server.rsplit(":", 1)[1].split("/")[0])
    assert server.startswith("https://127.0.0.1:"), server
    script = forwarding(
        "pod/web", f"18086:{host_port}", "curl -sk -m 10 https://127.0.0.1:18086/version && echo REACHED"
    )
    code, out = run(daemon, box["id"], script)
    assert code != 0 and "REACHED" not in out, out
    assert f"dial tcp4 127.0.0.1:{host_port}: connect: connection refused" in out, out


def test_another_sandboxs_pods_cannot_be_forwarded(daemon: RealDaemon, box: dict[str, Any]) -> None:
    with Client(daemon.socket, timeout=60) as c:
        other = c.create_sandbox({"image": "lab-base", "services": ["kubernetes"]})
    try:
        # the other cluster has no pod "web": its API answers for its own pods only
        code, out = run(daemon, other["id"], "kubectl port-forward pod/web 18085:8080")
        assert code != 0 and 'pods "web" not found' in out, out
    finally:
        with Client(daemon.socket, timeout=60) as c, contextlib.suppress(errors.RuntimeError):
            c.remove_sandbox(other["id"])


def test_the_python_client_forwards_over_the_channel_protocol(daemon: RealDaemon, box: dict[str, Any]) -> None:
    # kubernetes.stream.portforward: WebSocket v4.channel.k8s.io with ?ports=, as in its e2e tests
    import yaml
    from kubernetes import client, config
    from kubernetes.stream import portforward

    with Client(daemon.socket, timeout=60) as c:
        kubeconfig = c.kubeconfig(box["id"])
    api = config.new_client_from_config_dict(yaml.safe_load(kubeconfig))
    core = client.CoreV1Api(api)
    pf = portforward(core.connect_get_namespaced_pod_portforward, "web", "default", ports="8080,7777")
    try:
        sock = pf.socket(8080)
        sock.setblocking(True)
        sock.sendall(b"GET /hostname HTTP/1.0\r\nHost: web\r\n\r\n")
        reply = b""
        while chunk := sock.recv(4096):
            reply += chunk
        assert reply.startswith(b"HTTP/1.1 200 OK") and reply.endswith(b"\r\n\r\nweb\n"), reply
        assert pf.error(8080) is None
        refused = pf.error(7777)
        assert refused is not None and "connection refused" in refused, refused
    finally:
        pf.close()
        api.close()


def test_a_helm_created_chart_lives_through_its_lifecycle_and_its_notes_work(
    daemon: RealDaemon, box: dict[str, Any]
) -> None:
    """The real helm v4 of lab-base against the sandbox's cluster, pods running: ``helm
    create``'s chart (nginx at the catalog's tag), install --wait, the NOTES' port-forward
    commands run as printed, helm test, upgrade, rollback, uninstall, then the same name again."""
    sid, ns = box["id"], "helm"
    helm = f"helm -n {ns}"
    code, out = run(
        daemon,
        sid,
        f"cd /root && helm create web >/dev/null && helm lint web && "
        f"{helm} install demo web --create-namespace --set image.tag=1.22 --wait --timeout 180s",
        timeout=240,
    )
    assert code == 0, out
    assert "STATUS: deployed" in out and "REVISION: 1" in out, out
    notes = [line.strip() for line in out.splitlines() if line.strip().startswith(("export ", "kubectl "))]
    assert [n.split()[0] for n in notes] == ["export", "export", "kubectl"] and "port-forward" in notes[2], out
    follow = (
        f"{notes[0]}\n{notes[1]}\n{notes[2]} >/tmp/pfh.log 2>&1 &\n"
        "pf=$!\n"
        'for i in $(seq 100); do grep -q "Forwarding from 127.0.0.1:8080" /tmp/pfh.log && break\n'
        "sleep 0.1; done\n"
        "curl -sS -m 10 http://127.0.0.1:8080/\n"
        "status=$?\n"
        "kill $pf; wait $pf 2>/dev/null\n"
        "cat /tmp/pfh.log\n"
        "exit $status\n"
    )
    code, out = run(daemon, sid, follow)
    assert code == 0, out
    assert "Welcome to nginx!" in out, out

    code, out = run(daemon, sid, f"{helm} test demo", timeout=150)
    assert code == 0 and "Phase:          Succeeded" in out, out

    steps = (
        f"{helm} upgrade demo /root/web --set image.tag=1.22 --set replicaCount=2 --wait --timeout 180s",
        f"{helm} rollback demo 1 --wait --timeout 180s",
    )
    for step in steps:
        code, out = run(daemon, sid, step, timeout=240)
        assert code == 0, out
    code, out = run(
        daemon, sid, f"{helm} history demo && kubectl -n {ns} get deploy demo-web -o jsonpath='{{.spec.replicas}}'"
    )
    assert code == 0 and "Rollback to 1" in out and out.endswith("\n1"), out

    code, out = run(daemon, sid, f"{helm} uninstall demo --wait && kubectl -n {ns} get secrets,deploy,svc -o name")
    assert code == 0 and 'release "demo" uninstalled' in out, out
    assert "sh.helm.release" not in out and "deployment.apps/" not in out, out

    code, out = run(
        daemon, sid, f"{helm} install demo /root/web --set image.tag=1.22 --wait --timeout 180s", timeout=240
    )
    assert code == 0 and "REVISION: 1" in out, out
    code, out = run(daemon, sid, f"{helm} list -q && kubectl -n {ns} get secrets -l owner=helm -o name")
    assert code == 0 and out.split() == ["demo", "secret/sh.helm.release.v1.demo.v1"], out
