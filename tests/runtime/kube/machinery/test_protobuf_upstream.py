"""machinery/protobuf.py's field table agrees with upstream's generated.proto (vendored in
runtime/kube/upstream): every field number we decode has upstream's JSON name, cardinality,
type and inlining. The table is still typed by hand (it also says which fields we read and
which are pointers, which the .proto does not); this is what keeps it honest."""

from __future__ import annotations

import pytest

from runtime.kube.machinery import protobuf as pb
from runtime.kube.machinery import upstream

# top-level messages whose short name several vendored packages define: the one we decode
_TOP = {
    "Unknown": "k8s.io.apimachinery.pkg.runtime.Unknown",
    "HorizontalPodAutoscaler": "k8s.io.api.autoscaling.v2.HorizontalPodAutoscaler",
    "Scale": "k8s.io.api.autoscaling.v1.Scale",
    "DeleteOptions": "k8s.io.apimachinery.pkg.apis.meta.v1.DeleteOptions",
}
_SCALARS = {"s": {"string"}, "i": {"int32", "int64"}, "b": {"bool"}, "y": {"bytes"}, "d": {"double"}}


def _resolved() -> dict[str, upstream.Message]:
    """Each table message's upstream message: top-level ones by name, the rest through the
    upstream type of the field that refers to them (TypeMeta in Unknown is runtime's, not
    meta/v1's, whose field numbers differ)."""
    out: dict[str, upstream.Message] = {}
    todo = []
    referenced = {t for fields in pb.SCHEMA.values() for _, t, _ in fields.values() if t in pb.SCHEMA}
    for name in pb.SCHEMA:
        if name not in referenced or name in _TOP:
            m = upstream.message(_TOP.get(name, name))
            assert m is not None, name
            out[name] = m
            todo.append(name)
    msgs = upstream.messages()
    while todo:
        name = todo.pop()
        for num, (_, typ, _) in pb.SCHEMA[name].items():
            if typ in pb.SCHEMA and typ not in out:
                f = next(f for f in out[name].fields.values() if f.number == num)
                out[typ] = msgs[f.type]
                todo.append(typ)
    return out


RESOLVED = _resolved()


def _type_ok(ours: str, f: upstream.Field) -> bool:
    short = f.type.rsplit(".", 1)[-1]
    if ours in _SCALARS:
        return f.map_key is None and f.type in _SCALARS[ours]
    maps = {"ms": "string", "my": "bytes", "mq": "Quantity"}
    if ours in maps:
        return f.map_key == "string" and short == maps[ours]
    simple = {"q": {"Quantity"}, "io": {"IntOrString"}, "t": {"Time", "MicroTime"}}
    if ours in simple:
        return f.map_key is None and short in simple[ours]
    if ours in RESOLVED:
        return f.map_key is None and RESOLVED[ours].full_name == f.type
    return f.map_key is None and short == ours  # a message the table names but does not read


def test_every_table_message_is_an_upstream_message() -> None:
    assert set(RESOLVED) == set(pb.SCHEMA)


@pytest.mark.parametrize("name", sorted(pb.SCHEMA))
def test_field_numbers_names_and_types_match_upstream(name: str) -> None:
    msg = RESOLVED[name]
    by_number = {f.number: f for f in msg.fields.values()}
    wrong = []
    for num, (jname, typ, flags) in pb.SCHEMA[name].items():
        f = by_number.get(num)
        if f is None:
            wrong.append(f"{num} {jname}: not in upstream {msg.full_name}")
            continue
        if f.name != jname:
            wrong.append(f"{num}: ours {jname}, upstream {f.name}")
        if bool(flags & pb.R) != f.repeated:
            wrong.append(f"{jname}: repeated differs (upstream {f.repeated})")
        if not _type_ok(typ, f):
            wrong.append(f"{jname}: ours {typ}, upstream {f.type} (map key {f.map_key})")
        if bool(flags & pb.INLINE) != f.inline:
            wrong.append(f"{jname}: inline differs (upstream {f.inline})")
    assert not wrong, f"{name} ({msg.full_name}): " + "; ".join(wrong)
