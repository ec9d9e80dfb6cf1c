"""What a student may ask of the engine (moby's ``daemon/container.go`` verifyPlatform/
HostConfig checks, made stricter: wall 2 of SECURITY.md): refusals of privileged, host
namespaces, devices, unsafe capabilities and binds outside ``/root``, the container's
capability set, mounts parsed and bind sources opened beneath the sandbox's root."""

from __future__ import annotations

import os
import secrets
from typing import Any

from runtime import errors
from runtime.dockerapi.engine.volumes import Volumes
from runtime.dockerapi.images.store import Forbidden, Image
from runtime.kernel import safewrite

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


def _cap_name(name: Any) -> str:
    n = str(name).upper()
    return n if n.startswith("CAP_") else "CAP_" + n


def capabilities(hc: dict[str, Any]) -> list[str]:
    """A container's capabilities: the defaults less ``CapDrop`` (``ALL``: every one), plus
    ``CapAdd`` (``_refuse`` lets through only defaults, so an add undoes a drop)."""
    add = {_cap_name(x) for x in hc.get("CapAdd") or []}
    drop = {_cap_name(x) for x in hc.get("CapDrop") or []}
    return [c for c in CAPS if c in add or ("CAP_ALL" not in drop and c not in drop)]


PRIVILEGED_REASON = (
    "--privileged is not available in this lab: your containers run inside your sandbox's "
    "user namespace and cannot get host privileges"
)


class Policy(Volumes):
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
            fd = safewrite.open_in_root(rootfs, norm)
        except FileNotFoundError:
            raise errors.BadRequest(
                f'invalid mount config for type "bind": bind source path does not exist: {src}'
            ) from None
        except OSError as exc:
            raise errors.BadRequest(f"bind source {src}: {exc.strerror}") from None
        real = safewrite.fd_path(fd)
        home = str(rootfs) + "/root"
        if real != home and not real.startswith(home + "/"):
            os.close(fd)
            raise Forbidden(outside + f" ({src} leads to {real[len(str(rootfs)) :] or '/'})")
        return fd
