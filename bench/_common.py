"""Helpers shared by the sandbox benches (sandbox_start.py, sandbox_density.py).

* ``private_daemon``: the runtimed at $RUNTIME_SOCKET if set, else one started
  here on a temp root with its own subnet, bridge, cgroup parent and uid range
  (so it never clashes with a production daemon or another session's tests),
  in its own session so a Ctrl-C reaches the bench, not the daemon: the bench
  removes its sandboxes first, then stops the daemon and cleans its host state.
  ``kube_listen`` turns the kubernetes service on (default ``off``).
* ``ensure_repo_image``: an image the daemon lacks, imported from the repository's store
  (``var/runtime/images``), else built.
* ``busybox_rootfs``: the daemon's own ``busybox`` image flattened into a plain
  directory, so floors (bare runc, Docker) run exactly the same files.
* ``MemInfo`` / ``pid_rss_kb``: host memory figures from /proc.

Progress goes to stderr; each bench prints one JSON object on the last stdout line.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from runtime import errors  # noqa: E402
from runtime.auth import read_admin_token  # noqa: E402
from runtime.client import Client  # noqa: E402

__all__ = ["Client", "errors"]


def log(tag: str, msg: str) -> None:
    print(f"[{tag}] {msg}", file=sys.stderr, flush=True)


def pct(xs: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    s = sorted(xs)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], object], what: str, timeout: float = 60) -> None:
    """Poll ``check`` until it returns something true; exit naming ``what`` if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if check():
                return
        time.sleep(0.05)
    raise SystemExit(f"{what} did not come up")


def ms(x: float) -> float:
    return round(x, 1)


def loadavg() -> list[float]:
    return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]


def sigterm_as_interrupt() -> None:
    """Make SIGTERM/SIGHUP unwind like Ctrl-C, so every ``finally`` cleans up."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGHUP, handler)


@dataclass(frozen=True)
class HostResources:
    """What a private daemon must not share with any other daemon on this host."""

    subnet: str
    bridge: str
    cgroup_parent: str
    uid_start: int

    def argv(self) -> list[str]:
        return [
            *("--subnet", self.subnet, "--bridge", self.bridge),
            *("--cgroup-parent", self.cgroup_parent, "--uid-start", str(self.uid_start)),
        ]


@dataclass
class Daemon:
    socket: str
    root: Path | None  # None: not ours ($RUNTIME_SOCKET)
    pid: int | None  # the daemon's pid (ours, or the socket's listener found by SO_PEERCRED)
    resources: HostResources | None


def socket_peer_pid(path: str) -> int | None:
    """The pid of the process listening on a unix socket (SO_PEERCRED), if we may see it."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(path)
        raw = s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, _uid, _gid = struct.unpack("3i", raw)
        return pid if pid > 0 else None
    return None


@contextlib.contextmanager
def private_daemon(tag: str, res: HostResources, kube_listen: str = "off") -> Iterator[Daemon]:
    """``kube_listen``: the daemon's ``--kube-listen`` (``off``: no kubernetes service;
    ``127.0.0.1:0``: the service, its grader listener on a free loopback port)."""
    sock = os.environ.get("RUNTIME_SOCKET")
    # runtimed's admin credential (runtime.auth): a running daemon's, read beside its socket
    # (as root), or one we give the private daemon; the bench's clients use it by $RUNTIME_TOKEN.
    token = os.environ.get("RUNTIME_TOKEN") or os.environ.get("RUNTIME_ADMIN_TOKEN")
    token = token or (read_admin_token(sock) if sock else None) or secrets.token_urlsafe(32)
    os.environ["RUNTIME_TOKEN"] = token
    if sock:
        log(tag, f"using the runtimed at RUNTIME_SOCKET={sock}")
        yield Daemon(sock, None, socket_peer_pid(sock), None)
        return
    root = Path(tempfile.mkdtemp(prefix=f"kl-bench-{tag}-", dir="/tmp"))
    root.chmod(0o711)
    sock = str(root / "rt.sock")
    logfile = root / "daemon.log"
    proc: subprocess.Popen[bytes] | None = None
    try:
        with logfile.open("wb") as out:
            proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "runtime", "daemon", "--root", str(root / "rt"), "--socket", sock),
                    *("--log-level", "WARNING", "--kube-listen", kube_listen, *res.argv()),
                ],
                cwd=REPO,
                env={**os.environ, "RUNTIME_ADMIN_TOKEN": token},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,  # Ctrl-C is for the bench; it stops the daemon itself
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                with Client(sock, timeout=5) as c:
                    c.healthz()
                break
            except errors.RuntimeError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"runtimed did not come up:\n{logfile.read_text()[-3000:]}") from None
                time.sleep(0.1)
        log(tag, f"started runtimed pid {proc.pid} on {root} ({res.subnet}, {res.bridge}, {res.cgroup_parent})")
        yield Daemon(sock, root, proc.pid, res)
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        subprocess.run(["umount", "-R", "-l", str(root)], capture_output=True, timeout=60)
        unmount_beneath(root)
        shutil.rmtree(root, ignore_errors=True)
        from runtime.sandbox.cgroups import Cgroups
        from runtime.sandbox.network import Network

        with contextlib.suppress(Exception):
            Network(res.subnet, res.bridge).destroy()
        with contextlib.suppress(Exception):
            Cgroups(res.cgroup_parent).remove_parent()


