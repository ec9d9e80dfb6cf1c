"""NetworkPolicies cannot cross the sandbox boundary, and the connectivity probe is no way in.

Two students, A and B, each with a lab cluster in one real runtimed. B serves on a NodePort
of its sandbox address (proved reachable from B's own terminal). A holds cluster-admin and
writes the most permissive policies there are (``ipBlock 0.0.0.0/0`` both ways, policies
naming B's sandbox address and the host's gateway): A's pods still reach nothing outside A's
sandbox, because those policies are rules in A's own network namespace, and the walls are
the host's (runtime/sandbox/network.py). The probe runtimed makes for graders
(``POST /v1/sandboxes/{id}/kube/connectivity``) is attacked too: another sandbox's token,
a token without ``exec``, and hostile names, addresses, ports and timeouts.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
from collections.abc import Iterator
from typing import Any

import pytest

from runtime import errors
from runtime.client import Client
from tests.runtime.conftest_daemon import private_daemon, real_sandboxes_available
from tests.runtime.daemon_helpers import RealDaemon
from tests.runtime.test_kube_service import IMAGES, _has_lab_base

SUBNET = "10.235.0.0/20"
HOST_RESOURCES = [
    "--subnet",
    SUBNET,
    "--bridge",
    "kltestnps",
    "--cgroup-parent",
    "kubelab-testnps",
    "--uid-start",
    str(4_100_000_000),
]
GATEWAY = str(ipaddress.ip_network(SUBNET).network_address + 1)

pytestmark = [pytest.mark.root, pytest.mark.timeout(600)]

SETUP = """
set -e
kubectl create deployment web --image=busybox:1.35 --port=8080 -- httpd -f -p 8080 -h /etc >/dev/null
kubectl create service nodeport web --tcp=80:8080 --node-port=30080 >/dev/null
kubectl run client --image=busybox:1.35 --labels=app=client -- sleep 86400 >/dev/null
kubectl rollout status deployment/web --timeout=180s >/dev/null
kubectl wait --for=condition=Ready pod/client --timeout=180s >/dev/null
"""


def run(daemon: RealDaemon, sid: str, script: str, timeout: float = 240) -> tuple[int, str]:
    with Client(daemon.socket, timeout=timeout + 30) as c:
        r = c.exec(sid, ["bash", "-c", script], timeout=timeout)
    return r.exit_code or 0, r.stdout_text + r.stderr_text


@pytest.fixture(scope="module")
def daemon() -> Iterator[RealDaemon]:
    why = real_sandboxes_available()
    if why:
        pytest.skip(why)
    if not _has_lab_base():
        pytest.skip("the lab-base image is not built (make images)")
    with private_daemon("rtnps-", HOST_RESOURCES, IMAGES) as d:
        yield d


@pytest.fixture(scope="module")
def boxes(daemon: RealDaemon) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    made: list[dict[str, Any]] = []
    try:
        with Client(daemon.socket, timeout=60) as c:
            for _ in range(2):
                made.append(c.create_sandbox({"image": "lab-base", "services": ["kubernetes"]}))
        for box in made:
            code, out = run(daemon, box["id"], SETUP)
            assert code == 0, out
        yield made[0], made[1]
    finally:
        with Client(daemon.socket, timeout=60) as c:
            for box in made:
                with contextlib.suppress(errors.RuntimeError):
                    c.remove_sandbox(box["id"])


def web_pod(daemon: RealDaemon, sid: str) -> str:
    code, out = run(daemon, sid, "kubectl get pods -l app=web -o jsonpath='{.items[0].metadata.name}'")
    assert code == 0 and out, out
    return out.strip()


def probe(daemon: RealDaemon, sid: str, pod: str, host: str, port: int, protocol: str = "TCP") -> str:
    with Client(daemon.socket, timeout=60) as c:
        got = c.kube_connectivity(sid, namespace="default", pod=pod, host=host, port=port, protocol=protocol)
    return got["result"]


OPEN_EVERYTHING = [
    {"podSelector": {}, "policyTypes": ["Ingress", "Egress"], "ingress": [{}], "egress": [{}]},
    {
        "podSelector": {},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [{"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}],
        "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}],
    },
]


def _policies(b_ip: str) -> str:
    specs = [
        *OPEN_EVERYTHING,
        {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [
                {"to": [{"ipBlock": {"cidr": f"{b_ip}/32"}}, {"ipBlock": {"cidr": f"{GATEWAY}/32"}}]},
                {"to": [{"ipBlock": {"cidr": SUBNET}}], "ports": [{"port": 1, "endPort": 65535}]},
            ],
        },
    ]
    docs = [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": f"open-{i}", "namespace": "default"},
            "spec": spec,
        }
        for i, spec in enumerate(specs)
    ]
    return "\n---\n".join(json.dumps(d) for d in docs)


def test_no_policy_opens_another_sandbox_or_the_host(
    daemon: RealDaemon, boxes: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    a, b = boxes
    pod = "client"
    # controls: B's NodePort answers B itself, and A's probe reaches A's own Service
    code, out = run(daemon, b["id"], f"curl -s -o /dev/null -w '%{{http_code}}' -m 5 http://{b['ip']}:30080/passwd")
    assert code == 0 and out == "200", out
    code, ip = run(daemon, a["id"], "kubectl get svc web -o jsonpath='{.spec.clusterIP}'")
    assert code == 0, ip
    assert probe(daemon, a["id"], pod, ip, 80) == "open"
    outside = [(b["ip"], 30080), (GATEWAY, 22), (GATEWAY, 53), (b["ip"], 6443)]
    for host, port in outside:
        assert probe(daemon, a["id"], pod, host, port) in ("timeout", "unreachable"), (host, port)
    code, out = run(daemon, a["id"], f"cat <<'EOF' | kubectl apply -f -\n{_policies(b['ip'])}\nEOF")
    assert code == 0, out
    code, out = run(daemon, a["id"], "kubectl get networkpolicy -o name")
    assert code == 0 and len(out.split()) == 3, out
    # the policies are in force (A's own Service through them), and nothing outside opened
    assert probe(daemon, a["id"], pod, ip, 80) == "open"
    for host, port in outside:
        assert probe(daemon, a["id"], pod, host, port) in ("timeout", "unreachable"), (host, port)
    assert probe(daemon, a["id"], pod, b["ip"], 30080, "UDP") in ("timeout", "unreachable")
    # the same from the pod's own wget (a real client inside the pod), bounded by timeout
    code, out = run(
        daemon, a["id"], f"kubectl exec {pod} -- timeout 5 wget -qO- http://{b['ip']}:30080/passwd; echo rc=$?"
    )
    assert "root:" not in out and "rc=0" not in out, out
    # and B's NodePort still answers B: A's policies changed nothing there
    code, out = run(daemon, b["id"], f"curl -s -o /dev/null -w '%{{http_code}}' -m 5 http://{b['ip']}:30080/passwd")
    assert code == 0 and out == "200", out


def test_the_probe_wants_this_sandboxs_exec_token(
    daemon: RealDaemon, boxes: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    a, b = boxes
    pod = web_pod(daemon, b["id"])
    with Client(daemon.socket, timeout=60) as admin:
        a_grader = admin.mint_token(a["id"], role="grader", ttl=600)
        b_web = admin.mint_token(b["id"], role="web", ttl=600)
    args = {"namespace": "default", "pod": pod, "host": "10.244.0.1", "port": 80}
    with Client(daemon.socket, token=a_grader, timeout=60) as c, pytest.raises(errors.Forbidden):
        c.kube_connectivity(b["id"], **args)  # type: ignore[arg-type]
    with Client(daemon.socket, token=b_web, timeout=60) as c, pytest.raises(errors.Forbidden):
        c.kube_connectivity(b["id"], **args)  # type: ignore[arg-type]
    # A's token on A's own path, naming B's pod: looked up among A's pods only, so not found
    assert pod != web_pod(daemon, a["id"])
    with Client(daemon.socket, token=a_grader, timeout=60) as c, pytest.raises(errors.Conflict, match="not running"):
        c.kube_connectivity(a["id"], **args)  # type: ignore[arg-type]


HOSTILE = [
    {"namespace": "../../../proc/1", "pod": "x"},
    {"namespace": "default", "pod": "web;reboot"},
    {"namespace": "default", "pod": "Web"},
    {"namespace": "default", "pod": "x" * 300},
    {"host": "localhost"},
    {"host": "10.0.0.1 -e"},
    {"host": "::1"},
    {"port": 0},
    {"port": 70000},
    {"port": "80"},
    {"port": True},
    {"protocol": "ICMP"},
    {"protocol": "tcp; ls"},
    {"timeout": 3600},
    {"timeout": 0},
    {"timeout": "1"},
]


@pytest.mark.parametrize("bad", HOSTILE, ids=lambda d: json.dumps(d)[:40])
def test_hostile_probe_arguments_are_refused(
    daemon: RealDaemon, boxes: tuple[dict[str, Any], dict[str, Any]], bad: dict[str, Any]
) -> None:
    a, _ = boxes
    args: dict[str, Any] = {
        "namespace": "default",
        "pod": web_pod(daemon, a["id"]),
        "host": "10.96.0.1",
        "port": 443,
        "protocol": "TCP",
        "timeout": 1.0,
    }
    # sent as a hostile caller sends it: the raw body, past the client's own typing
    with Client(daemon.socket, timeout=60) as c, pytest.raises(errors.BadRequest):
        c._request("POST", f"/v1/sandboxes/{a['id']}/kube/connectivity", json_body={**args, **bad})
