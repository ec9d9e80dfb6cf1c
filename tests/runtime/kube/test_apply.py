"""kubectl apply: client-side (last-applied + strategic merge patch) and server-side."""

from __future__ import annotations

import json

import yaml

from tests.runtime.kube.conftest import Kubectl


def _manifest(image: str, env: str = "1", extra_env: bool = False) -> str:
    envs = [{"name": "A", "value": env}]
    if extra_env:
        envs.append({"name": "B", "value": "2"})
    docs = [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "app", "labels": {"app": "app"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "app"}},
                "template": {
                    "metadata": {"labels": {"app": "app"}},
                    "spec": {
                        "containers": [{"name": "c", "image": image, "ports": [{"containerPort": 80}], "env": envs}]
                    },
                },
            },
        },
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "appcfg"}, "data": {"k": "v"}},
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "app"},
            "spec": {"selector": {"app": "app"}, "ports": [{"port": 80, "targetPort": 8080}]},
        },
    ]
    return yaml.safe_dump_all(docs)


def test_apply_twice_is_unchanged_and_a_change_is_configured(alpha: Kubectl, ns: str) -> None:
    out = alpha("apply", "-n", ns, "-f", "-", stdin=_manifest("nginx:1.25"))
    assert out.splitlines() == ["deployment.apps/app created", "configmap/appcfg created", "service/app created"]
    out = alpha("apply", "-n", ns, "-f", "-", stdin=_manifest("nginx:1.25"))
    assert out.splitlines() == ["deployment.apps/app unchanged", "configmap/appcfg unchanged", "service/app unchanged"]
    out = alpha("apply", "-n", ns, "-f", "-", stdin=_manifest("nginx:1.26", extra_env=True))
    assert out.splitlines() == ["deployment.apps/app configured", "configmap/appcfg unchanged", "service/app unchanged"]
    dep = json.loads(alpha("get", "deploy", "app", "-n", ns, "-o", "json"))
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "nginx:1.26" and [e["name"] for e in c["env"]] == ["A", "B"]
    # removing a field from the manifest removes it from the object
    alpha("apply", "-n", ns, "-f", "-", stdin=_manifest("nginx:1.26"))
    dep = json.loads(alpha("get", "deploy", "app", "-n", ns, "-o", "json"))
    assert [e["name"] for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]] == ["A"]
    assert "kubectl.kubernetes.io/last-applied-configuration" in dep["metadata"]["annotations"]
    assert dep["metadata"]["generation"] == 3
    assert len(alpha("get", "rs", "-n", ns, "-o", "name").split()) == 3  # one per template


def test_apply_keeps_fields_set_by_others(alpha: Kubectl, ns: str) -> None:
    alpha("apply", "-n", ns, "-f", "-", stdin=_manifest("nginx:1.25"))
    alpha("scale", "deploy", "app", "-n", ns, "--replicas=5")
    alpha("label", "deploy", "app", "-n", ns, "extra=yes")
    alpha("apply", "-n", ns, "-f", "-", stdin=_manifest("nginx:1.25", env="2"))
    dep = json.loads(alpha("get", "deploy", "app", "-n", ns, "-o", "json"))
    assert dep["metadata"]["labels"] == {"app": "app", "extra": "yes"}
    assert dep["spec"]["replicas"] == 2  # the manifest owns replicas
    svc = json.loads(alpha("get", "svc", "app", "-n", ns, "-o", "json"))
    assert svc["spec"]["clusterIP"].startswith("10.96.")


def test_server_side_apply(alpha: Kubectl, ns: str) -> None:
    out = alpha("apply", "--server-side", "-n", ns, "-f", "-", stdin=_manifest("nginx:1.25"))
    assert out.splitlines() == [
        "deployment.apps/app serverside-applied",
        "configmap/appcfg serverside-applied",
        "service/app serverside-applied",
    ]
    alpha("apply", "--server-side", "-n", ns, "-f", "-", stdin=_manifest("nginx:1.27", extra_env=True))
    alpha("apply", "--server-side", "-n", ns, "-f", "-", stdin=_manifest("nginx:1.27"))
    c = json.loads(alpha("get", "deploy", "app", "-n", ns, "-o", "json"))["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "nginx:1.27"


def test_apply_dry_run_server(alpha: Kubectl, ns: str) -> None:
    out = alpha("apply", "--dry-run=server", "-n", ns, "-f", "-", stdin=_manifest("nginx:1"))
    assert out.splitlines()[0] == "deployment.apps/app created (server dry run)"
    assert alpha("get", "deploy", "-n", ns, "-o", "name") == ""


def test_replace_with_stale_resource_version_conflicts(alpha: Kubectl, ns: str) -> None:
    alpha("create", "configmap", "c", "-n", ns, "--from-literal=a=1")
    obj = json.loads(alpha("get", "cm", "c", "-n", ns, "-o", "json"))
    alpha("patch", "cm", "c", "-n", ns, "-p", '{"data":{"a":"2"}}')
    err = alpha.fails("replace", "-n", ns, "-f", "-", stdin=json.dumps(obj))
    assert (
        'Operation cannot be fulfilled on configmaps "c": the object has been modified; '
        "please apply your changes to the latest version and try again"
    ) in err


def test_server_side_apply_conflicts_and_force(alpha: Kubectl, ns: str) -> None:
    alpha("apply", "--server-side", "-n", ns, "-f", "-", stdin=_manifest("nginx:1.25"))
    managed = json.loads(alpha("get", "deploy", "app", "-n", ns, "-o", "json", "--show-managed-fields"))
    entry = managed["metadata"]["managedFields"][0]
    assert entry["manager"] == "kubectl" and entry["operation"] == "Apply"
    assert "f:replicas" in entry["fieldsV1"]["f:spec"]
    alpha("patch", "deploy", "app", "-n", ns, "--field-manager=ops", "-p", '{"spec":{"replicas":5}}')
    err = alpha.fails("apply", "--server-side", "-n", ns, "-f", "-", stdin=_manifest("nginx:1.25"))
    assert 'error: Apply failed with 1 conflict: conflict with "ops" using apps/v1: .spec.replicas' in err
    out = alpha("apply", "--server-side", "--force-conflicts", "-n", ns, "-f", "-", stdin=_manifest("nginx:1.25"))
    assert out.splitlines()[0] == "deployment.apps/app serverside-applied"
    assert alpha("get", "deploy", "app", "-n", ns, "-o", "jsonpath={.spec.replicas}") == "2"
    # a field the manifest stops applying is removed when nobody else owns it
    alpha("apply", "--server-side", "-n", ns, "-f", "-", stdin=_manifest("nginx:1.25", extra_env=True))
    alpha("apply", "--server-side", "-n", ns, "-f", "-", stdin=_manifest("nginx:1.25"))
    dep = json.loads(alpha("get", "deploy", "app", "-n", ns, "-o", "json"))
    assert [e["name"] for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]] == ["A"]
