"""Upstream Kubernetes API data, vendored in runtime/kube/upstream (its README.md says from where).

``upstream/proto/*.proto.gz`` are the ``generated.proto`` files of k8s.io/api and k8s.io/apimachinery
for the group-versions this server serves. They are the source of two facts we used to
retype by hand: the protobuf field numbers and types (machinery/protobuf.py is checked
against them), and the list strategies of strategic merge patch (``// +patchMergeKey=``,
``// +patchStrategy=``, ``// +listType=``, ``// +listMapKey=`` markers, copied by
go-to-protobuf from the Go struct comments that also produce upstream's
``x-kubernetes-patch-merge-key`` / ``x-kubernetes-list-map-keys`` in api/openapi-spec).

The parser reads the subset of proto2 that go-to-protobuf writes: one ``package``, flat
``message`` blocks, fields ``optional|repeated TYPE name = N;`` and
``map<K, V> name = N;``, and ``//`` comments; anything else in a message is an error, so a
new construct upstream cannot be skipped silently. Files are parsed once, lazily.
"""

from __future__ import annotations

import functools
import gzip
import re
from dataclasses import dataclass, field
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parents[1] / "upstream" / "proto"

_PACKAGE = re.compile(r"package\s+([\w.]+)\s*;")
_MESSAGE = re.compile(r"message\s+(\w+)\s*\{")
_FIELD = re.compile(r"(optional|repeated)\s+([\w.]+)\s+(\w+)\s*=\s*(\d+)\s*;")
_MAP = re.compile(r"map<\s*(\w+)\s*,\s*([\w.]+)\s*>\s+(\w+)\s*=\s*(\d+)\s*;")
_MARKER = re.compile(r"//\s*\+(\w+)(?:=(.*))?$")
# the struct types k8s.io/api embeds with `json:",inline"` in the groups we vendor (Volume,
# PersistentVolumeSpec, EphemeralContainer, the key selectors and projections, IngressRule)
_INLINE_TYPES = frozenset(
    {
        "k8s.io.api.core.v1.VolumeSource",
        "k8s.io.api.core.v1.PersistentVolumeSource",
        "k8s.io.api.core.v1.EphemeralContainerCommon",
        "k8s.io.api.core.v1.LocalObjectReference",
        "k8s.io.api.networking.v1.IngressRuleValue",
    }
)
_SCALARS = frozenset({"string", "bytes", "bool", "int32", "int64", "uint32", "uint64", "double", "float", "fixed64"})


# the lookups below are keyed by field names and kinds taken from request bodies: bounded caches
CACHE_SIZE = 4096


class ProtoError(ValueError):
    """A vendored .proto file uses a construct the parser does not know."""


@dataclass(frozen=True)
class Field:
    name: str  # the JSON name (go-to-protobuf names proto fields after the json tag)
    number: int
    type: str  # a scalar ("string", "int64"...) or a message's full name ("k8s.io.api.core.v1.Container")
    repeated: bool = False
    map_key: str | None = None  # for map<K, V> fields; type is then V
    markers: tuple[tuple[str, str], ...] = ()  # ("patchMergeKey", "name"), ("listMapKey", "port")...

    @property
    def inline(self) -> bool:
        """An embedded Go struct (``json:",inline"``): its fields appear at the parent's level
        in JSON. go-to-protobuf names such a field after its type; the JSON tag itself is not
        in generated.proto, hence the list of the types upstream embeds inline."""
        short = self.type.rsplit(".", 1)[-1]
        return self.type in _INLINE_TYPES and self.name == short[:1].lower() + short[1:]

    def marker(self, key: str) -> str | None:
        return next((v for k, v in self.markers if k == key), None)

    def markers_of(self, key: str) -> list[str]:
        return [v for k, v in self.markers if k == key]


@dataclass
class Message:
    package: str
    name: str
    fields: dict[str, Field] = field(default_factory=dict)

    @property
    def full_name(self) -> str:
        return f"{self.package}.{self.name}"

    def json_fields(self) -> dict[str, Field]:
        """The fields as they appear in JSON: those of inline embedded structs at this level."""
        out: dict[str, Field] = {}
        for f in self.fields.values():
            sub = messages().get(f.type) if f.inline else None
            if sub is not None:
                out.update(sub.json_fields())
            else:
                out[f.name] = f
        return out


def _resolve(typ: str, package: str) -> str:
    if typ in _SCALARS:
        return typ
    if typ.startswith("."):
        return typ[1:]
    return f"{package}.{typ}"


