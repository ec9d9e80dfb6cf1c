"""``python -m runtime``: the runtime's command line (a client of runtimed, plus ``daemon``).

Every command but ``daemon`` talks to a running daemon over its unix socket,
found through ``--socket``, else ``$RUNTIME_SOCKET``, else
``/run/kubelab/runtimed.sock``.  Exit status: the command's own for ``run``
and ``exec`` (128+N when killed by signal N, 124 on timeout); 2 for a request
the runtime refuses as bad or not available (e.g. an unknown ``--service``); 1
for other errors.  Sizes accept a number of bytes with an optional unit K, M,
G, T (or Ki, Mi, Gi, Ti): all are powers of 1024, as with ``docker run``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import sys
import termios
import threading
import time
import tty
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from runtime import errors
from runtime.auth import read_admin_token
from runtime.client import Client, resolve_socket_path, resolve_token

EXIT_REFUSED = 2
DETACH_KEY = b"\x1d"  # Ctrl-]

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
_UNITS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}


def parse_size(text: str) -> int:
    """``256M`` → 268435456; ``1G``, ``512Ki``, ``1.5G``, ``4096``; K/M/G/T are powers of 1024."""
    m = _SIZE.match(text)
    if not m:
        raise argparse.ArgumentTypeError(
            f"bad size {text!r}: use a number with an optional unit K, M, G or T "
            "(Ki, Mi, Gi, Ti also accepted; all powers of 1024), e.g. 256M or 1G"
        )
    number, unit, suffix = m.groups()
    if suffix.lower() == "i" and not unit:
        raise argparse.ArgumentTypeError(f"bad size {text!r}: 'i' needs a unit before it (Ki, Mi)")
    value = float(number) * 1024 ** _UNITS[unit.lower()]
    if value != int(value):
        raise argparse.ArgumentTypeError(f"bad size {text!r}: not a whole number of bytes")
    return int(value)


def parse_cpus(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad --cpus {text!r}: use a number such as 1 or 0.5") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"bad --cpus {text!r}: must be more than 0")
    return value


def parse_kv(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


# -- parser ----------------------------------------------------------------------------------
def _socket_parent() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(
        "--socket",
        default=argparse.SUPPRESS,
        help="runtimed's socket (default: $RUNTIME_SOCKET or /run/kubelab/runtimed.sock)",
    )
    return p


def _spec_parent() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("sandbox")
    g.add_argument("--image", default="busybox", help="image name (default busybox)")
    g.add_argument("--memory", type=parse_size, default=None, help="memory limit, e.g. 256M")
    g.add_argument("--pids", type=int, default=None, help="process limit, e.g. 512")
    g.add_argument("--cpus", type=parse_cpus, default=None, help="CPU limit, e.g. 1 or 0.5")
    g.add_argument("--disk", type=parse_size, default=None, help="disk quota, e.g. 1G")
    g.add_argument(
        "--service",
        action="append",
        default=[],
        choices=["docker", "kubernetes"],
        help="start a service in the sandbox (repeatable)",
    )
    g.add_argument("--env", "-e", action="append", type=parse_kv, default=[], metavar="K=V")
    g.add_argument("--label", action="append", type=parse_kv, default=[], metavar="K=V")
    g.add_argument("--hostname", default=None)
    g.add_argument("--setup", default=None, metavar="SCRIPT", help="sh -c script run before ready")
    g.add_argument("--allow-outbound", action="append", default=[], metavar="CIDR")
    return p


def spec_from_args(args: argparse.Namespace) -> dict[str, Any]:
    spec: dict[str, Any] = {"image": args.image}
    for key in ("memory", "pids", "cpus", "disk", "hostname", "setup"):
        value = getattr(args, key)
        if value is not None:
            spec[key] = value
    if args.service:
        spec["services"] = list(args.service)
    if args.env:
        spec["env"] = dict(args.env)
    if args.label:
        spec["labels"] = dict(args.label)
    if args.allow_outbound:
        spec["allow_outbound"] = list(args.allow_outbound)
    return spec


def build_parser() -> argparse.ArgumentParser:
    sock = _socket_parent()
    spec = _spec_parent()
    p = argparse.ArgumentParser(
        prog="python -m runtime",
        description="The bundled namespace runtime: sandboxes on runc, PTY sessions, images.",
        parents=[sock],
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    d = sub.add_parser("daemon", help="run runtimed (root)")
    from runtime.daemon import add_daemon_arguments

    add_daemon_arguments(d)

    sub.add_parser("images", parents=[sock], help="list images")
    b = sub.add_parser("build-image", parents=[sock], help="build a base image from its recipe")
    b.add_argument("name")
    b.add_argument(
        "--root",
        type=Path,
        default=None,
        help="build straight into the store of a daemon root DIR, without a running daemon (set-up scripts)",
    )
    b.add_argument(
        "--unpack",
        action="store_true",
        help="with --root: also unpack its layers, as the first sandbox made from it would "
        "(sandbox images: the first class after an install then does not wait for it)",
    )
    img = sub.add_parser("image", help="import, export or remove an image")
    isub = img.add_subparsers(dest="image_command", metavar="ACTION", required=True)
    ii = isub.add_parser("import", parents=[sock], help="import an OCI layout tar")
    ii.add_argument("file")
    ii.add_argument("--name", default=None)
    ie = isub.add_parser("export", parents=[sock], help="export an image as an OCI layout tar")
    ie.add_argument("name")
    ie.add_argument("file")
    ir = isub.add_parser("rm", parents=[sock], help="remove an image")
    ir.add_argument("name")

    r = sub.add_parser(
        "run",
        parents=[sock, spec],
        help="run CMD in a new sandbox, then remove it",
        description="Create a sandbox, run CMD with this terminal (a PTY if stdin is a TTY, "
        "else pipes), print its output, remove the sandbox, exit with CMD's status.",
    )
    r.add_argument("--keep", action="store_true", help="do not remove the sandbox afterwards")
    r.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD")
    c = sub.add_parser("create", parents=[sock, spec], help="create a sandbox, print its id")
    c.add_argument("--json", action="store_true", help="print the whole SandboxInfo")
    e = sub.add_parser("exec", parents=[sock], help="run CMD in a sandbox")
    e.add_argument("-i", "--interactive", action="store_true", help="pass stdin through")
    e.add_argument("-t", "--tty", action="store_true", help="run on a PTY (a session)")
    e.add_argument("--timeout", type=float, default=None, help="kill CMD after SECONDS")
    e.add_argument("id")
    e.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD")
    a = sub.add_parser("attach", parents=[sock], help="attach to a sandbox's shell (Ctrl-] detaches)")
    a.add_argument("id")
    a.add_argument("--session", default=None, help="session id (default: the first live one)")
    a.add_argument("--ro", action="store_true", help="watch only; input is dropped")
    s = sub.add_parser("sessions", parents=[sock], help="list a sandbox's PTY sessions")
    s.add_argument("id")
    ls = sub.add_parser("ls", parents=[sock], help="list sandboxes")
    ls.add_argument("--json", action="store_true")
    st = sub.add_parser("stats", parents=[sock], help="resource usage of a sandbox")
    st.add_argument("id")
    st.add_argument("--json", action="store_true")
    rm = sub.add_parser("rm", parents=[sock], help="remove sandboxes")
    rm.add_argument("ids", nargs="+", metavar="ID")
    sp = sub.add_parser("stop", parents=[sock], help="stop a sandbox (keep its files)")
    sp.add_argument("id")
    pa = sub.add_parser(
        "pause", parents=[sock], help="pause a sandbox: stop every process, keep its disk, containers and cluster"
    )
    pa.add_argument("id")
    re_ = sub.add_parser("resume", parents=[sock], help="start a paused sandbox again")
    re_.add_argument("id")

    na = sub.add_parser(
        "node-agent",
        parents=[sock],
        help="build the sandboxes of the placeholder Pods bound to this node (SANDBOX_BACKEND=kubernetes)",
    )
    from runtime.placement import add_node_agent_arguments, run_node_agent

    add_node_agent_arguments(na)
    na.set_defaults(func=run_node_agent)

    _register_kube(sub)
    return p


def _register_kube(sub: Any) -> None:
    """``runtime kube ...``: the lab cluster's own commands (``runtime.kube.cli``)."""
    from runtime.kube.cli import register

    register(sub)


