"""The lab cluster's shared vocabulary: what every layer of runtime/kube speaks.

A request (``Request``, its ``User``, a body decoded ahead), its answers (``Reply``,
``WatchReply``) and names the server generates (``random_suffix``); timestamps are
runtime/kernel/clock.py's (``now_ts``, ``parse_time``, ...). It sits at the bottom of
the package and imports nothing of ours at run time (only types, under ``TYPE_CHECKING``),
so the API server, its admission plugins, RBAC, OpenAPI, the scheduler and the
controllers can all import it at module top without an import circle
(tests/runtime/kube/test_layering.py keeps it that way).
"""

from __future__ import annotations

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


def random_suffix(n: int = 5) -> str:
    return "".join(secrets.choice(GENERATE_ALPHABET) for _ in range(n))


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""


@dataclass
class Decoded:
    """A JSON or YAML body decoded ahead (apiserver/request.py's ``decode_body``): the value, or the error to answer."""

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
    # the body decoded ahead, off the loop (apiserver/request.py, run by apiserver/server.py); json_body takes it once
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
