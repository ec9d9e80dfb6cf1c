"""Start and supervise every process of the platform in the foreground.

``make run`` ends here. One process owns the whole tree: a private Redis on a
unix socket under ``var/run/``, runtimed (root), daphne, a Celery worker and
Celery workers (one for provisioning and housekeeping, one for grading alone,
so a class pressing Start never queues a Check behind its sandboxes) and Celery
beat. Output is prefixed per process. Ctrl-C or SIGTERM stops them all, in
reverse order, and nothing they started outlives the supervisor.

Start-up is all or nothing: a child that cannot start (it exits, or is not
ready in time, before it was ever up) stops the whole with a message naming it
and exit status 1 — a platform that never came up is a configuration error to
fix, not something to retry.

After start-up a child that dies is restarted on its own, as compose's
``restart: unless-stopped`` and a Pod's ``restartPolicy: Always`` do: after
1 s, doubling on each quick exit up to 30 s (a crash loop is retried at that
pace, and said so), back to 1 s once it stayed up a minute. The other
children are left alone: Redis, the workers and daphne reconnect to a
restarted peer, and runtimed re-adopts the sandboxes it left running.

When started as root, everything but runtimed runs as an unprivileged service
user (``SERVICE_USER``, default ``kubelab``): the web tier never becomes root
(ARCHITECTURE.md).
"""

from __future__ import annotations

import argparse
import contextlib
import grp
import os
import pwd
import secrets
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import urlparse

BASE = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
COLORS = ["36", "35", "32", "33", "34", "31"]
READY_TIMEOUT = 120.0  # seconds a (re)started child has to become ready
BACKOFF_FIRST = 1.0  # seconds before the first restart of a child that died
BACKOFF_MAX = 30.0
STABLE_AFTER = 60.0  # up this long, the next exit is not part of a crash loop: back-off starts over
CRASH_LOOP = 3  # this many quick exits in a row are reported as a crash loop


@dataclass
class Child:
    name: str
    argv: list[str]
    ready: str  # how to tell it is up: "socket:<path>", "tcp:<host>:<port>", "none"
    privileged: bool = False
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    buffer: bytes = b""
    started_at: float = 0.0  # monotonic time the current process was started
    ready_at: float | None = None  # ... and became ready; None while it is not (yet)
    quick_exits: int = 0  # exits in a row without staying up STABLE_AFTER
    restart_at: float | None = None  # a restart is due then (monotonic); None when running
    restarts: int = 0


# runtimed credentials: a child gets one only through its own ``Child.env``
CREDENTIALS = {"RUNTIME_ADMIN_TOKEN", "RUNTIME_ADMIN_TOKEN_FILE", "RUNTIME_TOKEN"}


def celery_worker(queues: str, concurrency: int, hostname: str) -> list[str]:
    """The command of a Celery worker process taking ``queues``."""
    return [
        str(VENV_BIN / "celery"),
        *("-A", "config", "worker", "--loglevel", "INFO", "--queues", queues),
        *("--concurrency", str(concurrency), "--hostname", hostname),
    ]


def log(message: str) -> None:
    sys.stdout.write(f"\033[1mrun\033[0m      | {message}\n")
    sys.stdout.flush()


def service_ids(user: str) -> tuple[int, int] | None:
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", user],
            check=True,
            timeout=30,
        )
        entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


