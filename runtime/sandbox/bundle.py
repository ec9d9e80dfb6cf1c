"""The OCI runtime config (``config.json``) of a sandbox, for runc 1.1.

Namespaces: pid, mount, uts, ipc, network, cgroup and user. The user
namespace maps container ids 0..65535 to a host range ``uid_base..`` that is
allocated per sandbox, so root inside is an unprivileged host uid that owns
nothing outside its sandbox, and two sandboxes never share an id.

Capabilities: Docker's default set minus ``MKNOD`` (device nodes cannot be
created in a user namespace anyway) and ``AUDIT_WRITE`` (no audit in a
sandbox), plus ``SYS_ADMIN`` and ``NET_ADMIN``. Both are *namespaced* here:
the kernel checks them against the user namespace owning the object, which for
every mount, pid, uts, net and cgroup namespace a student can touch is the
sandbox's own (or one nested below it). That is what makes the module 2
exercises work (``unshare --pid --fork --mount-proc``, ``unshare --uts``,
``unshare --net`` then ``ip link``), while anything owned by the host's
initial user namespace (loading modules, host mounts, other netns, raw devices,
``/proc/sys`` outside net.*) still needs capabilities root inside does not
have. ``noNewPrivileges`` is set.

Seccomp (``seccomp.json`` beside this file): Docker's default semantics, an
allow-list with EPERM for everything else, with the ``CAP_SYS_ADMIN`` group
resolved the way Docker resolves it when that capability is granted, but only
for what nested namespaces need: ``clone``/``clone3`` without flag
restrictions, ``unshare``, ``setns``, ``mount``/``umount2``,
``sethostname``/``setdomainname``. The rest of Docker's SYS_ADMIN group stays
denied (``bpf``, ``perf_event_open``, ``quotactl``, ``syslog``,
``fanotify_init``, ``lookup_dcookie``), as do ``pivot_root``, the keyring
(``keyctl``, ``add_key``, ``request_key``), ``kexec``, modules, clock and
swap calls, ``open_by_handle_at`` and AF_VSOCK sockets. The new mount API
(``fsopen``, ``open_tree``, ...) gets ENOSYS so util-linux falls back to
``mount(2)``, which the profile allows.

Paths: runc's default masked paths (``/proc/kcore``, ``/proc/keys``, ...) and
read-only paths (``/proc/sys``, ``/proc/sysrq-trigger``, ...); ``/sys`` is
read-only; the cgroup filesystem is mounted read-write so the sandbox's
delegated cgroup is usable (see cgroups.py). Mounts done by runc inside the
sandbox's own user namespace are not locked, which is also why a nested
``mount -t proc`` is accepted (the kernel's "fully visible" check).

PID 1 is tini (the image's ``/sbin/tini`` or ``/usr/bin/tini``, else the
host's ``tini-static`` bind-mounted read-only at ``/dev/init``, so images need
not ship it) running ``sleep`` forever; tini reaps orphans.
"""

from __future__ import annotations

import json
import os
import socket
from functools import cache
from pathlib import Path
from typing import Any

from runtime import errors

CAPS = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_RAW",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_SYS_ADMIN",
    "CAP_NET_ADMIN",
]

MASKED = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
]
READONLY = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]

HOST_TINI = Path("/usr/bin/tini-static")
TINI_IN_IMAGE = ("sbin/tini", "usr/bin/tini", "usr/sbin/tini", "bin/tini")
IDMAP_SIZE = 65536


@cache
def seccomp_profile() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((Path(__file__).parent / "seccomp.json").read_text())
    data.pop("comment", None)
    for rule in data["syscalls"]:
        rule.pop("comment", None)
    return data


def receive_pty_master(sock: socket.socket, timeout: float = 10.0) -> int:
    """The PTY master runc sends to its ``--console-socket`` (listening ``sock``)."""
    sock.settimeout(timeout)
    conn, _ = sock.accept()
    with conn:
        _msg, fds, _flags, _addr = socket.recv_fds(conn, 1024, 1)
    if not fds:
        raise errors.RuntimeError("runc sent no PTY master")
    return fds[0]


def runc_error(logfile: Path) -> str:
    """The error and fatal messages of a runc ``--log-format json`` log, for an error text."""
    try:
        lines = logfile.read_text().splitlines()
    except OSError:
        return "(no runc log)"
    msgs = []
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            msgs.append(line)
            continue
        if rec.get("level") in ("error", "fatal"):
            msgs.append(str(rec.get("msg")))
    return "; ".join(msgs)[-800:] or "(runc gave no reason)"


