"""Issue #17's Must-show, with every process separate: the platform scaled out on this machine.

``python -m runtime kube serve`` with two lab Nodes, two runtimed daemons with their node
agents (tests/scaleout/topology.py), a private PostgreSQL (Debian's ``postgresql``, started
with initdb/pg_ctl as the unprivileged ``nobody`` in a temp dir), a private Redis, two
web replicas (daphne) and two Celery workers and beat, all with ``SANDBOX_BACKEND=kubernetes``.
Twenty students, speaking HTTP and WebSocket as the lab page does, log in and start a lab
through replica ``i % 2``: their sessions spread over both nodes; each one's terminal works
through the *other* replica, and checks are graded.

A web replica killed mid-session (``kill -9`` of replica 0 while students have terminals and
the page's events socket open on it): every one of them reconnects through replica 1 as the
page does (lab-terminal.js: the same terminal number, the scrollback replayed) and finds the
same shell (its working directory, a file it wrote, a shell variable), the session still
``ready``, Check still answered on the events socket; nothing is counted twice. Replica 0,
started again on its port as a supervisor would, serves again.

Two grading workers (separate processes, the same queues, two processes each): four checks
held in flight at once are claimed two by each (a worker reserves no more than it has processes);
``kill -9`` of one worker's whole process group (a lost pod) leaves two claimed checks
``running``: beat's ``requeue_stale_submissions`` gives them, once their lease has run out, to
the other worker, which grades them; every check gets one verdict and one counted attempt.

Then killing node a's runtimed and agent ends its sessions (beat's ``end_lost_placements``)
with the message, node b's go on; a student who starts again finds the cluster full (node b
holds ten one-cpu labs on ten cpus), waits "for capacity", and starts when a classmate stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest

from tests.scaleout.topology import GRACE, TOLERATION, Topology

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(600)]

NODE_CPU = "10"
REPO = Path(__file__).resolve().parents[2]
PY = sys.executable
PG_BIN = Path("/usr/lib/postgresql")
STUDENTS = 20
PASSWORD = "scale-out-" + secrets.token_hex(4)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pg_bin(name: str) -> str:
    found = sorted(PG_BIN.glob(f"*/bin/{name}"))
    if not found:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql; make deps does)")
    return str(found[-1])


@contextlib.contextmanager
def postgres(base: Path) -> Iterator[str]:
    """A private PostgreSQL owned by ``kubelab``; yields its DATABASE_URL."""
    data = base / "pg"
    data.mkdir()
    shutil.chown(data, "nobody", "nogroup")  # an unprivileged user every Debian has
    port = free_port()
    as_kubelab = ["runuser", "-u", "nobody", "--"]
    subprocess.run(
        [*as_kubelab, pg_bin("initdb"), "-D", str(data), "-A", "trust", "-U", "kubelab", "-E", "UTF8"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {data} -c fsync=off -c max_connections=200"
    subprocess.run(
        [*as_kubelab, pg_bin("pg_ctl"), "-D", str(data), "-o", options, "-l", str(data / "log"), "-w", "start"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    try:
        yield f"postgres://kubelab:unused@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_kubelab, pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
        )


@contextlib.contextmanager
def redis(base: Path) -> Iterator[str]:
    sock = base / "redis.sock"
    proc = subprocess.Popen(
        [
            *["redis-server", "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700", "--save", ""],
            *["--appendonly", "no", "--dir", str(base), "--loglevel", "warning"],
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while not sock.exists():
            assert time.monotonic() < deadline and proc.poll() is None, "redis did not start"
            time.sleep(0.05)
        yield f"unix://{sock}"
    finally:
        proc.terminate()
        proc.wait(10)


class Processes:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        with (self.base / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.procs.append((name, proc))
        return proc

    def get(self, name: str) -> subprocess.Popen[bytes]:
        return [proc for n, proc in self.procs if n == name][-1]

    def kill(self, name: str) -> None:
        """``kill -9`` of the process and everything it started (its session: a lost pod)."""
        proc = self.get(name)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def logs(self) -> str:
        names = dict.fromkeys(name for name, _ in self.procs)
        return "\n".join(
            f"--- {name}\n{(self.base / f'{name}.log').read_text(errors='replace')[-2500:]}" for name in names
        )

    def stop(self) -> None:
        for _name, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _name, proc in reversed(self.procs):
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def wait_port(port: int, proc: subprocess.Popen[bytes], what: str, logs: Any) -> None:
    deadline = time.monotonic() + 90
    while True:
        assert proc.poll() is None, f"{what} exited:\n{logs()}"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            assert time.monotonic() < deadline, f"{what} did not listen:\n{logs()}"
            time.sleep(0.1)


SEED = """
import json, sys
import django
django.setup()
from django.contrib.auth import get_user_model
from tests.factories import LabFactory, StepFactory
from tests.grader.helpers import ExerciseFactory
lab = LabFactory.create()
check = {"type": "run", "name": "mark", "command": "test -f /root/mark"}
exercise = ExerciseFactory.create(step=StepFactory.create(lab=lab), checks=[check])
# a check that stays in flight until the student creates /root/go (a worker killed meanwhile)
held = {"type": "run", "name": "held", "timeout": 40,
        "command": "while [ ! -f /root/go ]; do sleep 0.2; done; test -f /root/mark"}
