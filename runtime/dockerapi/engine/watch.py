"""Bounded threads per engine: one ``Watcher`` for every descriptor, one ``Worker`` for exits.

Why. An engine used to start a thread per container to wait for its exit and one per
output stream to copy it to the log (and as many per exec): 200 running containers were
600 threads in runtimed, all charged to no sandbox, and a student decided how many
(issue #12). Now an engine has at most two threads of its own, however many containers
and execs it runs:

``Watcher``
    One thread, one ``epoll``: container and exec output (pipes, PTY masters) and their
    pidfds. A callback runs on the watcher's thread when its descriptor is readable; it
    returns False when done (EOF, EIO, the process ended), and then ``on_done`` runs
    (close the descriptor, tell whoever waits). Callbacks must not block for long: an
    output callback appends to the container's log on the sandbox's disk and pushes to
    in-memory streams; a pidfd callback hands the exit to the ``Worker``. (A build step's
    output listener may wait for a slow ``docker build`` client: that holds up this
    engine's output only, which is the backpressure a build needs, and never another
    sandbox's.)
``Worker``
    One thread that runs what may block (an exit's teardown: ``runc delete``, unmounts,
    ``--rm``), in order.

``Timers``
    One thread and a heap: restart-policy back-offs and health-check intervals and
    timeouts. An idle container with a health check costs a heap entry, not a thread or a
    polling wake-up; what a timer starts (a restart, a probe's ``runc exec``) runs on the
    engine's second ``Worker`` ("jobs"), so an exit is never queued behind it.

All start on first use and end with ``close`` (an engine's close or detach). Threads
that serve one API request for as long as it lasts (``logs -f``, ``attach``, ``wait``,
builds) are bounded per engine by the API (http/api.py, ``MAX_IN_FLIGHT``).
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import os
import queue
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("runtime.dockerapi")

JOIN_TIMEOUT = 5.0


@dataclass
class _Watch:
    on_ready: Callable[[], bool]
    on_done: Callable[[], None] | None


class Watcher:
    """Calls ``on_ready`` on one thread whenever a registered descriptor is readable."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._watches: dict[int, _Watch] = {}
        self._ep: select.epoll | None = None
        self._wake = -1
        self._thread: threading.Thread | None = None
        self._closed = False

    def add(self, fd: int, on_ready: Callable[[], bool], on_done: Callable[[], None] | None = None) -> None:
        """Watch ``fd`` until ``on_ready`` returns False (or raises); then ``on_done``.
        After ``close`` nothing is watched: ``on_done`` runs at once."""
        with self._lock:
            if not self._closed:
                if self._ep is None:
                    self._ep = select.epoll()
                    self._wake = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
                    self._ep.register(self._wake, select.EPOLLIN)
                    self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                    self._thread.start()
                self._watches[fd] = _Watch(on_ready, on_done)
                self._ep.register(fd, select.EPOLLIN)
                return
        if on_done is not None:
            on_done()

    def pause(self, fd: int) -> None:
        """Stop calling ``fd``'s ``on_ready`` until ``resume`` (a reader is behind). Hang-up
        and errors are still reported: a pipe whose writer is gone is read to its end."""
        with self._lock:
            if fd in self._watches and self._ep is not None:
                with contextlib.suppress(OSError):
                    self._ep.modify(fd, 0)

    def resume(self, fd: int) -> None:
        with self._lock:
            if fd in self._watches and self._ep is not None:
                with contextlib.suppress(OSError):
                    self._ep.modify(fd, select.EPOLLIN)

    def _finish(self, fd: int) -> None:
        with self._lock:
            w = self._watches.pop(fd, None)
            if w is not None and self._ep is not None:
                with contextlib.suppress(OSError):
                    self._ep.unregister(fd)
        if w is not None and w.on_done is not None:
            try:
                w.on_done()
            except Exception:
                log.exception("%s: a watch's completion failed", self.name)

    def _loop(self) -> None:
        ep = self._ep
        assert ep is not None
        while True:
            try:
                events = ep.poll(1.0)
            except InterruptedError:
                continue
            except (OSError, ValueError):  # closed under us
                return
            for fd, _mask in events:
                if fd == self._wake:
                    with contextlib.suppress(BlockingIOError):
                        os.eventfd_read(self._wake)
                    continue
                with self._lock:
                    if self._closed:
                        return
                    w = self._watches.get(fd)
                if w is None:
                    continue
                try:
                    keep = w.on_ready()
                except Exception:
                    log.exception("%s: a watch failed", self.name)
                    keep = False
                if not keep:
                    self._finish(fd)
            with self._lock:
                if self._closed:
                    return

    def close(self) -> None:
        """Stop watching (between two callbacks: no chunk read is left unhandled); every
        ``on_done`` runs, here."""
        with self._lock:
            self._closed = True
            thread, ep, wake = self._thread, self._ep, self._wake
        if wake >= 0:
            with contextlib.suppress(OSError):
                os.eventfd_write(wake, 1)
        if thread is not None and thread is not threading.current_thread():
            thread.join(JOIN_TIMEOUT)
        for fd in list(self._watches):
            self._finish(fd)
        with self._lock:
            self._ep, self._wake = None, -1
        if ep is not None:
            ep.close()
        if wake >= 0:
            os.close(wake)

    def count(self) -> int:
        with self._lock:
            return len(self._watches)


class Worker:
    """Runs submitted calls one after another on one thread."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._q: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, fn: Callable[[], None]) -> None:
        with self._lock:
            if self._closed:
                return
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._thread.start()
            self._q.put(fn)

    def on_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def _loop(self) -> None:
        while True:
            fn = self._q.get()
            if fn is None:
                return
            try:
                fn()
            except Exception:
                log.exception("%s: a task failed", self.name)

    def close(self) -> None:
        """Run what is queued already, then end the thread."""
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is not None:
            self._q.put(None)
            if thread is not threading.current_thread():
                thread.join(JOIN_TIMEOUT)


class Timers:
    """Calls ``fn`` on one thread when its time comes: restart back-offs, health-check
    intervals and timeouts. An idle container costs one heap entry, no thread and no wake-up
    before its time. Callbacks must be short (they hand real work to a ``Worker``)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._cancelled: set[int] = set()
        self._seq = 0
        self._thread: threading.Thread | None = None
        self._closed = False

    def call_later(self, delay: float, fn: Callable[[], None]) -> int:
        """Run ``fn`` in ``delay`` seconds; the returned handle cancels it (``cancel``)."""
        with self._cond:
            self._seq += 1
            if self._closed:
                return self._seq
            heapq.heappush(self._heap, (time.monotonic() + max(0.0, delay), self._seq, fn))
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._thread.start()
            self._cond.notify()
            return self._seq

    def cancel(self, handle: int) -> None:
        with self._cond:
            if any(seq == handle for _t, seq, _fn in self._heap):
                self._cancelled.add(handle)

    def pending(self) -> int:
        with self._cond:
            return len(self._heap) - len(self._cancelled)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._closed:
                    if self._heap:
                        left = self._heap[0][0] - time.monotonic()
                        if left <= 0:
                            break
                        self._cond.wait(left)
                    else:
                        self._cond.wait()
                if self._closed:
                    return
                _t, seq, fn = heapq.heappop(self._heap)
                if seq in self._cancelled:
                    self._cancelled.discard(seq)
                    continue
            try:
                fn()
            except Exception:
                log.exception("%s: a timer failed", self.name)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._heap.clear()
            self._cancelled.clear()
            thread = self._thread
            self._cond.notify()
        if thread is not None and thread is not threading.current_thread():
            thread.join(JOIN_TIMEOUT)