def find_tini(layers: list[Path]) -> str | None:
    """The image's tini path ("/sbin/tini"), looking through layers top-most first."""
    for rel in TINI_IN_IMAGE:
        for layer in reversed(layers):
            p = layer / rel
            if p.is_file() and not p.is_symlink():
                return "/" + rel
    return None


def standard_mounts(*, proc_options: list[str], shm_size: int, cgroup_writable: bool) -> list[dict[str, Any]]:
    """The OCI mounts every runc container of ours gets: /proc, /dev (tmpfs, pts, shm,
    mqueue), a read-only /sys and the cgroup filesystem (writable where it is delegated)."""
    return [
        {
            "destination": "/proc",
            "type": "proc",
            "source": "proc",
            **({"options": proc_options} if proc_options else {}),
        },
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        },
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={shm_size}"],
        },
        {
            "destination": "/dev/mqueue",
            "type": "mqueue",
            "source": "mqueue",
            "options": ["nosuid", "noexec", "nodev"],
        },
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
        {
            "destination": "/sys/fs/cgroup",
            "type": "cgroup",
            "source": "cgroup",
            "options": ["nosuid", "noexec", "nodev", "relatime", "rw" if cgroup_writable else "ro"],
        },
    ]


def config(
    *,
    sid: str,
    rootfs: Path,
    hostname: str,
    env: list[str],
    uid_base: int,
    cgroups_path: str,
    memory: int,
    swap_limit: bool,
    pids: int,
    cpus: float,
    tini: str | None,
) -> dict[str, Any]:
    period = 100_000
    init = tini or "/dev/init"
    mounts = standard_mounts(proc_options=[], shm_size=65536 * 1024, cgroup_writable=True)
    if tini is None:
        mounts.append(
            {
                "destination": "/dev/init",
                "type": "bind",
                "source": str(HOST_TINI),
                "options": ["bind", "ro", "nosuid", "nodev"],
            }
        )
    memory_res: dict[str, Any] = {"limit": memory}
    if swap_limit:
        memory_res["swap"] = memory  # OCI "swap" is memory+swap: no swap at all
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": [init, "-s", "--", "sleep", "2147483647"],
            "env": env,
            "cwd": "/",
            "capabilities": {k: CAPS for k in ("bounding", "effective", "permitted")},
            "noNewPrivileges": True,
            "oomScoreAdj": 500,
        },
        "root": {"path": str(rootfs), "readonly": False},
        "hostname": hostname,
        "mounts": mounts,
        "linux": {
            "uidMappings": [{"containerID": 0, "hostID": uid_base, "size": IDMAP_SIZE}],
            "gidMappings": [{"containerID": 0, "hostID": uid_base, "size": IDMAP_SIZE}],
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount", "user", "cgroup")],
            "cgroupsPath": cgroups_path,
            "resources": {
                "devices": [{"allow": False, "access": "rwm"}],
                "memory": memory_res,
                "pids": {"limit": pids},
                "cpu": {"quota": max(1000, int(cpus * period)), "period": period},
            },
            "sysctl": {
                "net.ipv6.conf.all.disable_ipv6": "1",
                "net.ipv6.conf.default.disable_ipv6": "1",
            },
            "maskedPaths": MASKED,
            "readonlyPaths": READONLY,
            "seccomp": seccomp_profile(),
        },
    }


def process(*, argv: list[str], env: list[str], cwd: str, tty: bool, rows: int, cols: int) -> dict[str, Any]:
    """A ``runc exec --process`` document: PID 1's caps and no_new_privs (seccomp is inherited)."""
    doc: dict[str, Any] = {
        "terminal": tty,
        "user": {"uid": 0, "gid": 0},
        "args": argv,
        "env": env,
        "cwd": cwd,
        "capabilities": {k: CAPS for k in ("bounding", "effective", "permitted")},
        "noNewPrivileges": True,
        "oomScoreAdj": 500,
    }
    if tty:
        doc["consoleSize"] = {"height": rows, "width": cols}
    return doc


def write_private(path: Path, text: str) -> None:
    """Write a root-only file (state and configs carry the lab's env and files)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
