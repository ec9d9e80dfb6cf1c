"""OpenAPI v3 documents for every served group-version, and strict field validation.

kubectl reads them for three things: ``--validate=strict`` (it checks that the
PATCH operation of the kind declares the ``fieldValidation`` query parameter,
then leaves validation to the server), ``kubectl explain`` (schemas with
descriptions and ``x-kubernetes-group-version-kind``) and client-side apply
(``x-kubernetes-patch-merge-key`` / ``-strategy`` to build strategic merge
patches).

The schemas are not hand-written: they are read, lazily and without importing
it, from the model sources of the official ``kubernetes`` Python client (a
dependency anyway), which is generated from the same OpenAPI spec
kube-apiserver serves. The Python sources are parsed with ``ast`` (importing
the package would pull in 800 model modules), and each parsed model is cached.
The list extensions (``x-kubernetes-patch-strategy`` / ``-patch-merge-key``,
``x-kubernetes-list-type`` / ``-list-map-keys``) come from upstream's vendored
generated.proto markers (machinery/upstream.py), as the patcher's do.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import json
import re
from pathlib import Path
from typing import Any

from runtime.kube import registry
from runtime.kube.machinery import upstream
from runtime.kube.machinery.apierrors import ApiError
from runtime.kube.machinery.patch import schema_merge_key
from runtime.kube.machinery.quantity import QUANTITY_MSG, Quantity, QuantityError
from runtime.kube.meta import Obj, Reply
from runtime.kube.registry import ResourceDef

_META_TYPES = {
    "V1ObjectMeta",
    "V1ListMeta",
    "V1LabelSelector",
    "V1LabelSelectorRequirement",
    "V1OwnerReference",
    "V1ManagedFieldsEntry",
    "V1Condition",
    "V1Status",
    "V1StatusDetails",
    "V1StatusCause",
    "V1DeleteOptions",
    "V1Preconditions",
}
_GROUP_PKG = {
    "": "io.k8s.api.core.v1",
    "apps": "io.k8s.api.apps.v1",
    "batch": "io.k8s.api.batch.v1",
    "autoscaling": "io.k8s.api.autoscaling.v2",
    "policy": "io.k8s.api.policy.v1",
    "scheduling.k8s.io": "io.k8s.api.scheduling.v1",
    "storage.k8s.io": "io.k8s.api.storage.v1",
    "apiextensions.k8s.io": "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1",
    "apiregistration.k8s.io": "io.k8s.kube-aggregator.pkg.apis.apiregistration.v1",
    "networking.k8s.io": "io.k8s.api.networking.v1",
    "rbac.authorization.k8s.io": "io.k8s.api.rbac.v1",
    "authorization.k8s.io": "io.k8s.api.authorization.v1",
    "authentication.k8s.io": "io.k8s.api.authentication.v1",
    "coordination.k8s.io": "io.k8s.api.coordination.v1",
    "discovery.k8s.io": "io.k8s.api.discovery.v1",
}


def _models_dir() -> Path | None:
    spec = importlib.util.find_spec("kubernetes")
    if spec is None or spec.origin is None:
        return None
    d = Path(spec.origin).parent / "client" / "models"
    return d if d.is_dir() else None


def _snake(name: str) -> str:
    s = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name)
    s = re.sub(r"(?<=[A-Z])([A-Z][a-z])", r"_\1", s)
    return s.lower()


@functools.lru_cache(maxsize=2048)
def _model(cls: str) -> tuple[str, dict[str, tuple[str, str, bool]]] | None:
    """(description, {json name: (python type, description, required)}) of a client model."""
    d = _models_dir()
    if d is None:
        return None
    path = d / f"{_snake(cls)}.py"
    if not path.exists():
        return None
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == cls:
            break
    else:
        return None
    doc = (ast.get_docstring(node) or "").split("\n\n    Attributes:")[0]
    doc = doc.split("\nAttributes:")[0].strip()
    types: dict[str, str] = {}
    amap: dict[str, str] = {}
    descs: dict[str, str] = {}
    required: set[str] = set()
    for st in node.body:
        if not isinstance(st, ast.AnnAssign) or not isinstance(st.target, ast.Name):
            continue
        tname = st.target.id
        if tname == "openapi_types" and st.value is not None:
            types = ast.literal_eval(st.value)
            continue
        if tname == "attribute_map" and st.value is not None:
            amap = ast.literal_eval(st.value)
            continue
        ann = ast.unparse(st.annotation)
        if not ann.startswith("Optional[") and not ann.startswith("ClassVar"):
            required.add(tname)
        if isinstance(st.value, ast.Call):
            for kw in st.value.keywords:
                if kw.arg == "description" and isinstance(kw.value, ast.Constant):
                    descs[tname] = str(kw.value.value)
    props = {amap.get(k, k): (t, descs.get(k, ""), k in required) for k, t in types.items()}
    return doc, props


def _schema_name(cls: str, group: str) -> str:
    # the client prefixes kinds whose names clash across groups (DiscoveryV1EndpointPort)
    base = re.sub(r"^(Core|Discovery|Events|Storage|Authentication)?V\d+(alpha\d+|beta\d+)?", "", cls)
    if cls in _META_TYPES:
        return f"io.k8s.apimachinery.pkg.apis.meta.v1.{base}"
    return f"{_GROUP_PKG.get(group, 'io.k8s.api.core.v1')}.{base}"


_LIST = re.compile(r"[lL]ist\[(.+)\]")
_DICT = re.compile(r"(?:dict\(str, |Dict\[str, )(.+)[\])]")


def _type_schema(t: str, group: str, refs: dict[str, str]) -> Obj:
    if t == "str":
        return {"type": "string"}
    if t == "int":
        return {"type": "integer", "format": "int32"}
    if t == "float":
        return {"type": "number", "format": "double"}
    if t == "bool":
        return {"type": "boolean"}
    if t == "datetime":
        return {"type": "string", "format": "date-time"}
    if t == "object":
        return {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]}
    m = _LIST.fullmatch(t)
    if m:
        return {"type": "array", "items": _type_schema(m.group(1), group, refs)}
    m = _DICT.fullmatch(t)
    if m:
        return {"type": "object", "additionalProperties": _type_schema(m.group(1), group, refs)}
    name = _schema_name(t, group)
    refs[name] = t
    return {"allOf": [{"$ref": f"#/components/schemas/{name}"}]}


def _list_extensions(schema: str, fld: str) -> Obj:
    """Upstream's list extensions of ``schema``.``fld``, from the vendored generated.proto
    markers (the same Go comments upstream's OpenAPI generator reads)."""
    out: Obj = {}
    # _schema_name files core/v1 types reached from another group under that group's package
    # (io.k8s.api.apps.v1.PodSpec); the short name then finds the upstream type
    msg = upstream.message(schema) or upstream.message(schema.rsplit(".", 1)[-1])
    f = msg.json_fields().get(fld) if msg is not None else None
    if msg is None or f is None:
        return out
    key = schema_merge_key(msg.full_name, fld)
    if key is not None:
        if key:
            out["x-kubernetes-patch-merge-key"] = key
        out["x-kubernetes-patch-strategy"] = "merge"
    list_type = f.marker("listType")
    if list_type:
        out["x-kubernetes-list-type"] = list_type
        if list_type == "map":
            out["x-kubernetes-list-map-keys"] = f.markers_of("listMapKey")
    return out


def _component(cls: str, group: str, refs: dict[str, str], gvk: Obj | None) -> Obj:
    info = _model(cls)
    if info is None:
        return {"type": "object"}
    doc, props = info
    out: Obj = {"description": doc, "type": "object", "properties": {}}
    req = []
    for name, (t, desc, required) in sorted(props.items()):
        s = _type_schema(t, group, refs)
        if desc:
            s["description"] = desc
        if _LIST.fullmatch(t):
            s.update(_list_extensions(_schema_name(cls, group), name))
        out["properties"][name] = s
        if required:
            req.append(name)
    if req:
        out["required"] = req
    if gvk is not None:
        out["x-kubernetes-group-version-kind"] = [gvk]
    return out


def _client_class(r: ResourceDef) -> str:
    ver = r.version[0].upper() + r.version[1:]
    return f"{ver}{r.kind}"


@functools.lru_cache(maxsize=32)
def gv_document(group: str, version: str) -> bytes | None:
    rs = registry.resources_of(group, version)
    if not rs:
        return None
    schemas: dict[str, Obj] = {}
    refs: dict[str, str] = {}
    paths: dict[str, Obj] = {}
    prefix = f"/apis/{group}/{version}" if group else f"/api/{version}"
    for r in rs:
        gvk = {"group": r.group, "version": r.version, "kind": r.kind}
        cls = _client_class(r)
        name = _schema_name(cls, r.group)
        schemas[name] = _component(cls, r.group, refs, gvk)
        ref = {"$ref": f"#/components/schemas/{name}"}
        params = [
            {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
            {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
            {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
        ]
        body = {"content": {"application/json": {"schema": ref}}, "required": True}
        ok = {"200": {"description": "OK", "content": {"application/json": {"schema": ref}}}}
        ext = {"x-kubernetes-group-version-kind": gvk}
        item = (
            f"{prefix}/namespaces/{{namespace}}/{r.resource}/{{name}}"
            if r.namespaced
            else f"{prefix}/{r.resource}/{{name}}"
        )
        coll = f"{prefix}/namespaces/{{namespace}}/{r.resource}" if r.namespaced else f"{prefix}/{r.resource}"
        op = {"parameters": params, "responses": ok, **ext}
        if r.virtual:
            paths[coll] = {"post": {**op, "requestBody": body, "x-kubernetes-action": "post"}}
            continue
        patch_body = {
            "content": {
                ct: {"schema": {"type": "object"}}
                for ct in (
                    "application/apply-patch+yaml",
                    "application/json-patch+json",
                    "application/merge-patch+json",
                    "application/strategic-merge-patch+json",
                )
            },
            "required": True,
        }
        paths[coll] = {
            "post": {**op, "requestBody": body, "x-kubernetes-action": "post"},
            "get": {"responses": ok, "x-kubernetes-action": "list", **ext},
        }
        paths[item] = {
            "get": {"responses": ok, "x-kubernetes-action": "get", **ext},
            "put": {**op, "requestBody": body, "x-kubernetes-action": "put"},
            "patch": {**op, "requestBody": patch_body, "x-kubernetes-action": "patch"},
            "delete": {"responses": ok, "x-kubernetes-action": "delete", **ext},
        }
    done: set[str] = set(schemas)
    while True:
        todo = [(n, c) for n, c in refs.items() if n not in done]
        if not todo:
            break
        for n, c in todo:
            done.add(n)
            schemas[n] = _component(c, group, refs, None)
    doc = {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.37.1"},
        "paths": paths,
        "components": {"schemas": schemas},
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def custom_document(group: str, version: str, defs: list[ResourceDef]) -> bytes:
    """OpenAPI v3 for a CRD group-version: the CRDs' schemas plus ObjectMeta."""
    schemas: dict[str, Obj] = {}
    refs: dict[str, str] = {}
    paths: dict[str, Obj] = {}
    meta_name = _schema_name("V1ObjectMeta", "")
    rev = ".".join(reversed(group.split(".")))
    for r in defs:
        gvk = {"group": r.group, "version": r.version, "kind": r.kind}
        name = f"{rev}.{r.version}.{r.kind}"
        s = json.loads(json.dumps(r.schema or {"type": "object"}))
        props = s.setdefault("properties", {})
        props["apiVersion"] = {"type": "string", "description": _API_VERSION_DESC}
        props["kind"] = {"type": "string", "description": _KIND_DESC}
        props["metadata"] = {
            "allOf": [{"$ref": f"#/components/schemas/{meta_name}"}],
            "description": "Standard object's metadata. More info: "
            "https://git.k8s.io/community/contributors/devel/sig-architecture/"
            "api-conventions.md#metadata",
        }
        s["type"] = "object"
        s["x-kubernetes-group-version-kind"] = [gvk]
        schemas[name] = s
        ref = {"$ref": f"#/components/schemas/{name}"}
        params = [
            {"name": n, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
            for n in ("dryRun", "fieldManager", "fieldValidation")
        ]
        body = {"content": {"application/json": {"schema": ref}}, "required": True}
        ok = {"200": {"description": "OK", "content": {"application/json": {"schema": ref}}}}
        op = {"parameters": params, "responses": ok, "x-kubernetes-group-version-kind": gvk}
        prefix = f"/apis/{group}/{version}"
        coll = f"{prefix}/namespaces/{{namespace}}/{r.resource}" if r.namespaced else f"{prefix}/{r.resource}"
        paths[coll] = {"post": {**op, "requestBody": body, "x-kubernetes-action": "post"}}
        patch_body = {
            "content": {
                ct: {"schema": {"type": "object"}}
                for ct in (
                    "application/apply-patch+yaml",
                    "application/json-patch+json",
                    "application/merge-patch+json",
                )
            },
            "required": True,
        }
        paths[f"{coll}/{{name}}"] = {
            "put": {**op, "requestBody": body, "x-kubernetes-action": "put"},
            "patch": {**op, "requestBody": patch_body, "x-kubernetes-action": "patch"},
        }
    schemas[meta_name] = _component("V1ObjectMeta", "", refs, None)
    done = set(schemas)
    while True:
        todo = [(n, c) for n, c in refs.items() if n not in done]
        if not todo:
            break
        for n, c in todo:
            done.add(n)
            schemas[n] = _component(c, "", refs, None)
    doc = {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes CRD Swagger", "version": "v0.1.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }
    return json.dumps(doc, separators=(",", ":")).encode()


_API_VERSION_DESC = (
    "APIVersion defines the versioned schema of this representation of an object. Servers should convert "
    "recognized schemas to the latest internal value, and may reject unrecognized values. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources"
)
_KIND_DESC = (
    "Kind is a string value representing the REST resource this object represents. Servers may infer this "
    "from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"
)


def _gv_paths(extra: list[ResourceDef] | None = None) -> list[tuple[str, str, str]]:
    out = []
    for g in registry.groups(extra):
        for v in registry.versions(g, extra):
            key = f"apis/{g}/{v}" if g else f"api/{v}"
            out.append((key, g, v))
    return out


def handle(segs: list[str], query: dict[str, str], extra: list[ResourceDef] | None = None, accept: str = "") -> Reply:
    if segs == ["openapi", "v2"]:
        wanted = [a.split(";")[0].strip() for a in accept.split(",") if a.strip()]
        if wanted and not any(w in ("application/json", "*/*", "application/*") for w in wanted):
            raise ApiError(
                406,
                "NotAcceptable",
                "only the following media types are accepted: application/json",
            )
        return Reply(200, RawJSON(v2_document()))
    if segs[:2] == ["openapi", "v3"]:
        if len(segs) == 2:
            paths = {}
            for key, _g, _v in _gv_paths(extra):
                h = hashlib.sha512(key.encode() + b"v1.37.1").hexdigest()[:128].upper()
                paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={h}"}
            return Reply(200, {"paths": paths})
        key = "/".join(segs[2:])
        for k, g, v in _gv_paths(extra):
            if k == key:
                custom = [r for r in extra or [] if r.group == g and r.version == v]
                doc = custom_document(g, v, custom) if custom else gv_document(g, v)
                if doc is not None:
                    return Reply(200, RawJSON(doc))
    raise ApiError(404, "NotFound", "the server could not find the requested resource")


_V2_REF = "#/components/schemas/"


def _to_v2(node: Any) -> Any:
    """An OpenAPI v3 schema as Swagger 2.0 writes it (refs under #/definitions/).

    ``properties`` is a map of names to schemas, never a schema itself: JSONSchemaProps has
    properties named ``$ref``, ``allOf`` and ``x-kubernetes-int-or-string``.
    """
    if isinstance(node, list):
        return [_to_v2(x) for x in node]
    if not isinstance(node, dict):
        return node
    out: Obj = {k: ({n: _to_v2(v) for n, v in node[k].items()} if k == "properties" else _to_v2(node[k])) for k in node}
    if node.get("x-kubernetes-int-or-string") is True:
        out = {k: v for k, v in out.items() if k not in ("anyOf", "x-kubernetes-int-or-string")}
        return {**out, "type": "string", "format": "int-or-string"}
    all_of = out.get("allOf")
    if isinstance(all_of, list) and len(all_of) == 1 and isinstance(all_of[0].get("$ref"), str):
        rest = {k: v for k, v in out.items() if k != "allOf"}
        return {"$ref": all_of[0]["$ref"], **rest}
    ref = out.get("$ref")
    if isinstance(ref, str):
        out["$ref"] = "#/definitions/" + ref.removeprefix(_V2_REF)
    return out


def _op_to_v2(op: Obj) -> Obj:
    out: Obj = {k: v for k, v in op.items() if k not in ("requestBody", "responses", "parameters")}
    params = [
        {"name": p["name"], "in": p["in"], "type": "string", "uniqueItems": True} for p in op.get("parameters") or []
    ]
    body = op.get("requestBody")
    if body:
        content: Obj = body.get("content") or {}
        first: Obj = next(iter(content.values()), {})
        schema = first.get("schema", {"type": "object"})
        params.insert(0, {"name": "body", "in": "body", "required": True, "schema": _to_v2(schema)})
        out["consumes"] = list(content)
    if params:
        out["parameters"] = params
    responses: Obj = {}
    for code, r in (op.get("responses") or {}).items():
        content = r.get("content") or {}
        entry: Obj = {"description": r.get("description", "")}
        if content:
            entry["schema"] = _to_v2(next(iter(content.values())).get("schema", {}))
        responses[code] = entry
    out["responses"] = responses or {"200": {"description": "OK"}}
    out["produces"] = ["application/json", "application/yaml", "application/vnd.kubernetes.protobuf"]
    out["schemes"] = ["https"]
    return out


@functools.lru_cache(maxsize=1)
def v2_document() -> bytes:
    """Swagger 2.0 for the built-in kinds, converted from the same v3 documents.

    kubectl 1.37 reads only /openapi/v3 (explain, apply, edit, diff, --validate); it asks for
    v2 only as protobuf (``kubectl explain --output=plaintext-openapiv2``), which this
    server does not encode, so that request gets 406 and kubectl reports the failure. The
    JSON form is for other clients (older kubectl, client libraries, Swagger tooling).
    """
    paths: Obj = {}
    definitions: Obj = {}
    for _key, g, v in _gv_paths():
        raw = gv_document(g, v)
        if raw is None:
            continue
        doc = json.loads(raw)
        for name, schema in doc["components"]["schemas"].items():
            definitions.setdefault(name, _to_v2(schema))
        for path, item in doc["paths"].items():
            paths[path] = {verb: _op_to_v2(op) for verb, op in item.items()}
    out = {
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": "v1.37.1"},
        "paths": paths,
        "definitions": definitions,
        "securityDefinitions": {"BearerToken": {"type": "apiKey", "name": "authorization", "in": "header"}},
        "security": [{"BearerToken": []}],
    }
    return json.dumps(out, separators=(",", ":")).encode()


class RawJSON(bytes):
    """A response body that is already JSON-encoded."""


# -- strict field validation ---------------------------------------------------------


def unknown_fields(rdef: ResourceDef, obj: Obj) -> list[str]:
    """Paths of fields the kind's schema does not know (``spec.foo``, ``spec.containers[0].x``)."""
    cls = _client_class(rdef)
    if _model(cls) is None:
        return []
    out: list[str] = []
    _walk(obj, f"{cls}", "", out, top=True)
    return out


def _walk_type(v: Any, t: str, path: str, out: list[str]) -> None:
    m = _LIST.fullmatch(t)
    if m:
        if isinstance(v, list):
            for i, x in enumerate(v):
                _walk_type(x, m.group(1), f"{path}[{i}]", out)
        return
    m = _DICT.fullmatch(t)
    if m:
        if isinstance(v, dict):
            for k, x in v.items():
                _walk_type(x, m.group(1), f"{path}[{k}]", out)
        return
    if t in ("str", "int", "float", "bool", "datetime", "object"):
        return
    _walk(v, t, path, out)


def _walk(v: Any, cls: str, path: str, out: list[str], top: bool = False) -> None:
    if not isinstance(v, dict):
        return
    info = _model(cls)
    if info is None:
        return
    _, props = info
    for k, x in v.items():
        if top and k in ("apiVersion", "kind"):
            continue
        p = f"{path}.{k}" if path else k
        if k not in props:
            out.append(p)
            continue
        _walk_type(x, props[k][0], p, out)


# -- type errors, as decoding into the Go structs finds them --------------------------

_GO_SCALAR = {
    "str": "string",
    "bytes": "[]uint8",  # base64 in JSON (Secret.data)
    "int": "int32",
    "float": "float64",
    "bool": "bool",
    "datetime": "v1.Time",
}
# resource.Quantity fields: the client models type them as strings, but a Quantity decodes
# from a JSON number too (``cpu: 1``, ``storage: 1e9``)
_QUANTITY_FIELDS = frozenset(
    {
        "limits",
        "requests",
        "hard",
        "used",
        "capacity",
        "allocatable",
        "allocatedResources",
        "sizeLimit",
        "default",
        "defaultRequest",
        "max",
        "min",
        "maxLimitRequestRatio",
        "overhead",
        "podFixed",
    }
)


def _go_type(t: str) -> str:
    m = _LIST.fullmatch(t)
    if m:
        return "[]" + _go_type(m.group(1))
    m = _DICT.fullmatch(t)
    if m:
        return "map[string]" + _go_type(m.group(1))
    if t in _GO_SCALAR:
        return _GO_SCALAR[t]
    if t == "object":
        return "interface {}"
    v = re.match(r"^(?:Core|Discovery|Events|Storage|Authentication)?(V\d+(?:alpha\d+|beta\d+)?)(.*)$", t)
    return f"{v.group(1).lower()}.{v.group(2)}" if v else t


def _json_kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    return "array" if isinstance(v, list) else "object"


def _fits(v: Any, t: str, quantity: bool) -> bool:
    if v is None or t == "object":
        return True
    if _LIST.fullmatch(t):
        return isinstance(v, list)
    if _DICT.fullmatch(t):
        return isinstance(v, dict)
    if t in ("str", "bytes", "datetime"):
        return isinstance(v, str) or (quantity and isinstance(v, (int, float)) and not isinstance(v, bool))
    if t == "int":
        return isinstance(v, int) and not isinstance(v, bool)
    if t == "float":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if t == "bool":
        return isinstance(v, bool)
    return isinstance(v, dict)  # a struct


def type_errors(rdef: ResourceDef, obj: Obj) -> list[tuple[str, str]]:
    """``(field path, message)`` of each value whose JSON type its field cannot take
    (``replicas: three``, a label's value ``1``, ``containers`` as a map), in the words of
    Go's encoding/json, which kube-apiserver decodes with before anything else:
    ``json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of
    type int32``. Empty for kinds without a client model (custom resources)."""
    cls = _client_class(rdef)
    if rdef.custom or _model(cls) is None:
        return []
    out: list[tuple[str, str]] = []
    _type_walk(obj, cls, "", "", out, top=True)
    return out


def _type_walk(v: Any, cls: str, path: str, gopath: str, out: list[tuple[str, str]], top: bool = False) -> None:
    info = _model(cls) if isinstance(v, dict) else None
    if info is None or len(out) >= 20:
        return
    struct = re.sub(r"^(?:Core|Discovery|Events|Storage|Authentication)?V\d+(?:alpha\d+|beta\d+)?", "", cls)
    for k, x in v.items():
        if (top and k in ("apiVersion", "kind")) or k not in info[1]:
            continue
        t = info[1][k][0]
        p, gp = (f"{path}.{k}" if path else k), (f"{gopath}.{k}" if gopath else k)
        _type_check(x, t, p, gp, struct, k in _QUANTITY_FIELDS, out)


def _is_quantity(s: str) -> bool:
    try:
        Quantity.parse(s)
    except QuantityError:
        return False
    return True


def _type_check(x: Any, t: str, p: str, gp: str, struct: str, quantity: bool, out: list[tuple[str, str]]) -> None:
    if not _fits(x, t, quantity):
        out.append(
            (p, f"json: cannot unmarshal {_json_kind(x)} into Go struct field {struct}.{gp} of type {_go_type(t)}")
        )
        return
    m = _LIST.fullmatch(t)
    if m and isinstance(x, list):
        for i, item in enumerate(x):
            _type_check(item, m.group(1), f"{p}[{i}]", gp, struct, quantity, out)
        return
    m = _DICT.fullmatch(t)
    if m and isinstance(x, dict):
        for key, item in x.items():
            _type_check(item, m.group(1), f"{p}[{key}]", gp, struct, quantity, out)
            if quantity and m.group(1) == "str" and isinstance(item, str) and not _is_quantity(item):
                # resource.Quantity's UnmarshalJSON fails the decode (ErrFormatWrong)
                out.append((f"{p}[{key}]", QUANTITY_MSG))
        return
    if quantity and t == "str" and gp.endswith("sizeLimit") and isinstance(x, str) and not _is_quantity(x):
        out.append((p, QUANTITY_MSG))
        return
    if isinstance(x, dict) and t not in _GO_SCALAR and t != "object":
        _type_walk(x, t, p, gp, out)


# -- what Go's encoding always writes ------------------------------------------------

_ZERO: dict[str, Any] = {"int": 0, "str": "", "bool": False, "float": 0.0}


def zero_fill_status(rdef: ResourceDef, obj: Obj) -> None:
    """Give ``obj`` the status fields a real API server always writes.

    kube-apiserver decodes every object into its Go struct and encodes it back: a status
    is a struct (never left out), and a field without ``omitempty`` is written even at its
    zero value, so a DaemonSet created a moment ago reads back with
    ``status: {currentNumberScheduled: 0, numberMisscheduled: 0, desiredNumberScheduled: 0,
    numberReady: 0}``. Those fields are exactly the ones the OpenAPI marks required, which
    the typed clients insist on (the Python client raises ``ValueError`` on a missing one).
    Read from the same client model sources as the OpenAPI documents; lists, maps and
    timestamps are left as they are (Go writes a nil one as ``null``, which is no better)."""
    if rdef.custom or rdef.virtual:
        return
    info = _model(_client_class(rdef))
    if info is None or "status" not in info[1]:
        return
    st = obj.get("status")
    if st is None:
        st = obj["status"] = {}
    if isinstance(st, dict):
        _zero_fill(st, info[1]["status"][0], 0)


def _zero_fill(v: Obj, cls: str, depth: int) -> None:
    info = _model(cls)
    if info is None or depth > 8:
        return
    for name, (t, _desc, required) in info[1].items():
        cur = v.get(name)
        if cur is None:
            if not required:
                continue
            if t in _ZERO:
                v[name] = _ZERO[t]
                continue
            if t[:1].isupper() and _model(t) is not None:
                cur = v[name] = {}
            else:
                continue
        if isinstance(cur, dict) and t[:1].isupper():
            _zero_fill(cur, t, depth + 1)
        elif isinstance(cur, list):
            m = _LIST.fullmatch(t)
            if m and m.group(1)[:1].isupper():
                for x in cur:
                    if isinstance(x, dict):
                        _zero_fill(x, m.group(1), depth + 1)