slow = ExerciseFactory.create(step=StepFactory.create(lab=lab), checks=[held])
User = get_user_model()
for i in range(int(sys.argv[1])):
    u = User.objects.create(username=f"scale{i:02d}")
    u.set_password(sys.argv[2])
    u.save()
print(json.dumps({"lab": lab.pk, "exercise": exercise.pk, "slow": slow.pk}))
"""


class Platform:
    def __init__(self, topo: Topology, base: Path, database_url: str, redis_url: str) -> None:
        self.topo = topo
        self.base = base
        self.database_url = database_url
        self.procs = Processes(base)
        self.env = {
            **{k: v for k, v in os.environ.items() if k not in ("RUNTIME_ADMIN_TOKEN", "RUNTIME_TOKEN")},
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "CHANNELS_PREFIX": "kl-scaleout",
            "DEBUG": "false",
            "PYTHONUNBUFFERED": "1",
            "RUNTIME_REQUIRED": "false",
            "SANDBOX_BACKEND": "kubernetes",
            "SANDBOX_KUBECONFIG": str(topo.kubeconfig),
            "RUNTIME_CA_FILE": str(topo.ca),
            "RUNTIME_NODE_PORT": str(topo.port),
            "SANDBOX_CAPACITY_WAIT": "120",
            "LAB_MAX_LIVE_PER_STUDENT": "2",
            "GRADER_CHECKS_PER_MINUTE": "100",
        }
        self.web: list[str] = []
        self.web_ports: list[int] = []
        self.worker_env = {**self.env, "RUNTIME_ADMIN_TOKEN": self.topo.admin_token}

    def manage(self, *args: str, code: str | None = None, extra: list[str] | None = None) -> str:
        argv = [PY, "-c", code, *(extra or [])] if code else [PY, "manage.py", *args]
        done = subprocess.run(argv, cwd=REPO, env=self.env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    def start(self) -> dict[str, int]:
        self.manage("migrate", "--noinput", "-v", "0")
        self.manage("collectstatic", "--noinput", "-v", "0")
        ids: dict[str, int] = json.loads(self.manage(code=SEED, extra=[str(STUDENTS + 1), PASSWORD]).splitlines()[-1])
        for i in range(2):
            self.web_ports.append(free_port())
            self.web.append(f"http://127.0.0.1:{self.web_ports[i]}")
            self.start_web(i)
        for i in range(2):
            self.start_worker(i)
        self.procs.start(
            "beat",
            [PY, "-m", "celery", "-A", "config", "beat", "--loglevel", "INFO", "--schedule", str(self.base / "beat")],
            self.worker_env,
        )
        return ids

    def start_web(self, i: int) -> None:
        """Web replica ``i`` on its port (again after a kill: as a supervisor or Kubernetes would).
        The web replicas hold no runtimed credential (as make run and the chart)."""
        port = self.web_ports[i]
        proc = self.procs.start(
            f"web{i}", [PY, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"], self.env
        )
        wait_port(port, proc, f"web replica {i}", self.procs.logs)

    def start_worker(self, i: int) -> None:
        """Worker ``i``: both consume the same queues, two processes each (four, as before)."""
        self.procs.start(
            f"worker{i}",
            [
                *[PY, "-m", "celery", "-A", "config", "worker", "--loglevel", "INFO", "--concurrency", "2"],
                *["--queues", "celery,provisioning,grading", "--hostname", f"scaleout{i}-{os.getpid()}@%h"],
                *["--without-gossip", "--without-mingle"],
            ],
            self.worker_env,
        )

    def worker_of(self, claimed_by: str) -> str:
        """The worker (``worker0``/``worker1``) whose process wrote ``host:pid`` on a submission."""
        pid = int(claimed_by.rsplit(":", 1)[1])
        group = os.getpgid(pid)  # a pool process is in its worker's process group
        found = [name for name, proc in self.procs.procs if name.startswith("worker") and proc.pid == group]
        assert len(found) == 1, (claimed_by, group, found)
        return found[0]

    def query(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url.replace("postgres://", "postgresql://")) as conn:
            return list(conn.execute(sql, args).fetchall())

    def session(self, session_id: str) -> dict[str, Any]:
        with psycopg.connect(self.database_url.replace("postgres://", "postgresql://")) as conn:
            row = conn.execute(
                "select status, sandbox_id, error, end_reason, progress from labs_labsession where id = %s",
                (session_id,),
            ).fetchone()
        assert row is not None
        return {"status": row[0], "sandbox_id": row[1], "error": row[2], "end_reason": row[3], "progress": row[4]}

    def wait_session(self, session_id: str, ok: Any, what: str, timeout: float = 180) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            s = self.session(session_id)
            if ok(s):
                return s
            assert time.monotonic() < deadline, f"session {session_id} never {what}: {s}\n{self.logs()}"
            time.sleep(0.3)

    def logs(self) -> str:
        return self.procs.logs() + "\n" + self.topo.logs()


@pytest.fixture(scope="module")
def platform(topo: Topology) -> Iterator[tuple[Platform, dict[str, int]]]:
    base = Path(tempfile.mkdtemp(prefix="kl-scaleout-platform-", dir="/tmp"))
    base.chmod(0o755)
    try:
        with postgres(base) as db, redis(base) as rd:
            p = Platform(topo, base, db, rd)
            try:
                yield p, p.start()
            finally:
                p.procs.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)


class Student:
    """One browser: a cookie jar (good on both replicas: cookies are per host, not port)."""

    def __init__(self, username: str) -> None:
        self.username = username
        self.http = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True), timeout=aiohttp.ClientTimeout(total=120)
        )
        self.session_id = ""

    def csrf(self) -> str:
        return next(c.value for c in self.http.cookie_jar if c.key == "csrftoken")

    def headers(self, base: str) -> dict[str, str]:
        return {"Origin": base, "Referer": base + "/", "X-CSRFToken": self.csrf()}

    async def login(self, base: str) -> None:
        async with self.http.get(f"{base}/accounts/login/") as r:
            page = await r.text()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert token is not None, page[:500]
        form = {"username": self.username, "password": PASSWORD, "csrfmiddlewaretoken": token.group(1)}
        async with self.http.post(f"{base}/accounts/login/", data=form, headers={"Origin": base}) as r:
            await r.read()
            assert r.status == 200 and not str(r.url.path).startswith("/accounts/login"), r.url

    async def start(self, base: str, lab: int) -> str:
        async with self.http.post(
            f"{base}/labs/{lab}/start/", data={"csrfmiddlewaretoken": self.csrf()}, headers=self.headers(base)
        ) as r:
            await r.read()
            m = re.fullmatch(r"/labs/([0-9a-f-]{36})/", r.url.path)
            assert r.status == 200 and m is not None, (r.status, r.url)
        self.session_id = m.group(1)
        return self.session_id

    async def open_terminal(self, base: str) -> aiohttp.ClientWebSocketResponse:
        """Terminal 1, as lab-terminal.js opens it (and opens it again after a close)."""
        ws_url = base.replace("http", "ws", 1) + f"/ws/labs/{self.session_id}/term/1/?rows=30&cols=100"
        ws = await self.http.ws_connect(ws_url, headers={"Origin": base})
        hello = await ws.receive(timeout=30)
        assert hello.type == aiohttp.WSMsgType.TEXT and json.loads(hello.data)["type"] == "hello", hello
        return ws

    @staticmethod
    async def read_until(ws: aiohttp.ClientWebSocketResponse, needle: str) -> bytes:
        """Output until ``needle`` appears, acknowledged as xterm.js does."""
        seen = b""
        deadline = time.monotonic() + 30
        while needle.encode() not in seen:
            left = deadline - time.monotonic()
            assert left > 0, seen[-300:]
            msg = await ws.receive(timeout=left)
            assert msg.type in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT), (msg, seen[-300:])
            if msg.type == aiohttp.WSMsgType.BINARY:
                seen += msg.data
                await ws.send_str(json.dumps({"type": "ack", "bytes": len(msg.data)}))
        return seen

    async def terminal(self, base: str, typed: str, needle: str) -> None:
        async with await self.open_terminal(base) as ws:
            await ws.send_bytes(typed.encode())
            await self.read_until(ws, needle)

    async def events(self, base: str) -> tuple[aiohttp.ClientWebSocketResponse, dict[str, Any]]:
        """The lab page's events socket and the state it sends first."""
        ws_url = base.replace("http", "ws", 1) + f"/ws/labs/{self.session_id}/events/"
        ws = await self.http.ws_connect(ws_url, headers={"Origin": base})
        return ws, await ws.receive_json(timeout=30)

    async def post_check(self, base: str, exercise: int) -> int:
        url = f"{base}/labs/{self.session_id}/exercises/{exercise}/check/"
        async with self.http.post(url, headers=self.headers(base)) as r:
            body = await r.json(content_type=None)
            assert r.status == 202, body
        return int(body["submission"]["submission"])

    async def check(self, base: str, exercise: int) -> str:
        return await self.verdict(base, await self.post_check(base, exercise))

    async def verdict(self, base: str, sub: int, timeout: float = 90) -> str:
        deadline = time.monotonic() + timeout
        while True:
            async with self.http.get(f"{base}/labs/{self.session_id}/submissions/{sub}/") as r:
                state = await r.json(content_type=None)
            if state.get("finished"):
                return str(state.get("status"))
            assert time.monotonic() < deadline, state
            await asyncio.sleep(0.3)

    async def stop(self, base: str) -> None:
        async with self.http.post(
            f"{base}/labs/{self.session_id}/stop/",
            data={"csrfmiddlewaretoken": self.csrf()},
            headers=self.headers(base),
        ) as r:
            await r.read()
            assert r.status == 200


