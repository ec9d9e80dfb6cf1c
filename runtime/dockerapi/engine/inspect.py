"""What the engine reports (moby's ``daemon/inspect.go``, ``list.go``, ``top_unix.go``,
``stats``, ``info.go``, ``disk_usage.go``): inspect, ps, top, port, stats, ``system df``,
``info``."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shlex
from pathlib import Path
from typing import Any

from runtime import errors
from runtime.dockerapi import ENGINE_VERSION, netns
from runtime.dockerapi.engine import health
from runtime.dockerapi.engine.core import _ago, _Container, _du
from runtime.dockerapi.engine.networks import BRIDGE_ID, Networks
from runtime.dockerapi.engine.volumes import Volumes
from runtime.kernel.clock import micro_ts, parse_epoch
from runtime.procfs import proc_start


class Inspect(Volumes, Networks):
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
                "Created": micro_ts(c.created),
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
            return f"Up {_ago(int(parse_epoch(c.started_at)))} (Paused)"
        if c.running:
            return f"Up {_ago(int(parse_epoch(c.started_at)))}{health.ps_suffix(health.Health.from_json(c.health))}"
        if c.status == "restarting":
            return f"Restarting ({c.exit_code}) {_ago(int(parse_epoch(c.finished_at)))} ago"
        if c.status in ("created", "starting"):
            return "Created"
        if c.status == "removing":
            return "Removal In Progress"
        return f"Exited ({c.exit_code}) {_ago(int(parse_epoch(c.finished_at)))} ago"

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
            "read": micro_ts(),
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
