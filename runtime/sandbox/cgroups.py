"""Cgroups for sandboxes, v1 (hybrid) and v2 (unified), behind one small class.

runc creates and limits the sandbox's cgroup from ``linux.cgroupsPath``
(``/<parent>/<id>``, i.e. ``/kubelab/<id>`` in production) and
``linux.resources``; this module only *reads* it (stats), *delegates* it and
runs per-exec sub-cgroups.

Limits: memory with no swap (OCI ``swap`` = ``limit``, i.e. ``memory.memsw`` on
v1, ``memory.swap.max`` = 0 on v2; a v1 kernel booted without swap accounting
has no memsw files, and then only the memory limit applies), ``pids.max``,
CFS quota/period.

Detection: ``/sys/fs/cgroup/cgroup.controllers`` exists only on a pure v2 host.
On a hybrid host (this one) runc also places the sandbox in the unified
hierarchy, so that directory is removed with the v1 ones.
Otherwise each v1 controller is a mount under ``/sys/fs/cgroup/<name>``
(``cpu,cpuacct`` may be one co-mounted dir; we resolve through the mount table).

Delegation (root inside may create a child cgroup below its own and cap a
process in it):

* v2: chown the sandbox's dir and its ``cgroup.procs``, ``cgroup.threads``,
  ``cgroup.subtree_control`` to the mapped root, as systemd delegation does;
  runc mounts a cgroup2 at ``/sys/fs/cgroup`` read-write inside the cgroup
  namespace. The sandbox's own limit files stay root-owned, so it cannot raise
  its own caps; children are capped by the parent anyway. The usual v2 rule
  applies inside: move your processes into a leaf before enabling controllers.
* v1: the same per controller for memory, pids and cpu(acct) (dir, ``tasks``,
  ``cgroup.procs``). Files of a child created from inside are owned by its
  creator (the kernel's ``cgroup_kn_set_ugid``), so the student writes the
  child's limits; hierarchy keeps them under the sandbox's.

Per-exec sub-cgroups (``kill_tree``): every ``spawn`` runs in a fresh
``.exec-<n>`` child of the sandbox's pids cgroup (v1) or unified cgroup (v2)
via ``runc exec --cgroup``, or, on the fast path (fastexec.py), by the process
itself writing to that cgroup's ``cgroup.procs`` through a descriptor runtimed
opened as root (the exec agent lives in its own ``.agent`` child). Killing the tree is then exact, whatever the
process did (double fork, setsid): v2 writes ``cgroup.kill``; v1 first sets
``pids.max`` to 0 so nothing new can fork, then SIGKILLs every member until the
cgroup is empty.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from collections.abc import Collection
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
V1_DELEGATED = ("memory", "pids", "cpu")
V1_DELEGATED_FILES: tuple[str, ...] = ("tasks", "cgroup.procs")
V2_DELEGATED_FILES: tuple[str, ...] = ("cgroup.procs", "cgroup.threads", "cgroup.subtree_control")


def is_v2() -> bool:
    return (CGROUP_ROOT / "cgroup.controllers").exists()


def _v1_mounts() -> dict[str, Path]:
    """Controller name -> hierarchy mount point, from /proc/self/mountinfo."""
    out: dict[str, Path] = {}
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            left, _, right = line.partition(" - ")
            fields, rfields = left.split(), right.split()
            if len(rfields) >= 1 and rfields[0] == "cgroup2":
                out.setdefault("unified", Path(fields[4]))  # hybrid: runc joins it too
                continue
            if len(rfields) < 3 or rfields[0] != "cgroup":
                continue
            for opt in rfields[2].split(","):
                if opt in {
                    "cpu",
                    "cpuacct",
                    "cpuset",
                    "memory",
                    "devices",
                    "freezer",
                    "net_cls",
                    "net_prio",
                    "blkio",
                    "perf_event",
                    "hugetlb",
                    "pids",
                    "rdma",
                    "misc",
                } or opt.startswith("name="):
                    out.setdefault(opt, Path(fields[4]))
    return out


class Cgroups:
    """The cgroup layout of this host, resolved once."""

    def __init__(self, parent: str = "kubelab") -> None:
        self.parent = parent.strip("/")
        self.v2 = is_v2()
        self.v1 = {} if self.v2 else _v1_mounts()

    def path(self, sid: str) -> str:
        """The runc ``cgroupsPath`` of a sandbox."""
        return f"/{self.parent}/{sid}"

    def dirs(self, sid: str) -> list[Path]:
        """Every directory the sandbox's cgroup has on this host (one on v2)."""
        rel = self.path(sid).lstrip("/")
        if self.v2:
            return [CGROUP_ROOT / rel]
        return sorted({m / rel for m in self.v1.values()})

    def _ctl(self, controller: str, sid: str) -> Path:
        rel = self.path(sid).lstrip("/")
        if self.v2:
            return CGROUP_ROOT / rel
        return self.v1[controller] / rel

    def oom_kills(self, sid: str) -> int | None:
        """How many processes the kernel's OOM killer took in the sandbox's memory cgroup
        (v2 ``memory.events``, v1 ``memory.oom_control``); None when the kernel does not say."""
        d = self._ctl("memory", sid)
        for name in ("memory.events", "memory.oom_control"):
            try:
                text = (d / name).read_text()
            except (OSError, KeyError):
                continue
            for line in text.splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill" and value.strip().isdigit():
                    return int(value)
        return None

    def supports_swap_limit(self) -> bool:
        if self.v2:
            return True
        mem = self.v1.get("memory")
        return mem is not None and (mem / "memory.memsw.limit_in_bytes").exists()

    # delegation -------------------------------------------------------------------------------

    def delegate(self, sid: str, uid: int) -> None:
        if self.v2:
            targets = [(CGROUP_ROOT / self.path(sid).lstrip("/"), V2_DELEGATED_FILES)]
        else:
            targets = [(self._ctl(c, sid), V1_DELEGATED_FILES) for c in V1_DELEGATED if c in self.v1]
        for d, files in targets:
            os.chown(d, uid, uid)
            for f in files:
                with contextlib.suppress(FileNotFoundError):
                    os.chown(d / f, uid, uid)

    # stats ------------------------------------------------------------------------------------

    def stats(self, sid: str) -> dict[str, int]:
        def read_int(p: Path) -> int:
            try:
                raw = p.read_text().strip()
            except OSError:
                return 0
            return (1 << 63) - 1 if raw == "max" else int(raw)

        if self.v2:
            d = self._ctl("", sid)
            usage_ns = 0
            with contextlib.suppress(OSError):
                for line in (d / "cpu.stat").read_text().splitlines():
                    k, _, v = line.partition(" ")
                    if k == "usage_usec":
                        usage_ns = int(v) * 1000
            return {
                "memory_bytes": read_int(d / "memory.current"),
                "memory_limit": read_int(d / "memory.max"),
                "pids": read_int(d / "pids.current"),
                "pids_limit": read_int(d / "pids.max"),
                "cpu_usage_ns": usage_ns,
            }
        mem, pids = self._ctl("memory", sid), self._ctl("pids", sid)
        acct = self._ctl("cpuacct", sid) if "cpuacct" in self.v1 else None
        return {
            "memory_bytes": read_int(mem / "memory.usage_in_bytes"),
            "memory_limit": read_int(mem / "memory.limit_in_bytes"),
            "pids": read_int(pids / "pids.current"),
            "pids_limit": read_int(pids / "pids.max"),
            "cpu_usage_ns": read_int(acct / "cpuacct.usage") if acct else 0,
        }

    # per-exec sub-cgroups ---------------------------------------------------------------------

    def exec_cgroup(self, sid: str, n: int) -> tuple[str, Path]:
        """Create the sub-cgroup for exec ``n``; return (runc --cgroup value, its dir)."""
        return self.sub_cgroup(sid, f".exec-{n}")

    def sub_cgroup(self, sid: str, name: str) -> tuple[str, Path]:
        """Create the sub-cgroup ``name`` (the exec agent's is ``.agent``, see fastexec.py)
        of the sandbox's pids (v1) or unified (v2) cgroup; return (runc --cgroup value, dir)."""
        if self.v2:
            d = self._ctl("", sid) / name
            arg = name
        else:
            d = self._ctl("pids", sid) / name
            arg = f"pids:{name}"
        d.mkdir(exist_ok=True)
        return arg, d

    def gc_exec_cgroups(self, sid: str, keep: Collection[Path] = ()) -> None:
        """Remove finished exec sub-cgroups (rmdir fails with EBUSY while one has members),
        except ``keep``: those just created, whose process has not joined yet."""
        base = self._ctl("" if self.v2 else "pids", sid)
        try:
            names = [e.name for e in os.scandir(base) if e.name.startswith(".exec-") and base / e.name not in keep]
        except OSError:
            return
        for name in names:
            with contextlib.suppress(OSError):
                (base / name).rmdir()

    def kill_cgroup(self, d: Path, *, timeout: float = 5.0) -> None:
        """Kill every process in the (leaf) cgroup ``d`` and wait until it is empty."""
        if not d.exists():
            return
        if self.v2 and (d / "cgroup.kill").exists():
            with contextlib.suppress(OSError):
                (d / "cgroup.kill").write_text("1")
        else:
            with contextlib.suppress(OSError):
                (d / "pids.max").write_text("0")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                pids = [int(x) for x in (d / "cgroup.procs").read_text().split()]
            except OSError:
                return
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.01)

    # removal ----------------------------------------------------------------------------------

    def remove(self, sid: str, *, timeout: float = 5.0) -> None:
        """Remove the sandbox's cgroup dirs in every hierarchy, children first, killing
        leftovers."""
        for d in self.dirs(sid):
            if not d.exists():
                continue
            for sub, _dirs, _files in sorted(os.walk(d), key=lambda t: -len(t[0])):
                p = Path(sub)
                deadline = time.monotonic() + timeout
                while True:
                    try:
                        p.rmdir()
                        break
                    except FileNotFoundError:
                        break
                    except OSError as exc:
                        if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                            raise
                        self.kill_cgroup(p, timeout=0.5)
                        time.sleep(0.01)

    def remove_parent(self) -> None:
        """Remove the runtime's parent cgroup dirs if no sandbox is left in them."""
        parents = [CGROUP_ROOT / self.parent] if self.v2 else [m / self.parent for m in self.v1.values()]
        for p in sorted(set(parents)):
            with contextlib.suppress(OSError):  # EBUSY while a sandbox still lives there
                p.rmdir()
