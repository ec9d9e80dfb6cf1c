"""Services that work: kube-proxy (proxy.py) and cluster DNS (dns.py) in a real sandbox.

Real runtimed + runc, a lab-base sandbox with ``services: ["kubernetes"]``, the real kubectl
inside it, pods on the sandbox's own engine (busybox httpd, python for the in-cluster API
call). Everything a student does in module 5: Services by short name, FQDN and ClusterIP
from a pod, ClusterIP and NodePort from the sandbox's terminal, a Service without ready
pods, scaling, a headless Service and StatefulSet DNS names, SRV for a named port, the
pods' resolv.conf and Service variables, the API server through the ``kubernetes``
Service, and isolation from another sandbox's cluster.
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
    "10.237.0.0/20",
    "--bridge",
    "kltestsv",
    "--cgroup-parent",
    "kubelab-testsv",
    "--uid-start",
    str(3_900_000_000),
]

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]

MANIFESTS = """
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: httpd
        image: busybox:1.35
        command: [sh, -c, "mkdir -p /www && hostname > /www/hostname && exec httpd -f -p 8080 -h /www"]
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http, nodePort: 30080}]
---
apiVersion: v1
kind: Service
metadata: {name: empty, namespace: shop}
spec:
  selector: {app: nothing-has-this-label}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{name: pg, port: 5432}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: shop}
spec:
  serviceName: db
  replicas: 2
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers:
      - {name: db, image: busybox:1.35, command: [sleep, "3600"]}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: shop}
spec:
  containers:
  - {name: client, image: busybox:1.35, command: [sleep, "3600"]}
