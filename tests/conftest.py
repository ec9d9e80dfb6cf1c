"""Fixtures shared by the whole suite.

Tests talk to real services (CONVENTIONS.md #15): tests/bootstrap.py gives the
run a private Redis before Django reads its settings; ``celery_worker``,
``asgi_server`` and ``runtimed`` start a real Celery worker, daphne and
runtimed; ``chromium`` is Debian's Chromium under Playwright.
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
from typing import Any

import pytest

BASE = Path(__file__).resolve().parent.parent

# Fixture modules shared across directories (a conftest.py serves only its own directory):
# runtimed daemons for tests/runtime and tests/security, the two-node scale-out topology, the
# Docker engine's image store on a scratch root.
pytest_plugins = (
    "tests.runtime.conftest_daemon",
    "tests.security.scaleout_fixtures",
    "tests.runtime.dockerapi.images.store_fixtures",
)


@pytest.fixture(autouse=True)
def plain_static_storage(settings: Any) -> None:
    """Pages call ``{% static %}``; the manifest storage of production needs a
    prior ``collectstatic``, which a test must not depend on."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture(autouse=True)
def fast_password_hashing(request: pytest.FixtureRequest, settings: Any) -> None:
    """PBKDF2's deliberate slowness only slows the suite down. Not for
    end-to-end tests: the server they log in to checks passwords with the
    real hashers."""
    if request.node.get_closest_marker("e2e") is None:
        settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def own_queue_push_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """Queue places are pushed in batches coordinated through Redis keys, with a timer that
    sends the trailing batch an interval later (labs/queuepush.py). Each test gets keys of
    its own, so neither a window an earlier test opened nor that test's timer, firing while
    this one runs, pushes into it."""
    import uuid

    monkeypatch.setattr("labs.queuepush.KEY_PREFIX", f"test:{uuid.uuid4().hex}")


@pytest.fixture(autouse=True)
def own_cache_keys(settings: Any) -> None:
    """Django's cache is the run's Redis (config/settings.py), shared by every test and the
    processes tests start: each test counts (rate limits) under keys of its own."""
    import uuid

    settings.CACHES = {"default": {**settings.CACHES["default"], "KEY_PREFIX": f"test:{uuid.uuid4().hex}"}}


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
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--loglevel",
            "INFO",
            "--concurrency",
            "2",
            "--pool",
            "prefork",
            # Every queue tasks are routed to (config/settings.py: CELERY_TASK_ROUTES).
            "--queues",
            ",".join([settings.CELERY_TASK_DEFAULT_QUEUE, settings.PROVISIONING_QUEUE, settings.GRADER_QUEUE]),
            "--hostname",
            f"test-{os.getpid()}@%h",
            "--without-gossip",
            "--without-mingle",
        ],
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


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _daphne(extra_env: dict[str, str]) -> Iterator[str]:
    """daphne serving the real ASGI application (HTTP and WebSockets) on the test
    database; yields its base URL."""
    import socket
    import urllib.request

    from django.conf import settings

    port = _free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": f"sqlite:///{settings.DATABASES['default']['NAME']}",
        "DEBUG": "false",
        "PYTHONUNBUFFERED": "1",
        # Up without runtimed too: tests that need sandboxes start it themselves.
        "RUNTIME_REQUIRED": "false",
        **extra_env,
    }
    # As `make run` does: the web tier holds no runtimed credential of its own, only each lab
    # session's sandbox token (runtime.auth).
    for name in ("RUNTIME_ADMIN_TOKEN", "RUNTIME_TOKEN"):
        env.pop(name, None)
    # As `make run` does: pages need the collected, hashed static files.
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        cwd=BASE,
        env=env,
        check=True,
        timeout=300,
    )
    log = tempfile.NamedTemporaryFile(prefix="kubelab-daphne-", suffix=".log", delete=False)
    proc = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
        cwd=BASE,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"daphne exited: {Path(log.name).read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"daphne did not listen: {Path(log.name).read_text()[-2000:]}") from None
            time.sleep(0.05)
    urllib.request.urlopen(f"{url}/healthz", timeout=30).close()
    yield url
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    os.unlink(log.name)


