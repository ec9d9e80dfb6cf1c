"""CustomResourceDefinitions: discovery, schema validation and defaulting, printer columns, explain."""

from __future__ import annotations

import json
import subprocess
import uuid

import yaml

from tests.runtime.kube.conftest import KUBECTL, Kubectl, Server


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


def _widget_crd(group: str) -> dict[str, object]:
    def version(name: str, *, storage: bool = False, with_replicas: bool = False, **extra: object) -> dict[str, object]:
        spec_props: dict[str, object] = {"size": {"type": "string"}, "color": {"type": "string"}}
        if with_replicas:
            spec_props["replicas"] = {"type": "integer", "minimum": 0}
        return {
            "name": name,
            "served": True,
            "storage": storage,
            "schema": {
                "openAPIV3Schema": {
                    "type": "object",
                    "properties": {"spec": {"type": "object", "properties": spec_props}},
                }
            },
            **extra,
        }

    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                version("v1alpha1", deprecated=True),
                version("v1", storage=True, with_replicas=True),
                version(
                    "v1beta1",
                    with_replicas=True,
                    deprecated=True,
                    deprecationWarning="v1beta1 widgets are going away, use v1",
                ),
                version("v2alpha1", with_replicas=True, served=False),
            ],
        },
    }


def test_crd_versions_are_all_served_and_stored_in_the_storage_version(server: Server, alpha: Kubectl, ns: str) -> None:
    group = f"g{uuid.uuid4().hex[:6]}.example.com"
    alpha("apply", "-f", "-", stdin=json.dumps(_widget_crd(group)))
    # the preferred version is the highest-priority served one, not the first listed
    assert alpha("api-resources", f"--api-group={group}", "--no-headers").split() == [
        "widgets",
        f"{group}/v1",
        "true",
        "Widget",
    ]
    assert [v for v in alpha("api-versions").split() if v.startswith(group)] == [
        f"{group}/v1",
        f"{group}/v1alpha1",
        f"{group}/v1beta1",
    ]
    old = {"apiVersion": f"{group}/v1alpha1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": "L"}}
    r = alpha.run("apply", "-n", ns, "-f", "-", stdin=json.dumps(old))
    assert r.returncode == 0 and r.stdout == f"widget.{group}/w created\n", r.stderr
    assert r.stderr == f"Warning: {group}/v1alpha1 Widget is deprecated; use {group}/v1 Widget\n"
    # read through the preferred version and each served one: apiVersion rewritten, fields kept
    w = json.loads(alpha("get", f"widgets.{group}", "w", "-n", ns, "-o", "json"))
    assert (w["apiVersion"], w["spec"]) == (f"{group}/v1", {"size": "L"})
    r = alpha.run("get", f"widgets.v1beta1.{group}", "w", "-n", ns, "-o", "json")
    assert r.returncode == 0 and r.stderr == "Warning: v1beta1 widgets are going away, use v1\n", r.stderr
    assert json.loads(r.stdout)["apiVersion"] == f"{group}/v1beta1"
    # a field only v1 knows is stored, and pruned when read through v1alpha1 (as a real server does)
    alpha("patch", f"widgets.v1.{group}", "w", "-n", ns, "--type=merge", "-p", '{"spec":{"replicas":2}}')
    a1 = json.loads(alpha.run("get", f"widgets.v1alpha1.{group}", "w", "-n", ns, "-o", "json").stdout)
    assert (a1["apiVersion"], a1["spec"]) == (f"{group}/v1alpha1", {"size": "L"})
    assert alpha("get", f"widgets.{group}", "w", "-n", ns, "-o", "jsonpath={.spec.replicas}") == "2"
    # schema of the version written: v1alpha1 does not know replicas
    bad = {**old, "spec": {"size": "S", "replicas": 3}}
    err = alpha.fails("apply", "-n", ns, "-f", "-", stdin=json.dumps(bad))
    assert 'unknown field "spec.replicas"' in err
    # what is on disk is the storage version
    stored = [
        json.loads(line)["o"]
        for line in (server.data / "clusters" / "alpha" / "store.jsonl").read_text().splitlines()
        if f'"gr":"widgets.{group}"' in line
    ]
    assert stored and {o["apiVersion"] for o in stored if o} == {f"{group}/v1"}
    crd = json.loads(alpha("get", "crd", f"widgets.{group}", "-o", "json"))
    assert crd["status"]["storedVersions"] == ["v1"]
    # a version that is not served does not exist for clients
    err = alpha.fails("get", f"widgets.v2alpha1.{group}", "-n", ns)
    assert 'the server doesn\'t have a resource type "widgets"' in err
    # a watch through an old version gets the stored events converted
    watch = subprocess.Popen(
        [
            *(KUBECTL, "--kubeconfig", str(alpha.kubeconfig), "get", f"widgets.v1alpha1.{group}", "-n", ns),
            *("--watch", "-o", "jsonpath={.apiVersion} {.metadata.labels.x}{'\\n'}"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert watch.stdout is not None
        assert watch.stdout.readline() == f"{group}/v1alpha1 \n"  # the list; the watch resumes from its RV
        alpha("label", f"widgets.{group}", "w", "-n", ns, "x=y")
        assert watch.stdout.readline() == f"{group}/v1alpha1 y\n"
    finally:
        watch.kill()
        watch.wait()


def test_crd_version_rules_are_enforced(alpha: Kubectl) -> None:
    group = f"g{uuid.uuid4().hex[:6]}.example.com"
    bad = _widget_crd(group)
    versions = bad["spec"]["versions"]  # type: ignore[index]
    versions[0]["deprecationWarning"] = "x"
    versions[0]["deprecated"] = False
    versions[1]["name"] = "v1alpha1"
    err = alpha.fails("apply", "-f", "-", stdin=json.dumps(bad))
    assert 'spec.versions[0].deprecationWarning: Invalid value: "x": can only be set for deprecated versions' in err
    assert 'spec.versions[1].name: Duplicate value: "v1alpha1"' in err
    webhook = _widget_crd(group)
    webhook["spec"]["conversion"] = {"strategy": "Webhook"}  # type: ignore[index]
    err = alpha.fails("apply", "-f", "-", stdin=json.dumps(webhook))
    assert 'spec.conversion.strategy: Unsupported value: "Webhook": supported values: "None"' in err


def _shard_crd(group: str, scale: dict[str, str]) -> dict[str, object]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"shards.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "shards", "singular": "shard", "kind": "Shard"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}, "scale": scale},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {"workers": {"type": "integer", "maximum": 10}},
                                },
                                "status": {
                                    "type": "object",
                                    "properties": {
                                        "ready": {"type": "object", "properties": {"count": {"type": "integer"}}},
                                        "podSelector": {"type": "string"},
                                    },
                                },
                            },
                        }
                    },
                }
            ],
        },
    }


