"""Celery tasks of the LTI app: thin wrappers over lti.services.

``send_lab_score`` runs on the default queue, not the grading one: it waits
on an LMS over the network, and a slow LMS must never make a student's Check
wait behind it. It is enqueued after the grading's commit, so the Check's
verdict never waits for it either; it retries with exponential back-off.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task

from lti import conf, services

MAX_RETRIES = 10


@shared_task(
    bind=True,
    name="lti.tasks.send_lab_score",
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=120,
    soft_time_limit=100,
    max_retries=MAX_RETRIES,
    ignore_result=True,
)
def send_lab_score(self: Any, context_id: int, user_id: int, lab_id: int) -> str:
    try:
        return services.score_send(context_id=context_id, user_id=user_id, lab_id=lab_id)
    except services.ScoreBusy as busy:
        raise self.retry(countdown=busy.retry_in, max_retries=None) from None
    except services.ScoreSendFailed as exc:
        if self.request.retries >= MAX_RETRIES:
            return f"failed: {exc}"
        # 2, 4, 8 ... seconds, at most ten minutes apart
        raise self.retry(exc=exc, countdown=min(600, 2 ** (self.request.retries + 1))) from None


@shared_task(name="lti.tasks.resend_stale_scores", time_limit=120, soft_time_limit=100, ignore_result=True)
def resend_stale_scores() -> int:
    return services.scores_resend_stale()


@shared_task(name="lti.tasks.expire_state", time_limit=60, soft_time_limit=50, ignore_result=True)
def expire_state() -> int:
    return conf.expire_state()
