"""A class through the real web tier: the yardstick of issue #13.

``--students`` students (default 50), each an asyncio client speaking HTTP and WebSocket
to daphne exactly as the lab page does, all at the same moment:

1. log in through the login form (its CSRF token included); all logins finish before 2;
2. press Start on the lab "Deploy, scale, update, roll back" (``services: [kubernetes]``);
3. listen on the lab's events WebSocket until the session is ``ready`` (``ready_*``: from
   the Start POST to that message; ``queue`` messages and the status' ``queue`` field are
   recorded: the place in the provisioning queue); like the page it asks for the state every
   STATE_POLL seconds meanwhile, so a lost push costs one interval (``ready_heard_late_n``:
   students who heard of ready over READY_HEARD_LATE s after the worker set it, the lost or
   late pushes; ``ready_heard_lag_max_s`` the worst);
4. open terminal 1 (Origin: the site's own scheme://host:port) and type while the rest of the
   class is still starting: a unique 4-letter marker, then Ctrl-U, at a person's pace;
   ``echo_herd_*`` is marker sent → marker back, over the samples taken while at least one
   classmate was not ready yet; ``echo_quiet_*`` the same after everyone was ready (the
   floor in the same run);
5. run ``kubectl create deployment web --image=kubelab/hello:1 --replicas=2 && kubectl
   rollout status deployment/web --timeout=120s`` in that terminal, until its marker;
6. press Check on "Create the Deployment web running kubelab/hello:1" (POST with the CSRF
   token; ``check_*``: POST → the finished ``check`` verdict on the events socket, polled
   from the submission endpoint when the socket has not said within 2 s);
7. press Stop.

Also: host memory in use (MemTotal - MemAvailable) before the Start and with every lab
running, per student; runtimed's RSS and CPU seconds (its own plus its reaped helpers')
at the end; whether runtimed still creates a sandbox afterwards (a ``busybox`` create +
exec + remove with the admin credential, as ``python -m runtime run`` does).

The platform: by default this script starts its own with ``scripts/run.py`` (make run's
supervisor: Redis, runtimed, daphne, the provisioning and grading workers, beat) on a
VAR_DIR under var/, a free loopback port and runtimed host resources of its own (see
_common.Supervised), after ``migrate``, ``collectstatic`` and ``import_course
content/intro-to-kubernetes``; it is removed afterwards. With ``--url`` it uses a running
platform instead: students are made with ``manage.py`` against the database of this
environment (VAR_DIR / DATABASE_URL as that platform's), runtimed is the one at
RUNTIME_SOCKET (the admin credential from $RUNTIME_ADMIN_TOKEN or beside the socket).

Also, from the database: where a Start's time went (``provision_*``: queued for a
provisioning process, image check, find, the sandbox create, credentials) and a Check's
(``check_queued``/``check_grading``), p50 and p95. ``--profile DIR`` (own platform only)
runs ``py-spy record`` on runtimed, daphne and both Celery workers (pool processes included)
for the class, keeps the raw stacks in DIR and logs each process's hottest frames of our
code; sampling costs CPU of its own, so take figures from an unprofiled run.
``client_lag_herd_*`` is this script's own loop lag during the herd (its share of an echo:
50 students' sockets in one process on the same cores); ``--samples FILE`` keeps every echo
sample with its wall time, to line slow echoes up with the platform's log (run with
``KUBELAB_STALL_MS=60`` and runtimed and daphne log each event-loop stall with its stack).

    flock /tmp/kubelab-test.lock .venv/bin/python bench/classroom.py [--students 50]
        [--spread 0] [--url http://127.0.0.1:8000] [--profile /tmp/prof]

Needs root. Progress on stderr; one JSON object on the last stdout line. Nothing is asserted:
a student whose flow broke is counted in ``failures`` with the first reason.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import secrets
import statistics
import string
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from _common import (
    REPO,
    HostResources,
    Supervised,
    cgroup_cpu_seconds,
    host_busy_seconds,
    loadavg,
    log,
    mem_used_kb,
    pct,
    pid_cpu_seconds,
    pid_status_kb,
    runtimed_cpu_seconds,
    sigterm_as_interrupt,
    socket_peer_pid,
)

TAG = "classroom"
RESOURCES = HostResources("10.238.0.0/20", "klbenchcr", "kubelab-benchcr", 3_900_000_000)
LAB_TITLE = "Deploy, scale, update, roll back"
EXERCISE_SLUG = "create-deployment"
PASSWORD = "kubelab-bench-" + "x" * 8
KUBECTL = (
    "kubectl create deployment web --image=kubelab/hello:1 --replicas=2 && "
    "kubectl rollout status deployment/web --timeout=120s"
)
READY_TIMEOUT = 900.0
# While its sandbox starts the lab page asks the events socket for the state this often
# (STATE_POLL_EVERY in static/js/lab.js): a lost status push costs it one interval.
STATE_POLL = 4.0
# Heard of ready later than this after the worker set it (ready_at): the push was lost or late.
READY_HEARD_LATE = 2.0
STEP_TIMEOUT = 240.0
VERDICT_TIMEOUT = 120.0
HERD_TYPING_MAX = 900.0  # a student types at most this long waiting for the class
QUIET_SAMPLES = 15

# Run with manage.py's environment: make (or reset) the students, find the lab and exercise.
SETUP = """
import json, sys
import django
django.setup()
from django.contrib.auth.models import User
from courses.models import Exercise, Lab
prefix, n, password, title, slug = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
for i in range(n):
    user, _ = User.objects.get_or_create(username=f"{prefix}{i:03d}")
    user.set_password(password)
    user.save()