def _command(args: argparse.Namespace) -> list[str]:
    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise errors.BadRequest("no command given: put it after `--`, e.g. run -- echo hi")
    return cmd


def _exit_status(code: int | None, timed_out: bool = False) -> int:
    if timed_out:
        return 124
    if code is None:
        return 1
    return 128 - code if code < 0 else code


# -- commands --------------------------------------------------------------------------------
def cmd_images(client: Client, args: argparse.Namespace) -> int:
    images = client.images()
    print(f"{'NAME':<20} {'DIGEST':<20} {'SIZE':>10}")
    for i in images:
        digest = str(i.get("digest", ""))[:19]
        print(f"{i.get('name', ''):<20} {digest:<20} {_human(int(i.get('size', 0))):>10}")
    return 0


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n:.1f}TiB"


def cmd_build(client: Client, args: argparse.Namespace) -> int:
    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    if args.root is not None:
        from runtime.images import default_store

        store = default_store(args.root)
        config = store.build(args.name, progress)
        if args.unpack:
            layers = store.layer_dirs(args.name)  # unpacked once, then reused by every sandbox
            progress(f"{args.name}: {len(layers)} layer(s) unpacked")
        print(f"{config.name} {config.digest}")
        return 0
    if args.unpack:
        raise errors.BadRequest("--unpack needs --root (a running daemon unpacks on first use)")
    image = client.build_image(args.name, progress)
    print(f"{image['name']} {image['digest']}")
    return 0


