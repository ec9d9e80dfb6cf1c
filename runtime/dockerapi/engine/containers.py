"""Container lifecycle (moby's ``daemon/create.go``, ``start.go``, ``stop.go``, ``kill.go``,
``delete.go``, ``monitor.go``, ``restartmanager``): create, start, exit handling, restart
policies, pause, update, stop, kill, wait, remove, rename, prune, and ``run_step`` (a
builder's RUN in a throw-away container)."""

from __future__ import annotations

import builtins
import contextlib
import copy
import ipaddress
import json
import os
import random
import re
import secrets
import shlex
import shutil
import signal as signal_mod
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runtime import errors
from runtime.dockerapi import fsutil, netns
from runtime.dockerapi.engine import health
from runtime.dockerapi.engine.core import RUNC_TIMEOUT, ZERO_TIME, _Container, _du, _write_file, log
from runtime.dockerapi.engine.probes import Probes
from runtime.dockerapi.engine.spec import _groups
from runtime.dockerapi.engine.streams import _console_socket, _Output, _stdio_pipes
from runtime.dockerapi.images.store import Forbidden, Image, NotFound
from runtime.dockerapi.limits import quota_message
from runtime.images.store import safe_rmtree
from runtime.kernel import safewrite
from runtime.kernel.clock import micro_ts, parse_epoch
from runtime.procfs import mounted, mounts_under, proc_start
from runtime.sandbox import bundle

NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")


# restart policies: dockerd's back-off (restartmanager): 100ms doubling up to a minute, reset by a 10s run
RESTART_FIRST = 0.1


RESTART_MAX = 60.0


RESTART_RESET = 10.0


# what docker update can change here (UpdateConfig: Resources + RestartPolicy); any other set field is refused
UPDATABLE = {"Memory", "MemorySwap", "NanoCpus", "CpuQuota", "CpuPeriod", "CpuShares", "PidsLimit", "RestartPolicy"}


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


SIGNALS = {s.name: int(s) for s in signal_mod.Signals}


_ADJ = ["admiring", "brave", "clever", "eager", "focused", "gentle", "happy", "jolly", "keen", "lucid"]


_NAMES = ["turing", "hopper", "lovelace", "ritchie", "thompson", "torvalds", "knuth", "dijkstra", "liskov", "hamilton"]


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


class Containers(Probes):
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
        safewrite.mkdirs_in_root(rootfs, workdir, uid + user.uid, uid + user.gid)
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
            c.started_at = micro_ts()
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
            c.finished_at = micro_ts()
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
        ran = time.time() - int(parse_epoch(c.started_at)) if c.started_at != ZERO_TIME else 0.0
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
