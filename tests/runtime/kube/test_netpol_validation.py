"""NetworkPolicy validation as the real API server does it (ValidateNetworkPolicySpec).

What upstream refuses is refused with its field paths and words, through the real kubectl
against ``python -m runtime.kube serve``: nothing a student writes is stored and then left
out of the enforced rules without a word (runtime/kube/node/netpol.py enforces what is stored).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.runtime.kube.conftest import Kubectl


def _policy(ns: str, spec: dict[str, Any]) -> str:
    return json.dumps(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "p", "namespace": ns},
            "spec": {"podSelector": {}, **spec},
        }
    )


REFUSED = [
    ({"ingress": [{"from": [{}]}]}, "spec.ingress[0].from[0]: Required value: must specify a peer"),
    (
        {"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]}]},
        "spec.ingress[0].from[0]: Forbidden: may not specify both ipBlock and another peer",
    ),
    (
        {"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.300/8"}}]}]},
        'spec.egress[0].to[0].ipBlock.cidr: Invalid value: "10.0.0.300/8": must be a valid CIDR value',
    ),
    (
        {"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["192.168.0.0/16"]}}]}]},
        'spec.ingress[0].from[0].ipBlock.except[0]: Invalid value: "192.168.0.0/16": must be a strict subset of `cidr`',
    ),
    (
        {"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.0.0.0/8"]}}]}]},
        "must be a strict subset of `cidr`",
    ),
    (
        {"ingress": [{"ports": [{"protocol": "ICMP", "port": 1}]}]},
        'spec.ingress[0].ports[0].protocol: Unsupported value: "ICMP": supported values: "TCP", "UDP", "SCTP"',
    ),
    (
        {"ingress": [{"ports": [{"port": 70000}]}]},
        "spec.ingress[0].ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive",
    ),
    (
        {"ingress": [{"ports": [{"port": 9000, "endPort": 8000}]}]},
        "spec.ingress[0].ports[0].endPort: Invalid value: 9000: must be greater than or equal to `port`",
    ),
    (
        {"ingress": [{"ports": [{"port": "http", "endPort": 8000}]}]},
        "spec.ingress[0].ports[0].endPort: Invalid value: 8000: may not be specified when `port` is non-numeric",
    ),
    (
        {"egress": [{"ports": [{"endPort": 8000}]}]},
        "spec.egress[0].ports[0].endPort: Invalid value: 8000: may not be specified when `port` is not specified",
    ),
    (
        {"ingress": [{"ports": [{"port": "a-very-long-port-name"}]}]},
        "must be no more than 15 characters",
    ),
    ({"policyTypes": ["Ingress", "Outgress"]}, 'spec.policyTypes[1]: Unsupported value: "Outgress"'),
]


@pytest.mark.parametrize(("spec", "words"), REFUSED, ids=[w[:40] for _, w in REFUSED])
def test_invalid_policies_are_refused_with_upstreams_words(
    alpha: Kubectl, ns: str, spec: dict[str, Any], words: str
) -> None:
    err = alpha.fails("apply", "-f", "-", stdin=_policy(ns, spec))
    assert 'The NetworkPolicy "p" is invalid: ' in err, err
    assert words in err, err
    assert alpha.run("get", "networkpolicy", "p", "-n", ns).returncode != 0  # nothing stored


def test_every_valid_shape_is_stored(alpha: Kubectl, ns: str) -> None:
    spec = {
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [
            {
                "from": [
                    {"podSelector": {"matchLabels": {"app": "web"}}},
                    {"namespaceSelector": {}, "podSelector": {}},
                    {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}},
                ],
                "ports": [{"port": "http"}, {"port": 9000, "endPort": 9010}, {"protocol": "UDP"}],
            }
        ],
        "egress": [{}],
    }
    alpha("apply", "-f", "-", stdin=_policy(ns, spec))
    got = json.loads(alpha("get", "networkpolicy", "p", "-n", ns, "-o", "json"))
    assert got["spec"]["ingress"][0]["ports"][0] == {"port": "http", "protocol": "TCP"}
