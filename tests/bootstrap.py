"""Loaded with ``-p tests.bootstrap`` (pyproject's addopts), before
pytest-django reads the settings: it gives the whole test run its own
services' addresses.

When REDIS_URL is not set, a private redis-server is started on a unix socket
in a temporary directory and stopped at the end. VAR_DIR is a
temporary directory of the run's own. RUNTIME_SOCKET is fixed to where the
``runtimed`` fixture will listen, so every process the tests start
(worker, daphne) knows it from the start.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

_redis: subprocess.Popen[bytes] | None = None
_redis_dir: str | None = None
runtimed_root = Path(tempfile.mkdtemp(prefix="kl-test-rtd-", dir="/tmp"))
# The run's own var/: its test database, secret key and static files, so that
# two test runs on one machine never share a SQLite file.
var_dir = Path(tempfile.mkdtemp(prefix="kl-test-var-", dir="/tmp"))


def _start_redis() -> str:
    global _redis, _redis_dir
    server = shutil.which("redis-server")
    if server is None:
        raise pytest.UsageError("redis-server is not installed: run `make test`, which installs it")
    _redis_dir = tempfile.mkdtemp(prefix="kubelab-redis-")
    sock = os.path.join(_redis_dir, "redis.sock")
    _redis = subprocess.Popen(
        [
            server,
            "--port",
            "0",
            "--unixsocket",
            sock,
            "--unixsocketperm",
            "777",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            _redis_dir,
            "--loglevel",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 10
    while not os.path.exists(sock):
        if _redis.poll() is not None or time.monotonic() > deadline:
            raise pytest.UsageError("the test redis-server did not start")
        time.sleep(0.02)
    return f"unix://{sock}"


# At import, deliberately: this module is imported before any hook runs, and
# pytest-django imports the settings in its earliest hook.
if not os.environ.get("REDIS_URL"):
    os.environ["REDIS_URL"] = _start_redis()
os.environ.setdefault("CHANNELS_PREFIX", f"kubelab-test-{os.getpid()}")
os.environ["VAR_DIR"] = str(var_dir)
os.environ["RUNTIME_SOCKET"] = str(runtimed_root / "rt.sock")
# runtimed's admin credential for this run (runtime.auth): every daemon the tests start takes
# it from RUNTIME_ADMIN_TOKEN, the worker's settings read it, and test code's runtime clients
# fall back to RUNTIME_TOKEN. The web tier never gets it (tests/conftest.py: asgi_server).
os.environ.setdefault("RUNTIME_ADMIN_TOKEN", "test-admin-" + secrets.token_urlsafe(24))
os.environ["RUNTIME_TOKEN"] = os.environ["RUNTIME_ADMIN_TOKEN"]


def _clean_up() -> None:
    """Stop the run's redis and remove its directories (twice is harmless)."""
    global _redis
    if _redis is not None:
        _redis.terminate()
        try:
            _redis.wait(10)
        except subprocess.TimeoutExpired:
            _redis.kill()
        _redis = None
    if _redis_dir:
        shutil.rmtree(_redis_dir, ignore_errors=True)
    subprocess.run(["umount", "-R", "-l", str(runtimed_root)], capture_output=True, timeout=30)
    shutil.rmtree(runtimed_root, ignore_errors=True)
    shutil.rmtree(var_dir, ignore_errors=True)


# A usage error (an unknown option, say) ends pytest before its configure hooks, so
# pytest_unconfigure never runs: without this the redis-server outlived the run.
atexit.register(_clean_up)


def pytest_unconfigure(config: pytest.Config) -> None:
    _clean_up()
