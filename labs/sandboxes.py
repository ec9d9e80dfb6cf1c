"""The labs app's door to sandboxes: which backend, and the spec of a lab.

The web side never touches runc: it asks a ``SandboxBackend`` (ARCHITECTURE.md,
"Backends"). Tasks use the synchronous calls here; the terminal consumer uses
``runtime.client.AsyncClient`` for the streaming attach.
"""

from __future__ import annotations

from typing import Any, Protocol

from django.conf import settings

from courses.models import Lab
from runtime import client as runtime_client
from runtime import errors as runtime_errors


class SandboxError(Exception):
    """A backend failure a person can read (it is shown on the lab page)."""


class Backend(Protocol):
    def ensure_image(self, name: str) -> None: ...
    def find(self, *, session: str) -> str | None: ...
    def create(self, spec: dict[str, Any]) -> str: ...
    def remove(self, sandbox_id: str) -> None: ...
    def exists(self, sandbox_id: str) -> bool: ...


DEFAULT_IMAGE = "lab-base"


def spec_for(lab: Lab, *, session: Any) -> dict[str, Any]:
    """The sandbox spec of ``lab`` for one session (runtime.sandbox.SandboxSpec JSON)."""
    spec = lab.sandbox_spec(labels={"session": str(session.pk), "user": str(session.user_id)})
    spec.setdefault("image", DEFAULT_IMAGE)
    return spec


class NamespaceBackend:
    """Sandboxes from runtimed on this host, over its unix socket."""

    def __init__(self, socket: str) -> None:
        self.socket = socket

    def _client(self) -> runtime_client.Client:
        return runtime_client.Client(self.socket)

    def ensure_image(self, name: str) -> None:
        try:
            with self._client() as rt:
                if any(image["name"] == name for image in rt.images()):
                    return
                rt.build_image(name)
        except runtime_errors.RuntimeError as exc:
            raise SandboxError(f"The image {name!r} is not available: {exc}") from exc

    def find(self, *, session: str) -> str | None:
        try:
            with self._client() as rt:
                for sandbox in rt.list_sandboxes():
                    labels = (sandbox.get("spec") or {}).get("labels") or {}
                    if labels.get("session") == session and sandbox.get("status") == "running":
                        return str(sandbox["id"])
        except runtime_errors.RuntimeError as exc:
            raise SandboxError(str(exc)) from exc
        return None

    def create(self, spec: dict[str, Any]) -> str:
        try:
            with self._client() as rt:
                return str(rt.create_sandbox(spec)["id"])
        except runtime_errors.LimitExceeded as exc:
            raise SandboxError(f"The lab server is full right now: {exc}. Try again in a few minutes.") from exc
        except runtime_errors.RuntimeError as exc:
            raise SandboxError(str(exc)) from exc

    def remove(self, sandbox_id: str) -> None:
        try:
            with self._client() as rt:
                rt.remove_sandbox(sandbox_id)
        except runtime_errors.SandboxNotFound:
            return

    def exists(self, sandbox_id: str) -> bool:
        try:
            with self._client() as rt:
                return rt.get_sandbox(sandbox_id).get("status") == "running"
        except runtime_errors.SandboxNotFound:
            return False

    def kubeconfig(self, sandbox_id: str) -> str | None:
        """An admin kubeconfig (YAML) of the sandbox's lab cluster, for graders;
        None when the sandbox was made without the kubernetes service."""
        try:
            with self._client() as rt:
                return rt.kubeconfig(sandbox_id)
        except (runtime_errors.NotAvailable, runtime_errors.SandboxNotFound):
            return None


def backend_for(name: str) -> Backend:
    if name == "namespace":
        return NamespaceBackend(settings.RUNTIME_SOCKET)
    raise SandboxError(f"the {name!r} sandbox backend is not available for labs yet")
