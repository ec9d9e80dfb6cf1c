"""Object storage of one cluster: an in-memory map backed by an append-only JSON log.

Every write appends one line ``{"rv": N, "gr": ..., "ns": ..., "n": ..., "o": obj|null}``
to ``store.jsonl`` and flushes it, so a crash of the server loses nothing the
client was told succeeded (the page cache survives a killed process). Loading
replays the log; when the log grows well past the live data (in lines or in bytes:
twice the live bytes) it is rewritten atomically (compaction), so the file stays
within a small multiple of what the cluster's limits let it hold. resourceVersion
is one counter per cluster, as etcd's revision is for a real cluster, and it
survives restarts.

Limits (machinery/limits.py) are enforced here, on the serialisation that is stored: one object
at most ``max_object_bytes`` (etcd's request limit), the cluster at most ``max_objects``
objects and ``max_bytes`` bytes for a student's writes (``put(..., user=True)``), a
ceiling a little higher for the platform's creates; events are kept apart in a ring
(count, bytes, TTL) that evicts the oldest instead of refusing.

Watchers are cursors into the watch cache: ``history``, the recent events of the
cluster, bounded by count and by bytes. A write appends one event and wakes the
watchers of its resource; each sender (apiserver/server.py) takes the events after its cursor
that its watch selects (``next_event``), holding references to the stored objects,
never copies. A watcher that falls so far behind that an event it would have sent is
evicted from the cache is expired: its sender ends the watch with an ``ERROR`` event
(410 ``Expired``) and the client re-lists, as with a real API server's watch cache.
A watch resumed from a resourceVersion older than the cache is answered 410 as well.
"""

from __future__ import annotations

import asyncio
import builtins
import collections
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import IO, Any

from runtime.kube.machinery.apierrors import ApiError, forbidden
from runtime.kube.machinery.limits import EtcdRequestTooLarge, Limits, too_many_watches
from runtime.kube.machinery.quantity import Quantity
from runtime.kube.meta import Obj

# events live in a ring of their own (machinery/limits.py): evicted, never refused
EVENT_GRS = frozenset({"events"})
QUOTA_NAME = "lab-cluster-limits"
# a log shorter than this is never compacted for its bytes alone
COMPACT_FLOOR_BYTES = 4 * 1024 * 1024


@dataclass(eq=False)
class Event:
    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    gr: str
    obj: Obj
    size: int = 0  # bytes of obj as stored


@dataclass(eq=False)
class Watcher:
    gr: str
    namespace: str | None
    accept: Callable[[Obj], bool]
    pos: int = 0  # resourceVersion of the last event this watcher has looked at
    expired: bool = False  # fell behind the watch cache: the sender sends 410 and ends
    closed: bool = False  # the store closed: the sender ends
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    # called (once) when the watcher expires, e.g. to cut a connection nobody reads
    on_expire: Callable[[], None] | None = None

    def selects(self, ev: Event) -> bool:
        if ev.gr != self.gr:
            return False
        if self.namespace is not None and ev.obj["metadata"].get("namespace", "") != self.namespace:
            return False
        return self.accept(ev.obj)


