from __future__ import annotations

from pathlib import Path

import pytest
from django.test import Client


@pytest.mark.django_db
def test_healthz_is_200_when_database_and_redis_answer(client: Client, settings) -> None:
    settings.RUNTIME_REQUIRED = False
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["status"] == "ok"
    assert body["checks"]["redis"]["status"] == "ok"


@pytest.mark.django_db
def test_healthz_is_503_when_redis_is_down(client: Client, settings, tmp_path: Path) -> None:
    settings.RUNTIME_REQUIRED = False
    settings.REDIS_URL = f"unix://{tmp_path / 'nothing.sock'}"
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["redis"]["status"] == "down"
    assert "error" in body["checks"]["redis"]


@pytest.mark.django_db
def test_healthz_reports_a_required_runtime_that_is_down(client: Client, settings, tmp_path: Path) -> None:
    settings.RUNTIME_REQUIRED = True
    settings.RUNTIME_SOCKET = str(tmp_path / "runtimed.sock")
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["runtime"]["status"] == "down"
