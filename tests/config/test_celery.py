from __future__ import annotations

import subprocess
import time

import pytest

from config.celery import app
from config.tasks import ping


def test_celery_is_json_only_with_time_limits() -> None:
    assert app.conf.task_serializer == "json"
    assert app.conf.accept_content == ["json"]
    assert app.conf.task_time_limit > 0
    assert app.conf.broker_url.startswith(("redis://", "rediss://", "redis+socket://"))


@pytest.mark.django_db(transaction=True)
def test_task_round_trip_through_real_redis_and_worker(celery_worker: subprocess.Popen[bytes]) -> None:
    result = ping.delay("hello")
    assert result.get(timeout=30)["pong"] == "hello"


def _results_mentioning(marker: str) -> int:
    client = app.backend.client
    return sum(marker.encode() in (client.get(key) or b"") for key in client.scan_iter("celery-task-meta-*"))


@pytest.mark.django_db(transaction=True)
def test_delay_on_commit_sends_only_committed_work(celery_worker: subprocess.Popen[bytes]) -> None:
    from django.db import transaction

    class Rollback(Exception):
        pass

    with pytest.raises(Rollback), transaction.atomic():
        ping.delay_on_commit("rolled-back-marker")
        raise Rollback
    with transaction.atomic():
        ping.delay_on_commit("committed-marker")

    deadline = time.monotonic() + 30
    while _results_mentioning("committed-marker") == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _results_mentioning("committed-marker") == 1
    # The worker has processed the queue in order, so the rolled-back task
    # would have been done by now had it ever been sent.
    assert _results_mentioning("rolled-back-marker") == 0
