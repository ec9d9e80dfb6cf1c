"""Label and field selectors, parsed with k8s.io/apimachinery's grammar."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from runtime.kube.machinery.apierrors import ApiError, bad_request
from runtime.kube.meta import Obj

Pred = Callable[[Obj], bool]


def _split_top(s: str) -> list[str]:
    parts: list[str] = []
    depth = 0
    cur = ""
    for ch in s:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


def parse_label_selector(s: str) -> Pred:
    """Parse a label selector string into a predicate over objects."""
    reqs: list[Callable[[dict[str, str]], bool]] = []
    for part in _split_top(s):
        reqs.append(_parse_requirement(part))

    def pred(obj: Obj) -> bool:
        labels = obj.get("metadata", {}).get("labels") or {}
        return all(r(labels) for r in reqs)

    return pred


Labels = dict[str, str]


def _parse_requirement(part: str) -> Callable[[Labels], bool]:
    p = part.strip()
    for op in (" notin ", " in "):
        if op in p:
            key, rest = p.split(op, 1)
            rest = rest.strip()
            if not (rest.startswith("(") and rest.endswith(")")):
                raise bad_request(f"unable to parse requirement: {part}")
            values = {v.strip() for v in rest[1:-1].split(",") if v.strip()}
            return _in(key.strip(), values, op == " in ")
    for op in ("!=", "==", "="):
        if op in p:
            key, val = (x.strip() for x in p.split(op, 1))
            return _eq(key, val, op != "!=")
    if p.startswith("!"):
        return _exists(p[1:].strip(), False)
    if not p or " " in p:
        raise bad_request(f"unable to parse requirement: {part}")
    return _exists(p, True)


def _in(key: str, values: set[str], positive: bool) -> Callable[[Labels], bool]:
    def f(lb: Labels) -> bool:
        hit = key in lb and lb[key] in values
        return hit if positive else not hit

    return f


def _eq(key: str, val: str, positive: bool) -> Callable[[Labels], bool]:
    def f(lb: Labels) -> bool:
        return (lb.get(key) == val) if positive else (lb.get(key) != val)

    return f


def _exists(key: str, positive: bool) -> Callable[[Labels], bool]:
    def f(lb: Labels) -> bool:
        return (key in lb) == positive

    return f


def selector_from_match(selector: dict[str, Any] | None) -> Pred:
    """A predicate for a LabelSelector object (matchLabels + matchExpressions)."""
    if not selector:
        return lambda _o: False
    ml: dict[str, str] = selector.get("matchLabels") or {}
    exprs: list[dict[str, Any]] = selector.get("matchExpressions") or []

    def pred(obj: Obj) -> bool:
        labels = obj.get("metadata", {}).get("labels") or {}
        for k, v in ml.items():
            if labels.get(k) != v:
                return False
        for e in exprs:
            k, op, vals = e.get("key", ""), e.get("operator", ""), e.get("values") or []
            if op == "In" and labels.get(k) not in vals:
                return False
            if op == "NotIn" and k in labels and labels[k] in vals:
                return False
            if op == "Exists" and k not in labels:
                return False
            if op == "DoesNotExist" and k in labels:
                return False
        return True

    return pred


def selector_string(selector: dict[str, Any] | None) -> str:
    """Render a LabelSelector object as kubectl prints it (``app=web,tier in (a,b)``)."""
    if not selector:
        return "<none>"
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for e in selector.get("matchExpressions") or []:
        op = e.get("operator")
        vals = ",".join(sorted(e.get("values") or []))
        if op == "In":
            parts.append(f"{e['key']} in ({vals})")
        elif op == "NotIn":
            parts.append(f"{e['key']} notin ({vals})")
        elif op == "Exists":
            parts.append(e["key"])
        elif op == "DoesNotExist":
            parts.append(f"!{e['key']}")
    return ",".join(parts) if parts else "<none>"


def field_value(obj: Obj, path: str) -> str:
    cur: Any = obj
    if path == "source" and isinstance(obj.get("source"), dict):
        return str(obj["source"].get("component", ""))
    for seg in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(seg)
        if cur is None:
            return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def _unescape(v: str) -> str:
    out = ""
    i = 0
    while i < len(v):
        if v[i] == "\\" and i + 1 < len(v):
            out += v[i + 1]
            i += 2
        else:
            out += v[i]
            i += 1
    return out


def parse_field_selector(s: str, allowed: tuple[str, ...]) -> Pred:
    reqs: list[tuple[str, bool, str]] = []
    for part in _split_top(s):
        if "!=" in part:
            k, v = part.split("!=", 1)
            neg = True
        elif "==" in part:
            k, v = part.split("==", 1)
            neg = False
        elif "=" in part:
            k, v = part.split("=", 1)
            neg = False
        else:
            raise bad_request(f"invalid selector: '{s}'; can't understand '{part}'")
        k = k.strip()
        if k not in ("metadata.name", "metadata.namespace") and k not in allowed:
            raise ApiError(400, "BadRequest", f"field label not supported: {k}")
        reqs.append((k, neg, _unescape(v.strip())))

    def pred(obj: Obj) -> bool:
        for k, neg, v in reqs:
            actual = field_value(obj, k)
            if (actual == v) == neg:
                return False
        return True

    return pred
