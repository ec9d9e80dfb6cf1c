"""CustomResourceDefinitions and the custom resources they define.

Each cluster has its own CRDs, so the resources they add live beside the
built-in registry (``Cluster.custom_defs()``), not in it. A custom resource is
defaulted, pruned and validated against its version's ``openAPIV3Schema`` with
the messages kube-apiserver's structural-schema validation prints, and listed
with its ``additionalPrinterColumns``.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from runtime.kube.apierrors import FieldError, GoLiteral, invalid, not_supported, required
from runtime.kube.registry import ResourceDef

Obj = dict[str, Any]

GR = "customresourcedefinitions.apiextensions.k8s.io"


def defs_from_crds(crds: list[Obj]) -> list[ResourceDef]:
    out: list[ResourceDef] = []
    for crd in crds:
        if crd["metadata"].get("deletionTimestamp"):
            continue
        conds = {c.get("type"): c.get("status") for c in (crd.get("status") or {}).get("conditions") or []}
        if conds.get("Established") != "True":
            continue
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        for v in spec.get("versions") or []:
            if not v.get("served", True):
                continue
            subs = []
            sr = v.get("subresources") or {}
            if "status" in sr:
                subs.append("status")
            if "scale" in sr:
                subs.append("scale")
            out.append(
                ResourceDef(
                    spec.get("group", ""),
                    v.get("name", ""),
                    names.get("plural", ""),
                    names.get("kind", ""),
                    spec.get("scope", "Namespaced") == "Namespaced",
                    tuple(names.get("shortNames") or ()),
                    tuple(names.get("categories") or ()),
                    subresources=tuple(subs),
                    has_generation=True,
                    status_subresource="status" in sr,
                    singular=names.get("singular", ""),
                    schema=(v.get("schema") or {}).get("openAPIV3Schema") or {},
                    printer_columns=tuple(v.get("additionalPrinterColumns") or ()),
                    custom=True,
                )
            )
    return out


# -- the CRD itself -------------------------------------------------------------------------


def default_crd(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    names = spec.setdefault("names", {})
    if names.get("kind"):
        names.setdefault("singular", str(names["kind"]).lower())
        names.setdefault("listKind", f"{names['kind']}List")
    spec.setdefault("scope", "Namespaced")
    spec.setdefault("conversion", {"strategy": "None"})
    obj.setdefault("status", {})


def validate_crd(obj: Obj) -> list[FieldError]:
    errs: list[FieldError] = []
    spec = obj.get("spec") or {}
    names = spec.get("names") or {}
    group = spec.get("group", "")
    name = obj.get("metadata", {}).get("name", "")
    if not group:
        errs.append(required("spec.group"))
    elif "." not in group:
        errs.append(invalid("spec.group", group, "should be a domain with at least one dot"))
    if not names.get("plural"):
        errs.append(required("spec.names.plural"))
    if not names.get("kind"):
        errs.append(required("spec.names.kind"))
    if names.get("plural") and group and name != f"{names['plural']}.{group}":
        errs.append(invalid("metadata.name", name, 'must be spec.names.plural+"."+spec.group'))
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        errs.append(not_supported("spec.scope", spec.get("scope"), ["Cluster", "Namespaced"]))
    versions = spec.get("versions") or []
    if not versions:
        errs.append(required("spec.versions", "must have exactly one version marked as storage version"))
    elif sum(1 for v in versions if v.get("storage")) != 1:
        errs.append(invalid("spec.versions", None, "must have exactly one version marked as storage version"))
        errs[-1].value = GoLiteral(repr([v.get("name") for v in versions]))
    for i, v in enumerate(versions):
        if not (v.get("schema") or {}).get("openAPIV3Schema"):
            errs.append(required(f"spec.versions[{i}].schema.openAPIV3Schema", "schemas are required"))
    return errs


def crd_status(crd: Obj, now: str) -> Obj:
    spec = crd.get("spec") or {}
    old = crd.get("status") or {}
    old_conds: dict[str, Obj] = {str(c.get("type")): c for c in old.get("conditions") or []}

    def cond(typ: str, reason: str, msg: str) -> Obj:
        prev = old_conds.get(typ)
        if prev and prev.get("status") == "True":
            return prev
        return {"type": typ, "status": "True", "lastTransitionTime": now, "reason": reason, "message": msg}

    storage = [v.get("name") for v in spec.get("versions") or [] if v.get("storage")]
    return {
        "conditions": [
            cond("NamesAccepted", "NoConflicts", "no conflicts found"),
            cond("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
        "acceptedNames": copy.deepcopy(spec.get("names") or {}),
        "storedVersions": sorted(set(old.get("storedVersions") or []) | set(storage)),
    }


# -- custom resources --------------------------------------------------------------------------

_TYPES = {
    "string": str,
    "boolean": bool,
    "object": dict,
    "array": list,
}


def _type_ok(typ: str, v: Any) -> bool:
    if typ == "integer":
        return isinstance(v, int) and not isinstance(v, bool)
    if typ == "number":
        return isinstance(v, int | float) and not isinstance(v, bool)
    t = _TYPES.get(typ)
    return t is None or isinstance(v, t)


def default_and_prune(schema: Obj, obj: Any, path: str, unknown: list[str], top: bool = False) -> Any:
    """Apply schema defaults, drop (and report) fields the schema does not declare."""
    if not isinstance(obj, dict) or not isinstance(schema, dict):
        if isinstance(obj, list) and isinstance(schema, dict) and isinstance(schema.get("items"), dict):
            return [default_and_prune(schema["items"], x, f"{path}[{i}]", unknown) for i, x in enumerate(obj)]
        return obj
    props: Obj = schema.get("properties") or {}
    preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
    addl = schema.get("additionalProperties")
    out: Obj = {}
    for k, v in obj.items():
        if top and k in ("apiVersion", "kind", "metadata"):
            out[k] = v
            continue
        p = f"{path}.{k}" if path else k
        if k in props:
            out[k] = default_and_prune(props[k], v, p, unknown)
        elif isinstance(addl, dict):
            out[k] = default_and_prune(addl, v, p, unknown)
        elif preserve or addl is True:
            out[k] = v
        else:
            unknown.append(p)
    for k, ps in props.items():
        if k not in out and isinstance(ps, dict) and "default" in ps:
            out[k] = copy.deepcopy(ps["default"])
    return out


def validate_value(schema: Obj, v: Any, path: str, errs: list[FieldError]) -> None:
    if not isinstance(schema, dict):
        return
    typ = schema.get("type")
    if schema.get("x-kubernetes-int-or-string"):
        if not isinstance(v, int | str) or isinstance(v, bool):
            errs.append(invalid(path, v, f"{path} in body must be of type integer-or-string"))
        return
    if v is None:
        if not schema.get("nullable"):
            errs.append(invalid(path, GoLiteral("null"), f'{path} in body must be of type {typ}: "null"'))
        return
    if typ and not _type_ok(typ, v):
        actual = {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer", float: "number"}.get(
            type(v), type(v).__name__
        )
        errs.append(invalid(path, actual, f'{path} in body must be of type {typ}: "{actual}"'))
        return
    enum = schema.get("enum")
    if enum and v not in enum:
        errs.append(not_supported(path, v, [str(e) for e in enum]))
    if isinstance(v, int | float) and not isinstance(v, bool):
        if "minimum" in schema and v < schema["minimum"]:
            errs.append(invalid(path, v, f"{path} in body should be greater than or equal to {schema['minimum']}"))
        if "maximum" in schema and v > schema["maximum"]:
            errs.append(invalid(path, v, f"{path} in body should be less than or equal to {schema['maximum']}"))
    if isinstance(v, str):
        if "minLength" in schema and len(v) < schema["minLength"]:
            errs.append(invalid(path, v, f"{path} in body should be at least {schema['minLength']} chars long"))
        if "maxLength" in schema and len(v) > schema["maxLength"]:
            errs.append(FieldError("FieldValueTooLong", path, f"may not be more than {schema['maxLength']} bytes", v))
        if "pattern" in schema and not re.search(schema["pattern"], v):
            errs.append(invalid(path, v, f"{path} in body should match '{schema['pattern']}'"))
    if isinstance(v, list):
        if "minItems" in schema and len(v) < schema["minItems"]:
            errs.append(invalid(path, len(v), f"{path} in body should have at least {schema['minItems']} items"))
        if "maxItems" in schema and len(v) > schema["maxItems"]:
            errs.append(FieldError("FieldValueTooMany", path, f"must have at most {schema['maxItems']} items", v))
        for i, x in enumerate(v):
            validate_value(schema.get("items") or {}, x, f"{path}[{i}]", errs)
    if isinstance(v, dict):
        props = schema.get("properties") or {}
        for r in schema.get("required") or []:
            if r not in v:
                errs.append(required(f"{path}.{r}" if path else r))
        for k, x in v.items():
            p = f"{path}.{k}" if path else k
            if k in props:
                validate_value(props[k], x, p, errs)
            elif isinstance(schema.get("additionalProperties"), dict):
                validate_value(schema["additionalProperties"], x, p, errs)


def validate_cr(rdef: ResourceDef, obj: Obj) -> list[FieldError]:
    schema = rdef.schema or {}
    errs: list[FieldError] = []
    body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
    top = dict(schema)
    top_props = {
        k: v for k, v in (schema.get("properties") or {}).items() if k not in ("apiVersion", "kind", "metadata")
    }
    top["properties"] = top_props
    top["required"] = [r for r in schema.get("required") or [] if r not in ("apiVersion", "kind", "metadata")]
    validate_value(top, body, "", errs)
    return errs


# -- printing -------------------------------------------------------------------------------------


def jsonpath(obj: Any, expr: str) -> Any:
    """The simple JSONPath subset printer columns use: ``.a.b``, ``.a[0].b``, ``.a['x.y']``."""
    cur = obj
    for tok in re.findall(r"\.([A-Za-z0-9_\-]+)|\[(\d+)\]|\['([^']+)'\]|\[\"([^\"]+)\"\]", expr):
        key, idx, q1, q2 = tok
        if cur is None:
            return None
        if idx:
            cur = cur[int(idx)] if isinstance(cur, list) and int(idx) < len(cur) else None
        else:
            k = key or q1 or q2
            cur = cur.get(k) if isinstance(cur, dict) else None
    return cur
