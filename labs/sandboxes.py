"""The labs app's door to sandboxes: which backend, and the spec of a lab.

The web side never touches runc: it asks a ``runtime.backends.SandboxBackend``
(ARCHITECTURE.md, "Backends"), wrapped here with what labs add. Tasks use the
synchronous calls; the terminal consumer and the port preview use the async ones of
``for_session`` (the session's backend with the session's own credential), whichever
runtimed holds the sandbox.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

from django.conf import settings

from courses.models import Lab
from runtime import errors as runtime_errors
from runtime.backends import NamespaceBackend, SandboxBackend, backend_from_name
from runtime.placement import KubernetesBackend


class SandboxError(Exception):
    """A backend failure a person can read (it is shown on the lab page)."""


class SandboxGone(SandboxError):
    """The sandbox no longer exists (stopped, removed, lost in a restart)."""


DEFAULT_IMAGE = "lab-base"
NODE_LOST = (
    "The machine running your lab was taken out of service, and your sandbox with it. "
    "Start the lab again: it will run on another machine."
)


def spec_for(lab: Lab, *, session: Any) -> dict[str, Any]:
    """The sandbox spec of ``lab`` for one session (runtime.sandbox.spec.SandboxSpec JSON)."""
    spec = lab.sandbox_spec(labels={"session": str(session.pk), "user": str(session.user_id)})
    spec.setdefault("image", DEFAULT_IMAGE)
    return spec


class LabSandboxes:
    """What provisioning, release and grading need, on top of any
    ``runtime.backends.SandboxBackend``: the lab's image made ready, a
    session's sandbox found again by its label, and errors a person can read."""

    def __init__(self, backend: SandboxBackend) -> None:
        self.backend = backend

    def ensure_image(self, name: str) -> None:
        if not isinstance(self.backend, NamespaceBackend):
            return  # other backends bring their own images
        try:
            rt = self.backend.client
            if not any(image["name"] == name for image in rt.images()):
                rt.build_image(name)
        except runtime_errors.RuntimeError as exc:
            raise SandboxError(f"The image {name!r} is not available: {exc}") from exc

    def find(self, *, session: str) -> str | None:
        try:
            for sandbox in self.backend.list():
                labels = (sandbox.get("spec") or {}).get("labels") or {}
                if labels.get("session") == session and sandbox.get("status") == "running":
                    return str(sandbox["id"])
        except runtime_errors.RuntimeError as exc:
            raise SandboxError(str(exc)) from exc
        return None

    def create(self, spec: dict[str, Any], on_wait: Callable[[str], None] | None = None) -> str:
        """``on_wait(message)``: told while the backend waits for room (the kubernetes
        backend's Pending placeholder: "waiting for capacity"), never an error."""
        try:
            if isinstance(self.backend, KubernetesBackend):
                return str(self.backend.create(spec, on_wait=on_wait)["id"])
            return str(self.backend.create(spec)["id"])
        except runtime_errors.LimitExceeded as exc:
            raise SandboxError(f"The lab server is full right now: {exc}. Try again in a few minutes.") from exc
        except runtime_errors.RuntimeError as exc:
            raise SandboxError(str(exc)) from exc

    def remove(self, sandbox_id: str) -> None:
        with contextlib.suppress(runtime_errors.SandboxNotFound):
            self.backend.remove(sandbox_id)

    def placements(self) -> set[str]:
        """The kubernetes backend: names of the placeholder Pods that still hold a sandbox."""
        if not isinstance(self.backend, KubernetesBackend):
            return set()
        try:
            return self.backend.placements()
        except runtime_errors.RuntimeError as exc:
            raise SandboxError(str(exc)) from exc

    @property
    def supports_pause(self) -> bool:
        return self.backend.supports_pause

    def pause(self, sandbox_id: str) -> dict[str, Any]:
        """Pause (keep on disk, stop every process): ``{"shells": {pty id: cwd}, "disk_image_bytes"}``."""
        try:
            return self.backend.pause(sandbox_id)
        except runtime_errors.SandboxNotFound as exc:
            raise SandboxGone(str(exc)) from exc
        except runtime_errors.RuntimeError as exc:
            raise SandboxError(str(exc)) from exc

    def resume(self, sandbox_id: str) -> None:
        try:
            self.backend.resume(sandbox_id)
        except runtime_errors.SandboxNotFound as exc:
            raise SandboxGone(str(exc)) from exc
        except runtime_errors.LimitExceeded as exc:
            raise SandboxError(f"The lab server is full right now: {exc}. Try again in a few minutes.") from exc
        except runtime_errors.RuntimeError as exc:
            raise SandboxError(str(exc)) from exc

    def disk_image_bytes(self, sandbox_id: str, *, token: str) -> int:
        """What the host keeps for the sandbox's disk, asked with the session's own credential."""
        scoped = self.scoped(token) if token else self
        try:
            return int(scoped.backend.stats(sandbox_id).get("disk_image_bytes") or 0)
        except runtime_errors.RuntimeError as exc:
            raise SandboxError(f"could not measure the sandbox's disk: {exc}") from exc
        finally:
            if scoped is not self:
                scoped.close()

    def status(self, sandbox_id: str) -> str | None:
        """The sandbox's status (running, paused, ...), None when it is gone or unknown."""
        try:
            return str(self.backend.get(sandbox_id).get("status"))
        except runtime_errors.RuntimeError:
            return None

    def exists(self, sandbox_id: str) -> bool:
        try:
            return self.backend.get(sandbox_id).get("status") == "running"
        except runtime_errors.SandboxNotFound:
            return False

    def kubeconfig(self, sandbox_id: str) -> str | None:
        """An admin kubeconfig (YAML) of the sandbox's lab cluster, for graders;
        None when the sandbox was made without the kubernetes service. Raises
        ``runtime.errors.Unreachable`` when runtimed is down: that is not "no cluster"."""
        try:
            return self.backend.kubeconfig(sandbox_id)
        except runtime_errors.Unreachable:
            raise
        except (runtime_errors.NotAvailable, runtime_errors.SandboxNotFound):
            return None

    def scoped(self, token: str) -> LabSandboxes:
        """The same backend acting with ``token`` (one sandbox's credential); close it after
        when it is not ``self``."""
        backend = self.backend.scoped(token)
        return self if backend is self.backend else LabSandboxes(backend)

    def close(self) -> None:
        self.backend.close()

    def token(self, sandbox_id: str, role: str, ttl: float) -> str:
        """A credential for one sandbox and one role (``runtime.auth.ROLES``)."""
        try:
            return self.backend.mint_token(sandbox_id, role, ttl)
        except runtime_errors.SandboxNotFound as exc:
            raise SandboxGone(str(exc)) from exc
        except runtime_errors.RuntimeError as exc:
            raise SandboxError(f"runtimed would not issue a {role} credential: {exc}") from exc

    def docker_url(self, sandbox_id: str) -> str | None:
        """The URL of the sandbox's own Docker engine, for graders; None when the sandbox
        was made without the docker service (``Unreachable`` as for ``kubeconfig``)."""
        try:
            return self.backend.docker_url(sandbox_id)
        except runtime_errors.Unreachable:
            raise
        except (runtime_errors.NotAvailable, runtime_errors.SandboxNotFound):
            return None


