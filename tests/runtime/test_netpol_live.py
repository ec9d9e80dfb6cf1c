"""NetworkPolicies enforced (runtime/kube/node/netpol.py), proved with real traffic between pods.

Real runtimed + runc, a lab-base sandbox with ``services: ["kubernetes"]``, the real kubectl
inside it applying the policies a student writes, and python pods that serve TCP (8080 named
``http``, 9000, 9001, 9100) and UDP echo (5353 named ``echo``) and connect to each other from
their own network namespaces (``kubectl exec``). A probe's verdict is ``open`` (connected /
echoed), ``refused`` (a reset: reachable, nothing listens) or ``timeout`` (dropped: what a
NetworkPolicy does). Each rule kind is shown by a connection it opens next to one it keeps
closed under the same conditions, so a probe that never connects cannot pass.

A policy is enforced within a second of the write (the kubelet's sync hook), so tests wait
for the expected state (``converge``) rather than sleep.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from runtime import errors
from runtime.client import Client
from tests.runtime.conftest_daemon import private_daemon, real_sandboxes_available
from tests.runtime.daemon_helpers import RealDaemon
from tests.runtime.test_kube_service import IMAGES, _has_lab_base

HOST_RESOURCES = [
    "--subnet",
    "10.236.0.0/20",
    "--bridge",
    "kltestnp",
    "--cgroup-parent",
    "kubelab-testnp",
    "--uid-start",
    str(4_000_000_000),
]

pytestmark = [pytest.mark.root, pytest.mark.timeout(600)]

SERVER = """
import socket, threading
def tcp(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("", port)); s.listen(64)
    while True:
        c, _ = s.accept(); c.close()
def udp(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("", port))
    while True:
        d, a = s.recvfrom(512); s.sendto(d, a)
for p in (8080, 9000, 9001, 9100):
    threading.Thread(target=tcp, args=(p,), daemon=True).start()
udp(5353)
"""

PROBE = """
import json, socket, sys
def probe(host, port, proto):
    kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
    s = socket.socket(socket.AF_INET, kind); s.settimeout(1.5)
    try:
        s.connect((host, int(port)))
        if proto == "udp":
            s.send(b"ping"); s.recv(64)
        return "open"
    except ConnectionRefusedError:
        return "refused"
    except socket.timeout:
        return "timeout"
    except OSError as e:
        return "error " + str(e)
    finally:
        s.close()
def resolve(name):
    try:
        return socket.gethostbyname(name)
    except OSError:
        return "fail"
out = {}
for t in sys.argv[1:]:
    if t.startswith("dns:"):
        out[t] = resolve(t[4:])
    else:
        host, port, proto = t.split(":")
        out[t] = probe(host, port, proto)
