"""``Engine``: a sandbox's Docker containers, run by runtimed with runc, nested in the sandbox.

Containers
----------
Each container is a runc container (``runc --root R/runc``) whose bundle is
``R/containers/<id>/`` (``R = ctx.engine_root``, on the sandbox's quota'd disk):
``config.json``, ``upper/`` + ``work/`` (its writable layer), ``rootfs/`` (overlayfs of
the image's layers, the engine's shared ``init`` layer and ``upper``; mounted while it
runs), ``hosts``/``hostname``/``resolv.conf`` (bind-mounted like Docker's), ``binds/``
(staging mounts of bind sources), ``container.log`` and ``state.json``.

Isolation: the container JOINS the sandbox's user namespace (container root = the
sandbox's root = host uid ``uid_base``; runc 1.1 still wants the mapping in the config,
so it gets the sandbox's own) and gets NEW pid, mount, ipc, uts, network and cgroup
namespaces. Its cgroup is ``<sandbox cgroup>/docker-<id12>``: memory, pids and cpu count
against the sandbox's limits (hierarchically); ``-m``, ``--pids-limit``, ``--cpus`` apply
below that and are clamped to the sandbox's. Docker's default capabilities (without
MKNOD), ``noNewPrivileges``, the sandbox's seccomp profile, runc's masked/read-only
paths, no devices, ``/sys`` and the cgroup fs read-only. Requests that would need more
(privileged, cap-add, devices, host namespaces, unconfined profiles, sysctls outside
``net.*``, binds outside the student's ``/root``) are refused with ``Forbidden`` and a
reason. A bind source is resolved in the sandbox's rootfs with ``openat2(RESOLVE_IN_ROOT)``
(fsutil.py), must end up under ``/root``, and that exact object is bind-mounted (through
``/proc/self/fd/N`` in the mount helper) onto a staging dir runc then mounts.

Network: netns.py (docker0 and the user-defined networks' ``br-<id12>`` bridges in the
sandbox's netns, veth per container, one nft table for published ports, masquerade and
isolation between networks). ``runc create`` makes the netns, the engine wires it, ``runc
start``. User-defined networks (``network_create``...) are records of the store
(``store.Network``: name, subnet, gateway), their bridges are made on first use. Names on a
user-defined network resolve through ``/etc/hosts``: every running container of the
network gets the others' addresses (name, ``--network-alias`` aliases, short id) in its
``hosts`` file, which the engine rewrites in place (truncate and write: the bind mount
pins the inode) whenever a container of that network starts, stops, or is connected to
or disconnected from it (``network_connect``: one more ``eth<n>``, no default route).
The default bridge has no names, as in Docker.

Processes and I/O: the engine owns the container's stdio. Without a TTY, stdout and
stderr are pipes; with ``-t``, runc hands over the PTY master (``--console-socket``).
The engine's one watcher thread (watch.py) reads them all, every container's and exec's:
no thread per container or stream. Pumps append every chunk to
``container.log`` as JSON lines ``{"t": unix time, "s": 1|2, "d": text}`` (bytes kept
exactly via ``surrogateescape``) and fan it out to attached streams. ``-i`` keeps a stdin
pipe (or the PTY) that attach writes to.

Surviving a runtimed restart: the read ends of a running container's output pipes (or
its PTY master) are also held by a *holder*, a ``sleep infinity`` started in its own
session with those descriptors (``state.json``: its pid, start time and descriptor
numbers). While runtimed is away the container keeps running and its output waits in the
pipe (it blocks once the pipe is full, never dies of EPIPE); a new Engine takes the
descriptors back with ``pidfd_getfd(2)`` and its pumps go on logging where the old ones
stopped. The holder is killed when the container's exit is processed. The stdin pipe of
``-i`` is not held (holding its write end would keep the container from ever seeing EOF):
after a restart such a container's stdin is at EOF.

Exit: runc's init is re-parented to runtimed (a child subreaper); its pidfd is on the
engine's watcher, which hands the exit to the engine's one exit worker thread: that reaps
it, records ExitCode/FinishedAt, tears down network, mounts and runc state, and honours
``--rm``. Containers re-adopted by a new Engine whose
process is not their parent are watched the same way; their exit code is then unknown
and recorded as 255 with an explanation.

Whose bill: every process the engine starts for the sandbox (runc, ``nsenter`` + ip/nft,
the mount helper, the ``cp`` of a volume copy-up, the holders) starts in the sandbox's
``.engine`` cgroup (``self.place``, runtime/sandbox/cgexec.py), so the sandbox's pids,
memory and cpu limits cover the work its student causes. Objects are counted
(``EngineLimits``: containers, images and tags, volumes, networks): past a count the
request is refused 403 with the limit and what to remove. Bytes are on the sandbox's disk.

State persists in ``state.json`` per container; a new Engine on the same context
re-adopts running containers (their pid, start time and runc state agree) and marks the
others exited.
"""

from __future__ import annotations

import builtins
import collections
import contextlib
import copy
import datetime
import fcntl
import hashlib
import ipaddress
import json
import logging
import os
import queue
import random
import re
import secrets
import select
import shlex
import shutil
import signal as signal_mod
import socket
import struct
import subprocess
import tempfile
import termios
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from runtime import errors
from runtime.dockerapi import (
    ENGINE_VERSION,
    EngineLimits,
    archive,
    changes,
    fsutil,
    health,
    netns,
    quota_message,
)
from runtime.dockerapi.commit import apply_changes
from runtime.dockerapi.events import Events
from runtime.dockerapi.store import (
    EngineStore,
    Forbidden,
    Image,
    Network,
    NotFound,
    now_rfc3339,
    parse_time,
)
from runtime.dockerapi.watch import Timers, Watcher, Worker
from runtime.images.store import ImageStore, safe_rmtree
from runtime.kernel.children import AdoptedPopen as _AdoptedPopen
from runtime.procfs import mounted, mounts_under, proc_start
from runtime.sandbox import bundle
from runtime.sandbox.cgroups import CGROUP_ROOT, Cgroups
from runtime.sandbox.spec import SandboxContext

log = logging.getLogger("runtime.dockerapi")

CAPS = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
]
ZERO_TIME = "0001-01-01T00:00:00Z"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
PORT_RANGE = (32768, 60999)
INIT_FILES = ("etc/hosts", "etc/hostname", "etc/resolv.conf")
INIT_DIRS = ("dev", "proc", "sys", "etc", "dev/pts", "dev/shm", "dev/mqueue")
RUNC_TIMEOUT = 60.0
# Output queued in runtimed for one reader (attach, exec, logs -f) that does not keep up: past
# HIGH the process's output is no longer read (the process blocks on its full pipe, as under
# dockerd), until the reader is down to LOW. runtimed never buffers a fast writer's output
# for a slow or stalled client without bound.
STREAM_HIGH = 4 * 2**20
STREAM_LOW = 2**20
HOLDER = shutil.which("sleep") or "/bin/sleep"  # coreutils: "sleep infinity" holds descriptors
SYS_PIDFD_GETFD = 438
# Above the sandbox's own processes (bundle.py: 500): when a container exhausts the sandbox's
# memory, the kernel kills the container's processes, not the sandbox's shell or its PID 1.
OOM_SCORE_ADJ = 800
# restart policies: dockerd's back-off (restartmanager): 100ms doubling up to a minute, reset by a 10s run
RESTART_FIRST = 0.1
RESTART_MAX = 60.0
RESTART_RESET = 10.0
# what docker update can change here (UpdateConfig: Resources + RestartPolicy); any other set field is refused
UPDATABLE = {"Memory", "MemorySwap", "NanoCpus", "CpuQuota", "CpuPeriod", "CpuShares", "PidsLimit", "RestartPolicy"}


def _cap_name(name: Any) -> str:
    n = str(name).upper()
    return n if n.startswith("CAP_") else "CAP_" + n


def capabilities(hc: dict[str, Any]) -> list[str]:
    """A container's capabilities: the defaults less ``CapDrop`` (``ALL``: every one), plus
    ``CapAdd`` (``_refuse`` lets through only defaults, so an add undoes a drop)."""
    add = {_cap_name(x) for x in hc.get("CapAdd") or []}
    drop = {_cap_name(x) for x in hc.get("CapDrop") or []}
    return [c for c in CAPS if c in add or ("CAP_ALL" not in drop and c not in drop)]


def _groups(rootfs: Path, user: fsutil.ExecUser, hc: dict[str, Any]) -> list[int]:
    """Supplementary groups: the user's, then ``GroupAdd`` (ids, or names in /etc/group)."""
    out = list(user.groups)
    for g in hc.get("GroupAdd") or []:
        gid = int(g) if str(g).isdigit() else fsutil.resolve_user(rootfs, f"0:{g}").gid
        if gid not in out:
            out.append(gid)
    return out


def _replace_or_append_env(defaults: list[str], overrides: list[str]) -> list[str]:
    """dockerd's ``ReplaceOrAppendEnvValues``: ``overrides`` replace defaults of the same
    key or are appended; an entry without ``=`` unsets that key (and is itself dropped)."""
    out = list(defaults)
    index = {e.partition("=")[0]: i for i, e in enumerate(out)}
    for item in overrides:
        key, sep, _ = item.partition("=")
        if not sep:
            if key in index:
                out[index[key]] = ""
            continue
        if key in index and out[index[key]] != "":
            out[index[key]] = item
        else:
            index[key] = len(out)
            out.append(item)
    return [e for e in out if e]


def _merge_env(user: Any, image: Any) -> list[str]:
    """A container's ``Config.Env`` as dockerd's ``merge`` makes it: the request's entries as
    given (an entry without ``=`` is kept: it unsets that variable in the process), then the
    image's entries whose key the request does not name."""
    if user is not None and not isinstance(user, list):
        raise errors.BadRequest("Env must be a list of strings")
    given = [str(x) for x in user or []]
    keys = {e.partition("=")[0] for e in given}
    return given + [str(e) for e in image or [] if str(e).partition("=")[0] not in keys]


def _restart_policy(p: Any) -> dict[str, Any]:
    """HostConfig.RestartPolicy checked as dockerd checks it (its messages, 400)."""
    if p is None:
        p = {}
    if not isinstance(p, dict):
        raise errors.BadRequest("RestartPolicy must be a JSON object")
    name = str(p.get("Name") or "")
    count = p.get("MaximumRetryCount") or 0
    if not isinstance(count, int):
        raise errors.BadRequest("RestartPolicy.MaximumRetryCount must be an integer")
    if name in ("always", "unless-stopped", "no") and count != 0:
        raise errors.BadRequest(f"maximum retry count cannot be used with restart policy '{name}'")
    if name == "on-failure" and count < 0:
        raise errors.BadRequest("maximum retry count cannot be negative")
    if name not in ("", "no", "always", "unless-stopped", "on-failure"):
        raise errors.BadRequest(f"invalid restart policy '{name}'")
    return {"Name": name, "MaximumRetryCount": count}


# dockerd's log drivers: json-file is this engine's; the others are refused with the reason
LOG_DRIVERS = (
    "json-file",
    "local",
    "none",
    "syslog",
    "journald",
    "gelf",
    "fluentd",
    "awslogs",
    "splunk",
    "etwlogs",
    "gcplogs",
    "logentries",
)


def _log_config(lc: Any) -> dict[str, Any]:
    if lc is None:
        lc = {}
    if not isinstance(lc, dict):
        raise errors.BadRequest("LogConfig must be a JSON object")
    kind = str(lc.get("Type") or "json-file")
    opts = lc.get("Config") or {}
    if kind not in LOG_DRIVERS:
        raise errors.BadRequest(f"logger: no log driver named '{kind}' is registered")
    if kind != "json-file":
        raise Forbidden(
            f"log driver {kind} is not available in this lab: containers log with json-file, which docker logs "
            "reads (the log lives on your sandbox's disk)"
        )
    if opts:
        raise Forbidden(
            f"log options ({', '.join(sorted(str(k) for k in opts))}) are not available in this lab: a container's "
            "json-file log is kept whole (it lives on your sandbox's disk, within its quota) and never rotated"
        )
    return {"Type": "json-file", "Config": {}}


def parse_extra_hosts(hosts: Any) -> list[str] | None:
    """HostConfig.ExtraHosts (``--add-host name:ip``), checked as dockerd does; ``host-gateway``
    is the default bridge's gateway (the sandbox, as seen from its containers)."""
    if not hosts:
        return None
    if not isinstance(hosts, list):
        raise errors.BadRequest("ExtraHosts must be a list of strings")
    out = []
    for item in hosts:
        name, sep, ip = str(item).partition(":")
        if not sep or not name:
            raise errors.BadRequest(f"bad format for add-host: {item!r}")
        if ip != "host-gateway":
            try:
                ipaddress.ip_address(ip.strip("[]"))
            except ValueError:
                raise errors.BadRequest(f"invalid IP address in add-host: {ip!r}") from None
        out.append(f"{name}:{ip}")
    return out


def _mac(mac: str) -> str:
    if not re.fullmatch(r"([0-9a-fA-F]{2}[:-]){5}[0-9a-fA-F]{2}", mac):
        raise errors.BadRequest(f"invalid MAC address: {mac}")
    mac = mac.replace("-", ":").lower()
    if int(mac[:2], 16) & 1:
        raise errors.BadRequest(f"invalid MAC address: {mac} is a multicast address")
    return mac


PRIVILEGED_REASON = (
    "--privileged is not available in this lab: your containers run inside your sandbox's "
    "user namespace and cannot get host privileges"
)
SIGNALS = {s.name: int(s) for s in signal_mod.Signals}

BRIDGE_ID = hashlib.sha256(b"kubelab-docker-bridge").hexdigest()
# the predefined networks: name -> (driver, id); only bridge (and none) can be used
BUILTIN_NETWORKS = {
    "bridge": ("bridge", BRIDGE_ID),
    "host": ("host", hashlib.sha256(b"kubelab-docker-host").hexdigest()),
    "none": ("null", hashlib.sha256(b"kubelab-docker-none").hexdigest()),
}
BRIDGE_OPTIONS = {
    "com.docker.network.bridge.default_bridge": "true",
    "com.docker.network.bridge.enable_icc": "true",
    "com.docker.network.bridge.enable_ip_masquerade": "true",
    "com.docker.network.bridge.name": netns.BRIDGE,
    "com.docker.network.driver.mtu": "1500",
}

_ADJ = ["admiring", "brave", "clever", "eager", "focused", "gentle", "happy", "jolly", "keen", "lucid"]
_NAMES = ["turing", "hopper", "lovelace", "ritchie", "thompson", "torvalds", "knuth", "dijkstra", "liskov", "hamilton"]