def node_of(sandbox_id: str) -> str:
    return sandbox_id.split("/")[1]


def counted(p: Platform, username: str, exercise: int) -> tuple[int, int, int]:
    """(submissions, finished passed/failed ones, attempts counted in the student's progress)."""
    rows = p.query(
        "select s.status from grader_submission s join auth_user u on u.id = s.user_id"
        " where u.username = %s and s.exercise_id = %s",
        (username, exercise),
    )
    progress = p.query(
        "select e.attempts from grader_exerciseprogress e join auth_user u on u.id = e.user_id"
        " where u.username = %s and e.exercise_id = %s",
        (username, exercise),
    )
    return len(rows), sum(r[0] in ("passed", "failed") for r in rows), progress[0][0] if progress else 0


async def pushed_verdict(events: aiohttp.ClientWebSocketResponse, submission: int) -> dict[str, Any]:
    """The check's verdict as the page receives it on its events socket (through the channel layer)."""
    deadline = time.monotonic() + 90
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"no verdict pushed for submission {submission}"
        message = await events.receive_json(timeout=left)
        if message.get("type") == "check" and message.get("submission") == submission and message.get("finished"):
            return dict(message)


async def web_replica_killed(p: Platform, held: list[Student], exercise: int) -> None:
    """``kill -9`` of replica 0 under students with open sockets: they reconnect through replica 1
    (the page's reconnect: the same terminal number, the scrollback replayed) to the same shell."""
    web = p.web

    async def work(i: int, s: Student) -> tuple[aiohttp.ClientWebSocketResponse, aiohttp.ClientWebSocketResponse]:
        term = await s.open_terminal(web[0])
        typed = f"cd /tmp; echo marker-{s.username} > f; KEPT=kept-{i}; echo typed-$((40+{i}))\r"
        await term.send_bytes(typed.encode())
        await Student.read_until(term, f"typed-{40 + i}")
        events, state = await s.events(web[0])
        assert state["status"] == "ready", state
        return term, events

    sockets = await asyncio.gather(*(work(i, s) for i, s in enumerate(held)))
    before = [counted(p, s.username, exercise) for s in held]
    await asyncio.to_thread(p.procs.kill, "web0")
    for term, events in sockets:  # the page sees its sockets close (and schedules a reconnect)
        for ws in (term, events):
            ended = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
            while (await ws.receive(timeout=30)).type not in ended:
                pass  # what was already on its way (the prompt after the last command)
            await ws.close()

    async def reconnect(i: int, s: Student) -> None:
        events, state = await s.events(web[1])
        try:
            assert state["status"] == "ready" and state["terminals"] == [1], state
            async with await s.open_terminal(web[1]) as term:
                replay = await Student.read_until(term, f"typed-{40 + i}")  # the scrollback, replayed
                assert f"echo marker-{s.username} > f" in replay.decode(errors="replace"), replay[-300:]
                # the same shell: its working directory, the file it wrote, its variables
                await term.send_bytes(b"echo $(pwd)/$(cat f)/$KEPT-$((5*5))\r")
                await Student.read_until(term, f"/tmp/marker-{s.username}/kept-{i}-25")
            submission = await s.post_check(web[1], exercise)
            verdict = await pushed_verdict(events, submission)
            assert verdict["status"] == "passed", verdict
        finally:
            await events.close()

    await asyncio.gather(*(reconnect(i, s) for i, s in enumerate(held)))
    for s, (subs, finished, attempts) in zip(held, before, strict=True):
        assert p.session(s.session_id)["status"] == "ready"
        # one more submission, graded once and counted once; nothing before it lost or counted again
        assert counted(p, s.username, exercise) == (subs + 1, finished + 1, attempts + 1), s.username
    # replica 0 started again (a supervisor, a Deployment) serves again, the same shells
    await asyncio.to_thread(p.start_web, 0)
    for i, s in enumerate(held):
        await s.terminal(web[0], "echo $KEPT-$((2*3))\r", f"kept-{i}-6")