labs = [
    lab for lab in Lab.objects.active().filter(title=title)
    if "kubernetes" in (lab.environment or {}).get("services", [])
]
if not labs:
    raise SystemExit(f"no active lab {title!r} with services: [kubernetes]: import_course content/intro-to-kubernetes")
lab = labs[-1]
exercise = Exercise.objects.get(lab=lab, slug=slug)
print(json.dumps({"lab": lab.pk, "exercise": exercise.pk}))
"""

# Stop whatever lab sessions of these students are still live (an earlier run's, with --url).
CLEANUP = """
import sys
import django
django.setup()
from labs import services
from labs.models import LabSession
for s in LabSession.objects.filter(user__username__startswith=sys.argv[1]).exclude(status__in=["stopped", "failed"]):
    try:
        services.lab_session_stop(session=s)
    except Exception as e:
        print(f"could not stop {s.pk}: {e}", file=sys.stderr)
"""


# Where a Start's and a Check's time went, from the database (the provisioning steps' own
# timestamps in LabSession.progress; Submission's created/started/finished): seconds, p50/p95.
BREAKDOWN = """
import json, statistics, sys
import django
django.setup()
from datetime import datetime
from grader.models import Submission
from labs.models import LabSession

def pct(xs, p):
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))], 2) if xs else None

steps = {"queued": [], "image": [], "find": [], "create": [], "tokens": [], "total": []}
for s in LabSession.objects.filter(user__username__startswith=sys.argv[1], ready_at__isnull=False):
    at = {}
    for p in s.progress or []:
        at.setdefault(p["stage"], datetime.fromisoformat(p["at"]))
    if not all(k in at for k in ("image", "image-ready", "sandbox-ready", "ready")):
        continue
    sandbox = at.get("sandbox", at["image-ready"])
    steps["queued"].append((at["image"] - s.created_at).total_seconds())
    steps["image"].append((at["image-ready"] - at["image"]).total_seconds())
    steps["find"].append((sandbox - at["image-ready"]).total_seconds())
    steps["create"].append((at["sandbox-ready"] - sandbox).total_seconds())
    steps["tokens"].append((at["ready"] - at["sandbox-ready"]).total_seconds())
    steps["total"].append((at["ready"] - s.created_at).total_seconds())
subs = Submission.objects.filter(user__username__startswith=sys.argv[1], finished_at__isnull=False)
grading = {"queued": [], "grading": []}
for sub in subs:
    if sub.started_at:
        grading["queued"].append((sub.started_at - sub.created_at).total_seconds())
        grading["grading"].append((sub.finished_at - sub.started_at).total_seconds())
out = {f"provision_{k}_p50_p95_s": [pct(v, 50), pct(v, 95)] for k, v in steps.items()}
out.update({f"check_{k}_p50_p95_s": [pct(v, 50), pct(v, 95)] for k, v in grading.items()})
out["_ready_at"] = {
    s.user.username: s.ready_at.timestamp()
    for s in LabSession.objects.filter(user__username__startswith=sys.argv[1], ready_at__isnull=False)
}
print(json.dumps(out))
"""


class PageScrape(HTMLParser):
    """What the bench reads off a page (an HTML parser, not regexes): the login form's CSRF token
    and the texts of the flash messages (templates/base.html: ``.messages`` > ``.alert``)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.csrf_token = ""
        self.messages: list[str] = []
        self._alert_depth = 0  # >0 inside an alert: its element depth
        self._depth = 0
        self._text: list[str] = []

    @classmethod
    def of(cls, page: str) -> PageScrape:
        scrape = cls()
        scrape.feed(page)
        scrape.close()
        return scrape

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "input" and a.get("name") == "csrfmiddlewaretoken" and not self.csrf_token:
            self.csrf_token = a.get("value") or ""
        if tag in VOID_ELEMENTS:
            return
        self._depth += 1
        if not self._alert_depth and "alert" in (a.get("class") or "").split():
            self._alert_depth, self._text = self._depth, []

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID_ELEMENTS:
            return
        if self._alert_depth and self._depth == self._alert_depth:
            text = " ".join("".join(self._text).split())
            if text:
                self.messages.append(text)
            self._alert_depth = 0
        self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._alert_depth:
            self._text.append(data)


VOID_ELEMENTS = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Failed(Exception):
    """A student's flow broke: the message says at which step and why."""


# --- one terminal, acknowledged like xterm.js ---------------------------------------------


