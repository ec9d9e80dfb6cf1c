"""``docker events``: what happened to a sandbox's containers, as dockerd reports it.

The engine records an event where dockerd's daemon logs one (``create``, ``start``,
``die``, ``kill``, ``stop``, ``restart``, ``pause``, ``unpause``, ``update``, ``rename``,
``destroy``, ``health_status: <status>``, ``exec_create``/``exec_start``...). A message
has dockerd's shape (API 1.41, ``events.Message``): the old ``status``/``id``/``from``
fields and ``Type``/``Action``/``Actor{ID, Attributes}``/``scope``/``time``/``timeNano``.

Bounded: the last ``KEEP`` events are kept for ``since`` (dockerd keeps 256 as well), and a
subscriber (``GET /events``) that does not read gets at most ``QUEUE`` pending messages
before it is dropped (its stream ends), so a stalled client never grows runtimed's memory.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from typing import Any

KEEP = 256
QUEUE = 1024

Message = dict[str, Any]


class Events:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._past: collections.deque[Message] = collections.deque(maxlen=KEEP)
        self._subscribers: list[Callable[[Message | None], bool]] = []

    def record(self, kind: str, action: str, actor: str, attributes: dict[str, str]) -> None:
        now = time.time_ns()
        msg: Message = {}
        if kind == "container":
            msg.update(status=action, id=actor, **({"from": attributes["image"]} if "image" in attributes else {}))
        msg.update(
            Type=kind,
            Action=action,
            Actor={"ID": actor, "Attributes": dict(attributes)},
            scope="local",
            time=now // 10**9,
            timeNano=now,
        )
        with self._lock:
            self._past.append(msg)
            subscribers = list(self._subscribers)
        dropped = [fn for fn in subscribers if not fn(msg)]
        if dropped:
            with self._lock:
                for fn in dropped:
                    if fn in self._subscribers:
                        self._subscribers.remove(fn)
            for fn in dropped:
                fn(None)  # the end of its stream

    def subscribe(self, fn: Callable[[Message | None], bool], since_ns: int | None) -> list[Message]:
        """Register ``fn`` (called with each new message; it returns False when it cannot
        take more, and is then called once with ``None`` and forgotten); return the kept
        messages at or after ``since_ns`` (none when it is None)."""
        with self._lock:
            self._subscribers.append(fn)
            if since_ns is None:
                return []
            return [m for m in self._past if m["timeNano"] >= since_ns]

    def unsubscribe(self, fn: Callable[[Message | None], bool]) -> None:
        with self._lock:
            if fn in self._subscribers:
                self._subscribers.remove(fn)

    def subscribers(self) -> int:
        with self._lock:
            return len(self._subscribers)


def matches(msg: Message, filters: dict[str, list[str]]) -> bool:
    """dockerd's event filters: ``type``, ``event`` (the action; ``health_status`` matches
    every ``health_status: ...``), ``container`` (id, id prefix or name), ``image``,
    ``label`` (``key`` or ``key=value``); values of one key are ORed, keys ANDed."""
    attrs = msg["Actor"]["Attributes"]
    checks: dict[str, Callable[[str], bool]] = {
        "type": lambda v: msg["Type"] == v,
        "event": lambda v: msg["Action"] == v or msg["Action"].split(":", 1)[0] == v,
        "container": lambda v: (
            msg["Type"] == "container"
            and (msg["Actor"]["ID"].startswith(v) or attrs.get("name") == v or attrs.get("name") == v.lstrip("/"))
        ),
        "image": lambda v: attrs.get("image") == v or attrs.get("image", "").split(":")[0] == v,
        "label": lambda v: _label_matches(attrs, v),
        "network": lambda v: msg["Type"] == "network" and msg["Actor"]["ID"].startswith(v),
        "volume": lambda v: msg["Type"] == "volume" and msg["Actor"]["ID"] == v,
    }
    for key, values in filters.items():
        check = checks.get(key)
        if check is None:
            continue
        if not any(check(v) for v in values):
            return False
    return True


def _label_matches(attrs: dict[str, str], want: str) -> bool:
    key, sep, value = want.partition("=")
    return key in attrs and (not sep or attrs[key] == value)


def parse_time(value: str) -> int | None:
    """``since``/``until`` as dockerd takes them: unix seconds (``1700000000`` or
    ``1700000000.123456789``); None when empty. The CLI turns durations and dates into that."""
    value = value.strip()
    if not value:
        return None
    secs, _, frac = value.partition(".")
    try:
        return int(secs) * 10**9 + (int(frac.ljust(9, "0")[:9]) if frac else 0)
    except ValueError:
        raise ValueError(f"invalid timestamp {value!r}: give unix seconds") from None
