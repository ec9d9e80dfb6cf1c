"""What a sandbox is asked to be (``SandboxSpec``), what it is (``SandboxInfo``), and what a
service running for it (the Docker engine) knows of it (``SandboxContext``).

Both cross the daemon's socket as JSON; ``SandboxSpec.from_json`` is the one
place that validates a request, so every bad value fails here with a
``BadRequest`` that names the field.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime import errors

SERVICES = ("docker", "kubernetes")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HOSTNAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_IMAGE = re.compile(r"^[a-z0-9][a-z0-9._:/-]{0,127}$")


def _bad(field_name: str, why: str) -> errors.BadRequest:
    return errors.BadRequest(f"sandbox spec: {field_name}: {why}")


def workspace_path(rel: str) -> str:
    """Normalise a path relative to /root; raise BadRequest if it leaves /root."""
    if not isinstance(rel, str) or not rel or "\0" in rel:
        raise _bad("files", f"bad path {rel!r}")
    norm = posixpath.normpath(rel.removeprefix("/root/") if rel.startswith("/root/") else rel)
    if norm.startswith(("/", "..")) or norm in (".", ""):
        raise _bad("files", f"path {rel!r} must stay inside /root")
    return norm


@dataclass(frozen=True)
class SandboxSpec:
    image: str = "busybox"
    memory: int = 256 * 2**20
    pids: int = 512
    cpus: float = 1.0
    disk: int = 2**30
    env: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    setup: str | None = None
    services: tuple[str, ...] = ()
    hostname: str | None = None
    allow_outbound: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    # nodes of the lab cluster (the kubernetes service): a control plane and kube_nodes - 1
    # workers, all views of this one sandbox (its limits and network are shared)
    kube_nodes: int = 1

    def __post_init__(self) -> None:
        self.validate()
        if "kubernetes" in self.services:
            # the lab cluster runs its pods on the sandbox's Docker engine (as minikube's
            # docker driver does): the docker service comes along, and starts first
            rest = tuple(s for s in dict.fromkeys(self.services) if s != "docker")
            object.__setattr__(self, "services", ("docker", *rest))

    def validate(self) -> None:
        if not isinstance(self.image, str) or not _IMAGE.match(self.image):
            raise _bad("image", f"bad image name {self.image!r}")
        for name, value, lo, hi in (
            ("memory", self.memory, 16 * 2**20, 64 * 2**30),
            ("pids", self.pids, 16, 1 << 20),
            ("disk", self.disk, 16 * 2**20, 1 << 40),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise _bad(name, f"must be an integer in [{lo}, {hi}], got {value!r}")
        if isinstance(self.cpus, bool) or not isinstance(self.cpus, int | float):
            raise _bad("cpus", f"must be a number, got {self.cpus!r}")
        if not 0.01 <= float(self.cpus) <= 64:
            raise _bad("cpus", f"must be in [0.01, 64], got {self.cpus!r}")
        for name, mapping in (("env", self.env), ("labels", self.labels), ("files", self.files)):
            if not isinstance(mapping, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()
            ):
                raise _bad(name, "must map strings to strings")
        for k, v in self.env.items():
            if not _ENV_NAME.match(k) or "\0" in v:
                raise _bad("env", f"bad variable {k!r}")
        for path in self.files:
            workspace_path(path)
        if self.setup is not None and not isinstance(self.setup, str):
            raise _bad("setup", "must be a string or null")
        if not isinstance(self.services, tuple) or not all(isinstance(s, str) for s in self.services):
            raise _bad("services", "must be a list of strings")
        for s in self.services:
            if s not in SERVICES:
                raise _bad("services", f"unknown service {s!r}; known: {', '.join(SERVICES)}")
        if isinstance(self.kube_nodes, bool) or not isinstance(self.kube_nodes, int) or not 1 <= self.kube_nodes <= 5:
            raise _bad("kube_nodes", f"must be an integer in [1, 5], got {self.kube_nodes!r}")
        if self.kube_nodes != 1 and "kubernetes" not in self.services:
            raise _bad("kube_nodes", "nodes of a lab cluster need the kubernetes service")
        if self.hostname is not None and (not isinstance(self.hostname, str) or not _HOSTNAME.match(self.hostname)):
            raise _bad("hostname", f"bad hostname {self.hostname!r}")
        if not isinstance(self.allow_outbound, tuple):
            raise _bad("allow_outbound", "must be a list of CIDRs")
        for cidr in self.allow_outbound:
            try:
                net = ipaddress.ip_network(cidr, strict=False)
            except (TypeError, ValueError) as exc:
                raise _bad("allow_outbound", f"bad CIDR {cidr!r}") from exc
            if net.version != 4:
                raise _bad("allow_outbound", f"only IPv4 CIDRs are supported, got {cidr!r}")

    def to_json(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "memory": self.memory,
            "pids": self.pids,
            "cpus": self.cpus,
            "disk": self.disk,
            "env": dict(self.env),
            "files": dict(self.files),
            "setup": self.setup,
            "services": list(self.services),
            "hostname": self.hostname,
            "allow_outbound": list(self.allow_outbound),
            "labels": dict(self.labels),
            "kube_nodes": self.kube_nodes,
        }

    @classmethod
    def from_json(cls, d: Any) -> SandboxSpec:
        if not isinstance(d, dict):
            raise errors.BadRequest("sandbox spec: must be a JSON object")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise errors.BadRequest(
                f"sandbox spec: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        kw: dict[str, Any] = dict(d)
        for name in ("services", "allow_outbound"):
            if name in kw:
                if not isinstance(kw[name], list | tuple):
                    raise _bad(name, "must be a list")
                kw[name] = tuple(kw[name])
        try:
            return cls(**kw)
        except TypeError as exc:
            raise errors.BadRequest(f"sandbox spec: {exc}") from exc


@dataclass
class SandboxInfo:
    id: str
    spec: SandboxSpec
    status: str  # "running" | "stopped" | "dead"
    created_at: float
    last_activity: float
    ip: str | None
    pid: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "spec": self.spec.to_json(),
            "status": self.status,
            "created_at": self.created_at,
            "last_activity": self.last_activity,
            "ip": self.ip,
            "pid": self.pid,
        }


@dataclass(frozen=True)
class SandboxContext:
    """What a service running for a sandbox (its Docker engine) needs to know about it
    (``SandboxManager.service_context``)."""

    sid: str
    pid: int  # host pid of the sandbox's PID 1 (its namespaces: /proc/<pid>/ns/*)
    uid_base: int  # container uid 0 is host uid uid_base; the range is 65536 wide
    idmap: bool  # catalog layers may be idmapped; False: use ImageStore.shifted_layer_dirs
    dir: Path  # D
    engine_root: Path  # D/disk/engine
    cgroup_path: str  # the sandbox's runc cgroupsPath, e.g. "/kubelab/<sid>"; children go below it
    ip: str  # the sandbox's own address on the runtime bridge
    memory: int
    pids: int
    cpus: float
    runc: str = "runc"