class Term:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.buffer = bytearray()
        self.arrived = asyncio.Event()
        self.closed = False
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        unacked = 0
        try:
            async for msg in self.ws:
                if msg.type == aiohttp.WSMsgType.BINARY:
                    self.buffer += msg.data
                    if len(self.buffer) > 65536:
                        del self.buffer[:-16384]
                    unacked += len(msg.data)
                    if unacked >= 32768:
                        await self.ws.send_str(json.dumps({"type": "ack", "bytes": unacked}))
                        unacked = 0
                    self.arrived.set()
                elif msg.type != aiohttp.WSMsgType.TEXT:
                    break
        finally:
            self.closed = True
            self.arrived.set()

    async def send(self, data: bytes) -> None:
        await self.ws.send_bytes(data)

    async def expect(self, needle: bytes, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.buffer:
            if self.closed:
                raise Failed(f"terminal closed ({self.ws.close_code}) waiting for {needle!r}")
            self.arrived.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{needle!r} did not arrive in {timeout:g} s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), left)

    async def run(self, command: str, timeout: float) -> int:
        """Type ``command`` and Enter; wait for its exit status (a marker the echo cannot match)."""
        nonce = secrets.token_hex(4)
        self.buffer.clear()
        await self.send(f"{command}; echo __do''ne_{nonce}_$?__\r".encode())
        await self.expect(f"__done_{nonce}_".encode(), timeout)
        m = re.search(rf"__done_{nonce}_(\d+)__".encode(), bytes(self.buffer))
        if m is None:  # the status digits may still be in flight
            await self.expect(b"__", 5)
            m = re.search(rf"__done_{nonce}_(\d+)__".encode(), bytes(self.buffer))
        return int(m.group(1)) if m else -1

    async def echo_ms(self) -> float:
        marker = "".join(random.choices(string.ascii_lowercase, k=4)).encode()
        self.buffer.clear()
        start = time.perf_counter()
        await self.send(marker)
        await self.expect(marker, 10)
        elapsed = (time.perf_counter() - start) * 1000
        await self.send(b"\x15")  # Ctrl-U: the line is empty again
        return elapsed

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
        self.reader.cancel()


# --- one student ------------------------------------------------------------------------------


@dataclass
class Figures:
    login_s: float | None = None
    ready_s: float | None = None
    ready_heard_at: float | None = None  # wall clock, to compare with the session's ready_at
    queue: list[Any] = field(default_factory=list)  # places in the provisioning queue, as shown
    echo_herd: list[float] = field(default_factory=list)
    echo_at: list[tuple[float, float]] = field(default_factory=list)  # (wall time, ms): for --samples
    echo_quiet: list[float] = field(default_factory=list)
    kubectl_s: float | None = None
    check_s: float | None = None
    check_status: str | None = None
    stopped: bool = False
    error: str | None = None


