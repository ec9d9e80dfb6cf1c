"""The OCI runtime spec of a container (moby's ``daemon/oci_linux.go``): ``config.json`` for
runc, resources, ``resolv.conf``, the process environment, staged binds and volume
copy-up."""

from __future__ import annotations

import builtins
import os
import subprocess
from pathlib import Path
from typing import Any

from runtime import errors
from runtime.dockerapi import fsutil
from runtime.dockerapi.engine.core import DEFAULT_PATH, _Container
from runtime.dockerapi.engine.networks import Networks
from runtime.dockerapi.engine.policy import Policy, capabilities
from runtime.kernel import safewrite
from runtime.procfs import mounted
from runtime.sandbox import bundle

# Above the sandbox's own processes (bundle.py: 500): when a container exhausts the sandbox's
# memory, the kernel kills the container's processes, not the sandbox's shell or its PID 1.
OOM_SCORE_ADJ = 800


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


class Spec(Policy, Networks):
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

    def _resolv_conf(self, hc: dict[str, Any]) -> str:
        """The sandbox's resolv.conf as a container sees it; HostConfig ``Dns``, ``DnsSearch``
        and ``DnsOptions`` (``docker run --dns/--dns-search/--dns-option``, the kubelet's
        pod DNS) replace its nameservers, search list and options, as Docker does."""
        raw = safewrite.read_in_root(self.ctx.dir / "rootfs", "/etc/resolv.conf") or b""
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
                fd = safewrite.open_in_root(rootfs, m["Destination"], os.O_PATH | os.O_DIRECTORY)
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
