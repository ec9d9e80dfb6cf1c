"""SandboxManager: create, run commands in, and remove sandboxes on runc.

A sandbox is one runc container built from an OCI bundle we generate under
``DIR/sandboxes/<id>/``:

* ``rootfs``: overlayfs over the image's layers (idmapped, see _mounthelper.py)
  with upper/work dirs on a per-sandbox sparse ext4 image (``disk.img``, a
  sparse copy of a pre-formatted template per size, no journal, no reserved
  blocks) attached to an autoclear loop device. Writing past ``spec.disk``
  gives ENOSPC inside and nothing outside; inodes run out inside too. Cost: a
  sparse copy (~1 ms) plus a mount, instead of ~10 ms of mkfs per sandbox.
* ``config.json``: see bundle.py (namespaces, caps, seccomp, limits).
* ``state.json``: what a new manager on the same root needs to re-adopt it.

Id mapping: each sandbox gets the host range ``uid_base + n*65536`` (``n`` is
its allocation index, which also picks its IP), persisted in state.json and
freed on remove. Image layers are shown to it through idmapped mounts made by
a short-lived helper before runc starts (no copy per sandbox); if the kernel
or filesystem refuses, the manager falls back, once and for the rest of its
life, to ``ImageStore.shifted_layer_dirs`` (a shifted copy per range, cached by
the store) and logs which path it took.

Processes: ``runc run -d`` starts PID 1 (tini + sleep), then the host wires
the network (network.py) and delegates the cgroup (cgroups.py). ``spawn`` is
``runc exec -d`` into a fresh per-exec sub-cgroup; with ``tty=True`` runc
creates the PTY inside and hands us its master over ``--console-socket``. A
detached exec has no runc left running per session (a Go process per shell
would cost ~10 MB each at 200 sandboxes); the exec'd process is re-parented to
this process, which is made a *child subreaper* (``PR_SET_CHILD_SUBREAPER``,
as containerd's shim is), so ``Spawned.proc`` is a real ``subprocess.Popen``
whose ``wait()`` returns the command's own exit status. The sandbox's PID 1 is
adopted the same way and reaped when the sandbox stops.

Fast path (fastexec.py): the first ``spawn`` in a sandbox ``runc exec``s a
resident exec agent (with the same process document), and every spawn is then
a request to it: it ``clone(CLONE_PARENT)``s, so the new process is this
process's child exactly as a ``runc exec -d`` one is, with runc's security
state inherited rather than re-created (~1-2 ms instead of ~30-35 ms).
``runc exec`` stays the fallback (agent binary not built, agent dead or
misbehaving, request too large), and the log says which path was taken. Starting,
replacing and talking to the agents is ``fastexec.ExecAgents`` (``SandboxManager.agents``);
the manager only chooses the path and makes the exec cgroup.

Everything that needs kernel privileges beyond file I/O runs in a child
process (the mount helper, runc, ip, nft, umount); the manager itself only
reads and writes files (state, cgroupfs, /proc). One mount helper is always
started ahead of need, so its interpreter start-up is off the create path;
it serves one request and exits, and nothing stays running per sandbox.

Latency (create -> a shell answers, bench/sandbox_start.py) is dominated by
runc itself: ``runc run -d`` ~40 ms and ``runc exec`` ~35 ms on this host (the
first spawn starts the agent through it),
plus the rootfs (~15 ms), the network (~10 ms: ``ip -batch`` twice, ``bridge``,
``nft``). Waits on those children block on a pidfd (runtime/kernel/proc.py), not on
subprocess's sleep-polling.
"""

from __future__ import annotations

import builtins
import contextlib
import ctypes
import fcntl
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from runtime import errors
from runtime.kernel import forkserver
from runtime.kernel.children import AdoptedPopen
from runtime.kernel.proc import run, run_quiet
from runtime.procfs import mounted, proc_start
from runtime.sandbox import bundle, fastexec, placefiles
from runtime.sandbox.cgexec import Placement
from runtime.sandbox.cgroups import Cgroups
from runtime.sandbox.network import Network
from runtime.sandbox.spec import SandboxContext, SandboxInfo, SandboxSpec, workspace_path

log = logging.getLogger("runtime.sandbox")

EXIT_IDMAP_REFUSED = 3
PR_SET_CHILD_SUBREAPER = 36
UID_LIMIT = 2**32 - 2
SETUP_TIMEOUT = 600.0
# Replace whatever is at $1 (a student's symlink included) by a regular file, from inside.
_WRITE_SCRIPT = 'mkdir -p -- "$(dirname -- "$1")" && rm -f -- "$1" && cat > "$1"'


class ImageConfigLike(Protocol):
    @property
    def env(self) -> list[str]: ...
    @property
    def working_dir(self) -> str: ...


class ImageSource(Protocol):
    """What the manager needs of runtime.images.store.ImageStore."""

    def get(self, name: str) -> ImageConfigLike: ...
    def layer_dirs(self, name: str) -> list[Path]: ...
    def shifted_layer_dirs(self, name: str, uid_base: int, size: int = 65536) -> list[Path]: ...


class ServiceHook(Protocol):
    """A sandbox service (``SandboxSpec.services``) that the daemon registers in
    ``SandboxManager.service_hooks`` (runtime.kube.service.KubeService,
    runtime.dockerapi.service.DockerService).

    ``start`` runs once the sandbox is up, before the lab's setup script, and returns
    files to write under /root (via ``write_file``); ``stop`` runs when the sandbox stops
    (``remove=False``) or is removed (``remove=True``). Both are called from worker threads.

    Optional (looked up with ``getattr``): ``env`` (a mapping added to the environment of
    every process in the sandbox), ``keep_disk`` (True: the sandbox's ext4 stays mounted at
    ``DIR/sandboxes/<id>/disk`` while it runs, for a service that stores data on the
    sandbox's own disk quota), ``mounts(sid, sandbox_dir) -> list`` (OCI mounts added
    to the sandbox's config.json before runc starts it) and ``adopt(sandboxes)`` (given
    ``[(id, pid, status)]`` of the sandboxes that already have the service when it is
    registered: after a runtimed restart; see ``SandboxManager.register_service``)."""

    def start(self, sid: str, pid: int) -> dict[str, str]: ...
    def stop(self, sid: str, *, remove: bool) -> None: ...


