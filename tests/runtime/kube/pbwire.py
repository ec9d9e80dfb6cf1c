"""A tiny protobuf writer for tests: Kubernetes' wire format as client-go sends it.

Field numbers are those of k8s.io/apimachinery's and k8s.io/api's generated.proto (the
protobuf API reference); this module shares nothing with runtime/kube/machinery/protobuf.py, so a
test that round-trips through both checks the server against the format, not itself.
"""

from __future__ import annotations

MAGIC = b"k8s\x00"
CONTENT_TYPE = "application/vnd.kubernetes.protobuf"


def varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(num: int, value: int | bool | str | bytes) -> bytes:
    """One field: an int/bool as a varint, str/bytes length-delimited."""
    if isinstance(value, bool | int):
        return varint(num << 3) + varint(int(value))
    raw = value.encode() if isinstance(value, str) else value
    return varint(num << 3 | 2) + varint(len(raw)) + raw


def envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    """runtime.Unknown{typeMeta{apiVersion=1, kind=2}=1, raw=2, contentEncoding=3, contentType=4}."""
    return MAGIC + field(1, field(1, api_version) + field(2, kind)) + field(2, raw) + field(3, "") + field(4, "")


def delete_options(
    *,
    grace: int | None = None,
    uid: str | None = None,
    orphan: bool | None = None,
    policy: str | None = None,
    dry_run: tuple[str, ...] = (),
) -> bytes:
    """meta/v1 DeleteOptions{gracePeriodSeconds=1, preconditions{uid=1, resourceVersion=2}=2,
    orphanDependents=3, propagationPolicy=4, dryRun=5} in its envelope, as client-go encodes it."""
    raw = b""
    if grace is not None:
        raw += field(1, grace)
    if uid is not None:
        raw += field(2, field(1, uid))
    if orphan is not None:
        raw += field(3, orphan)
    if policy is not None:
        raw += field(4, policy)
    for d in dry_run:
        raw += field(5, d)
    return envelope("v1", "DeleteOptions", raw)


def object_meta(name: str, **labels: str) -> bytes:
    """ObjectMeta{name=1, labels=11 (map entries {key=1, value=2})}."""
    out = field(1, name)
    for k, v in labels.items():
        out += field(11, field(1, k) + field(2, v))
    return out


def configmap(name: str, data: dict[str, str]) -> bytes:
    """core/v1 ConfigMap{metadata=1, data=2}."""
    raw = field(1, object_meta(name))
    for k, v in data.items():
        raw += field(2, field(1, k) + field(2, v))
    return envelope("v1", "ConfigMap", raw)
