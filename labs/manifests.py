"""Kubernetes manifests in the lab editor: YAML to objects, and the cluster's errors to lines.

The editor validates a manifest as the student types (labs/editor.py ``file_validate``).
This module does the parts that need no cluster, in the unprivileged web process:

- **Parse** the text as ``kubectl apply -f`` reads it: every document of the stream,
  ``kind: ...List`` expanded into its items, YAML 1.1 scalars (PyYAML's safe resolver, as
  go-yaml v2 under sigs.k8s.io/yaml), merge keys, a repeated key refused as go-yaml's strict
  mode does. A syntax error is reported at its line, without a round trip to the cluster.
- **Bound** the work: the text is at most ``MAX_TEXT`` bytes, an alias is expanded only
  within a budget of nodes and bytes (a "billion laughs" document is refused at the alias
  that blows the budget, with go-yaml's words, before anything big is built), nesting is
  bounded, at most ``MAX_DOCUMENTS`` objects.
- **Locate** each error the cluster returns (a ``v1 Status``: ``details.causes[].field``,
  ``unknown field "..."`` of strict decoding) at the line and column of the node that
  field path names, from the marks PyYAML's composer keeps; a missing field at its parent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

# libyaml's event parser when PyYAML has it (25 times faster than the pure-Python one, and
# iterative: no recursion however deep the text nests); nodes are composed from its events
# here, with the depth bounded as they come, never by libyaml's recursive composer
_EVENTS_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

MAX_TEXT = 128 * 1024  # bytes of one manifest file validated as you type
MAX_DOCUMENTS = 50  # objects of one file (runtime.kube.apiserver.dryrun.MAX_OBJECTS)
MAX_NODES = 100_000  # nodes after alias expansion, all documents together (128 KiB of text: fewer)
MAX_BYTES = 8 * MAX_TEXT  # bytes of scalars (+8 each) after alias expansion, all documents together
MAX_DEPTH = 64

Path = tuple[str | int, ...]
Span = tuple[int, int, int, int]  # line, column, end line, end column (1-based lines, 0-based columns)

MERGE_TAG = "tag:yaml.org,2002:merge"
SEQ_TAG = "tag:yaml.org,2002:seq"
MAP_TAG = "tag:yaml.org,2002:map"


@dataclass
class Diagnostic:
    line: int
    col: int
    end_line: int
    end_col: int
    message: str
    severity: str = "error"

    def as_json(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "col": self.col,
            "end_line": self.end_line,
            "end_col": self.end_col,
            "message": self.message,
            "severity": self.severity,
        }


@dataclass
class Document:
    """One object of the file, with where each of its fields is written."""

    obj: Any
    start: Span
    values: dict[Path, Span] = field(default_factory=dict)
    keys: dict[Path, Span] = field(default_factory=dict)


class ManifestError(Exception):
    """The text cannot be validated (it is not YAML, or too big): one diagnostic."""

    def __init__(self, diagnostic: Diagnostic) -> None:
        super().__init__(diagnostic.message)
        self.diagnostic = diagnostic


def _span(node: Node) -> Span:
    s, e = node.start_mark, node.end_mark
    return (s.line + 1, s.column, e.line + 1, e.column)


def _at(node: Node, message: str) -> ManifestError:
    return ManifestError(Diagnostic(*_span(node), message))


class _Converter:
    """Composed nodes to JSON data, counting what aliases expand to."""

    def __init__(self) -> None:
        self.nodes = 0
        self.bytes = 0
        self.seen: set[int] = set()
        self.aliased = False
        self.scalars = SafeConstructor()

    def convert(self, node: Node, doc: Document, path: Path, depth: int = 0) -> Any:
        self.nodes += 1
        if id(node) in self.seen:
            self.aliased = True
        else:
            self.seen.add(id(node))
        if self.nodes > MAX_NODES or self.bytes > MAX_BYTES:
            if self.aliased:
                raise _at(node, "error converting YAML to JSON: yaml: document contains excessive aliasing")
            raise _at(node, "the file holds too many values to validate as you type")
        if depth > MAX_DEPTH:
            raise _at(node, f"the document is nested deeper than {MAX_DEPTH} levels")
        doc.values.setdefault(path, _span(node))
        if isinstance(node, ScalarNode):
            self.bytes += len(node.value) + 8
            return self.scalar(node)
        if node.tag not in (SEQ_TAG, MAP_TAG):  # a tag of a language's type (!!python/...): not JSON
            raise _at(
                node, f"error converting YAML to JSON: could not determine a constructor for the tag {node.tag!r}"
            )
        if isinstance(node, SequenceNode):
            return [self.convert(item, doc, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        if isinstance(node, MappingNode):
            out: dict[str, Any] = {}
            merged: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag == MERGE_TAG:
                    merged.update(self.merge(value_node, doc, path, depth))
                    continue
                if not isinstance(key_node, ScalarNode):
                    raise _at(key_node, "error converting YAML to JSON: a mapping key must be a scalar")
                key = self.key(key_node)
                if key in out:
                    raise _at(
                        key_node,
                        f"error converting YAML to JSON: yaml: unmarshal errors: line {key_node.start_mark.line + 1}: "
                        f'key "{key}" already set in map',
                    )
                doc.keys[(*path, key)] = _span(key_node)
                out[key] = self.convert(value_node, doc, (*path, key), depth + 1)
            return {**merged, **out}
        raise _at(node, "error converting YAML to JSON: unknown node")

    def merge(self, node: Node, doc: Document, path: Path, depth: int) -> dict[str, Any]:
        sources = node.value if isinstance(node, SequenceNode) else [node]
        out: dict[str, Any] = {}
        for src in reversed(sources):
            value = self.convert(src, Document(None, doc.start), path, depth + 1)
            if not isinstance(value, dict):
                raise _at(src, "error converting YAML to JSON: map merge requires map or sequence of maps as the value")
            out.update(value)
        return out

    def key(self, node: ScalarNode) -> str:
        value = self.scalar(node)
        if isinstance(value, bool):
            return "true" if value else "false"
        return "null" if value is None else str(value)

    def scalar(self, node: ScalarNode) -> Any:
        if node.tag in ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:binary"):
            return node.value  # sigs.k8s.io/yaml keeps these as the string written
        try:
            value = self.scalars.construct_object(node, deep=True)
        except ConstructorError as e:
            raise _at(node, f"error converting YAML to JSON: {e.problem or e}") from None
        if isinstance(value, float) and value != value:  # .nan: no JSON for it
            raise _at(node, "error converting YAML to JSON: NaN is not a JSON number")
        if isinstance(value, float) and value in (float("inf"), float("-inf")):
            raise _at(node, "error converting YAML to JSON: infinity is not a JSON number")
        if not isinstance(value, (str, int, float, bool, type(None))):
            return node.value
        return value


def _compose_all(text: str) -> Any:
    """The root node of each document, composed from the parser's events (as PyYAML's
    composer does: anchors per document, tags resolved as the safe loader resolves them)."""
    resolver = Resolver()
    stack: list[Node] = []
    pending: list[Node | None] = []  # per open mapping: a key waiting for its value
    anchors: dict[str, Node] = {}
    root: Node | None = None
    events: Any = yaml.parse(text, Loader=_EVENTS_LOADER)
    ev: Any  # libyaml's events and marks are typed apart from PyYAML's
    for ev in events:
        start: Any = ev.start_mark
        end: Any = ev.end_mark
        if isinstance(ev, yaml.DocumentStartEvent):
            anchors, root = {}, None
            continue
        if isinstance(ev, yaml.DocumentEndEvent):
            yield root
            continue
        if isinstance(ev, (yaml.StreamStartEvent, yaml.StreamEndEvent)):
            continue
        node: Node
        if isinstance(ev, yaml.AliasEvent):
            if ev.anchor not in anchors:
                raise ComposerError(None, None, f"found undefined alias {ev.anchor!r}", start)
            node = anchors[ev.anchor]
        elif isinstance(ev, yaml.ScalarEvent):
            tag = ev.tag if ev.tag not in (None, "!") else resolver.resolve(ScalarNode, ev.value, ev.implicit)
            node = ScalarNode(tag, ev.value, start, end, style=ev.style)
        elif isinstance(ev, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            if len(stack) >= MAX_DEPTH:
                line, col = start.line + 1, start.column
                raise ManifestError(
                    Diagnostic(line, col, line, col, f"the document is nested deeper than {MAX_DEPTH} levels")
                )
            kind: Any = SequenceNode if isinstance(ev, yaml.SequenceStartEvent) else MappingNode
            tag = ev.tag if ev.tag not in (None, "!") else resolver.resolve(kind, None, ev.implicit)
            node = kind(tag, [], start, start, flow_style=ev.flow_style)
            if ev.anchor is not None:
                anchors[ev.anchor] = node
            stack.append(node)
            pending.append(None)
            continue
        elif isinstance(ev, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            node = stack.pop()
            pending.pop()
            node.end_mark = end
        else:
            continue
        if isinstance(ev, yaml.ScalarEvent) and ev.anchor is not None:
            anchors[ev.anchor] = node
        if not stack:
            root = node
        elif isinstance(stack[-1], SequenceNode):
            stack[-1].value.append(node)
        elif pending[-1] is None:
            pending[-1] = node
        else:
            stack[-1].value.append((pending[-1], node))
            pending[-1] = None


def parse(text: str) -> list[Document]:
    """The objects of a manifest file, in order (``ManifestError`` at the offending line)."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_TEXT:
        raise ManifestError(
            Diagnostic(1, 0, 1, 0, f"the file is too large to validate as you type ({MAX_TEXT // 1024} KiB at most)")
        )
    converter = _Converter()
    docs: list[Document] = []
    try:
        for root in _compose_all(text):
            if root is None:
                continue
            doc = Document(None, _span(root))
            doc.obj = converter.convert(root, doc, ())
            if doc.obj is None:
                continue
            docs.extend(_expand_list(doc))
            if len(docs) > MAX_DOCUMENTS:
                raise ManifestError(
                    Diagnostic(*doc.start, f"more than {MAX_DOCUMENTS} objects in one file: validate a smaller file")
                )
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column) if mark is not None else (1, 0)
        where = f"line {line}: " if mark is not None else ""
        problem = e.problem or str(e)
        raise ManifestError(
            Diagnostic(line, col, line, col, f"error converting YAML to JSON: yaml: {where}{problem}")
        ) from None
    except yaml.YAMLError as e:
        raise ManifestError(Diagnostic(1, 0, 1, 0, f"error converting YAML to JSON: yaml: {e}")) from None
    except RecursionError:
        raise ManifestError(Diagnostic(1, 0, 1, 0, "the document is nested too deeply to validate")) from None
    return docs


