"""Platform-level tasks: liveness of the worker and beat."""

from __future__ import annotations

import time

from celery import shared_task
from django.core.cache import cache


@shared_task(name="config.tasks.ping", time_limit=10, soft_time_limit=5)
def ping(value: str) -> dict[str, object]:
    """Echo for health checks and the broker round-trip test."""
    return {"pong": value, "at": time.time()}


@shared_task(name="config.tasks.heartbeat", time_limit=10, soft_time_limit=5)
def heartbeat() -> float:
    """Run by beat every minute; its timestamp shows beat and a worker are alive."""
    now = time.time()
    cache.set("beat:last", now, timeout=None)
    return now