"""

SETUP = f"""
set -e
cat >/tmp/m.yaml <<'EOF'
{MANIFESTS}
EOF
kubectl apply -f /tmp/m.yaml >/dev/null
kubectl -n shop rollout status deploy/web --timeout=120s >/dev/null
kubectl -n shop rollout status sts/db --timeout=120s >/dev/null
kubectl -n shop wait --for=condition=Ready pod/client --timeout=120s >/dev/null
"""


@pytest.fixture(scope="module")
def daemon() -> Iterator[RealDaemon]:
    with lab_daemon("rtsv-", HOST_RESOURCES) as d:
        yield d


@pytest.fixture(scope="module")
def box(daemon: RealDaemon) -> Iterator[dict[str, Any]]:
    with lab_box(daemon, SETUP, timeout=240) as b:
        yield b


def in_client(daemon: RealDaemon, sid: str, cmd: str, timeout: float = 90) -> tuple[int, str]:
    """``cmd`` run by sh in the shop/client pod (kubectl exec from the sandbox's terminal)."""
    return run(daemon, sid, f"kubectl -n shop exec client -- sh -c {_quote(cmd)}", timeout)


def in_pod(daemon: RealDaemon, sid: str, name: str, cmd: str, image: str = "busybox:1.35", ns: str = "shop") -> str:
    """The logs of a one-shot pod of namespace ``ns`` running ``cmd`` (``kubectl run
    --restart=Never`` as a student does). Never ``wget -T``: Debian's busybox-static 1.35
    wget segfaults with it (outside any sandbox too); ``timeout`` bounds a wget instead."""
    script = f"""
kubectl -n {ns} run {name} --image={image} --restart=Never --command -- sh -c {_quote(cmd)} >/dev/null || exit 9
for i in $(seq 240); do
  case "$(kubectl -n {ns} get pod {name} -o jsonpath='{{.status.phase}}')" in Succeeded|Failed) break;; esac
  sleep 0.5
done
kubectl -n {ns} logs {name}
kubectl -n {ns} delete pod {name} --wait=false >/dev/null
"""
    code, out = run(daemon, sid, script, timeout=150)
    assert code == 0, out
    return out


def _quote(s: str) -> str:
    return "'" + s.replace("'", "'\"'\"'") + "'"


def web_pods(daemon: RealDaemon, sid: str) -> set[str]:
    code, out = run(daemon, sid, "kubectl -n shop get pods -l app=web -o name")
    assert code == 0, out
    return {line.removeprefix("pod/") for line in out.split()}


def test_clusterip_by_name_fqdn_and_ip_reaches_both_pods(daemon: RealDaemon, box: dict[str, Any]) -> None:
    sid = box["id"]
    pods = web_pods(daemon, sid)
    assert len(pods) == 2
    code, ip = run(daemon, sid, "kubectl -n shop get svc web -o jsonpath='{.spec.clusterIP}'")
    assert code == 0 and ip.startswith("10.96."), ip
    targets = f"web web.shop.svc.cluster.local {ip}"
    loop = f"for i in $(seq 20); do for t in {targets}; do echo $t=$(wget -qO- http://$t/hostname); done; done"
    out = in_pod(daemon, sid, "fetch", loop)
    got: dict[str, set[str]] = {}
    for line in out.split():
        target, _, hostname = line.partition("=")
        got.setdefault(target, set()).add(hostname)
    assert got == {"web": pods, "web.shop.svc.cluster.local": pods, ip: pods}, out
    # the sandbox's own terminal: the ClusterIP, and the NodePort on localhost and on its address
    for url in (f"http://{ip}/hostname", "http://localhost:30080/hostname", f"http://{box['ip']}:30080/hostname"):
        code, out = run(daemon, sid, f"for i in $(seq 30); do curl -sS -m 5 {url}; done")
        assert code == 0, out
        assert set(out.split()) == pods, (url, out)


def test_service_without_ready_pods_refuses_and_scaling_updates_the_rules(
    daemon: RealDaemon, box: dict[str, Any]
) -> None:
    sid = box["id"]
    out = in_pod(daemon, sid, "refused", "timeout 20 wget -qO- http://empty/; echo rc=$?")
    assert "Connection refused" in out and "rc=1" in out, out
    code, out = run(
        daemon, sid, "curl -sS -m 20 http://$(kubectl -n shop get svc empty -o jsonpath='{.spec.clusterIP}')/"
    )
    assert code == 7 and "Failed to connect" in out, out  # a TCP reset, not a 20 s time-out
    script = """
set -e
kubectl -n shop scale deploy/web --replicas=0 >/dev/null
while kubectl -n shop get pods -l app=web -o name | grep -q .; do sleep 0.5; done
if curl -sS -m 20 http://localhost:30080/hostname; then exit 3; fi
kubectl -n shop scale deploy/web --replicas=2 >/dev/null
kubectl -n shop rollout status deploy/web --timeout=120s >/dev/null
# the proxy resyncs right after the endpoints change (kube-proxy lags a little too)
for i in $(seq 50); do curl -s -m 5 http://localhost:30080/hostname >/dev/null && break; sleep 0.2; done
for i in $(seq 30); do curl -sS -m 5 http://localhost:30080/hostname; done
"""
    code, out = run(daemon, sid, script, timeout=180)
    assert code == 0, out
    assert "Failed to connect" in out, out
    assert {line for line in out.split() if line.startswith("web-")} == web_pods(daemon, sid)


def test_dns_headless_statefulset_srv_nxdomain_and_resolv_conf(daemon: RealDaemon, box: dict[str, Any]) -> None:
    sid = box["id"]
    jsonpath = "{range .items[*]}{.metadata.name}={.status.podIP} {end}"
    code, out = run(daemon, sid, f"kubectl -n shop get pods -l app=db -o jsonpath='{jsonpath}'")
    assert code == 0, out
    db = dict(kv.split("=") for kv in out.split())
    assert set(db) == {"db-0", "db-1"}
    code, out = in_client(daemon, sid, "nslookup db.shop.svc.cluster.local")
    assert code == 0, out
    assert {line.split()[-1] for line in out.splitlines() if line.startswith("Address: ")} == set(db.values()), out
    # a StatefulSet pod's own name (busybox nslookup applies the search list to dot-less names only)
    code, out = in_client(daemon, sid, "nslookup db-1.db.shop.svc.cluster.local")
    assert code == 0 and f"Address: {db['db-1']}" in out, out
    code, out = in_client(daemon, sid, "nslookup nothing-here.shop.svc.cluster.local")
    assert code != 0 and "NXDOMAIN" in out, out
    code, out = in_client(daemon, sid, "nslookup -type=srv _http._tcp.web.shop.svc.cluster.local")
    assert code == 0 and "service = 0 100 80 web.shop.svc.cluster.local" in out, out
    code, out = in_client(daemon, sid, "nslookup -type=srv _pg._tcp.db.shop.svc.cluster.local")
    assert code == 0, out
    assert "5432 db-0.db.shop.svc.cluster.local" in out and "5432 db-1.db.shop.svc.cluster.local" in out, out
    code, out = in_client(daemon, sid, "cat /etc/resolv.conf; env | sort")
    assert code == 0, out
    lines = out.splitlines()
    assert "nameserver 10.96.0.10" in lines, out
    assert "search shop.svc.cluster.local svc.cluster.local cluster.local" in lines, out
    assert "options ndots:5" in lines, out
    assert "KUBERNETES_SERVICE_HOST=10.96.0.1" in lines and "KUBERNETES_SERVICE_PORT=443" in lines, out
    # the client started after the web Service existed: its variables are set
    assert "WEB_SERVICE_PORT_HTTP=80" in lines and "WEB_PORT_80_TCP_PORT=80" in lines, out
    assert "DB_SERVICE_HOST" not in out, out  # headless: no variables, as on a real cluster
    code, out = run(daemon, sid, "kubectl -n kube-system get svc kube-dns -o jsonpath='{.spec.clusterIP}'")
    assert code == 0 and out == "10.96.0.10", out


CUSTOM_DNS_POD = """
apiVersion: v1
kind: Pod
metadata: {name: custom-dns, namespace: shop}
spec:
  restartPolicy: Never
  dnsPolicy: "None"
  dnsConfig:
    nameservers: [10.96.0.10]
    searches: [example.internal]
    options: [{name: ndots, value: "2"}, {name: edns0}]
  containers: [{name: c, image: busybox:1.35, command: [cat, /etc/resolv.conf]}]
"""


def test_dns_policy_none_with_dns_config_and_docker_run_dns(daemon: RealDaemon, box: dict[str, Any]) -> None:
    sid = box["id"]
    script = f"""
set -e
cat <<'YAML' | kubectl apply -f - >/dev/null
{CUSTOM_DNS_POD}
YAML
kubectl -n shop wait --for=jsonpath='{{.status.phase}}'=Succeeded pod/custom-dns --timeout=60s >/dev/null
kubectl -n shop logs custom-dns
echo ---
docker run --rm --dns 10.96.0.10 --dns-search shop.svc.cluster.local --dns-option ndots:5 busybox:1.35 \\
  cat /etc/resolv.conf
"""
    code, out = run(daemon, sid, script)
    assert code == 0, out
    pod, docker = (part.strip().splitlines() for part in out.split("---"))
    assert [ln for ln in pod if not ln.startswith("#")] == [
        "nameserver 10.96.0.10",
        "search example.internal",
        "options ndots:2 edns0",
    ], out
    assert [ln for ln in docker if not ln.startswith("#")] == [
        "nameserver 10.96.0.10",
        "search shop.svc.cluster.local",
        "options ndots:5",
    ], out


_IN_CLUSTER = """
import json, os, ssl, urllib.request
d = "/var/run/secrets/kubernetes.io/serviceaccount"
ctx = ssl.create_default_context(cafile=d + "/ca.crt")
host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
for url in (f"https://{host}:{port}", "https://kubernetes.default.svc"):
    req = urllib.request.Request(url + "/api/v1/namespaces/shop/pods",
                                 headers={"Authorization": "Bearer " + open(d + "/token").read()})
    items = json.load(urllib.request.urlopen(req, context=ctx, timeout=10))["items"]
    print(sorted(p["metadata"]["name"] for p in items if p["metadata"]["name"] == "client"))
"""


def test_pod_reaches_the_api_server_with_in_cluster_config(daemon: RealDaemon, box: dict[str, Any]) -> None:
    sid = box["id"]
    code, out = run(
        daemon, sid, "kubectl -n shop create rolebinding sa-view --clusterrole=view --serviceaccount=shop:default"
    )
    assert code == 0, out
    out = in_pod(daemon, sid, "api", f"python3 -c {_quote(_IN_CLUSTER)}", image="python:3.11-slim")
    assert out.splitlines() == ["['client']", "['client']"], out


def test_another_sandbox_cannot_reach_this_sandboxs_services(daemon: RealDaemon, box: dict[str, Any]) -> None:
    sid = box["id"]
    code, ip = run(daemon, sid, "kubectl -n shop get svc web -o jsonpath='{.spec.clusterIP}'")
    assert code == 0, ip
    with Client(daemon.socket, timeout=60) as c:
        other = c.create_sandbox({"image": "lab-base", "services": ["kubernetes"]})
    try:
        cmd = f"timeout 5 wget -qO- http://{ip}/hostname || echo wget=failed; "
        cmd += "nslookup web.shop.svc.cluster.local; echo dns=$?"
        out = in_pod(daemon, other["id"], "probe", cmd, ns="default")
        assert "wget=failed" in out and "web-" not in out, out  # nothing of the first sandbox answers
        assert "NXDOMAIN" in out and "dns=1" in out, out  # its own cluster DNS knows no shop/web
        code, out = run(daemon, other["id"], f"curl -sS -m 3 http://{box['ip']}:30080/hostname", timeout=30)
        assert code != 0 and "web-" not in out, out
    finally:
        with Client(daemon.socket, timeout=60) as c, contextlib.suppress(errors.RuntimeError):
            c.remove_sandbox(other["id"])


def test_services_and_dns_come_back_after_a_runtimed_restart(daemon: RealDaemon, box: dict[str, Any]) -> None:
    """The DNS sockets die with runtimed and the next one re-opens them (the address stays on
    the sandbox's ``lo``); the proxy's table outlives it and is taken over."""
    sid = box["id"]
    assert daemon.stop() == 0
    daemon.start()
    out = in_pod(daemon, sid, "after-restart", "wget -qO- http://web.shop.svc.cluster.local/hostname")
    assert out.strip() in web_pods(daemon, sid), out
