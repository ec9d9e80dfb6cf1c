"""OpenAPI v3 (and v2) documents for every served group-version, and strict field validation.

kubectl reads them for three things: ``--validate=strict`` (it checks that the
PATCH operation of the kind declares the ``fieldValidation`` query parameter,
then leaves validation to the server), ``kubectl explain`` (schemas with
descriptions and ``x-kubernetes-group-version-kind``) and client-side apply
(``x-kubernetes-patch-merge-key`` / ``-strategy`` to build strategic merge
patches).

The documents are upstream's: ``api/openapi-spec/v3/*_openapi.json`` of
kubernetes/kubernetes, vendored gzipped in runtime/kube/upstream/openapi-v3 (its
README.md says from which release), read lazily, once per process. A served
document is upstream's with its ``paths`` cut down to the resources this server
serves (the component schemas are kept whole: they are what explain and apply
read). The list extensions (``x-kubernetes-patch-strategy`` / ``-patch-merge-key``,
``x-kubernetes-list-type`` / ``-list-map-keys``) are therefore upstream's own; the
patcher reads the same Go markers from the vendored generated.proto
(machinery/upstream.py), and tests/runtime/kube/test_openapi_upstream.py checks that
the two agree. Custom resources get a document built from their CRD's schema.

The same schemas drive the server's decoding checks below (unknown fields, JSON
types, the zero values Go always writes).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
from pathlib import Path
from typing import Any

from runtime.kube import registry
from runtime.kube.machinery.apierrors import ApiError
from runtime.kube.machinery.quantity import QUANTITY_MSG, Quantity, QuantityError
from runtime.kube.meta import Obj, Reply
from runtime.kube.registry import ResourceDef

SPEC_DIR = Path(__file__).resolve().parents[1] / "upstream" / "openapi-v3"
_REF = "#/components/schemas/"
_VERSION = "v1.37.1"
_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
_QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
_INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
# types whose Go UnmarshalJSON takes any JSON value (kept raw)
_ANY_TYPES = frozenset(
    {
        "io.k8s.apimachinery.pkg.runtime.RawExtension",
        "io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1",
        _INT_OR_STRING,
    }
)


def _key(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


@functools.lru_cache(maxsize=32)
def upstream_document(group: str, version: str) -> Obj | None:
    """Upstream's OpenAPI v3 document of a group-version, as vendored (None if not vendored).
    Callers must not modify it."""
    path = SPEC_DIR / (_key(group, version).replace("/", "__") + "_openapi.json.gz")
    if not path.is_file():
        return None
    doc: Obj = json.loads(gzip.decompress(path.read_bytes()))
    return doc


@functools.cache
def schemas() -> dict[str, Obj]:
    """Every vendored component schema by name (names are package-qualified, so the
    documents agree on the ones they share)."""
    out: dict[str, Obj] = {}
    for path in sorted(SPEC_DIR.glob("*_openapi.json.gz")):
        doc = json.loads(gzip.decompress(path.read_bytes()))
        out.update(doc.get("components", {}).get("schemas", {}))
    return out


@functools.cache
def _by_gvk() -> dict[tuple[str, str, str], str]:
    out: dict[tuple[str, str, str], str] = {}
    for name, s in schemas().items():
        gvks = s.get("x-kubernetes-group-version-kind") or []
        if len(gvks) == 1:
            g = gvks[0]
            out.setdefault((g.get("group", ""), g["version"], g["kind"]), name)
    return out


def schema_name(rdef: ResourceDef) -> str | None:
    """The upstream schema of a built-in kind (None for custom resources and unknown kinds)."""
    if rdef.custom:
        return None
    return _by_gvk().get((rdef.group, rdef.version, rdef.kind))


def _served_path(rel: list[str], served: dict[str, ResourceDef]) -> bool:
    """Whether ``rel`` (a path under the group-version's prefix, split) belongs to a served
    resource: ``[watch/]RESOURCE[/...]`` or ``[watch/]namespaces/{namespace}/RESOURCE[/...]``."""
    if rel[:1] == ["watch"]:
        rel = rel[1:]
    if not rel or rel == [""]:
        return True  # the group-version's resource list
    if len(rel) >= 3 and rel[0] == "namespaces" and rel[1] == "{namespace}":
        r = served.get(rel[2])
        return r is not None and r.namespaced
    r = served.get(rel[0])
    return r is not None and (not r.namespaced or rel[0] == "namespaces")


@functools.lru_cache(maxsize=32)
def gv_document(group: str, version: str) -> bytes | None:
    rs = registry.resources_of(group, version)
    up = upstream_document(group, version)
    if not rs or up is None:
        return None
    served = {r.resource: r for r in rs}
    prefix = "/" + _key(group, version)
    paths = {
        p: item
        for p, item in up.get("paths", {}).items()
        if p.startswith(prefix + "/") and _served_path(p[len(prefix) + 1 :].split("/"), served)
    }
    doc = {**up, "info": {"title": "Kubernetes", "version": _VERSION}, "paths": paths}
    return json.dumps(doc, separators=(",", ":")).encode()


def _closure(names: list[str]) -> dict[str, Obj]:
    """The named schemas and every schema they reference."""
    all_s = schemas()
    out: dict[str, Obj] = {}
    todo = list(names)
    while todo:
        n = todo.pop()
        if n in out or n not in all_s:
            continue
        out[n] = all_s[n]
        stack: list[Any] = [all_s[n]]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                ref = node.get("$ref")
                if isinstance(ref, str) and ref.startswith(_REF):
                    todo.append(ref.removeprefix(_REF))
                stack.extend(node.values())
            elif isinstance(node, list):
                stack.extend(node)
    return out


def custom_document(group: str, version: str, defs: list[ResourceDef]) -> bytes:
    """OpenAPI v3 for a CRD group-version: the CRDs' schemas plus ObjectMeta."""
    comps: dict[str, Obj] = {}
    paths: dict[str, Obj] = {}
    rev = ".".join(reversed(group.split(".")))
    for r in defs:
        gvk = {"group": r.group, "version": r.version, "kind": r.kind}
        name = f"{rev}.{r.version}.{r.kind}"
        s = json.loads(json.dumps(r.schema or {"type": "object"}))
        props = s.setdefault("properties", {})
        props["apiVersion"] = {"type": "string", "description": _API_VERSION_DESC}
        props["kind"] = {"type": "string", "description": _KIND_DESC}
        props["metadata"] = {
            "allOf": [{"$ref": f"{_REF}{_META}"}],
            "description": "Standard object's metadata. More info: "
            "https://git.k8s.io/community/contributors/devel/sig-architecture/"
            "api-conventions.md#metadata",
        }
        s["type"] = "object"
        s["x-kubernetes-group-version-kind"] = [gvk]
        comps[name] = s
        ref = {"$ref": f"{_REF}{name}"}
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
    comps.update(_closure([_META]))
    doc = {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes CRD Swagger", "version": "v0.1.0"},
        "paths": paths,
        "components": {"schemas": comps},
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
            out.append((_key(g, v), g, v))
    return out


def _document(g: str, v: str, extra: list[ResourceDef] | None) -> bytes | None:
    custom = [r for r in extra or [] if r.group == g and r.version == v]
    return custom_document(g, v, custom) if custom else gv_document(g, v)


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
            for key, g, v in _gv_paths(extra):
                doc = _document(g, v, extra)
                if doc is None:
                    continue
                # the hash is of the document, as kube-apiserver's: clients cache by URL
                h = hashlib.sha512(doc).hexdigest()[:128].upper()
                paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={h}"}
            return Reply(200, {"paths": paths})
        key = "/".join(segs[2:])
        for k, g, v in _gv_paths(extra):
            if k == key:
                doc = _document(g, v, extra)
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
    if "oneOf" in out:
        # IntOrString and Quantity: Swagger 2.0 has no oneOf, upstream's v2 writes a string
        out = {k: v for k, v in out.items() if k != "oneOf"}
        out.setdefault("type", "string")
    all_of = out.get("allOf")
    if isinstance(all_of, list) and len(all_of) == 1 and isinstance(all_of[0].get("$ref"), str):
        rest = {k: v for k, v in out.items() if k != "allOf"}
        return {"$ref": all_of[0]["$ref"], **rest}
    ref = out.get("$ref")
    if isinstance(ref, str):
        out["$ref"] = "#/definitions/" + ref.removeprefix(_V2_REF)
    return out


def _params_to_v2(params: list[Obj]) -> list[Obj]:
    out = []
    for p in params:
        schema = p.get("schema") or {}
        q: Obj = {"name": p["name"], "in": p["in"], "type": schema.get("type", "string")}
        if schema.get("uniqueItems"):
            q["uniqueItems"] = True
        if p.get("required"):
            q["required"] = True
        out.append(q)
    return out


def _op_to_v2(op: Obj) -> Obj:
    out: Obj = {k: v for k, v in op.items() if k not in ("requestBody", "responses", "parameters")}
    params = _params_to_v2(op.get("parameters") or [])
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
    for _k, g, v in _gv_paths():
        raw = gv_document(g, v)
        if raw is None:
            continue
        doc = json.loads(raw)
        for name, schema in doc["components"]["schemas"].items():
            definitions.setdefault(name, _to_v2(schema))
        for path, item in doc["paths"].items():
            paths[path] = {
                verb: (_params_to_v2(op) if verb == "parameters" else _op_to_v2(op)) for verb, op in item.items()
            }
    out = {
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": _VERSION},
        "paths": paths,
        "definitions": definitions,
        "securityDefinitions": {"BearerToken": {"type": "apiKey", "name": "authorization", "in": "header"}},
        "security": [{"BearerToken": []}],
    }
    return json.dumps(out, separators=(",", ":")).encode()


class RawJSON(bytes):
    """A response body that is already JSON-encoded."""


# -- reading the schemas -------------------------------------------------------------


def _deref(s: Obj) -> tuple[Obj, str]:
    """``s`` with a ``$ref`` (bare or as upstream's single ``allOf``) resolved: (schema, its name or "")."""
    ref = s.get("$ref")
    if not isinstance(ref, str):
        all_of = s.get("allOf")
        if isinstance(all_of, list) and len(all_of) == 1 and isinstance(all_of[0], dict):
            ref = all_of[0].get("$ref")
    if isinstance(ref, str) and ref.startswith(_REF):
        name = ref.removeprefix(_REF)
        return schemas().get(name, {}), name
    return s, ""


def _is_struct(s: Obj) -> bool:
    return "properties" in s


def _is_any(s: Obj, name: str) -> bool:
    """A value Go decodes whatever its JSON type (RawExtension, IntOrString, apiextensions' JSON)."""
    return name in _ANY_TYPES or ("type" not in s and "properties" not in s and "oneOf" not in s)


# -- strict field validation ---------------------------------------------------------


def unknown_fields(rdef: ResourceDef, obj: Obj) -> list[str]:
    """Paths of fields the kind's schema does not know (``spec.foo``, ``spec.containers[0].x``)."""
    name = schema_name(rdef)
    if name is None:
        return []
    out: list[str] = []
    _walk(obj, schemas()[name], "", out, top=True)
    return out


def _walk_value(v: Any, s: Obj, path: str, out: list[str]) -> None:
    s, name = _deref(s)
    if _is_any(s, name):
        return
    if s.get("type") == "array":
        if isinstance(v, list):
            for i, x in enumerate(v):
                _walk_value(x, s.get("items") or {}, f"{path}[{i}]", out)
        return
    if _is_struct(s):
        _walk(v, s, path, out)
        return
    ap = s.get("additionalProperties")
    if isinstance(ap, dict) and isinstance(v, dict):
        for k, x in v.items():
            _walk_value(x, ap, f"{path}[{k}]", out)


def _walk(v: Any, s: Obj, path: str, out: list[str], top: bool = False) -> None:
    if not isinstance(v, dict):
        return
    props = s.get("properties") or {}
    for k, x in v.items():
        if top and k in ("apiVersion", "kind"):
            continue
        p = f"{path}.{k}" if path else k
        if k not in props:
            out.append(p)
            continue
        _walk_value(x, props[k], p, out)


# -- type errors, as decoding into the Go structs finds them --------------------------

_GO_NAMED = {
    _QUANTITY: "resource.Quantity",
    _INT_OR_STRING: "intstr.IntOrString",
    "io.k8s.apimachinery.pkg.runtime.RawExtension": "runtime.RawExtension",
}


def _go_type(s: Obj) -> str:
    s, name = _deref(s)
    if name:
        if name in _GO_NAMED:
            return _GO_NAMED[name]
        pkg, _, short = name.rpartition(".")
        return f"{pkg.rpartition('.')[2]}.{short}"
    t = s.get("type")
    if t == "array":
        return "[]" + _go_type(s.get("items") or {})
    if t == "object" and isinstance(s.get("additionalProperties"), dict):
        return "map[string]" + _go_type(s["additionalProperties"])
    if t == "string":
        return "[]uint8" if s.get("format") == "byte" else "string"
    if t == "integer":
        return "int64" if s.get("format") == "int64" else "int32"
    if t == "number":
        return "float64"
    if t == "boolean":
        return "bool"
    return "interface {}"


def _json_kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    return "array" if isinstance(v, list) else "object"


_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)


def _is_int_in(v: Any, bounds: tuple[int, int]) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and bounds[0] <= v <= bounds[1]


def _fits(v: Any, s: Obj, name: str) -> bool:
    if v is None:
        return True
    if name == _INT_OR_STRING:
        # intstr.IntOrString.UnmarshalJSON: a JSON string, else json.Unmarshal into its int32
        return isinstance(v, str) or _is_int_in(v, _INT32)
    if _is_any(s, name):
        return True
    if name == _QUANTITY:
        return isinstance(v, str) or (isinstance(v, (int, float)) and not isinstance(v, bool))
    t = s.get("type")
    if t == "array":
        return isinstance(v, list)
    if t == "string":
        return isinstance(v, str)
    if t == "integer":
        return _is_int_in(v, _INT64 if s.get("format") == "int64" else _INT32)
    if t == "number":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if t == "boolean":
        return isinstance(v, bool)
    return isinstance(v, dict)  # a struct or a map


def type_errors(rdef: ResourceDef, obj: Obj) -> list[tuple[str, str]]:
    """``(field path, message)`` of each value whose JSON type its field cannot take
    (``replicas: three``, a label's value ``1``, ``containers`` as a map), in the words of
    Go's encoding/json, which kube-apiserver decodes with before anything else:
    ``json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of
    type int32``. Empty for kinds without an upstream schema (custom resources)."""
    name = schema_name(rdef)
    if name is None:
        return []
    out: list[tuple[str, str]] = []
    _type_walk(obj, name, "", "", out, top=True)
    return out


def _type_walk(v: Any, name: str, path: str, gopath: str, out: list[tuple[str, str]], top: bool = False) -> None:
    if not isinstance(v, dict) or len(out) >= 20:
        return
    props = schemas().get(name, {}).get("properties") or {}
    struct = name.rpartition(".")[2]
    for k, x in v.items():
        if (top and k in ("apiVersion", "kind")) or k not in props:
            continue
        p, gp = (f"{path}.{k}" if path else k), (f"{gopath}.{k}" if gopath else k)
        _type_check(x, props[k], p, gp, struct, out)


def _is_quantity(s: str) -> bool:
    try:
        Quantity.parse(s)
    except QuantityError:
        return False
    return True


def _type_check(x: Any, decl: Obj, p: str, gp: str, struct: str, out: list[tuple[str, str]]) -> None:
    s, name = _deref(decl)
    if not _fits(x, s, name):
        got, want = _json_kind(x), _go_type(decl)
        if name == _INT_OR_STRING or s.get("type") == "integer":  # into a Go integer
            want = "int32" if name == _INT_OR_STRING else want
            if got == "number":  # a fraction or out of range: Go quotes the number itself
                got = f"number {json.dumps(x)}"
        out.append((p, f"json: cannot unmarshal {got} into Go struct field {struct}.{gp} of type {want}"))
        return
    if name == _QUANTITY:
        if isinstance(x, str) and not _is_quantity(x):
            # resource.Quantity's UnmarshalJSON fails the decode (ErrFormatWrong)
            out.append((p, QUANTITY_MSG))
        return
    if _is_any(s, name) or x is None:
        return
    if s.get("type") == "array" and isinstance(x, list):
        for i, item in enumerate(x):
            _type_check(item, s.get("items") or {}, f"{p}[{i}]", gp, struct, out)
        return
    if _is_struct(s):
        if name:
            _type_walk(x, name, p, gp, out)
        return
    ap = s.get("additionalProperties")
    if isinstance(ap, dict) and isinstance(x, dict):
        for key, item in x.items():
            _type_check(item, ap, f"{p}[{key}]", gp, struct, out)


# -- what Go's encoding always writes ------------------------------------------------

_ZERO: dict[str, Any] = {"integer": 0, "string": "", "boolean": False, "number": 0.0}


def zero_fill_status(rdef: ResourceDef, obj: Obj) -> None:
    """Give ``obj`` the status fields a real API server always writes.

    kube-apiserver decodes every object into its Go struct and encodes it back: a status
    is a struct (never left out), and a field without ``omitempty`` is written even at its
    zero value, so a DaemonSet created a moment ago reads back with
    ``status: {currentNumberScheduled: 0, numberMisscheduled: 0, desiredNumberScheduled: 0,
    numberReady: 0}``. Those fields are exactly the ones the OpenAPI marks required, which
    the typed clients insist on (the Python client raises ``ValueError`` on a missing one).
    Read from the same upstream schemas as the OpenAPI documents; lists, maps and
    timestamps are left as they are (Go writes a nil one as ``null``, which is no better)."""
    if rdef.virtual:
        return
    name = schema_name(rdef)
    if name is None:
        return
    decl = (schemas()[name].get("properties") or {}).get("status")
    if decl is None:
        return
    s, _ = _deref(decl)
    if not _is_struct(s):
        return
    st = obj.get("status")
    if st is None:
        st = obj["status"] = {}
    if isinstance(st, dict):
        _zero_fill(st, s, 0)


def _zero_fill(v: Obj, s: Obj, depth: int) -> None:
    if depth > 8:
        return
    required = set(s.get("required") or ())
    for fname, decl in (s.get("properties") or {}).items():
        fs, tname = _deref(decl)
        cur = v.get(fname)
        if cur is None:
            if fname not in required:
                continue
            t = fs.get("type")
            if not tname and t in _ZERO and fs.get("format") != "date-time":
                v[fname] = _ZERO[t]
                continue
            if _is_struct(fs):
                cur = v[fname] = {}
            else:
                continue
        if isinstance(cur, dict) and _is_struct(fs):
            _zero_fill(cur, fs, depth + 1)
        elif isinstance(cur, list) and fs.get("type") == "array":
            items, _ = _deref(fs.get("items") or {})
            if _is_struct(items):
                for x in cur:
                    if isinstance(x, dict):
                        _zero_fill(x, items, depth + 1)
