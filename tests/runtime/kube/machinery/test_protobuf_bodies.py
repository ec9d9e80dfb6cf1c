"""Every verb takes the protobuf bodies client-go's typed clients send (issue #15).

Requests are raw HTTPS with ``Content-Type: application/vnd.kubernetes.protobuf`` and
bodies written by tests/runtime/kube/pbwire.py from the protobuf API reference; what
they change is read back with kubectl. helm's own use of them is in test_helm.py.
"""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client, config

from tests.runtime.kube import pbwire
from tests.runtime.kube.conftest import Kubectl


def raw(kc: Kubectl, method: str, path: str, body: bytes = b"") -> tuple[int, dict[str, Any]]:
    """One request with a protobuf body, through the kubernetes client's transport (its TLS
    and token from the kubeconfig), the body passed as bytes untouched."""
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(kc.kubeconfig), client_configuration=cfg)
    with client.ApiClient(cfg) as api:
        method, url, headers, data, _ = api.param_serialize(
            method,
            path,
            header_params={"Content-Type": pbwire.CONTENT_TYPE, "Accept": "application/json"},
            body=body or None,
            auth_settings=["BearerToken"],
        )
        r = api.call_api(method, url, header_params=headers, body=data)
        r.read()
        return r.status, json.loads(r.data or b"{}")


def uid_of(kc: Kubectl, *what: str) -> str:
    return kc("get", *what, "-o", "jsonpath={.metadata.uid}")


def test_delete_with_a_protobuf_delete_options_body_deletes(alpha: Kubectl, ns: str) -> None:
    alpha("create", "configmap", "gone", "-n", ns, "--from-literal=k=v")
    code, st = raw(alpha, "DELETE", f"/api/v1/namespaces/{ns}/configmaps/gone", pbwire.delete_options())
    assert code == 200, st
    assert st["status"] == "Success" and st["details"]["name"] == "gone", st  # the registries' Status
    assert alpha("get", "configmap", "gone", "-n", ns, "-o", "name", "--ignore-not-found").strip() == ""


def test_protobuf_preconditions_are_enforced(alpha: Kubectl, ns: str) -> None:
    alpha("create", "configmap", "kept", "-n", ns, "--from-literal=k=v")
    code, st = raw(
        alpha, "DELETE", f"/api/v1/namespaces/{ns}/configmaps/kept", pbwire.delete_options(uid="not-the-uid")
    )
    assert code == 409 and st["reason"] == "Conflict", st
    assert "Precondition failed: UID in precondition: not-the-uid" in st["message"]
    uid = uid_of(alpha, "configmap", "kept", "-n", ns)
    code, st = raw(alpha, "DELETE", f"/api/v1/namespaces/{ns}/configmaps/kept", pbwire.delete_options(uid=uid))
    assert code == 200, st


def test_protobuf_dry_run_deletes_nothing(alpha: Kubectl, ns: str) -> None:
    alpha("create", "configmap", "dry", "-n", ns, "--from-literal=k=v")
    body = pbwire.delete_options(dry_run=("All",))
    code, st = raw(alpha, "DELETE", f"/api/v1/namespaces/{ns}/configmaps/dry", body)
    assert code == 200, st
    assert alpha("get", "configmap", "dry", "-n", ns, "-o", "name").strip() == "configmap/dry"


def test_protobuf_orphan_policy_keeps_the_dependents(alpha: Kubectl, ns: str) -> None:
    alpha("create", "deployment", "web", "-n", ns, "--image=nginx:1.22")
    rs = alpha("get", "rs", "-n", ns, "-l", "app=web", "-o", "name").strip()
    assert rs.startswith("replicaset.apps/web-")
    code, st = raw(
        alpha, "DELETE", f"/apis/apps/v1/namespaces/{ns}/deployments/web", pbwire.delete_options(policy="Orphan")
    )
    assert code == 200, st
    assert alpha("get", "deploy", "-n", ns, "-o", "name").strip() == ""
    assert alpha("get", rs, "-n", ns, "-o", "jsonpath={.metadata.ownerReferences}") == ""


def test_protobuf_orphan_dependents_false_is_read_too(alpha: Kubectl, ns: str) -> None:
    alpha("create", "deployment", "api", "-n", ns, "--image=nginx:1.22")
    body = pbwire.delete_options(orphan=True)
    code, st = raw(alpha, "DELETE", f"/apis/apps/v1/namespaces/{ns}/deployments/api", body)
    assert code == 200, st
    assert alpha("get", "rs", "-n", ns, "-l", "app=api", "-o", "name").strip().startswith("replicaset.apps/api-")