def parse(text: str, source: str = "<proto>") -> list[Message]:
    """The messages of one generated.proto."""
    package = ""
    out: list[Message] = []
    cur: Message | None = None
    markers: list[tuple[str, str]] = []
    in_block_comment = False
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if in_block_comment:
            in_block_comment = "*/" not in line
            continue
        if line.startswith("/*"):
            in_block_comment = "*/" not in line
            continue
        if not line:
            continue
        if line.startswith("//"):
            m = _MARKER.match(line)
            if m:
                markers.append((m.group(1), (m.group(2) or "").strip()))
            continue
        if cur is None:
            if m := _PACKAGE.fullmatch(line):
                package = m.group(1)
            elif m := _MESSAGE.fullmatch(line):
                if not package:
                    raise ProtoError(f"{source}:{n}: message before package")
                cur = Message(package, m.group(1))
            elif not line.startswith(("syntax ", "import ", "option ")):
                raise ProtoError(f"{source}:{n}: unexpected {line!r}")
            markers = []
            continue
        if line == "}":
            out.append(cur)
            cur = None
        elif m := _FIELD.fullmatch(line):
            label, typ, name, num = m.groups()
            cur.fields[name] = Field(name, int(num), _resolve(typ, package), label == "repeated", None, tuple(markers))
        elif m := _MAP.fullmatch(line):
            key, typ, name, num = m.groups()
            cur.fields[name] = Field(name, int(num), _resolve(typ, package), False, key, tuple(markers))
        else:
            raise ProtoError(f"{source}:{n}: unexpected {line!r} in message {cur.name}")
        markers = []
    if cur is not None:
        raise ProtoError(f"{source}: message {cur.name} not closed")
    return out


@functools.cache
def messages() -> dict[str, Message]:
    """Every vendored message by its full proto name (``k8s.io.api.core.v1.Pod``)."""
    out: dict[str, Message] = {}
    for path in sorted(PROTO_DIR.glob("*.proto.gz")):
        for msg in parse(gzip.decompress(path.read_bytes()).decode(), path.name):
            out[msg.full_name] = msg
    return out


def openapi_name(proto_name: str) -> str:
    """``k8s.io.api.core.v1.Pod`` -> ``io.k8s.api.core.v1.Pod`` (upstream's OpenAPI schema names)."""
    return "io.k8s." + proto_name.removeprefix("k8s.io.")


# short names are looked up in this order (core and meta first, as OpenAPI's short names of
# core types are what kubectl and our tables use), then in every other package
_SHORT_ORDER = ("k8s.io.api.core.v1", "k8s.io.apimachinery.pkg.apis.meta.v1")


@functools.lru_cache(maxsize=CACHE_SIZE)
def message(name: str) -> Message | None:
    """A message by full proto name, OpenAPI name (``io.k8s...``) or short name (``ServiceSpec``)."""
    msgs = messages()
    if name.startswith("io.k8s."):
        name = "k8s.io." + name.removeprefix("io.k8s.")
    if name in msgs:
        return msgs[name]
    if "." in name:
        return None
    for pkg in _SHORT_ORDER:
        if f"{pkg}.{name}" in msgs:
            return msgs[f"{pkg}.{name}"]
    return next((m for full, m in sorted(msgs.items()) if m.name == name), None)


@functools.lru_cache(maxsize=CACHE_SIZE)
def patch_merge_key(owner: str, fld: str) -> str | None:
    """Strategic merge patch's key for list field ``fld`` of message ``owner``: the
    ``patchMergeKey``, "" for a merged list of primitives (``patchStrategy=merge`` with no
    key, e.g. ``finalizers``), None for a list a patch replaces whole (or an unknown field)."""
    msg = message(owner)
    f = msg.json_fields().get(fld) if msg is not None else None
    if f is None or "merge" not in (f.marker("patchStrategy") or "").split(","):
        return None
    return f.marker("patchMergeKey") or ""


@functools.cache
def kinds() -> dict[str, list[Message]]:
    """Top-level objects (messages with an ObjectMeta ``metadata``) by kind, core first."""
    out: dict[str, list[Message]] = {}
    meta = "k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    for m in sorted(messages().values(), key=lambda m: (m.package != _SHORT_ORDER[0], m.full_name)):
        md = m.fields.get("metadata")
        if md is not None and md.type == meta and not m.name.endswith("List"):
            out.setdefault(m.name, []).append(m)
    return out


def _follow(root: Message, path: tuple[str, ...]) -> Message | None:
    msgs = messages()
    cur: Message | None = root
    for seg in path:
        f = cur.json_fields().get(seg) if cur is not None else None
        if f is None or f.map_key is not None:
            return None
        cur = msgs.get(f.type)
    return cur


@functools.lru_cache(maxsize=CACHE_SIZE)
def owner_at(kind: str, path: tuple[str, ...]) -> Message | None:
    """The message holding the fields at ``path`` (field names, list items not counted) of
    an object of ``kind``; None when the kind or path is not a vendored type."""
    for root in kinds().get(kind, []):
        got = _follow(root, path)
        if got is not None:
            return got
    return None


@functools.lru_cache(maxsize=CACHE_SIZE)
def path_merge_key(path: tuple[str, ...], fld: str) -> str | None:
    """The merge key of ``fld`` at ``path`` when the object's kind is not known: the key
    every top-level kind that has this path agrees on, None when none has it or they
    disagree (then a patch replaces the list, as for an untagged field)."""
    found: set[str | None] = set()
    for roots in kinds().values():
        for root in roots:
            owner = _follow(root, path)
            if owner is not None and fld in owner.json_fields():
                found.add(patch_merge_key(owner.full_name, fld))
    return found.pop() if len(found) == 1 else None