_BACKENDS: dict[tuple[str, str], LabSandboxes] = {}
# daphne runs sync code in many threads: without it two could each build the backend and one
# of them (its connections, the kubernetes backend's temp files) would be dropped unclosed
_BACKENDS_LOCK = threading.Lock()


def backend_for(name: str) -> LabSandboxes:
    """The process's backend ``name`` (kept, so its connections are reused); built once per
    process, also when several threads ask at the same moment."""
    key = (name, settings.RUNTIME_SOCKET)
    found = _BACKENDS.get(key)
    if found is not None:
        return found
    with _BACKENDS_LOCK:
        return _BACKENDS.get(key) or _build_backend(name, key)


def _build_backend(name: str, key: tuple[str, str]) -> LabSandboxes:
    # the admin credential: only the worker, which provisions and grades, has it set
    options: dict[str, Any] = {}
    if name == "namespace":
        options = {"socket_path": settings.RUNTIME_SOCKET, "token": settings.RUNTIME_ADMIN_TOKEN or None}
    elif name == "kubernetes":
        options = {
            "kubeconfig": settings.SANDBOX_KUBECONFIG or None,
            "namespace": settings.SANDBOX_NAMESPACE,
            "ca": settings.RUNTIME_CA,
            "port": settings.RUNTIME_NODE_PORT,
            "token": settings.RUNTIME_ADMIN_TOKEN or None,
            "wait_timeout": float(settings.SANDBOX_CAPACITY_WAIT),
        }
    try:
        built = _BACKENDS[key] = LabSandboxes(backend_from_name(name, **options))
    except Exception as exc:  # e.g. no Docker engine: the lab page shows why
        raise SandboxError(f"the {name!r} sandbox backend is not available for labs: {exc}") from exc
    return built


def for_session(session: Any) -> SandboxBackend:
    """``session``'s backend acting with the session's own web credential (its sandbox only,
    the operations of the ``web`` role): what terminals and the port preview speak through.
    Give it back with ``release``. Raises ``SandboxError`` when that backend is not available
    in this process."""
    return backend_for(session.backend).backend.scoped(session.runtime_token or "")


async def release(backend: SandboxBackend) -> None:
    """Close what ``for_session`` gave (its connections; the process's own backend stays open
    where ``scoped`` gave that one back itself)."""
    await backend.aclose()
    release_sync(backend)


def release_sync(backend: SandboxBackend) -> None:
    """``release`` for a backend used only through its synchronous calls (the editor)."""
    if all(backend is not shared.backend for shared in list(_BACKENDS.values())):  # a copy: threads add
        backend.close()


def runtime_address(session: Any) -> tuple[str, str, str | None]:
    """Where ``session``'s sandbox lives: (runtimed address, the sandbox's id there, the CA file
    for TLS or None). The grader asks it whether the lab node is still there and for the CA its
    checks verify a relayed Docker engine against; the checks themselves, like the web tier,
    reach the sandbox through the session's backend. Blocking (the kubernetes backend reads the
    Node). Raises ``SandboxGone``."""
    if session.backend != "kubernetes":
        return settings.RUNTIME_SOCKET, session.sandbox_id, None
    backend = backend_for("kubernetes").backend
    assert isinstance(backend, KubernetesBackend)
    try:
        address, box = backend.address_of(session.sandbox_id)
    except runtime_errors.SandboxNotFound as exc:
        raise SandboxGone(str(exc)) from exc
    except runtime_errors.RuntimeError as exc:
        raise SandboxError(str(exc)) from exc
    return address, box, settings.RUNTIME_CA