def test_scale_subresource_uses_the_crd_paths(alpha: Kubectl, ns: str) -> None:
    group = f"g{uuid.uuid4().hex[:6]}.example.com"
    paths = {
        "specReplicasPath": ".spec.workers",
        "statusReplicasPath": ".status.ready.count",
        "labelSelectorPath": ".status.podSelector",
    }
    alpha("apply", "-f", "-", stdin=json.dumps(_shard_crd(group, paths)))
    shard = {"apiVersion": f"{group}/v1", "kind": "Shard", "metadata": {"name": "s"}, "spec": {"workers": 1}}
    alpha("apply", "-n", ns, "-f", "-", stdin=json.dumps(shard))
    raw = f"/apis/{group}/v1/namespaces/{ns}/shards/s/scale"
    scale = json.loads(alpha("get", "--raw", raw))
    assert (scale["apiVersion"], scale["kind"]) == ("autoscaling/v1", "Scale")
    assert (scale["spec"], scale["status"]) == ({"replicas": 1}, {"replicas": 0, "selector": ""})
    status = '{"status":{"ready":{"count":1},"podSelector":"app=s"}}'
    alpha("patch", f"shards.{group}", "s", "-n", ns, "--subresource=status", "--type=merge", "-p", status)
    scale = json.loads(alpha("get", "--raw", raw))
    assert (scale["spec"], scale["status"]) == ({"replicas": 1}, {"replicas": 1, "selector": "app=s"})
    assert alpha("scale", f"shard.{group}/s", "--replicas=3", "-n", ns) == f"shard.{group}/s scaled\n"
    s = json.loads(alpha("get", f"shards.{group}", "s", "-n", ns, "-o", "json"))
    assert s["spec"] == {"workers": 3} and s["status"]["ready"] == {"count": 1}
    assert s["metadata"]["generation"] == 2
    # the custom resource is validated against its schema after scaling
    err = alpha.fails("scale", f"shard.{group}/s", "--replicas=11", "-n", ns)
    assert err.strip() == (
        'The Shard "s" is invalid: spec.workers: Invalid value: 11: '
        "spec.workers in body should be less than or equal to 10"
    )
    err = alpha.fails("scale", f"shard.{group}/s", "--current-replicas=2", "--replicas=4", "-n", ns)
    assert "Expected replicas to be 2, was 3" in err


def test_scale_paths_are_validated(alpha: Kubectl) -> None:
    group = f"g{uuid.uuid4().hex[:6]}.example.com"
    bad = {"specReplicasPath": ".workers", "statusReplicasPath": ".spec.ready", "labelSelectorPath": ".meta.sel"}
    err = alpha.fails("apply", "-f", "-", stdin=json.dumps(_shard_crd(group, bad)))
    fld = "spec.versions[0].subresources.scale"
    assert f'{fld}.specReplicasPath: Invalid value: ".workers": should be a json path under .spec' in err
    assert f'{fld}.statusReplicasPath: Invalid value: ".spec.ready": should be a json path under .status' in err
    assert (
        f'{fld}.labelSelectorPath: Invalid value: ".meta.sel": should be a json path under either .spec or .status'
        in err
    )