def cmd_image(client: Client, args: argparse.Namespace) -> int:
    if args.image_command == "import":
        image = client.import_image(args.file, args.name)
        print(f"{image['name']} {image['digest']}")
    elif args.image_command == "export":
        client.export_image(args.name, args.file)
    else:
        client.remove_image(args.name)
    return 0


def cmd_create(client: Client, args: argparse.Namespace) -> int:
    info = client.create_sandbox(spec_from_args(args))
    print(json.dumps(info, indent=2) if args.json else info["id"])
    return 0


def cmd_run(client: Client, args: argparse.Namespace) -> int:
    cmd = _command(args)
    info = client.create_sandbox(spec_from_args(args))
    sid = str(info["id"])
    try:
        if sys.stdin.isatty():
            return _run_tty(client, sid, cmd, None)
        return _run_pipe(client, sid, cmd, forward_stdin=True, timeout=None)
    except KeyboardInterrupt:
        return 130
    finally:
        if not args.keep:
            with _ignore_sigint():
                try:
                    client.remove_sandbox(sid)
                except errors.RuntimeError as e:
                    print(f"runtime: could not remove sandbox {sid}: {e}", file=sys.stderr)


@contextlib.contextmanager
def _ignore_sigint() -> Any:
    """Cleanup that a second Ctrl-C must not interrupt."""
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def cmd_exec(client: Client, args: argparse.Namespace) -> int:
    cmd = _command(args)
    if args.tty:
        return _run_tty(client, args.id, cmd, None)
    return _run_pipe(client, args.id, cmd, forward_stdin=args.interactive, timeout=args.timeout)


def cmd_attach(client: Client, args: argparse.Namespace) -> int:
    session_id = args.session
    if session_id is None:
        live = [s for s in client.list_sessions(args.id) if not s["exited"]]
        if live:
            session_id = live[0]["session_id"]
    if not sys.stdin.isatty():
        raise errors.BadRequest("attach needs a terminal on stdin")
    return _run_tty(client, args.id, None, session_id, read_only=args.ro, detach_key=True)


def cmd_sessions(client: Client, args: argparse.Namespace) -> int:
    print(f"{'SESSION':<14} {'STATE':<10} {'ATTACHED':>8}  COMMAND")
    for s in client.list_sessions(args.id):
        state = f"exit {s['exit_code']}" if s["exited"] else "running"
        print(f"{s['session_id']:<14} {state:<10} {s['attached']:>8}  {' '.join(s['argv'])}")
    return 0


def cmd_ls(client: Client, args: argparse.Namespace) -> int:
    boxes = client.list_sandboxes()
    if args.json:
        print(json.dumps(boxes, indent=2))
        return 0
    print(f"{'ID':<16} {'STATUS':<8} {'IMAGE':<14} {'IP':<15} {'IDLE':>7}")
    now = time.time()
    for b in boxes:
        spec = b.get("spec") or {}
        idle = f"{now - float(b.get('last_activity') or now):.0f}s"
        print(f"{b['id']:<16} {b['status']:<8} {spec.get('image', ''):<14} {b.get('ip') or '-':<15} {idle:>7}")
    return 0


def cmd_stats(client: Client, args: argparse.Namespace) -> int:
    stats = client.stats(args.id)
    if args.json:
        print(json.dumps(stats, indent=2))
        return 0
    for key, value in stats.items():
        shown = _human(value) if key.endswith(("_bytes", "_limit")) and "pids" not in key else value
        print(f"{key:<16} {shown}")
    return 0


def cmd_rm(client: Client, args: argparse.Namespace) -> int:
    status = 0
    for sid in args.ids:
        try:
            client.remove_sandbox(sid)
            print(sid)
        except errors.SandboxNotFound as e:
            print(f"runtime: {e}", file=sys.stderr)
            status = 1
    return status


def cmd_stop(client: Client, args: argparse.Namespace) -> int:
    client.stop_sandbox(args.id)
    print(args.id)
    return 0


def cmd_pause(client: Client, args: argparse.Namespace) -> int:
    out = client.pause_sandbox(args.id)
    print(f"{args.id} paused ({out.get('disk_image_bytes', 0)} bytes kept on disk)")
    return 0