def _set_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise errors.RuntimeError(f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(ctypes.get_errno())}")


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _sparse_copy(src: Path, dst: Path) -> None:
    """Copy only the data extents of a sparse file (SEEK_DATA/SEEK_HOLE + copy_file_range)."""
    size = src.stat().st_size
    s = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    try:
        d = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.ftruncate(d, size)
            pos = 0
            while pos < size:
                try:
                    data = os.lseek(s, pos, os.SEEK_DATA)
                except OSError:  # ENXIO: no data after pos
                    break
                hole = os.lseek(s, data, os.SEEK_HOLE)
                off_in, off_out, left = data, data, hole - data
                while left > 0:
                    n = os.copy_file_range(s, d, left, off_in, off_out)
                    if n <= 0:
                        raise OSError("copy_file_range returned 0")
                    off_in, off_out, left = off_in + n, off_out + n, left - n
                pos = hole
        finally:
            os.close(d)
    finally:
        os.close(s)


@dataclass
class _State:
    id: str
    spec: SandboxSpec
    status: str
    created_at: float
    last_activity: float
    index: int
    uid_base: int
    ip: str | None = None
    pid: int | None = None
    pid_start: int | None = None
    idmap: bool = True
    layers: list[str] = field(default_factory=list)
    # how the init ended, recorded when it was found dead (``_init_gone``): what a later
    # request refused with "is dead" says, since the reap that follows forgets it
    ended: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "spec": self.spec.to_json(),
            "status": self.status,
            "created_at": self.created_at,
            "last_activity": self.last_activity,
            "index": self.index,
            "uid_base": self.uid_base,
            "ip": self.ip,
            "pid": self.pid,
            "pid_start": self.pid_start,
            "idmap": self.idmap,
            "layers": self.layers,
            "ended": self.ended,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> _State:
        return cls(
            id=d["id"],
            spec=SandboxSpec.from_json(d["spec"]),
            status=d["status"],
            created_at=d["created_at"],
            last_activity=d["last_activity"],
            index=d["index"],
            uid_base=d["uid_base"],
            ip=d.get("ip"),
            pid=d.get("pid"),
            pid_start=d.get("pid_start"),
            idmap=d.get("idmap", True),
            layers=list(d.get("layers", [])),
            ended=str(d.get("ended") or ""),
        )

    def info(self) -> SandboxInfo:
        return SandboxInfo(
            id=self.id,
            spec=self.spec,
            status=self.status,
            created_at=self.created_at,
            last_activity=self.last_activity,
            ip=self.ip,
            pid=self.pid,
        )


@dataclass
class Spawned:
    """A process started inside a sandbox.

    ``proc`` is a ``subprocess.Popen`` whose ``returncode`` is the process's exit
    status. With ``tty=True``, ``pty_master`` is the PTY master (non-blocking;
    the caller owns and closes it) and ``proc``'s std streams are None.
    """

    proc: subprocess.Popen[bytes]
    pty_master: int | None
    cgroup_dir: Path
    _cgroups: Cgroups

    def resize(self, rows: int, cols: int) -> None:
        if self.pty_master is not None:
            fcntl.ioctl(self.pty_master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def kill_tree(self, timeout: float = 5.0) -> None:
        """Kill the process and everything it started (its exec cgroup), then reap it."""
        self._cgroups.kill_cgroup(self.cgroup_dir, timeout=timeout)
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=timeout)
        with contextlib.suppress(OSError):
            self.cgroup_dir.rmdir()


