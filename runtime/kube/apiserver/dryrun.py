"""Validate manifests against a lab cluster without storing anything (the lab editor).

The editor asks, as the student types, what ``kubectl apply --dry-run=server
--validate=strict -f FILE`` would answer, so the messages are the cluster's own: unknown
fields, wrong values, missing required fields, kinds it does not serve. Each object goes
through the cluster's own request handling (``Cluster.handle``: routing, RBAC, admission,
defaulting, validation) as a ``POST`` with ``dryRun=All`` and ``fieldValidation=Strict``;
when the object exists already (409 ``AlreadyExists``), as a dry-run server-side apply
(``PATCH`` ``application/apply-patch+yaml``, ``force=true``), which is what applying it
again would validate. A dry run stores nothing, takes no resourceVersion, runs no
controller (apiserver/cluster.py: ``create``/``update`` return before ``store.put``).

The object is data, never routing: the resource is looked up by the exact
``(group, version, kind)`` among the kinds the cluster serves (its registry and its CRDs),
and the request path is built from that registry entry, the namespace and the name only
after they were checked to be DNS labels/subdomains (no ``/``, no ``..``), so no value of
``apiVersion``, ``kind``, ``metadata.namespace`` or ``metadata.name`` can route the request
anywhere but that collection of this one cluster. Nothing here opens a connection.

Runs on the API server's loop, as every request to a cluster does (service.py).
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from runtime.kube import registry
from runtime.kube.apiserver.cluster import Cluster
from runtime.kube.meta import Reply, Request, User

log = logging.getLogger("runtime.kube.apiserver.dryrun")

MAX_OBJECTS = 50  # documents of one file validated per request
USER = User("kubelab-editor", ("system:masters", "system:authenticated"))
FIELD_MANAGER = "kubectl"

_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def _failure(code: int, reason: str, message: str, field: str = "") -> dict[str, Any]:
    status: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if field:
        status["details"] = {"causes": [{"reason": "FieldValueInvalid", "message": message, "field": field}]}
    return {"code": code, "status": status, "warnings": []}


def _resource_def(cluster: Cluster, api_version: str, kind: str) -> registry.ResourceDef | None:
    group, _, version = api_version.rpartition("/")
    found = registry.BY_GVK.get((group, version, kind))
    if found is not None:
        return found
    for d in cluster.custom_defs():
        if (d.group, d.version, d.kind) == (group, version, kind):
            return d
    return None


def validate(cluster: Cluster, obj: Any) -> dict[str, Any]:
    """``{"code", "status" (a v1 Status, None when valid), "warnings"}`` for one object."""
    if not isinstance(obj, dict):
        return _failure(400, "BadRequest", "a manifest is a mapping (apiVersion, kind, metadata, ...)")
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if not isinstance(kind, str) or not kind:
        return _failure(400, "BadRequest", "Object 'Kind' is missing", "kind")
    if not isinstance(api_version, str) or not api_version:
        return _failure(400, "BadRequest", "Object 'apiVersion' is missing", "apiVersion")
    rdef = _resource_def(cluster, api_version, kind)
    if rdef is None or rdef.virtual:
        return _failure(
            404,
            "NotFound",
            f'no matches for kind "{kind}" in version "{api_version}": ensure CRDs are installed first',
            "kind",
        )
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    prefix = f"/api/{rdef.version}" if not rdef.group else f"/apis/{rdef.group}/{rdef.version}"
    if rdef.namespaced:
        ns = meta.get("namespace") or "default"
        if not isinstance(ns, str) or not _LABEL.fullmatch(ns) or len(ns) > 63:
            return _failure(
                422,
                "Invalid",
                f"Invalid value: {json.dumps(ns)}: a lowercase RFC 1123 label must consist of lower case "
                "alphanumeric characters or '-', and must start and end with an alphanumeric character",
                "metadata.namespace",
            )
        prefix += f"/namespaces/{ns}"
    collection = f"{prefix}/{rdef.resource}"
    body = json.dumps(obj).encode()
    headers = {"content-type": "application/json", "user-agent": "kubelab-editor"}
    query = {"dryRun": "All", "fieldValidation": "Strict"}
    try:
        reply = cluster.handle(Request("POST", collection, dict(query), dict(headers), body, USER))
        name = meta.get("name")
        if (
            isinstance(reply, Reply)
            and reply.status == 409
            and isinstance(reply.body, dict)
            and reply.body.get("reason") == "AlreadyExists"
            and isinstance(name, str)
            and _SUBDOMAIN.fullmatch(name)
            and len(name) <= 253
        ):
            # what applying the file again would be checked as: an apply of it over the live object
            query.update(fieldManager=FIELD_MANAGER, force="true")
            headers["content-type"] = "application/apply-patch+yaml"
            reply = cluster.handle(Request("PATCH", f"{collection}/{name}", query, headers, body, USER))
    except Exception:  # a bug in one kind's strategy must not fail the whole file
        log.exception("dry run of a %s in cluster %s failed", kind, cluster.name)
        return _failure(500, "InternalError", "the lab cluster could not validate this object")
    if not isinstance(reply, Reply):  # a POST or PATCH is never a watch
        return _failure(500, "InternalError", "the lab cluster gave no answer for this object")
    warnings = list(reply.warnings)
    if reply.status < 400:
        return {"code": reply.status, "status": None, "warnings": warnings}
    return {"code": reply.status, "status": reply.body, "warnings": warnings}


def validate_all(cluster: Cluster, objects: list[Any]) -> list[dict[str, Any]]:
    """Each object of one file, in order. A namespace that an earlier document of the same
    file creates does not exist yet in a dry run; ``kubectl apply -f`` creates it first, so
    objects in it are validated as if in ``default`` rather than refused for it."""
    created: set[str] = set()
    out = []
    for obj in objects[:MAX_OBJECTS]:
        meta = obj.get("metadata") if isinstance(obj, dict) else None
        if isinstance(obj, dict) and isinstance(meta, dict):
            ns = meta.get("namespace")
            if isinstance(ns, str) and ns in created and cluster.store.get("namespaces", "", ns) is None:
                obj = {**obj, "metadata": {**meta, "namespace": "default"}}
            name = meta.get("name")
            if isinstance(name, str) and obj.get("kind") == "Namespace" and obj.get("apiVersion") == "v1":
                created.add(name)
        out.append(validate(cluster, obj))
    return out
