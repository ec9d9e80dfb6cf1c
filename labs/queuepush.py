"""Queue positions pushed to the waiting pages, coalesced: one batch per interval, not one per change.

When a class starts a lab at once, the provisioning queue changes with every claim, stop
and finished build. Pushing every waiting session its new place on every change made
O(N) messages per change, O(N²) over a class's herd (50 students: thousands of channel
layer sends from the provisioning workers, which pay for them before taking their next
sandbox). The page's consumer already shows at most one place a second
(``LabEventsConsumer.QUEUE_INTERVAL``), so the rest was work for nothing.

Now the platform sends at most one batch per ``INTERVAL``, whatever the number of changes
and of processes making them (web, every provisioning worker), coordinated in Redis:

- leading edge: the first change when no window is open opens one (``SET NX`` with a TTL a
  little shorter than the interval) and pushes every waiting session its place at once;
- changes while a window is open only mark the queue dirty;
- trailing edge: the process that opened the window looks again when the interval is over
  (a timer thread) and, if the queue went dirty meanwhile, opens the next window and pushes
  the places as they are then. So the last change of a burst reaches the pages within about
  an interval, and a burst of K changes costs two batches, not K.

Each batch is one query for the queue, one for recent builds, and one message per waiting
session: O(N) per interval. If Redis cannot be reached, or the process that opened a window
dies before its timer fires, nothing is lost for good: the next change pushes everything
again, and the page asks for its state every few seconds while it waits (static/js/lab.js,
``STATE_POLL_EVERY``), which the events consumer answers from the database.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid

import redis
from django.conf import settings
from django.db import connection
from django.utils import timezone

from labs import push, selectors

log = logging.getLogger(__name__)

INTERVAL = 1.0  # seconds between two batches, at most one per interval
# a window's key lives a little less than its timer waits, so the timer never finds its own
# window still open (a change made in between opens the next one, whose timer sees the dirt)
_WINDOW_TTL = 0.9
KEY_PREFIX = "kubelab:labs:queue-push"

_lock = threading.Lock()
_client: redis.Redis | None = None
_client_pid = 0


def _redis() -> redis.Redis:
    global _client, _client_pid
    with _lock:
        if _client is None or _client_pid != os.getpid():  # none yet, or the parent's (forked)
            _client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
            _client_pid = os.getpid()
        return _client


def changed() -> None:
    """The provisioning queue changed (call after commit): push the places now, or mark
    them for the push that ends the window already open."""
    window, dirty = f"{KEY_PREFIX}:window", f"{KEY_PREFIX}:dirty"
    try:
        r = _redis()
        if not r.set(window, uuid.uuid4().hex, nx=True, px=int(INTERVAL * _WINDOW_TTL * 1000)):
            r.set(dirty, 1, px=int(INTERVAL * 10_000))
            return
    except redis.RedisError:
        log.warning("could not coordinate the queue push; pushing anyway", exc_info=True)
    else:
        timer = threading.Timer(INTERVAL, _window_closed)
        timer.daemon = True
        timer.start()
    push_positions()


def _window_closed() -> None:
    try:
        if _redis().delete(f"{KEY_PREFIX}:dirty"):
            changed()
    except Exception:  # a timer thread: nobody else would see it
        log.warning("could not push the provisioning queue", exc_info=True)
    finally:
        connection.close()  # this thread's own database connection, if it opened one


def push_positions() -> int:
    """Tell every session waiting for a provisioning worker its place and estimate: one
    message each. Returns how many were sent."""
    try:
        queue = selectors.provisioning_queue(timezone.now())
        if not queue:
            return 0
        builds = selectors.recent_build_seconds()
        slots = selectors.provisioning_slots()
        events = [
            (
                f"lab.{pk}",
                {"type": "lab.queue", "queue": selectors.queue_position(ahead=ahead, builds=builds, slots=slots)},
            )
            for ahead, (pk, _) in enumerate(queue)
        ]
    except Exception:
        log.warning("could not compute the provisioning queue", exc_info=True)
        return 0
    try:
        push.group_send_many(events)
    except Exception:
        log.warning("could not push the provisioning queue", exc_info=True)
        return 0
    return len(events)
