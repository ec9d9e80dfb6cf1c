"""Object storage of one cluster: an in-memory map backed by an append-only JSON log.

Every write appends one line ``{"rv": N, "gr": ..., "ns": ..., "n": ..., "o": obj|null}``
to ``store.jsonl`` and flushes it, so a crash of the server loses nothing the
client was told succeeded (the page cache survives a killed process). Loading
replays the log; when the log grows well past the live data it is rewritten
atomically (compaction). resourceVersion is one counter per cluster, as etcd's
revision is for a real cluster, and it survives restarts.

Watchers register here; every write is fanned out to them. A short history of
recent events lets a watch resume from an older resourceVersion; older than
that is answered "410 Gone", exactly as a real API server does after etcd
compaction.
"""

from __future__ import annotations

import asyncio
import builtins
import collections
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

Obj = dict[str, Any]

HISTORY = 256


@dataclass
class Event:
    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    gr: str
    obj: Obj


@dataclass(eq=False)
class Watcher:
    gr: str
    namespace: str | None
    accept: Callable[[Obj], bool]
    queue: asyncio.Queue[Event | None] = field(default_factory=asyncio.Queue)
    overflowed: bool = False


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.rv = 0
        self.objects: dict[str, dict[tuple[str, str], Obj]] = {}
        self.history: collections.deque[Event] = collections.deque(maxlen=HISTORY)
        self.watchers: set[Watcher] = set()
        self._log: IO[str] | None = None
        self._lines = 0
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
                self.rv = max(self.rv, int(rec["rv"]))
                bucket = self.objects.setdefault(rec["gr"], {})
                key = (rec["ns"], rec["n"])
                if rec["o"] is None:
                    bucket.pop(key, None)
                else:
                    bucket[key] = rec["o"]

    def _append(self, gr: str, ns: str, name: str, obj: Obj | None) -> None:
        if self._log is None:
            self._log = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open
        rec = {"rv": self.rv, "gr": gr, "ns": ns, "n": name, "o": obj}
        self._log.write(json.dumps(rec, separators=(",", ":")) + "\n")
        self._log.flush()
        self._lines += 1
        if self._lines > 2000 and self._lines > 3 * self.count():
            self.compact()

    def count(self) -> int:
        return sum(len(b) for b in self.objects.values())

    def compact(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            n = 0
            for gr, bucket in self.objects.items():
                for (ns, name), obj in bucket.items():
                    rv = int(obj.get("metadata", {}).get("resourceVersion") or 0)
                    rec = {"rv": rv, "gr": gr, "ns": ns, "n": name, "o": obj}
                    f.write(json.dumps(rec, separators=(",", ":")) + "\n")
                    n += 1
            # a marker that keeps the counter even when the newest write was a delete
            f.write(json.dumps({"rv": self.rv, "gr": "", "ns": "", "n": "", "o": None}) + "\n")
            f.flush()
            os.fsync(f.fileno())
        if self._log is not None:
            self._log.close()
            self._log = None
        tmp.replace(self.path)
        self._lines = n + 1

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
        for w in list(self.watchers):
            w.queue.put_nowait(None)
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

    def put(self, gr: str, obj: Obj, event_type: str) -> Obj:
        """Store obj (already complete but for resourceVersion) and notify watchers."""
        self.rv += 1
        meta = obj["metadata"]
        meta["resourceVersion"] = str(self.rv)
        ns = meta.get("namespace", "")
        self.objects.setdefault(gr, {})[(ns, meta["name"])] = obj
        self._append(gr, ns, meta["name"], obj)
        self._notify(Event(self.rv, event_type, gr, obj))
        return obj

    def remove(self, gr: str, ns: str, name: str) -> Obj | None:
        obj = self.objects.get(gr, {}).pop((ns, name), None)
        if obj is None:
            return None
        self.rv += 1
        # The DELETED event carries the object at a new resourceVersion, as etcd does.
        obj = dict(obj)
        obj["metadata"] = dict(obj["metadata"], resourceVersion=str(self.rv))
        self._append(gr, ns, name, None)
        self._notify(Event(self.rv, "DELETED", gr, obj))
        return obj

    # -- watch ---------------------------------------------------------------

    def _notify(self, ev: Event) -> None:
        self.history.append(ev)
        for w in list(self.watchers):
            if w.gr != ev.gr:
                continue
            if w.namespace is not None and ev.obj["metadata"].get("namespace", "") != w.namespace:
                continue
            if not w.accept(ev.obj):
                continue
            if w.queue.qsize() > 10000:
                w.overflowed = True
                w.queue.put_nowait(None)
                self.watchers.discard(w)
                continue
            w.queue.put_nowait(ev)

    def events_since(self, rv: int) -> builtins.list[Event] | None:
        """Events after rv from history, or None if rv is older than the history."""
        if rv >= self.rv:
            return []
        if not self.history or self.history[0].rv > rv + 1:
            return None
        return [e for e in self.history if e.rv > rv]