class Student:
    """A browser's worth of one student: a cookie jar, the lab page's sockets."""

    def __init__(self, base: str, username: str, password: str) -> None:
        self.base = base.rstrip("/")
        self.origin = "{0.scheme}://{0.netloc}".format(urlsplit(self.base))
        self.ws_base = self.origin.replace("http", "ws", 1)
        self.username = username
        self.password = password
        self.http = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True),  # cookies of 127.0.0.1
            timeout=aiohttp.ClientTimeout(total=120),
        )
        self.session_id: str | None = None
        self.status: str | None = None
        self.error: str | None = None
        self.status_changed = asyncio.Event()
        self.messages: list[tuple[float, dict[str, Any]]] = []
        self.verdicts: dict[int, list[dict[str, Any]]] = {}
        self.verdict_arrived = asyncio.Event()
        self.events: aiohttp.ClientWebSocketResponse | None = None
        self.events_task: asyncio.Task[None] | None = None
        self.events_reconnects = 0
        self.closing = False
        self.fig = Figures()

    def csrf(self) -> str:
        for cookie in self.http.cookie_jar:
            if cookie.key == "csrftoken":
                return cookie.value
        raise Failed("no csrftoken cookie")

    def headers(self) -> dict[str, str]:
        return {"Origin": self.origin, "Referer": self.base + "/", "X-CSRFToken": self.csrf()}

    async def login(self) -> None:
        start = time.perf_counter()
        async with self.http.get(f"{self.base}/accounts/login/") as r:
            page = await r.text()
            if r.status != 200:
                raise Failed(f"login page: HTTP {r.status}")
        token = PageScrape.of(page).csrf_token
        if not token:
            raise Failed("login page has no CSRF token")
        form = {"username": self.username, "password": self.password, "csrfmiddlewaretoken": token}
        async with self.http.post(
            f"{self.base}/accounts/login/", data=form, headers={"Origin": self.origin, "Referer": str(r.url)}
        ) as r2:
            await r2.read()
            if r2.status != 200 or urlsplit(str(r2.url)).path.startswith("/accounts/login"):
                raise Failed(f"login refused: HTTP {r2.status} at {r2.url}")
        if not any(c.key == "sessionid" for c in self.http.cookie_jar):
            raise Failed("login set no session cookie")
        self.fig.login_s = time.perf_counter() - start

    async def start(self, lab_id: int) -> float:
        """Press Start; returns the perf_counter time it was pressed."""
        pressed = time.perf_counter()
        async with self.http.post(
            f"{self.base}/labs/{lab_id}/start/", data={"csrfmiddlewaretoken": self.csrf()}, headers=self.headers()
        ) as r:
            page = await r.text()
            m = re.fullmatch(r"/labs/([0-9a-f-]{36})/", urlsplit(str(r.url)).path)
            if r.status != 200 or m is None:
                notes = PageScrape.of(page).messages
                raise Failed(f"Start: HTTP {r.status} at {r.url}" + (f": {'; '.join(notes)}" if notes else ""))
        self.session_id = m.group(1)
        await self.open_events()
        return pressed

    # the events socket: status, queue and check messages; reconnects while the page is open
    async def open_events(self, timeout: float = 30) -> None:
        url = f"{self.ws_base}/ws/labs/{self.session_id}/events/"
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.events = await self.http.ws_connect(url, headers={"Origin": self.origin}, heartbeat=None)
                break
            except (aiohttp.ClientError, OSError) as e:
                if time.monotonic() > deadline:
                    raise Failed(f"events socket: {e}") from None
                await asyncio.sleep(0.5)
        if self.events_task is None:
            self.events_task = asyncio.create_task(self._events())

    async def _events(self) -> None:
        while not self.closing:
            ws = self.events
            assert ws is not None
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                data = json.loads(msg.data)
                self.messages.append((time.perf_counter(), data))
                kind = data.get("type")
                if kind == "status":
                    if data.get("queue") is not None:
                        self.fig.queue.append(data["queue"])
                    self.status = data.get("status")
                    self.error = data.get("error") or None
                    self.status_changed.set()
                elif kind == "queue":
                    self.fig.queue.append(data.get("queue"))
                elif kind == "check" and data.get("finished"):
                    self.verdicts.setdefault(int(data["submission"]), []).append(data)
                    self.verdict_arrived.set()
            if self.closing:
                return
            # the page reconnects after a drop (daphne restarted): so do we, for a minute
            self.events_reconnects += 1
            deadline = time.monotonic() + 60
            while not self.closing:
                await asyncio.sleep(0.5)
                try:
                    self.events = await self.http.ws_connect(
                        f"{self.ws_base}/ws/labs/{self.session_id}/events/", headers={"Origin": self.origin}
                    )
                    break
                except (aiohttp.ClientError, OSError):
                    if time.monotonic() > deadline:
                        return

    async def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        asked = time.monotonic()
        while self.status != "ready":
            if time.monotonic() - asked >= STATE_POLL and self.events is not None and not self.events.closed:
                asked = time.monotonic()
                with contextlib.suppress(Exception):
                    await self.events.send_str(json.dumps({"type": "state"}))
            if self.status in {"failed", "stopped", "stopping"}:
                raise Failed(f"lab session {self.status}: {self.error or 'no reason given'}")
            self.status_changed.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise Failed(f"not ready in {timeout:g} s (status {self.status})")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.status_changed.wait(), min(left, STATE_POLL))

    async def open_term(self, n: int = 1, timeout: float = 30) -> Term:
        url = f"{self.ws_base}/ws/labs/{self.session_id}/term/{n}/?rows=30&cols=120"
        ws = await self.http.ws_connect(url, headers={"Origin": self.origin}, max_msg_size=1 << 22)
        term = Term(ws)
        nonce = secrets.token_hex(3)
        await term.send(f"stty -ixon; echo re''ady{nonce}\r".encode())
        await term.expect(f"ready{nonce}".encode(), timeout)
        return term

    async def check(self, exercise_id: int) -> tuple[int, float, dict[str, Any]]:
        """Press Check; (submission id, seconds to the verdict, the verdict)."""
        sub, start = await self.press_check(exercise_id)
        elapsed, state, _via = await self.wait_verdict(sub, start, VERDICT_TIMEOUT)
        return sub, elapsed, state

    async def press_check(self, exercise_id: int) -> tuple[int, float]:
        """POST Check as the page does; (submission id, perf_counter time it was pressed)."""
        url = f"{self.base}/labs/{self.session_id}/exercises/{exercise_id}/check/"
        start = time.perf_counter()
        async with self.http.post(url, headers=self.headers()) as r:
            body = await r.json(content_type=None)
            if r.status != 202:
                raise Failed(f"Check refused: HTTP {r.status} {body}")
        return int(body["submission"]["submission"]), start

    async def wait_verdict(self, sub: int, start: float, timeout: float) -> tuple[float, dict[str, Any], str]:
        """Until submission ``sub`` is finished: (seconds since ``start``, its state, "socket" when
        the events socket said so first, "poll" when the submission endpoint did)."""
        state_url = f"{self.base}/labs/{self.session_id}/submissions/{sub}/"
        deadline = time.monotonic() + timeout
        while True:
            if self.verdicts.get(sub):
                return time.perf_counter() - start, self.verdicts[sub][0], "socket"
            self.verdict_arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.verdict_arrived.wait(), 2)
            if self.verdicts.get(sub):
                continue
            with contextlib.suppress(aiohttp.ClientError, OSError, ValueError, TimeoutError):
                async with self.http.get(state_url) as r:
                    state = await r.json(content_type=None)
                    if r.status == 200 and state.get("finished"):
                        return time.perf_counter() - start, state, "poll"
            if time.monotonic() > deadline:
                raise Failed(f"no verdict for submission {sub} in {timeout:g} s")

    async def stop(self) -> None:
        async with self.http.post(
            f"{self.base}/labs/{self.session_id}/stop/",
            data={"csrfmiddlewaretoken": self.csrf()},
            headers=self.headers(),
        ) as r:
            await r.read()
            if r.status != 200:
                raise Failed(f"Stop: HTTP {r.status}")

    async def close(self) -> None:
        self.closing = True
        if self.events is not None:
            with contextlib.suppress(Exception):
                await self.events.close()
        if self.events_task is not None:
            self.events_task.cancel()
        await self.http.close()