print(json.dumps(out))
"""


def _pod(ns: str, name: str, labels: dict[str, str], http: int = 8080) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {
                "terminationGracePeriodSeconds": 0,
                "containers": [
                    {
                        "name": "srv",
                        "image": "python:3.11-slim",
                        "command": ["python3", "-u", "-c", SERVER],
                        "ports": [
                            {"name": "http", "containerPort": http},
                            {"name": "echo", "containerPort": 5353, "protocol": "UDP"},
                        ],
                        "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
                    }
                ],
            },
        }
    )


PODS = [
    ("prod", "web", {"app": "web"}, 8080),
    ("prod", "web-b", {"app": "web"}, 9000),  # its port named http is 9000
    ("prod", "client", {"app": "client"}, 8080),
    ("prod", "other", {"app": "other"}, 8080),
    ("dev", "client", {"app": "client"}, 8080),
]

SETUP = (
    "set -e\nkubectl create namespace prod >/dev/null\nkubectl create namespace dev >/dev/null\n"
    "kubectl label namespace dev team=dev >/dev/null\n"
    + "".join(f"cat <<'EOF' | kubectl apply -f - >/dev/null\n{_pod(*p)}\nEOF\n" for p in PODS)
    + "kubectl -n prod expose pod web --name web --port 80 --target-port http >/dev/null\n"
    "kubectl -n prod wait --for=condition=Ready pod --all --timeout=400s >/dev/null\n"
    "kubectl -n dev wait --for=condition=Ready pod --all --timeout=400s >/dev/null\n"
)


def run(daemon: RealDaemon, sid: str, script: str, timeout: float = 120) -> tuple[int, str]:
    with Client(daemon.socket, timeout=timeout + 30) as c:
        r = c.exec(sid, ["bash", "-c", script], timeout=timeout)
    return r.exit_code or 0, r.stdout_text + r.stderr_text


def ok(daemon: RealDaemon, sid: str, script: str) -> str:
    code, out = run(daemon, sid, script)
    assert code == 0, out
    return out


def _quote(s: str) -> str:
    return "'" + s.replace("'", "'\"'\"'") + "'"


@pytest.fixture(scope="module")
def daemon() -> Iterator[RealDaemon]:
    why = real_sandboxes_available()
    if why:
        pytest.skip(why)
    if not _has_lab_base():
        pytest.skip("the lab-base image is not built (make images)")
    with private_daemon("rtnp-", HOST_RESOURCES, IMAGES) as d:
        yield d


@pytest.fixture(scope="module")
def box(daemon: RealDaemon) -> Iterator[dict[str, Any]]:
    with Client(daemon.socket, timeout=60) as c:
        box = c.create_sandbox({"image": "lab-base", "services": ["kubernetes"]})
    try:
        code, out = run(daemon, box["id"], SETUP, timeout=420)
        if code != 0:
            _, pods = run(daemon, box["id"], "kubectl get pods -A -o wide; kubectl get events -A | tail -20")
            pytest.fail(f"setup failed ({code}): {out}\n{pods}")
        yield box
    finally:
        with Client(daemon.socket, timeout=60) as c, contextlib.suppress(errors.RuntimeError):
            c.remove_sandbox(box["id"])


class Lab:
    def __init__(self, daemon: RealDaemon, sid: str) -> None:
        self.daemon, self.sid = daemon, sid
        out = ok(
            daemon,
            sid,
            "kubectl get pods -A -o jsonpath='{range .items[*]}{.metadata.namespace}/{.metadata.name}="
            "{.status.podIP} {end}'; echo; kubectl -n prod get svc web -o jsonpath='{.spec.clusterIP}'",
        )
        pods, svc = out.strip().splitlines()
        self.ip = dict(kv.split("=") for kv in pods.split())
        self.svc = svc.strip()

    def sh(self, script: str) -> str:
        return ok(self.daemon, self.sid, script)

    def apply(self, manifest: str) -> None:
        self.sh(f"cat <<'EOF' | kubectl apply -f - >/dev/null\n{manifest}\nEOF")

    def probe(self, src: str, *targets: str) -> dict[str, str]:
        """From pod ``ns/name``: each target ``host:port:proto`` (a ``ns/name`` host is that
        pod's IP, ``svc`` the web Service's ClusterIP) or ``dns:<name>``."""
        argv = []
        for t in targets:
            if not t.startswith("dns:"):
                host, port, proto = t.split(":")
                host = self.svc if host == "svc" else self.ip.get(host, host)
                t = f"{host}:{port}:{proto}"
            argv.append(t)
        ns, name = src.split("/")
        cmd = f"kubectl -n {ns} exec {name} -- python3 -c {_quote(PROBE)} {' '.join(argv)}"
        code, out = run(self.daemon, self.sid, cmd, timeout=60)
        assert code == 0, out
        got = json.loads(out.strip().splitlines()[-1])
        return dict(zip(targets, got.values(), strict=True))

    def converge(self, src: str, want: dict[str, str], deadline: float = 20) -> None:
        """Probe until ``want`` is what the network does (a policy is applied within a
        second of its write; this waits for it, then asserts)."""
        end = time.monotonic() + deadline
        while True:
            got = self.probe(src, *want)
            if got == want or time.monotonic() > end:
                break
            time.sleep(0.5)
        assert got == want, f"from {src}: {got}"


@pytest.fixture
def lab(daemon: RealDaemon, box: dict[str, Any]) -> Iterator[Lab]:
    lab = Lab(daemon, box["id"])
    yield lab
    lab.sh(
        "kubectl delete networkpolicy --all -n prod >/dev/null; kubectl delete networkpolicy --all -n dev >/dev/null;"
        "kubectl label namespace dev team=dev --overwrite >/dev/null;"
        "kubectl -n prod label pod client app=client --overwrite >/dev/null"
    )


def netpol(name: str, ns: str, spec: dict[str, Any]) -> str:
    return json.dumps(
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": name, "namespace": ns}}
        | {"spec": spec}
    )


DENY_INGRESS = netpol("deny-ingress", "prod", {"podSelector": {}, "policyTypes": ["Ingress"]})
DENY_EGRESS = netpol("deny-egress", "prod", {"podSelector": {}, "policyTypes": ["Egress"]})


def test_without_policies_every_pod_reaches_every_pod(lab: Lab) -> None:
    lab.converge(
        "dev/client",
        {"prod/web:8080:tcp": "open", "prod/web:9100:tcp": "open", "prod/web:5353:udp": "open", "svc:80:tcp": "open"},
    )
    # a closed port answers with a reset: the probe tells "refused" from "dropped"
    assert lab.probe("prod/client", "prod/web:7777:tcp") == {"prod/web:7777:tcp": "refused"}


def test_default_deny_ingress_isolates_the_namespace_but_not_its_egress(lab: Lab, box: dict[str, Any]) -> None:
    lab.apply(DENY_INGRESS)
    lab.converge(
        "dev/client", {"prod/web:8080:tcp": "timeout", "prod/web:5353:udp": "timeout", "svc:80:tcp": "timeout"}
    )
    lab.converge("prod/client", {"prod/web:8080:tcp": "timeout", "dev/client:8080:tcp": "open"})
    # traffic from the node (the sandbox's own terminal) is always allowed, as the API says
    lab.sh(f"timeout 5 bash -c 'exec 3<>/dev/tcp/{lab.ip['prod/web']}/9000'")
    lab.sh("kubectl -n prod delete networkpolicy deny-ingress >/dev/null")
    lab.converge("dev/client", {"prod/web:8080:tcp": "open"})


def test_pod_selector_with_a_named_port_resolved_per_pod(lab: Lab) -> None:
    lab.apply(DENY_INGRESS)
    lab.apply(
        netpol(
            "web-from-clients",
            "prod",
            {
                "podSelector": {"matchLabels": {"app": "web"}},
                "ingress": [
                    {"from": [{"podSelector": {"matchLabels": {"app": "client"}}}], "ports": [{"port": "http"}]}
                ],
            },
        )
    )
    lab.converge(
        "prod/client",
        {
            "prod/web:8080:tcp": "open",  # web's port named http
            "prod/web:9000:tcp": "timeout",
            "prod/web-b:9000:tcp": "open",  # web-b's port named http
            "prod/web-b:8080:tcp": "timeout",
            "prod/other:8080:tcp": "timeout",  # not selected by the allow: default deny
        },
    )
    # a podSelector alone means pods of the policy's own namespace
    lab.converge("dev/client", {"prod/web:8080:tcp": "timeout"})
    lab.converge("prod/other", {"prod/web:8080:tcp": "timeout"})
    # pod labels are followed: the client loses its label, then its access
    lab.sh("kubectl -n prod label pod client app=former --overwrite >/dev/null")
    lab.converge("prod/client", {"prod/web:8080:tcp": "timeout"})


def test_namespace_selector_alone_and_with_a_pod_selector(lab: Lab) -> None:
    lab.apply(
        netpol(
            "from-dev",
            "prod",
            {
                "podSelector": {"matchLabels": {"app": "web"}},
                "ingress": [
                    {"from": [{"namespaceSelector": {"matchLabels": {"team": "dev"}}}], "ports": [{"port": 8080}]},
                    # one peer with both selectors: clients *in* prod (an AND)
                    {
                        "from": [
                            {
                                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "prod"}},
                                "podSelector": {"matchLabels": {"app": "client"}},
                            }
                        ],
                        "ports": [{"port": 9001}],
                    },
                ],
            },
        )
    )
    lab.converge("dev/client", {"prod/web:8080:tcp": "open", "prod/web:9001:tcp": "timeout"})
    lab.converge("prod/client", {"prod/web:8080:tcp": "timeout", "prod/web:9001:tcp": "open"})
    lab.converge("prod/other", {"prod/web:9001:tcp": "timeout"})
    # namespace labels are followed too
    lab.sh("kubectl label namespace dev team- >/dev/null")
    lab.converge("dev/client", {"prod/web:8080:tcp": "timeout"})


def test_ip_block_with_except(lab: Lab) -> None:
    lab.apply(
        netpol(
            "by-address",
            "prod",
            {
                "podSelector": {"matchLabels": {"app": "web"}},
                "ingress": [
                    {"from": [{"ipBlock": {"cidr": "10.244.0.0/16", "except": [f"{lab.ip['dev/client']}/32"]}}]}
                ],
            },
        )
    )
    lab.converge("prod/client", {"prod/web:8080:tcp": "open", "prod/web:5353:udp": "open"})
    lab.converge("dev/client", {"prod/web:8080:tcp": "timeout", "prod/web:5353:udp": "timeout"})


def test_ports_end_port_and_protocol(lab: Lab) -> None:
    lab.apply(
        netpol(
            "ports",
            "prod",
            {
                "podSelector": {"matchLabels": {"app": "web"}},
                "ingress": [
                    {
                        "ports": [
                            {"protocol": "TCP", "port": 9000, "endPort": 9001},
                            {"protocol": "UDP", "port": "echo"},
                            {"protocol": "UDP", "port": 8080},  # UDP 8080 does not open TCP 8080
                        ]
                    }
                ],
            },
        )
    )
    lab.converge(
        "dev/client",
        {
            "prod/web:9000:tcp": "open",
            "prod/web:9001:tcp": "open",
            "prod/web:9100:tcp": "timeout",
            "prod/web:8080:tcp": "timeout",
            "prod/web:5353:udp": "open",
        },
    )


def test_default_deny_egress_blocks_dns_until_it_is_allowed(lab: Lab) -> None:
    name = "dns:web.prod.svc.cluster.local"
    lab.converge("prod/client", {name: lab.svc, "dev/client:8080:tcp": "open"})
    lab.apply(DENY_EGRESS)
    lab.converge("prod/client", {name: "fail", "dev/client:8080:tcp": "timeout", "prod/web:8080:tcp": "timeout"})
    lab.apply(
        netpol(
            "allow-dns",
            "prod",
            {
                "podSelector": {},
                "policyTypes": ["Egress"],
                "egress": [
                    {
                        "to": [
                            {
                                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                            }
                        ],
                        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
                    }
                ],
            },
        )
    )
    lab.converge("prod/client", {name: lab.svc, "dev/client:8080:tcp": "timeout"})
    # additive: a second egress policy opens the web pods' named port, through the Service
    # too (checked after kube-proxy's DNAT: the backend pod and its port 8080)
    lab.apply(
        netpol(
            "to-web",
            "prod",
            {
                "podSelector": {"matchLabels": {"app": "client"}},
                "policyTypes": ["Egress"],
                "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "web"}}}], "ports": [{"port": "http"}]}],
            },
        )
    )
    lab.converge(
        "prod/client",
        {
            "prod/web:8080:tcp": "open",
            "prod/web-b:9000:tcp": "open",
            "svc:80:tcp": "open",
            "prod/web:9100:tcp": "timeout",
            "dev/client:8080:tcp": "timeout",
        },
    )
    lab.converge("prod/other", {"prod/web:8080:tcp": "timeout", name: lab.svc})


def test_service_traffic_is_checked_against_the_backend_and_replies_pass(lab: Lab) -> None:
    lab.apply(DENY_INGRESS)
    lab.apply(DENY_EGRESS)
    lab.apply(
        netpol(
            "web-in",
            "prod",
            {
                "podSelector": {"matchLabels": {"app": "web"}},
                "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}]}],
            },
        )
    )
    lab.apply(
        netpol(
            "client-out",
            "prod",
            {"podSelector": {"matchLabels": {"app": "client"}}, "policyTypes": ["Egress"], "egress": [{}]},
        )
    )
    # web may send nothing (egress denied), yet its replies to an allowed client pass
    lab.converge("prod/client", {"svc:80:tcp": "open", "prod/web:8080:tcp": "open", "prod/web:5353:udp": "open"})
    lab.converge("prod/other", {"svc:80:tcp": "timeout"})
    lab.converge("prod/web", {"prod/client:8080:tcp": "timeout"})


def test_the_connectivity_check_tells_open_blocked_and_refused(lab: Lab, daemon: RealDaemon) -> None:
    """The grader's ``connectivity`` check (grader/checks/connectivity.py) on this cluster:
    names resolved with the kubernetes client, traffic sent by runtimed from the pod's netns."""
    from grader.checks import Target, run_checks

    with Client(daemon.socket, timeout=60) as c:
        kubeconfig = c.kubeconfig(lab.sid)
    target = Target(sandbox_id=lab.sid, runtime_socket=str(daemon.socket), kubeconfig=kubeconfig)

    def check(**spec: Any) -> dict[str, Any]:
        spec.setdefault("from", {"namespace": "prod", "pod": "client"})
        result = run_checks(target, [{"type": "connectivity", **spec}])["tests"][0]
        return {"status": result["status"], "output": result["output"]}

    web_svc = {"namespace": "prod", "service": "web"}
    lab.converge("prod/client", {"svc:80:tcp": "open"})
    assert check(to=web_svc, port=80, expect="open")["status"] == "passed"
    got = check(to=web_svc, port=80, expect="blocked")
    assert got["status"] == "failed" and "open, expected blocked" in got["output"], got
    # every pod a selector picks, each at its own port named http (8080 and 9000)
    got = check(to={"namespace": "prod", "selector": "app=web"}, port="http", expect="open")
    assert got["status"] == "passed" and "port 8080/TCP" in got["output"] and "port 9000/TCP" in got["output"], got
    got = check(to={"namespace": "prod", "pod": "web"}, port=7777, expect="blocked")
    assert got["status"] == "failed" and "nothing listens" in got["output"], got
    dns = {"to": {"namespace": "kube-system", "service": "kube-dns"}, "port": "dns", "protocol": "UDP"}
    assert check(**dns, expect="open")["status"] == "passed"
    got = check(to={"namespace": "prod", "pod": "web"}, port="nope", expect="open")
    assert got["status"] == "failed" and "no TCP port named 'nope'" in got["output"], got
    got = check(**{"from": {"namespace": "prod", "pod": "ghost"}}, to=web_svc, port=80, expect="blocked")
    assert got["status"] == "failed" and "no running pod ghost" in got["output"], got
    lab.apply(DENY_INGRESS)
    lab.converge("prod/client", {"svc:80:tcp": "timeout"})
    got = check(to=web_svc, port=80, expect="blocked")
    assert got["status"] == "passed" and "blocked (no answer)" in got["output"], got
    assert check(to=web_svc, port=80, expect="open")["status"] == "failed"
    got = check(to={"namespace": "prod", "pod": "web"}, port="echo", protocol="UDP", expect="blocked")
    assert got["status"] == "passed", got


