"""Grading latency and throughput, through the whole platform.

Click → verdict: a POST to the Check endpoint (daphne → view → Submission →
Redis → Celery worker → runtimed exec of a ``run`` check in a real sandbox →
results saved → group_send) until the ``check`` verdict arrives on the lab's
events WebSocket; p50 and p95 over ``--samples`` clicks spread over
``--students`` students (each under the per-student rate limit).

Sustained throughput: ``--burst`` submissions queued at once over the same
sandboxes (rows made directly, so the rate limit does not apply), timed until
the last one is finished: gradings per second.

For scale, ``floor_execs_per_s`` is the same command exec'd straight on
runtimed from as many threads as the worker has processes: grading cannot be
faster than the sandbox exec it waits for.

Everything runs on this machine: a private Redis, a private runtimed (or the
one at $RUNTIME_SOCKET), daphne on a free loopback port, one Celery worker, a
temporary SQLite database. Needs root (runtimed). Prints progress, then one
JSON object on the last line (keys verdict_p50_ms, verdict_p95_ms, gradings_per_s).

    .venv/bin/python bench/grading.py [--samples 200] [--students 16] [--burst 400] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
from _common import free_port, pct, wait_for

from runtime.auth import read_admin_token

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable


def log(msg: str) -> None:
    print(f"[grading] {msg}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def platform(args: argparse.Namespace) -> Iterator[str]:
    """Start redis, runtimed, daphne and a worker; configure Django in this
    process on the same database; yield daphne's host:port."""
    tmp = Path(tempfile.mkdtemp(prefix="kl-bench-grade-", dir="/tmp"))
    tmp.chmod(0o711)
    procs: list[subprocess.Popen[bytes]] = []
    env = {
        **os.environ,
        "VAR_DIR": str(tmp),
        "REDIS_URL": f"unix://{tmp / 'redis.sock'}",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "LAB_MAX_LIVE_PER_STUDENT": "1000",
        "CHANNELS_PREFIX": "kl-bench-grade",
        "LOG_LEVEL": "WARNING",
    }
    # runtimed's admin credential (runtime/auth.py): runtimed, this process (it provisions)
    # and the worker; daphne gets none, as under `make run`.
    admin = os.environ.get("RUNTIME_ADMIN_TOKEN")
    if os.environ.get("RUNTIME_SOCKET"):
        admin = admin or read_admin_token(os.environ["RUNTIME_SOCKET"])
    env["RUNTIME_ADMIN_TOKEN"] = admin or secrets.token_urlsafe(32)
    try:
        procs.append(
            subprocess.Popen(
                [
                    *("redis-server", "--port", "0", "--unixsocket", str(tmp / "redis.sock"), "--save", ""),
                    *("--appendonly", "no", "--loglevel", "warning"),
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
                        *(PY, "-m", "runtime", "daemon", "--root", str(tmp / "runtime")),
                        *("--socket", env["RUNTIME_SOCKET"], "--subnet", "10.235.0.0/20", "--bridge", "klbenchg"),
                        *("--cgroup-parent", "kubelab-benchg", "--uid-start", str(3_400_000_000)),
                    ],
                    cwd=REPO,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=(tmp / "runtimed.log").open("wb"),
                )
            )
            wait_for(lambda: Path(env["RUNTIME_SOCKET"]).exists(), "runtimed")
        subprocess.run([PY, "manage.py", "migrate", "-v", "0"], cwd=REPO, env=env, check=True, timeout=300)
        os.environ.update(env)
        import django

        django.setup()
        port = free_port()
        procs.append(
            subprocess.Popen(
                [PY, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
                cwd=REPO,
                env={k: v for k, v in env.items() if k not in ("RUNTIME_ADMIN_TOKEN", "RUNTIME_TOKEN")},
                stdout=subprocess.DEVNULL,
                stderr=(tmp / "daphne.log").open("wb"),
            )
        )
        procs.append(
            subprocess.Popen(
                [
                    *(PY, "-m", "celery", "-A", "config", "worker", "--concurrency", str(args.concurrency)),
                    *("--pool", "prefork", "--without-gossip", "--without-mingle", "--loglevel", "WARNING"),
                    *("--hostname", "bench-grading@%h", "-Q", "grading,provisioning,celery"),
                ],
                cwd=REPO,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=(tmp / "worker.log").open("wb"),
            )
        )
        wait_for(lambda: bool(socket.create_connection(("127.0.0.1", port), timeout=1)), "daphne")
        from config.celery import app

        wait_for(lambda: bool(app.control.ping(timeout=0.5)), "celery worker")
        yield f"127.0.0.1:{port}"
    finally:
        with contextlib.suppress(Exception):
            teardown()
        for proc in reversed(procs):
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(30)
        subprocess.run(["umount", "-R", "-l", str(tmp)], capture_output=True, timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)


def setup(n: int) -> tuple[Any, list[tuple[Any, str]]]:
    """A lab with one ``run`` check and ``n`` students with ready sandboxes;
    returns the exercise and [(session, django session cookie)]."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.auth.models import User
    from django.contrib.sessions.backends.db import SessionStore

    from courses.models import Course, Exercise, Lab, Module, Step
    from labs import sandboxes
    from labs.models import LabSession

    course = Course.objects.create(slug="bench", title="Bench")
    module = Module.objects.create(course=course, slug="m", title="M")
    lab = Lab.objects.create(module=module, slug="grading", title="Grading", environment={"image": "busybox"})
    step = Step.objects.create(lab=lab, order=1, title="One")
    exercise = Exercise.objects.create(
        lab=lab,
        step=step,
        slug="file",
        title="A file",
        checks=[{"type": "run", "name": "greeting", "command": "grep -q hello /root/greeting.txt"}],
    )
    backend = sandboxes.backend_for("namespace")
    backend.ensure_image("busybox")
    from django.utils import timezone

    out = []
    for i in range(n):
        user = User.objects.create_user(f"bench{i}", password="x")
        now = timezone.now()
        session = LabSession.objects.create(user=user, lab=lab, status="starting", expires_at=now + timedelta(hours=2))
        session.sandbox_id = backend.create(
            {**sandboxes.spec_for(lab, session=session), "setup": "echo hello > /root/greeting.txt"}
        )
        session.status = "ready"
        session.ready_at = now
        # the grader's own credential for this sandbox, minted as provisioning mints it (labs/services.py)
        session.grader_token = backend.token(session.sandbox_id, "grader", 3 * 3600)
        session.save(update_fields=["sandbox_id", "status", "ready_at", "grader_token"])
        store = SessionStore()
        store[SESSION_KEY] = str(user.pk)
        store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        store[HASH_SESSION_KEY] = user.get_session_auth_hash()
        store.create()
        out.append((session, str(store.session_key)))
    return exercise, out


def teardown() -> None:
    from labs import sandboxes
    from labs.models import LabSession

    backend = sandboxes.backend_for("namespace")
    for session in LabSession.objects.exclude(sandbox_id=""):
        with contextlib.suppress(Exception):
            backend.remove(session.sandbox_id)


async def clicks(base: str, exercise: Any, sessions: list[tuple[Any, str]], samples: int) -> list[float]:
    token = secrets.token_hex(16)  # 32 characters: a valid unmasked CSRF secret
    latencies: list[float] = []
    async with aiohttp.ClientSession() as http:
        sockets = []
        for session, cookie in sessions:
            headers = {"Origin": f"http://{base}", "Cookie": f"sessionid={cookie}"}
            ws = await http.ws_connect(f"ws://{base}/ws/labs/{session.pk}/events/", headers=headers)
            await ws.receive_json(timeout=10)  # the status message
            sockets.append(ws)

        async def one(i: int) -> float:
            session, cookie = sessions[i % len(sessions)]
            ws = sockets[i % len(sessions)]
            url = f"http://{base}/labs/{session.pk}/exercises/{exercise.pk}/check/"
            headers = {
                "Origin": f"http://{base}",
                "Cookie": f"sessionid={cookie}; csrftoken={token}",
                "X-CSRFToken": token,
            }
            start = time.perf_counter()
            async with http.post(url, headers=headers) as response:
                body = await response.json()
                if response.status != 202:
                    raise SystemExit(f"check refused: {response.status} {body}")
            wanted = body["submission"]["submission"]
            while True:
                message = await ws.receive_json(timeout=30)
                if message.get("type") == "check" and message.get("submission") == wanted and message["finished"]:
                    if message["status"] != "passed":
                        raise SystemExit(f"unexpected verdict: {message}")
                    return (time.perf_counter() - start) * 1000

        for i in range(5):  # warm-up: imports, connections, the first exec
            await one(i)
        for i in range(samples):
            latencies.append(await one(i))
            await asyncio.sleep(0.05)  # a person does not click twice in a millisecond
        for ws in sockets:
            await ws.close()
    return latencies


def burst(exercise: Any, sessions: list[tuple[Any, str]], n: int) -> float:
    from grader.models import Submission
    from grader.tasks import grade

    rows = [
        Submission(user_id=s.user_id, exercise=exercise, lab_session=s, attempt=100 + i, max_score=1)
        for i, (s, _) in enumerate(sessions * (n // len(sessions) + 1))
    ][:n]
    created = Submission.objects.bulk_create(rows)
    ids = [row.pk for row in created]
    start = time.perf_counter()
    for pk in ids:
        grade.delay(pk)
    deadline = time.monotonic() + 600
    while Submission.objects.filter(pk__in=ids).pending().exists():
        if time.monotonic() > deadline:
            raise SystemExit("the burst did not finish in 10 minutes")
        time.sleep(0.1)
    elapsed = time.perf_counter() - start
    statuses = list(Submission.objects.filter(pk__in=ids).values_list("status", flat=True))
    if statuses.count("passed") != n:
        raise SystemExit(f"burst verdicts: { {s: statuses.count(s) for s in set(statuses)} }")
    return n / elapsed


def exec_floor(sessions: list[tuple[Any, str]], n: int, threads: int) -> float:
    """The same check's exec straight on runtimed, ``threads`` at a time: the
    ceiling any grader on this box can reach."""
    from concurrent.futures import ThreadPoolExecutor

    from django.conf import settings

    def run(i: int) -> None:
        from grader.checks import Target

        session = sessions[i % len(sessions)][0]
        # with the session's grader credential, as the grading worker acts (it holds no admin token)
        target = Target(
            sandbox_id=session.sandbox_id, runtime_socket=settings.RUNTIME_SOCKET, runtime_token=session.grader_token
        )
        try:  # Target.exec: the grader's own retry of an exec that failed to start
            result = target.exec(["sh", "-c", "grep -q hello /root/greeting.txt"], timeout=10)
        finally:
            target.close()
        if not result.ok:
            raise SystemExit(f"exec floor: {result}")

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(run, range(n)))
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--samples", type=int, default=200, help="clicks measured")
    parser.add_argument("--students", type=int, default=16, help="students (sandboxes) the clicks rotate over")
    parser.add_argument("--burst", type=int, default=400, help="submissions queued at once for throughput")
    parser.add_argument("--concurrency", type=int, default=4, help="Celery worker processes")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root: runtimed drives runc")
    # Each student stays under the per-student limit (20 checks a minute by default).
    args.students = max(args.students, -(-(args.samples + 5) // 15))
    with platform(args) as base:
        log(f"creating {args.students} students with ready sandboxes")
        exercise, sessions = setup(args.students)
        log(f"click -> verdict on the events socket, {args.samples} samples")
        latencies = asyncio.run(clicks(base, exercise, sessions, args.samples))
        log(f"p50 {statistics.median(latencies):.1f} ms, p95 {pct(latencies, 95):.1f} ms")
        log(f"throughput: {args.burst} submissions queued at once")
        rate = burst(exercise, sessions, args.burst)
        log(f"{rate:.1f} gradings/s")
        floor = exec_floor(sessions, args.burst, args.concurrency)
        log(f"floor: {floor:.1f} bare runtimed execs/s")
    print(
        json.dumps(
            {
                "verdict_p50_ms": round(statistics.median(latencies), 1),
                "verdict_p95_ms": round(pct(latencies, 95), 1),
                "gradings_per_s": round(rate, 1),
                "samples": args.samples,
                "students": args.students,
                "burst": args.burst,
                "worker_concurrency": args.concurrency,
                "floor_execs_per_s": round(floor, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
