"""What a working class keeps when a process of the platform dies.

A class of ``--students`` (default 10) on the Kubernetes lab "Deploy, scale, update, roll
back", through the real web tier (the clients of bench/classroom.py): each logged in, lab
ready, ``kubectl create deployment web ...`` done, terminal 1 open with ``KLV=<its own
value>`` exported in the shell, and typing (a marker + Ctrl-U every 0.2-0.4 s). Then, one at
a time, under ``scripts/run.py`` (make run's supervisor, which restarts a child that dies
after start-up, with back-off), SIGKILL of: ``runtimed``, the grading worker (``grader``),
the provisioning worker (``worker``), daphne (``web``), and Redis (``redis``: it keeps
nothing, as ``make run`` starts it; the supervisor restarts it empty).

Around each fault every student presses Check just before the kill, and again once their
terminal answers after it. Per fault:

* ``restart_s``: kill → the supervisor's new process ready (its socket or port answers; for
  a Celery worker, its "ready." line);
* ``recover_s``: kill → the last student whose terminal echoes again (reconnecting the
  terminal WebSocket as the page does) and whose post-fault Check has its verdict;
* ``sandboxes_survived``: students whose sandbox is the same one, still running (runtimed's
  list) and whose lab session is still ``ready`` (the database);
* ``shells_survived``: students whose terminal 1 is the same shell: ``echo $KLV`` still
  prints the value set before the fault (when not, it is set again for the next fault);
* ``checks``: the pre-fault submissions: ``lost`` (no verdict within ``--verdict-timeout``,
  above GRADER_REQUEUE_AFTER), ``graded_twice`` (two finished verdicts for one submission
  on the events socket), and how the verdicts arrived (``via_socket`` / ``via_poll``: the
  page polls the submission endpoint when the socket says nothing), and ``regraded``: how
  many of them were graded more than once inside (``grading_attempts`` over 1: a grading
  this kill interrupted and the grader ran again; still one verdict);
* ``keystrokes_lost``: markers whose echo did not come back within 10 s while typing.

A Check in flight when runtimed dies is the platform's failure, not the student's: its
grading is retried until runtimed is back (grader.tasks), so ``checks.statuses`` of the
runtimed fault should hold verdicts (``passed``/``failed``), never ``error``.

At the end, from the database: finished submissions vs the attempts counted in the
students' progress (a double count shows here) and submissions graded more than once.

    flock /tmp/kubelab-test.lock .venv/bin/python bench/faults.py [--students 10]
        [--faults runtimed,grader,worker,web,redis]

Needs root. The platform is the bench's own (see _common.Supervised). Progress on stderr; one
JSON object on the last stdout line. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import signal
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from _common import HostResources, Supervised, loadavg, log, pid_cpu_seconds, pid_status_kb, sigterm_as_interrupt
from classroom import (
    EXERCISE_SLUG,
    KUBECTL,
    LAB_TITLE,
    PASSWORD,
    READY_TIMEOUT,
    SETUP,
    STEP_TIMEOUT,
    Failed,
    Student,
    Term,
    django_script,
    runtimed_alive_check,
)

TAG = "faults"
RESOURCES = HostResources("10.239.0.0/20", "klbenchft", "kubelab-benchft", 4_000_000_000)
FAULTS = ["runtimed", "grader", "worker", "web", "redis"]
RECOVER_TIMEOUT = 240.0

SESSIONS = """
import json, sys
import django
django.setup()
from labs.models import LabSession
rows = LabSession.objects.filter(user__username__startswith=sys.argv[1]).order_by("created_at")
print(json.dumps({s.user.username: [s.status, s.sandbox_id, str(s.pk)] for s in rows}))
"""

GRADINGS = """
import json, sys
import django
django.setup()
from grader.models import Submission
ids = [int(x) for x in sys.argv[1:]]
print(json.dumps(sum(1 for s in Submission.objects.filter(pk__in=ids) if s.grading_attempts > 1)))
"""

ACCOUNTS = """
import json, sys
import django
django.setup()
from grader.models import ExerciseProgress, Submission
subs = Submission.objects.filter(user__username__startswith=sys.argv[1])
finished = subs.filter(status__in=["passed", "failed"])
counted = sum(p.attempts for p in ExerciseProgress.objects.filter(user__username__startswith=sys.argv[1]))
print(json.dumps({
    "submissions": subs.count(),
    "finished": finished.count(),
    "attempts_counted": counted,
    "still_pending": subs.filter(status__in=["queued", "running"]).count(),
    "errored": subs.filter(status="error").count(),
    "graded_more_than_once": subs.filter(grading_attempts__gt=1).count(),
}))
"""


@dataclass
class Worker:
    """One student at work: the page's sockets, a shell with a value in it, typing."""

    student: Student
    value: str
    term: Term | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    typing: bool = True
    keystrokes: int = 0
    lost: int = 0
    term_reconnects: int = 0

    async def connect_term(self, deadline: float) -> Term:
        """Terminal 1 again, as the page does after a drop: retry until it answers."""
        if self.term is not None and not self.term.closed:
            return self.term
        if self.term is not None:
            await self.term.close()
            self.term = None
            self.term_reconnects += 1
        last = ""
        while time.monotonic() < deadline:
            try:
                self.term = await self.student.open_term(1, timeout=10)
                return self.term
            except (Failed, TimeoutError, aiohttp.ClientError, OSError) as e:
                last = f"{type(e).__name__}: {e}"
                await asyncio.sleep(0.5)
        raise Failed(f"terminal did not come back: {last}")

    async def type_forever(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if self.typing:
                async with self.lock:
                    try:
                        term = await self.connect_term(time.monotonic() + 5)
                        await term.echo_ms()
                        self.keystrokes += 1
                    except (TimeoutError, Failed, aiohttp.ClientError, OSError):
                        self.lost += 1
            await asyncio.sleep(random.uniform(0.2, 0.4))

    async def shell_value(self, deadline: float) -> str:
        """What ``$KLV`` is in terminal 1's shell now."""
        async with self.lock:
            term = await self.connect_term(deadline)
            nonce = secrets.token_hex(3)
            term.buffer.clear()
            await term.send(f'echo "V{nonce}-$KLV-"\r'.encode())
            await term.expect(f"V{nonce}-".encode(), max(1.0, deadline - time.monotonic()))
            await term.expect(b"-\r", 5)
            text = bytes(term.buffer).decode(errors="replace")
            # the output line, not the echo of the typed command (which holds "$KLV")
            for line in text.splitlines():
                if line.startswith(f"V{nonce}-"):
                    return line[len(f"V{nonce}-") :].rstrip("-\r ")
            return ""

    async def set_value(self) -> None:
        async with self.lock:
            term = await self.connect_term(time.monotonic() + 30)
            await term.run(f"export KLV={self.value}", 30)


async def press_checks(workers: list[Worker], exercise: int) -> list[tuple[Worker, int, float]]:
    out: list[tuple[Worker, int, float]] = []

    async def one(w: Worker) -> None:
        with contextlib.suppress(Failed, aiohttp.ClientError, OSError, TimeoutError):
            sub, start = await w.student.press_check(exercise)
            out.append((w, sub, start))

    await asyncio.gather(*(one(w) for w in workers))
    return out


async def verdicts(pressed: list[tuple[Worker, int, float]], timeout: float) -> dict[str, Any]:
    got = {"posted": len(pressed), "verdicts": 0, "lost": 0, "graded_twice": 0, "via_socket": 0, "via_poll": 0}
    statuses: dict[str, int] = {}

    async def one(w: Worker, sub: int, start: float) -> None:
        try:
            _elapsed, state, via = await w.student.wait_verdict(sub, start, timeout)
        except Failed:
            got["lost"] += 1
            return
        got["verdicts"] += 1
        got[f"via_{via}"] += 1
        statuses[str(state.get("status"))] = statuses.get(str(state.get("status")), 0) + 1

    await asyncio.gather(*(one(*p) for p in pressed))
    await asyncio.sleep(3)  # a second verdict for the same submission would arrive about now
    got["graded_twice"] = sum(1 for w, sub, _ in pressed if len(w.student.verdicts.get(sub, [])) > 1)
    return {**got, "statuses": statuses}


def restarted(sup: Supervised, name: str, old_pid: int, ready_lines: int, t_kill: float) -> float | None:
    """Seconds from the kill to the replacement being ready, or None if it is not yet."""
    pid = sup.pid(name)
    if pid is None or pid == old_pid or not os.path.exists(f"/proc/{pid}"):
        return None
    if name in {"worker", "grader"}:
        host = "provisioning" if name == "worker" else "grading"
        if sup.count(rf"{host}@\S+ ready\.") <= ready_lines:
            return None
    elif sup.count(rf"{name} is up again \(pid {pid}\)") == 0:
        return None
    return time.monotonic() - t_kill


async def one_fault(
    sup: Supervised, name: str, workers: list[Worker], exercise: int, prefix: str, args: argparse.Namespace
) -> dict[str, Any]:
    before = json.loads(
        await asyncio.to_thread(django_script, sup.env, SESSIONS, prefix),
    )
    old_pid = sup.pid(name)
    if old_pid is None:
        return {"fault": name, "error": "no such process under the supervisor"}
    host = {"worker": "provisioning", "grader": "grading"}.get(name)
    ready_lines = sup.count(rf"{host}@\S+ ready\.") if host else 0
    lost_before = sum(w.lost for w in workers)
    pressed = await press_checks(workers, exercise)
    await asyncio.sleep(0.2)  # the submissions are queued or being graded now
    log(TAG, f"kill -9 {name} (pid {old_pid}); {len(pressed)} checks in flight; load {loadavg()}")
    t_kill = time.monotonic()
    os.kill(old_pid, signal.SIGKILL)

    restart_s: float | None = None

    async def watch_restart() -> None:
        nonlocal restart_s
        while time.monotonic() - t_kill < RECOVER_TIMEOUT:
            restart_s = restarted(sup, name, old_pid, ready_lines, t_kill)
            if restart_s is not None:
                return
            await asyncio.sleep(0.1)

    watcher = asyncio.create_task(watch_restart())
    recovered: list[float] = []
    shells = 0
    problems: list[str] = []
    post: list[tuple[Worker, int, float]] = []

    async def recover(w: Worker) -> None:
        nonlocal shells
        deadline = t_kill + RECOVER_TIMEOUT
        try:
            await asyncio.sleep(0.5)
            value = await w.shell_value(deadline)
            if value == w.value:
                shells += 1
            else:
                await w.set_value()  # a new shell: the next fault starts from a known state
            while True:  # Check after the fault: refused while the platform is down, so retry
                try:
                    sub, start = await w.student.press_check(exercise)
                    break
                except (Failed, aiohttp.ClientError, OSError, TimeoutError):
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(1)
            post.append((w, sub, start))
            await w.student.wait_verdict(sub, start, max(5.0, deadline - time.monotonic()))
            recovered.append(time.monotonic() - t_kill)
        except (Failed, TimeoutError, aiohttp.ClientError, OSError) as e:
            problems.append(f"{w.student.username}: {type(e).__name__}: {e}")

    await asyncio.gather(*(recover(w) for w in workers))
    pre = await verdicts(pressed, args.verdict_timeout)
    if pressed:
        ids = [str(sub) for _w, sub, _start in pressed]
        out = await asyncio.to_thread(django_script, sup.env, GRADINGS, *ids)
        pre["regraded"] = json.loads(out.splitlines()[-1])
    post_v = await verdicts([p for p in post if not p[0].student.verdicts.get(p[1])], 5) if post else {}
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(watcher, 5)
    after = json.loads(await asyncio.to_thread(django_script, sup.env, SESSIONS, prefix))
    try:
        with sup.client() as c:
            running = {b["id"] for b in c.list_sandboxes() if b.get("status") == "running"}
    except Exception as e:
        running = set()
        problems.append(f"runtimed list: {e}")
    survived = sum(
        1
        for w in workers
        if (u := w.student.username) in before
        and after.get(u, [None])[0] == "ready"
        and after[u][1] == before[u][1]
        and before[u][1] in running
    )
    result = {
        "fault": name,
        "restart_s": round(restart_s, 1) if restart_s is not None else None,
        "recover_s": round(max(recovered), 1) if len(recovered) == len(workers) else None,
        "recover_p50_s": round(sorted(recovered)[len(recovered) // 2], 1) if recovered else None,
        "recovered": len(recovered),
        "sandboxes_survived": survived,
        "shells_survived": shells,
        "checks": pre,
        "post_checks_lost": post_v.get("lost", 0) if post_v else 0,
        "keystrokes_lost": sum(w.lost for w in workers) - lost_before,
        "problems": problems[:3],
    }
    log(TAG, f"{name}: {result}")
    return result


async def run(sup: Supervised, args: argparse.Namespace, ids: dict[str, int]) -> dict[str, Any]:
    students = [Student(sup.url, f"{args.prefix}{i:03d}", PASSWORD) for i in range(args.students)]
    workers = [Worker(s, f"v{i}x{secrets.token_hex(3)}") for i, s in enumerate(students)]
    stop = asyncio.Event()
    typers: list[asyncio.Task[None]] = []
    try:
        log(TAG, f"{len(students)} students log in, start the lab and set up their shell")

        async def setup(w: Worker) -> None:
            await w.student.login()
            await w.student.start(ids["lab"])
            await w.student.wait_ready(READY_TIMEOUT)
            term = await w.connect_term(time.monotonic() + 60)
            status = await term.run(KUBECTL, STEP_TIMEOUT)
            if status != 0:
                raise Failed(f"kubectl exited {status}")
            await w.set_value()

        await asyncio.gather(*(setup(w) for w in workers))
        typers = [asyncio.create_task(w.type_forever(stop)) for w in workers]
        await asyncio.sleep(3)
        results = []
        for name in args.faults.split(","):
            results.append(await one_fault(sup, name, workers, ids["exercise"], args.prefix, args))
            await asyncio.sleep(args.pause)
        return {"faults": results, "term_reconnects": sum(w.term_reconnects for w in workers)}
    finally:
        stop.set()
        for t in typers:
            t.cancel()
        for w in workers:
            if w.term is not None:
                await w.term.close()
        await asyncio.gather(*(s.close() for s in students), return_exceptions=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--students", type=int, default=10)
    parser.add_argument("--faults", default=",".join(FAULTS), help=f"comma-separated, of {','.join(FAULTS)}")
    parser.add_argument("--prefix", default="bench-faults-")
    parser.add_argument("--pause", type=float, default=5.0, help="seconds of calm between faults")
    parser.add_argument("--verdict-timeout", type=float, default=150.0, help="seconds before a submission is lost")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root: runtimed drives runc")
    if unknown := set(args.faults.split(",")) - set(FAULTS):
        raise SystemExit(f"unknown faults: {sorted(unknown)}")
    sigterm_as_interrupt()
    sup = Supervised(TAG, RESOURCES)
    try:
        log(TAG, "preparing a platform of its own (migrate, collectstatic, import_course)")
        sup.prepare()
        sup.start()
        ids = json.loads(
            django_script(
                sup.env, SETUP, args.prefix, str(args.students), PASSWORD, LAB_TITLE, EXERCISE_SLUG
            ).splitlines()[-1]
        )
        figures = asyncio.run(asyncio.wait_for(run(sup, args, ids), timeout=3600))
        accounts = json.loads(django_script(sup.env, ACCOUNTS, args.prefix).splitlines()[-1])
        from classroom import Target

        pid = sup.pid("runtimed")
        alive, how = runtimed_alive_check(Target(sup.url, sup.socket, sup.admin_token, pid, sup.env))
        rss = pid_status_kb(pid) if pid else None
        cpu = pid_cpu_seconds(pid) if pid else None
        restarts = {name: len(sup.pids(name)) - 1 for name in ("redis", "runtimed", "web", "worker", "grader", "beat")}
    finally:
        log(TAG, "removing the platform")
        sup.stop()
    print(
        json.dumps(
            {
                "students": args.students,
                **figures,
                "accounts": accounts,
                "restarts": restarts,
                "runtimed_creates_after": alive,
                "runtimed_after": how,
                "runtimed_rss_mb": round(rss / 1024, 1) if rss else None,
                "runtimed_cpu_s": round(cpu, 1) if cpu is not None else None,
                "loadavg_end": loadavg(),
            }
        )
    )


if __name__ == "__main__":
    main()
