"""Fixtures shared by the whole suite.

Tests talk to real services (CONVENTIONS.md #15). When REDIS_URL is not set, a
private redis-server is started for the session on a unix socket in a
temporary directory, before Django reads its settings; it is stopped at the
end. ``celery_worker`` starts a real worker process against that Redis.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

BASE = Path(__file__).resolve().parent.parent
_redis: subprocess.Popen[bytes] | None = None
_redis_dir: str | None = None


def _start_redis() -> str:
    global _redis, _redis_dir
    server = shutil.which("redis-server")
    if server is None:
        raise pytest.UsageError("redis-server is not installed: run `make test`, which installs it")
    _redis_dir = tempfile.mkdtemp(prefix="kubelab-redis-")
    sock = os.path.join(_redis_dir, "redis.sock")
    _redis = subprocess.Popen(
        [server, "--port", "0", "--unixsocket", sock, "--unixsocketperm", "777",
         "--save", "", "--appendonly", "no", "--dir", _redis_dir, "--loglevel", "warning"],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 10
    while not os.path.exists(sock):
        if _redis.poll() is not None or time.monotonic() > deadline:
            raise pytest.UsageError("the test redis-server did not start")
        time.sleep(0.02)
    return f"unix://{sock}"


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    # Runs before pytest-django sets Django up, so settings see these values.
    if not os.environ.get("REDIS_URL"):
        os.environ["REDIS_URL"] = _start_redis()
    os.environ.setdefault("CHANNELS_PREFIX", f"kubelab-test-{os.getpid()}")


def pytest_unconfigure(config: pytest.Config) -> None:
    if _redis is not None:
        _redis.terminate()
        try:
            _redis.wait(10)
        except subprocess.TimeoutExpired:
            _redis.kill()
    if _redis_dir:
        shutil.rmtree(_redis_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def celery_worker(django_db_setup: None, django_db_blocker: object) -> Iterator[subprocess.Popen[bytes]]:
    """A real Celery worker process on the test Redis and the test database."""
    from django.conf import settings

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        # The worker must use the test database the test process created.
        "DATABASE_URL": f"sqlite:///{settings.DATABASES['default']['NAME']}",
        "PYTHONUNBUFFERED": "1",
    }
    log = tempfile.NamedTemporaryFile(prefix="kubelab-worker-", suffix=".log", delete=False)
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--loglevel", "INFO",
         "--concurrency", "2", "--pool", "prefork", "--hostname", f"test-{os.getpid()}@%h",
         "--without-gossip", "--without-mingle"],
        cwd=BASE,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    from config.celery import app

    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"celery worker exited: {Path(log.name).read_text()[-2000:]}")
        replies = app.control.ping(timeout=0.5)
        if replies:
            break
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"celery worker did not answer: {Path(log.name).read_text()[-2000:]}")
    yield proc
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    os.unlink(log.name)