async def worker_killed(p: Platform, held: list[Student], slow: int) -> None:
    """Checks claimed by both workers; ``kill -9`` of one with checks in flight: each still gets
    one verdict, from the other worker, and is counted once."""
    web = p.web
    subs = list(await asyncio.gather(*(s.post_check(web[i % 2], slow) for i, s in enumerate(held))))

    def claimed() -> list[tuple[int, str, int]]:
        deadline = time.monotonic() + 90
        while True:
            rows = p.query(
                "select id, worker, grading_attempts from grader_submission where id = any(%s) and status = 'running'",
                (subs,),
            )
            if len(rows) == len(subs):
                return [(int(r[0]), str(r[1]), int(r[2])) for r in rows]
            assert time.monotonic() < deadline, f"checks not all claimed: {rows}\n{p.logs()}"
            time.sleep(0.3)

    # a worker reserves no more checks than it has processes (prefetch 1 with acks_late): two each
    holders = {sub: p.worker_of(worker) for sub, worker, _ in await asyncio.to_thread(claimed)}
    assert sorted(holders.values()) == ["worker0", "worker0", "worker1", "worker1"], holders
    victim = holders[subs[0]]
    survivor = "worker1" if victim == "worker0" else "worker0"
    await asyncio.to_thread(p.procs.kill, victim)  # the whole worker: a lost pod
    for s in held:  # the held checks may finish now
        await s.terminal(web[1], "touch /root/go; echo go-$((6*7))\r", "go-42")
    # the survivor's own finish; the victim's wait out their lease (48 s), then beat requeues them
    verdicts = await asyncio.gather(
        *(s.verdict(web[i % 2], sub, 180) for i, (s, sub) in enumerate(zip(held, subs, strict=True)))
    )
    assert verdicts == ["passed"] * len(held), verdicts
    rows = {
        int(r[0]): (str(r[1]), int(r[2]))
        for r in p.query("select id, worker, grading_attempts from grader_submission where id = any(%s)", (subs,))
    }
    for s, sub in zip(held, subs, strict=True):
        worker, claims = rows[sub]
        assert p.worker_of(worker) == survivor, (sub, worker)
        assert claims == (2 if holders[sub] == victim else 1), (sub, holders[sub], claims)
        assert counted(p, s.username, slow) == (1, 1, 1), s.username
    p.start_worker(int(victim[-1]))  # as its supervisor would