def test_an_invalid_protobuf_delete_option_is_refused_as_invalid(alpha: Kubectl, ns: str) -> None:
    alpha("create", "configmap", "stay", "-n", ns, "--from-literal=k=v")
    for body, field in (
        (pbwire.delete_options(policy="Sideways"), "propagationPolicy"),
        (pbwire.delete_options(orphan=True, policy="Background"), "propagationPolicy"),
        (pbwire.delete_options(dry_run=("Some",)), "dryRun"),
    ):
        code, st = raw(alpha, "DELETE", f"/api/v1/namespaces/{ns}/configmaps/stay", body)
        assert code == 422 and st["reason"] == "Invalid", st
        assert st["details"]["causes"][0]["field"] == field
    assert alpha("get", "configmap", "stay", "-n", ns, "-o", "name").strip() == "configmap/stay"


def test_deletecollection_takes_a_protobuf_body(alpha: Kubectl, ns: str) -> None:
    for n in ("a", "b"):
        alpha("create", "configmap", n, "-n", ns, "--from-literal=k=v")
    code, st = raw(alpha, "DELETE", f"/api/v1/namespaces/{ns}/configmaps", pbwire.delete_options(grace=0))
    assert code == 200, st
    assert sorted(i["metadata"]["name"] for i in st["items"]) == ["a", "b", "kube-root-ca.crt"]


def test_create_and_update_take_protobuf(alpha: Kubectl, ns: str) -> None:
    code, st = raw(alpha, "POST", f"/api/v1/namespaces/{ns}/configmaps", pbwire.configmap("pb", {"k": "v1"}))
    assert code == 201, st
    rv = st["metadata"]["resourceVersion"]
    body = pbwire.configmap("pb", {"k": "v2"})
    code, st = raw(alpha, "PUT", f"/api/v1/namespaces/{ns}/configmaps/pb", body)
    assert code == 200, st
    assert st["metadata"]["resourceVersion"] != rv
    assert alpha("get", "configmap", "pb", "-n", ns, "-o", "jsonpath={.data.k}") == "v2"


def test_a_field_we_do_not_read_is_refused_not_dropped(alpha: Kubectl, ns: str) -> None:
    # ConfigMap field 99 does not exist in our table: a non-zero value must not vanish silently
    cm = pbwire.field(1, pbwire.object_meta("odd")) + pbwire.field(99, "something")
    code, st = raw(alpha, "POST", f"/api/v1/namespaces/{ns}/configmaps", pbwire.envelope("v1", "ConfigMap", cm))
    assert code == 415 and st["reason"] == "UnsupportedMediaType", st
    assert "field 99 of ConfigMap" in st["message"]
    assert alpha("get", "configmap", "odd", "-n", ns, "--ignore-not-found", "-o", "name") == ""


def test_protobuf_is_refused_where_the_real_server_refuses_it(alpha: Kubectl, ns: str) -> None:
    alpha("create", "configmap", "p", "-n", ns, "--from-literal=k=v")
    code, st = raw(alpha, "PATCH", f"/api/v1/namespaces/{ns}/configmaps/p", pbwire.configmap("p", {"k": "x"}))
    assert code == 415 and st["reason"] == "UnsupportedMediaType", st
    assert alpha("get", "configmap", "p", "-n", ns, "-o", "jsonpath={.data.k}") == "v"


def test_a_scheduler_binds_with_a_protobuf_binding(alpha: Kubectl, ns: str) -> None:
    # what client-go's typed Bind sends: core/v1 Binding{metadata=1, target=2 ObjectReference{kind=1, name=3}}
    pod = (
        "apiVersion: v1\nkind: Pod\nmetadata: {name: manual}\n"
        "spec: {schedulerName: my-scheduler, containers: [{name: c, image: busybox:1.35}]}\n"
    )
    alpha("apply", "-n", ns, "-f", "-", stdin=pod)
    node = alpha("get", "nodes", "-o", "jsonpath={.items[0].metadata.name}")
    target = pbwire.field(1, "Node") + pbwire.field(3, node)
    body = pbwire.envelope("v1", "Binding", pbwire.field(1, pbwire.object_meta("manual")) + pbwire.field(2, target))
    code, st = raw(alpha, "POST", f"/api/v1/namespaces/{ns}/pods/manual/binding", body)
    assert code == 201, st
    assert alpha("get", "pod", "manual", "-n", ns, "-o", "jsonpath={.spec.nodeName}") == node
