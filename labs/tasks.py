"""Celery tasks of the labs app: thin wrappers that call one service each.

Tasks take ids, never model instances, and are safe to run twice: each
service claims its work with a conditional update first (CONVENTIONS.md #8).
Provisioning and release go to the ``provisioning`` queue, never to grading's
(config/settings.py: CELERY_TASK_ROUTES).
"""

from __future__ import annotations

from typing import Any

from celery import shared_task
from celery.signals import worker_init

from labs import services


@worker_init.connect
def _prepare_runtime_client(**_: Any) -> None:
    """Before a prefork worker forks its pool: the runtime client's TLS context (unused on
    its unix socket, but httpx wants one: ~90 ms of CPU to build) and transport modules, so
    no pool process pays for them on its first task while a class is starting. And the
    services' pushes go out on a loop of each process's own (labs/push.py)."""
    from labs import push
    from runtime.client import warm_up

    warm_up()
    push.use_own_loop()


@shared_task(
    bind=True,
    name="labs.tasks.provision_sandbox",
    time_limit=900,
    soft_time_limit=840,
    acks_late=True,
    max_retries=20,
)
def provision_sandbox(self: Any, session_id: str) -> str | None:
    try:
        session = services.lab_session_provision(session_id=session_id)
    except services.ProvisionBusy as busy:
        # A second delivery while a worker builds it: look again when that worker's lease
        # ends (it renews it while alive), so a killed worker's session is taken over.
        raise self.retry(countdown=busy.retry_in) from None
    return session.status if session else None


@shared_task(
    name="labs.tasks.release_sandbox",
    time_limit=180,
    soft_time_limit=150,
    acks_late=True,
    autoretry_for=(OSError,),
    retry_backoff=True,
    max_retries=5,
)
def release_sandbox(session_id: str) -> None:
    services.lab_session_release(session_id=session_id)


@shared_task(name="labs.tasks.cull_idle_sessions", time_limit=120, soft_time_limit=100)
def cull_idle_sessions() -> int:
    return services.cull_idle_sessions()


@shared_task(name="labs.tasks.requeue_stale_provisioning", time_limit=60, soft_time_limit=50)
def requeue_stale_provisioning() -> int:
    return services.requeue_stale_provisioning()


@shared_task(name="labs.tasks.expire_sessions", time_limit=120, soft_time_limit=100)
def expire_sessions() -> int:
    return services.expire_sessions()


@shared_task(name="labs.tasks.pause_sandbox", time_limit=300, soft_time_limit=270, acks_late=True)
def pause_sandbox(session_id: str) -> str | None:
    session = services.lab_session_do_pause(session_id=session_id)
    return session.status if session else None


@shared_task(name="labs.tasks.resume_sandbox", time_limit=300, soft_time_limit=270, acks_late=True)
def resume_sandbox(session_id: str) -> str | None:
    session = services.lab_session_do_resume(session_id=session_id)
    return session.status if session else None


@shared_task(name="labs.tasks.expire_paused_sessions", time_limit=300, soft_time_limit=270)
def expire_paused_sessions() -> int:
    return services.expire_paused_sessions()


@shared_task(name="labs.tasks.end_lost_placements", time_limit=120, soft_time_limit=100)
def end_lost_placements() -> int:
    return services.end_lost_placements()