def test_a_class_on_two_lab_nodes_behind_two_web_replicas_and_two_workers(
    platform: tuple[Platform, dict[str, int]],
) -> None:
    p, ids = platform
    web = p.web

    async def run() -> None:
        students = [Student(f"scale{i:02d}") for i in range(STUDENTS)]
        try:
            await asyncio.gather(*(s.login(web[i % 2]) for i, s in enumerate(students)))
            await asyncio.gather(*(s.start(web[i % 2], ids["lab"]) for i, s in enumerate(students)))
            ready = [
                await asyncio.to_thread(p.wait_session, s.session_id, lambda r: r["status"] == "ready", "ready")
                for s in students
            ]
            nodes = [node_of(r["sandbox_id"]) for r in ready]
            assert sorted(nodes.count(n) for n in set(nodes)) == [10, 10], nodes
            # every terminal through the other replica than the one that started it
            await asyncio.gather(
                *(
                    s.terminal(web[(i + 1) % 2], f"echo {s.username} > /root/mark; echo $((6*7))\r", "42")
                    for i, s in enumerate(students)
                )
            )
            # checks graded by the workers, asked through either replica, on both nodes
            for i in (0, 1, 2, 3):
                assert await students[i].check(web[i % 2], ids["exercise"]) == "passed"
            await web_replica_killed(p, students[:6], ids["exercise"])
            await worker_killed(p, students[6:10], ids["slow"])
            lost_node = "kl-node-a"
            on_a = [s for s, n in zip(students, nodes, strict=True) if n == lost_node]
            on_b = [s for s, n in zip(students, nodes, strict=True) if n != lost_node]
            await asyncio.to_thread(p.topo.nodes[lost_node].stop)
            for s in on_a:  # beat's end_lost_placements, run by the worker
                ended = await asyncio.to_thread(
                    p.wait_session,
                    s.session_id,
                    lambda r: r["end_reason"] == "lost",
                    "ended as lost",
                    GRACE + TOLERATION + 90,
                )
                assert "taken out of service" in ended["error"]
                assert ended["status"] in ("stopping", "stopped")
            for i, s in enumerate(on_b):
                assert p.session(s.session_id)["status"] == "ready"
                await s.terminal(web[i % 2], "echo $((7*6))\r", "42")
            # a student of node a starts again: node b is full (10 one-cpu labs on 10 cpus)
            again = on_a[0]
            await again.start(web[1], ids["lab"])
            waiting = await asyncio.to_thread(
                p.wait_session,
                again.session_id,
                lambda r: any(x["stage"] == "waiting" for x in r["progress"]),
                "waiting for capacity",
                60,
            )
            assert waiting["status"] == "starting" and not waiting["error"]
            message = next(x["message"] for x in waiting["progress"] if x["stage"] == "waiting")
            assert "Waiting for capacity" in message and "Insufficient cpu" in message
            # a classmate on node b stops: the waiting lab starts there
            await on_b[0].stop(web[0])
            started = await asyncio.to_thread(
                p.wait_session, again.session_id, lambda r: r["status"] == "ready", "ready after room freed"
            )
            assert node_of(started["sandbox_id"]) == "kl-node-b"
            await again.terminal(web[0], "echo $((6*7))\r", "42")
        finally:
            await asyncio.gather(*(s.http.close() for s in students), return_exceptions=True)

    asyncio.run(run())