def test_a_pod_reaches_itself_through_its_own_service(lab: Lab) -> None:
    """Hairpin (kubelet's hairpin-veth): web -> a Service whose only endpoint is web itself.
    Bridged pod traffic passes netfilter, so without hairpin mode on the pod's bridge port
    the DNATed packet cannot leave by the port it came in by, and the connection hangs."""
    lab.sh(
        "kubectl -n prod label pod web solo=yes --overwrite >/dev/null\n"
        "kubectl -n prod create service clusterip solo --tcp=80:8080 >/dev/null 2>&1 || true\n"
        "kubectl -n prod set selector service solo solo=yes >/dev/null"
    )
    ip = lab.sh("kubectl -n prod get svc solo -o jsonpath='{.spec.clusterIP}'").strip()
    lab.converge("prod/web", {f"{ip}:80:tcp": "open"})
    lab.converge("prod/client", {f"{ip}:80:tcp": "open"})


def test_too_many_rules_fail_closed_and_say_so(lab: Lab) -> None:
    """Peers times ports past the agent's bound: the selected pods keep their isolation with no
    allow rule, and a Warning event on the policy tells the student why."""
    flood = netpol(
        "flood",
        "prod",
        {
            "podSelector": {"matchLabels": {"app": "web"}},
            "ingress": [{"from": [{"podSelector": {}}] * 600, "ports": [{"port": p} for p in range(8000, 8600)]}],
        },
    )
    lab.converge("prod/client", {"prod/web:8080:tcp": "open"})
    lab.apply(flood)
    lab.converge("prod/client", {"prod/web:8080:tcp": "timeout", "prod/other:8080:tcp": "open"})
    out = lab.sh("kubectl -n prod get events --field-selector reason=TooManyRules -o jsonpath='{.items[*].message}'")
    assert "every pod they select is allowed no traffic" in out, out
    lab.sh("kubectl -n prod delete networkpolicy flood >/dev/null")
    lab.converge("prod/client", {"prod/web:8080:tcp": "open"})