# --- the class ----------------------------------------------------------------------------


class Herd:
    """How many students have not reached ready (or failed) yet."""

    def __init__(self, n: int) -> None:
        self.starting = n
        self.done = asyncio.Event()

    def arrived(self) -> None:
        self.starting -= 1
        if self.starting <= 0:
            self.done.set()


async def one_student(
    s: Student, lab_id: int, exercise_id: int, herd: Herd, spread: float, all_checked: asyncio.Event
) -> None:
    fig = s.fig
    step = "start"
    arrived = False
    try:
        if spread:
            await asyncio.sleep(random.uniform(0, spread))
        pressed = await s.start(lab_id)
        step = "ready"
        await s.wait_ready(READY_TIMEOUT)
        fig.ready_s = time.perf_counter() - pressed
        fig.ready_heard_at = time.time()
        herd.arrived()
        arrived = True
        step = "terminal"
        term = await s.open_term(1)
        try:
            step = "typing"
            started = time.monotonic()
            while not herd.done.is_set() and time.monotonic() - started < HERD_TYPING_MAX:
                sample = await term.echo_ms()
                (fig.echo_herd if not herd.done.is_set() else fig.echo_quiet).append(sample)
                fig.echo_at.append((time.time(), sample))
                await asyncio.sleep(random.uniform(0.1, 0.3))  # a person's pace
            for _ in range(QUIET_SAMPLES):
                fig.echo_quiet.append(await term.echo_ms())
                await asyncio.sleep(random.uniform(0.1, 0.3))
            step = "kubectl"
            t = time.perf_counter()
            status = await term.run(KUBECTL, STEP_TIMEOUT)
            fig.kubectl_s = time.perf_counter() - t
            if status != 0:
                tail = bytes(term.buffer[-600:]).decode(errors="replace")
                raise Failed(f"kubectl exited {status}: ...{tail[-300:]!r}")
        finally:
            await term.close()
        step = "check"
        _sub, fig.check_s, verdict = await s.check(exercise_id)
        fig.check_status = verdict.get("status")
        if fig.check_status != "passed":
            tests = [(t.get("name"), t.get("passed"), t.get("message")) for t in verdict.get("tests", [])]
            raise Failed(f"Check: {fig.check_status} {verdict.get('error') or tests}")
    except Failed as e:
        fig.error = f"{step}: {e}"
    except (TimeoutError, aiohttp.ClientError, OSError) as e:
        fig.error = f"{step}: {type(e).__name__}: {e}"
    finally:
        if not arrived:
            herd.arrived()
        all_checked.set()
    # 7. Stop — after the whole class is measured, so memory with every lab running is seen
    return


@dataclass
class Target:
    base: str
    socket: str
    admin_token: str | None
    runtimed_pid: int | None
    manage_env: dict[str, str]
    # the platform's processes by scripts/run.py's names (own platform only), and the
    # sandboxes' cgroup parent: for the herd's CPU-seconds per student
    pids: dict[str, int] = field(default_factory=dict)
    cgroup_parent: str | None = None


def django_script(env: dict[str, str], code: str, *args: str, timeout: float = 900) -> str:
    import subprocess

    done = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        raise SystemExit(f"setting up failed:\n{done.stderr[-3000:]}")
    return done.stdout


def runtimed_alive_check(target: Target) -> tuple[bool, str]:
    """A fresh create + exec + remove on runtimed, as ``python -m runtime run busybox -- true``."""
    from runtime.client import Client

    try:
        with Client(target.socket, timeout=60, token=target.admin_token) as c:
            start = time.perf_counter()
            info = c.create_sandbox({"image": "busybox"}, timeout=120)
            try:
                result = c.exec(str(info["id"]), ["true"], timeout=30)
            finally:
                c.remove_sandbox(str(info["id"]))
            return bool(result.ok), f"create+exec+remove {time.perf_counter() - start:.2f} s"
    except Exception as e:  # reported, not raised: this is one of the figures
        return False, f"{type(e).__name__}: {e}"


