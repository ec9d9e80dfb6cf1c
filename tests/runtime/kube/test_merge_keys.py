"""Strategic-merge list strategies: the patcher and the served OpenAPI (which kubectl reads
to compute client-side apply patches) answer from the vendored upstream data
(runtime/kube/upstream), and that data says what upstream says.

UPSTREAM below is written from the Go struct tags of k8s.io/api core/v1 types.go
(``patchStrategy:"merge" patchMergeKey:"..."``), which upstream's api/openapi-spec/v3
carries as x-kubernetes-patch-strategy / x-kubernetes-patch-merge-key; None is an
untagged list (replaced whole by a strategic merge patch). If the vendored files or
their loader were wrong, these fail.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from runtime.kube.apiserver import openapi
from runtime.kube.machinery import patch, upstream

UPSTREAM: list[tuple[str, str, str | None]] = [
    # the fields on which patch.py and openapi.py used to disagree
    ("NodeStatus", "addresses", "type"),
    ("ServiceAccount", "secrets", "name"),
    ("PodStatus", "podIPs", "ip"),
    ("PodStatus", "hostIPs", "ip"),
    # one field name, different tags by the type holding it
    ("ServiceSpec", "ports", "port"),
    ("Container", "ports", "containerPort"),
    ("EphemeralContainer", "ports", "containerPort"),
    ("EndpointSubset", "addresses", None),
    ("EndpointSubset", "ports", None),
    # a few of the common ones
    ("PodSpec", "containers", "name"),
    ("PodSpec", "volumes", "name"),
    ("Container", "volumeMounts", "mountPath"),
    ("Container", "env", "name"),
    # NodeSpec.taints is `+listType=atomic` with no patch tag upstream: the hand-written
    # table this replaced had it merged by "key"
    ("NodeSpec", "taints", None),
    ("NamespaceSpec", "finalizers", None),
    ("NodeSpec", "podCIDRs", ""),
    ("PodSpec", "schedulingGates", "name"),
    ("PodSpec", "imagePullSecrets", "name"),
    ("ServiceAccount", "imagePullSecrets", None),
    ("PodStatus", "conditions", "type"),
    ("ObjectMeta", "ownerReferences", "uid"),
    ("ObjectMeta", "finalizers", ""),
    ("ServiceSpec", "externalIPs", None),
]


@pytest.fixture(scope="module")
def core_v1() -> dict[str, Any]:
    doc = openapi.gv_document("", "v1")
    assert doc is not None
    return json.loads(doc)["components"]["schemas"]


def _served(schemas: dict[str, Any], short: str, fld: str) -> tuple[str | None, str | None]:
    full = f"io.k8s.apimachinery.pkg.apis.meta.v1.{short}" if short == "ObjectMeta" else f"io.k8s.api.core.v1.{short}"
    prop = schemas[full]["properties"][fld]
    # upstream writes "merge,retainKeys" for PodSpec.volumes: the merge part is what this checks
    strategy = prop.get("x-kubernetes-patch-strategy")
    merge = "merge" if strategy is not None and "merge" in strategy.split(",") else strategy
    return merge, prop.get("x-kubernetes-patch-merge-key")


@pytest.mark.parametrize(("owner", "fld", "key"), UPSTREAM)
def test_served_openapi_advertises_the_upstream_strategy(
    core_v1: dict[str, Any], owner: str, fld: str, key: str | None
) -> None:
    want = (None, None) if key is None else ("merge", key or None)
    assert _served(core_v1, owner, fld) == want
    assert patch.schema_merge_key(owner, fld) == key


# where each list sits in an object, as the patcher walks it
_PATHS = {
    ("NodeStatus", "addresses"): ("status",),
    ("ServiceAccount", "secrets"): (),
    ("PodStatus", "podIPs"): ("status",),
    ("PodStatus", "hostIPs"): ("status",),
    ("ServiceSpec", "ports"): ("spec",),
    ("Container", "ports"): ("spec", "template", "spec", "containers"),
    ("EphemeralContainer", "ports"): ("spec", "ephemeralContainers"),
}


@pytest.mark.parametrize(("owner", "fld"), list(_PATHS))
def test_the_patcher_uses_the_same_key_as_the_served_openapi(core_v1: dict[str, Any], owner: str, fld: str) -> None:
    strategy, key = _served(core_v1, owner, fld)
    assert strategy == "merge"
    assert patch.merge_key(_PATHS[owner, fld], fld) == key


def test_service_account_secrets_merge_by_name() -> None:
    live = {"secrets": [{"name": "a"}, {"name": "b"}]}
    out = patch.strategic_merge(live, {"secrets": [{"name": "c"}, {"name": "a", "$patch": "delete"}]})
    assert sorted(s["name"] for s in out["secrets"]) == ["b", "c"]


def test_pod_ips_merge_by_ip_and_node_addresses_by_type() -> None:
    live = {
        "status": {
            "podIPs": [{"ip": "10.0.0.5"}],
            "hostIPs": [{"ip": "192.168.1.2"}],
            "addresses": [{"type": "InternalIP", "address": "192.168.1.2"}, {"type": "Hostname", "address": "n1"}],
        }
    }
    p = {
        "status": {
            "podIPs": [{"ip": "fd00::5"}],
            "hostIPs": [{"ip": "fd00::2"}],
            "addresses": [{"type": "Hostname", "address": "node-1"}],
        }
    }
    st = patch.strategic_merge(live, p)["status"]
    assert sorted(x["ip"] for x in st["podIPs"]) == ["10.0.0.5", "fd00::5"]
    assert sorted(x["ip"] for x in st["hostIPs"]) == ["192.168.1.2", "fd00::2"]
    assert sorted((a["type"], a["address"]) for a in st["addresses"]) == [
        ("Hostname", "node-1"),
        ("InternalIP", "192.168.1.2"),
    ]


def test_endpoints_subset_addresses_are_replaced_whole() -> None:
    """EndpointSubset.addresses carries no patch tag upstream (only NodeStatus.addresses does)."""
    live = {"subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}]}
    out = patch.strategic_merge(live, {"subsets": [{"addresses": [{"ip": "10.0.0.2"}], "ports": [{"port": 80}]}]})
    assert out["subsets"] == [{"addresses": [{"ip": "10.0.0.2"}], "ports": [{"port": 80}]}]


# the same lists, seen through the kind of the object that holds them
_KIND_PATHS = [
    ("Deployment", ("spec", "template", "spec", "containers"), "ports", "containerPort"),
    ("Service", ("spec",), "ports", "port"),
    ("Node", ("status",), "addresses", "type"),
    ("Node", ("spec",), "taints", None),
    ("Endpoints", ("subsets",), "addresses", None),
    ("Namespace", ("spec",), "finalizers", None),
    ("Namespace", ("metadata",), "finalizers", ""),
    ("Deployment", ("status",), "conditions", "type"),
    ("NetworkPolicy", ("spec", "ingress"), "ports", None),
]


@pytest.mark.parametrize(("kind", "path", "fld", "key"), _KIND_PATHS)
def test_merge_key_by_kind_follows_upstream_types(kind: str, path: tuple[str, ...], fld: str, key: str | None) -> None:
    assert patch.merge_key(path, fld, kind) == key


def test_served_openapi_carries_upstream_list_types() -> None:
    doc = openapi.gv_document("", "v1")
    assert doc is not None
    ports = json.loads(doc)["components"]["schemas"]["io.k8s.api.core.v1.ServiceSpec"]["properties"]["ports"]
    assert ports["x-kubernetes-list-type"] == "map"
    assert ports["x-kubernetes-list-map-keys"] == ["port", "protocol"]
    volumes = json.loads(doc)["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"]["properties"]["volumes"]
    assert volumes["x-kubernetes-patch-strategy"] == "merge,retainKeys"


def test_vendored_protos_carry_upstream_field_numbers() -> None:
    """A few field numbers of k8s.io/api and apimachinery, from their generated.proto."""
    pod = upstream.message("k8s.io.api.core.v1.Pod")
    assert pod is not None
    assert {n: (f.number, f.type) for n, f in pod.fields.items()} == {
        "metadata": (1, "k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta"),
        "spec": (2, "k8s.io.api.core.v1.PodSpec"),
        "status": (3, "k8s.io.api.core.v1.PodStatus"),
    }
    spec = upstream.message("PodSpec")
    assert spec is not None
    assert (spec.fields["containers"].number, spec.fields["containers"].repeated) == (2, True)
    assert spec.fields["nodeSelector"].map_key == "string"
    meta = upstream.message("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
    assert meta is not None
    assert (meta.fields["labels"].number, meta.fields["managedFields"].number) == (11, 17)
    deploy = upstream.message("k8s.io.api.apps.v1.DeploymentSpec")
    assert deploy is not None and deploy.fields["replicas"].number == 1


def test_the_proto_parser_refuses_what_it_does_not_know() -> None:
    with pytest.raises(upstream.ProtoError):
        upstream.parse("package a.b;\nmessage M {\n  oneof x {\n  }\n}\n")
    with pytest.raises(upstream.ProtoError):
        upstream.parse("package a.b;\nmessage M {\n  optional string s = 1;\n")
    msgs = upstream.parse(
        "package a.b;\nmessage M {\n  // +patchMergeKey=k\n  // +patchStrategy=merge\n"
        "  repeated N items = 3;\n  map<string, .x.Q> q = 4;\n}\n"
    )
    f = msgs[0].fields["items"]
    assert (f.number, f.type, f.repeated, f.marker("patchMergeKey")) == (3, "a.b.N", True, "k")
    assert (msgs[0].fields["q"].map_key, msgs[0].fields["q"].type) == ("string", "x.Q")