class SandboxManager:
    def __init__(
        self,
        root: Path,
        images: ImageSource,
        *,
        subnet: str = "10.77.0.0/16",
        bridge: str = "kl0",
        cgroup_parent: str = "kubelab",
        uid_start: int = 1_000_000,
        runc: str = "runc",
        fast_exec: bool = True,
    ) -> None:
        """Manage sandboxes under ``root`` (DIR). Two managers on one host must not share
        ``bridge``/``subnet``, ``cgroup_parent`` or uid ranges (``uid_start``).
        ``fast_exec=False`` makes every spawn a ``runc exec`` (see fastexec.py)."""
        self.root = Path(root)
        self.images = images
        self.sandboxes = self.root / "sandboxes"
        self.runc_root = self.root / "runc"
        self.templates = self.sandboxes / ".templates"
        for d in (self.root, self.sandboxes, self.runc_root, self.templates):
            d.mkdir(parents=True, exist_ok=True)
        # The sandbox's root (a host uid in its range) must traverse to its bundle.
        for d in (self.root, self.sandboxes):
            d.chmod(d.stat().st_mode | 0o011)  # search only, no listing
        self.templates.chmod(0o700)
        self.runc = runc
        self.uid_start = uid_start
        self.cgroups = Cgroups(cgroup_parent)
        self.net = Network(subnet, bridge)
        self.net.ensure()
        self._lock = threading.RLock()
        self._template_lock = threading.Lock()  # see _template
        self._idmap: bool | None = None  # None: not tried yet
        self._states: dict[str, _State] = {}
        self._spare: subprocess.Popen[bytes] | None = None
        self.service_hooks: dict[str, ServiceHook] = {}
        self._joining: set[Path] = set()  # exec cgroups created, their process not in yet
        # sandboxes whose services create() is starting (placefiles.py): nothing of the student's ran yet
        self._fresh: set[str] = set()
        self._life_locks: dict[str, threading.Lock] = {}  # see _lifecycle
        self.fast_exec = fast_exec
        self.agents = fastexec.ExecAgents(
            self.root, [self.runc, "--root", str(self.runc_root)], self.cgroups, self._lock
        )
        _set_subreaper()
        for d in sorted(self.sandboxes.iterdir()):
            st = self._load(d)
            if st is not None:
                self._states[st.id] = st

    # state ------------------------------------------------------------------------------------

    def _dir(self, sid: str) -> Path:
        return self.sandboxes / sid

    @staticmethod
    def _load(d: Path) -> _State | None:
        try:
            return _State.from_json(json.loads((d / "state.json").read_text()))
        except (OSError, ValueError, KeyError, errors.BadRequest):
            return None

    def _save(self, st: _State) -> None:
        d = self._dir(st.id)
        tmp = d / "state.json.tmp"
        bundle.write_private(tmp, json.dumps(st.to_json()))
        tmp.replace(d / "state.json")

    def _state(self, sid: str) -> _State:
        with self._lock:
            st = self._states.get(sid)
        if st is None or not (self._dir(sid) / "state.json").exists():
            with self._lock:
                self._states.pop(sid, None)  # removed by another manager on the same root
            raise errors.SandboxNotFound(f"no sandbox {sid!r}")
        if st.status == "running" and not self._alive(st):
            with self._lock:
                if st.status != "running":  # another thread found it first
                    return st
                # how it ended, read while it is still our unreaped child; then the reap
                st.ended = self._init_gone(st)
                if st.pid is not None:
                    _reap(st.pid)
                st.status = "dead"
                self._save(st)
            log.warning("sandbox %s died (%s)", sid, st.ended or f"pid {st.pid} gone")
        return st

    @staticmethod
    def _not_running(st: _State) -> errors.Conflict:
        ended = f": {st.ended}" if st.status == "dead" and st.ended else ""
        return errors.Conflict(f"sandbox {st.id} is {st.status}, not running{ended}")

    @staticmethod
    def _alive(st: _State) -> bool:
        """Whether the init runs (a zombie does not). It is not reaped here: ``_state`` first
        reads how it ended."""
        if st.pid is None:
            return False
        return proc_start(st.pid) == st.pid_start

    @contextlib.contextmanager
    def _alloc_lock(self) -> Iterator[None]:
        fd = os.open(self.sandboxes / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            with self._lock:
                yield
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def _lifecycle(self, sid: str) -> Iterator[None]:
        """One change of a sandbox's life at a time (create, stop, pause, resume, remove).
        Two DELETEs of one sandbox (the web tier and a worker both ending a lab), or a
        DELETE during a pause, otherwise tear the same mounts, nft chains and directories
        down at once and one of them fails half-way (seen as a 500 with "No such file"
        or "Could not process rule"). The second now waits and then finds the first's
        result: a removed sandbox is ``SandboxNotFound``."""
        with self._lock:
            lock = self._life_locks.setdefault(sid, threading.Lock())
        with lock:
            yield

    # public API -------------------------------------------------------------------------------

    def create(self, spec: SandboxSpec) -> SandboxInfo:
        """Create and start a sandbox; return when it runs and its setup script has finished."""
        spec.validate()
        missing = [s for s in spec.services if s not in self.service_hooks]
        if missing:
            raise errors.NotAvailable(f"sandbox service(s) {', '.join(missing)} not available yet")
        image = self.images.get(spec.image)
        sid = secrets.token_hex(6)
        now = time.time()
        with self._alloc_lock():
            used = {s.index for s in self._states.values()}
            index = next(i for i in range(len(used) + 1) if i not in used)
            uid_base = self.uid_start + index * bundle.IDMAP_SIZE
            if index >= self.net.capacity or uid_base + bundle.IDMAP_SIZE > UID_LIMIT:
                raise errors.LimitExceeded("no sandbox slot left (addresses or uid ranges)")
            st = _State(
                id=sid,
                spec=spec,
                status="creating",
                created_at=now,
                last_activity=now,
                index=index,
                uid_base=uid_base,
                ip=self.net.address(index),
            )
            d = self._dir(sid)
            d.mkdir(mode=0o711)
            self._save(st)
            self._states[sid] = st
        with self._lifecycle(sid):
            try:
                self._start(st, image)
                self._start_services(st, fresh=True)
            except BaseException:
                with contextlib.suppress(Exception):
                    self._destroy(st)
                raise
            if spec.setup:
                self._run_setup(st)
            return st.info()

    def get(self, sid: str) -> SandboxInfo:
        return self._state(sid).info()

    def init_process(self, sid: str) -> tuple[int, int, Placement]:
        """A running sandbox's init pid, that process's start time (the pid names it only
        with that start time) and where its host helpers run (its cgroup): what a helper
        needs to enter this sandbox and no other, within its limits (runtime.sandbox.files)."""
        st = self._state(sid)
        if st.status != "running" or st.pid is None or st.pid_start is None:
            raise self._not_running(st)
        return st.pid, st.pid_start, Placement(self.cgroups.path(sid), cgroups=self.cgroups)

    def list(self) -> builtins.list[SandboxInfo]:
        with self._lock:
            ids = list(self._states)
        out = []
        for sid in ids:
            with contextlib.suppress(errors.SandboxNotFound):
                out.append(self._state(sid).info())
        return out

    def touch(self, sid: str) -> None:
        st = self._state(sid)
        with self._lock:
            st.last_activity = time.time()
            self._save(st)

    def stop(self, sid: str) -> None:
        with self._lifecycle(sid):
            st = self._state(sid)
            self._stop_services(st, remove=False)
            self._stop(st)
            with self._lock:
                if st.status != "dead":
                    st.status = "stopped"
                self._save(st)

    def pause(self, sid: str) -> SandboxInfo:
        """Stop every process of a running sandbox and unmount its filesystems, keeping on
        disk what ``resume`` needs: ``disk.img`` (the upper dir, and the services' data on it),
        state.json with the sandbox's slot (index: address and uid range) and its layers.
        A paused sandbox holds no process, cgroup, mount or loop device; its services are
        told first (``pause`` hook if they have one, else ``stop(remove=False)``)."""
        with self._lifecycle(sid):
            return self._pause(sid)

    def _pause(self, sid: str) -> SandboxInfo:
        st = self._state(sid)
        with self._lock:
            if st.status == "paused":
                return st.info()
            if st.status != "running":
                raise errors.Conflict(f"sandbox {sid} is {st.status}; only a running sandbox can be paused")
            st.status = "pausing"
            self._save(st)
        self._stop_services(st, remove=False, pause=True)
        self._stop(st)
        self._unmount(st)
        with self._lock:
            st.status, st.pid, st.pid_start = "paused", None, None
            self._save(st)
        log.info("sandbox %s paused", sid)
        return st.info()

    def resume(self, sid: str) -> SandboxInfo:
        """Start a paused sandbox again on its own disk (same files, address and uid range),
        then its services (which restart what they kept: service hooks' ``start``). On
        failure it is paused again, its disk untouched, and the error says why."""
        with self._lifecycle(sid):
            return self._resume(sid)

    def _resume(self, sid: str) -> SandboxInfo:
        st = self._state(sid)
        with self._lock:
            if st.status == "running":
                return st.info()
            if st.status != "paused":
                raise errors.Conflict(f"sandbox {sid} is {st.status}; only a paused sandbox can be resumed")
            st.status = "resuming"
            self._save(st)
        try:
            missing = [s for s in st.spec.services if s not in self.service_hooks]
            if missing:
                raise errors.NotAvailable(f"sandbox service(s) {', '.join(missing)} not available yet")
            if self._disk_attached(st):
                raise errors.Conflict(f"the disk of sandbox {sid} is still being released; try again in a moment")
            self._start(st, self.images.get(st.spec.image), resume=True)
            self._start_services(st)
        except BaseException:
            with contextlib.suppress(Exception):
                self._stop_services(st, remove=False, pause=True)
                self._stop(st)
                self._unmount(st)
            with self._lock:
                st.status, st.pid, st.pid_start = "paused", None, None
                self._save(st)
            raise
        log.info("sandbox %s resumed: pid %s", sid, st.pid)
        return st.info()

    def remove(self, sid: str) -> None:
        with self._lifecycle(sid):
            st = self._state(sid)  # SandboxNotFound when a remove that held the lock took it
            self._destroy(st)

    def register_service(self, name: str, hook: ServiceHook) -> None:
        """Serve the sandboxes created with service ``name`` through ``hook``, and hand it
        those that already exist (``hook.adopt``); unregistered again if adopting fails."""
        self.service_hooks[name] = hook
        try:
            adopt = getattr(hook, "adopt", None)
            if adopt is not None:
                adopt([(i.id, i.pid, i.status) for i in self.list() if name in i.spec.services])
        except BaseException:
            self.service_hooks.pop(name, None)
            raise

    def service_context(self, sid: str) -> SandboxContext:
        """What a sandbox service needs to run things inside this sandbox (its namespaces,
        uid range, cgroup and disk): see runtime.sandbox.spec.SandboxContext."""
        st = self._state(sid)
        if st.status != "running" or st.pid is None or st.ip is None:
            raise self._not_running(st)
        d = self._dir(sid)
        return SandboxContext(
            sid=sid,
            pid=st.pid,
            uid_base=st.uid_base,
            idmap=st.idmap,
            dir=d,
            engine_root=d / "disk" / "engine",
            cgroup_path=self.cgroups.path(sid),
            ip=st.ip,
            memory=st.spec.memory,
            pids=st.spec.pids,
            cpus=float(st.spec.cpus),
            runc=self.runc,
        )

    def layers_in_use(self) -> set[Path]:
        """Layer dirs (plain or shifted) that sandboxes on this root stack: for
        ``ImageStore.prune_layers(in_use=...)``, which must never delete them."""
        with self._lock:
            return {Path(p) for st in self._states.values() for p in st.layers}

    def stats(self, sid: str) -> dict[str, float | int]:
        st = self._state(sid)
        out: dict[str, float | int] = dict(self.cgroups.stats(sid))
        rootfs = self._dir(sid) / "rootfs"
        used = 0
        if mounted(rootfs):  # statfs of an overlay reports its upper fs: the quota'd ext4
            vfs = os.statvfs(rootfs)
            used = (vfs.f_blocks - vfs.f_bfree) * vfs.f_frsize
        out["disk_bytes"] = used
        out["disk_limit"] = st.spec.disk
        # what the host stores for it (the sparse image's allocated blocks): a paused lab's cost
        out["disk_image_bytes"] = self.disk_image_bytes(sid)
        return out

    def disk_image_bytes(self, sid: str) -> int:
        """Bytes the host's filesystem holds for the sandbox's disk image (its allocated blocks)."""
        with contextlib.suppress(OSError):
            return (self._dir(sid) / "disk.img").stat().st_blocks * 512
        return 0

    def spawn(
        self,
        sid: str,
        argv: builtins.list[str],
        *,
        tty: bool,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        rows: int = 24,
        cols: int = 80,
    ) -> Spawned:
        """Start ``argv`` inside the sandbox (its namespaces, cgroup, caps and seccomp)."""
        if not argv or not all(isinstance(a, str) for a in argv):
            raise errors.BadRequest("spawn: argv must be a non-empty list of strings")
        st = self._state(sid)
        if st.status != "running":
            raise self._not_running(st)
        self.touch(sid)
        d = self._dir(sid)
        with self._lock:  # atomic with _exec_cgroup's mkdir + add
            self.cgroups.gc_exec_cgroups(sid, keep=self._joining)
        image = self.images.get(st.spec.image)
        env_list = self._env(image, st.spec, env)
        cwd = cwd or (image.working_dir if image.working_dir not in ("", "/") else "/root")
        agent = self._agent(st, image)
        if agent is not None:
            try:
                return self._spawn_fast(agent, sid, argv, env_list, cwd, tty, rows, cols)
            except fastexec.AgentUnavailable as exc:
                self.agents.failed(sid, agent, exc)
                # An agent that died (a student may kill it from inside) is replaced at once, not
                # on the next exec: start a new one and use it for this spawn.
                retry = self._agent(st, image) if agent.broken else None
                if retry is not None:
                    try:
                        return self._spawn_fast(retry, sid, argv, env_list, cwd, tty, rows, cols)
                    except fastexec.AgentUnavailable as again:
                        self.agents.failed(sid, retry, again)
        log.debug("sandbox %s: spawn %r through runc exec", sid, argv[0])
        n = secrets.token_hex(4)
        cg_arg, cg_dir = self._exec_cgroup(sid, n)
        doc = bundle.process(argv=argv, env=env_list, cwd=cwd, tty=tty, rows=rows, cols=cols)
        pfile, pidfile, logfile = d / f"x-{n}.json", d / f"x-{n}.pid", d / f"x-{n}.log"
        bundle.write_private(pfile, json.dumps(doc))
        master: builtins.list[int] = []
        sock: socket.socket | None = None
        sock_path = d / f"c-{n}.sock"
        if tty:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(str(sock_path))
            sock.listen(1)

        def launch(stdin: int, stdout: int, stderr: int) -> int:
            cmd = [
                self.runc,
                "--root",
                str(self.runc_root),
                "--log",
                str(logfile),
                "--log-format",
                "json",
                "exec",
                "-d",
                "--pid-file",
                str(pidfile),
                "--cgroup",
                cg_arg,
                "--process",
                str(pfile),
            ]
            if tty:
                cmd += ["--tty", "--console-socket", str(sock_path)]
            cmd.append(sid)
            dn = subprocess.DEVNULL
            rc = run_quiet(
                cmd,
                timeout=30,
                stdin=dn if tty or stdin == -1 else stdin,
                stdout=dn if tty or stdout == -1 else stdout,
                stderr=dn if tty or stderr == -1 else stderr,
            )
            if rc != 0:
                why = bundle.runc_error(logfile)
                gone = self._init_gone(st)
                raise errors.RuntimeError(f"could not start {argv[0]!r} in sandbox {sid}: {gone or why}")
            pid = int(pidfile.read_text().strip())
            if sock is not None:
                master.append(bundle.receive_pty_master(sock))
            return pid

        try:
            proc = AdoptedPopen(
                launch,
                stdin=None if tty else subprocess.PIPE,
                stdout=None if tty else subprocess.PIPE,
                stderr=None if tty else subprocess.PIPE,
                argv=argv,
            )
        except BaseException:
            with contextlib.suppress(OSError):
                cg_dir.rmdir()
            raise
        finally:
            self._joined(cg_dir)
            if sock is not None:
                sock.close()
            for p in (pfile, pidfile, logfile, sock_path):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
        spawned = Spawned(proc, master[0] if master else None, cg_dir, self.cgroups)
        if spawned.pty_master is not None:
            os.set_blocking(spawned.pty_master, False)
            spawned.resize(rows, cols)
        return spawned

    def _init_gone(self, st: _State) -> str:
        """Why the sandbox's init is no longer there, for an error message ('' while it runs):
        how it ended, if it is our child not yet reaped, and what the OOM killer did in the
        sandbox's memory cgroup. runc only says a namespace file of a dead pid is missing."""
        if st.pid is None:
            return ""
        try:
            ended = os.waitid(os.P_PID, st.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            ended = None
        if ended is None and proc_start(st.pid) == st.pid_start:
            return ""  # it runs: runc failed for another reason
        if ended is None:
            how = "is gone"
        elif ended.si_code == os.CLD_EXITED:
            how = f"exited with status {ended.si_status}"
        else:
            try:
                name = signal.Signals(ended.si_status).name
            except ValueError:
                name = "unnamed"
            how = f"was killed by signal {ended.si_status} ({name})"
        ooms = self.cgroups.oom_kills(st.id)
        oom = f"; the OOM killer took {ooms} process(es) in it" if ooms else ""
        return f"the sandbox's init (pid {st.pid}) {how}{oom}"

    # fast exec path (fastexec.py) ------------------------------------------------------------

    def _agent(self, st: _State, image: ImageConfigLike) -> fastexec.ExecAgent | None:
        """The sandbox's running exec agent, started now if needed; None: use runc exec."""
        if not self.fast_exec:
            return None
        return self.agents.get(st.id, self._dir(st.id), lambda: self._env(image, st.spec, None))

    def _spawn_fast(
        self,
        agent: fastexec.ExecAgent,
        sid: str,
        argv: builtins.list[str],
        env: builtins.list[str],
        cwd: str,
        tty: bool,
        rows: int,
        cols: int,
    ) -> Spawned:
        _arg, cg_dir = self._exec_cgroup(sid, secrets.token_hex(4))
        try:
            proc, master = self.agents.spawn(agent, sid, cg_dir, argv, env, cwd, tty, rows, cols)
        finally:
            self._joined(cg_dir)
        spawned = Spawned(proc, master, cg_dir, self.cgroups)
        if spawned.pty_master is not None:
            os.set_blocking(spawned.pty_master, False)
            spawned.resize(rows, cols)
        return spawned

    def _exec_cgroup(self, sid: str, n: str) -> tuple[str, Path]:
        """A fresh exec sub-cgroup, protected from gc_exec_cgroups until ``_joined``."""
        with self._lock:
            cg_arg, cg_dir = self.cgroups.exec_cgroup(sid, int(n, 16))
            self._joining.add(cg_dir)
        return cg_arg, cg_dir

    def _joined(self, cg_dir: Path) -> None:
        with self._lock:
            self._joining.discard(cg_dir)

    def write_file(self, sid: str, path: str, content: str, *, timeout: float = 30.0) -> None:
        """Write ``/root/<path>`` inside the sandbox, as its root, from inside it.

        The host never opens a path in the student's filesystem after creation: a
        symlink the student planted resolves inside the sandbox's own root.
        """
        rel = workspace_path(path)
        sp = self.spawn(
            sid,
            ["/bin/sh", "-c", _WRITE_SCRIPT, "sh", "/root/" + rel],
            tty=False,
        )
        try:
            out, err = sp.proc.communicate(content.encode(), timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            sp.kill_tree()
            raise errors.ExecTimeout(f"writing /root/{rel} took longer than {timeout:g}s") from exc
        if sp.proc.returncode != 0:
            why = (err or out).decode(errors="replace")[-300:]
            raise errors.RuntimeError(f"could not write /root/{rel}: {why}")

    def reconcile(self) -> builtins.list[str]:
        """Re-adopt running sandboxes, mark dead ones (releasing their kernel resources)."""
        dead: builtins.list[str] = []
        with self._lock:
            states = list(self._states.values())
        for st in states:
            if st.status in ("pausing", "resuming") and not self._alive(st):
                # runtimed died half-way: what was kept is on the disk; paused again
                log.warning("sandbox %s was %s when runtimed stopped: paused", st.id, st.status)
                if st.pid is not None:
                    _reap(st.pid)
                self._stop(st)
                with contextlib.suppress(errors.RuntimeError):
                    self._unmount(st)
                with self._lock:
                    st.status, st.pid, st.pid_start = "paused", None, None
                    self._save(st)
                continue
            if st.status in ("running", "creating") and not self._alive(st):
                ended = self._init_gone(st)
                if st.pid is not None:
                    _reap(st.pid)
                log.warning("sandbox %s is dead (was %s): %s", st.id, st.status, ended or "its init is gone")
                self._stop(st)
                with self._lock:
                    st.status = "dead"
                    st.ended = ended
                    self._save(st)
            if st.status == "dead":
                dead.append(st.id)
        return dead

    def close(self) -> None:
        self.agents.close()  # the agents exit; what they started runs on
        with self._lock:
            self._states.clear()
            spare, self._spare = self._spare, None
        if spare is not None:
            spare.kill()
            spare.communicate()

    # internals --------------------------------------------------------------------------------

    def _env(self, image: ImageConfigLike, spec: SandboxSpec, extra: dict[str, str] | None) -> builtins.list[str]:
        env: dict[str, str] = {}
        for item in image.env:
            k, _, v = item.partition("=")
            env[k] = v
        env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        env.setdefault("HOME", "/root")
        env.setdefault("TERM", "xterm-256color")
        for name in spec.services:
            env.update(getattr(self.service_hooks.get(name), "env", None) or {})
        env.update(spec.env)
        env.update(extra or {})
        return [f"{k}={v}" for k, v in env.items()]

    def warm(self) -> None:
        """Build the disk template of the default sandbox size if it is missing (a mkfs.ext4:
        1-5 s on a busy box), so the first class after an install does not wait for it under
        its herd; runtimed runs this in a thread at start. Other sizes are built on first use."""
        try:
            self._template(SandboxSpec().disk)
        except (errors.RuntimeError, OSError) as e:
            log.warning("could not build the default disk template now (the first create will): %s", e)

    def _template(self, size: int) -> Path:
        """The empty ext4 image of ``size`` bytes every new sandbox's disk is a sparse copy of,
        built once per size under the root. Built under a lock of its own (a file lock, for two
        managers on one root, and a thread lock), never the manager's: a mkfs takes seconds,
        and every request for any sandbox takes the manager's lock."""
        path = self.templates / f"ext4-{size}.img"
        if path.exists():
            return path
        fd = os.open(self.templates / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            with self._template_lock:
                fcntl.flock(fd, fcntl.LOCK_EX)
                if not path.exists():
                    self._build_template(path, size)
        finally:
            os.close(fd)  # releases the flock
        return path

    @staticmethod
    def _build_template(path: Path, size: int) -> None:
        tmp = path.with_suffix(".tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        with open(tmp, "wb") as fh:
            fh.truncate(size)
        run(
            [
                "mkfs.ext4",
                "-q",
                "-F",
                "-O",
                "^has_journal",
                "-m",
                "0",
                "-E",
                "lazy_itable_init=1,nodiscard",
                str(tmp),
            ],
            timeout=60,
        )
        tmp.replace(path)

    def _files(self, st: _State, hostname: str) -> builtins.list[dict[str, Any]]:
        resolv = ["# generated by kubelab runtime"]
        if st.spec.allow_outbound:
            with contextlib.suppress(OSError):
                for line in Path("/etc/resolv.conf").read_text().splitlines():
                    parts = line.split()
                    if len(parts) >= 2 and parts[0] == "nameserver" and not parts[1].startswith(("127.", "::1")):
                        resolv.append(line)
        files: builtins.list[dict[str, Any]] = [
            {"path": "etc/hostname", "content": hostname + "\n"},
            {
                "path": "etc/hosts",
                "content": f"127.0.0.1\tlocalhost\n::1\tlocalhost\n{st.ip}\t{hostname}\n",
            },
            {"path": "etc/resolv.conf", "content": "\n".join(resolv) + "\n"},
        ]
        for rel, content in st.spec.files.items():
            files.append(
                {
                    "path": "root/" + workspace_path(rel),
                    "content": content,
                    "dir_modes": {"root": 0o700},
                }
            )
        return files

    def _take_helper(self) -> subprocess.Popen[bytes]:
        """The pre-started mount helper (off the critical path; forked by the fork server, so
        its start costs ~3 ms of CPU, not ~20 ms), replaced by a fresh one; each helper serves
        exactly one request and exits."""
        with self._lock:
            helper, self._spare = self._spare, self._start_helper()
        if helper is None or helper.poll() is not None:
            helper = self._start_helper()
        return helper

    @staticmethod
    def _start_helper() -> subprocess.Popen[bytes]:
        # forked from the fork server (runtime/kernel/forkserver.py): no interpreter start-up per sandbox
        return forkserver.spawn(
            "runtime.sandbox._mounthelper", [], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )

    def _mount_rootfs(
        self, st: _State, layers: builtins.list[Path], hostname: str, idmap: bool, *, resume: bool = False
    ) -> int:
        d = self._dir(st.id)
        req = {
            "op": "setup",
            # resume: the disk already holds upper/work and every file (hosts and hostname
            # are the same: the sandbox keeps its slot); nothing is written into it
            "resume": resume,
            "uid_base": st.uid_base,
            "size": bundle.IDMAP_SIZE,
            "disk_image": str(d / "disk.img"),
            "disk_mnt": str(d / "disk"),
            "rootfs": str(d / "rootfs"),
            "layers_dir": str(d / "layers"),
            "layers": [str(p) for p in layers],
            "files": [] if resume else self._files(st, hostname),
            "idmap": idmap,
            "keep_disk": any(getattr(self.service_hooks.get(n), "keep_disk", False) for n in st.spec.services),
        }
        data = json.dumps(req).encode()
        for attempt in range(2):
            helper = self._take_helper()
            try:
                out, err = helper.communicate(data, timeout=60)
            except subprocess.TimeoutExpired as exc:
                helper.kill()
                helper.wait()
                raise errors.RuntimeError("sandbox root filesystem setup timed out") from exc
            except BrokenPipeError:  # the spare died before we used it (killed by someone)
                helper.wait()
                if attempt == 0:
                    continue
                raise
            break
        cp = subprocess.CompletedProcess(helper.args, helper.returncode, out, err)
        if cp.returncode not in (0, EXIT_IDMAP_REFUSED):
            why = (cp.stdout + cp.stderr).decode(errors="replace").strip()[-800:]
            raise errors.RuntimeError(f"sandbox root filesystem setup failed: {why}")
        if cp.returncode == EXIT_IDMAP_REFUSED:
            log.info("idmapped mounts refused: %s", cp.stdout.decode(errors="replace").strip())
        return cp.returncode

    def _start(self, st: _State, image: ImageConfigLike, *, resume: bool = False) -> None:
        sid, spec, d = st.id, st.spec, self._dir(st.id)
        t0 = time.perf_counter()
        for sub in ("rootfs", "disk", "layers"):
            (d / sub).mkdir(mode=0o711, exist_ok=resume)
        if not resume:
            _sparse_copy(self._template(spec.disk), d / "disk.img")
        hostname = spec.hostname or f"sandbox-{sid[:8]}"
        idmap = self._idmap is not False
        if resume:
            # the very layers it was made with (kept out of pruning by layers_in_use)
            idmap, layers = st.idmap, [Path(p) for p in st.layers]
            if self._mount_rootfs(st, layers, hostname, idmap, resume=True) == EXIT_IDMAP_REFUSED:
                raise errors.RuntimeError("idmapped mounts are refused now; this paused sandbox needs them")
        else:
            if idmap:
                layers = self.images.layer_dirs(spec.image)
            else:
                layers = self.images.shifted_layer_dirs(spec.image, st.uid_base, bundle.IDMAP_SIZE)
            rc = self._mount_rootfs(st, layers, hostname, idmap)
            if rc == EXIT_IDMAP_REFUSED:
                self._idmap = idmap = False
                layers = self.images.shifted_layer_dirs(spec.image, st.uid_base, bundle.IDMAP_SIZE)
                self._mount_rootfs(st, layers, hostname, idmap)
            if self._idmap is None:
                self._idmap = True
                log.info("sandbox layers: using idmapped mounts")
            elif not idmap:
                log.info("sandbox layers: using shifted copies (idmapped mounts refused)")
        st.idmap = idmap
        st.layers = [str(p) for p in layers]
        t1 = time.perf_counter()
        cfg = bundle.config(
            sid=sid,
            rootfs=d / "rootfs",
            hostname=hostname,
            env=self._env(image, spec, None),
            uid_base=st.uid_base,
            cgroups_path=self.cgroups.path(sid),
            memory=spec.memory,
            swap_limit=self.cgroups.supports_swap_limit(),
            pids=spec.pids,
            cpus=spec.cpus,
            tini=bundle.find_tini(layers),
        )
        for name in spec.services:
            extra = getattr(self.service_hooks[name], "mounts", None)
            if extra is not None:
                cfg["mounts"].extend(extra(sid, d))
        bundle.write_private(d / "config.json", json.dumps(cfg))
        logfile = d / "runc.log"
        cmd = [self.runc, "--root", str(self.runc_root), "--log", str(logfile)]
        cmd += ["--log-format", "json", "run", "-d", "--bundle", str(d)]
        cmd += ["--pid-file", str(d / "pid"), sid]
        # The container inherits runc's stdio: never a pipe we would wait on, never a host file.
        if run_quiet(cmd, timeout=60) != 0:
            raise errors.RuntimeError(f"could not start sandbox: {bundle.runc_error(logfile)}")
        t2 = time.perf_counter()
        pid = int((d / "pid").read_text().strip())
        st.pid, st.pid_start = pid, proc_start(pid)
        assert st.ip is not None
        self.net.attach(sid, pid, st.ip, spec.allow_outbound)
        self.cgroups.delegate(sid, st.uid_base)
        with self._lock:
            st.status = "running"
            self._save(st)
        t3 = time.perf_counter()
        log.info(
            "sandbox %s running: pid %d ip %s uid_base %d (rootfs %.0f ms, runc %.0f ms, net %.0f ms)",
            sid,
            pid,
            st.ip,
            st.uid_base,
            (t1 - t0) * 1000,
            (t2 - t1) * 1000,
            (t3 - t2) * 1000,
        )

    def _run_setup(self, st: _State) -> None:
        assert st.spec.setup is not None
        sp = self.spawn(st.id, ["/bin/sh", "-c", st.spec.setup], tty=False)
        try:
            out, err = sp.proc.communicate(timeout=SETUP_TIMEOUT)
        except subprocess.TimeoutExpired:
            sp.kill_tree()
            out, err = b"", b"(timed out)"
        if sp.proc.returncode != 0:
            tail = (out + err).decode(errors="replace").strip()[-1500:]
            with contextlib.suppress(Exception):
                self._destroy(st)
            raise errors.RuntimeError(f"lab setup failed with exit status {sp.proc.returncode}: {tail}")

    def _stop(self, st: _State) -> None:
        """Kill the sandbox's processes; release cgroups, network, runc state (idempotent)."""
        sid = st.id
        self.agents.forget(sid)
        runc = [self.runc, "--root", str(self.runc_root)]
        if (self.runc_root / sid).exists():
            run([*runc, "kill", sid, "KILL"], check=False)
        if st.pid is not None and proc_start(st.pid) == st.pid_start:
            with contextlib.suppress(ProcessLookupError):
                os.kill(st.pid, signal.SIGKILL)
        if st.pid is not None:
            deadline = time.monotonic() + 10
            while proc_start(st.pid) == st.pid_start and time.monotonic() < deadline:
                _reap(st.pid)
                time.sleep(0.005)
            _reap(st.pid)
        if (self.runc_root / sid).exists():
            run([*runc, "delete", "--force", sid], check=False, timeout=30)
        self.cgroups.remove(sid)
        self.net.detach(sid, st.ip)

    def _start_services(self, st: _State, *, fresh: bool = False) -> None:
        """Start the sandbox's services and place the files they return under /root.

        ``fresh``: the sandbox was built by this create and nothing of the student's has run
        in it yet; the files (and a service's ``place_symlink``) are then written from the
        host, with no process in the sandbox (placefiles.py says why and how)."""
        assert st.pid is not None
        if fresh:
            with self._lock:
                self._fresh.add(st.id)
        try:
            for name in st.spec.services:
                for path, content in self.service_hooks[name].start(st.id, st.pid).items():
                    if not (fresh and self._place(st, "/root/" + workspace_path(path), content=content)):
                        self.write_file(st.id, path, content)
        finally:
            with self._lock:
                self._fresh.discard(st.id)

    def place_symlink(self, sid: str, path: str, target: str) -> bool:
        """For a service's ``start`` hook: make ``path`` a symlink to ``target`` from the host
        while ``create`` starts the services of the sandbox it built (placefiles.py). False
        otherwise (a resume, or the placement failed): the caller makes it from inside."""
        with self._lock:
            st = self._states.get(sid) if sid in self._fresh else None
        return st is not None and self._place(st, path, link=target)

    def _place(self, st: _State, path: str, *, content: str | None = None, link: str | None = None) -> bool:
        rootfs = self._dir(st.id) / "rootfs"
        try:
            if link is not None:
                placefiles.symlink(rootfs, path, link, st.uid_base)
            else:
                placefiles.write_file(rootfs, path, (content or "").encode(), st.uid_base)
        except (OSError, ValueError) as exc:
            log.info("sandbox %s: %s not placed from the host (%s); writing it from inside", st.id, path, exc)
            return False
        return True

    def _stop_services(self, st: _State, *, remove: bool, pause: bool = False) -> None:
        # in the reverse order of their start: a service may use one started before it
        # (the kubernetes service runs its pods on the docker service's engine)
        for name in reversed(st.spec.services):
            hook = self.service_hooks.get(name)
            if hook is not None:
                try:
                    paused = getattr(hook, "pause", None) if pause else None
                    if paused is not None:
                        paused(st.id)
                    else:
                        hook.stop(st.id, remove=remove)
                except Exception:  # the sandbox must still go: log, never block its removal
                    log.exception("sandbox %s: stopping service %s failed", st.id, name)

    def _unmount(self, st: _State) -> None:
        """Unmount the sandbox's root, disk and layer mounts (its processes are gone)."""
        d = self._dir(st.id)
        for m in (d / "rootfs", d / "disk", *sorted((d / "layers").glob("*"))):
            if m.exists() and mounted(m):
                run(["umount", "--lazy", str(m)], timeout=30)
        for m in (d / "rootfs", d / "disk"):
            if mounted(m):
                raise errors.RuntimeError(f"could not unmount {m}")

    def _disk_attached(self, st: _State) -> bool:
        """Whether a loop device still backs the sandbox's disk image (a lazy unmount not
        finished yet): mounting it a second time then would corrupt it."""
        image = str(self._dir(st.id) / "disk.img")
        for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
            with contextlib.suppress(OSError):
                if backing.read_text().strip().removesuffix(" (deleted)") == image:
                    return True
        return False

    def _destroy(self, st: _State) -> None:
        """Remove every trace of a sandbox: processes, cgroups, network, mounts, dirs, ids."""
        self._stop_services(st, remove=True)
        self._stop(st)
        try:
            self._unmount(st)
        except errors.RuntimeError as e:
            raise errors.RuntimeError(f"{e}; not deleting it") from None
        d = self._dir(st.id)
        shutil.rmtree(d)
        self.agents.drop(st.id)  # one a concurrent spawn may have started meanwhile
        with self._lock:
            self._states.pop(st.id, None)
            self._life_locks.pop(st.id, None)  # a waiter holds its own reference