async def run_class(target: Target, args: argparse.Namespace, ids: dict[str, int]) -> dict[str, Any]:
    students = [Student(target.base, f"{args.prefix}{i:03d}", PASSWORD) for i in range(args.students)]
    try:
        log(TAG, f"{len(students)} students log in")
        results = await asyncio.gather(*(s.login() for s in students), return_exceptions=True)
        for s, res in zip(students, results, strict=True):
            if isinstance(res, BaseException):
                s.fig.error = f"login: {res}"
        active = [s for s in students if s.fig.error is None]
        mem_before = mem_used_kb()
        cpu_before = runtimed_cpu_seconds(target.runtimed_pid) if target.runtimed_pid else None
        herd = Herd(len(active))
        all_checked = asyncio.Event()
        log(TAG, f"{len(active)} students press Start (load {loadavg()})")
        herd_cpu0 = herd_cpu_seconds(target)
        t0 = time.perf_counter()
        progress = asyncio.create_task(report_progress(active, herd))

        async def herd_cpu_at_ready() -> dict[str, float]:
            await herd.done.wait()
            return herd_cpu_seconds(target)

        herd_cpu_task = asyncio.create_task(herd_cpu_at_ready())
        client_lag: list[float] = []
        lag_task = asyncio.create_task(client_loop_lag(herd, client_lag))
        client_cpu0 = time.process_time()
        await asyncio.wait_for(
            asyncio.gather(
                *(one_student(s, ids["lab"], ids["exercise"], herd, args.spread, all_checked) for s in active)
            ),
            timeout=args.deadline,
        )
        progress.cancel()
        lag_task.cancel()
        client_cpu = time.process_time() - client_cpu0
        herd_s = time.perf_counter() - t0
        herd_cpu1 = await herd_cpu_task if herd_cpu_task.done() else {}
        mem_peak = mem_used_kb()
        cgroup_mb = await asyncio.to_thread(sandbox_memory_mb, target)
        live = len([s for s in active if s.session_id])
        log(TAG, f"the class is done in {herd_s:.0f} s; every student presses Stop (load {loadavg()})")

        async def stop(s: Student) -> None:
            if s.session_id is None:
                return
            try:
                await s.stop()
                s.fig.stopped = True
            except (Failed, aiohttp.ClientError, OSError, TimeoutError) as e:
                if s.fig.error is None:
                    s.fig.error = f"stop: {e}"

        await asyncio.gather(*(stop(s) for s in active))
        # the sandboxes go away in the background (the provisioning worker): wait for them
        await asyncio.to_thread(wait_sandboxes_gone, target, 300)
    finally:
        await asyncio.gather(*(s.close() for s in students), return_exceptions=True)
    cpu_after = runtimed_cpu_seconds(target.runtimed_pid) if target.runtimed_pid else None
    figs = [s.fig for s in students]
    ready = [f.ready_s for f in figs if f.ready_s is not None]
    echo_herd = [x for f in figs for x in f.echo_herd]
    echo_quiet = [x for f in figs for x in f.echo_quiet]
    checks = [f.check_s for f in figs if f.check_s is not None]
    kubectl = [f.kubectl_s for f in figs if f.kubectl_s is not None]
    queue_places = [q for f in figs for q in f.queue if isinstance(q, dict)]
    failures = [f"{s.username}: {s.fig.error}" for s in students if s.fig.error]
    ok = sum(1 for f in figs if f.error is None and f.check_status == "passed" and f.stopped)
    return {
        "students": len(students),
        "ok": ok,
        "failures": failures[:5],
        "failures_n": len(failures),
        "login_p50_s": r2(statistics.median([f.login_s for f in figs if f.login_s is not None] or [0])),
        "ready_p50_s": r2(statistics.median(ready)) if ready else None,
        "ready_p95_s": r2(pct(ready, 95)) if ready else None,
        "ready_max_s": r2(max(ready)) if ready else None,
        "_ready_heard_at": {s.username: s.fig.ready_heard_at for s in students if s.fig.ready_heard_at},
        "_echo_at": {s.username: s.fig.echo_at for s in students},
        "queue_messages": sum(len(f.queue) for f in figs),
        "queue_max_ahead": max((q.get("ahead") or 0 for q in queue_places), default=None),
        "echo_herd_p50_ms": r1(statistics.median(echo_herd)) if echo_herd else None,
        "echo_herd_p99_ms": r1(pct(echo_herd, 99)) if echo_herd else None,
        "echo_herd_samples": len(echo_herd),
        "echo_quiet_p50_ms": r1(statistics.median(echo_quiet)) if echo_quiet else None,
        "echo_quiet_p99_ms": r1(pct(echo_quiet, 99)) if echo_quiet else None,
        # this script's own event-loop lag while the herd starts: the part of an echo that is the
        # measuring client (50 students' sockets in one process on the same 2 cores), not the platform
        "client_lag_herd_p50_p99_ms": [r1(statistics.median(client_lag)), r1(pct(client_lag, 99))]
        if client_lag
        else None,
        "client_cpu_s_class": round(client_cpu, 1),
        "kubectl_p50_s": r2(statistics.median(kubectl)) if kubectl else None,
        "kubectl_p95_s": r2(pct(kubectl, 95)) if kubectl else None,
        "check_p50_s": r2(statistics.median(checks)) if checks else None,
        "check_p95_s": r2(pct(checks, 95)) if checks else None,
        "class_s": round(herd_s, 1),
        "mb_per_student": round((mem_peak - mem_before) / 1024 / max(1, live), 1),
        "sandbox_mb_p50": r1(statistics.median(cgroup_mb)) if cgroup_mb else None,
        "runtimed_cpu_s_class": None if cpu_after is None or cpu_before is None else r2(cpu_after - cpu_before),
        # Start pressed -> the last student ready: CPU-seconds per student by process (the
        # herd is CPU-bound on 2 cores; wall time depends on everything else on the box)
        "herd_cpu_s_per_student": {
            k: round((herd_cpu1[k] - herd_cpu0[k]) / max(1, len(active)), 3) for k in herd_cpu0 if k in herd_cpu1
        },
    }


