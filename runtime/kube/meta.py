"""The lab cluster's shared vocabulary: what every layer of runtime/kube speaks.

A request (``Request``, its ``User``, a body decoded ahead), its answers (``Reply``,
``WatchReply``), names the server generates (``random_suffix``) and the clock
(``now_ts``). It sits at the bottom of the package and imports nothing of ours at run
time (only types, under ``TYPE_CHECKING``), so the API server, its admission plugins,
RBAC, OpenAPI, the scheduler and the controllers can all import it at module top
without an import circle (tests/runtime/kube/test_layering.py keeps it that way).
"""

from __future__ import annotations

import datetime
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

if TYPE_CHECKING:
    from runtime.kube.apiserver.store import Watcher
    from runtime.kube.machinery import protobuf
    from runtime.kube.machinery.apierrors import ApiError
    from runtime.kube.registry import ResourceDef

# A Kubernetes object as the API serves it (decoded JSON): the one alias every layer uses.
Obj = dict[str, Any]

# the alphabet of apiserver's names.SimpleNameGenerator (k8s.io/apiserver/pkg/storage/names)
GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


# Times. Kubernetes writes metav1.Time as RFC 3339 in UTC to the second ("2026-01-02T03:04:05Z")
# and metav1.MicroTime (Lease renewTime/acquireTime, Event eventTime) with microseconds; the Docker
# engine writes RFC 3339 with nanoseconds. These are the package's only time helpers: they differ
# only where those formats do, and each docstring says which one it reads.
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def now_ts() -> str:
    """Now, as a metav1.Time."""
    return datetime.datetime.now(datetime.UTC).strftime(TIME_FORMAT)


def format_ts(t: float) -> str:
    """An epoch time as a metav1.Time (fractions dropped, as Go's Time marshalling does)."""
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime(TIME_FORMAT)


def parse_time(ts: str | None) -> datetime.datetime | None:
    """A metav1.Time the cluster wrote itself; None when unset. Strict: anything but
    ``YYYY-MM-DDTHH:MM:SSZ`` raises ValueError (the printers and controllers read only
    timestamps the server or a controller stamped with ``now_ts``/``format_ts``)."""
    if not ts:
        return None
    return datetime.datetime.strptime(ts, TIME_FORMAT).replace(tzinfo=datetime.UTC)


def parse_micro_time(ts: str | None) -> float | None:
    """A metav1.MicroTime or metav1.Time as epoch seconds; None when unset or unreadable.
    Lenient, unlike ``parse_time``: Lease times are written by kubelets and clients (with or
    without microseconds), and an unreadable one must count as "not renewed", not fail."""
    if not ts:
        return None
    text = ts.rstrip("Z")
    for fmt in ("%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S"):
        try:
            return datetime.datetime.strptime(text, fmt).replace(tzinfo=datetime.UTC).timestamp()
        except ValueError:
            continue
    return None


def engine_time(docker_time: str) -> str | None:
    """A Docker engine timestamp (RFC 3339 with nanoseconds) as a metav1.Time; None for the
    engine's zero time ("0001-01-01T00:00:00Z", never started/finished) or an empty one."""
    if not docker_time or docker_time.startswith("0001-"):
        return None
    return docker_time[:19] + "Z"


def engine_epoch(docker_time: str) -> float:
    """A Docker engine timestamp (or a client's RFC 3339 sinceTime) as epoch seconds, 0.0 when
    unreadable: callers use it for back-off and log filtering, where "long ago" is the safe reading."""
    try:
        return datetime.datetime.fromisoformat(docker_time.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def random_suffix(n: int = 5) -> str:
    return "".join(secrets.choice(GENERATE_ALPHABET) for _ in range(n))


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""


@dataclass
class Decoded:
    """A JSON or YAML body decoded ahead (``apiserver.decode_body``): the value, or the error to answer."""

    value: Any = None
    error: ApiError | None = None


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)  # lower-case keys
    body: bytes = b""
    user: User | None = None
    # the body decoded ahead, off the loop (decode_body, apiserver/server.py); _json_body takes it once
    decoded: protobuf.Decoded | Decoded | None = None

    @classmethod
    def build(cls, method: str, path: str, query_string: str, headers: dict[str, str], body: bytes) -> Request:
        q = {k: v[-1] for k, v in parse_qs(query_string, keep_blank_values=True).items()}
        return cls(method.upper(), path, q, {k.lower(): v for k, v in headers.items()}, body)


@dataclass
class Reply:
    status: int
    body: Any
    content_type: str = "application/json"
    warnings: list[str] = field(default_factory=list)


@dataclass
class WatchReply:
    watcher: Watcher
    initial: list[tuple[str, Obj]]
    rdef: ResourceDef
    table: bool
    include_object: str
    timeout: float
    bookmarks: bool
    initial_end_bookmark: bool
    start_rv: int
