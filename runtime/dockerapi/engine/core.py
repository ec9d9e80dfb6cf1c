"""The engine's state and its design: ``Engine`` (engine/__init__.py) runs a sandbox's Docker
containers with runc, nested in the sandbox.

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
(runtime/kernel/safewrite.py), must end up under ``/root``, and that exact object is bind-mounted (through
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
import json
import logging
import os
import re
import secrets
import shutil
import signal as signal_mod
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime import errors
from runtime.dockerapi import netns
from runtime.dockerapi.engine.events import Events
from runtime.dockerapi.engine.streams import _Output
from runtime.dockerapi.engine.watch import Timers, Watcher, Worker
from runtime.dockerapi.images.store import EngineStore, NotFound
from runtime.dockerapi.limits import EngineLimits
from runtime.images.store import ImageStore
from runtime.procfs import proc_start
from runtime.sandbox.cgroups import CGROUP_ROOT, Cgroups
from runtime.sandbox.spec import SandboxContext

log = logging.getLogger("runtime.dockerapi")

ZERO_TIME = "0001-01-01T00:00:00Z"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
INIT_FILES = ("etc/hosts", "etc/hostname", "etc/resolv.conf")
INIT_DIRS = ("dev", "proc", "sys", "etc", "dev/pts", "dev/shm", "dev/mqueue")
RUNC_TIMEOUT = 60.0
HOLDER = shutil.which("sleep") or "/bin/sleep"  # coreutils: "sleep infinity" holds descriptors


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


def _write_file(path: Path, text: str, uid: int, mode: int = 0o644) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
        os.fchown(fh.fileno(), uid, uid)
        os.fchmod(fh.fileno(), mode)


# -- streams -----------------------------------------------------------------------------------


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


# -- the engine's state --------------------------------------------------------------------------------


class EngineBase:
    """The state of a sandbox's engine and the small helpers every concern uses; the concerns
    (io.py, volumes.py, networks.py, policy.py, spec.py, exec.py, probes.py, inspect.py,
    containers.py, rootfs.py) build on it and ``Engine`` (engine/__init__.py) joins them."""

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

    def init_process(self, ref: str) -> tuple[int, int]:
        """The container's init process as the engine recorded it: its pid and that process's
        start time (``procfs.proc_start``), to tell it from a later process given the same pid;
        zeros when it does not run. NotFound for an unknown container."""
        c = self._get(ref)
        return c.pid, c.pid_start

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
        from runtime.dockerapi.images.store import Layer

        return Layer("sha256:" + "0" * 64, self._init_layer, 0, catalog=False)

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

    def _emit(self, action: str, c: _Container) -> None:
        labels = {str(k): str(v) for k, v in (c.config.get("Labels") or {}).items()}
        for fn in list(self.listeners):
            try:
                fn(action, c.id, labels)
            except Exception:
                log.exception("engine of sandbox %s: a %s listener failed", self.ctx.sid, action)

    # -- events ------------------------------------------------------------------------------------

    def _event(self, action: str, c: _Container, **extra: str) -> None:
        """A container event for docker events (events.py): its labels, image and name, as dockerd's."""
        attrs = {str(k): str(v) for k, v in (c.config.get("Labels") or {}).items()}
        attrs.update(image=c.image_ref, name=c.name, **extra)
        self.events.record("container", action, c.id, attrs)

    # legacy links (--link on the default bridge), as dockerd's daemon/links: /etc/hosts names and
    # <ALIAS>_PORT..., <ALIAS>_NAME, <ALIAS>_ENV_... variables, fixed when the container starts

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


def _du(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += (Path(dirpath) / f).lstat().st_size
    return total