def _expand_list(doc: Document) -> list[Document]:
    """``kind: List`` (any ``...List`` with ``items``) is its items, as kubectl expands it."""
    obj = doc.obj
    if not (isinstance(obj, dict) and str(obj.get("kind", "")).endswith("List") and isinstance(obj.get("items"), list)):
        return [doc]
    out = []
    for i, item in enumerate(obj["items"]):
        sub = Document(item, doc.values.get(("items", i), doc.start))
        for table, into in ((doc.values, sub.values), (doc.keys, sub.keys)):
            for p, span in table.items():
                if len(p) >= 2 and p[0] == "items" and p[1] == i:
                    into[p[2:]] = span
        out.append(sub)
    return out


# -- from the cluster's answer to lines ----------------------------------------------------------

_TOKEN = re.compile(r"\.?([^.\[\]]+)|\[([^\]]*)\]")
_UNKNOWN = re.compile(r'unknown field "([^"]+)"')


def _steps(field_path: str) -> list[tuple[str, bool]]:
    """``spec.containers[0].ports[1]`` as [(spec, False), (containers, False), (0, True), ...]."""
    return [(m.group(1), False) if m.group(1) is not None else (m.group(2), True) for m in _TOKEN.finditer(field_path)]


def locate(doc: Document, field_path: str, *, key: bool = False) -> tuple[Span, bool]:
    """Where ``field_path`` is written (or its nearest written parent); True if found whole.
    ``key``: the key's span (an unknown field), else the value's (a scalar's value; a
    mapping or list at its key's line)."""
    path: Path = ()
    whole = True
    for name, bracket in _steps(field_path):
        candidates: list[str | int] = [int(name), name] if bracket and name.isdigit() else [name]
        nxt = next((c for c in candidates if (*path, c) in doc.values), None)
        if nxt is None:
            whole = False
            break
        path = (*path, nxt)
    if not path:
        return doc.start[:2] + doc.start[:2], whole
    span = doc.values[path]
    on_key = doc.keys.get(path)
    if on_key is not None and (key or not whole or span[0] != span[2]):
        return on_key, whole
    if span[0] != span[2]:  # a block: its first line
        return (span[0], span[1], span[0], span[1]), whole
    return span, whole


