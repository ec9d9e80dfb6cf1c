"""CustomResourceDefinitions: discovery, schema validation and defaulting, printer columns, explain."""

from __future__ import annotations

import json
import uuid

import yaml

from tests.runtime.kube.conftest import Kubectl


def _crd(group: str) -> dict[str, object]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"crontabs.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab", "shortNames": ["ct"]},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Spec", "type": "string", "jsonPath": ".spec.cronSpec"},
                        {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "required": ["cronSpec"],
                                    "properties": {
                                        "cronSpec": {"type": "string", "description": "The schedule in cron format"},
                                        "replicas": {"type": "integer", "minimum": 1, "default": 1},
                                        "mode": {"type": "string", "enum": ["fast", "slow"]},
                                    },
                                },
                                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                            },
                        }
                    },
                }
            ],
        },
    }


def _ct(group: str, name: str, spec: dict[str, object]) -> str:
    return yaml.safe_dump({"apiVersion": f"{group}/v1", "kind": "CronTab", "metadata": {"name": name}, "spec": spec})


def test_crd_defines_a_served_kind(alpha: Kubectl, ns: str) -> None:
    group = f"g{uuid.uuid4().hex[:6]}.example.com"
    out = alpha("apply", "-f", "-", stdin=json.dumps(_crd(group)))
    assert out == f"customresourcedefinition.apiextensions.k8s.io/crontabs.{group} created\n"
    crd = json.loads(alpha("get", "crd", f"crontabs.{group}", "-o", "json"))
    assert {c["type"]: c["status"] for c in crd["status"]["conditions"]} == {
        "NamesAccepted": "True",
        "Established": "True",
    }
    res = alpha("api-resources", f"--api-group={group}", "--no-headers").split()
    assert res == ["crontabs", "ct", f"{group}/v1", "true", "CronTab"]
    assert alpha("apply", "-n", ns, "-f", "-", stdin=_ct(group, "a", {"cronSpec": "*/5 * * * *"})) == (
        f"crontab.{group}/a created\n"
    )
    assert alpha("apply", "-n", ns, "-f", "-", stdin=_ct(group, "a", {"cronSpec": "*/5 * * * *"})) == (
        f"crontab.{group}/a unchanged\n"
    )
    rows = [r.split() for r in alpha("get", f"crontabs.{group}", "-n", ns).splitlines()]
    assert rows[0] == ["NAME", "SPEC", "REPLICAS", "AGE"]
    assert rows[1][:6] == ["a", "*/5", "*", "*", "*", "*"] and rows[1][6] == "1"  # defaulted replicas
    # schema validation with the real messages
    err = alpha.fails("apply", "-n", ns, "-f", "-", stdin=_ct(group, "b", {"cronSpec": "x", "replicas": 0}))
    assert "spec.replicas: Invalid value: 0: spec.replicas in body should be greater than or equal to 1" in err
    err = alpha.fails("apply", "-n", ns, "-f", "-", stdin=_ct(group, "b", {"replicas": 2}))
    assert "spec.cronSpec: Required value" in err
    err = alpha.fails("apply", "-n", ns, "-f", "-", stdin=_ct(group, "b", {"cronSpec": "x", "mode": "warp"}))
    assert 'spec.mode: Unsupported value: "warp": supported values: "fast", "slow"' in err
    err = alpha.fails("apply", "-n", ns, "-f", "-", stdin=_ct(group, "b", {"cronSpec": "x", "bogus": 1}))
    assert 'unknown field "spec.bogus"' in err
    # strategic merge patch is not for custom resources; merge patch is
    err = alpha.fails("patch", f"crontab.{group}", "a", "-n", ns, "-p", '{"spec":{"replicas":3}}')
    assert "application/strategic-merge-patch+json is not supported" in err
    alpha("patch", f"crontab.{group}", "a", "-n", ns, "--type=merge", "-p", '{"spec":{"replicas":3}}')
    assert alpha("get", f"ct.{group}", "a", "-n", ns, "-o", "jsonpath={.spec.replicas}") == "3"
    explain = alpha("explain", f"crontabs.{group}.spec")
    assert "cronSpec\t<string> -required-" in explain and "The schedule in cron format" in explain
    # deleting the CRD deletes its resources and the kind disappears
    alpha("delete", "crd", f"crontabs.{group}")
    err = alpha.fails("get", f"crontabs.{group}", "-n", ns)
    assert "the server doesn't have a resource type" in err


def test_invalid_crd_is_rejected(alpha: Kubectl) -> None:
    bad = _crd("nodots")
    err = alpha.fails("apply", "-f", "-", stdin=json.dumps(bad))
    assert 'spec.group: Invalid value: "nodots": should be a domain with at least one dot' in err
    wrong = _crd("right.example.com")
    wrong["metadata"] = {"name": "wrong.example.com"}
    err = alpha.fails("apply", "-f", "-", stdin=json.dumps(wrong))
    assert 'metadata.name: Invalid value: "wrong.example.com": must be spec.names.plural+"."+spec.group' in err