def _dump(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _qty(n: int) -> str:
    """Bytes as a quota message prints them (``64Mi``)."""
    return str(Quantity(Fraction(n), binary=True))


class Store:
    def __init__(
        self, path: Path, limits: Limits | None = None, codec: Callable[[str, Obj], None] | None = None
    ) -> None:
        self.path = path
        self.limits = limits or Limits()
        # completes an object as the real server's encoding always writes it (zero values of
        # required fields, see openapi.zero_fill_status), on every write and on load
        self.codec = codec
        self.rv = 0
        self.objects: dict[str, dict[tuple[str, str], Obj]] = {}
        self.sizes: dict[tuple[str, str, str], int] = {}  # (gr, ns, name) -> stored bytes
        self.nbytes = 0  # stored bytes of everything but events
        self.nobjects = 0  # objects but events
        # events oldest first: key -> (monotonic time stored, bytes)
        self.events: collections.OrderedDict[tuple[str, str, str], tuple[float, int]] = collections.OrderedDict()
        self.event_bytes = 0
        self.history: collections.deque[Event] = collections.deque()
        self.history_bytes = 0
        self.watchers: set[Watcher] = set()
        self._log: IO[str] | None = None
        self._lines = 0
        self._log_bytes = 0
        self._load()

    # -- persistence -------------------------------------------------------

    def _load(self) -> None:
        if not self.path.exists():
            return
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                if not line.endswith("\n"):
                    break  # a torn last line from a crash mid-write: never acknowledged
                rec = json.loads(line)
                self._lines += 1
                self._log_bytes += len(line)
                self.rv = max(self.rv, int(rec["rv"]))
                bucket = self.objects.setdefault(rec["gr"], {})
                key = (rec["ns"], rec["n"])
                if rec["o"] is None:
                    bucket.pop(key, None)
                else:
                    if self.codec is not None:
                        self.codec(rec["gr"], rec["o"])
                    bucket[key] = rec["o"]
        events: list[tuple[int, tuple[str, str, str], int]] = []
        for gr, bucket in self.objects.items():
            for (ns, name), obj in bucket.items():
                size = len(_dump(obj))
                self._account((gr, ns, name), size)
                if gr in EVENT_GRS:
                    rv = int(obj.get("metadata", {}).get("resourceVersion") or 0)
                    events.append((rv, (gr, ns, name), size))
        now = time.monotonic()
        for _rv, ekey, size in sorted(events):
            self.events[ekey] = (now, size)

    def _account(self, key: tuple[str, str, str], size: int | None) -> int:
        """Record the stored size of ``key`` (None: gone); return the change in bytes."""
        old = self.sizes.pop(key, None)
        if size is not None:
            self.sizes[key] = size
        delta = (size or 0) - (old or 0)
        if key[0] in EVENT_GRS:
            self.event_bytes += delta
        else:
            self.nbytes += delta
            self.nobjects += (size is not None) - (old is not None)
        return delta

    def _append(self, gr: str, ns: str, name: str, data: str | None) -> None:
        """Log one write; ``data`` is the object's serialisation (None: deleted)."""
        if self._log is None:
            self._log = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open
        line = f'{{"rv":{self.rv},"gr":{_dump(gr)},"ns":{_dump(ns)},"n":{_dump(name)},"o":{data or "null"}}}\n'
        self._log.write(line)
        self._log.flush()
        self._lines += 1
        self._log_bytes += len(line)
        live = self.nbytes + self.event_bytes
        if (self._lines > 2000 and self._lines > 3 * self.count()) or (
            self._log_bytes > COMPACT_FLOOR_BYTES and self._log_bytes > 2 * live
        ):
            self.compact()

    def count(self) -> int:
        return sum(len(b) for b in self.objects.values())

    def compact(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        written = 0
        with open(tmp, "w", encoding="utf-8") as f:
            n = 0
            for gr, bucket in self.objects.items():
                for (ns, name), obj in bucket.items():
                    rv = int(obj.get("metadata", {}).get("resourceVersion") or 0)
                    rec = {"rv": rv, "gr": gr, "ns": ns, "n": name, "o": obj}
                    line = _dump(rec) + "\n"
                    f.write(line)
                    written += len(line)
                    n += 1
            # a marker that keeps the counter even when the newest write was a delete
            line = json.dumps({"rv": self.rv, "gr": "", "ns": "", "n": "", "o": None}) + "\n"
            f.write(line)
            written += len(line)
            f.flush()
            os.fsync(f.fileno())
        if self._log is not None:
            self._log.close()
            self._log = None
        tmp.replace(self.path)
        self._lines = n + 1
        self._log_bytes = written

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
        for w in list(self.watchers):
            w.closed = True
            w.wake.set()
        self.watchers.clear()

    # -- reads ---------------------------------------------------------------

    def get(self, gr: str, ns: str, name: str) -> Obj | None:
        return self.objects.get(gr, {}).get((ns, name))

    def list(self, gr: str, ns: str | None = None) -> builtins.list[Obj]:
        bucket = self.objects.get(gr, {})
        items = list(bucket.items()) if ns is None else [(k, v) for k, v in bucket.items() if k[0] == ns]
        items.sort(key=lambda kv: kv[0])
        return [v for _, v in items]

    def iter_all(self) -> Iterator[tuple[str, Obj]]:
        for gr, bucket in self.objects.items():
            for obj in bucket.values():
                yield gr, obj

    # -- writes --------------------------------------------------------------

    def put(self, gr: str, obj: Obj, event_type: str, *, user: bool = False) -> Obj:
        """Store obj (already complete but for resourceVersion) and notify watchers.

        Refused (ApiError, nothing changed) if its serialisation is over the object size
        limit, or if it would take the cluster past its quota: ``user`` writes (a
        student's create or update) stop at the limits, the platform's creates at the
        ceiling above them, and the platform's updates of existing objects never do."""
        if self.codec is not None:
            self.codec(gr, obj)
        meta = obj["metadata"]
        ns = meta.get("namespace", "")
        name = meta["name"]
        key = (gr, ns, name)
        prev_rv = meta.get("resourceVersion")
        meta["resourceVersion"] = str(self.rv + 1)
        data = _dump(obj)
        try:
            self._admit(gr, ns, name, len(data), user)
        except ApiError:
            if prev_rv is None:
                meta.pop("resourceVersion", None)
            else:
                meta["resourceVersion"] = prev_rv
            raise
        if gr in EVENT_GRS:
            self.events.pop(key, None)
            before = self.rv
            self._evict_events(len(data) - self.sizes.get(key, 0))
            if self.rv != before:  # evictions took resourceVersions
                meta["resourceVersion"] = str(self.rv + 1)
                data = _dump(obj)
            self.events[key] = (time.monotonic(), len(data))
        self.rv += 1
        self.objects.setdefault(gr, {})[(ns, name)] = obj
        self._account(key, len(data))
        self._append(gr, ns, name, data)
        self._notify(Event(self.rv, event_type, gr, obj, len(data)))
        return obj

    def _admit(self, gr: str, ns: str, name: str, size: int, user: bool) -> None:
        lim = self.limits
        if size > lim.max_object_bytes:
            raise EtcdRequestTooLarge()
        if gr in EVENT_GRS:
            return
        old = self.sizes.get((gr, ns, name))
        if old is not None and not user:
            return  # the platform's updates: statuses, finalizers, owner references
        grow = size - (old or 0)
        scale = 1.0 if user else 1.0 + lim.platform_reserve
        over: list[tuple[str, str, str, str]] = []
        if old is None and self.nobjects + 1 > lim.max_objects * scale:
            over.append(("count/*", "1", str(self.nobjects), str(int(lim.max_objects * scale))))
        if grow > 0 and self.nbytes + grow > lim.max_bytes * scale:
            over.append(("bytes/*", _qty(grow), _qty(self.nbytes), _qty(int(lim.max_bytes * scale))))
        if over:
            resource, _, group = gr.partition(".")
            requested = ",".join(f"{k}={r}" for k, r, _u, _l in over)
            used = ",".join(f"{k}={u}" for k, _r, u, _l in over)
            limited = ",".join(f"{k}={m}" for k, _r, _u, m in over)
            raise forbidden(
                resource,
                group,
                name,
                f'{gr} "{name}" is forbidden: exceeded quota: {QUOTA_NAME}, '
                f"requested: {requested}, used: {used}, limited: {limited}",
            )

    def _evict_events(self, grow: int) -> None:
        """Make room for one more event (``grow`` bytes more): drop the oldest events past
        the ring's count, bytes or age (the real server's ``--event-ttl``)."""
        lim = self.limits
        deadline = time.monotonic() - lim.event_ttl_seconds
        while self.events:
            key, (stamp, _size) = next(iter(self.events.items()))
            if (
                len(self.events) + 1 <= lim.max_events
                and self.event_bytes + grow <= lim.max_event_bytes
                and stamp >= deadline
            ):
                break
            self.remove(*key)

    def remove(self, gr: str, ns: str, name: str) -> Obj | None:
        obj = self.objects.get(gr, {}).pop((ns, name), None)
        if obj is None:
            return None
        self.rv += 1
        size = -self._account((gr, ns, name), None)
        if gr in EVENT_GRS:
            self.events.pop((gr, ns, name), None)
        # The DELETED event carries the object at a new resourceVersion, as etcd does.
        obj = dict(obj)
        obj["metadata"] = dict(obj["metadata"], resourceVersion=str(self.rv))
        self._append(gr, ns, name, None)
        self._notify(Event(self.rv, "DELETED", gr, obj, size))
        return obj

    # -- watch ---------------------------------------------------------------

    def add_watcher(self, w: Watcher) -> None:
        """Register a watcher at the current resourceVersion; 429 past ``max_watches``."""
        if len(self.watchers) >= self.limits.max_watches:
            raise too_many_watches(self.limits.max_watches)
        w.pos = self.rv
        self.watchers.add(w)

    def _notify(self, ev: Event) -> None:
        self.history.append(ev)
        self.history_bytes += ev.size
        for w in self.watchers:
            if w.expired:
                continue
            if w.gr == ev.gr and (w.namespace is None or ev.obj["metadata"].get("namespace", "") == w.namespace):
                w.wake.set()
            elif w.pos == ev.rv - 1:
                w.pos = ev.rv  # caught up, and this one is not for it
        lim = self.limits
        while len(self.history) > 1 and (
            len(self.history) > lim.watch_cache_events or self.history_bytes > lim.watch_cache_bytes
        ):
            old = self.history.popleft()
            self.history_bytes -= old.size
            for w in self.watchers:
                if not w.expired and w.pos < old.rv and w.selects(old):
                    self._expire(w)

    def _expire(self, w: Watcher) -> None:
        w.expired = True
        w.wake.set()
        if w.on_expire is not None:
            w.on_expire()

    def next_event(self, w: Watcher) -> Event | None:
        """The next event after ``w``'s cursor that it selects (None: none yet, or the
        watcher is expired or closed); advances the cursor."""
        if w.expired or w.closed:
            return None
        if not self.history:
            w.pos = self.rv
            return None
        first = self.history[0].rv
        if w.pos + 1 < first:
            w.pos = first - 1  # what was evicted was not for it (or it would be expired)
        while w.pos < self.rv:
            ev = self.history[w.pos + 1 - first]
            w.pos = ev.rv
            if w.selects(ev):
                return ev
        return None

    def events_since(self, rv: int) -> builtins.list[Event] | None:
        """Events after rv from history, or None if rv is older than the history."""
        if rv >= self.rv:
            return []
        if not self.history or self.history[0].rv > rv + 1:
            return None
        return [e for e in self.history if e.rv > rv]