@pytest.fixture(scope="session")
def asgi_server(django_db_setup: None, django_db_blocker: object) -> Iterator[str]:
    """daphne serving the real ASGI application (HTTP and WebSockets) on the
    test database; yields its base URL. pytest-django's live_server is WSGI
    only, so it cannot carry the terminal's WebSockets."""
    yield from _daphne({})


PREVIEW_HOST = "preview.test"


@pytest.fixture(scope="session")
def preview_asgi_server(django_db_setup: None, django_db_blocker: object) -> Iterator[str]:
    """The same, with the port preview on its own origin: ``PREVIEW_HOST=preview.test``
    (requests name the preview origins in their Host header; nothing resolves them)."""
    yield from _daphne({"PREVIEW_HOST": PREVIEW_HOST})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Browser tests last: Playwright's sync API runs an event loop in the main
    # thread while a browser is open, which asyncio tests must not meet.
    items.sort(key=lambda item: item.get_closest_marker("e2e") is not None)


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    """Debian's Chromium driven by Playwright (its own browser download cannot
    work here, so the executable is /usr/bin/chromium)."""
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(executable):
        raise pytest.UsageError("chromium is not installed: run `make test`, which installs it")
    # Playwright's sync API keeps an event loop in this thread; the ORM calls
    # that tests make between page actions are still synchronous and safe.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(chromium: object) -> Iterator[object]:
    context = chromium.new_context(viewport={"width": 1280, "height": 800})  # type: ignore[attr-defined]
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture(scope="session")
def runtimed() -> Iterator[str]:
    """A real runtimed (root, runc) for the web-side tests, with the busybox
    image built; yields its socket path. Its bridge, subnet, cgroup parent and
    uid range are its own, so it never meets a production or another test
    daemon on the same host."""
    if os.geteuid() != 0:
        pytest.skip("runtimed needs root (it drives runc)")
    from runtime.client import Client
    from tests.bootstrap import runtimed_root as root

    sock = Path(os.environ["RUNTIME_SOCKET"])
    # The lab images `make` built (lab-base takes a minute to debootstrap):
    # hard links into this daemon's store, so nothing is built or copied twice.
    built = Path(os.environ.get("RUNTIME_TEST_IMAGE_ROOT", BASE / "var" / "runtime" / "images"))
    if (built / "index.json").exists() and not (root / "images").exists():
        subprocess.run(["cp", "-al", str(built), str(root / "images")], check=True, timeout=300)
    log_path = root / "daemon.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "runtime",
                "daemon",
                "--root",
                str(root),
                "--socket",
                str(sock),
                "--subnet",
                "10.233.0.0/20",
                "--bridge",
                "kltestw",
                "--cgroup-parent",
                "kubelab-testw",
                "--uid-start",
                str(3_200_000_000),
            ],
            cwd=BASE,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"runtimed exited: {log_path.read_text()[-3000:]}")
        try:
            with Client(sock, timeout=5) as rt:
                rt.healthz()
                if not any(image["name"] == "busybox" for image in rt.images()):
                    rt.build_image("busybox")
            break
        except Exception:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.1)
    try:
        yield str(sock)
    finally:
        try:
            with Client(sock, timeout=30) as rt:
                for box in rt.list_sandboxes():
                    try:
                        rt.remove_sandbox(box["id"])
                    except Exception:
                        pass
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


@pytest.fixture
def runtime_socket(runtimed: str, settings: object) -> str:
    """The test runtimed, running, and the settings pointing at it."""
    settings.RUNTIME_SOCKET = runtimed  # type: ignore[attr-defined]
    return runtimed
