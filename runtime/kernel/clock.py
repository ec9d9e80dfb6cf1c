"""Timestamps as the systems we emulate write and read them: the runtime's one set of time helpers.

Kubernetes writes ``metav1.Time`` as RFC 3339 in UTC to the second (Go's
``2006-01-02T15:04:05Z``) and ``metav1.MicroTime`` (Lease renewTime/acquireTime, Event
eventTime) with six fractional digits; the Docker engine writes RFC 3339 with a fraction too
(ours always has six digits), and ``docker cp``'s path stat uses Go's ``RFC3339Nano`` (trailing
zeros trimmed, none at all on a whole second). The helpers differ only where those formats do;
each docstring says which one it writes or reads. Everything is UTC.
"""

from __future__ import annotations

import datetime
import re
import time

TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
MICRO_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"

Moment = float | datetime.datetime


def _utc(t: Moment | None) -> datetime.datetime:
    if isinstance(t, datetime.datetime):
        return t
    return datetime.datetime.fromtimestamp(time.time() if t is None else t, datetime.UTC)


def now_ts() -> str:
    """Now, as a metav1.Time (``2006-01-02T15:04:05Z``)."""
    return datetime.datetime.now(datetime.UTC).strftime(TIME_FORMAT)


def format_ts(t: Moment) -> str:
    """An epoch time or an aware datetime as a metav1.Time (fractions dropped, as Go's Time
    marshalling does)."""
    return _utc(t).strftime(TIME_FORMAT)


def micro_ts(t: Moment | None = None) -> str:
    """An epoch time (default now) as RFC 3339 with six fractional digits: a metav1.MicroTime, and
    the Docker engine's timestamps (``Created``, ``State.StartedAt``, health log entries, ...)."""
    return _utc(t).strftime(MICRO_FORMAT)


def nano_ts(t: Moment) -> str:
    """An epoch time as Go's ``time.RFC3339Nano``: the fraction's trailing zeros trimmed, no
    fraction at all on a whole second (``docker cp``'s path stat ``mtime``)."""
    dt = _utc(t)
    frac = f".{dt.microsecond:06d}".rstrip("0") if dt.microsecond else ""
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + frac + "Z"


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


def parse_epoch(value: str) -> float:
    """Any RFC 3339 timestamp (a Docker engine's, with up to nanoseconds, or a client's
    ``sinceTime``) as epoch seconds, 0.0 when unreadable: callers use it for ages, back-off and
    log filtering, where "long ago" is the safe reading. Digits past microseconds are dropped."""
    try:
        text = re.sub(r"(\.\d{6})\d*", r"\1", value.replace("Z", "+00:00"))
        return datetime.datetime.fromisoformat(text).timestamp()
    except ValueError:
        return 0.0


def engine_time(docker_time: str) -> str | None:
    """A Docker engine timestamp (RFC 3339 with a fraction) as a metav1.Time; None for the
    engine's zero time ("0001-01-01T00:00:00Z", never started/finished) or an empty one."""
    if not docker_time or docker_time.startswith("0001-"):
        return None
    return docker_time[:19] + "Z"
