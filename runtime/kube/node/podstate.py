"""The labels of a pod's engine containers and volumes (dockershim's), and what the kubelet
keeps per pod between syncs (its runtime cache): back-off entries, probe results, once-only
events, the kill deadline; and the engine containers it finds of a pod (``Instance``, read
from their labels). Shared by kubelet.py and its parts (containers.py, volumes.py,
prober.py, status.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# the labels of every engine container of a pod (dockershim's), and engine volumes'
POD_NAME = "io.kubernetes.pod.name"
POD_NAMESPACE = "io.kubernetes.pod.namespace"
POD_UID = "io.kubernetes.pod.uid"
CONTAINER_NAME = "io.kubernetes.container.name"
RESTART_COUNT = "io.kubernetes.container.restartCount"
VOLUME_NAME = "io.kubernetes.volume.name"
PVC_NAMESPACE = "io.kubernetes.pvc.namespace"
PVC_NAME = "io.kubernetes.pvc.name"
INFRA = "POD"


class ConfigError(Exception):
    """CreateContainerConfigError / FailedMount: the message is kubelet's."""


@dataclass
class Backoff:
    """A container's crash-loop (or image pull) back-off: when it may start again."""

    seen: str  # the FinishedAt of the exit this entry was computed for
    until: float  # unix time the container may start again
    shown: float  # the delay reported in CrashLoopBackOff's message
    next: float  # the delay after the next exit


@dataclass
class Probe:
    """One running container's probe results so far (liveness, readiness, startup)."""

    started: float  # monotonic time the container was first seen running
    last: dict[str, float] = field(default_factory=dict)  # probe kind -> monotonic time of its last run
    failures: dict[str, int] = field(default_factory=dict)
    successes: dict[str, int] = field(default_factory=dict)
    ready: bool = False
    killing: bool = False


@dataclass
class PodRuntime:
    """What the kubelet keeps of one pod between syncs (its runtime cache)."""

    uid: str
    ns: str
    name: str
    grace: int = 30
    volumes_ready: bool = False
    backoff: dict[str, Backoff] = field(default_factory=dict)  # container name (or "pull:<name>")
    probes: dict[str, Probe] = field(default_factory=dict)  # engine container id
    said: set[str] = field(default_factory=set)  # once-only events already recorded
    kill_deadline: float | None = None
    waiting: dict[str, tuple[str, str]] = field(default_factory=dict)  # container -> (reason, message)


@dataclass
class Instance:
    """One engine container of a pod's container, as read from its labels and state."""

    id: str
    restarts: int
    running: bool
    exit_code: int
    started: str
    finished: str
    oom: bool
    image: str