def cmd_resume(client: Client, args: argparse.Namespace) -> int:
    client.resume_sandbox(args.id)
    print(f"{args.id} running")
    return 0


# -- terminals -------------------------------------------------------------------------------
def _run_pipe(client: Client, sid: str, cmd: list[str], *, forward_stdin: bool, timeout: float | None) -> int:
    stream = client.exec_stream(sid, cmd, timeout=timeout)

    def feed() -> None:
        try:
            if forward_stdin:
                fd = sys.stdin.fileno()
                while chunk := os.read(fd, 65536):
                    stream.send(chunk)
            stream.close_stdin()
        except Exception:  # noqa: S110 - the process may be gone; the exit event says why
            pass

    threading.Thread(target=feed, daemon=True, name="stdin").start()
    out, err = sys.stdout.buffer, sys.stderr.buffer
    try:
        for tag, data in stream:
            target = out if tag == 1 else err
            target.write(data)
            target.flush()
    finally:
        stream.close()
    return _exit_status(stream.exit_code, stream.timed_out)


def _run_tty(
    client: Client,
    sid: str,
    cmd: list[str] | None,
    session_id: str | None,
    *,
    read_only: bool = False,
    detach_key: bool = False,
) -> int:
    size = os.get_terminal_size(sys.stdout.fileno()) if sys.stdout.isatty() else None
    rows, cols = (size.lines, size.columns) if size else (24, 80)
    created = session_id is None
    if session_id is None:
        env = {"TERM": os.environ.get("TERM", "xterm-256color")}
        session_id = client.create_session(sid, cmd, rows=rows, cols=cols, env=env)["session_id"]
    att = client.attach(sid, session_id, read_only=read_only)
    if size and not read_only and not created:
        att.resize(rows, cols)
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    detached = threading.Event()

    def on_winch(signum: int, frame: FrameType | None) -> None:
        with contextlib.suppress(Exception):
            s = os.get_terminal_size(sys.stdout.fileno())
            att.resize(s.lines, s.columns)

    def feed() -> None:
        try:
            while chunk := os.read(fd, 4096):
                if detach_key and DETACH_KEY in chunk:
                    detached.set()
                    att.close()
                    return
                att.send(chunk)
        except Exception:  # noqa: S110 - the session ended under us
            pass

    old_winch: Callable[[int, FrameType | None], Any] | int | None = None
    tty.setraw(fd, termios.TCSANOW)  # keep what the user typed ahead
    try:
        old_winch = signal.signal(signal.SIGWINCH, on_winch)
        threading.Thread(target=feed, daemon=True, name="stdin").start()
        out = sys.stdout.buffer
        for item in att:
            if isinstance(item, bytes):
                out.write(item)
                out.flush()
            elif item.get("type") == "exit":
                break
            elif item.get("type") == "closing":
                print("\r\nruntime: the daemon is shutting down\r", file=sys.stderr)
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        if old_winch is not None:
            signal.signal(signal.SIGWINCH, old_winch)
        att.close()
    if detached.is_set():
        print(f"runtime: detached from session {session_id} of {sid}", file=sys.stderr)
        return 0
    return _exit_status(att.exit_code)


COMMANDS: dict[str, Callable[[Client, argparse.Namespace], int]] = {
    "images": cmd_images,
    "build-image": cmd_build,
    "image": cmd_image,
    "run": cmd_run,
    "create": cmd_create,
    "exec": cmd_exec,
    "attach": cmd_attach,
    "sessions": cmd_sessions,
    "ls": cmd_ls,
    "stats": cmd_stats,
    "rm": cmd_rm,
    "stop": cmd_stop,
    "pause": cmd_pause,
    "resume": cmd_resume,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "daemon":
        from runtime.daemon import run_daemon

        return run_daemon(args)
    handler = COMMANDS.get(args.command)
    if handler is None:
        func = getattr(args, "func", None)  # commands registered by hooks (runtime.kube.cli)
        if callable(func):
            return int(func(args) or 0)
        parser.error(f"unknown command {args.command}")
    socket_path = resolve_socket_path(getattr(args, "socket", None))
    # the operator's CLI: $RUNTIME_TOKEN, else the admin token runtimed keeps beside its socket
    # (readable by root only: runtime.auth)
    token = resolve_token() or os.environ.get("RUNTIME_ADMIN_TOKEN") or read_admin_token(socket_path)
    client = Client(socket_path, token=token or "")
    try:
        return handler(client, args)
    except (errors.NotAvailable, errors.BadRequest) as e:
        print(f"runtime: {e}", file=sys.stderr)
        return EXIT_REFUSED
    except errors.RuntimeError as e:
        print(f"runtime: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
