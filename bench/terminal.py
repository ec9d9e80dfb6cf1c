"""Browser-terminal latency and throughput, through the whole platform.

Measures what a student feels: a keystroke sent on the terminal WebSocket
(daphne → TerminalConsumer → runtimed attach → PTY in a sandbox) until its
echo comes back, with 1 terminal and with 50 terminals typing at once; and
bulk output throughput to one client that acknowledges like xterm.js does.
The same figures are measured in the same run for the floor: a bare PTY ⇄
WebSocket relay (one aiohttp handler, a host PTY running sh, no Django, no
runtimed, no sandbox).

Everything runs on this machine: a private Redis, a private runtimed (or the
one at $RUNTIME_SOCKET), daphne on a free loopback port, a temporary SQLite
database. Needs root (runtimed). Prints progress, then one JSON object on the
last line.

    .venv/bin/python bench/terminal.py [--samples 300] [--concurrent 50] [--mb 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import os
import pty
import random
import secrets
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
from _common import free_port, pct, wait_for
from aiohttp import web

from runtime.auth import read_admin_token

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable


def log(msg: str) -> None:
    print(f"[terminal] {msg}", file=sys.stderr, flush=True)


# --- the platform under test ------------------------------------------------------


@contextlib.contextmanager
def platform(n_sessions: int) -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """Start redis, runtimed, daphne; yield (base URL, [(session id, cookie)])."""
    tmp = Path(tempfile.mkdtemp(prefix="kl-bench-term-", dir="/tmp"))
    tmp.chmod(0o711)  # sandboxes' mapped root must be able to traverse to their rootfs
    procs: list[subprocess.Popen[bytes]] = []
    env = {
        **os.environ,
        "VAR_DIR": str(tmp),
        "REDIS_URL": f"unix://{tmp / 'redis.sock'}",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "LAB_MAX_LIVE_PER_STUDENT": "1000",
        "CHANNELS_PREFIX": "kl-bench",
        "LOG_LEVEL": "WARNING",
    }
    # runtimed's admin credential (runtime/auth.py): for runtimed and the set-up scripts that
    # provision (as the worker does); daphne gets none, as under `make run`.
    admin = os.environ.get("RUNTIME_ADMIN_TOKEN")
    if os.environ.get("RUNTIME_SOCKET"):
        admin = admin or read_admin_token(os.environ["RUNTIME_SOCKET"])
    env["RUNTIME_ADMIN_TOKEN"] = admin or secrets.token_urlsafe(32)
    web_env = {k: v for k, v in env.items() if k not in ("RUNTIME_ADMIN_TOKEN", "RUNTIME_TOKEN")}
    try:
        procs.append(
            subprocess.Popen(
                [
                    "redis-server",
                    "--port",
                    "0",
                    "--unixsocket",
                    str(tmp / "redis.sock"),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--loglevel",
                    "warning",
                ],
                stdout=subprocess.DEVNULL,
            )
        )
        wait_for(lambda: (tmp / "redis.sock").exists(), "redis")
        if not os.environ.get("RUNTIME_SOCKET"):
            env["RUNTIME_SOCKET"] = str(tmp / "rt.sock")
            procs.append(
                subprocess.Popen(
                    [
                        PY,
                        "-m",
                        "runtime",
                        "daemon",
                        "--root",
                        str(tmp / "runtime"),
                        "--socket",
                        env["RUNTIME_SOCKET"],
                        "--subnet",
                        "10.234.0.0/20",
                        "--bridge",
                        "klbench",
                        "--cgroup-parent",
                        "kubelab-bench",
                        "--uid-start",
                        str(3_300_000_000),
                    ],
                    cwd=REPO,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=(tmp / "runtimed.log").open("wb"),
                )
            )
            wait_for(lambda: Path(env["RUNTIME_SOCKET"]).exists(), "runtimed")
        subprocess.run([PY, "manage.py", "migrate", "-v", "0"], cwd=REPO, env=env, check=True, timeout=300)
        log(f"creating {n_sessions} lab sessions with their sandboxes")
        setup = subprocess.run(
            [PY, "-c", SETUP_SCRIPT, str(n_sessions)],
            cwd=REPO,
            env=env,
            timeout=1800,
            capture_output=True,
            text=True,
        )
        if setup.returncode != 0:
            raise SystemExit(f"setting up the sessions failed:\n{setup.stderr[-3000:]}")
        sessions = [tuple(line.split()) for line in setup.stdout.splitlines() if line.strip()]
        port = free_port()
        procs.append(
            subprocess.Popen(
                [PY, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
                cwd=REPO,
                env={**web_env, "RUNTIME_SOCKET": env["RUNTIME_SOCKET"]},
                stdout=subprocess.DEVNULL,
                stderr=(tmp / "daphne.log").open("wb"),
            )
        )
        wait_for(lambda: bool(socket.create_connection(("127.0.0.1", port), timeout=1)), "daphne")
        yield f"127.0.0.1:{port}", sessions  # type: ignore[misc]
    finally:
        with contextlib.suppress(Exception):
            subprocess.run([PY, "-c", TEARDOWN_SCRIPT], cwd=REPO, env=env, timeout=600, capture_output=True)
        for proc in reversed(procs):
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(30)
        subprocess.run(["umount", "-R", "-l", str(tmp)], capture_output=True, timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)


SETUP_SCRIPT = """
import sys, django
django.setup()
from django.conf import settings
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.auth import SESSION_KEY, BACKEND_SESSION_KEY, HASH_SESSION_KEY
from django.db import transaction
from courses.models import Course, Module, Lab
from labs import services
n = int(sys.argv[1])
course = Course.objects.create(slug="bench", title="Bench")
module = Module.objects.create(course=course, slug="m", title="M")
lab = Lab.objects.create(module=module, slug="term", title="Terminal", environment={"image": "busybox"})
from runtime.client import Client
with Client(settings.RUNTIME_SOCKET, token=settings.RUNTIME_ADMIN_TOKEN) as rt:
    if not any(i["name"] == "busybox" for i in rt.images()):
        rt.build_image("busybox")