def can_run_as(ids: tuple[int, int]) -> str | None:
    """None if the service user can run this checkout's Python, else why not."""
    try:
        probe = subprocess.run(
            [sys.executable, "-c", "import django, daphne, celery"],
            cwd=BASE,
            user=ids[0],
            group=ids[1],
            extra_groups=[],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except OSError as exc:
        return str(exc)
    if probe.returncode == 0:
        return None
    return (probe.stderr.strip().splitlines() or ["unknown error"])[-1]


def prepare_var(var: Path, ids: tuple[int, int] | None, runtime_root: Path) -> None:
    (var / "run").mkdir(parents=True, exist_ok=True)
    (var / "log").mkdir(parents=True, exist_ok=True)
    if ids is None:
        return
    uid, gid = ids
    # The service user owns var/ except what runtimed (root) keeps there: the runtime's
    # root and the graders' docker socket directory beside runtimed's socket.
    roots = {runtime_root, var / "run" / "docker"}
    for root, dirs, files in os.walk(var):
        here = Path(root)
        if here in roots:
            dirs[:] = []
            continue
        dirs[:] = [d for d in dirs if here / d not in roots]
        os.lchown(here, uid, gid)
        for name in files:
            if not (here == var / "run" and name.startswith("runtimed.")):  # runtimed's socket and lock
                os.lchown(here / name, uid, gid)
    # var/ (holding the runtime's root) and var/run (runtimed's sockets) are root's with the
    # service user's group and the sticky bit, as /tmp is: that user still creates files
    # there (SQLite's journal, Redis' socket) but can never rename or replace root's entries
    # (a var/runtime swapped for a symlink would steer runtimed, which runs as root).
    for shared in (var, var / "run"):
        os.lchown(shared, 0, gid)
        shared.chmod(0o1775)


def probe_ready(child: Child) -> bool:
    """One look at whether ``child`` is ready (its socket or port answers)."""
    kind, _, target = child.ready.partition(":")
    assert child.proc is not None
    if child.proc.poll() is not None:
        return False
    try:
        if kind == "socket":
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(1)
                sock.connect(target)
        elif kind == "tcp":
            host, _, port = target.rpartition(":")
            with socket.create_connection((host.strip("[]"), int(port)), timeout=1):
                pass
    except OSError:
        return False
    return True


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


def backoff(quick_exits: int) -> float:
    """Seconds before restarting a child that exited ``quick_exits`` times in a row (1 s, 2 s, 4 s … 30 s)."""
    return min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** max(0, quick_exits - 1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-runtime", action="store_true", help="do not start runtimed")
    args = parser.parse_args()

    sys.path.insert(0, str(BASE))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django
    from django.conf import settings

    django.setup()

    var = Path(settings.VAR_DIR)
    runtime_root = Path(settings.RUNTIME_ROOT).resolve()
    user = os.environ.get("SERVICE_USER", "kubelab")
    ids = service_ids(user)
    if ids is not None and (why := can_run_as(ids)):
        # A checkout or interpreter the service user cannot read (say, under
        # /root): keep going, loudly, rather than refuse to start.
        log(
            f"\033[33mWARNING: the service user {user!r} cannot run {sys.executable} in {BASE} ({why}); "
            "web, worker and beat run as root. Put the checkout and its .venv where that user can read "
            "them (e.g. /opt or /srv) to run them unprivileged.\033[0m"
        )
        ids = None
    prepare_var(var, ids, runtime_root)

    children: list[Child] = []
    redis_url = urlparse(settings.REDIS_URL)
    if redis_url.scheme == "unix" and os.environ.get("EMBEDDED_REDIS", "1") != "0":
        sock = redis_url.path
        Path(sock).parent.mkdir(parents=True, exist_ok=True)
        children.append(
            Child(
                "redis",
                [
                    shutil.which("redis-server") or "redis-server",
                    "--port",
                    "0",
                    "--unixsocket",
                    sock,
                    "--unixsocketperm",
                    "770",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(var / "run"),
                    "--loglevel",
                    "warning",
                ],
                ready=f"socket:{sock}",
            )
        )
    runtime_cli = BASE / "runtime" / "__main__.py"
    # runtimed's admin credential (runtime/auth.py): for runtimed and the provisioning worker
    # only; never for the web process, the grading worker or beat (SECURITY.md).
    admin_token = settings.RUNTIME_ADMIN_TOKEN or secrets.token_urlsafe(32)
    if args.no_runtime:
        os.environ["RUNTIME_REQUIRED"] = "false"
    if not args.no_runtime and runtime_cli.exists():
        if os.geteuid() == 0:
            Path(settings.RUNTIME_SOCKET).parent.mkdir(parents=True, exist_ok=True)
            children.append(
                Child(
                    "runtimed",
                    [
                        sys.executable,
                        "-m",
                        "runtime",
                        "daemon",
                        "--root",
                        str(runtime_root),
                        "--socket",
                        settings.RUNTIME_SOCKET,
                    ],
                    ready=f"socket:{settings.RUNTIME_SOCKET}",
                    privileged=True,
                    env={
                        "RUNTIME_ADMIN_TOKEN": admin_token,
                        **({"RUNTIME_SOCKET_GROUP": grp.getgrgid(ids[1]).gr_name} if ids else {}),
                    },
                )
            )
        else:
            log("not root: runtimed is not started, labs cannot open sandboxes")
            os.environ["RUNTIME_REQUIRED"] = "false"
    host, port = settings.HOST, settings.PORT
    children += [
        Child(
            "web",
            [str(VENV_BIN / "daphne"), "-b", host, "-p", str(port), "--proxy-headers", "config.asgi:application"],
            ready=f"tcp:{host}:{port}",
        ),
        # Two workers, so that grading always has processes of its own: provisioning a class's
        # sandboxes (seconds each) never makes a Check wait. The first also takes the default
        # queue (beat's housekeeping). Only the first holds runtimed's admin credential; the
        # grader acts with each lab session's own grader token (runtime/auth.py).
        Child(
            "worker",
            celery_worker(
                f"{settings.PROVISIONING_QUEUE},{settings.CELERY_TASK_DEFAULT_QUEUE}",
                settings.CELERY_PROVISIONING_CONCURRENCY,
                "provisioning@%h",
            ),
            ready="none",
            env={"RUNTIME_ADMIN_TOKEN": admin_token},
        ),
        Child(
            "grader",
            celery_worker(settings.GRADER_QUEUE, settings.CELERY_GRADING_CONCURRENCY, "grading@%h"),
            ready="none",
            # no runtimed credential of its own: each grading uses its session's grader token
        ),
        Child(
            "beat",
            [
                str(VENV_BIN / "celery"),
                "-A",
                "config",
                "beat",
                "--loglevel",
                "INFO",
                "--schedule",
                str(var / "run" / "celerybeat-schedule"),
            ],
            ready="none",
        ),
    ]

    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    selector = selectors.DefaultSelector()
    width = max(len(c.name) for c in children)

    def pump(child: Child, stream: IO[bytes], final: bool = False) -> None:
        # ``stream`` may be the output of an earlier process of ``child``: kept open until
        # its end, so that what the dead process' own children still write is not lost.
        try:
            data = os.read(stream.fileno(), 65536)
        except BlockingIOError:
            data = b""
        if not data and not final:
            selector.unregister(stream)
            stream.close()
        child.buffer += data
        *lines, child.buffer = child.buffer.split(b"\n")
        if final and child.buffer:
            lines.append(child.buffer)
            child.buffer = b""
        color = COLORS[children.index(child) % len(COLORS)]
        for line in lines:
            text = line.decode(errors="replace").rstrip("\r")
            sys.stdout.write(f"\033[{color}m{child.name:<{width}}\033[0m | {text}\n")
        sys.stdout.flush()

    def pump_ready(timeout: float) -> None:
        for key, _ in selector.select(timeout=timeout):
            pump(*key.data)

    def stop_all() -> None:
        for child in reversed(children):
            child.restart_at = None
            if child.proc and child.proc.poll() is None:
                child.proc.terminate()
        deadline = time.monotonic() + 15
        for child in reversed(children):
            if child.proc is None:
                continue
            try:
                child.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log(f"{child.name} did not stop in time; killing it")
                child.proc.kill()
                child.proc.wait(5)
        for key in list(selector.get_map().values()):
            child, stream = key.data
            pump(child, stream, final=True)
            selector.unregister(stream)
            stream.close()

    env = {k: v for k, v in os.environ.items() if k not in CREDENTIALS}
    env.update(PYTHONUNBUFFERED="1", FORCE_COLOR="0")

    def spawn(child: Child) -> None:
        """Start ``child``'s process (raises OSError); its readiness is looked at by the caller."""
        kwargs: dict[str, object] = {}
        if ids and not child.privileged:
            kwargs = {"user": ids[0], "group": ids[1], "extra_groups": []}
            child_env = {**env, "HOME": str(var), **child.env}
        else:
            child_env = {**env, **child.env}
        child.proc = subprocess.Popen(  # type: ignore[call-overload]
            child.argv,
            cwd=BASE,
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **kwargs,
        )
        assert child.proc is not None and child.proc.stdout is not None
        child.started_at = time.monotonic()
        child.ready_at = None
        log(f"started {child.name} (pid {child.proc.pid})")
        os.set_blocking(child.proc.stdout.fileno(), False)
        selector.register(child.proc.stdout, selectors.EVENT_READ, (child, child.proc.stdout))

    def schedule_restart(child: Child, why: str) -> None:
        now = time.monotonic()
        if child.ready_at is not None and now - child.ready_at >= STABLE_AFTER:
            child.quick_exits = 0
        child.quick_exits += 1
        delay = backoff(child.quick_exits)
        child.restart_at = now + delay
        loop = f"; crash loop: {child.quick_exits} quick exits in a row" if child.quick_exits >= CRASH_LOOP else ""
        log(f"\033[31m{why}{loop}; restarting it in {delay:g} s\033[0m")

    def on_exit(child: Child) -> None:
        assert child.proc is not None
        code = child.proc.returncode
        if not child.privileged:
            # What the dead process left in its session goes too, as when a container's
            # main process dies. Not for runtimed: its sandboxes and PTY holders outlive
            # it by design and a restarted runtimed re-adopts them.
            with contextlib.suppress(OSError):
                os.killpg(child.proc.pid, signal.SIGKILL)
        uptime = time.monotonic() - child.started_at
        schedule_restart(child, f"{child.name} (pid {child.proc.pid}) {describe_exit(code)} after {uptime:.0f} s")

    def restart(child: Child) -> None:
        child.restart_at = None
        child.restarts += 1
        log(f"restarting {child.name} (restart {child.restarts})")
        try:
            spawn(child)
        except OSError as exc:
            schedule_restart(child, f"cannot start {child.name}: {exc}")

    def watch(child: Child) -> None:
        """One look at a child after start-up: restart it when due, notice its exit, its readiness."""
        assert child.proc is not None
        now = time.monotonic()
        if child.restart_at is not None:
            if now >= child.restart_at:
                restart(child)
            return
        if child.proc.poll() is not None:
            on_exit(child)
        elif child.ready_at is None:
            if probe_ready(child):
                child.ready_at = now
                if child.restarts:
                    log(f"{child.name} is up again (pid {child.proc.pid})")
            elif now - child.started_at > READY_TIMEOUT:
                log(f"\033[31m{child.name} did not become ready in {READY_TIMEOUT:g} s; killing it\033[0m")
                child.proc.kill()

    def supervise() -> int:
        for child in children:
            if stopping:
                break
            log(f"starting {child.name}")
            try:
                spawn(child)
            except OSError as exc:
                log(f"\033[31mcannot start {child.name}: {exc}; stopping everything\033[0m")
                return 1
            assert child.proc is not None
            while not stopping:
                pump_ready(0.1)
                if probe_ready(child):
                    child.ready_at = time.monotonic()
                    break
                if child.proc.poll() is not None or time.monotonic() - child.started_at > READY_TIMEOUT:
                    pump_ready(0.2)
                    code = child.proc.poll()
                    reason = describe_exit(code) if code is not None else f"did not become ready in {READY_TIMEOUT:g} s"
                    log(f"\033[31m{child.name} {reason} during start-up; stopping everything\033[0m")
                    stop_all()
                    return 1

        if not stopping:
            url = f"http://{'localhost' if host in {'127.0.0.1', '0.0.0.0', '::'} else host}:{port}/"  # noqa: S104
            log("")
            log(f"\033[1mKubeLab is up: {url}\033[0m")
            log(f"demo logins: student / {settings.DEMO_PASSWORD}   instructor / {settings.DEMO_PASSWORD}")
            log("press Ctrl-C to stop")
            log("")

        while not stopping:
            due = [c.restart_at - time.monotonic() for c in children if c.restart_at is not None]
            pump_ready(max(0.05, min([0.5, *due])))
            for child in children:
                if stopping:
                    break
                watch(child)

        log("stopping")
        stop_all()
        log("stopped")
        return 0

    # Whatever happens in here — a child failing, an exception of our own —
    # nothing this process started is left running.
    try:
        return supervise()
    finally:
        stop_all()


if __name__ == "__main__":
    sys.exit(main())