def diagnostics(doc: Document, result: dict[str, Any]) -> list[Diagnostic]:
    """The cluster's answer for one object (runtime.kube.apiserver.dryrun) as marks at lines."""
    out: list[Diagnostic] = []
    for warning in result.get("warnings") or []:
        line, col, _, _ = doc.start
        out.append(Diagnostic(line, col, line, col, f"Warning: {warning}", "warning"))
    status = result.get("status")
    if not isinstance(status, dict):
        return out
    message = str(status.get("message") or "the lab cluster refused this object")
    causes = (status.get("details") or {}).get("causes") or []
    unknown = _UNKNOWN.findall(message)
    if unknown:
        for f in unknown:
            span, _ = locate(doc, f, key=True)
            out.append(Diagnostic(*span, f'unknown field "{f}": the cluster\'s schema has no such field'))
        return out
    placed = False
    for cause in causes:
        f = cause.get("field") if isinstance(cause, dict) else None
        if not isinstance(f, str) or not f:
            continue
        span, _ = locate(doc, f)
        text = str(cause.get("message") or message)
        out.append(Diagnostic(*span, f"{f}: {text}"))
        placed = True
    if not placed:
        anchor = "apiVersion" if "API version" in message else "kind"
        span, found = locate(doc, anchor)
        if not found:
            span = (doc.start[0], doc.start[1], doc.start[0], doc.start[1])
        out.append(Diagnostic(*span, message))
    return out