def unmount_beneath(top: Path) -> None:
    """Lazily unmount everything mounted at or under ``top`` (deepest first)."""
    prefix = str(top).rstrip("/")
    points = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        mp = line.split()[1].replace("\\040", " ")
        if mp == prefix or mp.startswith(prefix + "/"):
            points.append(mp)
    for mp in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", mp], capture_output=True, timeout=30)


def ensure_busybox(c: Client, tag: str) -> None:
    if not any(i["name"] == "busybox" for i in c.images()):
        log(tag, "building the busybox image...")
        c.build_image("busybox")


def ensure_repo_image(c: Client, tag: str, name: str, work: Path) -> None:
    """Give the daemon image ``name``: imported from the repository's store
    (``var/runtime/images``, filled by ``make images``) when it has it, else built."""
    if any(i["name"] == name for i in c.images()):
        return
    from runtime.images import ImageStore

    repo_store = REPO / "var/runtime/images"
    if repo_store.is_dir() and ImageStore(repo_store).exists(name):
        log(tag, f"importing {name} from {repo_store}")
        tar_path = work / f"{name.replace(':', '_')}.oci.tar"
        ImageStore(repo_store).export_oci(name, tar_path)
        c.import_image(tar_path, name)
        tar_path.unlink()
    else:
        log(tag, f"building {name} (lab-base: debootstrap, minutes)...")
        c.build_image(name)


def _inside(name: str) -> bool:
    parts = Path(name).parts
    return bool(parts) and not Path(name).is_absolute() and ".." not in parts


def busybox_rootfs(c: Client, dest: Path) -> None:
    """Flatten the daemon's ``busybox`` image (an OCI layout export) into directory ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kl-bench-oci-", dir="/tmp") as tmp:
        tar_path = Path(tmp) / "busybox.oci.tar"
        c.export_image("busybox", tar_path)
        layout = Path(tmp) / "layout"
        layout.mkdir()
        with tarfile.open(tar_path) as t:
            # Debian 12's Python 3.11.2 has no extraction filters: check the names ourselves
            # (an OCI layout holds plain files and directories under blobs/ and beside it)
            members = [m for m in t.getmembers() if (m.isfile() or m.isdir()) and _inside(m.name)]
            t.extractall(layout, members=members)

        def blob(digest: str) -> Path:
            algo, _, hexd = digest.partition(":")
            return layout / "blobs" / algo / hexd

        index = json.loads((layout / "index.json").read_text())
        manifest = json.loads(blob(index["manifests"][0]["digest"]).read_text())
        for layer in manifest["layers"]:
            # busybox is one layer without whiteouts; tar(1) handles gzip or plain
            subprocess.run(
                ["tar", "-x", "--numeric-owner", "-f", str(blob(layer["digest"])), "-C", str(dest)],
                check=True,
                timeout=120,
            )


class MemInfo:
    """A snapshot of /proc/meminfo, in kB."""

    def __init__(self) -> None:
        self.kb: dict[str, int] = {}
        for line in Path("/proc/meminfo").read_text().splitlines():
            k, _, v = line.partition(":")
            self.kb[k] = int(v.split()[0])

    def __getitem__(self, key: str) -> int:
        return self.kb.get(key, 0)


def pid_status_kb(pid: int, field: str = "VmRSS") -> int | None:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def pid_cpu_seconds(pid: int) -> float | None:
    """utime + stime of ``pid`` (all its threads) plus cutime + cstime (the children it reaped)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        ticks = sum(int(v) for v in fields[11:15])  # utime stime cutime cstime (fields 14..17)
        return ticks / os.sysconf("SC_CLK_TCK")
    return None