def tree_cpu_seconds(pid: int) -> float:
    """utime + stime + reaped children of ``pid`` and of its live children (Celery's pool
    processes), from /proc."""
    total = pid_cpu_seconds(pid) or 0.0
    with contextlib.suppress(OSError):
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            total += pid_cpu_seconds(int(child)) or 0.0
    return total


async def client_loop_lag(herd: Herd, out: list[float]) -> None:
    """Until the last student is ready: how late this process's loop wakes from a 50 ms sleep (ms)."""
    while not herd.done.is_set():
        t = time.perf_counter()
        await asyncio.sleep(0.05)
        out.append((time.perf_counter() - t - 0.05) * 1000)


def herd_cpu_seconds(target: Target) -> dict[str, float]:
    """CPU-seconds used so far by each platform process (runtimed: itself, the helpers it
    reaped and its fork server, not the sandboxes it adopted), the sandboxes' cgroups and the whole host."""
    out = {
        name: tree_cpu_seconds(pid) if name != "runtimed" else (runtimed_cpu_seconds(pid) or 0.0)
        for name, pid in target.pids.items()
    }
    if target.cgroup_parent:  # made with the first sandbox: 0 before
        out["sandboxes"] = cgroup_cpu_seconds(target.cgroup_parent) or 0.0
    out["host"] = host_busy_seconds()
    return out


def r1(x: float) -> float:
    return round(x, 1)


def r2(x: float) -> float:
    return round(x, 2)


def sandbox_memory_mb(target: Target) -> list[float]:
    """Each running sandbox's memory cgroup (runtimed's ``memory_bytes``, page cache included)."""
    from runtime.client import Client

    out = []
    with contextlib.suppress(Exception), Client(target.socket, timeout=30, token=target.admin_token) as c:
        for box in c.list_sandboxes():
            with contextlib.suppress(Exception):
                out.append(c.stats(str(box["id"]))["memory_bytes"] / 2**20)
    return out


def wait_sandboxes_gone(target: Target, timeout: float) -> None:
    from runtime.client import Client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception), Client(target.socket, timeout=30, token=target.admin_token) as c:
            if not c.list_sandboxes():
                return
        time.sleep(1)
    log(TAG, f"sandboxes still there {timeout:g} s after Stop")


async def report_progress(students: list[Student], herd: Herd) -> None:
    start = time.monotonic()
    for _ in range(10_000):
        await asyncio.sleep(10)
        states: dict[str, int] = {}
        for s in students:
            key = "failed" if s.fig.error else (s.status or "pressing")
            if s.fig.check_status:
                key = f"checked-{s.fig.check_status}"
            states[key] = states.get(key, 0) + 1
        log(TAG, f"{time.monotonic() - start:.0f} s: {states}, still starting {herd.starting}, load {loadavg()}")


def start_profilers(sup: Supervised, out_dir: str) -> list[tuple[str, Any, str]]:
    """``py-spy record`` (the .venv's, from requirements.lock) on each process of the platform
    that the class exercises; ``--subprocesses`` for the Celery pools. Sampling at 50 Hz costs
    some CPU of its own (in the figures of a profiled run: compare with an unprofiled one)."""
    import shutil
    import subprocess

    spy = shutil.which("py-spy", path=str(REPO / ".venv" / "bin")) or shutil.which("py-spy")
    if spy is None:
        log(TAG, "py-spy is not installed (pip install -r requirements.lock): not profiling")
        return []
    os.makedirs(out_dir, exist_ok=True)
    running = []
    for name in ("runtimed", "web", "worker", "grader"):
        pid = sup.pid(name)
        if pid is None:
            continue
        path = os.path.join(out_dir, f"{name}.txt")
        cmd = [spy, "record", "--pid", str(pid), "--rate", "50", "--format", "raw", "--output", path, "--nonblocking"]
        if name in ("worker", "grader"):
            cmd.append("--subprocesses")
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        running.append((name, proc, path))
    return running


