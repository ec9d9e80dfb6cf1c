"""A private runtimed and one lab-base sandbox with a lab cluster, for the live suites.

The live tests of the lab cluster's networking (Services, port-forward, Ingress) each start
a runtimed of their own on host resources of their own (their subnets and bridges must not
meet another suite's) and one ``services: ["kubernetes"]`` sandbox set up by a script.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

from runtime import errors
from runtime.client import Client
from tests.runtime.conftest_daemon import private_daemon, real_sandboxes_available
from tests.runtime.daemon_helpers import RealDaemon
from tests.runtime.test_kube_service import IMAGES, _has_lab_base


@contextlib.contextmanager
def lab_daemon(prefix: str, host_resources: list[str]) -> Iterator[RealDaemon]:
    """runtimed on ``host_resources``; the test is skipped where sandboxes cannot run."""
    why = real_sandboxes_available()
    if why:
        pytest.skip(why)
    if not _has_lab_base():
        pytest.skip("the lab-base image is not built (make images)")
    with private_daemon(prefix, host_resources, IMAGES) as d:
        yield d


@contextlib.contextmanager
def lab_box(daemon: RealDaemon, setup: str, timeout: float) -> Iterator[dict[str, Any]]:
    """A lab-base sandbox with a lab cluster, ``setup`` run in it (it must succeed); removed after."""
    with Client(daemon.socket, timeout=60) as c:
        box = c.create_sandbox({"image": "lab-base", "services": ["kubernetes"]})
    try:
        code, out = run(daemon, box["id"], setup, timeout=timeout)
        assert code == 0, out
        yield box
    finally:
        with Client(daemon.socket, timeout=60) as c, contextlib.suppress(errors.RuntimeError):
            c.remove_sandbox(box["id"])


def run(daemon: RealDaemon, sid: str, script: str, timeout: float = 90) -> tuple[int, str]:
    """``bash -c script`` in the sandbox: its exit code and its output (stdout, then stderr)."""
    with Client(daemon.socket, timeout=timeout + 30) as c:
        r = c.exec(sid, ["bash", "-c", script], timeout=timeout)
    return r.exit_code or 0, r.stdout_text + r.stderr_text