def _ts(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _ago(t: float) -> str:
    d = max(0.0, time.time() - t)
    if d < 1:
        return "Less than a second"
    if d < 60:
        return f"{int(d)} seconds"
    if d < 3600:
        n = int(d // 60)
        return "About a minute" if n == 1 else f"{n} minutes"
    if d < 86400:
        n = int(d // 3600)
        return "About an hour" if n == 1 else f"{n} hours"
    return f"{int(d // 86400)} days"


def _lines(records: Iterator[tuple[float, int, bytes]]) -> Iterator[tuple[float, int, bytes]]:
    """The log's chunks as lines, per stream, as dockerd's json-file log keeps them: a line
    split across chunks is one record (with the time its end was read); ``--tail N`` and
    ``-t`` then count and stamp lines."""
    partial: dict[int, tuple[float, bytes]] = {}
    for t, stream, data in records:
        head = partial.pop(stream, (t, b""))[1]
        *complete, rest = (head + data).split(b"\n")
        for line in complete:
            yield t, stream, line + b"\n"
        if rest:
            partial[stream] = (t, rest)
    for stream, (t, rest) in partial.items():
        yield t, stream, rest


def _pidfd_getfd(pidfd: int, targetfd: int) -> int:
    """A duplicate of descriptor ``targetfd`` of the process ``pidfd`` refers to (close-on-exec)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    fd = int(libc.syscall(SYS_PIDFD_GETFD, pidfd, targetfd, 0))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"pidfd_getfd: {os.strerror(err)}")
    return fd


def _write_file(path: Path, text: str, uid: int, mode: int = 0o644) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
        os.fchown(fh.fileno(), uid, uid)
        os.fchmod(fh.fileno(), mode)


def _signal_number(sig: str | int) -> int:
    if isinstance(sig, int):
        return sig
    s = sig.strip().upper()
    if s.isdigit():
        return int(s)
    if not s.startswith("SIG"):
        s = "SIG" + s
    if s not in SIGNALS:
        raise errors.BadRequest(f"Invalid signal: {sig}")
    return SIGNALS[s]


# -- streams -----------------------------------------------------------------------------------


class Stream:
    """An attached or exec'd process's I/O (see engine-interface.md).

    ``read`` returns ``(1|2, data)``, ``None`` at the end of the output, and raises
    ``TimeoutError`` when ``timeout`` passes with nothing to read. ``over()``: more than
    ``STREAM_HIGH`` bytes wait for the reader; ``when_drained(fn)`` runs ``fn`` once they
    are down to ``STREAM_LOW`` (or the stream ends or closes): the producer's resume.
    """

    def __init__(
        self,
        *,
        tty: bool,
        write: Callable[[bytes], None] | None = None,
        close_stdin: Callable[[], None] | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.tty = tty
        self._q: queue.Queue[tuple[int, bytes] | None] = queue.Queue()
        self._write = write
        self._close_stdin = close_stdin
        self._on_close = on_close
        self._ended = False
        self._closed = False
        self._qlock = threading.Lock()
        self._queued = 0  # bytes pushed and not read yet
        self._drained: list[Callable[[], None]] = []

    def push(self, item: tuple[int, bytes] | None) -> None:
        if item is not None:
            with self._qlock:
                self._queued += len(item[1])
        self._q.put(item)

    def read(self, timeout: float | None = None) -> tuple[int, bytes] | None:
        if self._ended:
            return None
        try:
            item = self._q.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError("no output yet") from None
        if item is None:
            self._ended = True
            self.release()
            return None
        with self._qlock:
            self._queued -= len(item[1])
            low = self._queued <= STREAM_LOW
        if low and self._drained:
            self.release()
        return item

    def over(self) -> bool:
        return self._queued > STREAM_HIGH and not self._closed

    def when_drained(self, fn: Callable[[], None]) -> None:
        with self._qlock:
            if self._queued > STREAM_LOW and not (self._closed or self._ended):
                self._drained.append(fn)
                return
        fn()

    def wait_room(self, timeout: float) -> None:
        """Block (a reader's own thread, never the watcher) while ``over()``, at most ``timeout``."""
        if self.over():
            room = threading.Event()
            self.when_drained(room.set)
            room.wait(timeout)

    def release(self) -> None:
        """Run the ``when_drained`` callbacks now (drained, ended, closed or unsubscribed)."""
        with self._qlock:
            fns, self._drained = self._drained, []
        for fn in fns:
            fn()

    def write(self, data: bytes) -> None:
        if self._write is not None and data and not self._closed:
            self._write(data)

    def close_stdin(self) -> None:
        if self._close_stdin is not None:
            fn, self._close_stdin = self._close_stdin, None
            fn()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.release()
        if self._on_close is not None:
            self._on_close()

    def fileno_hint(self) -> int | None:
        return None


class _Output:
    """A container's output: appended to its JSON-lines log and fanned out to subscribers."""

    def __init__(self, logfile: Path) -> None:
        self.logfile = logfile
        self.lock = threading.Lock()
        self.subscribers: list[Stream] = []
        self.listeners: list[Callable[[int, bytes], None]] = []
        self.ended = True
        self._fh: IO[str] | None = None  # the log, open for appending while a run lasts

    def begin(self) -> None:
        with self.lock:
            self.ended = False

    def write(self, stream: int, data: bytes) -> None:
        rec = {"t": time.time(), "s": stream, "d": data.decode("utf-8", "surrogateescape")}
        line = json.dumps(rec) + "\n"
        with self.lock:
            if self._fh is None:
                self._fh = open(self.logfile, "a")  # noqa: SIM115 - closed by end()
            self._fh.write(line)
            self._fh.flush()  # readers (logs, attach with logs) read the file itself
            for s in self.subscribers:
                s.push((stream, data))
            listeners = list(self.listeners)
        for fn in listeners:
            fn(stream, data)

    def end(self) -> None:
        with self.lock:
            self.ended = True
            subs, self.subscribers = self.subscribers, []
            if self._fh is not None:
                self._fh.close()
                self._fh = None
        for s in subs:
            s.push(None)

    def subscribe(self, s: Stream) -> tuple[int, bool]:
        """Register ``s`` for output until the current run ends (or, if none is running, the
        next one: attach-then-start); return the log's size then and whether it was idle."""
        with self.lock:
            size = self.logfile.stat().st_size if self.logfile.exists() else 0
            self.subscribers.append(s)
            return size, self.ended

    def unsubscribe(self, s: Stream) -> None:
        with self.lock:
            if s in self.subscribers:
                self.subscribers.remove(s)
        s.release()  # a producer paused for it goes on

    def full(self) -> list[Stream]:
        """Subscribers with more than ``STREAM_HIGH`` bytes waiting (see ``Engine._pump``)."""
        with self.lock:
            return [s for s in self.subscribers if s.over()]

    def records(self, upto: int | None = None) -> Iterator[tuple[float, int, bytes]]:
        try:
            fh = open(self.logfile, "rb")  # noqa: SIM115 - closed below, iterated lazily
        except FileNotFoundError:
            return
        with fh:
            pos = 0
            for raw in fh:
                pos += len(raw)
                if upto is not None and pos > upto:
                    break
                try:
                    rec = json.loads(raw)
                except ValueError:
                    continue
                yield float(rec["t"]), int(rec["s"]), str(rec["d"]).encode("utf-8", "surrogateescape")


# -- container record -------------------------------------------------------------------------


@dataclass
class _Container:
    id: str
    name: str
    created: float
    image: str  # image id
    image_ref: str  # as the user gave it
    config: dict[str, Any]  # Docker's Config (merged with the image's)
    host_config: dict[str, Any]
    path: str
    args: list[str]
    status: str = "created"  # created | running | exited | dead | removing
    pid: int = 0
    pid_start: int = 0
    exit_code: int = 0
    error: str = ""
    oom_killed: bool = False
    started_at: str = ZERO_TIME
    finished_at: str = ZERO_TIME
    restart_count: int = 0
    ip: str = ""
    ip_index: int = -1  # allocation index within its network's subnet (netns.address)
    network_id: str = ""  # a user-defined network's id; "" = the default bridge (or none)
    aliases: list[str] = field(default_factory=list)  # --network-alias
    # networks added by `docker network connect`: network id -> {"if": n (eth<n>), "aliases",
    # "ip_index", "ip"} (ip_index/ip while it runs)
    extra_networks: dict[str, dict[str, Any]] = field(default_factory=dict)
    ports: dict[str, list[dict[str, str]] | None] = field(default_factory=dict)
    mounts: list[dict[str, Any]] = field(default_factory=list)
    holder: int = 0  # pid of the process holding the output descriptors (see the docstring)
    holder_start: int = 0
    holder_fds: dict[str, int] = field(default_factory=dict)  # "out"/"err"/"pty" -> its fd number there
    paused: bool = False  # frozen (docker pause): status stays "running", as dockerd's Running stays true
    # stopped by docker stop/kill (dockerd's HasBeenManuallyStopped): unless-stopped does not restart it
    manually_stopped: bool = False
    health: dict[str, Any] | None = None  # State.Health (health.Health.to_json) once a health check ran
    endpoint: dict[str, Any] = field(default_factory=dict)  # the EndpointConfig given for its network
    # runtime only
    restart_timer: int | None = None  # the pending restart of its restart policy (Timers handle)
    restart_delay: float = 0.0  # dockerd's back-off: 0.1s doubling to 60s, reset after a 10s run
    probe_timer: int | None = None  # the next health probe (Timers handle)
    probe_gen: int = 0  # bumped at each start/stop: a probe of an older run records nothing
    hand_restart: bool = False  # docker restart in progress: its stop does not --rm it (as dockerd)
    out: _Output | None = None
    stdin_fd: int | None = None
    pty: int | None = None
    pumps: list[threading.Event] = field(default_factory=list)  # set when each output stream ended
    exit_done: threading.Event | None = None  # set when this run's exit has been processed
    stopping: bool = False
    exits: int = 0  # exits processed by this Engine: what wait(next-exit) counts

    PERSISTED = [
        "id",
        "name",
        "created",
        "image",
        "image_ref",
        "config",
        "host_config",
        "path",
        "args",
        "status",
        "pid",
        "pid_start",
        "exit_code",
        "error",
        "oom_killed",
        "started_at",
        "finished_at",
        "restart_count",
        "ip",
        "ip_index",
        "network_id",
        "aliases",
        "extra_networks",
        "ports",
        "mounts",
        "holder",
        "holder_start",
        "holder_fds",
        "paused",
        "manually_stopped",
        "health",
        "endpoint",
    ]

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.PERSISTED}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> _Container:
        return cls(**{k: d[k] for k in cls.PERSISTED if k in d})

    @property
    def tty(self) -> bool:
        return bool(self.config.get("Tty"))

    @property
    def running(self) -> bool:
        return self.status == "running"


@dataclass
class _Exec:
    id: str
    cid: str
    config: dict[str, Any]
    running: bool = False
    exit_code: int | None = None
    pid: int = 0
    pty: int | None = None
    stdin_fd: int | None = None
    done: threading.Event = field(default_factory=threading.Event)
    when_done: list[Callable[[], None]] = field(default_factory=list)  # run once done is set


# -- the engine --------------------------------------------------------------------------------


class Engine:
    """A sandbox's Docker engine: containers, exec, volumes; see the module docstring."""

    def __init__(self, ctx: SandboxContext, catalog_store: ImageStore, *, limits: EngineLimits | None = None) -> None:
        self.ctx = ctx
        self.limits = limits or EngineLimits()
        self.store = EngineStore(ctx, catalog_store, limits=self.limits)
        self.place = self.store.place  # helpers (runc, nsenter, mount helper...) run in the sandbox's cgroup
        self.root = ctx.engine_root
        self.containers_dir = self.root / "containers"
        self.volumes_dir = self.root / "volumes"
        self.runc_root = self.root / "runc"
        for d in (self.containers_dir, self.volumes_dir):
            d.mkdir(exist_ok=True, mode=0o711)
        self.runc_root.mkdir(exist_ok=True, mode=0o700)
        self._lock = threading.RLock()
        self._rootfs_lock = threading.Lock()  # mounting a stopped container's root (cp, export)
        self._cond = threading.Condition(self._lock)
        # Serialises network changes (docker0, the DNAT table): taken before _lock, never
        # while holding it, so the engine's state lock is never held across nft/ip runs.
        self._net_lock = threading.RLock()
        self._containers: dict[str, _Container] = {}
        self._execs: dict[str, _Exec] = {}
        self._closed = False
        self._closing = False  # close() has begun: no restart policy or health probe starts anything
        self._detached = threading.Event()  # runtimed is shutting down: pumps let go (detach)
        self._net_ready = False
        self._ready_bridges: set[str] = set()  # bridges this Engine has made sure of
        # (port rules, bridges) last written to the table; None: not applied by this Engine yet
        self._applied_rules: tuple[list[netns.PortRule], list[netns.Bridge]] | None = None
        self.store.set_in_use(self._images_in_use)
        self._init_layer = self._make_init_layer()
        self._cgroups = Cgroups(self.ctx.cgroup_path)  # this host's layout (v1 mounts or v2)
        # every output stream and process exit of this engine: two threads however many (watch.py)
        self._watcher = Watcher(f"engine-io-{ctx.sid[:12]}")
        self._worker = Worker(f"engine-exit-{ctx.sid[:12]}")
        # restart back-offs and health-check intervals: one timer thread, and one more worker
        # for what they start (restarts, probe launches), so an exit is never queued behind them
        self._timers = Timers(f"engine-timers-{ctx.sid[:12]}")
        self._jobs = Worker(f"engine-jobs-{ctx.sid[:12]}")
        self._probes_running = 0
        self._probes_waiting: collections.deque[tuple[_Container, int]] = collections.deque()
        self.events = Events()  # docker events (events.py)
        # called as fn(action, container id, labels) after a container's exit ("die") and its
        # removal ("destroy"), as Docker's events name them; on the thread that saw it, so a
        # listener must not block (the lab cluster's kubelet sets an Event: kube/node/kubelet.py)
        self.listeners: builtins.list[Callable[[str, str, dict[str, str]], None]] = []
        for d in sorted(self.containers_dir.iterdir()):
            try:
                c = _Container.from_json(json.loads((d / "state.json").read_text()))
            except (OSError, ValueError, TypeError, KeyError):
                continue
            c.out = _Output(d / "container.log")
            self._containers[c.id] = c
        for c in list(self._containers.values()):
            self._readopt(c)
        for c in list(self._containers.values()):
            if c.running:
                self._schedule_probe(c)
            elif c.status in ("exited", "restarting") and self._daemon_start_restarts(c):
                # dockerd restarts these when it starts (daemon.restore): after runtimed's restart
                c.status = "restarting"
                self._save(c)
                c.restart_timer = self._restart_after(c, 0)

    # -- small helpers -----------------------------------------------------------------------------

    def _dir(self, cid: str) -> Path:
        return self.containers_dir / cid

    def _save(self, c: _Container) -> None:
        d = self._dir(c.id)
        tmp = d / f".state.{secrets.token_hex(4)}"
        try:
            tmp.write_text(json.dumps(c.to_json()))
            tmp.replace(d / "state.json")
        except FileNotFoundError:  # removed meanwhile (by another Engine on the same sandbox)
            return

    def _runc(
        self, *args: str, timeout: float = RUNC_TIMEOUT, check: bool = True
    ) -> subprocess.CompletedProcess[bytes]:
        return self.place.run([self.ctx.runc, "--root", str(self.runc_root), *args], timeout=timeout, check=check)

    def _runc_exists(self, cid: str) -> bool:
        return (self.runc_root / cid).exists()

    def _get(self, ref: str) -> _Container:
        with self._lock:
            c = self._containers.get(self.resolve(ref))
        if c is None:
            raise NotFound(f"No such container: {ref}")
        return c

    def _cgroup_file(self, c: _Container, controller: str, name: str) -> Path:
        """A file of the container's cgroup (``<sandbox cgroup>/docker-<id12>``)."""
        rel = self.ctx.cgroup_path.lstrip("/") + f"/docker-{c.id[:12]}"
        base = CGROUP_ROOT if self._cgroups.v2 else self._cgroups.v1.get(controller, CGROUP_ROOT / controller)
        return base / rel / name

    def _images_in_use(self) -> set[str]:
        with self._lock:
            return {c.image for c in self._containers.values()}

    def _make_init_layer(self) -> Path:
        """Docker's "-init" layer: empty mount points below every container's upper dir, so
        runc never creates them in the writable layer (and `docker commit`/builds never
        capture them)."""
        path = self.root / "init-layer"
        if path.is_dir():
            return path
        tmp = self.root / f".init-layer-{secrets.token_hex(4)}"
        tmp.mkdir(mode=0o755)
        uid = self.ctx.uid_base
        for rel in INIT_DIRS:
            (tmp / rel).mkdir(mode=0o755, exist_ok=True)
            os.chown(tmp / rel, uid, uid)
        for rel in INIT_FILES:
            _write_file(tmp / rel, "", uid)
        os.chown(tmp, uid, uid)
        tmp.rename(path)
        return path

    def _init_layer_lower(self) -> Any:
        from runtime.dockerapi.store import Layer

        return Layer("sha256:" + "0" * 64, self._init_layer, 0, catalog=False)

    # -- re-adoption ------------------------------------------------------------------------------

    def _readopt(self, c: _Container) -> None:
        if c.status in ("running", "removing") and c.pid and proc_start(c.pid) == c.pid_start and c.pid_start:
            c.status = "running"
            if self._take_back_output(c):
                log.info("container %s re-adopted (pid %d), its output collected again", c.id[:12], c.pid)
            else:
                log.warning("container %s re-adopted (pid %d); its output is no longer collected", c.id[:12], c.pid)
            self._watch_exit(c)
            return
        self._release_holder(c)
        if c.status == "restarting":  # waiting out its back-off when runtimed stopped: it had exited
            c.status = "exited"
            self._save(c)
            return
        if c.status not in ("created", "exited", "dead"):  # running, or caught mid-start/removal
            c.status = "exited"
            c.exit_code = 255 if c.exit_code == 0 else c.exit_code
            c.error = c.error or "the container's process ended while the engine was not running"
            c.finished_at = c.finished_at if c.finished_at != ZERO_TIME else now_rfc3339()
            self._teardown(c)
            self._save(c)

    def _hold(self, c: _Container, fds: dict[str, int | None]) -> None:
        """Start the holder of a container's output descriptors (see the module docstring)."""
        keep = {role: fd for role, fd in fds.items() if fd is not None}
        proc = self.place.popen(
            [HOLDER, "infinity"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=tuple(keep.values()),
            close_fds=True,
            start_new_session=True,
        )
        c.holder, c.holder_start, c.holder_fds = proc.pid, proc_start(proc.pid) or 0, keep
        proc.returncode = 0  # reaped by pid in _release_holder; keep Popen's destructor quiet

    def _holder_alive(self, c: _Container) -> bool:
        return bool(c.holder) and bool(c.holder_start) and proc_start(c.holder) == c.holder_start

    def _release_holder(self, c: _Container) -> None:
        if self._holder_alive(c):
            with contextlib.suppress(ProcessLookupError):
                os.kill(c.holder, signal_mod.SIGKILL)
            with contextlib.suppress(ChildProcessError):  # not ours after a restart: init reaps it
                os.waitpid(c.holder, 0)
        c.holder, c.holder_start, c.holder_fds = 0, 0, {}

    def _take_back_output(self, c: _Container) -> bool:
        """After a restart: the output descriptors from the container's holder, pumped again."""
        if not self._holder_alive(c) or not c.holder_fds:
            return False
        got: dict[str, int] = {}
        try:
            pidfd = os.pidfd_open(c.holder)
            try:
                for role, num in c.holder_fds.items():
                    got[role] = _pidfd_getfd(pidfd, num)
            finally:
                os.close(pidfd)
        except OSError as exc:
            for fd in got.values():
                os.close(fd)
            log.warning("container %s: cannot take its output back from holder %d: %s", c.id[:12], c.holder, exc)
            return False
        c.out = c.out or _Output(self._dir(c.id) / "container.log")
        c.out.begin()
        if "pty" in got:
            c.pty = got["pty"]
            c.pumps = [self._pump(c.out, got["pty"], 1)]
        else:
            c.pumps = [self._pump(c.out, got[role], n) for role, n in (("out", 1), ("err", 2))]
        return True

    # -- create -----------------------------------------------------------------------------------

    def _refuse(self, body: dict[str, Any]) -> None:
        hc = body.get("HostConfig") or {}
        if hc.get("Privileged"):
            raise Forbidden(PRIVILEGED_REASON)
        beyond = [str(x) for x in hc.get("CapAdd") or [] if _cap_name(x) not in CAPS]
        if beyond:
            raise Forbidden(
                f"--cap-add {', '.join(beyond)} is not available in this lab: your containers run "
                "inside your sandbox's user namespace with Docker's default capabilities only"
            )
        if hc.get("Devices") or hc.get("DeviceRequests") or hc.get("DeviceCgroupRules"):
            raise Forbidden("--device/--gpus are not available in this lab: containers get no host devices")
        for key, flag in (("PidMode", "--pid"), ("IpcMode", "--ipc"), ("UTSMode", "--uts"), ("UsernsMode", "--userns")):
            mode = str(hc.get(key) or "")
            if key == "IpcMode" and mode in ("", "private", "shareable", "none"):
                continue
            if mode and mode != "private":
                raise Forbidden(
                    f"{flag}={mode} is not available in this lab: each container gets its own namespace "
                    "inside your sandbox, never the host's or another container's"
                )
        net = str(hc.get("NetworkMode") or "default")
        if net == "host" or net.startswith("container:"):
            raise Forbidden(
                f"--network={net} is not available in this lab: containers use the default bridge "
                "(docker0 inside your sandbox), a network you create (docker network create) or none"
            )
        if str(hc.get("CgroupnsMode") or "private") != "private":
            raise Forbidden("--cgroupns=host is not available in this lab: containers get their own cgroup namespace")
        for opt in hc.get("SecurityOpt") or []:
            o = str(opt).replace("=", ":", 1)
            if o in ("seccomp:unconfined", "apparmor:unconfined", "label:disable", "systempaths:unconfined"):
                raise Forbidden(
                    f"--security-opt {opt} is not available in this lab: the seccomp profile and masked "
                    "paths protect the host your sandbox shares"
                )
            if o.startswith("seccomp:"):
                raise Forbidden(f"--security-opt {opt}: custom seccomp profiles are not available in this lab")
        for key in hc.get("Sysctls") or {}:
            if not str(key).startswith("net."):
                raise Forbidden(
                    f"--sysctl {key} is not available in this lab: only net.* sysctls (which belong to "
                    "the container's own network namespace) can be set"
                )
        if hc.get("Runtime") not in (None, "", "runc"):
            raise Forbidden(f"--runtime {hc['Runtime']} is not available in this lab")

    def _parse_mounts(self, body: dict[str, Any], image: Image) -> list[dict[str, Any]]:
        """Binds, Mounts, Tmpfs and image VOLUMEs -> [{Type, Source, Destination, RW, Name?}]."""
        hc = body.get("HostConfig") or {}
        out: list[dict[str, Any]] = []

        def add(kind: str, source: str, dest: str, rw: bool, name: str = "", options: str = "") -> None:
            if not dest.startswith("/"):
                raise errors.BadRequest(f"invalid mount config: mount path must be absolute: {dest}")
            dest = os.path.normpath(dest)
            if dest == "/":
                raise errors.BadRequest("invalid mount config: destination can't be '/'")
            if any(m["Destination"] == dest for m in out):
                raise errors.BadRequest(f"Duplicate mount point: {dest}")
            out.append(
                {"Type": kind, "Source": source, "Destination": dest, "RW": rw, "Name": name, "Options": options}
            )

        for spec in hc.get("Binds") or []:
            parts = str(spec).split(":")
            if len(parts) < 2 or len(parts) > 3:
                raise errors.BadRequest(f"invalid volume specification: '{spec}'")
            src, dst = parts[0], parts[1]
            opts = parts[2].split(",") if len(parts) == 3 else []
            rw = "ro" not in opts
            if src.startswith("/"):
                self._check_bind_source(src)
                add("bind", src, dst, rw)
            else:
                add("volume", self._volume_path(self._ensure_volume(src)), dst, rw, name=src)
        for m in hc.get("Mounts") or []:
            kind = m.get("Type") or "volume"
            target = str(m.get("Target") or "")
            rw = not m.get("ReadOnly")
            if kind == "bind":
                src = str(m.get("Source") or "")
                self._check_bind_source(src)
                add("bind", src, target, rw)
            elif kind == "volume":
                name = str(m.get("Source") or "") or secrets.token_hex(32)
                add(
                    "volume",
                    self._volume_path(self._ensure_volume(name, anonymous=not m.get("Source"))),
                    target,
                    rw,
                    name,
                )
            elif kind == "tmpfs":
                size = (m.get("TmpfsOptions") or {}).get("SizeBytes")
                add("tmpfs", "", target, rw, options=f"size={int(size)}" if size else "")
            else:
                raise errors.BadRequest(f"mount type {kind!r} is not supported (bind, volume and tmpfs are)")
        for dest, opts in (hc.get("Tmpfs") or {}).items():
            add("tmpfs", "", dest, True, options=str(opts or ""))
        # the image's VOLUMEs and the request's own Config.Volumes (docker run -v /data): anonymous
        wanted = [*((image.config.get("config") or {}).get("Volumes") or {}), *(body.get("Volumes") or {})]
        for dest in wanted:
            if not any(m["Destination"] == os.path.normpath(dest) for m in out):
                name = secrets.token_hex(32)
                add("volume", self._volume_path(self._ensure_volume(name, anonymous=True)), dest, True, name)
        return out

    def _check_bind_source(self, src: str) -> None:
        fd = self._open_bind_source(src)
        os.close(fd)

    def _open_bind_source(self, src: str) -> int:
        """O_PATH fd of a bind source inside the sandbox's /root (never following a symlink
        out of the sandbox's rootfs, and refusing one that leads outside /root)."""
        if not src.startswith("/"):
            raise errors.BadRequest(f"invalid mount config: bind source path must be absolute: {src}")
        norm = os.path.normpath(src)
        outside = (
            f"bind mounts of {src} are not available in this lab: only paths inside /root "
            "(your workspace in the sandbox) can be mounted into containers"
        )
        if norm != "/root" and not norm.startswith("/root/"):
            raise Forbidden(outside)
        rootfs = self.ctx.dir / "rootfs"
        try:
            fd = fsutil.open_in_root(rootfs, norm)
        except FileNotFoundError:
            raise errors.BadRequest(
                f'invalid mount config for type "bind": bind source path does not exist: {src}'
            ) from None
        except OSError as exc:
            raise errors.BadRequest(f"bind source {src}: {exc.strerror}") from None
        real = fsutil.fd_path(fd)
        home = str(rootfs) + "/root"
        if real != home and not real.startswith(home + "/"):
            os.close(fd)
            raise Forbidden(outside + f" ({src} leads to {real[len(str(rootfs)) :] or '/'})")
        return fd

    def create(self, body: dict[str, Any], *, name: str | None = None, internal: bool = False) -> tuple[str, list[str]]:
        """``internal``: a request of the platform itself (the lab cluster's kubelet), which
        may use ``NetworkMode: "container:<id>"`` (a pod's containers join its infra
        container's network namespace); students' requests are refused that."""
        if not isinstance(body, dict):
            raise errors.BadRequest("the request body must be a JSON object")
        joined = internal and str((body.get("HostConfig") or {}).get("NetworkMode") or "").startswith("container:")
        self._refuse(
            {**body, "HostConfig": {**(body.get("HostConfig") or {}), "NetworkMode": "none"}} if joined else body
        )
        ref = str(body.get("Image") or "")
        if not ref:
            raise errors.BadRequest("No image specified: give an image name, e.g. busybox")
        image = self.store.resolve(ref)
        warnings: list[str] = []
        img_cfg = copy.deepcopy(image.config.get("config") or {})
        hc = copy.deepcopy(body.get("HostConfig") or {})
        hc.setdefault("NetworkMode", "default")
        if joined:
            hc["NetworkMode"] = "container:" + self._get(str(hc["NetworkMode"]).partition(":")[2]).id
        network_id, aliases = self._endpoint_config(body, "none" if joined else str(hc["NetworkMode"]))
        # Entrypoint / Cmd, as Docker combines them
        ep = body.get("Entrypoint")
        cmd = body.get("Cmd")
        if isinstance(ep, str):
            ep = [ep]
        if isinstance(cmd, str):
            cmd = shlex.split(cmd)
        if ep is None:
            ep = img_cfg.get("Entrypoint") or []
            if cmd is None:
                cmd = img_cfg.get("Cmd") or []
        else:
            if ep == [""]:
                ep = []
            if cmd is None:
                cmd = []
        argv = list(ep or []) + list(cmd or [])
        if not argv:
            raise errors.BadRequest("No command specified")
        env = _merge_env(body.get("Env"), img_cfg.get("Env"))
        hostname = str(body.get("Hostname") or "")
        labels = {**(img_cfg.get("Labels") or {}), **(body.get("Labels") or {})}
        exposed = {**(img_cfg.get("ExposedPorts") or {}), **(body.get("ExposedPorts") or {})}
        netns.check_port_bindings(hc.get("PortBindings"))  # they become nft rules run as root
        for port in hc.get("PortBindings") or {}:
            exposed.setdefault(port if "/" in port else f"{port}/tcp", {})
        memory = int(hc.get("Memory") or 0)
        if memory and memory > self.ctx.memory:
            warnings.append(
                f"memory limit {memory} is above your sandbox's ({self.ctx.memory}): the sandbox's limit applies"
            )
        if memory and memory < 6 * 2**20:
            raise errors.BadRequest("Minimum memory limit allowed is 6MB")
        hc["RestartPolicy"] = _restart_policy(hc.get("RestartPolicy"))
        if hc["RestartPolicy"]["Name"] not in ("", "no") and hc.get("AutoRemove"):
            raise errors.BadRequest("can't create 'AutoRemove' container with restart policy")
        hc["LogConfig"] = _log_config(hc.get("LogConfig"))
        hc["Runtime"] = hc.get("Runtime") or "runc"
        hc["ExtraHosts"] = parse_extra_hosts(hc.get("ExtraHosts"))
        health.validate(body.get("Healthcheck"))
        healthcheck = health.merge(body.get("Healthcheck"), img_cfg.get("Healthcheck"))
        endpoint = self._endpoint_echo(body, str(hc["NetworkMode"]))
        mac = str(body.get("MacAddress") or endpoint.get("MacAddress") or "")
        if mac:
            endpoint["MacAddress"] = _mac(mac)
        config = {
            "Hostname": "",
            "Domainname": str(body.get("Domainname") or ""),
            # dockerd's merge: an empty User (the CLI always sends one) is the image's
            "User": str(body.get("User") or img_cfg.get("User") or ""),
            "AttachStdin": bool(body.get("AttachStdin")),
            "AttachStdout": bool(body.get("AttachStdout", True)),
            "AttachStderr": bool(body.get("AttachStderr", True)),
            "ExposedPorts": exposed or None,
            "Tty": bool(body.get("Tty")),
            "OpenStdin": bool(body.get("OpenStdin")),
            "StdinOnce": bool(body.get("StdinOnce")),
            "Env": env,
            "Cmd": cmd or None,
            "Image": ref,
            "Volumes": body.get("Volumes") or img_cfg.get("Volumes"),
            "WorkingDir": str(body.get("WorkingDir") or img_cfg.get("WorkingDir") or ""),
            "Entrypoint": ep or None,
            "OnBuild": None,
            "Labels": labels,
            "StopSignal": body.get("StopSignal") or img_cfg.get("StopSignal") or "SIGTERM",
            "StopTimeout": body.get("StopTimeout"),
        }
        if healthcheck is not None:
            config["Healthcheck"] = healthcheck
        if mac:
            config["MacAddress"] = endpoint["MacAddress"]
        cid = secrets.token_hex(32)
        config["Hostname"] = hostname or cid[:12]
        with self._lock:
            if len(self._containers) >= self.limits.containers:
                raise Forbidden(
                    quota_message("containers", self.limits.containers, "docker rm, docker container prune")
                )
            cname = self._pick_name(name)
            if hc.get("Links") and str(hc["NetworkMode"]) in ("default", "bridge"):
                hc["Links"] = self._legacy_links(hc["Links"], cname)
            mounts = self._parse_mounts(body, image)
            c = _Container(
                id=cid,
                name=cname,
                created=time.time(),
                image=image.id,
                image_ref=ref,
                config=config,
                host_config=hc,
                path=argv[0],
                args=argv[1:],
                mounts=mounts,
                network_id=network_id,
                aliases=aliases,
                endpoint=endpoint,
            )
            d = self._dir(cid)
            d.mkdir(mode=0o711)
            for sub in ("upper", "work", "rootfs", "binds"):
                (d / sub).mkdir(mode=0o755)
            os.chown(d / "upper", self.ctx.uid_base, self.ctx.uid_base)
            c.out = _Output(d / "container.log")
            self._containers[cid] = c
            self._save(c)
        self._event("create", c)
        return cid, warnings

    def _pick_name(self, name: str | None) -> str:
        if name:
            if not NAME_RE.match(name):
                raise errors.BadRequest(f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
            name = name.lstrip("/")
            for other in self._containers.values():
                if other.name == name:
                    raise errors.Conflict(
                        f'Conflict. The container name "/{name}" is already in use by container "{other.id}". '
                        "You have to remove (or rename) that container to be able to reuse that name."
                    )
            return name
        used = {c.name for c in self._containers.values()}
        while True:
            cand = f"{random.choice(_ADJ)}_{random.choice(_NAMES)}"  # noqa: S311 - names, not secrets
            if cand in used:
                cand += f"{random.randint(0, 99)}"  # noqa: S311
            if cand not in used:
                return cand

    # -- start ------------------------------------------------------------------------------------

    def start(self, cid: str, *, manual: bool = True) -> None:
        """Start the container; ``manual`` (docker start/restart, not its restart policy)
        resets ``RestartCount``, the back-off and "stopped by hand", as dockerd's start does."""
        c = self._get(cid)
        self._await_exit_processed(c, 30)  # the previous run's teardown
        with self._lock:
            if c.running or c.status == "starting":
                return  # Docker: 304, nothing to do
            if c.status == "removing":
                raise errors.Conflict(f"container {c.id[:12]} is being removed")
            if manual:
                if c.restart_timer is not None:
                    self._timers.cancel(c.restart_timer)
                    c.restart_timer = None
                c.restart_count, c.restart_delay, c.manually_stopped = 0, 0.0, False
            c.status = "starting"
        try:
            self._start(c)
        except BaseException:
            self._teardown(c)
            with self._lock:
                c.status = "exited" if c.started_at != ZERO_TIME else "created"
                if c.status == "exited":
                    c.exit_code = c.exit_code or 128
                c.exits += 1  # a start that failed ends the run a next-exit waiter waits for
                self._save(c)
                self._cond.notify_all()
            raise

    def _start(self, c: _Container) -> None:
        self._check_links(c)
        d = self._dir(c.id)
        uid = self.ctx.uid_base
        if self._runc_exists(c.id):
            self._runc("delete", "--force", c.id, check=False)
        image = self.store.resolve(c.image)
        # root filesystem: image layers, the init layer, the container's upper dir
        layers = [*image.layers, self._init_layer_lower()]
        if not mounted(d / "rootfs"):
            self.store.mount(layers, d / "rootfs", upper=d / "upper", work=d / "work")
        rootfs = d / "rootfs"
        try:
            user = fsutil.resolve_user(rootfs, c.config.get("User") or "")
            _groups(rootfs, user, c.host_config)
        except ValueError as exc:
            raise errors.BadRequest(f"unable to start container process: {exc}") from None
        workdir = c.config.get("WorkingDir") or "/"
        fsutil.mkdirs_in_root(rootfs, workdir, uid + user.uid, uid + user.gid)
        # the files Docker manages
        _write_file(d / "hostname", c.config["Hostname"] + "\n", uid)
        bridge = self._bridge_of(c)
        extras = {nid: self._bridge_of(c, nid) for nid in c.extra_networks}
        mode = str(c.host_config.get("NetworkMode") or "")
        net_none = mode == "none" or mode.startswith("container:")  # no interface of its own
        with self._lock:
            if not mode.startswith("container:"):
                c.ip_index, c.ip = self._allocate_ip(c, c.network_id, c.ip_index, bridge)
            for nid, ep in c.extra_networks.items():
                ep["ip_index"], ep["ip"] = self._allocate_ip(c, nid, int(ep.get("ip_index", -1)), extras[nid])
            ports = {} if net_none else self._allocate_ports(c)
            c.ports = ports
        self._write_hosts(c)
        _write_file(d / "resolv.conf", self._resolv_conf(c.host_config), uid)
        self._copy_up_volumes(c, rootfs)
        # bind sources: resolve now (the sandbox may have changed), stage the exact objects
        binds = self._stage_binds(c)
        cfg = self._runc_config(c, rootfs, user, binds)
        (d / "config.json").write_text(json.dumps(cfg))
        # stdio
        c.out = c.out or _Output(d / "container.log")
        child: list[int] = []
        ours: list[int] = []
        sock: socket.socket | None = None
        sock_path = Path()
        stdin_w: int | None = None
        out_r = err_r = None
        try:
            if c.tty:
                sock, sock_path = _console_socket()
                stdio = (subprocess.DEVNULL, subprocess.DEVNULL, subprocess.DEVNULL)
            else:
                stdio, stdin_w, out_r, err_r = _stdio_pipes(bool(c.config.get("OpenStdin")), child, ours)
                # owned by the container's root: re-opening /dev/stdout (/proc/self/fd/1), as
                # nginx's "error.log -> /dev/stderr" does, is then allowed as it is under Docker
                for fd in stdio:
                    if fd >= 0:
                        os.fchown(fd, uid, uid)
            argv = [self.ctx.runc, "--root", str(self.runc_root), "--log", str(d / "runc.log"), "--log-format", "json"]
            argv += ["create", "--bundle", str(d), "--pid-file", str(d / "pid")]
            if sock is not None:
                argv += ["--console-socket", str(sock_path)]
            argv.append(c.id)
            with contextlib.suppress(FileNotFoundError):
                (d / "runc.log").unlink()
            rc = self.place.run_quiet(argv, timeout=RUNC_TIMEOUT, stdin=stdio[0], stdout=stdio[1], stderr=stdio[2])
            for fd in child:
                os.close(fd)
            child = []
            if rc != 0:
                raise errors.RuntimeError(f"could not start container: {bundle.runc_error(d / 'runc.log')}")
            pty: int | None = None
            if sock is not None:
                pty = bundle.receive_pty_master(sock)
                ours.append(pty)
                self._set_winsize(pty, 24, 80)
            pid = int((d / "pid").read_text().strip())
            c.pid, c.pid_start = pid, proc_start(pid) or 0
            if not net_none:
                self._ensure_net(bridge)
                netns.attach(
                    self.ctx.pid,
                    pid,
                    c.id,
                    c.ip,
                    bridge,
                    mac=str(c.endpoint.get("MacAddress") or ""),
                    link_local=tuple(c.endpoint.get("LinkLocalIPs") or ()),
                    place=self.place,
                )
                for nid, ep in c.extra_networks.items():
                    self._ensure_net(extras[nid])
                    netns.attach(self.ctx.pid, pid, c.id, ep["ip"], extras[nid], index=int(ep["if"]), place=self.place)
            with self._lock:
                c.status = "running"
                c.stdin_fd, c.pty = stdin_w, pty
            self._apply_ports()
            self._refresh_hosts(c.network_id, *c.extra_networks)
            self._hold(c, {"pty": pty} if pty is not None else {"out": out_r, "err": err_r})
            assert c.out is not None
            c.out.begin()
            c.pumps = []
            if pty is not None:
                c.pumps.append(self._pump(c.out, pty, 1))
            else:
                assert out_r is not None and err_r is not None
                c.pumps.append(self._pump(c.out, out_r, 1))
                c.pumps.append(self._pump(c.out, err_r, 2))
            ours = []
            self._runc("start", c.id)
            self._await_exec(pid)
        except BaseException:
            for fd in child + ours:
                with contextlib.suppress(OSError):
                    os.close(fd)
            with self._lock:
                c.stdin_fd = c.pty = None
                c.status = "starting"
            if c.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(c.pid, signal_mod.SIGKILL)
                self._reap(c.pid, timeout=10)
            self._release_holder(c)
            if c.out is not None:
                c.out.end()
            raise
        finally:
            if sock is not None:
                sock.close()
                shutil.rmtree(sock_path.parent, ignore_errors=True)
        with self._lock:
            c.started_at = now_rfc3339()
            c.finished_at = ZERO_TIME
            c.exit_code, c.error, c.oom_killed = 0, "", False
            c.stopping = c.paused = False
            if health.probe(c.config.get("Healthcheck")) is not None:
                h = health.Health.from_json(c.health) or health.Health()
                h.status, h.failing_streak = health.STARTING, 0
                c.health = h.to_json()
            self._save(c)
            self._watch_exit(c)
            self._cond.notify_all()
        self._event("start", c)
        self._schedule_probe(c)

    @staticmethod
    def _await_exec(pid: int, timeout: float = 2.0) -> None:
        """Return once the container's init has exec'd its command.

        `runc start` returns when it has told runc's init to go on, not when the command
        runs: until then the process is "runc:[2:INIT]" and, while it execs, has no
        command line. `docker top` or `exec` right after `run -d` must see the command."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                return  # reaped already: its waiter reports the exit
            comm, _, rest = stat.partition(" (")[2].rpartition(") ")
            if rest[:1] in ("Z", "X") or (cmdline and not comm.startswith("runc:")):
                return  # exec'd, or exited (a zombie has no command line)
            time.sleep(0.001)

    def _resolv_conf(self, hc: dict[str, Any]) -> str:
        """The sandbox's resolv.conf as a container sees it; HostConfig ``Dns``, ``DnsSearch``
        and ``DnsOptions`` (``docker run --dns/--dns-search/--dns-option``, the kubelet's
        pod DNS) replace its nameservers, search list and options, as Docker does."""
        raw = fsutil.read_in_root(self.ctx.dir / "rootfs", "/etc/resolv.conf") or b""
        lines = [ln for ln in raw.decode(errors="replace").splitlines() if ln.strip()]
        # the sandbox's own resolvers work from a container too (they are reached through the
        # sandbox), except loopback ones, which inside the container would be the container
        kept = [ln for ln in lines if not (ln.split()[:1] == ["nameserver"] and ln.split()[1:2][0].startswith("127."))]
        given = {
            "nameserver": [str(x) for x in hc.get("Dns") or []],
            "search": [str(x) for x in hc.get("DnsSearch") or []],
            "options": [str(x) for x in hc.get("DnsOptions") or []],
        }
        kept = [ln for ln in kept if not given.get(ln.split()[0])]
        kept += [f"nameserver {ns}" for ns in given["nameserver"]]
        kept += [f"{key} {' '.join(given[key])}" for key in ("search", "options") if given[key]]
        return "\n".join(kept) + "\n"

    def _copy_up_volumes(self, c: _Container, rootfs: Path) -> None:
        """Docker's volume copy-up: an empty volume mounted where the image has files gets a
        copy of them (owners kept: the rootfs view shows them in the sandbox's range). The
        source is the image's directory opened inside the rootfs, copied through its fd."""
        for m in c.mounts:
            if m["Type"] != "volume" or any(Path(m["Source"]).iterdir()):
                continue
            with self._lock:  # never write into a volume a running container can change meanwhile
                busy = any(
                    o.running and any(x.get("Name") == m["Name"] for x in o.mounts) for o in self._containers.values()
                )
            if busy:
                continue
            try:
                fd = fsutil.open_in_root(rootfs, m["Destination"], os.O_PATH | os.O_DIRECTORY)
            except OSError:
                continue  # nothing there in the image
            try:
                proc = self.place.popen(
                    ["cp", "-a", "--no-dereference", f"/proc/self/fd/{fd}/.", m["Source"] + "/"],
                    pass_fds=(fd,),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
            finally:
                os.close(fd)
            try:
                _out, err = proc.communicate(timeout=600)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                raise errors.RuntimeError(
                    f"copying the image's {m['Destination']} into volume {m['Name']} timed out"
                ) from None
            if proc.returncode != 0:
                why = err.decode(errors="replace").strip()[-300:]
                raise errors.RuntimeError(f"copying the image's {m['Destination']} into volume {m['Name']}: {why}")

    def _stage_binds(self, c: _Container) -> dict[str, Path]:
        """Bind-mount each bind source (resolved afresh, as an fd) onto binds/<i>."""
        staged: dict[str, Path] = {}
        d = self._dir(c.id)
        for i, m in enumerate(c.mounts):
            if m["Type"] != "bind":
                continue
            fd = self._open_bind_source(m["Source"])
            try:
                is_dir = Path(f"/proc/self/fd/{fd}").is_dir()
                target = d / "binds" / str(i)
                if not target.exists():
                    if is_dir:
                        target.mkdir(mode=0o755)
                    else:
                        target.touch(mode=0o644)
                if not mounted(target):
                    self.store.helper({"op": "bind_fd", "fd": fd, "target": str(target)}, pass_fds=[fd])
                staged[m["Destination"]] = target
            finally:
                os.close(fd)
        return staged

    def _runc_config(
        self, c: _Container, rootfs: Path, user: fsutil.ExecUser, binds: dict[str, Path]
    ) -> dict[str, Any]:
        hc = c.host_config
        d = self._dir(c.id)
        env = self._process_env(c, user, tty=c.tty)
        shm = int(hc.get("ShmSize") or 64 * 2**20)
        mounts = bundle.standard_mounts(proc_options=["nosuid", "noexec", "nodev"], shm_size=shm, cgroup_writable=False)
        for name in ("hosts", "hostname", "resolv.conf"):
            mounts.append(
                {
                    "destination": f"/etc/{name}",
                    "type": "bind",
                    "source": str(d / name),
                    "options": ["rbind", "rprivate"],
                }
            )
        for m in c.mounts:
            # A remount (ro) in the container's mount namespace must keep the flags the source
            # mount has (the kernel locks them): nodev for the sandbox's rootfs, nosuid, nodev
            # and noatime for the sandbox's disk, where volumes live.
            ro = [] if m["RW"] else ["ro"]
            if m["Type"] == "bind":
                mounts.append(
                    {
                        "destination": m["Destination"],
                        "type": "bind",
                        "source": str(binds[m["Destination"]]),
                        "options": ["bind", "rprivate", "nosuid", "nodev", *ro],
                    }
                )
            elif m["Type"] == "volume":
                mounts.append(
                    {
                        "destination": m["Destination"],
                        "type": "bind",
                        "source": m["Source"],
                        "options": ["rbind", "rprivate", "nosuid", "nodev", "noatime", *ro],
                    }
                )
            else:
                opts = ["nosuid", "nodev", "noexec", *ro, *(o for o in str(m.get("Options") or "").split(",") if o)]
                mounts.append({"destination": m["Destination"], "type": "tmpfs", "source": "tmpfs", "options": opts})
        resources = self._resources(hc)
        process: dict[str, Any] = {
            "terminal": c.tty,
            "user": {"uid": user.uid, "gid": user.gid, "additionalGids": _groups(rootfs, user, hc)},
            "args": [c.path, *c.args],
            "env": env,
            "cwd": c.config.get("WorkingDir") or "/",
            "capabilities": {k: capabilities(hc) for k in ("bounding", "effective", "permitted")},
            "noNewPrivileges": True,
            "oomScoreAdj": OOM_SCORE_ADJ,
        }
        if c.tty:
            process["consoleSize"] = {"height": 24, "width": 80}
        namespaces = [{"type": "user", "path": f"/proc/{self.ctx.pid}/ns/user"}]
        namespaces += [{"type": t} for t in ("pid", "mount", "ipc", "uts", "network", "cgroup")]
        mode = str(hc.get("NetworkMode") or "")
        if mode.startswith("container:"):  # internal (kubelet): join a running container's netns
            with self._lock:
                owner = self._containers.get(mode.partition(":")[2])
            if owner is None or not owner.running:
                raise errors.Conflict(f"cannot join network of a non running container: {mode.partition(':')[2]}")
            namespaces[namespaces.index({"type": "network"})] = {"type": "network", "path": f"/proc/{owner.pid}/ns/net"}
        return {
            "ociVersion": "1.0.2",
            "process": process,
            "root": {"path": str(rootfs), "readonly": bool(hc.get("ReadonlyRootfs"))},
            "hostname": c.config["Hostname"],
            "mounts": mounts,
            "linux": {
                "uidMappings": [{"containerID": 0, "hostID": self.ctx.uid_base, "size": bundle.IDMAP_SIZE}],
                "gidMappings": [{"containerID": 0, "hostID": self.ctx.uid_base, "size": bundle.IDMAP_SIZE}],
                "namespaces": namespaces,
                "cgroupsPath": f"{self.ctx.cgroup_path}/docker-{c.id[:12]}",
                "resources": resources,
                "sysctl": {str(k): str(v) for k, v in (hc.get("Sysctls") or {}).items()},
                "maskedPaths": bundle.MASKED,
                "readonlyPaths": bundle.READONLY,
                "seccomp": bundle.seccomp_profile(),
            },
        }

    def _resources(self, hc: dict[str, Any]) -> dict[str, Any]:
        """The runc resources of a HostConfig: memory, pids and CPU clamped to the sandbox's."""
        resources: dict[str, Any] = {"devices": [{"allow": False, "access": "rwm"}]}
        memory = int(hc.get("Memory") or 0)
        if memory:
            resources["memory"] = {"limit": min(memory, self.ctx.memory)}
        pids = int(hc.get("PidsLimit") or 0)
        if pids > 0:
            resources["pids"] = {"limit": min(pids, self.ctx.pids)}
        nano = int(hc.get("NanoCpus") or 0)
        quota = int(hc.get("CpuQuota") or 0)
        period = int(hc.get("CpuPeriod") or 100_000)
        if nano:
            quota = int(nano / 1e9 * period)
        if quota > 0:
            quota = min(quota, max(1000, int(self.ctx.cpus * period)))
            resources["cpu"] = {"quota": quota, "period": period}
        if hc.get("CpuShares"):
            resources.setdefault("cpu", {})["shares"] = int(hc["CpuShares"])
        return resources

    # -- network ----------------------------------------------------------------------------------

    def _ensure_net(self, bridge: netns.Bridge = netns.DEFAULT) -> None:
        with self._net_lock:
            if bridge.name not in self._ready_bridges:
                netns.ensure_bridge(self.ctx.pid, bridge, place=self.place)
                self._ready_bridges.add(bridge.name)
                self._net_ready = True

    @staticmethod
    def _bridge(net: Network) -> netns.Bridge:
        return netns.Bridge(
            netns.bridge_name(net.id), ipaddress.IPv4Network(net.subnet), net.gateway, internal=net.internal
        )

    def _bridges(self) -> builtins.list[netns.Bridge]:
        """Every network's bridge, the default one first (the nft table's masquerade/isolation)."""
        return [netns.DEFAULT, *(self._bridge(n) for n in self.store.networks())]

    def _bridge_of(self, c: _Container, network_id: str | None = None) -> netns.Bridge:
        """The bridge of the container's network (``network_id``: one it was connected to);
        NotFound once that network was removed."""
        nid = c.network_id if network_id is None else network_id
        if not nid:
            return netns.DEFAULT
        for n in self.store.networks():
            if n.id == nid:
                return self._bridge(n)
        raise NotFound(f"network {c.host_config.get('NetworkMode') if network_id is None else nid} not found")

    def _net_ips(self, c: _Container) -> dict[str, str]:
        """network id ("" = default bridge) -> the container's address there (while it runs)."""
        ips = {c.network_id: c.ip}
        ips.update({nid: str(ep.get("ip") or "") for nid, ep in c.extra_networks.items()})
        return ips

    def _allocate_ip(self, c: _Container, network_id: str, index: int, bridge: netns.Bridge) -> tuple[int, str]:
        """(index, address) for ``c`` on a network: ``index`` kept unless another running
        container of that network holds it (call with _lock)."""
        used: set[int] = set()
        for o in self._containers.values():
            if o.id == c.id or not (o.running or o.status == "starting"):
                continue
            if o.network_id == network_id:
                used.add(o.ip_index)
            if network_id in o.extra_networks:
                used.add(int(o.extra_networks[network_id].get("ip_index", -1)))
        if index < 0 or index in used:
            index = next(i for i in range(len(used) + 1) if i not in used)
        try:
            return index, netns.address(index, bridge.subnet, bridge.gateway)
        except ValueError as exc:
            raise errors.Conflict(str(exc)) from None

    def _endpoint_config(self, body: dict[str, Any], mode: str) -> tuple[str, builtins.list[str]]:
        """(network id, aliases) for ``create``: NetworkMode resolved, --network-alias checked."""
        endpoints = (body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}
        if not isinstance(endpoints, dict):
            raise errors.BadRequest("NetworkingConfig.EndpointsConfig must be a JSON object")
        aliases = [str(a) for ep in endpoints.values() for a in ((ep or {}).get("Aliases") or [])]
        if mode in ("default", "bridge", "none"):
            if aliases:
                raise errors.BadRequest(
                    "network-scoped alias is supported only for containers in user defined networks"
                )
            return "", []
        net = self._find_network(mode)
        if not isinstance(net, Network):
            raise Forbidden(f"--network={mode} is not available in this lab")
        return net.id, aliases

    def _endpoint_echo(self, body: dict[str, Any], mode: str) -> dict[str, Any]:
        """The EndpointConfig given for the container's network, as inspect echoes it:
        ``DriverOpts`` (kept, as the bridge driver keeps them), ``LinkLocalIPs`` (added to its
        interface), ``Links`` (``container:alias``: the alias resolves in this container,
        user-defined networks only), ``MacAddress`` (its interface's). ``IPAMConfig`` (a fixed
        address) is refused: addresses are allocated."""
        endpoints = (body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}
        eps = [ep for ep in endpoints.values() if isinstance(ep, dict)]
        if len(eps) > 1:
            raise errors.BadRequest(
                "Container cannot be connected to network endpoints: only one network can be given at create "
                "(docker network connect adds more)"
            )
        ep = eps[0] if eps else {}
        out: dict[str, Any] = {}
        ipam = ep.get("IPAMConfig") or {}
        if ipam.get("IPv4Address") or ipam.get("IPv6Address"):
            raise Forbidden(
                "--ip/--ip6 are not available in this lab: a container's address is allocated from its network's "
                "subnet (docker inspect shows it)"
            )
        lls = [str(x) for x in ipam.get("LinkLocalIPs") or ep.get("LinkLocalIPs") or []]
        for ip in lls:
            try:
                if not ipaddress.IPv4Address(ip).is_link_local:
                    raise ValueError
            except ValueError:
                raise errors.BadRequest(f"invalid link-local IP address: {ip}") from None
        if lls:
            out["LinkLocalIPs"] = lls
        opts = ep.get("DriverOpts") or {}
        if not isinstance(opts, dict):
            raise errors.BadRequest("DriverOpts must be a JSON object")
        if opts:
            out["DriverOpts"] = {str(k): str(v) for k, v in opts.items()}
        legacy = [str(x) for x in (body.get("HostConfig") or {}).get("Links") or []]
        links = [str(x) for x in ep.get("Links") or []]
        if mode in ("default", "bridge", "none"):
            if links and sorted(links) != sorted(legacy):
                raise Forbidden(
                    "links in an endpoint config are for user-defined networks; on the default bridge use "
                    "--link (HostConfig.Links), a legacy link"
                )
            links = []  # the default bridge's links are the legacy ones (HostConfig.Links, create)
        else:
            links = links or legacy
        if links:
            for link in links:
                target = link.split(":")[0].lstrip("/")
                self._get(target)  # NotFound as dockerd: the container must exist
            out["Links"] = links
        if ep.get("MacAddress"):
            out["MacAddress"] = str(ep["MacAddress"])
        return out

    def _hosts_text(self, c: _Container) -> str:
        """The container's /etc/hosts: itself (by hostname; on a user-defined network also by
        name, aliases and short id), and on a user-defined network every other running
        container of that network by name, aliases and short id (call with _lock)."""
        text = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        extra = ""
        for entry in c.host_config.get("ExtraHosts") or []:  # --add-host, after the engine's own lines
            name, _, ip = entry.partition(":")
            extra += f"{netns.GATEWAY if ip == 'host-gateway' else ip.strip('[]')}\t{name}\n"
        if c.host_config.get("NetworkMode") == "none":
            return text + extra
        mine = self._net_ips(c)
        for nid, ip in mine.items():
            if not ip:
                continue
            if not nid:  # the default bridge: no names but the container's own hostname and its links
                text += f"{ip}\t{c.config['Hostname']}\n"
                for _full, alias, child in self._links_of(c):
                    if child is not None and child.running and child.ip:
                        names = dict.fromkeys([alias, child.config["Hostname"], child.name])
                        text += f"{child.ip}\t{' '.join(names)}\n"
                continue
            aliases = c.aliases if nid == c.network_id else c.extra_networks[nid].get("aliases") or []
            own = dict.fromkeys([c.config["Hostname"], c.name, *aliases, c.id[:12]])
            text += f"{ip}\t{' '.join(own)}\n"
        for o in sorted(self._containers.values(), key=lambda o: o.ip_index):
            if o.id == c.id or not o.running:
                continue
            for nid, ip in self._net_ips(o).items():
                if nid and nid in mine and ip:
                    aliases = o.aliases if nid == o.network_id else o.extra_networks[nid].get("aliases") or []
                    names = dict.fromkeys([o.name, *aliases, o.id[:12]])
                    text += f"{ip}\t{' '.join(names)}\n"
        for link in c.endpoint.get("Links") or []:  # user-defined network links: this container's view
            target, _, alias = link.partition(":")
            t = next((x for x in self._containers.values() if x.name == target.lstrip("/") or x.id == target), None)
            tip = self._net_ips(t).get(c.network_id) if t is not None and t.running else None
            if tip and alias:
                text += f"{tip}\t{alias.rpartition('/')[2]}\n"
        return text + extra

    def _write_hosts(self, c: _Container) -> None:
        with self._net_lock:
            with self._lock:
                text = self._hosts_text(c)
            with contextlib.suppress(FileNotFoundError):
                _write_file(self._dir(c.id) / "hosts", text, self.ctx.uid_base)

    def _refresh_hosts(self, *network_ids: str) -> None:
        """Rewrite (in place) the hosts file of every running container of these networks
        (the default bridge's, "", have no names to update)."""
        wanted = {n for n in network_ids if n}
        if not wanted:
            return
        with self._lock:
            members = [o for o in self._containers.values() if o.running and wanted & set(self._net_ips(o))]
        for o in members:
            self._write_hosts(o)

    def _allocate_ports(self, c: _Container) -> dict[str, list[dict[str, str]] | None]:
        """Host ports for the container's bindings (PortBindings, -P); Conflict if taken."""
        hc = c.host_config
        taken: set[tuple[str, int]] = set()
        for o in self._containers.values():
            if o.id != c.id and (o.running or o.status == "starting"):
                for port, binds in (o.ports or {}).items():
                    for b in binds or []:
                        taken.add((port.split("/")[1], int(b["HostPort"])))
        listening = {p: netns.listening(self.ctx.pid, p) for p in ("tcp", "udp")}
        result: dict[str, list[dict[str, str]] | None] = {}
        wanted: dict[str, list[dict[str, str]]] = {}
        for port, binds in (hc.get("PortBindings") or {}).items():
            key = port if "/" in port else f"{port}/tcp"
            wanted[key] = list(binds or [{"HostIp": "", "HostPort": ""}])
        if hc.get("PublishAllPorts"):
            for port in c.config.get("ExposedPorts") or {}:
                wanted.setdefault(port, [{"HostIp": "", "HostPort": ""}])
        for port in c.config.get("ExposedPorts") or {}:
            result[port] = None
        for port, binds in wanted.items():
            proto = port.split("/")[1] if "/" in port else "tcp"
            if proto not in ("tcp", "udp"):
                raise errors.BadRequest(f"invalid proto: {proto}")
            out = []
            for b in binds:
                host_ip = str(b.get("HostIp") or "") or netns.ANY
                host_port_s = str(b.get("HostPort") or "")
                if host_port_s:
                    lo, _, hi = host_port_s.partition("-")
                    candidates = list(range(int(lo), int(hi or lo) + 1))
                else:
                    candidates = []
                if not candidates:
                    free = [
                        p
                        for p in range(PORT_RANGE[0], PORT_RANGE[1])
                        if (proto, p) not in taken and p not in listening[proto]
                    ]
                    if not free:
                        raise errors.Conflict("no free host port left to publish on")
                    candidates = [random.choice(free)]  # noqa: S311
                chosen = None
                for p in candidates:
                    if not 1 <= p <= 65535:
                        raise errors.BadRequest(f"invalid port {p}")
                    if (proto, p) not in taken and p not in listening[proto]:
                        chosen = p
                        break
                if chosen is None:
                    raise errors.Conflict(
                        f"driver failed programming external connectivity on endpoint {c.name} ({c.id}): "
                        f"Bind for {host_ip}:{candidates[0]} failed: port is already allocated"
                    )
                taken.add((proto, chosen))
                out.append({"HostIp": host_ip, "HostPort": str(chosen)})
            result[port] = out
        return result

    def _apply_ports(self) -> None:
        """Rewrite the DNAT table from the running containers (never call with _lock held)."""
        with self._net_lock:
            rules = []
            with self._lock:
                for c in self._containers.values():
                    if not c.running:
                        continue
                    for port, binds in (c.ports or {}).items():
                        num, _, proto = port.partition("/")
                        for b in binds or []:
                            rules.append(
                                netns.PortRule(b["HostIp"], int(b["HostPort"]), proto or "tcp", c.ip, int(num))
                            )
            bridges = self._bridges()
            if (rules, bridges) == self._applied_rules:  # nothing changed (most starts and exits): no nft run
                return
            if rules or self._net_ready:
                self._ensure_net()
                netns.apply_ports(self.ctx.pid, rules, bridges, place=self.place)
            self._applied_rules = (rules, bridges)

    # -- I/O --------------------------------------------------------------------------------------

    @staticmethod
    def _set_winsize(fd: int, rows: int, cols: int) -> None:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def _pump(
        self, out: _Output | Stream, fd: int, stream: int, done: Callable[[], None] | None = None
    ) -> threading.Event:
        """Copy ``fd`` to ``out`` until EOF/EIO (on the engine's watcher thread); the event
        returned is set once ``fd`` is closed. ``Engine.detach`` stops it between two reads,
        so no chunk read is left unwritten."""
        ended = threading.Event()

        def ready() -> bool:
            try:
                data = os.read(fd, 65536)
            except InterruptedError:
                return True
            except OSError:
                return False  # EIO: the PTY's other side is gone
            if not data:
                return False
            if isinstance(out, _Output):
                out.write(stream, data)
                full = out.full()
            else:
                out.push((stream, data))
                full = [out] if out.over() else []
            if full:  # a reader is behind: stop reading until it has caught up (STREAM_HIGH)
                self._watcher.pause(fd)
                for s in full:
                    s.when_drained(lambda: self._watcher.resume(fd))
            return True

        def finish() -> None:
            with contextlib.suppress(OSError):
                os.close(fd)
            ended.set()
            if done is not None:
                done()

        self._watcher.add(fd, ready, finish)
        return ended

    def _stdin_writer(self, c: _Container) -> Callable[[bytes], None]:
        def write(data: bytes) -> None:
            fd = c.pty if c.pty is not None else c.stdin_fd
            if fd is None:
                return
            view = memoryview(data)
            while view:
                try:
                    n = os.write(fd, view)
                except BlockingIOError:
                    select.select([], [fd], [], 1.0)
                    continue
                except OSError:
                    return
                view = view[n:]

        return write

    def _close_container_stdin(self, c: _Container) -> None:
        with self._lock:
            fd, c.stdin_fd = c.stdin_fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    # -- exit -------------------------------------------------------------------------------------

    @staticmethod
    def _reap(pid: int, timeout: float) -> int | None:
        """Wait (pidfd, bounded) for ``pid`` to end; its exit status if it was our child."""
        try:
            pfd = os.pidfd_open(pid)
        except OSError:
            pfd = -1
        if pfd >= 0:
            try:
                select.select([pfd], [], [], timeout)
            finally:
                os.close(pfd)
        try:
            got, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return None
        if got == 0:
            return None
        return os.waitstatus_to_exitcode(status)

    def _watch_pid(self, pid: int, on_exit: Callable[[], None]) -> None:
        """``on_exit`` on the engine's exit worker once ``pid`` has ended (its pidfd on the
        watcher: no thread per process). A pid already gone is handed over at once."""
        try:
            pfd = os.pidfd_open(pid)
        except OSError:
            self._worker.submit(on_exit)
            return

        def ready() -> bool:
            self._worker.submit(on_exit)
            return False

        self._watcher.add(pfd, ready, lambda: os.close(pfd))

    def _watch_exit(self, c: _Container) -> None:
        c.exit_done = threading.Event()
        self._watch_pid(c.pid, lambda: self._process_exit(c))

    def _await_exit_processed(self, c: _Container, timeout: float) -> None:
        """Wait until the exit of the container's last run has been processed (teardown
        included); at once on the exit worker itself (``--rm`` removes from there)."""
        ev = c.exit_done
        if ev is not None and not self._worker.on_thread():
            ev.wait(timeout)

    def _process_exit(self, c: _Container) -> None:
        try:
            self._exited(c)
        finally:
            if c.exit_done is not None:
                c.exit_done.set()

    def _exited(self, c: _Container) -> None:
        if self._closed:
            return  # close() or detach() deals with it
        pid = c.pid
        code: int | None = None
        try:
            got, status = os.waitpid(pid, 0)
            code = os.waitstatus_to_exitcode(status) if got else None
        except ChildProcessError:
            code = None
        for ended in c.pumps:
            ended.wait(timeout=5)
        self._release_holder(c)
        if c.out is not None:
            c.out.end()
        with self._lock:
            if code is None:
                try:
                    disk = json.loads((self._dir(c.id) / "state.json").read_text())
                except (OSError, ValueError):
                    disk = {}
                if disk.get("status") == "exited" and disk.get("pid") == pid:
                    c.exit_code, c.error = int(disk.get("exit_code", 255)), str(disk.get("error", ""))
                else:
                    c.exit_code, c.error = 255, "exit status unknown: the engine was restarted while it ran"
            else:
                c.exit_code = 128 - code if code < 0 else code
            c.oom_killed = c.oom_killed or self._oom_killed(c)
            c.finished_at = now_rfc3339()
            c.status = "exited"
            c.paused = False
            c.exits += 1
            self._stop_probes(c)
            # decided with the exit, atomically: a docker stop from now on sees "restarting" and
            # cancels it, never an "exited" container that restarts behind its back
            self._decide_restart(c)
        self._teardown(c)
        with self._lock:
            self._save(c)
            auto_remove = bool(c.host_config.get("AutoRemove")) and not c.hand_restart
            self._cond.notify_all()
        self._emit("die", c)
        self._event("die", c, exitCode=str(c.exit_code))
        self._arm_restart(c)
        if auto_remove and not self._closed:
            with contextlib.suppress(NotFound, errors.RuntimeError):
                self.remove(c.id, force=True, volumes=True)

    def _emit(self, action: str, c: _Container) -> None:
        labels = {str(k): str(v) for k, v in (c.config.get("Labels") or {}).items()}
        for fn in list(self.listeners):
            try:
                fn(action, c.id, labels)
            except Exception:
                log.exception("engine of sandbox %s: a %s listener failed", self.ctx.sid, action)

    def _oom_killed(self, c: _Container) -> bool:
        """Did the kernel's OOM killer kill a process of the container (its cgroup's counter)?"""
        f = self._cgroup_file(c, "memory", "memory.events" if self._cgroups.v2 else "memory.oom_control")
        with contextlib.suppress(OSError):
            for line in f.read_text().splitlines():
                k, _, v = line.partition(" ")
                if k == "oom_kill" and v.strip().isdigit():
                    return int(v) > 0
        return False

    def _teardown(self, c: _Container) -> None:
        """After the process ended: stdin, ports, veth, runc state, mounts (idempotent)."""
        self._close_container_stdin(c)
        if c.pty is not None:
            c.pty = None  # the pump closes it
        with contextlib.suppress(errors.RuntimeError):
            self._apply_ports()
        with contextlib.suppress(errors.RuntimeError):
            if self._net_ready:
                netns.detach(self.ctx.pid, c.id, place=self.place)
                for ep in c.extra_networks.values():
                    netns.detach(self.ctx.pid, c.id, int(ep["if"]), place=self.place)
        with contextlib.suppress(OSError):
            self._refresh_hosts(c.network_id, *c.extra_networks)
        if self._runc_exists(c.id):
            with contextlib.suppress(errors.RuntimeError):
                self._runc("delete", "--force", c.id, check=False)
        d = self._dir(c.id)
        targets = [str(p) for p in sorted((d / "binds").glob("*"))] + [str(d / "rootfs")]
        live = set(mounts_under(d))  # one read of the mount table, not one per target
        busy = [t for t in targets if t in live]
        if busy:
            with contextlib.suppress(errors.RuntimeError):
                self.store.helper({"op": "umount", "targets": busy})

    # -- events, restart policies, health checks ---------------------------------------------------

    def _event(self, action: str, c: _Container, **extra: str) -> None:
        """A container event for docker events (events.py): its labels, image and name, as dockerd's."""
        attrs = {str(k): str(v) for k, v in (c.config.get("Labels") or {}).items()}
        attrs.update(image=c.image_ref, name=c.name, **extra)
        self.events.record("container", action, c.id, attrs)

    def _process_env(self, c: _Container, user: fsutil.ExecUser, *, tty: bool) -> builtins.list[str]:
        """The environment of a container's process (and of an exec, before its own): dockerd's
        defaults (PATH, HOSTNAME, TERM with a TTY) replaced or unset by ``Config.Env``, then
        HOME from the user's passwd entry when still unset (as runc's spec generator does)."""
        defaults = [f"PATH={DEFAULT_PATH}", f"HOSTNAME={c.config['Hostname']}", *(["TERM=xterm"] if tty else [])]
        defaults += self._link_env(c)
        env = _replace_or_append_env(defaults, [str(e) for e in c.config.get("Env") or []])
        if not any(e.startswith("HOME=") for e in env):
            env.append(f"HOME={user.home}")
        return env

    # legacy links (--link on the default bridge), as dockerd's daemon/links: /etc/hosts names and
    # <ALIAS>_PORT..., <ALIAS>_NAME, <ALIAS>_ENV_... variables, fixed when the container starts

    def _legacy_links(self, links: Any, name: str) -> builtins.list[str]:
        """HostConfig.Links normalised as dockerd stores them ("/child:/parent/alias"); each
        child must exist and be on the default bridge (call with _lock)."""
        if not isinstance(links, list):
            raise errors.BadRequest("Links must be a list of strings")
        out = []
        for link in links:
            child_ref, _, alias = str(link).partition(":")
            alias = (alias or child_ref).rpartition("/")[2]
            if not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", alias):
                raise errors.BadRequest(f"invalid link alias: {link!r}")
            try:
                child = self._containers[self.resolve(child_ref.lstrip("/"))]
            except NotFound:
                raise NotFound(f"could not get container for {child_ref.lstrip('/')}") from None
            if child.network_id or str(child.host_config.get("NetworkMode")) not in ("default", "bridge"):
                raise errors.BadRequest(f"Cannot link to /{child.name}, as it does not belong to the default network")
            out.append(f"/{child.name}:/{name}/{alias}")
        return out

    def _links_of(self, c: _Container) -> builtins.list[tuple[str, str, _Container | None]]:
        """(link name "/parent/alias", alias, child or None) of a container's legacy links."""
        out = []
        for link in c.host_config.get("Links") or []:
            child_name, _, full = str(link).partition(":")
            child = next((x for x in self._containers.values() if "/" + x.name == child_name), None)
            out.append((full, full.rpartition("/")[2], child))
        return out

    def _check_links(self, c: _Container) -> None:
        """At start, as dockerd: every linked container must be running."""
        with self._lock:
            for link in c.host_config.get("Links") or []:
                child_name, _, full = str(link).partition(":")
                child = next((x for x in self._containers.values() if "/" + x.name == child_name), None)
                if child is None or not child.running:
                    raise errors.Conflict(f"Cannot link to a non running container: {child_name} AS {full}")

    def _link_env(self, c: _Container) -> builtins.list[str]:
        env: builtins.list[str] = []
        with self._lock:
            for full, alias, child in self._links_of(c):
                if child is None or not child.running or not child.ip:
                    continue
                prefix = alias.upper().replace("-", "_")
                ports = sorted(
                    (str(p).partition("/")[0], (str(p).partition("/")[2] or "tcp"))
                    for p in (child.config.get("ExposedPorts") or {})
                )
                ports.sort(key=lambda p: (int(p[0]) if p[0].isdigit() else 0, p[1] != "tcp"))
                if ports:
                    port, proto = ports[0]
                    env.append(f"{prefix}_PORT={proto}://{child.ip}:{port}")
                for port, proto in ports:
                    key = f"{prefix}_PORT_{port}_{proto.upper()}"
                    env += [
                        f"{key}={proto}://{child.ip}:{port}",
                        f"{key}_ADDR={child.ip}",
                        f"{key}_PORT={port}",
                        f"{key}_PROTO={proto}",
                    ]
                env.append(f"{prefix}_NAME={full}")
                for item in child.config.get("Env") or []:
                    k, sep, v = str(item).partition("=")
                    if sep and k not in ("HOME", "PATH"):
                        env.append(f"{prefix}_ENV_{k}={v}")
        return env

    def _restart_policy_wants(self, c: _Container, *, daemon_start: bool) -> bool:
        """dockerd's restart manager (``ShouldRestart``): ``always``; ``unless-stopped`` unless
        stopped by hand; ``on-failure[:N]`` after a non-zero exit while fewer than N restarts.
        A ``docker stop``/``kill`` cancels a pending restart; when the daemon (here runtimed's
        engine) starts, ``always`` restarts even a container stopped by hand."""
        pol = c.host_config.get("RestartPolicy") or {}
        name = str(pol.get("Name") or "")
        if self._closed or self._closing or c.host_config.get("AutoRemove") or name in ("", "no"):
            return False
        if c.stopping and not daemon_start:
            return False
        if daemon_start and c.started_at == ZERO_TIME:
            return False
        if name == "always":
            return True
        if name == "unless-stopped":
            return not c.manually_stopped
        retries = int(pol.get("MaximumRetryCount") or 0)
        return c.exit_code != 0 and (retries == 0 or c.restart_count < retries)

    def _daemon_start_restarts(self, c: _Container) -> bool:
        return self._restart_policy_wants(c, daemon_start=True)

    def _decide_restart(self, c: _Container) -> None:
        """At an exit (call with _lock): "restarting" if the policy wants it, with dockerd's
        back-off (100ms, doubled at each restart up to a minute, back to 100ms once a run lasted
        10s); ``RestartCount`` counts the restarts. ``_arm_restart`` sets the timer."""
        if c.id not in self._containers or not self._restart_policy_wants(c, daemon_start=False):
            return
        ran = time.time() - parse_time(c.started_at) if c.started_at != ZERO_TIME else 0.0
        if ran >= RESTART_RESET:
            c.restart_delay = 0.0
        c.restart_delay = RESTART_FIRST if not c.restart_delay else min(RESTART_MAX, c.restart_delay * 2)
        c.restart_count += 1
        c.status = "restarting"

    def _arm_restart(self, c: _Container) -> None:
        """After the exit's teardown: the back-off wait, then a start (``_restart_now``), unless
        a docker stop/kill/rm cancelled the restart meanwhile."""
        with self._lock:
            if c.status == "restarting" and c.restart_timer is None and c.id in self._containers:
                c.restart_timer = self._restart_after(c, c.restart_delay)
            self._cond.notify_all()

    def _restart_after(self, c: _Container, delay: float) -> int:
        return self._timers.call_later(delay, lambda: self._jobs.submit(lambda: self._restart_now(c)))

    def _restart_now(self, c: _Container) -> None:
        with self._lock:
            if c.status != "restarting" or c.id not in self._containers or self._closed or self._closing:
                return
            c.restart_timer = None
        try:
            self.start(c.id, manual=False)
        except errors.RuntimeError as exc:
            log.info("container %s: restart by its policy failed: %s", c.id[:12], exc)
            with self._lock:
                c.error = str(exc)
                self._save(c)

    def _cancel_restart(self, c: _Container) -> bool:
        """A pending policy restart cancelled (docker stop/kill/rm): the container is exited."""
        with self._lock:
            if c.status != "restarting":
                return False
            if c.restart_timer is not None:
                self._timers.cancel(c.restart_timer)
                c.restart_timer = None
            c.status = "exited"
            c.manually_stopped = True
            self._save(c)
            self._cond.notify_all()
        return True

    def _schedule_probe(self, c: _Container, delay: float | None = None) -> None:
        p = health.probe(c.config.get("Healthcheck"))
        if p is None:
            return
        with self._lock:
            if not c.running or self._closed:
                return
            if c.probe_timer is not None:
                self._timers.cancel(c.probe_timer)
            gen = c.probe_gen
            c.probe_timer = self._timers.call_later(
                p.interval if delay is None else delay, lambda: self._jobs.submit(lambda: self._probe_due(c, gen))
            )

    def _stop_probes(self, c: _Container) -> None:
        """The run ended (call with _lock): a probe of it that is due or running records nothing."""
        c.probe_gen += 1
        if c.probe_timer is not None:
            self._timers.cancel(c.probe_timer)
            c.probe_timer = None

    def _probe_due(self, c: _Container, gen: int) -> None:
        with self._lock:
            if gen != c.probe_gen or not c.running or self._closed or self._closing:
                return
            c.probe_timer = None
            if self._probes_running >= health.MAX_RUNNING:  # the sandbox's share: wait for a slot
                self._probes_waiting.append((c, gen))
                return
            self._probes_running += 1
        try:
            self._run_probe(c, gen)
        except Exception:
            log.exception("container %s: health probe failed to run", c.id[:12])
            self._probe_slot_free()

    def _probe_slot_free(self) -> None:
        with self._lock:
            self._probes_running -= 1
            nxt = self._probes_waiting.popleft() if self._probes_waiting else None
        if nxt is not None:
            self._jobs.submit(lambda: self._probe_due(*nxt))

    def _run_probe(self, c: _Container, gen: int) -> None:
        """One probe: ``runc exec`` of the test in the container (its user, env, workdir,
        capabilities, cgroup), output (stdout and stderr, first 4096 bytes) read on the
        watcher, exit on the pidfd, timeout on a timer; the result recorded by ``_probe_done``."""
        p = health.probe(c.config.get("Healthcheck"))
        assert p is not None
        start = time.time()
        if c.paused:
            self._probe_done(
                c, gen, p, start, -1, f"Container {c.id} is paused, unpause the container before exec".encode()
            )
            return
        d = self._dir(c.id)
        rootfs = d / "rootfs"
        try:
            user = fsutil.resolve_user(rootfs, c.config.get("User") or "")
            groups = _groups(rootfs, user, c.host_config)
        except ValueError as exc:
            self._probe_done(c, gen, p, start, -1, f"unable to start health check: {exc}".encode())
            return
        doc = {
            "terminal": False,
            "user": {"uid": user.uid, "gid": user.gid, "additionalGids": groups},
            "args": p.argv,
            "env": self._process_env(c, user, tty=False),
            "cwd": c.config.get("WorkingDir") or "/",
            "capabilities": {k: capabilities(c.host_config) for k in ("bounding", "effective", "permitted")},
            "noNewPrivileges": True,
        }
        n = secrets.token_hex(6)
        pfile, pidfile, logfile = d / f"health-{n}.json", d / f"health-{n}.pid", d / f"health-{n}.log"
        out_r, out_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        os.set_blocking(out_w, True)
        try:
            os.fchown(out_w, self.ctx.uid_base, self.ctx.uid_base)
            pfile.write_text(json.dumps(doc))
            argv = [self.ctx.runc, "--root", str(self.runc_root), "--log", str(logfile), "--log-format", "json"]
            argv += ["exec", "-d", "--pid-file", str(pidfile), "--process", str(pfile), c.id]
            rc = self.place.run_quiet(argv, timeout=RUNC_TIMEOUT, stdout=out_w, stderr=out_w)
            os.close(out_w)
            out_w = -1
            if rc != 0:
                os.close(out_r)
                self._probe_done(
                    c, gen, p, start, -1, f"OCI runtime exec failed: {bundle.runc_error(logfile)}".encode()
                )
                return
            pid = int(pidfile.read_text().strip())
        except BaseException:
            for fd in (out_r, out_w):
                if fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            raise
        finally:
            for f in (pfile, pidfile, logfile):
                with contextlib.suppress(FileNotFoundError):
                    f.unlink()
        buf = bytearray()
        lock = threading.Lock()
        state = {"done": False, "timed_out": False}

        def drain() -> bool:  # False at EOF (or once the result is recorded)
            with lock:
                if state["done"]:
                    return False
                while True:
                    try:
                        data = os.read(out_r, 65536)
                    except BlockingIOError:
                        return True
                    except OSError:
                        return False
                    if not data:
                        return False
                    if len(buf) < health.MAX_OUTPUT:
                        buf.extend(data[: health.MAX_OUTPUT - len(buf)])

        def expire() -> None:
            state["timed_out"] = True
            if proc_start(pid) is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal_mod.SIGKILL)

        timer = self._timers.call_later(p.timeout, expire)

        def exited() -> None:
            code = None
            while code is None:
                code = self._reap(pid, timeout=1.0)
                if code is None and proc_start(pid) is None:
                    code = self._reap(pid, timeout=0) if self._is_child(pid) else -1
            self._timers.cancel(timer)
            drain()
            with lock:
                state["done"] = True
                output = bytes(buf)
            if state["timed_out"]:
                exit_code, output = -1, f"Health check exceeded timeout ({p.timeout:g}s)".encode()
            else:
                exit_code = 128 - code if code < 0 else code
            self._probe_done(c, gen, p, start, exit_code, output)

        self._watcher.add(out_r, drain, lambda: os.close(out_r))
        self._watch_pid(pid, lambda: self._jobs.submit(exited))

    def _probe_done(self, c: _Container, gen: int, p: health.Probe, start: float, code: int, output: bytes) -> None:
        changed, status = False, ""
        with self._lock:
            if gen == c.probe_gen and c.running and c.id in self._containers:
                h = health.Health.from_json(c.health) or health.Health()
                started = parse_time(c.started_at) if c.started_at != ZERO_TIME else start
                changed = h.record(start=start, end=time.time(), exit_code=code, output=output, p=p, started_at=started)
                c.health = h.to_json()
                self._save(c)
                status = h.status
        if changed:
            self._event(f"health_status: {status}", c)
        self._probe_slot_free()
        self._schedule_probe(c)

    # -- pause / update ---------------------------------------------------------------------------

    def pause(self, cid: str) -> None:
        """``docker pause``: runc freezes the container's cgroup (v1 freezer or v2
        ``cgroup.freeze``), which lies below the sandbox's: nothing else is frozen."""
        c = self._get(cid)
        with self._lock:
            if not c.running:
                raise errors.Conflict(f"Container {c.id} is not running")
            if c.paused:
                raise errors.Conflict(f"Container {c.id} is already paused")
        r = self._runc("pause", c.id, check=False)
        if r.returncode != 0:
            raise errors.RuntimeError(f"Cannot pause container {c.id}: {r.stderr.decode(errors='replace').strip()}")
        with self._lock:
            c.paused = True
            self._save(c)
        self._event("pause", c)

    def unpause(self, cid: str) -> None:
        c = self._get(cid)
        with self._lock:
            if not c.paused or not c.running:
                raise errors.Conflict(f"Container {c.id} is not paused")
        self._thaw(c)
        self._event("unpause", c)

    def _thaw(self, c: _Container) -> None:
        r = self._runc("resume", c.id, check=False)
        if r.returncode != 0 and c.running:
            raise errors.RuntimeError(f"Cannot unpause container {c.id}: {r.stderr.decode(errors='replace').strip()}")
        with self._lock:
            c.paused = False
            self._save(c)

    def update(self, cid: str, body: dict[str, Any]) -> builtins.list[str]:
        """``docker update``: memory, CPUs (``--cpus``, quota/period, shares), pids and the
        restart policy, applied to a running container at once (``runc update``, its own
        cgroup, clamped to the sandbox's limits as at create). Anything else that is set is
        refused with the reason: nothing is accepted and left unapplied."""
        if not isinstance(body, dict):
            raise errors.BadRequest("the update configuration must be a JSON object")
        c = self._get(cid)
        refused = sorted(k for k, v in body.items() if k not in UPDATABLE and v not in (None, 0, "", [], {}, False))
        swap = body.get("MemorySwap")
        if swap not in (None, 0, -1):
            refused.append("MemorySwap")
        if refused:
            raise Forbidden(
                f"docker update of {', '.join(refused)} is not available in this lab: memory (-m), --cpus, "
                "--cpu-quota/--cpu-period, --cpu-shares, --pids-limit and --restart can be updated"
            )
        warnings: builtins.list[str] = []
        new: dict[str, Any] = {}
        for key in ("Memory", "NanoCpus", "CpuQuota", "CpuPeriod", "CpuShares"):
            v = body.get(key)
            if v is not None and not isinstance(v, int):
                raise errors.BadRequest(f"{key} must be an integer")
            if v:
                new[key] = v
        if body.get("PidsLimit") is not None:
            if not isinstance(body["PidsLimit"], int):
                raise errors.BadRequest("PidsLimit must be an integer")
            new["PidsLimit"] = body["PidsLimit"]
        if new.get("NanoCpus") and (new.get("CpuQuota") or new.get("CpuPeriod")):
            raise errors.BadRequest("Conflicting options: Nano CPUs and CPU Period cannot both be set")
        ncpu = os.cpu_count() or 1
        if "NanoCpus" in new and not 0.01 <= new["NanoCpus"] / 1e9 <= ncpu:
            raise errors.BadRequest(f"Range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available")
        mem = int(new.get("Memory") or 0)
        if mem and mem < 6 * 2**20:
            raise errors.BadRequest("Minimum memory limit allowed is 6MB")
        if mem > self.ctx.memory:
            warnings.append(
                f"memory limit {mem} is above your sandbox's ({self.ctx.memory}): the sandbox's limit applies"
            )
        policy = None
        given = body.get("RestartPolicy")
        if isinstance(given, dict) and (given.get("Name") or given.get("MaximumRetryCount")):
            policy = _restart_policy(given)
            if c.host_config.get("AutoRemove") and policy["Name"] not in ("", "no"):
                raise errors.BadRequest(
                    "Restart policy cannot be updated because AutoRemove is enabled for the container"
                )
        hc = {**c.host_config, **new}
        if "NanoCpus" in new:
            hc.pop("CpuQuota", None)
            hc.pop("CpuPeriod", None)
        elif "CpuQuota" in new or "CpuPeriod" in new:
            hc["NanoCpus"] = 0
        if policy is not None:
            hc["RestartPolicy"] = policy
        if c.running and new:
            res = self._resources(hc)
            res.pop("devices", None)
            if "PidsLimit" in new and new["PidsLimit"] <= 0:
                res["pids"] = {"limit": -1}  # unlimited in its own cgroup: the sandbox's limit still holds
            r = self.place.run(
                [self.ctx.runc, "--root", str(self.runc_root), "update", "-r", "-", c.id],
                input=json.dumps(res).encode(),
                timeout=RUNC_TIMEOUT,
                check=False,
            )
            if r.returncode != 0:
                why = r.stderr.decode(errors="replace").strip()
                raise errors.BadRequest(f"Cannot update container {c.id}: {why}")
        with self._lock:
            c.host_config = hc
            self._save(c)
        self._event("update", c)
        return warnings

    # -- lifecycle --------------------------------------------------------------------------------

    def stop(self, cid: str, *, timeout: int | None = None) -> None:
        c = self._get(cid)
        with self._cond:  # a start under way (a policy restart, say) is let finish, then stopped
            deadline = time.monotonic() + RUNC_TIMEOUT
            while c.status == "starting" and time.monotonic() < deadline:
                self._cond.wait(1.0)
        if self._cancel_restart(c):
            self._event("stop", c)
            return
        if not c.running:
            return
        if timeout is None:
            timeout = int(c.config.get("StopTimeout") or 10)
        sig = _signal_number(str(c.config.get("StopSignal") or "SIGTERM"))
        with self._lock:
            c.stopping = c.manually_stopped = True
            self._save(c)
        self._signal(c, sig)
        if c.paused:  # as dockerd: the signal is delivered once the container is thawed
            self._thaw(c)
        if not self._wait_state(c, timeout):
            self._event("kill", c, signal=str(int(signal_mod.SIGKILL)))
            self._signal(c, signal_mod.SIGKILL)
            self._wait_state(c, 30)
        self._await_exit_processed(c, 30)
        self._event("stop", c)

    def _signal(self, c: _Container, sig: int) -> None:
        if c.pid and proc_start(c.pid) == c.pid_start:
            with contextlib.suppress(ProcessLookupError):
                os.kill(c.pid, sig)

    def _wait_state(self, c: _Container, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while c.running or c.status == "starting":
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def kill(self, cid: str, *, signal: str = "SIGKILL") -> None:
        """``docker kill``: the signal; for SIGKILL, return once the container is dead and its
        exit processed (dockerd's ``Kill`` waits too), so ``kill && rm`` never finds it running.
        SIGKILL or the stop signal cancel the restart policy (dockerd's ``ExitOnNext``)."""
        c = self._get(cid)
        sig = _signal_number(signal or "SIGKILL")
        if self._cancel_restart(c):
            return
        if not c.running:
            raise errors.Conflict(f"Cannot kill container: {cid}: Container {c.id} is not running")
        final = sig in (signal_mod.SIGKILL, _signal_number(str(c.config.get("StopSignal") or "SIGTERM")))
        with self._lock:
            c.manually_stopped = True
            c.stopping = c.stopping or final
            self._save(c)
        self._event("kill", c, signal=str(sig))
        self._signal(c, sig)
        if final and c.paused:
            self._thaw(c)
        if sig == signal_mod.SIGKILL:
            if not self._wait_state(c, 30):
                raise errors.RuntimeError(f"Cannot kill container: {c.id}: it did not exit within 30s of SIGKILL")
            self._await_exit_processed(c, 30)

    def restart(self, cid: str, *, timeout: int | None = None) -> None:
        """``docker restart``: stop, then a start by hand (``RestartCount`` back to 0, as dockerd)."""
        c = self._get(cid)
        c.hand_restart = True
        try:
            self.stop(c.id, timeout=timeout)
            self._await_exit_processed(c, 30)
        finally:
            c.hand_restart = False
        self.start(c.id)
        self._event("restart", c)

    def wait(self, cid: str, *, condition: str = "not-running", cancel: threading.Event | None = None) -> int:
        c = self._get(cid)
        if condition not in ("not-running", "next-exit", "removed", ""):
            raise errors.BadRequest(f"invalid condition: {condition!r}")

        def check() -> None:
            if self._closed or (cancel is not None and cancel.is_set()):
                raise errors.RuntimeError("wait cancelled")

        with self._cond:
            if condition == "next-exit":  # the next exit from now, however short the run
                seen = c.exits
                while c.exits == seen and c.id in self._containers:
                    check()
                    self._cond.wait(0.5)
                return c.exit_code
            while True:
                gone = c.id not in self._containers
                if condition == "removed":
                    if gone:
                        return c.exit_code
                elif gone or not (c.running or c.status == "starting"):
                    return c.exit_code
                check()
                self._cond.wait(0.5)

    def remove(self, cid: str, *, force: bool = False, volumes: bool = False) -> None:
        self._remove(cid, force=force, volumes=volumes)

    def _remove(self, cid: str, *, force: bool, volumes: bool, keep_upper: bool = False) -> Path | None:
        c = self._get(cid)
        if c.status == "restarting":
            if not force:
                raise errors.Conflict(
                    f"You cannot remove a restarting container {c.id}. Stop the container before attempting "
                    "removal or force remove"
                )
            self._cancel_restart(c)
        if c.running or c.status == "starting":
            if not force:
                what = "paused" if c.paused else "running"
                raise errors.Conflict(
                    f"You cannot remove a {what} container {c.id}. Stop the container before "
                    "attempting removal or force remove"
                )
            with self._lock:
                c.stopping = True
            self._signal(c, signal_mod.SIGKILL)
            if c.paused:
                self._thaw(c)
            self._wait_state(c, 30)
        self._await_exit_processed(c, 30)
        with self._lock:
            if c.id not in self._containers or c.status == "removing":
                return None
            c.status = "removing"
        self._teardown(c)
        with self._lock:
            d = self._dir(c.id)
            kept: Path | None = None
            if keep_upper and (d / "upper").is_dir():
                kept = Path(self.store.tmp) / f"upper-{c.id[:12]}-{secrets.token_hex(4)}"
                (d / "upper").rename(kept)
            leftovers = mounts_under(d)
            if leftovers:
                self.store.helper({"op": "umount", "targets": leftovers})
            safe_rmtree(d)
            self._containers.pop(c.id, None)
            for e in [e for e in self._execs.values() if e.cid == c.id]:
                self._execs.pop(e.id, None)
            self._stop_probes(c)
            if c.restart_timer is not None:
                self._timers.cancel(c.restart_timer)
            self._cond.notify_all()
        self._emit("destroy", c)
        self._event("destroy", c)
        if volumes:
            for m in c.mounts:
                if m["Type"] == "volume" and self._volume_meta(m["Name"]).get("anonymous"):
                    with contextlib.suppress(errors.RuntimeError):
                        self.volume_remove(m["Name"])
        return kept

    def rename(self, cid: str, name: str) -> None:
        c = self._get(cid)
        with self._lock:
            old = c.name
            c.name = self._pick_name(name)
            self._save(c)
        self._event("rename", c, oldName="/" + old)

    def resolve(self, ref: str) -> str:
        with self._lock:
            if ref in self._containers:
                return ref
            name = ref.lstrip("/")
            for c in self._containers.values():
                if c.name == name:
                    return c.id
            if ref and re.fullmatch(r"[0-9a-f]+", ref):
                matches = [cid for cid in self._containers if cid.startswith(ref)]
                if len(matches) == 1:
                    return matches[0]
                if len(matches) > 1:
                    raise errors.BadRequest(f"multiple IDs found with provided prefix: {ref}")
        raise NotFound(f"No such container: {ref}")

    def detach(self) -> None:
        """runtimed is shutting down and containers keep running: stop collecting their
        output between two reads (their holders keep the pipes; the next Engine takes them
        back), so no chunk already read is lost. The engine is unusable afterwards."""
        self._detached.set()
        with self._lock:
            self._closing = self._closed = True
            self._cond.notify_all()
        self._timers.close()
        self._jobs.close()
        self._watcher.close()
        self._worker.close()
        self.store.close()

    def close(self, *, remove: bool) -> None:
        """Kill every container, delete its runc state, unmount everything under engine_root;
        with ``remove`` also forget the containers (the disk goes next)."""
        with self._lock:
            containers = list(self._containers.values())
            self._closing = True
        self._timers.close()  # no restart or probe starts from now on
        self._jobs.close()
        for c in containers:
            if c.running or c.status == "starting":
                self._signal(c, signal_mod.SIGKILL)
                if c.paused:
                    with contextlib.suppress(errors.RuntimeError):
                        self._thaw(c)
        for c in containers:
            self._wait_state(c, 15)
            self._await_exit_processed(c, 15)
        with self._lock:
            self._closed = True
            self._cond.notify_all()
        for c in containers:
            if c.pid and c.status in ("running", "starting"):
                self._reap(c.pid, timeout=5)
                with self._lock:
                    c.status, c.exit_code, c.finished_at = "exited", 137, now_rfc3339()
            self._teardown(c)
            with self._lock:
                self._save(c)
        if remove:
            with contextlib.suppress(errors.RuntimeError):
                netns.remove_table(self.ctx.pid, place=self.place)
            with contextlib.suppress(errors.RuntimeError):
                netns.remove_bridge(self.ctx.pid, netns.BRIDGE, place=self.place)
                for n in self.store.networks():
                    netns.remove_bridge(self.ctx.pid, netns.bridge_name(n.id), place=self.place)
        leftovers = mounts_under(self.root)
        if leftovers:
            self.store.helper({"op": "umount", "targets": sorted(leftovers, key=len, reverse=True)})
        self._watcher.close()
        self._worker.close()
        self.store.close()

    # -- inspect / list ---------------------------------------------------------------------------

    def _state_json(self, c: _Container) -> dict[str, Any]:
        status = "paused" if c.running and c.paused else c.status
        state = {
            "Status": {"starting": "created", "removing": "removing"}.get(status, status),
            "Running": c.running or c.status == "restarting",  # dockerd: a restarting container is Running
            "Paused": c.running and c.paused,
            "Restarting": c.status == "restarting",
            "OOMKilled": c.oom_killed,
            "Dead": c.status == "dead",
            "Pid": c.pid if c.running else 0,
            "ExitCode": c.exit_code,
            "Error": c.error,
            "StartedAt": c.started_at,
            "FinishedAt": c.finished_at,
        }
        if c.health is not None and health.probe(c.config.get("Healthcheck")) is not None:
            state["Health"] = c.health
        return state

    def _ports_json(self, c: _Container) -> dict[str, Any]:
        if c.running:
            return dict(c.ports)
        return {p: None for p in c.config.get("ExposedPorts") or {}}

    def _mounts_json(self, c: _Container) -> list[dict[str, Any]]:
        out = []
        for m in c.mounts:
            item = {
                "Type": m["Type"],
                "Source": m["Source"]
                if m["Type"] == "bind"
                else (f"/var/lib/docker/volumes/{m['Name']}/_data" if m["Type"] == "volume" else ""),
                "Destination": m["Destination"],
                "Mode": "" if m["RW"] else "ro",
                "RW": m["RW"],
                "Propagation": "rprivate" if m["Type"] == "bind" else "",
            }
            if m["Type"] == "volume":
                item["Name"], item["Driver"] = m["Name"], "local"
            out.append(item)
        return out

    def inspect(self, cid: str) -> dict[str, Any]:
        c = self._get(cid)
        user_nets = {n.id: n for n in self.store.networks()}
        with self._lock:
            networks: dict[str, dict[str, Any]] = {}
            for nid, ip in self._net_ips(c).items():
                n = user_nets.get(nid)
                subnet, gateway = (ipaddress.IPv4Network(n.subnet), n.gateway) if n else (netns.SUBNET, netns.GATEWAY)
                aliases = c.aliases if nid == c.network_id else c.extra_networks[nid].get("aliases") or []
                name = n.name if n else ("bridge" if not nid else str(c.host_config["NetworkMode"]))
                up = c.running and bool(ip)
                ep = c.endpoint if nid == c.network_id else {}
                lls = ep.get("LinkLocalIPs")
                mac = str(ep.get("MacAddress") or "") or (netns.mac_address(ip) if up else "")
                networks[name] = {
                    "IPAMConfig": {"LinkLocalIPs": list(lls)} if lls else None,
                    "Links": list(ep["Links"]) if ep.get("Links") else None,
                    "Aliases": [*aliases, c.id[:12]] if nid else None,
                    "NetworkID": nid or BRIDGE_ID,
                    "EndpointID": c.id if up else "",
                    "Gateway": gateway if up else "",
                    "IPAddress": ip if up else "",
                    "IPPrefixLen": subnet.prefixlen if up else 0,
                    "IPv6Gateway": "",
                    "GlobalIPv6Address": "",
                    "GlobalIPv6PrefixLen": 0,
                    "MacAddress": mac if up else str(ep.get("MacAddress") or ""),
                    "DriverOpts": dict(ep["DriverOpts"]) if ep.get("DriverOpts") else None,
                }
            default = {} if c.network_id else networks["bridge"]
            hc = {
                "NetworkMode": "default",
                "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
                **c.host_config,
                "LogConfig": c.host_config.get("LogConfig") or {"Type": "json-file", "Config": {}},
                "Runtime": c.host_config.get("Runtime") or "runc",
            }
            return {
                "Id": c.id,
                "Created": _ts(c.created),
                "Path": c.path,
                "Args": c.args,
                "State": self._state_json(c),
                "Image": c.image,
                "ResolvConfPath": str(self._dir(c.id) / "resolv.conf"),
                "HostnamePath": str(self._dir(c.id) / "hostname"),
                "HostsPath": str(self._dir(c.id) / "hosts"),
                "LogPath": str(self._dir(c.id) / "container.log"),
                "Name": "/" + c.name,
                "RestartCount": c.restart_count,
                "Driver": "overlay2",
                "Platform": "linux",
                "MountLabel": "",
                "ProcessLabel": "",
                "AppArmorProfile": "",
                "ExecIDs": [e.id for e in self._execs.values() if e.cid == c.id and e.running] or None,
                "HostConfig": hc,
                "GraphDriver": {"Name": "overlay2", "Data": None},
                "Mounts": self._mounts_json(c),
                "Config": c.config,
                "NetworkSettings": {
                    "Bridge": "",
                    "SandboxID": "",
                    "HairpinMode": False,
                    "Ports": self._ports_json(c),
                    "SandboxKey": "",
                    "Gateway": default.get("Gateway", ""),
                    "IPAddress": default.get("IPAddress", ""),
                    "IPPrefixLen": default.get("IPPrefixLen", 0),
                    "MacAddress": default.get("MacAddress", ""),
                    "Networks": {} if c.host_config.get("NetworkMode") == "none" else networks,
                },
            }

    def _status_text(self, c: _Container) -> str:
        if c.running and c.paused:
            return f"Up {_ago(parse_time(c.started_at))} (Paused)"
        if c.running:
            return f"Up {_ago(parse_time(c.started_at))}{health.ps_suffix(health.Health.from_json(c.health))}"
        if c.status == "restarting":
            return f"Restarting ({c.exit_code}) {_ago(parse_time(c.finished_at))} ago"
        if c.status in ("created", "starting"):
            return "Created"
        if c.status == "removing":
            return "Removal In Progress"
        return f"Exited ({c.exit_code}) {_ago(parse_time(c.finished_at))} ago"

    def list(self, *, all: bool = False, filters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:  # noqa: A002
        filters = filters or {}
        out = []
        with self._lock:
            containers = sorted(self._containers.values(), key=lambda c: c.created, reverse=True)
            for c in containers:
                full_state = self._state_json(c)
                state = full_state["Status"]
                if not all and not full_state["Running"] and "status" not in filters:
                    continue
                if "status" in filters and state not in filters["status"]:
                    continue
                health_status = (full_state.get("Health") or {}).get("Status", "none")
                if "health" in filters and health_status not in filters["health"]:
                    continue
                if "name" in filters and not any(re.search(f, c.name) for f in filters["name"]):
                    continue
                if "id" in filters and not any(c.id.startswith(f) for f in filters["id"]):
                    continue
                if "exited" in filters and (c.status != "exited" or str(c.exit_code) not in filters["exited"]):
                    continue
                if "label" in filters:
                    labels = c.config.get("Labels") or {}
                    ok = True
                    for f in filters["label"]:
                        k, sep, v = f.partition("=")
                        if k not in labels or (sep and labels[k] != v):
                            ok = False
                    if not ok:
                        continue
                if "network" in filters:
                    nets = self.inspect(c.id)["NetworkSettings"]["Networks"]
                    keys = [*nets, *(v["NetworkID"] for v in nets.values())]
                    if not any(k == f or (len(f) >= 2 and k.startswith(f)) for f in filters["network"] for k in keys):
                        continue
                if "ancestor" in filters:
                    ids = set()
                    for f in filters["ancestor"]:
                        with contextlib.suppress(errors.RuntimeError):
                            ids.add(self.store.resolve(f).id)
                    if c.image not in ids:
                        continue
                ports = []
                for port, binds in self._ports_json(c).items():
                    num, _, proto = port.partition("/")
                    if not binds:
                        ports.append({"PrivatePort": int(num), "Type": proto})
                    for b in binds or []:
                        ports.append(
                            {
                                "IP": b["HostIp"],
                                "PrivatePort": int(num),
                                "PublicPort": int(b["HostPort"]),
                                "Type": proto,
                            }
                        )
                out.append(
                    {
                        "Id": c.id,
                        "Names": ["/" + c.name],
                        "Image": c.image_ref,
                        "ImageID": c.image,
                        "Command": shlex.join([c.path, *c.args]),
                        "Created": int(c.created),
                        "Ports": ports,
                        "Labels": c.config.get("Labels") or {},
                        "State": state,
                        "Status": self._status_text(c),
                        "HostConfig": {"NetworkMode": c.host_config.get("NetworkMode", "default")},
                        "NetworkSettings": {"Networks": self.inspect(c.id)["NetworkSettings"]["Networks"]},
                        "Mounts": self._mounts_json(c),
                    }
                )
        return out

    def top(self, cid: str) -> dict[str, Any]:
        c = self._get(cid)
        if not c.running:
            raise errors.Conflict(f"Container {c.id} is not running")
        pids = []
        with contextlib.suppress(OSError):
            pids = [int(p) for p in self._cgroup_file(c, "pids", "cgroup.procs").read_text().split()]
        procs = []
        for pid in pids:
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
                # no command line: a zombie, or a process in the middle of an exec; ps shows [comm]
                cmd = cmd or "[" + Path(f"/proc/{pid}/comm").read_text().strip() + "]"
                uid = Path(f"/proc/{pid}").stat().st_uid - self.ctx.uid_base
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            # the pid as the container sees it (the last NSpid), never the host's
            nspid = next((ln.split()[-1] for ln in status.splitlines() if ln.startswith("NSpid:")), "?")
            procs.append([str(uid), nspid, cmd])
        return {"Titles": ["UID", "PID", "CMD"], "Processes": procs}

    def port(self, cid: str) -> dict[str, Any]:
        return self._ports_json(self._get(cid))

    def stats_once(self, cid: str) -> dict[str, Any]:
        """A small subset of GET /containers/{id}/stats (memory, pids, cpu usage)."""
        c = self._get(cid)

        def read_int(controller: str, v1: str, v2: str) -> int:
            f = self._cgroup_file(c, controller, v2 if self._cgroups.v2 else v1)
            try:
                raw = f.read_text().split()
                if self._cgroups.v2 and v2 == "cpu.stat":
                    return int(raw[raw.index("usage_usec") + 1]) * 1000
                return int(raw[0]) if raw[0] != "max" else self.ctx.memory
            except (OSError, ValueError, IndexError):
                return 0

        return {
            "id": c.id,
            "name": "/" + c.name,
            "read": now_rfc3339(),
            "memory_stats": {
                "usage": read_int("memory", "memory.usage_in_bytes", "memory.current"),
                "limit": min(
                    read_int("memory", "memory.limit_in_bytes", "memory.max") or self.ctx.memory, self.ctx.memory
                ),
            },
            "pids_stats": {"current": read_int("pids", "pids.current", "pids.current")},
            "cpu_stats": {"cpu_usage": {"total_usage": read_int("cpuacct", "cpuacct.usage", "cpu.stat")}},
            **({"networks": self._net_stats(c)} if c.running and c.host_config.get("NetworkMode") != "none" else {}),
        }

    def _net_stats(self, c: _Container) -> dict[str, dict[str, int]]:
        """Per interface counters of the container's network namespace (``/proc/<pid>/net/dev``
        of its init: the kernel's view of that netns), ``lo`` left out as dockerd does."""
        out: dict[str, dict[str, int]] = {}
        if not (c.pid and proc_start(c.pid) == c.pid_start):
            return out
        try:
            lines = Path(f"/proc/{c.pid}/net/dev").read_text().splitlines()[2:]
        except OSError:
            return out
        names = ("bytes", "packets", "errors", "dropped")
        for line in lines:
            name, _, rest = line.partition(":")
            name, fields = name.strip(), rest.split()
            if name == "lo" or len(fields) < 16:
                continue
            nums = [int(x) for x in fields]
            stats = {f"rx_{k}": nums[i] for i, k in enumerate(names)}
            stats.update({f"tx_{k}": nums[8 + i] for i, k in enumerate(names)})
            out[name] = stats
        return out

    # -- logs / attach ----------------------------------------------------------------------------

    def logs(
        self,
        cid: str,
        *,
        follow: bool,
        stdout: bool,
        stderr: bool,
        since: float = 0,
        until: float = 0,
        tail: int | None = None,
        timestamps: bool = False,
        cancel: threading.Event | None = None,
    ) -> Iterator[tuple[int, bytes]]:
        c = self._get(cid)
        assert c.out is not None
        out = c.out
        live: Stream | None = None
        upto: int | None = None
        if follow:
            live = Stream(tty=c.tty)
            upto, idle = out.subscribe(live)
            if idle:  # nothing running: no more output will come
                out.unsubscribe(live)
                live = None
        want = {1} if stdout else set()
        if stderr:
            want.add(2)

        def fmt(t: float, data: bytes) -> bytes:
            return (_ts(t).encode() + b" " + data) if timestamps else data

        def gen() -> Iterator[tuple[int, bytes]]:
            try:
                recs = [
                    r
                    for r in _lines(out.records(upto))
                    if r[1] in want and r[0] >= since and (not until or r[0] <= until)
                ]
                if tail is not None and tail >= 0:
                    recs = recs[len(recs) - tail :] if tail else []
                for t, s, data in recs:
                    yield s, fmt(t, data)
                if live is None or (until and until < time.time()):
                    return
                while True:
                    if cancel is not None and cancel.is_set():
                        return
                    try:
                        item = live.read(timeout=0.5)
                    except TimeoutError:
                        continue
                    if item is None:
                        return
                    if item[0] in want:
                        yield item[0], fmt(time.time(), item[1])
            finally:
                if live is not None:
                    out.unsubscribe(live)

        return gen()

    def attach(self, cid: str, *, stdin: bool, stdout: bool, stderr: bool, logs: bool, stream: bool) -> Stream:
        c = self._get(cid)
        assert c.out is not None
        out = c.out
        want = ({1} if stdout else set()) | ({2} if stderr else set())
        s = Stream(
            tty=c.tty,
            write=self._stdin_writer(c) if stdin and c.config.get("OpenStdin") else None,
            close_stdin=(lambda: self._close_container_stdin(c)) if stdin and c.config.get("StdinOnce") else None,
        )
        inner = Stream(tty=c.tty)
        upto = out.subscribe(inner)[0] if stream else None
        if not stream:
            inner.push(None)

        def forward() -> None:
            if logs:
                for _t, st, data in out.records(upto):
                    if st in want:
                        s.push((1 if c.tty else st, data))
            while True:
                try:
                    item = inner.read(timeout=1.0)
                except TimeoutError:
                    if s._closed:
                        break
                    continue
                if item is None:
                    break
                if item[0] in want:
                    while s.over():  # the client reads slowly: inner fills, the pump pauses
                        s.wait_room(1.0)
                    s.push(item)
            out.unsubscribe(inner)
            s.push(None)

        def detach() -> None:
            out.unsubscribe(inner)
            inner.push(None)

        s._on_close = detach
        threading.Thread(target=forward, daemon=True, name=f"attach-{c.id[:12]}").start()
        return s

    def resize(self, cid: str, *, height: int, width: int) -> None:
        c = self._get(cid)
        pty = c.pty
        if pty is not None:  # a stopped container's, or a non-TTY one's: nothing to resize
            with contextlib.suppress(OSError):  # closed by the pump as the process ended
                self._set_winsize(pty, height, width)

    # -- exec -------------------------------------------------------------------------------------

    def exec_create(self, cid: str, body: dict[str, Any]) -> str:
        c = self._get(cid)
        if c.status == "restarting":
            raise errors.Conflict(f"Container {c.id} is restarting, wait until the container is running")
        if not c.running:
            raise errors.Conflict(f"Container {c.id} is not running")
        if c.paused:
            raise errors.Conflict(f"Container {c.id} is paused, unpause the container before exec")
        if body.get("Privileged"):
            raise Forbidden(PRIVILEGED_REASON)
        cmd = body.get("Cmd")
        if isinstance(cmd, str):
            cmd = shlex.split(cmd)
        if not cmd:
            raise errors.BadRequest("No exec command specified")
        eid = secrets.token_hex(32)
        cfg = {
            "User": str(body.get("User") or c.config.get("User") or ""),
            "Privileged": False,
            "Tty": bool(body.get("Tty")),
            "AttachStdin": bool(body.get("AttachStdin")),
            "AttachStdout": bool(body.get("AttachStdout", True)),
            "AttachStderr": bool(body.get("AttachStderr", True)),
            "Env": list(body.get("Env") or []),
            "WorkingDir": str(body.get("WorkingDir") or ""),
            "Cmd": [str(x) for x in cmd],
            "ConsoleSize": body.get("ConsoleSize"),
        }
        with self._lock:
            if len(self._execs) >= self.limits.execs:
                for old in [x for x in self._execs.values() if x.done.is_set()]:
                    if len(self._execs) < self.limits.execs:
                        break
                    del self._execs[old.id]
            if len(self._execs) >= self.limits.execs:
                remedy = "let running ones finish, or remove their container"
                raise Forbidden(quota_message("exec instances", self.limits.execs, remedy))
            self._execs[eid] = _Exec(eid, c.id, cfg)
        return eid

    def _exec(self, eid: str) -> _Exec:
        with self._lock:
            e = self._execs.get(eid)
        if e is None:
            raise NotFound(f"No such exec instance: {eid}")
        return e

    def exec_start(self, eid: str, *, detach: bool, tty: bool) -> Stream | None:
        """Run an exec. Its process gets a TTY if exec-create asked for one; ``tty`` (exec-start's
        ``Tty``) decides only the framing of the attached stream, raw or multiplexed, as
        dockerd's exec start router does."""
        e = self._exec(eid)
        c = self._get(e.cid)
        if not c.running:
            raise errors.Conflict(f"Container {c.id} is not running")
        if c.paused:
            raise errors.Conflict(f"Container {c.id} is paused, unpause the container before exec")
        with self._lock:
            if e.running or e.exit_code is not None:
                raise errors.Conflict(f"Error: Exec command {eid} has already run")
            e.running = True
        framing_tty, tty = tty, bool(e.config["Tty"])
        d = self._dir(c.id)
        rootfs = d / "rootfs"
        try:
            user = fsutil.resolve_user(rootfs, e.config["User"])
            _groups(rootfs, user, c.host_config)
        except ValueError as exc:
            e.running, e.exit_code = False, 126
            raise errors.BadRequest(f"unable to start exec: {exc}") from None
        env = _replace_or_append_env(self._process_env(c, user, tty=tty), [str(x) for x in e.config["Env"]])
        doc: dict[str, Any] = {
            "terminal": tty,
            "user": {"uid": user.uid, "gid": user.gid, "additionalGids": _groups(rootfs, user, c.host_config)},
            "args": e.config["Cmd"],
            "env": env,
            "cwd": e.config["WorkingDir"] or c.config.get("WorkingDir") or "/",
            "capabilities": {k: capabilities(c.host_config) for k in ("bounding", "effective", "permitted")},
            "noNewPrivileges": True,
        }
        size = e.config.get("ConsoleSize") or [24, 80]
        if tty:
            doc["consoleSize"] = {"height": int(size[0]), "width": int(size[1])}
        n = eid[:12]
        pfile, pidfile, logfile = d / f"exec-{n}.json", d / f"exec-{n}.pid", d / f"exec-{n}.log"
        sock_path = Path()
        pfile.write_text(json.dumps(doc))
        attach_in = e.config["AttachStdin"] and not detach
        sock: socket.socket | None = None
        child: builtins.list[int] = []
        ours: builtins.list[int] = []
        stream: Stream | None = None
        try:
            if tty:
                sock, sock_path = _console_socket()
                stdio = (subprocess.DEVNULL, subprocess.DEVNULL, subprocess.DEVNULL)
                out_r = err_r = -1
            elif detach:
                stdio = (subprocess.DEVNULL, subprocess.DEVNULL, subprocess.DEVNULL)
                out_r = err_r = -1
            else:
                stdio, e.stdin_fd, out_r, err_r = _stdio_pipes(attach_in, child, ours)
            argv = [self.ctx.runc, "--root", str(self.runc_root), "--log", str(logfile), "--log-format", "json"]
            argv += ["exec", "-d", "--pid-file", str(pidfile), "--process", str(pfile)]
            if tty:
                argv += ["--tty", "--console-socket", str(sock_path)]
            argv.append(c.id)
            rc = self.place.run_quiet(argv, timeout=RUNC_TIMEOUT, stdin=stdio[0], stdout=stdio[1], stderr=stdio[2])
            for fd in child:
                os.close(fd)
            child = []
            if rc != 0:
                why = bundle.runc_error(logfile)
                e.exit_code = 127 if "no such file" in why or "not found" in why else 126
                raise errors.BadRequest(f"OCI runtime exec failed: {why}")
            e.pid = int(pidfile.read_text().strip())
            if sock is not None:
                e.pty = bundle.receive_pty_master(sock)
                self._set_winsize(e.pty, int(size[0]), int(size[1]))
            pending = {"n": 0}
            if not detach:

                def write(data: bytes) -> None:
                    fd = e.pty if e.pty is not None else e.stdin_fd
                    if fd is not None:
                        with contextlib.suppress(OSError):
                            os.write(fd, data)

                def close_in() -> None:
                    fd, e.stdin_fd = e.stdin_fd, None
                    if fd is not None:
                        with contextlib.suppress(OSError):
                            os.close(fd)
                    elif e.pty is not None:
                        with contextlib.suppress(OSError):
                            os.write(e.pty, b"\x04")

                stream = Stream(
                    tty=framing_tty, write=write if attach_in else None, close_stdin=close_in if attach_in else None
                )
                lock = threading.Lock()

                def one_done() -> None:
                    with lock:
                        pending["n"] -= 1
                        last = pending["n"] == 0
                    if last:  # the stream ends once the exit code is known (exec inspect)
                        assert stream is not None
                        self._when_exec_done(e, lambda: stream.push(None))

                if e.pty is not None:
                    pending["n"] = 1
                    pty_fd = os.dup(e.pty)
                    self._pump(stream, pty_fd, 1, one_done)
                else:
                    pending["n"] = 2
                    self._pump(stream, out_r, 1, one_done)
                    self._pump(stream, err_r, 2, one_done)
                    ours = [fd for fd in ours if fd not in (out_r, err_r)]
            elif e.pty is not None:
                # detached with a TTY: drain the PTY so the process never blocks on output
                self._pump(Stream(tty=True), os.dup(e.pty), 1)
        except BaseException:
            for fd in child + ours:
                with contextlib.suppress(OSError):
                    os.close(fd)
            e.running = False
            if e.exit_code is None:
                e.exit_code = 126
            self._exec_done(e)
            raise
        finally:
            if sock is not None:
                sock.close()
                shutil.rmtree(sock_path.parent, ignore_errors=True)
            for p in (pfile, pidfile, logfile):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
        self._watch_pid(e.pid, lambda: self._exec_exited(e))
        return stream

    def _when_exec_done(self, e: _Exec, fn: Callable[[], None]) -> None:
        with self._lock:
            if not e.done.is_set():
                e.when_done.append(fn)
                return
        fn()

    def _exec_done(self, e: _Exec) -> None:
        with self._lock:
            e.done.set()
            fns, e.when_done = e.when_done, []
        for fn in fns:
            fn()

    def _exec_exited(self, e: _Exec) -> None:
        code: int | None = None
        while code is None:
            code = self._reap(e.pid, timeout=1.0)
            if code is None and proc_start(e.pid) is None:
                code = self._reap(e.pid, timeout=0) if self._is_child(e.pid) else 255
        with self._lock:
            e.exit_code = 128 - code if code < 0 else code
            e.running = False
            fd, e.stdin_fd = e.stdin_fd, None
            pty, e.pty = e.pty, None
        for x in (fd, pty):
            if x is not None:
                with contextlib.suppress(OSError):
                    os.close(x)
        self._exec_done(e)

    @staticmethod
    def _is_child(pid: int) -> bool:
        try:
            return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]) == os.getpid()
        except (OSError, ValueError, IndexError):
            return False

    def exec_inspect(self, eid: str) -> dict[str, Any]:
        e = self._exec(eid)
        return {
            "ID": e.id,
            "Running": e.running,
            "ExitCode": e.exit_code,
            "ProcessConfig": {
                "tty": e.config["Tty"],
                "entrypoint": e.config["Cmd"][0],
                "arguments": e.config["Cmd"][1:],
                "privileged": False,
                "user": e.config["User"],
            },
            "OpenStdin": e.config["AttachStdin"],
            "OpenStderr": e.config["AttachStderr"],
            "OpenStdout": e.config["AttachStdout"],
            "CanRemove": False,
            "ContainerID": e.cid,
            "DetachKeys": "",
            "Pid": e.pid,
        }

    def exec_resize(self, eid: str, *, height: int, width: int) -> None:
        pty = self._exec(eid).pty
        if pty is not None:
            with contextlib.suppress(OSError):
                self._set_winsize(pty, height, width)

    # -- docker diff / docker cp ------------------------------------------------------------------

    def changes(self, ref: str) -> builtins.list[dict[str, Any]]:
        """``docker diff``: the container's writable layer against its image (changes.py); the
        files and dirs the engine mounts (Docker's init layer, volumes, binds) are left out."""
        c = self._get(ref)
        image = self.store.resolve(c.image)
        lowers = self.store._lower_dirs([*image.layers, self._init_layer_lower()])
        hidden = [*(f"/{p}" for p in INIT_FILES), "/dev", "/proc", "/sys", *(m["Destination"] for m in c.mounts)]
        return changes.changes(self._dir(c.id) / "upper", [Path(x["path"]) for x in reversed(lowers)], hidden=hidden)

    def container_fs(self, ref: str) -> archive.ContainerFS:
        """``docker cp``: its tar runs inside the container (archive.py); in a stopped one, in a
        one-off runc container on the container's own filesystem (``_spawn_stopped``)."""
        c = self._get(ref)
        if c.status == "removing":
            raise errors.Conflict(f"container {c.id[:12]} is being removed")
        if c.running:
            return archive.ContainerFS(lambda argv, stdin: self._spawn_in(c, argv, stdin=stdin), ref)
        self._await_exit_processed(c, 30)  # its teardown unmounts the root: before ours mounts it
        return archive.ContainerFS(lambda argv, stdin: self._spawn_stopped(c, argv, stdin=stdin), ref)

    def _spawn_in(self, c: _Container, argv: builtins.list[str], *, stdin: bool) -> subprocess.Popen[bytes]:
        """Run ``argv`` in the running container as its root, the way exec runs a process
        (``runc exec``: its namespaces, capabilities, seccomp and cgroup), with pipes."""
        d = self._dir(c.id)
        n = secrets.token_hex(6)
        pfile, pidfile, logfile = d / f"cp-{n}.json", d / f"cp-{n}.pid", d / f"cp-{n}.log"
        doc = {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": argv,
            "env": [f"PATH={DEFAULT_PATH}"],
            "cwd": "/",
            "capabilities": {k: CAPS for k in ("bounding", "effective", "permitted")},
            "noNewPrivileges": True,
        }
        pfile.write_text(json.dumps(doc))

        def launch(stdin_fd: int, stdout_fd: int, stderr_fd: int) -> int:
            cmd = [self.ctx.runc, "--root", str(self.runc_root), "--log", str(logfile), "--log-format", "json"]
            cmd += ["exec", "-d", "--pid-file", str(pidfile), "--process", str(pfile), c.id]
            rc = self.place.run_quiet(cmd, timeout=RUNC_TIMEOUT, stdin=stdin_fd, stdout=stdout_fd, stderr=stderr_fd)
            if rc != 0:
                raise archive.SpawnFailed(f"OCI runtime exec failed: {bundle.runc_error(logfile)}")
            return int(pidfile.read_text().strip())

        try:
            return _AdoptedPopen(
                launch,
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                argv=argv,
            )
        finally:
            for p in (pfile, pidfile, logfile):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()

    # -- docker cp on a stopped container, docker commit, docker export -------------------------

    def _rootfs(self, c: _Container) -> Path:
        """The container's merged root (image layers, init layer, its upper), mounted on the
        host where it is not running; ``start`` reuses the mount, teardown and rm unmount it."""
        d = self._dir(c.id)
        with self._rootfs_lock:
            if not mounted(d / "rootfs"):
                image = self.store.resolve(c.image)
                (d / "rootfs").mkdir(exist_ok=True)
                self.store.mount(
                    [*image.layers, self._init_layer_lower()], d / "rootfs", upper=d / "upper", work=d / "work"
                )
        return d / "rootfs"

    def _spawn_stopped(self, c: _Container, argv: builtins.list[str], *, stdin: bool) -> subprocess.Popen[bytes]:
        """Run ``argv`` as root in a one-off runc container on a stopped container's root
        filesystem, volumes and binds (its own runc config: user namespace, capabilities,
        seccomp, a cgroup below the sandbox's; no network), as dockerd mounts a stopped
        container's filesystem for ``docker cp``. The host never walks that tree itself."""
        d = self._dir(c.id)
        rootfs = self._rootfs(c)
        binds = self._stage_binds(c)
        hc = dict(c.host_config)
        hc["NetworkMode"] = "none"
        probe = _Container(**{**{k: getattr(c, k) for k in _Container.PERSISTED}, "host_config": hc})
        cfg = self._runc_config(probe, rootfs, fsutil.ExecUser(0, 0, (), "/"), binds)
        managed = {f"/{name}" for name in INIT_FILES}
        cfg["mounts"] = [m for m in cfg["mounts"] if m["destination"] not in managed]
        n = secrets.token_hex(6)
        cfg["process"] = {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": argv,
            "env": [f"PATH={DEFAULT_PATH}"],
            "cwd": "/",
            "capabilities": {k: CAPS for k in ("bounding", "effective", "permitted")},
            "noNewPrivileges": True,
        }
        cfg["linux"]["cgroupsPath"] = f"{self.ctx.cgroup_path}/docker-{c.id[:12]}-cp{n}"
        bdir = d / f"cp-{n}"
        bdir.mkdir(mode=0o700)
        (bdir / "config.json").write_text(json.dumps(cfg))
        rid = f"{c.id[:12]}-cp-{n}"
        cmd = [self.ctx.runc, "--root", str(self.runc_root), "--log", str(bdir / "runc.log"), "--log-format", "json"]
        cmd += ["run", "--bundle", str(bdir), rid]

        def cleanup() -> None:
            with contextlib.suppress(errors.RuntimeError, OSError):
                self._runc("delete", "--force", rid, check=False)
            shutil.rmtree(bdir, ignore_errors=True)

        try:
            proc = _OneOff(
                self.place.popen(
                    cmd,
                    stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                ),
                cleanup,
            )
        except BaseException:
            cleanup()
            raise
        return proc  # type: ignore[return-value]

    @contextlib.contextmanager
    def _paused_for(self, c: _Container, pause: bool) -> Iterator[None]:
        """dockerd pauses (freezes) a running container while it commits it, unless told not to;
        one the student paused stays paused."""
        if not (pause and c.running and not c.paused):
            yield
            return
        r = self._runc("pause", c.id, check=False)
        if r.returncode != 0:
            why = (r.stderr or b"").decode(errors="replace").strip()[-300:]
            raise errors.RuntimeError(
                f"docker commit could not pause the container ({why or 'runc pause failed'}): "
                "commit it with --pause=false, or stop it first"
            )
        try:
            yield
        finally:
            self._runc("resume", c.id, check=False)

    def commit(
        self,
        ref: str,
        *,
        tag: str = "",
        author: str = "",
        comment: str = "",
        pause: bool = True,
        changes: builtins.list[str] | None = None,
        config: dict[str, Any] | None = None,
    ) -> str:
        """``docker commit`` (moby ``daemon/commit.go``): the container's writable layer on top
        of its image, its config (the request's non-empty fields win, then ``changes``)."""
        c = self._get(ref)
        if c.status == "removing":
            raise errors.Conflict(f"container {c.id[:12]} is being removed")
        image = self.store.resolve(c.image)
        cfg = copy.deepcopy(c.config)
        for k, v in (config or {}).items():
            if v not in (None, "", [], {}, 0, False):
                cfg[k] = copy.deepcopy(v)
        cfg = apply_changes(cfg, changes or [])
        with self.store.holding_new_layers():  # a prune meanwhile keeps the new layer
            with self._paused_for(c, pause):
                layer = self.store.layer_from_tree(self._dir(c.id) / "upper", what="docker commit")
            created = now_rfc3339()
            row: dict[str, Any] = {"created": created, "created_by": " ".join([c.path, *c.args]).strip()}
            if author:
                row["author"] = author
            if comment:
                row["comment"] = comment
            if layer is None:
                row["empty_layer"] = True
            doc: dict[str, Any] = {
                "architecture": "amd64",
                "os": "linux",
                "created": created,
                "config": cfg,
                "container": c.id,
                "container_config": copy.deepcopy(c.config),
                "docker_version": ENGINE_VERSION,
                "history": [*(image.config.get("history") or []), row],
            }
            if author:
                doc["author"] = author
            if comment:
                doc["comment"] = comment
            layers = [*image.layers, *([layer] if layer is not None else [])]
            return self.store.commit(doc, layers, parent=image.id, tags=[tag] if tag else []).id

    def export(self, ref: str) -> Iterator[bytes]:
        """``docker export``: the container's root filesystem (without its volumes and binds, as
        dockerd's) as a tar in container uids, read from its merged mount on the host by a
        descriptor-relative walk that follows no link."""
        c = self._get(ref)
        if c.status == "removing":
            raise errors.Conflict(f"container {c.id[:12]} is being removed")
        if not c.running:
            self._await_exit_processed(c, 30)
        return self.store.layer_tar(self._rootfs(c))

    def remove_link(self, name: str) -> None:
        """``DELETE /containers/{/parent/alias}?link=1`` (moby ``daemon.rmLink``): only legacy
        links (the default bridge's ``--link``) are registered under such a name, as in
        dockerd; any other name answers dockerd's 404, a container's own name its conflict.
        A running parent's /etc/hosts loses the link's names at once."""
        full = "/" + name.lstrip("/")
        parent, _, alias = full.rpartition("/")
        if not parent:
            self._get(name)  # dockerd: the container must exist, then this
            raise errors.RuntimeError("Conflict, cannot remove the default link name of the container")
        found: _Container | None = None
        with self._lock:
            p = next((x for x in self._containers.values() if "/" + x.name == parent), None)
            if p is not None and str(p.host_config.get("NetworkMode") or "default") in ("default", "bridge"):
                links = [str(x) for x in p.host_config.get("Links") or []]
                kept = [x for x in links if (x.partition(":")[2] or x.partition(":")[0]).rpartition("/")[2] != alias]
                if len(kept) != len(links):
                    p.host_config["Links"] = kept or None
                    self._save(p)
                    found = p
        if found is None:
            raise NotFound(f"No such container: {name}")
        if found.running:
            self._write_hosts(found)

    # -- volumes ----------------------------------------------------------------------------------

    def _volume_path(self, name: str) -> str:
        return str(self.volumes_dir / name / "_data")

    def _volume_meta(self, name: str) -> dict[str, Any]:
        try:
            data = json.loads((self.volumes_dir / name / "meta.json").read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _ensure_volume(self, name: str, *, anonymous: bool = False, labels: dict[str, str] | None = None) -> str:
        if not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+", name):
            raise errors.BadRequest(
                f'create {name}: "{name}" includes invalid characters for a local volume name, only '
                '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, use absolute path'
            )
        d = self.volumes_dir / name
        if not (d / "_data").is_dir():
            if sum(1 for _ in self.volumes_dir.iterdir()) >= self.limits.volumes:
                raise Forbidden(quota_message("volumes", self.limits.volumes, "docker volume rm, docker volume prune"))
            d.mkdir(mode=0o711, exist_ok=True)
            (d / "meta.json").write_text(
                json.dumps({"CreatedAt": now_rfc3339(), "Labels": labels or {}, "anonymous": anonymous})
            )
            (d / "_data").mkdir(mode=0o755)
            os.chown(d / "_data", self.ctx.uid_base, self.ctx.uid_base)
        return name

    def _volume_json(self, name: str) -> dict[str, Any]:
        meta = self._volume_meta(name)
        return {
            "CreatedAt": meta.get("CreatedAt", ""),
            "Driver": "local",
            "Labels": meta.get("Labels") or None,
            "Mountpoint": f"/var/lib/docker/volumes/{name}/_data",
            "Name": name,
            "Options": None,
            "Scope": "local",
        }

    def _volume_users(self, name: str) -> builtins.list[str]:
        with self._lock:
            return [c.id for c in self._containers.values() if any(m.get("Name") == name for m in c.mounts)]

    def volumes(self) -> builtins.list[dict[str, Any]]:
        return [self._volume_json(d.name) for d in sorted(self.volumes_dir.iterdir()) if (d / "_data").is_dir()]

    def volume_create(self, body: dict[str, Any]) -> dict[str, Any]:
        driver = body.get("Driver") or "local"
        if driver != "local":
            raise errors.NotAvailable(f"volume driver {driver!r} is not available in this lab (only local)")
        name = str(body.get("Name") or "") or secrets.token_hex(32)
        with self._lock:
            self._ensure_volume(name, labels=body.get("Labels") or {})
        return self._volume_json(name)

    def volume_inspect(self, name: str) -> dict[str, Any]:
        if (
            not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", name or "")
            or not (self.volumes_dir / name / "_data").is_dir()
        ):
            raise NotFound(f"get {name}: no such volume")
        return self._volume_json(name)

    def volume_remove(self, name: str, *, force: bool = False) -> None:
        self.volume_inspect(name)
        users = self._volume_users(name)
        if users:
            raise errors.Conflict(f"remove {name}: volume is in use - [{', '.join(users)}]")
        safe_rmtree(self.volumes_dir / name)

    def volume_prune(self) -> dict[str, Any]:
        deleted: builtins.list[str] = []
        reclaimed = 0
        for v in self.volumes():
            name = v["Name"]
            if self._volume_users(name):
                continue
            reclaimed += _du(self.volumes_dir / name / "_data")
            safe_rmtree(self.volumes_dir / name)
            deleted.append(name)
        return {"VolumesDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    def container_prune(self) -> dict[str, Any]:
        deleted: builtins.list[str] = []
        reclaimed = 0
        with self._lock:
            victims = [c for c in self._containers.values() if c.status in ("exited", "created", "dead")]
        for c in victims:
            reclaimed += _du(self._dir(c.id) / "upper")
            with contextlib.suppress(errors.RuntimeError):
                self.remove(c.id)
                deleted.append(c.id)
        return {"ContainersDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    # -- networks ---------------------------------------------------------------------------------

    def _find_network(self, ref: str) -> Network | str:
        """A user-defined network, or the name of a predefined one, by name, id or id prefix."""
        nets = self.store.networks()
        for name in BUILTIN_NETWORKS:
            if ref in (name, BUILTIN_NETWORKS[name][1]):
                return name
        for n in nets:
            if ref in (n.name, n.id):
                return n
        if len(ref) >= 2 and re.fullmatch(r"[0-9a-f]+", ref):
            found: builtins.list[Network | str] = [n for n in nets if n.id.startswith(ref)]
            found += [name for name, (_, nid) in BUILTIN_NETWORKS.items() if nid.startswith(ref)]
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise errors.BadRequest(f"network {ref} is ambiguous ({len(found)} matches found based on ID prefix)")
        raise NotFound(f"network {ref} not found")

    def _network_members(self, net: Network | str) -> builtins.list[tuple[_Container, str]]:
        """Running containers attached to a network, with their address there (call with _lock)."""
        out = []
        for c in self._containers.values():
            if not c.running:
                continue
            mode = str(c.host_config.get("NetworkMode") or "default")
            if isinstance(net, Network):
                ip = self._net_ips(c).get(net.id)
                if ip is not None:
                    out.append((c, ip))
            elif not c.network_id and {"bridge": mode in ("default", "bridge")}.get(net, mode == net):
                out.append((c, c.ip))
        return sorted(out, key=lambda m: tuple(int(b) for b in m[1].split(".")) if m[1] else ())

    def _network_json(self, net: Network | str, *, containers: bool) -> dict[str, Any]:
        if isinstance(net, Network):
            name, nid, driver, created = net.name, net.id, "bridge", net.created
            ipam = [{"Subnet": net.subnet, "Gateway": net.gateway}]
            options = dict(net.options)
            internal, labels, prefix = net.internal, dict(net.labels), ipaddress.IPv4Network(net.subnet).prefixlen
        else:
            name, (driver, nid) = net, BUILTIN_NETWORKS[net]
            created, internal, labels, prefix = "2024-01-01T00:00:00Z", False, {}, netns.SUBNET.prefixlen
            ipam = [{"Subnet": str(netns.SUBNET), "Gateway": netns.GATEWAY}] if net == "bridge" else []
            options = BRIDGE_OPTIONS if net == "bridge" else {}
        members: dict[str, Any] = {}
        if containers:
            with self._lock:
                for c, ip in self._network_members(net):
                    members[c.id] = {
                        "Name": c.name,
                        "EndpointID": c.id,
                        "MacAddress": (
                            str(c.endpoint.get("MacAddress") or "")
                            if (c.network_id == net.id if isinstance(net, Network) else not c.network_id)
                            else ""
                        )
                        or (netns.mac_address(ip) if net != "host" and ip else ""),
                        "IPv4Address": f"{ip}/{prefix}" if net not in ("host", "none") else "",
                        "IPv6Address": "",
                    }
        return {
            "Name": name,
            "Id": nid,
            "Created": created,
            "Scope": "local",
            "Driver": driver,
            "EnableIPv6": False,
            "IPAM": {"Driver": "default", "Options": None if ipam or name != "bridge" else {}, "Config": ipam},
            "Internal": internal,
            "Attachable": False,
            "Ingress": False,
            "ConfigFrom": {"Network": ""},
            "ConfigOnly": False,
            "Containers": members,
            "Options": options,
            "Labels": labels,
        }

    def networks(self, filters: dict[str, builtins.list[str]] | None = None) -> builtins.list[dict[str, Any]]:
        """``GET /networks``: the predefined networks and the user-defined ones."""
        filters = filters or {}
        out = []
        every: builtins.list[Network | str] = [*BUILTIN_NETWORKS, *self.store.networks()]
        for net in every:
            j = self._network_json(net, containers=False)
            if "name" in filters and not any(f in j["Name"] for f in filters["name"]):
                continue
            if "id" in filters and not any(j["Id"].startswith(f) for f in filters["id"]):
                continue
            if "driver" in filters and j["Driver"] not in filters["driver"]:
                continue
            if "type" in filters and ("custom" if isinstance(net, Network) else "builtin") not in filters["type"]:
                continue
            if "label" in filters:
                labels = j["Labels"]
                wanted = [f.partition("=") for f in filters["label"]]
                if not all(k in labels and (not sep or labels[k] == v) for k, sep, v in wanted):
                    continue
            out.append(j)
        return out

    def network_inspect(self, ref: str) -> dict[str, Any]:
        return self._network_json(self._find_network(ref), containers=True)

    def _pick_subnet(
        self, taken: builtins.list[ipaddress.IPv4Network]
    ) -> tuple[ipaddress.IPv4Network, ipaddress.IPv4Address]:
        """Docker's default pools: 172.18.0.0/16 ... 172.31.0.0/16, then 192.168.N.0/20."""
        pools = [ipaddress.IPv4Network(f"172.{b}.0.0/16") for b in range(18, 32)]
        pools += [ipaddress.IPv4Network(f"192.168.{b}.0/20") for b in range(0, 256, 16)]
        for pool in pools:
            if not any(pool.overlaps(t) for t in taken):
                return pool, pool.network_address + 1
        raise Forbidden(
            "could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network"
        )

    def network_create(self, body: dict[str, Any], *, internal: bool = False) -> dict[str, str]:
        """``docker network create``: a bridge network (Docker's checks and messages).
        ``internal``: the platform's own request (the kubelet's pod network, 10.244.0.0/24),
        whose subnet may lie outside the ranges students may pick."""
        name = str(body.get("Name") or "")
        if not name:
            raise errors.BadRequest("network name cannot be empty")
        if not name.strip():  # dockerd (libnetwork's IsValidName): any name that is not blank
            raise errors.BadRequest(f"invalid name: {name!r}")
        driver = str(body.get("Driver") or "bridge")
        if driver != "bridge":
            raise Forbidden(
                f'network driver "{driver}" is not available in this lab: only bridge networks can be created '
                "(they live inside your sandbox's network namespace; host, macvlan, ipvlan and overlay networks "
                "need the host's network or a swarm)"
            )
        if body.get("EnableIPv6"):
            raise errors.BadRequest("IPv6 networks are not available in this lab")
        ipam = body.get("IPAM") or {}
        configs = [c for c in (ipam.get("Config") or []) if c]
        if str(ipam.get("Driver") or "default") != "default":
            raise Forbidden(f'IPAM driver "{ipam["Driver"]}" is not available in this lab: use the default one')
        if len(configs) > 1:
            raise errors.BadRequest("only one IPv4 subnet per network is supported in this lab")
        cfg = configs[0] if configs else {}
        with self._net_lock:
            if name in BUILTIN_NETWORKS or any(n.name == name for n in self.store.networks()):
                raise errors.Conflict(f"network with name {name} already exists")
            taken = [netns.SUBNET, *(ipaddress.IPv4Network(n.subnet) for n in self.store.networks())]
            taken.append(ipaddress.IPv4Network(f"{self.ctx.ip}/32"))
            if cfg.get("Subnet"):
                try:
                    subnet = ipaddress.IPv4Network(str(cfg["Subnet"]), strict=False)
                except ValueError:
                    raise errors.BadRequest(f"invalid CIDR address: {cfg['Subnet']}") from None
                private = (ipaddress.IPv4Network("172.16.0.0/12"), ipaddress.IPv4Network("192.168.0.0/16"))
                if (not internal and not any(subnet.subnet_of(p) for p in private)) or subnet.prefixlen > 30:
                    raise Forbidden(
                        f"subnet {subnet} is not available in this lab: a network's subnet must lie inside "
                        "172.16.0.0/12 or 192.168.0.0/16 and hold at least 2 addresses (/30 or larger)"
                    )
                if any(subnet.overlaps(t) for t in taken):
                    raise Forbidden("Pool overlaps with other one on this address space")
                gateway = subnet.network_address + 1
                if cfg.get("Gateway"):
                    try:
                        gateway = ipaddress.IPv4Address(str(cfg["Gateway"]))
                    except ValueError:
                        raise errors.BadRequest(f"invalid gateway address: {cfg['Gateway']}") from None
                    if gateway not in subnet or gateway in (subnet.network_address, subnet.broadcast_address):
                        raise errors.BadRequest(f"no matching subnet for gateway {gateway}")
            elif cfg.get("Gateway") or cfg.get("IPRange"):
                raise errors.BadRequest("--gateway and --ip-range need a --subnet")
            else:
                subnet, gateway = self._pick_subnet(taken)
            if cfg.get("IPRange"):
                raise errors.BadRequest("--ip-range is not supported in this lab: addresses come from the whole subnet")
            labels = {str(k): str(v) for k, v in (body.get("Labels") or {}).items()}
            options = {str(k): str(v) for k, v in (body.get("Options") or {}).items()}
            net = Network(
                id=secrets.token_hex(32),
                name=name,
                subnet=str(subnet),
                gateway=str(gateway),
                created=now_rfc3339(),
                internal=bool(body.get("Internal")),
                labels=tuple(sorted(labels.items())),
                options=tuple(sorted(options.items())),
            )
            self.store.add_network(net)
        return {"Id": net.id, "Warning": ""}

    def network_remove(self, ref: str) -> None:
        net = self._find_network(ref)
        if not isinstance(net, Network):
            raise Forbidden(f"{net} is a pre-defined network and cannot be removed")
        with self._net_lock:
            with self._lock:
                if self._network_members(net) or any(
                    c.status == "starting" and c.network_id == net.id for c in self._containers.values()
                ):
                    raise Forbidden(
                        f"error while removing network: network {net.name} id {net.id} has active endpoints"
                    )
                for c in self._containers.values():  # stopped ones `network connect`ed to it forget it
                    if c.extra_networks.pop(net.id, None) is not None:
                        self._save(c)
            self.store.remove_network(net.id)
            bridge = netns.bridge_name(net.id)
            # made by this Engine or an earlier one, or never
            netns.remove_bridge(self.ctx.pid, bridge, place=self.place)
            self._ready_bridges.discard(bridge)
        with contextlib.suppress(errors.RuntimeError):
            self._apply_ports()

    def network_connect(self, ref: str, container: str, body: dict[str, Any]) -> None:
        """``docker network connect``: one more interface (``eth<n>``) on a user-defined network;
        a running container gets it at once, a stopped one when it starts."""
        net = self._find_network(ref)
        if not isinstance(net, Network):
            raise Forbidden(
                f"connecting containers to the {net} network is not available in this lab: connect them to a "
                "network you create (docker network create)"
            )
        c = self._get(container)
        endpoint = body.get("EndpointConfig") or {}
        if not isinstance(endpoint, dict):
            raise errors.BadRequest("EndpointConfig must be a JSON object")
        aliases = [str(a) for a in endpoint.get("Aliases") or []]
        ipam = endpoint.get("IPAMConfig") or {}
        unsupported = [k for k in ("Links", "DriverOpts", "MacAddress", "LinkLocalIPs") if endpoint.get(k)]
        unsupported += [k for k in ("IPv4Address", "IPv6Address", "LinkLocalIPs") if ipam.get(k)]
        if unsupported:
            raise Forbidden(
                f"{', '.join(unsupported)} at docker network connect are not available in this lab: aliases are; "
                "give a container's MAC address, link-local addresses and links when you create it"
            )
        bridge = self._bridge(net)
        with self._net_lock:
            with self._lock:
                if c.host_config.get("NetworkMode") == "none":
                    raise Forbidden(
                        "container cannot be connected to multiple networks with one of the networks in private "
                        "(none) mode"
                    )
                if c.network_id == net.id or net.id in c.extra_networks:
                    raise Forbidden(f"endpoint with name {c.name} already exists in network {net.name}")
                taken = {int(ep["if"]) for ep in c.extra_networks.values()}
                ep: dict[str, Any] = {"if": next(i for i in range(1, len(taken) + 2) if i not in taken)}
                ep.update(aliases=aliases, ip_index=-1, ip="")
                running = c.running
                if running:
                    ep["ip_index"], ep["ip"] = self._allocate_ip(c, net.id, -1, bridge)
                c.extra_networks[net.id] = ep
                self._save(c)
            if running:
                try:
                    self._ensure_net(bridge)
                    netns.attach(self.ctx.pid, c.pid, c.id, ep["ip"], bridge, index=int(ep["if"]), place=self.place)
                except BaseException:
                    with self._lock:
                        c.extra_networks.pop(net.id, None)
                        self._save(c)
                    netns.detach(self.ctx.pid, c.id, int(ep["if"]), place=self.place)
                    raise
        if running:
            self._apply_ports()
            self._refresh_hosts(c.network_id, net.id)

    def network_disconnect(self, ref: str, container: str) -> None:
        """``docker network disconnect``: remove an interface ``network connect`` added."""
        net = self._find_network(ref)
        c = self._get(container)
        if not isinstance(net, Network) or c.network_id == net.id:
            name = net if isinstance(net, str) else net.name
            if isinstance(net, Network) or (name == "bridge" and not c.network_id):
                raise Forbidden(
                    f"disconnecting {c.name} from {name}, the network it was created on, is not available in this "
                    "lab: remove the container and run it again with --network"
                )
            raise Forbidden(f"container {c.id} is not connected to network {name}")
        with self._net_lock:
            with self._lock:
                ep = c.extra_networks.pop(net.id, None)
                if ep is None:
                    raise Forbidden(f"container {c.id} is not connected to network {net.name}")
                self._save(c)
                running = c.running
            if running:
                netns.detach(self.ctx.pid, c.id, int(ep["if"]), place=self.place)
        if running:
            self._refresh_hosts(c.network_id, net.id)

    def network_prune(self) -> dict[str, Any]:
        deleted: builtins.list[str] = []
        for net in self.store.networks():
            with contextlib.suppress(errors.RuntimeError):
                self.network_remove(net.id)
                deleted.append(net.name)
        return {"NetworksDeleted": deleted or None}

    # -- system -----------------------------------------------------------------------------------

    def system_df(self) -> dict[str, Any]:
        images = self.store.df()
        with self._lock:
            containers = [c.id for c in self._containers.values()]
        cs = []
        for item in self.list(all=True):
            item["SizeRw"] = _du(self._dir(item["Id"]) / "upper")
            item["SizeRootFs"] = item["SizeRw"] + self.store.resolve(item["ImageID"]).size
            cs.append(item)
        vols = []
        for v in self.volumes():
            v["UsageData"] = {
                "Size": _du(self.volumes_dir / v["Name"] / "_data"),
                "RefCount": len(self._volume_users(v["Name"])),
            }
            vols.append(v)
        del containers
        return {
            "LayersSize": images["LayersSize"],
            "Images": images["Images"],
            "Containers": cs,
            "Volumes": vols,
            "BuildCache": [],
        }

    def info(self) -> dict[str, Any]:
        with self._lock:
            cs = list(self._containers.values())
        return {
            "ID": self.ctx.sid,
            "Containers": len(cs),
            "ContainersRunning": sum(1 for c in cs if c.running and not c.paused),
            "ContainersPaused": sum(1 for c in cs if c.running and c.paused),
            "ContainersStopped": sum(1 for c in cs if not c.running),
            "Images": len(self.store.images(all=False)),
            "Driver": "overlay2",
            "DriverStatus": [["Backing Filesystem", "extfs"]],
            "Plugins": {"Volume": ["local"], "Network": ["bridge", "null"], "Log": ["json-file"]},
            "MemoryLimit": True,
            "SwapLimit": False,
            "CpuCfsPeriod": True,
            "CpuCfsQuota": True,
            "PidsLimit": True,
            "IPv4Forwarding": True,
            "Debug": False,
            "ExperimentalBuild": False,
            "LoggingDriver": "json-file",
            "CgroupDriver": "cgroupfs",
            "CgroupVersion": "1" if Path("/sys/fs/cgroup/memory").is_dir() else "2",
            "KernelVersion": os.uname().release,
            "OperatingSystem": "kubelab sandbox",
            "OSType": "linux",
            "Architecture": os.uname().machine,
            "NCPU": max(1, round(self.ctx.cpus)),
            "MemTotal": self.ctx.memory,
            "DockerRootDir": "/var/lib/docker",
            "Name": f"sandbox-{self.ctx.sid[:8]}",
            "ServerVersion": ENGINE_VERSION,
            "Runtimes": {"runc": {"path": "runc"}},
            "DefaultRuntime": "runc",
            "SecurityOptions": ["name=seccomp,profile=default", "name=userns"],
            "Warnings": None,
        }

    # -- the builder ------------------------------------------------------------------------------

    def run_step(
        self,
        image: Image,
        argv: builtins.list[str],
        *,
        env: builtins.list[str],
        workdir: str,
        user: str,
        output: Callable[[bytes], None],
        cancel: threading.Event | None = None,
        network_mode: str = "default",
        extra_hosts: builtins.list[str] | None = None,
    ) -> tuple[int, Path]:
        body = {
            "Image": image.id,
            "Entrypoint": [""],
            "Cmd": list(argv),
            "Env": list(env),
            "WorkingDir": workdir,
            "User": user,
            "Labels": {"io.kubelab.build-step": "1"},
            "HostConfig": {"NetworkMode": network_mode, "ExtraHosts": list(extra_hosts or [])},
        }
        cid, _ = self.create(body)
        c = self._get(cid)
        assert c.out is not None
        c.out.listeners.append(lambda _s, data: output(data))
        try:
            self.start(cid)
            while True:
                try:
                    code = self.wait(cid, cancel=cancel)
                    break
                except errors.RuntimeError:
                    if cancel is not None and cancel.is_set():
                        self._signal(c, signal_mod.SIGKILL)
                        self._wait_state(c, 30)
                        code = 137
                        break
                    raise
        except BaseException:
            with contextlib.suppress(errors.RuntimeError):
                self._remove(cid, force=True, volumes=True)
            raise
        upper = self._remove(cid, force=True, volumes=True, keep_upper=True)
        assert upper is not None
        return code, upper


class _OneOff:
    """A ``runc run`` whose container is deleted (and bundle removed) once it has been waited
    for or killed: the process interface archive.py's tar needs."""

    def __init__(self, proc: subprocess.Popen[bytes], cleanup: Callable[[], None]) -> None:
        self.proc = proc
        self.stdin, self.stdout, self.stderr = proc.stdin, proc.stdout, proc.stderr
        self._cleanup: Callable[[], None] | None = cleanup

    def wait(self, timeout: float | None = None) -> int:
        rc = self.proc.wait(timeout=timeout)
        cleanup, self._cleanup = self._cleanup, None
        if cleanup is not None:
            cleanup()
        return rc

    def kill(self) -> None:
        self.proc.kill()

    def poll(self) -> int | None:
        return self.proc.poll()


def _stdio_pipes(
    with_stdin: bool, child: list[int], ours: list[int]
) -> tuple[tuple[int, int, int], int | None, int, int]:
    """Pipes for a process runc starts without a TTY: ``(its stdin, stdout, stderr)``, our
    stdin write end (or None), our stdout and stderr read ends. The child's ends are added
    to ``child`` (closed once runc has them), ours to ``ours`` (closed if the start fails)."""
    stdin_r, stdin_w = subprocess.DEVNULL, None
    if with_stdin:
        stdin_r, stdin_w = os.pipe()
        child.append(stdin_r)
        ours.append(stdin_w)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    child += [out_w, err_w]
    ours += [out_r, err_r]
    return (stdin_r, out_w, err_w), stdin_w, out_r, err_r


def _console_socket() -> tuple[socket.socket, Path]:
    """A listening socket for runc's ``--console-socket`` in a fresh root-only dir under /tmp
    (the bundle's path is too long for a unix socket)."""
    d = Path(tempfile.mkdtemp(prefix="kle-"))
    path = d / "c.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(1)
    return sock, path


def _du(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += (Path(dirpath) / f).lstat().st_size
    return total