def _range_crd(group: str, spec_rules: list[dict[str, str]]) -> dict[str, object]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"ranges.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "ranges", "singular": "range", "kind": "Range"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "x-kubernetes-validations": spec_rules,
                                    "properties": {
                                        "minReplicas": {"type": "integer"},
                                        "replicas": {"type": "integer"},
                                        "x": {"type": "integer"},
                                        "y": {"type": "integer"},
                                        "name": {"type": "string"},
                                        "mode": {
                                            "type": "string",
                                            "x-kubernetes-validations": [
                                                {"rule": "self == oldSelf", "message": "mode is immutable"}
                                            ],
                                        },
                                    },
                                }
                            },
                        }
                    },
                }
            ],
        },
    }


def test_cel_validation_rules(alpha: Kubectl, ns: str) -> None:
    group = f"g{uuid.uuid4().hex[:6]}.example.com"
    rules = [
        {"rule": "self.minReplicas <= self.replicas", "message": "replicas must be at least minReplicas"},
        {"rule": "!has(self.x) || self.x <= self.y"},
        {"rule": "!has(self.name) || (size(self.name) < 10 && self.name.startsWith('a'))"},
    ]
    alpha("apply", "-f", "-", stdin=json.dumps(_range_crd(group, rules)))

    def apply(spec: dict[str, object]) -> subprocess.CompletedProcess[str]:
        obj = {"apiVersion": f"{group}/v1", "kind": "Range", "metadata": {"name": "r"}, "spec": spec}
        return alpha.run("apply", "-n", ns, "-f", "-", stdin=json.dumps(obj))

    def invalid(spec: dict[str, object]) -> str:
        r = apply(spec)
        assert r.returncode == 1, r.stdout
        return r.stderr.strip()

    prefix = 'The Range "r" is invalid: '
    err = invalid({"minReplicas": 3, "replicas": 2})
    assert err.endswith(prefix + 'spec: Invalid value: "object": replicas must be at least minReplicas'), err
    err = invalid({"minReplicas": 1, "replicas": 2, "x": 5, "y": 4})
    assert err.endswith(prefix + 'spec: Invalid value: "object": failed rule: !has(self.x) || self.x <= self.y'), err
    err = invalid({"minReplicas": 1, "replicas": 2, "name": "abcdefghijk"})
    assert 'spec: Invalid value: "object": failed rule: !has(self.name) ||' in err
    assert "failed rule" in invalid({"minReplicas": 1, "replicas": 2, "name": "bob"})
    # a field the rule needs is missing: kube-apiserver's runtime error
    err = invalid({"replicas": 2})
    assert err.endswith(
        prefix + 'spec: Invalid value: "object": no such key: minReplicas evaluating rule: '
        "replicas must be at least minReplicas"
    ), err
    # two failing rules: both reported
    err = invalid({"minReplicas": 3, "replicas": 2, "x": 2, "y": 1})
    assert "replicas must be at least minReplicas" in err and "failed rule: !has(self.x)" in err
    ok = apply({"minReplicas": 1, "replicas": 2, "x": 1, "y": 1, "name": "alice", "mode": "fast"})
    assert ok.returncode == 0 and ok.stdout == f"range.{group}/r created\n", ok.stderr
    # transition rule: checked on updates only
    err = invalid({"minReplicas": 1, "replicas": 2, "x": 1, "y": 1, "name": "alice", "mode": "slow"})
    assert err.endswith(prefix + 'spec.mode: Invalid value: "string": mode is immutable'), err
    ok = apply({"minReplicas": 1, "replicas": 3, "x": 1, "y": 1, "name": "alice", "mode": "fast"})
    assert ok.returncode == 0 and ok.stdout == f"range.{group}/r configured\n", ok.stderr


def test_cel_rules_that_do_not_compile_are_refused(alpha: Kubectl) -> None:
    group = f"g{uuid.uuid4().hex[:6]}.example.com"
    err = alpha.fails("apply", "-f", "-", stdin=json.dumps(_range_crd(group, [{"rule": "self.x <"}])))
    assert (
        "spec.versions[0].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule: "
        'Invalid value: "self.x <": compilation failed: Syntax error: unexpected end of input'
    ) in err
    err = alpha.fails("apply", "-f", "-", stdin=json.dumps(_range_crd(group, [{"rule": "self.x.quantity()"}])))
    assert "compilation failed: undeclared reference to 'quantity'" in err
