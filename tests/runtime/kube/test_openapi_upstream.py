"""The served OpenAPI is upstream's api/openapi-spec/v3 (runtime/kube/upstream/openapi-v3):
the vendored bytes are the ones its README lists, every served kind has its upstream schema,
the served documents name only resources this server serves, and the list extensions
kubectl's client-side apply reads agree with the generated.proto markers the patcher and
server-side apply use (machinery/upstream.py)."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from typing import Any

import pytest

from runtime.kube import registry
from runtime.kube.apiserver import openapi
from runtime.kube.machinery import upstream

README = openapi.SPEC_DIR / "README.md"


def _listed() -> dict[str, tuple[int, str]]:
    rows = re.findall(r"^\| `([\w.]+_openapi\.json)` \| (\d+) \| `([0-9a-f]{64})` \|$", README.read_text(), re.M)
    return {name: (int(size), sha) for name, size, sha in rows}


def test_vendored_files_are_the_ones_the_readme_lists() -> None:
    listed = _listed()
    files = sorted(openapi.SPEC_DIR.glob("*_openapi.json.gz"))
    assert sorted(p.name.removesuffix(".gz") for p in files) == sorted(listed)
    for p in files:
        raw = gzip.decompress(p.read_bytes())
        assert (len(raw), hashlib.sha256(raw).hexdigest()) == listed[p.name.removesuffix(".gz")], p.name
    assert (openapi.SPEC_DIR / "LICENSE").read_text().startswith("\n                                 Apache License")


def _served() -> list[registry.ResourceDef]:
    return [r for g in registry.groups(None) for v in registry.versions(g, None) for r in registry.resources_of(g, v)]


@pytest.mark.parametrize("rdef", _served(), ids=lambda r: f"{r.group or 'core'}/{r.version}/{r.kind}")
def test_every_served_kind_has_its_upstream_schema(rdef: registry.ResourceDef) -> None:
    name = openapi.schema_name(rdef)
    assert name is not None
    doc = openapi.gv_document(rdef.group, rdef.version)
    assert doc is not None
    schema = json.loads(doc)["components"]["schemas"][name]
    assert {"group": rdef.group, "version": rdef.version, "kind": rdef.kind} in schema[
        "x-kubernetes-group-version-kind"
    ]
    if not rdef.virtual:
        # kubectl --validate=strict looks for the fieldValidation parameter of the PATCH operation
        prefix = f"/apis/{rdef.group}/{rdef.version}" if rdef.group else f"/api/{rdef.version}"
        ns = "/namespaces/{namespace}" if rdef.namespaced else ""
        item = json.loads(doc)["paths"][f"{prefix}{ns}/{rdef.resource}/{{name}}"]
        assert "fieldValidation" in [p["name"] for p in item["patch"]["parameters"]]


def test_served_documents_name_only_served_resources() -> None:
    doc = json.loads(openapi.gv_document("", "v1") or b"{}")
    paths = set(doc["paths"])
    assert "/api/v1/namespaces/{namespace}/pods/{name}" in paths
    assert "/api/v1/namespaces/{name}/finalize" in paths
    assert "/api/v1/nodes/{name}" in paths
    # upstream has them, this server does not serve them
    assert not any("componentstatuses" in p or "podtemplates" in p for p in paths)
    up = openapi.upstream_document("", "v1")
    assert up is not None and "/api/v1/componentstatuses" in up["paths"]
    # the schemas stay upstream's, whole
    assert doc["components"] == up["components"]


def test_the_index_hash_is_of_the_served_document() -> None:
    idx = openapi.handle(["openapi", "v3"], {}).body
    url = idx["paths"]["apis/apps/v1"]["serverRelativeURL"]
    doc = openapi.gv_document("apps", "v1")
    assert doc is not None
    assert url == "/openapi/v3/apis/apps/v1?hash=" + hashlib.sha512(doc).hexdigest()[:128].upper()


def _list_fields() -> list[tuple[str, str, dict[str, Any]]]:
    out = []
    for name, s in sorted(openapi.schemas().items()):
        for fld, p in sorted((s.get("properties") or {}).items()):
            if p.get("type") == "array" or any(k.startswith("x-kubernetes-list") for k in p):
                out.append((name, fld, p))
    return out


def test_openapi_list_extensions_agree_with_the_proto_markers() -> None:
    """Every list field of every vendored schema whose type generated.proto has: the
    OpenAPI's patch strategy / merge key / list type / map keys are what machinery/upstream.py
    derives from the proto's markers (types without a proto, apiextensions and
    apiregistration, are not vendored as proto)."""
    compared = 0
    disagree = []
    for name, fld, p in _list_fields():
        msg = upstream.message(name)
        if msg is None:
            continue
        f = msg.json_fields().get(fld)
        assert f is not None, f"{name}.{fld} is in the OpenAPI, not in generated.proto"
        strategy = (p.get("x-kubernetes-patch-strategy") or "").split(",")
        served = (
            p.get("x-kubernetes-patch-merge-key", "") if "merge" in strategy else None,
            p.get("x-kubernetes-list-type"),
            p.get("x-kubernetes-list-map-keys"),
        )
        list_type = f.marker("listType")
        proto = (
            upstream.patch_merge_key(msg.full_name, fld),
            list_type,
            f.markers_of("listMapKey") if list_type == "map" else None,
        )
        compared += 1
        if served != proto:
            disagree.append((name, fld, served, proto))
    assert disagree == []
    assert compared > 200  # the core, apps, batch, networking... lists, not a vacuous pass


def test_known_merge_keys_in_both_sources() -> None:
    """A few facts of upstream's Go tags, so both sources cannot be wrong the same way."""
    s = openapi.schemas()
    ports = s["io.k8s.api.core.v1.ServiceSpec"]["properties"]["ports"]
    assert ports["x-kubernetes-patch-merge-key"] == "port"
    assert ports["x-kubernetes-list-map-keys"] == ["port", "protocol"]
    assert upstream.patch_merge_key("ServiceSpec", "ports") == "port"
    env = s["io.k8s.api.core.v1.Container"]["properties"]["env"]
    assert env["x-kubernetes-patch-merge-key"] == "name"
    assert "x-kubernetes-patch-merge-key" not in s["io.k8s.api.core.v1.NodeSpec"]["properties"]["taints"]
