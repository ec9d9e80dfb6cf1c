"""Celery tasks of the grader: thin wrappers over grader.services.

``grade`` is safe to run any number of times for one submission: the service
claims with a conditional update and only the claim holder may finish. It runs
on the ``grading`` queue (GRADER_QUEUE), which only grading workers consume, so
a class provisioning its sandboxes never delays a Check.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_init
from django.conf import settings

from grader import services
from grader.checks import InfrastructureError

MAX_RETRIES = 8


@worker_init.connect
def _preload_check_libraries(sender: Any = None, **_: Any) -> None:
    """In a worker that grades, import what the checks use before the pool forks.

    The checks import the ``kubernetes`` and ``docker`` clients lazily (the web tier never
    needs them); in a prefork pool that made every pool process's first Check pay the
    import (about a second on a loaded host: py-spy on a class of 5 found the first two
    gradings at 1.4-1.6 s, the next at 0.3 s, and Checks queued behind them). Imported in
    the main process, the children inherit them."""
    from runtime.client import warm_up

    warm_up()  # every grading makes runtime Clients: their transport's modules and TLS context, once
    queues = getattr(getattr(getattr(sender, "app", None), "amqp", None), "queues", None)
    consuming = set(getattr(queues, "consume_from", None) or {})
    if settings.GRADER_QUEUE not in consuming:
        return
    import docker  # noqa: F401
    import kubernetes.client
    import kubernetes.config
    import kubernetes.dynamic  # noqa: F401
    import urllib3  # noqa: F401


@shared_task(
    bind=True,
    name="grader.tasks.grade",
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=900,
    soft_time_limit=870,
    max_retries=MAX_RETRIES,
    ignore_result=True,  # the verdict lives in the database; nobody waits on the task
)
def grade(self: Any, submission_id: int) -> str | None:
    try:
        submission = services.grade_submission(submission_id)
    except services.ClaimBusy as busy:
        # A grading that may still be alive holds it: look again when its lease ends.
        raise self.retry(countdown=busy.retry_in, max_retries=None) from None
    except (InfrastructureError, SoftTimeLimitExceeded) as exc:
        if self.request.retries >= MAX_RETRIES:
            services.grade_submission_failed(
                submission_id=submission_id,
                message=f"The platform could not run your check ({exc}). Try again in a minute.",
            )
            return "error"
        raise self.retry(exc=exc, countdown=min(30, 2**self.request.retries)) from None
    return submission.status if submission else None


@shared_task(name="grader.tasks.requeue_stale_submissions", time_limit=60, soft_time_limit=50)
def requeue_stale_submissions() -> int:
    return services.requeue_stale_submissions()
