"""labs.sandboxes.backend_for builds a process's backend once, also when daphne's threads ask
for it at the same moment (a class's first terminals after a restart): a second build would
be dropped with its connections unclosed. The backend here is a stand-in whose construction
is slow and counted (runtime's own backends need a runtimed; what is under test is only who
builds it and how often)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from labs import sandboxes


def test_threads_asking_at_once_share_one_backend(monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    settings.RUNTIME_SOCKET = "/nonexistent/once.sock"
    built: list[object] = []

    def slow_backend(name: str, **options: Any) -> object:
        time.sleep(0.2)  # long enough for every thread below to ask while it is being built
        backend = object()
        built.append(backend)
        return backend

    monkeypatch.setattr(sandboxes, "backend_from_name", slow_backend)
    monkeypatch.setattr(sandboxes, "_BACKENDS", {})
    start = threading.Barrier(8)
    got: list[sandboxes.LabSandboxes] = []

    def ask() -> None:
        start.wait()
        got.append(sandboxes.backend_for("namespace"))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(built) == 1
    assert len(got) == 8 and all(g is got[0] for g in got)
    assert got[0].backend is built[0]


def test_a_backend_that_cannot_be_built_is_asked_for_again(monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    """A failure is not kept: once the backend is available (runtimed came up), the next ask builds it."""
    settings.RUNTIME_SOCKET = "/nonexistent/retry.sock"
    monkeypatch.setattr(sandboxes, "_BACKENDS", {})
    attempts = []

    def flaky(name: str, **options: Any) -> object:
        attempts.append(name)
        if len(attempts) == 1:
            raise OSError("runtimed is not up yet")
        return object()

    monkeypatch.setattr(sandboxes, "backend_from_name", flaky)
    with pytest.raises(sandboxes.SandboxError, match="not available for labs: runtimed is not up yet"):
        sandboxes.backend_for("namespace")
    assert sandboxes.backend_for("namespace") is sandboxes.backend_for("namespace")
    assert len(attempts) == 2
