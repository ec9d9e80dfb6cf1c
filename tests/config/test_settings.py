from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BASE = Path(__file__).resolve().parents[2]


def load_settings(**env: str) -> subprocess.CompletedProcess[str]:
    """Import the settings in a fresh interpreter with the given environment."""
    full = {k: v for k, v in os.environ.items() if not k.endswith("_FILE")}
    full.update(env)
    full["DJANGO_SETTINGS_MODULE"] = "config.settings"
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings; "
            "print(settings.DATABASES['default']['ENGINE']); print(settings.REDIS_URL)",
        ],
        cwd=BASE,
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DATABASE_URL", "mysql://u:p@db/x"),
        ("DATABASE_URL", "not a url"),
        ("DATABASE_URL", "postgres://user@host:5432/"),
        ("REDIS_URL", "http://localhost:6379"),
        ("REDIS_URL", "redis://"),
        ("REDIS_URL", "unix://"),
        ("DEBUG", "maybe"),
        ("PORT", "eighty"),
        ("PORT", "70000"),
        ("SECRET_KEY", "short"),
        ("SANDBOX_BACKEND", "vm"),
        ("CELERY_TASK_TIME_LIMIT", "0"),
    ],
)
def test_bad_value_stops_start_up_naming_the_variable(name: str, value: str) -> None:
    result = load_settings(**{name: value})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert f"{name}:" in result.stderr


def test_kubernetes_backend_needs_the_runtimed_ca() -> None:
    # without the CA no lab node's runtimed can be trusted: refused at start-up, not at the first lab
    result = load_settings(SANDBOX_BACKEND="kubernetes")
    assert result.returncode != 0
    assert "ImproperlyConfigured: RUNTIME_CA: required with SANDBOX_BACKEND=kubernetes" in result.stderr


def test_kubernetes_backend_with_its_ca_is_accepted(tmp_path: Path) -> None:
    from runtime.kube.apiserver.pki import make_ca

    (tmp_path / "ca.crt").write_bytes(make_ca("kubelab-runtimed-ca")[0])
    result = load_settings(SANDBOX_BACKEND="kubernetes", RUNTIME_CA_FILE=str(tmp_path / "ca.crt"))
    assert result.returncode == 0, result.stderr
    # a file that is not a certificate is refused, naming the variable
    (tmp_path / "not.crt").write_text("hello")
    result = load_settings(SANDBOX_BACKEND="kubernetes", RUNTIME_CA_FILE=str(tmp_path / "not.crt"))
    assert result.returncode != 0 and "RUNTIME_CA:" in result.stderr


def test_capacity_wait_must_fit_in_the_provisioning_task(tmp_path: Path) -> None:
    from runtime.kube.apiserver.pki import make_ca

    (tmp_path / "ca.crt").write_bytes(make_ca("kubelab-runtimed-ca")[0])
    result = load_settings(
        SANDBOX_BACKEND="kubernetes", RUNTIME_CA_FILE=str(tmp_path / "ca.crt"), SANDBOX_CAPACITY_WAIT="1h"
    )
    assert result.returncode != 0
    assert "SANDBOX_CAPACITY_WAIT:" in result.stderr


@pytest.mark.parametrize("backend", ["namespace", "docker"])
def test_working_backends_are_accepted(backend: str) -> None:
    result = load_settings(SANDBOX_BACKEND=backend)
    assert result.returncode == 0, result.stderr


def test_good_values_are_accepted() -> None:
    result = load_settings(
        DATABASE_URL="postgres://user:pw@db.example:5432/kubelab",
        REDIS_URL="redis://redis:6379/0",
        DEBUG="true",
        PORT="8080",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["django.db.backends.postgresql", "redis://redis:6379/0"]


def test_file_variant_wins_over_plain_variable(tmp_path: Path) -> None:
    secret = tmp_path / "redis_url"
    secret.write_text("redis://from-file:6380/1\n")
    result = load_settings(REDIS_URL="redis://plain:6379/0", REDIS_URL_FILE=str(secret))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "redis://from-file:6380/1"


def test_unreadable_file_variant_names_the_variable(tmp_path: Path) -> None:
    result = load_settings(SECRET_KEY_FILE=str(tmp_path / "missing"))
    assert result.returncode != 0
    assert "SECRET_KEY_FILE:" in result.stderr


def test_the_cache_is_shared_by_every_process() -> None:
    """What one web process counts in Django's cache (a rate limit) another one sees: the
    cache is the run's Redis, not each process's memory."""
    import uuid

    from django.core.cache import cache

    key = f"shared-{uuid.uuid4().hex}"
    cache.set(key, 41, timeout=60)
    cache.incr(key)
    prefix = cache.key_prefix
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.core.cache import caches; "
            "from django.conf import settings; "
            f"settings.CACHES['default']['KEY_PREFIX'] = {prefix!r}; "
            f"print(caches.create_connection('default').get({key!r}))",
        ],
        cwd=BASE,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "42"
