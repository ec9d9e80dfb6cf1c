"""Discovery documents: legacy (/api, /apis, per group-version) and aggregated v2."""

from __future__ import annotations

import hashlib
from typing import Any

from runtime.kube import registry
from runtime.kube.registry import ResourceDef

AGGREGATED_CT = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"

_SUB_VERBS = {
    "status": ["get", "patch", "update"],
    "scale": ["get", "patch", "update"],
    "finalize": ["update"],
    "token": ["create"],
    "log": ["get"],
    "exec": ["create", "get"],
    "attach": ["create", "get"],
    "portforward": ["create", "get"],
    "proxy": ["create", "delete", "get", "patch", "update"],
    "binding": ["create"],
    "eviction": ["create"],
    "ephemeralcontainers": ["get", "patch", "update"],
    "resize": ["get", "patch", "update"],
}
_SUB_KIND = {
    "scale": ("autoscaling", "v1", "Scale"),
    "token": ("authentication.k8s.io", "v1", "TokenRequest"),
    "log": ("", "", ""),
    "exec": ("", "v1", "PodExecOptions"),
    "attach": ("", "v1", "PodAttachOptions"),
    "portforward": ("", "v1", "PodPortForwardOptions"),
    "binding": ("", "v1", "Binding"),
    "eviction": ("policy", "v1", "Eviction"),
}


def _hash(r: ResourceDef) -> str:
    return hashlib.sha256(f"{r.gr}/{r.version}".encode()).digest()[:8].hex()[:11]


def api_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def _group(g: str, extra: list[ResourceDef] | None = None) -> dict[str, Any]:
    vs = [{"groupVersion": f"{g}/{v}", "version": v} for v in registry.versions(g, extra)]
    return {"name": g, "versions": vs, "preferredVersion": vs[0]}


def api_group_list(extra: list[ResourceDef] | None = None) -> dict[str, Any]:
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [_group(g, extra) for g in registry.groups(extra) if g],
    }


def api_group(g: str, extra: list[ResourceDef] | None = None) -> dict[str, Any] | None:
    if g not in registry.groups(extra) or not g:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(g, extra)}


def resource_list(group: str, version: str, extra: list[ResourceDef] | None = None) -> dict[str, Any] | None:
    rs = registry.resources_of(group, version, extra)
    if not rs:
        return None
    out: list[dict[str, Any]] = []
    for r in rs:
        e: dict[str, Any] = {
            "name": r.resource,
            "singularName": r.singular_name,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": sorted(r.verbs),
        }
        if r.short_names:
            e["shortNames"] = list(r.short_names)
        if r.categories:
            e["categories"] = list(r.categories)
        if not r.virtual:
            e["storageVersionHash"] = _hash(r)
        out.append(e)
        for sub in r.subresources:
            g, v, k = _SUB_KIND.get(sub, (r.group, r.version, r.kind))
            se: dict[str, Any] = {
                "name": f"{r.resource}/{sub}",
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": k or r.kind,
                "verbs": _SUB_VERBS.get(sub, ["get"]),
            }
            if g and g != r.group:
                se["group"], se["version"] = g, v
            out.append(se)
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": out}


def _agg_resource(r: ResourceDef) -> dict[str, Any]:
    e: dict[str, Any] = {
        "resource": r.resource,
        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "scope": "Namespaced" if r.namespaced else "Cluster",
        "singularResource": r.singular_name,
        "verbs": sorted(r.verbs),
    }
    if r.short_names:
        e["shortNames"] = list(r.short_names)
    if r.categories:
        e["categories"] = list(r.categories)
    subs = []
    for sub in r.subresources:
        g, v, k = _SUB_KIND.get(sub, (r.group, r.version, r.kind))
        s: dict[str, Any] = {"subresource": sub, "verbs": _SUB_VERBS.get(sub, ["get"])}
        if k:
            s["responseKind"] = {"group": g, "version": v, "kind": k}
        subs.append(s)
    if subs:
        e["subresources"] = subs
    return e


def aggregated(legacy: bool, extra: list[ResourceDef] | None = None) -> dict[str, Any]:
    items = []
    for g in registry.groups(extra):
        if (g == "") != legacy:
            continue
        versions = [
            {
                "version": v,
                "resources": [_agg_resource(r) for r in registry.resources_of(g, v, extra)],
                "freshness": "Current",
            }
            for v in registry.versions(g, extra)
        ]
        meta: dict[str, Any] = {"name": g} if g else {}
        items.append({"metadata": meta, "versions": versions})
    return {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    }


def wants_aggregated(accept: str) -> bool:
    for part in accept.split(","):
        p = part.replace(" ", "")
        if "as=APIGroupDiscoveryList" in p and "v=v2;" in p + ";" and p.startswith("application/json"):
            return True
    return False
