"""Serving a real Engine's Docker API on a unix socket for the API's tests.

``served(engine, path)`` runs ``make_app(engine)`` on its own event loop in a thread, as
runtimed does, so the docker CLI and the SDK (in the test process or as subprocesses) talk
to it over a real socket. ``DOCKER`` is Debian's docker CLI 20.10 (``/usr/local/bin``
may hold a newer one that is not what the sandboxes ship). ``cli_sandbox(tag)`` is the
real sandbox of a module that drives that CLI; ``PLATFORM_IMAGES`` the store ``make``
fills with the catalog (nginx, debian...), which a test cannot build in its time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.dockerapi.engine import Engine
from runtime.dockerapi.http.api import DockerAPI, make_app
from tests.runtime.conftest_daemon import real_sandboxes_available
from tests.runtime.daemon_helpers import REPO
from tests.runtime.dockerapi.engine_helpers import DockerSandbox, docker_sandbox

DOCKER = "/usr/bin/docker"
PLATFORM_IMAGES = Path(os.environ.get("RUNTIME_TEST_IMAGE_ROOT", REPO / "var/runtime/images"))


@contextlib.contextmanager
def cli_sandbox(tag: int) -> Iterator[DockerSandbox]:
    """``docker_sandbox(tag)``, or a skip when sandboxes cannot run here or Debian's docker
    CLI is missing."""
    why = real_sandboxes_available()
    if why:
        pytest.skip(why)
    if not os.access(DOCKER, os.X_OK):
        pytest.skip("Debian's docker CLI is not installed (apt-get install docker.io)")
    with docker_sandbox(tag) as sb:
        yield sb


@contextlib.contextmanager
def served(engine: Engine, path: Path) -> Iterator[DockerAPI]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="docker-api-test", daemon=True)
    thread.start()
    api = make_app(engine)
    try:
        asyncio.run_coroutine_threadsafe(api.serve_unix(str(path)), loop).result(30)
        yield api
    finally:
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(api.close(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()
        path.unlink(missing_ok=True)


def docker_env(sock: Path) -> dict[str, str]:
    return {**os.environ, "DOCKER_HOST": f"unix://{sock}", "DOCKER_BUILDKIT": "0", "DOCKER_CLI_HINTS": "false"}


def docker(
    sock: Path, *args: str, stdin: bytes | None = None, timeout: float = 120, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real docker CLI against ``sock``; returns the completed process (text)."""
    proc = subprocess.run(
        [DOCKER, *args],
        input=stdin,
        capture_output=True,
        env=docker_env(sock),
        timeout=timeout,
        cwd=cwd,
        check=False,
    )
    return subprocess.CompletedProcess(
        proc.args, proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
    )
