"""What one lab cluster may hold: the bounds a real control plane puts on a client, per cluster.

One runtimed serves the clusters of a whole class from one process, so nothing a student
sends may grow that process (or the host disk under ``ROOT/kube``) without bound. The
limits are those of a real control plane, answered in its words:

========================  =========================  ============================================
limit                     default                    answer (as the real server gives it)
========================  =========================  ============================================
request body              3 MiB (kube-apiserver's    413 ``RequestEntityTooLarge``
                          ``MaxRequestBodyBytes``)   ``Request entity too large: limit is 3145728``
stored object             1.5 MiB (etcd's            500, no reason (kube-apiserver passes etcd's
                          ``--max-request-bytes``)   error through): ``etcdserver: request is
                                                     too large``
objects in the cluster    5000 (events apart)        403 ``Forbidden`` in ResourceQuota's words:
stored bytes              32 MiB (events apart)      ``... is forbidden: exceeded quota: ...``
events                    1000 / 8 MiB, 1 h TTL      never refused: oldest evicted first (the
                                                     real server expires events after
                                                     ``--event-ttl``, 1 h)
open watches              50                         429 ``TooManyRequests`` + Retry-After
watch cache (history)     4096 events / 16 MiB       a watcher that falls behind it gets an
                                                     ``ERROR`` event, 410 ``Expired``; a resume
                                                     from an older resourceVersion is 410
JSON patch operations     10000                      413 (kube-apiserver's
                                                     ``maxJSONPatchOperations``)
JSON patch copies         3 MiB accumulated          422 (json-patch's ``AccumulatedCopySizeLimit``)
========================  =========================  ============================================

Sizes are measured on the stored serialisation: compact JSON, as ``store.jsonl`` holds it
(etcd holds protobuf for built-in kinds, a little smaller; custom resources are JSON there
too).

Quota and the platform's own writes: a student's creates and growing updates stop at
``max_objects``/``max_bytes``. The controllers' and the kubelet's writes must not be starved
by a student who filled the quota (a cluster whose pod statuses can no longer be written is
broken), but must not be a way around it either (a Deployment of a million replicas): the
platform's creates stop at a ceiling ``platform_reserve`` above the limits, its updates of
existing objects (statuses, finalizers) are never refused for quota, and deletes never are.
Events live apart, in a ring bounded by count and bytes, so no quota ever refuses one.

Limits are per cluster: ``Hub``/``KubeService`` take defaults for every cluster, and a
cluster's ``cluster.json`` may override some (``"limits": {"max_objects": 100}``, written by
``create_cluster(..., limits=...)``/``new-cluster --limit``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from runtime.kube.machinery.apierrors import ApiError
from runtime.kube.machinery.quantity import Quantity, QuantityError

KiB = 1024
MiB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    max_request_bytes: int = 3 * MiB
    max_object_bytes: int = 3 * MiB // 2
    max_objects: int = 5000
    max_bytes: int = 32 * MiB  # ~2.3x that in runtimed memory when full: ~75 MB per hostile student
    # the platform's creates may go this fraction past max_objects/max_bytes
    platform_reserve: float = 0.25
    max_events: int = 1000
    max_event_bytes: int = 8 * MiB
    event_ttl_seconds: float = 3600.0
    max_watches: int = 50
    watch_cache_events: int = 4096
    watch_cache_bytes: int = 16 * MiB
    # a watcher expired while its client does not read: its connection is cut after this
    watch_stall_seconds: float = 30.0
    max_json_patch_operations: int = 10000
    json_patch_max_copy_bytes: int = 3 * MiB

    @classmethod
    def from_dict(cls, d: dict[str, Any], base: Limits | None = None) -> Limits:
        """``base`` (default: the defaults) with the fields ``d`` names replaced; unknown
        names or values of the wrong type are a ValueError."""
        base = base or cls()
        fields = {f.name: f for f in dataclasses.fields(cls)}
        changes: dict[str, Any] = {}
        for k, v in d.items():
            f = fields.get(k)
            if f is None:
                raise ValueError(f"unknown cluster limit {k!r} (known: {', '.join(sorted(fields))})")
            want = float if f.type in ("float", float) else int
            if isinstance(v, bool) or not isinstance(v, int | float) or (want is int and not isinstance(v, int)):
                raise ValueError(f"cluster limit {k} must be a number, got {v!r}")
            if v < 0:
                raise ValueError(f"cluster limit {k} must not be negative, got {v!r}")
            changes[k] = want(v)
        return dataclasses.replace(base, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def parse_limit(text: str) -> tuple[str, int | float]:
    """``NAME=VALUE`` of the CLI (``max_objects=100``, ``max_bytes=8Mi``)."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise ValueError(f"expected NAME=VALUE, got {text!r}")
    try:
        q = Quantity.parse(value.strip())
    except QuantityError:
        raise ValueError(f"{name}: {value!r} is not a number") from None
    v = q.value
    return name.strip(), int(v) if v.denominator == 1 else float(v)


# -- the real server's answers ----------------------------------------------------------------


def request_too_large(limit: int) -> ApiError:
    """apierrors.NewRequestEntityTooLargeError, as ``limitedReadBody`` answers a body over
    ``MaxRequestBodyBytes``."""
    return ApiError(413, "RequestEntityTooLarge", f"Request entity too large: limit is {limit}")


class EtcdRequestTooLarge(ApiError):
    """etcd's ``ErrRequestTooLarge`` as kube-apiserver returns it: not a StatusError, so
    ``ErrorToAPIStatus`` makes it a 500 with no reason (kubectl: ``Error from server:
    etcdserver: request is too large``; kubernetes/kubernetes#112152)."""

    def __init__(self) -> None:
        super().__init__(500, "", "etcdserver: request is too large")  # to_status leaves the empty reason out


def too_many_watches(limit: int) -> ApiError:
    return ApiError(
        429,
        "TooManyRequests",
        f"too many open watches in this cluster (the limit is {limit}): "
        "end a watch (e.g. a `kubectl get -w`) and try again",
        {"retryAfterSeconds": 1},
    )


def expired(rv: int, oldest: int) -> ApiError:
    """What the watch cache answers for a resourceVersion it no longer holds."""
    return ApiError(410, "Expired", f"too old resource version: {rv} ({oldest})")


def expanded_size(value: Any, cap: int) -> int:
    """The length of ``value`` as JSON, roughly (within a few bytes per item), counting a
    shared subtree once per reference, as serialising it would; stops counting once past
    ``cap`` (so a YAML alias bomb costs O(cap), not the size it expands to)."""
    total = 0
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            total += 2 + len(v)
            for k, x in v.items():
                total += len(k) + 3 if isinstance(k, str) else 8
                stack.append(x)
        elif isinstance(v, list):
            total += 2 + len(v)
            stack.extend(v)
        elif isinstance(v, str):
            total += len(v) + 2
        else:
            total += 8
        if total > cap:
            return total
    return total