for i in range(n):
    user = User.objects.create_user(f"bench{i}", password="x")
    with transaction.atomic():
        session = services.lab_session_start(user=user, lab=lab)
    ready = services.lab_session_provision(session_id=str(session.pk))
    assert ready.status == "ready", ready.error
    store = SessionStore()
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.create()
    print(session.pk, store.session_key, flush=True)
"""

TEARDOWN_SCRIPT = """
import django
django.setup()
from labs.models import LabSession
from labs import services
for s in LabSession.objects.exclude(sandbox_id=""):
    services.lab_session_stop(session=s)
    services.lab_session_release(session_id=str(s.pk))
"""


# --- the floor: a bare PTY <-> WebSocket relay ----------------------------------------


async def floor_handler(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(max_msg_size=1 << 20)
    await ws.prepare(request)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    proc = subprocess.Popen(
        ["/bin/busybox", "sh", "-i"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
        env={"PS1": "$ ", "PATH": "/usr/bin:/bin", "TERM": "xterm"},
    )
    os.close(slave)
    os.set_blocking(master, False)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=64)

    def readable() -> None:
        try:
            data = os.read(master, 65536)
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(master)
            queue.put_nowait(b"")
            return
        queue.put_nowait(data)
        if queue.full():
            loop.remove_reader(master)

    loop.add_reader(master, readable)

    async def pump() -> None:
        ended = False
        while not ended:
            data = await queue.get()
            # Coalesce what is queued into one frame, as any decent relay does.
            while data and not queue.empty():
                more = queue.get_nowait()
                if not more:
                    ended = True
                    break
                data += more
            if not data:
                break
            loop.add_reader(master, readable)
            await ws.send_bytes(data)

    task = asyncio.create_task(pump())
    async for msg in ws:
        if msg.type == aiohttp.WSMsgType.BINARY:
            os.write(master, msg.data)
    task.cancel()
    with contextlib.suppress(ValueError):
        loop.remove_reader(master)
    proc.kill()
    proc.wait()
    os.close(master)
    return ws


# --- measurements ---------------------------------------------------------------------


class Term:
    """One terminal WebSocket, acknowledging output the way the page does."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.buffer = bytearray()
        self.arrived = asyncio.Event()
        self.total = 0
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        unacked = 0
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.BINARY:
                self.buffer += msg.data
                if len(self.buffer) > 8192:  # needles are short: keep the tail only
                    del self.buffer[:-4096]
                self.total += len(msg.data)
                unacked += len(msg.data)
                if unacked >= 32768:
                    await self.ws.send_str(json.dumps({"type": "ack", "bytes": unacked}))
                    unacked = 0
                self.arrived.set()
            elif msg.type != aiohttp.WSMsgType.TEXT:
                break
        self.arrived.set()

    async def expect(self, needle: bytes, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.buffer:
            self.arrived.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{needle!r} did not arrive")
            await asyncio.wait_for(self.arrived.wait(), left)

    async def keystroke_rtt(self, char: bytes) -> float:
        self.buffer.clear()
        start = time.perf_counter()
        await self.ws.send_bytes(char)
        await self.expect(char)
        return (time.perf_counter() - start) * 1000

    async def close(self) -> None:
        await self.ws.close()
        self.reader.cancel()


async def open_term(http: aiohttp.ClientSession, url: str, cookie: str | None) -> Term:
    # The page's own origin, port included, as a browser sends it (config/origins.py).
    headers = {"Origin": "http://" + urlsplit(url).netloc}
    if cookie:
        headers["Cookie"] = f"sessionid={cookie}"
    ws = await http.ws_connect(url, headers=headers, max_msg_size=1 << 22)
    term = Term(ws)
    await term.ws.send_bytes(b"PS1='$ '; stty -ixon; echo rea''dy\n")
    await term.expect(b"ready")
    return term


LOST: list[int] = []  # keystrokes whose echo never came back within 10 s


async def typing_rtts(term: Term, samples: int, pace: float) -> list[float]:
    rtts = []
    for i in range(samples):
        try:
            rtts.append(await asyncio.wait_for(term.keystroke_rtt(b"abcdefghij"[i % 10 : i % 10 + 1]), 10))
        except TimeoutError:
            LOST.append(1)
        if i % 50 == 49:
            await term.ws.send_bytes(b"\x15")  # Ctrl-U: clear the line now and then
            await asyncio.sleep(0.01)
        if pace:
            await asyncio.sleep(random.uniform(pace / 2, pace * 1.5))
    await term.ws.send_bytes(b"\x15")
    return rtts


async def throughput(term: Term, megabytes: int) -> float:
    total = megabytes * 1_000_000
    await term.ws.send_bytes(b"clear\n")
    await asyncio.sleep(0.3)
    start_total = term.total
    start = time.perf_counter()
    await term.ws.send_bytes(
        f"yes 0123456789abcdefghijklmnopqrstuvwxyz | head -c {total}; echo; echo do''ne\n".encode()
    )
    term.buffer.clear()
    await term.expect(b"done", timeout=600)
    elapsed = time.perf_counter() - start
    return (term.total - start_total) / elapsed / 1e6


async def measure(base: str, sessions: list[tuple[str, str]] | None, args: argparse.Namespace) -> dict[str, float]:
    LOST.clear()
    async with aiohttp.ClientSession() as http:

        def url(i: int) -> str:
            if sessions is None:
                return f"ws://{base}/floor"
            return f"ws://{base}/ws/labs/{sessions[i][0]}/term/1/?rows=30&cols=100"

        def cookie(i: int) -> str | None:
            return None if sessions is None else sessions[i][1]

        one = await open_term(http, url(0), cookie(0))
        await typing_rtts(one, 20, 0)  # warm-up
        single = await typing_rtts(one, args.samples, 0)
        mbps = await throughput(one, args.mb)
        await one.close()
        terms = []
        for i in range(args.concurrent):
            try:
                terms.append(await open_term(http, url(i), cookie(i)))
            except TimeoutError:
                raise SystemExit(f"terminal {i} did not show its prompt") from None
        log(f"{len(terms)} terminals open; typing on all of them at once")
        per_term = max(20, args.samples // 5)
        results = await asyncio.gather(*(typing_rtts(t, per_term, 0.03) for t in terms))
        many = [x for r in results for x in r]
        for t in terms:
            await t.close()
    return {
        "echo_p50_ms_1": round(statistics.median(single), 2),
        "echo_p99_ms_1": round(pct(single, 99), 2),
        "echo_p50_ms_50": round(statistics.median(many), 2),
        "echo_p99_ms_50": round(pct(many, 99), 2),
        "throughput_mb_s": round(mbps, 1),
        "lost_keystrokes": len(LOST),
    }


async def floor(args: argparse.Namespace) -> dict[str, float]:
    app = web.Application()
    app.router.add_get("/floor", floor_handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        return await measure(f"127.0.0.1:{port}", None, args)
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--samples", type=int, default=300, help="keystrokes measured on one terminal")
    parser.add_argument("--concurrent", type=int, default=50, help="terminals typing at once")
    parser.add_argument("--mb", type=int, default=20, help="megabytes of bulk output")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root: runtimed drives runc")
    log("floor: bare PTY <-> WebSocket relay")
    floor_figures = asyncio.run(floor(args))
    log(f"floor: {floor_figures}")
    with platform(args.concurrent) as (base, sessions):
        log("platform: daphne -> consumer -> runtimed -> sandbox PTY")
        figures = asyncio.run(measure(base, sessions, args))
    log(f"platform: {figures}")
    result = {
        **figures,
        "floor_echo_p50_ms": floor_figures["echo_p50_ms_1"],
        "floor_echo_p50_ms_50": floor_figures["echo_p50_ms_50"],
        "floor_echo_p99_ms_50": floor_figures["echo_p99_ms_50"],
        "floor_throughput_mb_s": floor_figures["throughput_mb_s"],
        "terminals": args.concurrent,
        "samples": args.samples,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
