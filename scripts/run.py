"""Start and supervise every process of the platform in the foreground.

``make run`` ends here. One process owns the whole tree: a private Redis on a
unix socket under ``var/run/``, runtimed (root), daphne, a Celery worker and
Celery beat. Output is prefixed per process. Ctrl-C or SIGTERM stops them all,
in reverse order; a child that exits on its own stops the whole with a message
naming it and a non-zero exit status — a half-running platform is worse than
a stopped one.

When started as root, everything but runtimed runs as an unprivileged service
user (``SERVICE_USER``, default ``kubelab``): the web tier never becomes root
(ARCHITECTURE.md).
"""

from __future__ import annotations

import argparse
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
from urllib.parse import urlparse

BASE = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
COLORS = ["36", "35", "32", "33", "34", "31"]


@dataclass
class Child:
    name: str
    argv: list[str]
    ready: str  # how to tell it is up: "socket:<path>", "tcp:<host>:<port>", "none"
    privileged: bool = False
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    buffer: bytes = b""


# runtimed credentials: a child gets one only through its own ``Child.env``
CREDENTIALS = {"RUNTIME_ADMIN_TOKEN", "RUNTIME_ADMIN_TOKEN_FILE", "RUNTIME_TOKEN"}


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


def wait_ready(child: Child, timeout: float) -> bool:
    kind, _, target = child.ready.partition(":")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert child.proc is not None
        if child.proc.poll() is not None:
            return False
        try:
            if kind == "socket":
                with socket.socket(socket.AF_UNIX) as sock:
                    sock.settimeout(1)
                    sock.connect(target)
                return True
            if kind == "tcp":
                host, _, port = target.rpartition(":")
                with socket.create_connection((host.strip("[]"), int(port)), timeout=1):
                    return True
            return True
        except OSError:
            time.sleep(0.1)
    return False


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
    # runtimed's admin credential (runtime/auth.py): for runtimed and the worker, which
    # provisions and grades; never for the web process or beat (SECURITY.md).
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
        Child(
            "worker",
            [
                str(VENV_BIN / "celery"),
                "-A",
                "config",
                "worker",
                "--loglevel",
                "INFO",
                "--concurrency",
                str(settings.CELERY_WORKER_CONCURRENCY),
                "--hostname",
                "worker@%h",
            ],
            ready="none",
            env={"RUNTIME_ADMIN_TOKEN": admin_token},
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

    def pump(child: Child, final: bool = False) -> None:
        assert child.proc is not None and child.proc.stdout is not None
        try:
            data = os.read(child.proc.stdout.fileno(), 65536)
        except BlockingIOError:
            data = b""
        if not data and not final:
            selector.unregister(child.proc.stdout)
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

    def stop_all() -> None:
        for child in reversed(children):
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
            if child.proc.stdout and not child.proc.stdout.closed:
                pump(child, final=True)

    def supervise() -> int:
        nonlocal stopping
        exit_code = 0
        env = {k: v for k, v in os.environ.items() if k not in CREDENTIALS}
        env.update(PYTHONUNBUFFERED="1", FORCE_COLOR="0")
        for child in children:
            if stopping:
                break
            kwargs: dict[str, object] = {}
            if ids and not child.privileged:
                kwargs = {"user": ids[0], "group": ids[1], "extra_groups": []}
                child_env = {**env, "HOME": str(var), **child.env}
            else:
                child_env = {**env, **child.env}
            log(f"starting {child.name}")
            try:
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
            except OSError as exc:
                log(f"\033[31mcannot start {child.name}: {exc}; stopping everything\033[0m")
                return 1
            assert child.proc.stdout is not None
            os.set_blocking(child.proc.stdout.fileno(), False)
            selector.register(child.proc.stdout, selectors.EVENT_READ, child)
            started = time.monotonic()
            ok = True
            while not stopping:
                for key, _ in selector.select(timeout=0.1):
                    pump(key.data)
                if wait_ready(child, timeout=0.05):
                    break
                if child.proc.poll() is not None or time.monotonic() - started > 120:
                    ok = False
                    break
            if not ok:
                for key, _ in selector.select(timeout=0.2):
                    pump(key.data)
                code = child.proc.poll()
                reason = f"exited with status {code}" if code is not None else "did not become ready in 120 s"
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
            for key, _ in selector.select(timeout=0.5):
                pump(key.data)
            for child in children:
                assert child.proc is not None
                if child.proc.poll() is not None:
                    log(f"\033[31m{child.name} exited with status {child.proc.returncode}; stopping everything\033[0m")
                    exit_code = 1
                    stopping = True
                    break

        log("stopping")
        stop_all()
        log("stopped")
        return exit_code

    # Whatever happens in here — a child failing, an exception of our own —
    # nothing this process started is left running.
    try:
        return supervise()
    finally:
        stop_all()


if __name__ == "__main__":
    sys.exit(main())
