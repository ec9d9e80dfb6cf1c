"""The small JSONPath dialect of ``kube`` expectations and ``file`` documents.

``.spec.replicas``, ``.items[0].metadata.name``, ``.spec.containers[*].image``,
``.status.conditions[?(@.type=="Ready")].status``, ``['key.with.dots']``.
A path resolves to the list of values it reaches (empty when nothing matches).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from grader.checks.base import CheckError, shorten

_TOKEN = re.compile(
    r"""\.(?P<key>[A-Za-z0-9_\-/]+)
      | \[(?P<index>-?\d+)\]
      | \[(?P<star>\*)\]
      | \[['"](?P<qkey>[^'"]+)['"]\]
      | \[\?\(@\.(?P<fkey>[A-Za-z0-9_\-.]+)\s*==\s*(?P<fval>"[^"]*"|'[^']*'|[^)\s]+)\)\]
    """,
    re.VERBOSE,
)


def parse(path: str) -> list[tuple[str, Any]]:
    path = path.strip()
    if path.startswith("$"):
        path = path[1:]
    if path and not path.startswith((".", "[")):
        path = "." + path
    steps: list[tuple[str, Any]] = []
    pos = 0
    while pos < len(path):
        match = _TOKEN.match(path, pos)
        if match is None:
            raise CheckError(f"cannot read the path {path!r} at {path[pos:]!r}")
        if match["key"] is not None or match["qkey"] is not None:
            steps.append(("key", match["key"] if match["key"] is not None else match["qkey"]))
        elif match["index"] is not None:
            steps.append(("index", int(match["index"])))
        elif match["star"] is not None:
            steps.append(("star", None))
        else:
            raw = match["fval"]
            value: Any = raw[1:-1] if raw[0] in "'\"" else _literal(raw)
            steps.append(("filter", (match["fkey"], value)))
        pos = match.end()
    return steps


def _literal(raw: str) -> Any:
    if raw in ("true", "false"):
        return raw == "true"
    try:
        return int(raw)
    except ValueError:
        return raw


def _get(value: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


_MISSING = object()


def resolve(document: Any, path: str) -> list[Any]:
    values = [document]
    for kind, arg in parse(path):
        nxt: list[Any] = []
        for value in values:
            if (kind == "key" and isinstance(value, Mapping) and arg in value) or (
                kind == "index" and isinstance(value, list) and -len(value) <= arg < len(value)
            ):
                nxt.append(value[arg])
            elif kind == "star":
                nxt.extend(value.values() if isinstance(value, Mapping) else value if isinstance(value, list) else [])
            elif kind == "filter" and isinstance(value, list):
                key, want = arg
                nxt.extend(
                    item
                    for item in value
                    if (got := _get(item, key)) is not _MISSING and (got == want or str(got) == str(want))
                )
        values = nxt
    return values


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def compare(found: list[Any], expectation: Mapping[str, Any]) -> str | None:
    """Why ``found`` fails ``expectation`` (None when it holds). With several
    values, every one must hold."""
    if "exists" in expectation and not any(k in expectation for k in ("equals", "contains", "matches", "gte", "lte")):
        if bool(expectation["exists"]) != bool(found):
            return "is missing" if expectation["exists"] else f"exists ({shorten(found)})"
        return None
    if not found:
        return "is missing"
    for value in found:
        if "equals" in expectation:
            want = expectation["equals"]
            if not (value == want or (not isinstance(value, (dict, list)) and str(value) == str(want))):
                return f"is {shorten(value)!r}, expected {shorten(want)!r}"
        if "contains" in expectation:
            want = expectation["contains"]
            hay = value if isinstance(value, (list, dict)) else str(value)
            if (want not in hay) if isinstance(hay, (list, dict)) else (str(want) not in hay):
                return f"is {shorten(value)!r}, which does not contain {shorten(want)!r}"
        if "matches" in expectation:
            try:
                pattern = re.compile(str(expectation["matches"]))
            except re.error as exc:
                raise CheckError(f"invalid regular expression {expectation['matches']!r}: {exc}") from None
            if not pattern.search(str(value)):
                return f"is {shorten(value)!r}, which does not match {shorten(expectation['matches'])!r}"
        for op, ok in (("gte", lambda a, b: a >= b), ("lte", lambda a, b: a <= b)):
            if op in expectation:
                got, want = _number(value), _number(expectation[op])
                if got is None or want is None or not ok(got, want):
                    sign = "≥" if op == "gte" else "≤"
                    return f"is {shorten(value)!r}, expected {sign} {shorten(expectation[op])}"
    return None
