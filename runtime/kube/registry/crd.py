"""CustomResourceDefinitions and the custom resources they define.

Each cluster has its own CRDs, so the resources they add live beside the
built-in registry (``Cluster.custom_defs()``), not in it: one ResourceDef per
served version, highest kube-aware priority first (the preferred version). A
custom resource is defaulted, pruned and validated against the request version's
``openAPIV3Schema`` with the messages kube-apiserver's structural-schema
validation prints, then its ``x-kubernetes-validations`` CEL rules (machinery/cel.py), and
listed with its ``additionalPrinterColumns``.

Versions: objects are stored in the CRD's storage version; reads through another
served version convert with strategy None (``as_version``: apiVersion rewritten,
then pruned and defaulted by that version's schema, as kube-apiserver's
schema-coercing converter does). A deprecated version's warning (its
``deprecationWarning`` or the default naming the best non-deprecated version)
goes out as a ``Warning`` header on every request to it. The scale subresource
reads and writes the CRD's specReplicasPath/statusReplicasPath/labelSelectorPath.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from runtime.kube.machinery import cel
from runtime.kube.machinery.apierrors import FieldError, GoLiteral, duplicate, invalid, not_supported, required
from runtime.kube.meta import Obj
from runtime.kube.registry import VERBS_ALL, ResourceDef

GR = "customresourcedefinitions.apiextensions.k8s.io"


_KUBE_VERSION_RE = re.compile(r"v(\d+)(?:(alpha|beta)(\d+))?")


def version_key(name: str) -> tuple[int, int, int, str]:
    """Sort key of kube-aware version priority (highest first): GA, then beta, then alpha,
    higher numbers first (v2 > v1 > v1beta2 > v1beta1 > v1alpha1), then other names A-Z."""
    m = _KUBE_VERSION_RE.fullmatch(name)
    if m is None:
        return (3, 0, 0, name)
    rank = {None: 0, "beta": 1, "alpha": 2}[m.group(2)]
    return (rank, -int(m.group(1)), -int(m.group(3) or 0), "")


def deprecation_warning(spec: Obj, version: Obj) -> str:
    """The warning of a deprecated version: its ``deprecationWarning``, or kube-apiserver's
    default that names the highest-priority served, non-deprecated version above it."""
    if not version.get("deprecated"):
        return ""
    if version.get("deprecationWarning"):
        return str(version["deprecationWarning"])
    name = str(version.get("name", ""))
    kind = (spec.get("names") or {}).get("kind", "")
    msg = f"{spec.get('group')}/{name} {kind} is deprecated"
    better = sorted(
        (
            str(v.get("name"))
            for v in spec.get("versions") or []
            if v.get("served") and not v.get("deprecated") and version_key(str(v.get("name"))) < version_key(name)
        ),
        key=version_key,
    )
    return f"{msg}; use {spec.get('group')}/{better[0]} {kind}" if better else msg


# the verbs discovery lists for the resources of a terminating CRD (DiscoveryController.sync)
TERMINATING_VERBS = ("delete", "deletecollection", "get", "list", "watch")


def defs_from_crds(crds: list[Obj]) -> list[ResourceDef]:
    """One ResourceDef per served version of each established CRD, highest priority first
    (discovery's preferred version comes first, as kube-apiserver orders them). A CRD being
    deleted stays served, ``terminating``, while its finalizer deletes its resources through
    the API (apiextensions-apiserver's crdHandler: no create, discovery's verbs without
    create, update and patch)."""
    out: list[ResourceDef] = []
    for crd in crds:
        terminating = bool(crd["metadata"].get("deletionTimestamp"))
        conds = {c.get("type"): c.get("status") for c in (crd.get("status") or {}).get("conditions") or []}
        if conds.get("Established") != "True":
            continue
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        versions = spec.get("versions") or []
        storage = next((str(v.get("name")) for v in versions if v.get("storage")), "")
        for v in sorted(versions, key=lambda v: version_key(str(v.get("name", "")))):
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
                    storage_version=storage,
                    deprecation_warning=deprecation_warning(spec, v),
                    terminating=terminating,
                    verbs=TERMINATING_VERBS if terminating else tuple(VERBS_ALL),
                    scale_paths=dict(sr["scale"]) if isinstance(sr.get("scale"), dict) else None,
                )
            )
    return out


def as_version(obj: Obj, api_version: str, schema: Obj | None = None) -> Obj:
    """Conversion strategy None: the same object with ``apiVersion`` rewritten. Fields are
    carried over as they are, then (like kube-apiserver's schema-coercing converter) pruned
    and defaulted by the target version's ``schema``, if given: a field only the storage
    version knows is stored but not shown through an older version."""
    if obj.get("apiVersion") == api_version:
        return obj
    out: Obj = {**obj, "apiVersion": api_version}
    if schema:
        out = default_and_prune(schema, copy.deepcopy(out), "", [], top=True)
    return out


def served(rdef: ResourceDef, obj: Obj) -> Obj:
    """A stored object as a request for ``rdef`` shows it: a custom resource in ``rdef``'s
    version (``as_version``), a built-in one as it is."""
    return as_version(obj, rdef.group_version, rdef.schema) if rdef.custom else obj


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
    seen: set[str] = set()
    for i, v in enumerate(versions):
        fld = f"spec.versions[{i}]"
        if not (v.get("schema") or {}).get("openAPIV3Schema"):
            errs.append(required(f"{fld}.schema.openAPIV3Schema", "schemas are required"))
        if v.get("name") in seen:
            errs.append(duplicate(f"{fld}.name", v.get("name")))
        seen.add(str(v.get("name")))
        if v.get("deprecationWarning") and not v.get("deprecated"):
            errs.append(
                invalid(f"{fld}.deprecationWarning", v["deprecationWarning"], "can only be set for deprecated versions")
            )
        errs.extend(compile_errors((v.get("schema") or {}).get("openAPIV3Schema"), f"{fld}.schema.openAPIV3Schema"))
        scale = (v.get("subresources") or {}).get("scale")
        if isinstance(scale, dict):
            errs.extend(_validate_scale(scale, f"{fld}.subresources.scale"))
    if versions and not any(v.get("served") for v in versions):
        errs.append(invalid("spec.versions", None, "must have at least one served version"))
        errs[-1].value = GoLiteral(repr([v.get("name") for v in versions]))
    strategy = (spec.get("conversion") or {}).get("strategy", "None")
    if strategy != "None":  # a lab cluster cannot call conversion webhooks
        errs.append(not_supported("spec.conversion.strategy", strategy, ["None"]))
    return errs


def _validate_scale(scale: Obj, fld: str) -> list[FieldError]:
    errs: list[FieldError] = []
    spec_path = scale.get("specReplicasPath")
    status_path = scale.get("statusReplicasPath")
    sel_path = scale.get("labelSelectorPath")
    if not spec_path:
        errs.append(required(f"{fld}.specReplicasPath"))
    elif not str(spec_path).startswith(".spec."):
        errs.append(invalid(f"{fld}.specReplicasPath", spec_path, "should be a json path under .spec"))
    if not status_path:
        errs.append(required(f"{fld}.statusReplicasPath"))
    elif not str(status_path).startswith(".status."):
        errs.append(invalid(f"{fld}.statusReplicasPath", status_path, "should be a json path under .status"))
    if sel_path and not str(sel_path).startswith((".spec.", ".status.")):
        errs.append(
            invalid(f"{fld}.labelSelectorPath", sel_path, "should be a json path under either .spec or .status")
        )
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


# -- validation rules (x-kubernetes-validations, CEL) ----------------------------------------


def validate_rules(rdef: ResourceDef, obj: Obj, old: Obj | None) -> list[FieldError]:
    """Evaluate every ``x-kubernetes-validations`` rule of the schema where the object has a
    value, with kube-apiserver's messages. Transition rules (using ``oldSelf``) run only on
    updates where the old object has a value at the same place (not through arrays); on
    updates, other rules of an unchanged value are skipped (validation ratcheting)."""
    errs: list[FieldError] = []
    if rdef.schema:
        _walk_rules(rdef.schema, obj, old, old is not None, "", errs)
    return errs


def _walk_rules(schema: Obj, v: Any, old: Any, has_old: bool, path: str, errs: list[FieldError]) -> None:
    if not isinstance(schema, dict):
        return
    rules = schema.get("x-kubernetes-validations") or []
    if rules:
        unchanged = has_old and cel.equal(old, v)
        for rule in rules:
            _check_rule(rule, schema.get("type") or "object", v, old, has_old, unchanged, path, errs)
    if isinstance(v, dict):
        props: Obj = schema.get("properties") or {}
        addl = schema.get("additionalProperties")
        for k, x in v.items():
            sub = props.get(k) if k in props else addl if isinstance(addl, dict) else None
            if sub is None:
                continue
            old_has = has_old and isinstance(old, dict) and k in old
            _walk_rules(sub, x, old[k] if old_has else None, old_has, f"{path}.{k}" if path else k, errs)
    elif isinstance(v, list) and isinstance(schema.get("items"), dict):
        for i, x in enumerate(v):
            _walk_rules(schema["items"], x, None, False, f"{path}[{i}]", errs)


def _check_rule(
    rule: Obj, typ: str, v: Any, old: Any, has_old: bool, unchanged: bool, path: str, errs: list[FieldError]
) -> None:
    src = str(rule.get("rule", ""))
    try:
        prog = cel.compile_rule(src)
    except cel.CelError:
        return  # refused when the CRD was written; a CRD stored before cannot break writes
    if (prog.uses_old_self and not has_old) or (unchanged and not prog.uses_old_self):
        return
    fld = path or "<nil>"
    named = str(rule.get("message") or "").strip() or src.strip()
    try:
        ok = prog.evaluate(v, old if has_old else None)
    except cel.CelError as e:
        if str(e).startswith("no such overload"):
            msg = (
                f"'{e}': call arguments did not match a supported operator, function or macro signature "
                f"for rule: {named}"
            )
        else:
            msg = f"{e} evaluating rule: {named}"
        errs.append(invalid(fld, typ, msg))
        return
    if ok is True:
        return
    detail = str(rule.get("message") or "").strip() or f"failed rule: {src.strip()}"
    if rule.get("messageExpression"):
        try:
            m = cel.compile_rule(str(rule["messageExpression"])).evaluate(v, old if has_old else None)
            if isinstance(m, str) and m.strip():
                detail = m.strip()
        except cel.CelError:
            pass  # as kube-apiserver: fall back to message / "failed rule"
    if rule.get("fieldPath"):
        fld = f"{path}{rule['fieldPath']}" if path else str(rule["fieldPath"]).lstrip(".")
    reason = rule.get("reason")
    if reason == "FieldValueRequired":
        errs.append(required(fld, detail))
    elif reason == "FieldValueForbidden":
        errs.append(FieldError("FieldValueForbidden", fld, detail))
    elif reason == "FieldValueDuplicate":
        errs.append(FieldError("FieldValueDuplicate", fld, detail, typ))
    else:
        errs.append(invalid(fld, typ, detail))


def compile_errors(schema: Any, path: str) -> list[FieldError]:
    """The rules under a CRD version's schema that do not compile (the CRD is refused)."""
    errs: list[FieldError] = []
    if not isinstance(schema, dict):
        return errs
    for j, rule in enumerate(schema.get("x-kubernetes-validations") or []):
        for key in ("rule", "messageExpression"):
            src = rule.get(key) if isinstance(rule, dict) else None
            if key == "rule" and not src:
                errs.append(required(f"{path}.x-kubernetes-validations[{j}].rule"))
            elif src:
                try:
                    cel.compile_rule(str(src))
                except cel.CelError as e:
                    errs.append(invalid(f"{path}.x-kubernetes-validations[{j}].{key}", src, f"compilation failed: {e}"))
    for k, sub in (schema.get("properties") or {}).items():
        errs.extend(compile_errors(sub, f"{path}.properties[{k}]"))
    if isinstance(schema.get("items"), dict):
        errs.extend(compile_errors(schema["items"], f"{path}.items"))
    if isinstance(schema.get("additionalProperties"), dict):
        errs.extend(compile_errors(schema["additionalProperties"], f"{path}.additionalProperties"))
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


def _path_keys(path: str) -> list[str]:
    return [k for k in path.strip().lstrip(".").split(".") if k]


def scale_from(obj: Obj, paths: dict[str, str]) -> tuple[int, int, str]:
    """(spec replicas, status replicas, selector) of a custom resource, read at the scale
    subresource's specReplicasPath/statusReplicasPath/labelSelectorPath (missing: 0, 0, "")."""

    def at(path: str) -> Any:
        cur: Any = obj
        for k in _path_keys(path):
            cur = cur.get(k) if isinstance(cur, dict) else None
        return cur

    def replicas(path: str) -> int:
        v = at(path) if path else None
        return v if isinstance(v, int) and not isinstance(v, bool) else 0

    sel = at(paths["labelSelectorPath"]) if paths.get("labelSelectorPath") else ""
    return (
        replicas(paths.get("specReplicasPath", "")),
        replicas(paths.get("statusReplicasPath", "")),
        sel if isinstance(sel, str) else "",
    )


def set_spec_replicas(obj: Obj, paths: dict[str, str], replicas: int) -> None:
    """Write ``replicas`` at specReplicasPath, creating the maps on the way."""
    keys = _path_keys(paths.get("specReplicasPath", ""))
    cur = obj
    for k in keys[:-1]:
        nxt = cur.get(k)
        if not isinstance(nxt, dict):
            nxt = cur[k] = {}
        cur = nxt
    cur[keys[-1]] = replicas
