"""The NetworkPolicy rule compiler (runtime/kube/node/netpol.py ``render``), on canned objects.

What each policy shape turns into, that the text is deterministic, that what a student
writes can never become nft syntax, and (as root) that every rendered script is accepted
by the real ``nft`` in a throwaway network namespace. Real traffic: test_netpol_live.py.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from typing import Any

import pytest

from runtime.kube.node.netpol import render


def pod(ns: str, name: str, ip: str | None, labels: dict[str, str], ports: list[Any] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"namespace": ns, "name": name, "labels": labels},
        "spec": {"containers": [{"name": "c", "ports": ports or []}]},
        "status": {"podIP": ip, "phase": "Running"} if ip else {"phase": "Pending"},
    }


def ns(name: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels}}


def pol(name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace}, "spec": spec}


PODS = [
    pod("prod", "web", "10.244.0.2", {"app": "web"}, [{"name": "http", "containerPort": 8080}]),
    pod("prod", "web-b", "10.244.0.3", {"app": "web"}, [{"name": "http", "containerPort": 9000}]),
    pod("prod", "client", "10.244.0.4", {"app": "client"}),
    pod("dev", "client", "10.244.0.5", {"app": "client"}),
    pod("prod", "pending", None, {"app": "web"}),
]
NAMESPACES = [ns("prod"), ns("dev", team="dev"), ns("kube-system")]


def chains(script: str) -> dict[str, list[str]]:
    """chain name -> its rules (stripped lines)."""
    out: dict[str, list[str]] = {}
    current = None
    for line in script.splitlines():
        m = re.match(r"\s+chain (\S+) \{", line)
        if m:
            current = m.group(1)
            out[current] = []
        elif line.strip() == "}":
            current = None
        elif current:
            out[current].append(line.strip())
    return out


def chain_of(script: str, kind: str, ip: str) -> list[str]:
    """The rules of the ``in``/``eg`` chain the vmap sends ``ip`` to (KeyError: none)."""
    m = re.search(rf"{re.escape(ip)} : jump ({kind}-\d+)", script)
    if m is None:
        raise KeyError(ip)
    return chains(script)[m.group(1)]


def test_no_policies_isolate_nothing() -> None:
    script = render([], PODS, NAMESPACES)
    assert "vmap" not in script
    assert chains(script)["forward"][-1] == "ct state established,related accept"


def test_default_deny_ingress_selects_every_pod_of_its_namespace_only() -> None:
    script = render([pol("deny", "prod", {"podSelector": {}, "policyTypes": ["Ingress"]})], PODS, NAMESPACES)
    for ip in ("10.244.0.2", "10.244.0.3", "10.244.0.4"):
        assert chain_of(script, "in", ip) == ["drop"]
    with pytest.raises(KeyError):
        chain_of(script, "in", "10.244.0.5")  # dev is not isolated
    assert "eg-" not in script  # ingress only: egress stays open
    assert chains(script)["forward"][1] == "ct state established,related accept"  # replies first


def test_policy_types_default_from_the_spec() -> None:
    script = render([pol("e", "prod", {"podSelector": {}, "egress": []})], PODS, NAMESPACES)
    assert chain_of(script, "eg", "10.244.0.4") == ["drop"]
    assert chain_of(script, "in", "10.244.0.4") == ["drop"]


def test_named_ports_resolve_per_selected_pod() -> None:
    spec = {
        "podSelector": {"matchLabels": {"app": "web"}},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}], "ports": [{"port": "http"}]}],
    }
    script = render([pol("p", "prod", spec)], PODS, NAMESPACES)
    assert chain_of(script, "in", "10.244.0.2") == [
        "ip saddr { 10.244.0.4 } meta l4proto tcp th dport 8080 return",
        "drop",
    ]
    assert chain_of(script, "in", "10.244.0.3")[0].endswith("th dport 9000 return")


def test_egress_named_port_resolves_per_destination_and_dns_is_kube_system() -> None:
    spec = {
        "podSelector": {"matchLabels": {"app": "client"}},
        "policyTypes": ["Egress"],
        "egress": [
            {"to": [{"podSelector": {"matchLabels": {"app": "web"}}}], "ports": [{"port": "http"}]},
            {
                "to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
                "ports": [{"port": 53, "protocol": "UDP"}],
            },
        ],
    }
    script = render([pol("p", "prod", spec)], PODS, NAMESPACES)
    assert chain_of(script, "eg", "10.244.0.4") == [
        "ip daddr { 10.244.0.2 } meta l4proto tcp th dport 8080 return",
        "ip daddr { 10.244.0.3 } meta l4proto tcp th dport 9000 return",
        "ip daddr { 10.96.0.10 } meta l4proto udp th dport 53 return",
        "drop",
    ]
    # DNS is served on the node: its check is in input
    assert any("ip daddr 10.96.0.10 ip saddr vmap" in r for r in chains(script)["input"])


def test_namespace_selector_alone_with_pods_and_by_name_label() -> None:
    spec = {
        "podSelector": {"matchLabels": {"app": "web"}},
        "ingress": [
            {"from": [{"namespaceSelector": {"matchLabels": {"team": "dev"}}}]},
            {
                "from": [
                    {
                        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "prod"}},
                        "podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["client"]}]},
                    }
                ]
            },
        ],
    }
    rules = chain_of(render([pol("p", "prod", spec)], PODS, NAMESPACES), "in", "10.244.0.2")
    assert rules == ["ip saddr { 10.244.0.5 } return", "ip saddr { 10.244.0.4 } return", "drop"]


def test_ip_block_except_end_port_and_protocols() -> None:
    spec = {
        "podSelector": {"matchLabels": {"app": "web"}},
        "ingress": [
            {
                "from": [{"ipBlock": {"cidr": "10.244.0.0/16", "except": ["10.244.0.5/32", "10.244.1.0/24"]}}],
                "ports": [
                    {"protocol": "TCP", "port": 9000, "endPort": 9010},
                    {"protocol": "UDP"},
                    {"protocol": "SCTP", "port": 7},
                ],
            }
        ],
    }
    rules = chain_of(render([pol("p", "prod", spec)], PODS, NAMESPACES), "in", "10.244.0.2")
    block = "ip saddr 10.244.0.0/16 ip saddr != { 10.244.0.5/32, 10.244.1.0/24 }"
    assert rules == [
        f"{block} meta l4proto tcp th dport 9000-9010 return",
        f"{block} meta l4proto udp return",
        f"{block} meta l4proto sctp th dport 7 return",
        "drop",
    ]


def test_policies_add_up_and_an_empty_rule_allows_everything() -> None:
    a = pol("a", "prod", {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{"ports": [{"port": 1}]}]})
    b = pol("b", "prod", {"podSelector": {}, "ingress": [{}]})
    rules = chain_of(render([b, a], PODS, NAMESPACES), "in", "10.244.0.2")
    assert rules == ["meta l4proto tcp th dport 1 return", "return", "drop"]


def test_rendering_is_deterministic() -> None:
    pols = [
        pol("z", "prod", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
        pol("a", "dev", {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}}]}]}),
    ]
    assert render(pols, PODS, NAMESPACES) == render(list(reversed(pols)), list(reversed(PODS)), NAMESPACES)


HOSTILE = '1.2.3.4 } accept; flush ruleset; {"'


def test_what_a_student_writes_never_becomes_nft_syntax() -> None:
    pods = [
        *PODS,
        pod("prod", "evil", HOSTILE, {"app": "web"}),  # a forged status
        pod("prod", "far", "192.0.2.7", {"app": "web"}),  # outside the pod network: not a pod address
        pod("prod", "ports", "10.244.0.9", {"app": "x"}, [{"name": "http", "containerPort": HOSTILE}]),
    ]
    spec = {
        "podSelector": {},
        "ingress": [
            {"from": [{"ipBlock": {"cidr": HOSTILE}}, {"ipBlock": {"cidr": "10.0.0.0/8", "except": [HOSTILE]}}]},
            {"ports": [{"port": HOSTILE}, {"port": 0}, {"port": 70000}, {"port": 5, "endPort": 2}]},
            {"ports": [{"protocol": "ICMP; flush ruleset", "port": 1}]},
            {"from": [{"podSelector": {"matchLabels": {"app": HOSTILE}}}]},
            {"from": "not a list", "ports": {"port": 1}},
            "not a rule",
        ],
    }
    script = render([pol("p", "prod", spec), pol("q", "prod", {"podSelector": "nonsense"})], pods, NAMESPACES)
    assert "flush" not in script and "1.2.3.4" not in script and "192.0.2.7" not in script
    assert "ip saddr 10.0.0.0/8 return" in script  # the unparseable except is left out, the block kept
    assert "70000" not in script and "th dport 0" not in script and "dport 5-2" not in script


def _nft_check(script: str) -> subprocess.CompletedProcess[str]:
    name = f"klnpchk{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=10)
    try:
        return subprocess.run(
            ["ip", "netns", "exec", name, "nft", "-c", "-f", "-"],
            input=script,
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, timeout=10)


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("nft") is None, reason="needs root and nft")
def test_real_nft_accepts_every_shape() -> None:
    pols = [
        pol("deny", "prod", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
        pol(
            "all-kinds",
            "prod",
            {
                "podSelector": {"matchLabels": {"app": "web"}},
                "ingress": [
                    {
                        "from": [
                            {"podSelector": {"matchLabels": {"app": "client"}}},
                            {"namespaceSelector": {"matchLabels": {"team": "dev"}}},
                            {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.244.0.5/32"]}},
                        ],
                        "ports": [{"port": "http"}, {"port": 9000, "endPort": 9010}, {"protocol": "UDP"}],
                    },
                    {},
                ],
                "egress": [{"to": [{"namespaceSelector": {}}], "ports": [{"protocol": "SCTP", "port": 7}]}],
            },
        ),
    ]
    script = render(pols, PODS, NAMESPACES)
    result = _nft_check(script)
    assert result.returncode == 0, result.stderr + script
    assert _nft_check(render([], PODS, NAMESPACES)).returncode == 0


def test_a_flood_of_rules_keeps_the_isolation_and_allows_nothing() -> None:
    """Peers times ports multiplies: a policy a student can store (well under the 1.5 MiB
    object limit) would make gigabytes of nft text. Past MAX_RULE_BYTES the rendering
    stops, every isolated pod keeps its isolation and gets no allow rule (fail closed)."""
    from runtime.kube.node.netpol import MAX_RULE_BYTES, TOO_BIG

    pods = [pod("prod", f"p{i}", f"10.244.0.{i + 2}", {"app": "x"}) for i in range(200)]
    spec = {
        "podSelector": {},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [
            {
                "from": [{"podSelector": {}}] * 700,
                "ports": [{"port": p} for p in range(1, 701)],
            }
        ],
        "egress": [{"to": [{"ipBlock": {"cidr": f"10.{i}.0.0/16"}} for i in range(200)]}],
    }
    script = render([pol("flood", "prod", spec)], pods, NAMESPACES)
    assert script.startswith(TOO_BIG)
    assert len(script) < MAX_RULE_BYTES
    for i in (2, 101, 201):
        assert chain_of(script, "in", f"10.244.0.{i}") == ["drop"]
        assert chain_of(script, "eg", f"10.244.0.{i}") == ["drop"]
    # an ordinary policy set is far from the bound
    assert not render([pol("deny", "prod", {"podSelector": {}, "ingress": [{}]})], pods, NAMESPACES).startswith("#")


def test_null_selectors_mean_what_the_api_says() -> None:
    """``podSelector: null`` in a peer is absent (pointers); in the spec it is ``{}``."""
    spec = {
        "podSelector": None,
        "ingress": [
            {"from": [{"namespaceSelector": {"matchLabels": {"team": "dev"}}, "podSelector": None}]},
            {"from": [{"podSelector": {"matchLabels": {"app": "client"}}, "namespaceSelector": None}]},
        ],
    }
    script = render([pol("p", "prod", spec)], PODS, NAMESPACES)
    assert chain_of(script, "in", "10.244.0.2") == [
        "ip saddr { 10.244.0.5 } return",  # every pod of dev
        "ip saddr { 10.244.0.4 } return",  # clients of prod only
        "drop",
    ]
    assert chain_of(script, "in", "10.244.0.4")[-1] == "drop"  # null podSelector: every pod of prod