def runtimed_cpu_seconds(pid: int) -> float | None:
    """``pid_cpu_seconds`` of runtimed plus that of its fork server (runtime/kernel/forkserver.py),
    a live child whose own CPU and whose reaped middle processes runtimed's cutime never sees;
    not the sandboxes' processes runtimed adopted (their cgroups count those)."""
    total = pid_cpu_seconds(pid)
    if total is None:
        return None
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                with contextlib.suppress(OSError):
                    if b"runtime.kernel._forkserver" in Path(f"/proc/{child}/cmdline").read_bytes():
                        total += pid_cpu_seconds(int(child)) or 0.0
    return total


def cgroup_cpu_seconds(parent: str) -> float | None:
    """CPU-seconds used under the cgroup parent ``parent`` (v1 ``cpuacct``, v2 ``cpu.stat``)."""
    with contextlib.suppress(OSError, ValueError):
        return int(Path("/sys/fs/cgroup/cpuacct", parent, "cpuacct.usage").read_text()) / 1e9
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/sys/fs/cgroup", parent, "cpu.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "usage_usec":
                return int(value) / 1e6
    return None


def host_busy_seconds() -> float:
    """CPU-seconds the whole host has spent not idle (every job on it, not only ours)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # minus idle, iowait


def mem_used_kb() -> int:
    """Host memory in use: MemTotal - MemAvailable."""
    m = MemInfo()
    return m["MemTotal"] - m["MemAvailable"]


# --- the whole platform under scripts/run.py (make run's supervisor) ----------------------


class Supervised:
    """``scripts/run.py`` on a VAR_DIR and port of its own, with runtimed on the bench's
    ``HostResources`` (runtimed reads them from $RUNTIME_SUBNET and friends), so it never
    meets a ``make run`` or a test session on this host. Its output goes to ``log_path``
    and is kept for ``pids()`` / ``count()``."""

    def __init__(self, tag: str, res: HostResources, extra_env: dict[str, str] | None = None) -> None:
        import re
        import threading

        self._re = re
        self.tag = tag
        self.res = res
        # Under the checkout, as tests/config/test_run.py does: run.py drops the web tier to
        # the service user, which must traverse it; and beside var/runtime/images, whose
        # images are hard-linked in (nothing built or copied).
        self.var = REPO / "var" / f"bench-{tag}-{os.getpid()}"
        self.var.mkdir(parents=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_token = secrets.token_urlsafe(32)
        self.socket = str(self.var / "run" / "runtimed.sock")
        self.log_path = Path(tempfile.gettempdir()) / f"kl-bench-{tag}-{os.getpid()}.log"
        self.lines: list[str] = []
        drop = {"REDIS_URL", "DATABASE_URL", "RUNTIME_SOCKET", "RUNTIME_ROOT", "RUNTIME_TOKEN", "RUNTIME_ADMIN_TOKEN"}
        self.env = {
            **{k: v for k, v in os.environ.items() if k not in drop},
            "VAR_DIR": str(self.var),
            "PORT": str(self.port),
            "HOST": "127.0.0.1",
            "RUNTIME_REQUIRED": "true",
            "RUNTIME_ADMIN_TOKEN": self.admin_token,
            "RUNTIME_SUBNET": res.subnet,
            "RUNTIME_BRIDGE": res.bridge,
            "RUNTIME_CGROUP_PARENT": res.cgroup_parent,
            "RUNTIME_UID_START": str(res.uid_start),
            "DJANGO_SETTINGS_MODULE": "config.settings",
            **(extra_env or {}),
        }
        self.proc: subprocess.Popen[str] | None = None
        self._threading = threading

    # what `make setup` does, on this VAR_DIR
    def prepare(self, course: str = "content/intro-to-kubernetes") -> None:
        (self.var / "run").mkdir(exist_ok=True)
        (self.var / "runtime").mkdir(exist_ok=True)
        built = REPO / "var" / "runtime" / "images"
        if (built / "index.json").exists():
            subprocess.run(["cp", "-al", str(built), str(self.var / "runtime" / "images")], check=True, timeout=300)
        for command in (["migrate", "--noinput"], ["collectstatic", "--noinput"], ["import_course", course]):
            self.manage(*command)

    def manage(self, *args: str, timeout: float = 600) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args, *(["-v", "0"] if args[0] != "shell" else [])],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise SystemExit(f"manage.py {' '.join(args)} failed:\n{done.stderr[-3000:]}")
        return done.stdout

    def start(self, timeout: float = 300) -> None:
        import threading

        out = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "scripts/run.py"],
            cwd=REPO,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # Ctrl-C is for the bench; it stops the supervisor itself
        )

        def read() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                self.lines.append(line)
                out.write(line)
                out.flush()
            out.close()

        threading.Thread(target=read, daemon=True).start()
        log(self.tag, f"scripts/run.py pid {self.proc.pid} on {self.url}, VAR_DIR {self.var}, log {self.log_path}")
        deadline = time.monotonic() + timeout
        up = (r"KubeLab is up", r"provisioning@\S+ ready\.", r"grading@\S+ ready\.")
        while not all(self.count(p) for p in up):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the platform did not come up:\n{''.join(self.lines[-60:])}")
            time.sleep(0.2)

    def output(self) -> str:
        return "".join(self.lines)

    def count(self, pattern: str) -> int:
        return len(self._re.findall(pattern, self.output()))

    def pids(self, name: str) -> list[int]:
        """Every pid the supervisor said it started ``name`` as, in order."""
        return [int(p) for p in self._re.findall(rf"started {self._re.escape(name)} \(pid (\d+)\)", self.output())]

    def pid(self, name: str) -> int | None:
        pids = self.pids(name)
        return pids[-1] if pids else None

    def client(self, timeout: float = 30) -> Client:
        return Client(self.socket, timeout=timeout, token=self.admin_token)

    def remove_sandboxes(self) -> int:
        from concurrent.futures import ThreadPoolExecutor

        with contextlib.suppress(errors.RuntimeError), self.client() as c:
            boxes = [b["id"] for b in c.list_sandboxes()]

            def rm(sid: str) -> None:
                with contextlib.suppress(errors.RuntimeError), self.client(timeout=120) as cc:
                    cc.remove_sandbox(sid)

            with ThreadPoolExecutor(8) as pool:
                list(pool.map(rm, boxes))
            return len(boxes)
        return 0

    def stop(self) -> None:
        """Sandboxes first (runtimed leaves them running when it stops, by design), then the
        supervisor and its children, then the host state of this runtimed."""
        if self.proc is not None and self.proc.poll() is None:
            self.remove_sandboxes()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(90)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(OSError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        subprocess.run(["umount", "-R", "-l", str(self.var)], capture_output=True, timeout=60)
        unmount_beneath(self.var)
        shutil.rmtree(self.var, ignore_errors=True)
        from runtime.sandbox.cgroups import Cgroups
        from runtime.sandbox.network import Network

        with contextlib.suppress(Exception):
            Network(self.res.subnet, self.res.bridge).destroy()
        with contextlib.suppress(Exception):
            Cgroups(self.res.cgroup_parent).remove_parent()


@contextlib.contextmanager
def kube_apiserver() -> Iterator[tuple[Path, str, subprocess.Popen[bytes]]]:
    """``python -m runtime.kube serve`` (the lab clusters' API server, no kubelet) on a free
    loopback port and a data directory of its own: yields (data dir, server URL, process)."""
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "runtime.kube", "serve", "--data", str(data), "--listen", f"127.0.0.1:{port}"],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            yield data, f"https://127.0.0.1:{port}", proc
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