def stop_profilers(running: list[tuple[str, Any, str]], top: int = 8) -> dict[str, list[tuple[str, float]]]:
    """Stop the samplers (SIGINT: py-spy writes its file) and name where each process spent
    its samples: each stack is charged to its innermost frame of our own code (py-spy names
    files by module path: ``runtime/client.py``), so time in a library is charged to the
    code of ours that called it."""
    import signal
    import subprocess

    ours = ("runtime/", "labs/", "grader/", "courses/", "accounts/", "config/")
    out: dict[str, list[tuple[str, float]]] = {}
    for name, proc, path in running:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        counts: dict[str, int] = {}
        total = 0
        with contextlib.suppress(OSError), open(path) as fh:
            for line in fh:
                stack, _, n = line.rstrip().rpartition(" ")
                if not n.isdigit():
                    continue
                total += int(n)
                frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]  # per function, not line
                own = [f for f in frames if f.rpartition("(")[2].startswith(ours)]
                where = own[-1] if own else "(library only) " + frames[-1]
                counts[where] = counts.get(where, 0) + int(n)
        ranked = sorted(counts.items(), key=lambda kv: -kv[1])
        out[name] = [(frame, n / total) for frame, n in ranked[:top]] if total else []
    return out


@contextlib.contextmanager
def platform(args: argparse.Namespace) -> Iterator[tuple[Target, Supervised | None]]:
    if args.url:
        from runtime.auth import read_admin_token

        sys.path.insert(0, str(REPO))
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
        import django
        from django.conf import settings

        django.setup()
        sock = settings.RUNTIME_SOCKET
        token = os.environ.get("RUNTIME_ADMIN_TOKEN") or read_admin_token(sock)
        yield Target(args.url, sock, token, socket_peer_pid(sock), dict(os.environ)), None
        return
    sup = Supervised(TAG, RESOURCES)
    try:
        log(TAG, "preparing a platform of its own (migrate, collectstatic, import_course)")
        sup.prepare()
        sup.start()
        pids = {name: pid for name in ("runtimed", "web", "worker", "grader", "redis") if (pid := sup.pid(name))}
        yield (
            Target(sup.url, sup.socket, sup.admin_token, sup.pid("runtimed"), sup.env, pids, RESOURCES.cgroup_parent),
            sup,
        )
    finally:
        log(TAG, "removing the platform")
        sup.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--students", type=int, default=50)
    parser.add_argument("--spread", type=float, default=0.0, help="Start presses spread over this many seconds")
    parser.add_argument("--url", default=None, help="a running platform (default: start one)")
    parser.add_argument("--prefix", default="bench-student-", help="user names of the students")
    parser.add_argument("--deadline", type=float, default=2400.0, help="seconds the class may take in all")
    parser.add_argument(
        "--profile",
        default=None,
        metavar="DIR",
        help="sample runtimed, daphne and both Celery workers (their pool processes too) with py-spy "
        "during the class; raw stacks into DIR, the hottest frames on stderr (own platform only)",
    )
    parser.add_argument(
        "--samples",
        default=None,
        metavar="FILE",
        help="write every echo sample (wall time, ms) and each student's ready time as JSON to FILE",
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root: runtimed drives runc")
    sigterm_as_interrupt()
    with platform(args) as (target, _sup):
        log(TAG, f"making {args.students} students")
        ids = json.loads(
            django_script(
                target.manage_env, SETUP, args.prefix, str(args.students), PASSWORD, LAB_TITLE, EXERCISE_SLUG
            ).splitlines()[-1]
        )
        if args.url:
            django_script(target.manage_env, CLEANUP, args.prefix)
        profilers = start_profilers(_sup, args.profile) if args.profile and _sup is not None else []
        try:
            figures = asyncio.run(run_class(target, args, ids))
        finally:
            profiles = stop_profilers(profilers)
        breakdown = json.loads(django_script(target.manage_env, BREAKDOWN, args.prefix).splitlines()[-1])
        # How late the pages heard of ready (a lost push now costs a poll, STATE_POLL).
        ready_at = breakdown.pop("_ready_at")
        heard = figures.pop("_ready_heard_at")
        echo_at = figures.pop("_echo_at")
        if args.samples:
            Path(args.samples).write_text(json.dumps({"echo": echo_at, "ready_heard": heard, "ready_set": ready_at}))
        lags = [heard[u] - ready_at[u] for u in heard if u in ready_at]
        figures["ready_heard_late_n"] = sum(1 for lag in lags if lag > READY_HEARD_LATE)
        figures["ready_heard_lag_max_s"] = r2(max(lags)) if lags else None
        log(TAG, f"where the time went: {breakdown}")
        for name, top in profiles.items():
            log(TAG, f"py-spy {name}: " + "; ".join(f"{share:.0%} {frame}" for frame, share in top))
        alive, how = runtimed_alive_check(target)
        pid = target.runtimed_pid
        rss = pid_status_kb(pid) if pid else None
        cpu = pid_cpu_seconds(pid) if pid else None
        log(TAG, f"runtimed afterwards: {'creates a sandbox' if alive else 'DOES NOT create a sandbox'} ({how})")
    result = {
        **figures,
        **breakdown,
        "runtimed_rss_mb": round(rss / 1024, 1) if rss else None,
        "runtimed_cpu_s": round(cpu, 1) if cpu is not None else None,
        "runtimed_creates_after": alive,
        "runtimed_after": how,
        "loadavg_end": loadavg(),
        "platform": args.url or "own (scripts/run.py)",
        "spread_s": args.spread,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
