"""Assignment and Grade Services: a graded lab's score reaches the LMS's gradebook.

The grading itself is the grader's real claim/finish path on a made-up sandbox (as
tests/grader/test_services.py does): no runtimed is needed to decide a verdict here.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from celery.exceptions import Retry
from django.test import Client
from django.utils import timezone

from grader import services as grader
from labs.models import LabSession
from lti import services
from lti.models import LtiContext, LtiIdentity, LtiScore
from lti.tasks import send_lab_score
from tests.lti.platform import LEARNER, launch

PASSED = {"score": 1, "max_score": 1, "passed": True, "tests": []}
FAILED = {"score": 0, "max_score": 1, "passed": False, "tests": []}


@pytest.fixture
def eager_celery() -> Iterator[None]:
    """Tasks enqueued on commit run inline (the real worker is used in the last test)."""
    from config.celery import app

    before = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = before


def _student(lms: Any, course: Any, sub: str = "stu-1") -> Any:
    response = launch(Client(), lms, lms.claims(sub=sub, roles=LEARNER, target=course.lab_target))
    assert response.status_code == 302
    return LtiIdentity.objects.get(issuer=lms.issuer, sub=sub).user


def _session(user: Any, lab: Any) -> LabSession:
    """A ready session on a made-up sandbox: the grading below never reaches it."""
    expires = timezone.now() + timedelta(hours=1)
    return LabSession.objects.create(user=user, lab=lab, status="ready", sandbox_id="sb-none", expires_at=expires)


def _grade(user: Any, exercise: Any, results: dict[str, Any], capture: Any) -> None:
    """One press of Check, graded to the verdict in ``results``; on-commit work runs."""
    session = LabSession.objects.filter(user=user, lab=exercise.lab).first() or _session(user, exercise.lab)
    with capture(execute=False):
        submission = grader.submission_create(user=user, exercise=exercise, session=session)
    claim = grader._claim(submission.pk)
    assert claim is not None
    with capture(execute=True):
        grader._finish(claim, status="passed" if results["passed"] else "failed", results=results)


@pytest.mark.django_db
def test_each_graded_change_sends_the_labs_score(
    lms: Any, course: Any, settings: Any, eager_celery: None, django_capture_on_commit_callbacks: Any
) -> None:
    settings.GRADER_QUEUE = "kubelab-test-nobody"
    user = _student(lms, course)
    _grade(user, course.exercises[0], FAILED, django_capture_on_commit_callbacks)
    _grade(user, course.exercises[0], PASSED, django_capture_on_commit_callbacks)
    _grade(user, course.exercises[1], PASSED, django_capture_on_commit_callbacks)
    # one gradebook column for the lab, found again rather than made twice
    [item] = lms.lineitems
    assert item["resourceId"] == f"lab-{course.lab.pk}" and item["scoreMaximum"] == 2
    assert item["label"] == "Pods: First Pod" and item["tag"] == "kubelab-lab"
    sent = [(s.body["scoreGiven"], s.body["scoreMaximum"], s.body["activityProgress"]) for s in lms.scores]
    assert sent == [(0, 2, "InProgress"), (1, 2, "InProgress"), (2, 2, "Completed")]
    assert all(s.body["userId"] == "stu-1" and s.body["gradingProgress"] == "FullyGraded" for s in lms.scores)
    stamps = [datetime.fromisoformat(s.body["timestamp"]) for s in lms.scores]
    assert stamps == sorted(stamps) and len(set(stamps)) == 3 and all(s.kept for s in lms.scores)
    row = LtiScore.objects.get(user=user, lab=course.lab)
    assert (row.score_given, row.score_maximum, row.failures, row.lease_until) == (2, 2, 0, None)


@pytest.mark.django_db
def test_the_check_never_waits_for_the_lms(
    lms: Any, course: Any, settings: Any, eager_celery: None, django_capture_on_commit_callbacks: Any
) -> None:
    settings.GRADER_QUEUE = "kubelab-test-nobody"
    user = _student(lms, course)
    session = _session(user, course.lab)
    with django_capture_on_commit_callbacks(execute=False):
        submission = grader.submission_create(user=user, exercise=course.exercises[0], session=session)
    claim = grader._claim(submission.pk)
    assert claim is not None
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        finished = grader._finish(claim, status="passed", results=PASSED)
    # The verdict is saved; the LMS has heard nothing: the send waits for the commit, then a task.
    assert finished is not None and finished.status == "passed"
    assert lms.scores == [] and lms.tokens == {}
    for callback in callbacks:  # the commit: now the task is enqueued (and, eager here, runs)
        callback()
    assert [s.body["scoreGiven"] for s in lms.scores] == [1]


@pytest.mark.django_db
def test_scores_never_go_backwards(
    lms: Any, course: Any, settings: Any, eager_celery: None, django_capture_on_commit_callbacks: Any
) -> None:
    settings.GRADER_QUEUE = "kubelab-test-nobody"
    user = _student(lms, course)
    _grade(user, course.exercises[0], PASSED, django_capture_on_commit_callbacks)
    context = LtiContext.objects.get(context_id="course-101")
    ids = {"context_id": context.pk, "user_id": user.pk, "lab_id": course.lab.pk}
    # A repeated or late send of the same state sends nothing.
    assert services.score_send(**ids) == "unchanged"
    assert len(lms.scores) == 1
    # While another send holds the score, this one waits its turn (the task retries).
    LtiScore.objects.filter(user=user).update(lease_token="other", lease_until=timezone.now() + timedelta(seconds=30))
    with pytest.raises(services.ScoreBusy):
        services.score_send(**ids)
    LtiScore.objects.filter(user=user).update(lease_token="", lease_until=None)
    # The LMS already holds a newer timestamp (say a clock ahead): the next score goes out stamped after it.
    ahead = timezone.now() + timedelta(hours=1)
    LtiScore.objects.filter(user=user).update(sent_timestamp=ahead)
    lms.results = {k: {**v, "timestamp": ahead.isoformat()} for k, v in lms.results.items()}
    _grade(user, course.exercises[1], PASSED, django_capture_on_commit_callbacks)
    last = lms.scores[-1]
    assert last.kept and last.body["scoreGiven"] == 2
    assert datetime.fromisoformat(last.body["timestamp"]) > ahead
    assert lms.kept_results()["stu-1"]["scoreGiven"] == 2


@pytest.mark.django_db
def test_a_refused_send_is_retried_with_back_off(lms: Any, course: Any, settings: Any, eager_celery: None) -> None:
    user = _student(lms, course)
    from grader.models import ExerciseProgress

    ExerciseProgress.objects.create(user=user, exercise=course.exercises[0], status="passed")
    context = LtiContext.objects.get(context_id="course-101")
    lms.fail_scores = 2
    result = send_lab_score.apply(args=(context.pk, user.pk, course.lab.pk))
    assert result.get() == "sent"
    assert lms.fail_scores == 0 and lms.kept_results()["stu-1"]["scoreGiven"] == 1
    # The delays double: 2, 4, 8 ... s (at most ten minutes).
    lms.fail_scores = 1
    ExerciseProgress.objects.filter(user=user).update(status="attempted")
    send_lab_score.push_request(id="test-retry", retries=3, is_eager=True, called_directly=False)
    try:
        with pytest.raises(Retry) as retry:
            send_lab_score.run(context.pk, user.pk, course.lab.pk)
    finally:
        send_lab_score.pop_request()
    assert retry.value.when == 16
    assert LtiScore.objects.get(user=user).failures == 1


@pytest.mark.django_db(transaction=True)
def test_a_graded_lab_reaches_the_lms_through_a_real_worker(
    lms: Any, course: Any, settings: Any, celery_worker: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.GRADER_QUEUE = "kubelab-test-nobody"
    user = _student(lms, course, sub="worker-stu")
    _grade(user, course.exercises[0], PASSED, django_capture_on_commit_callbacks)
    deadline = time.monotonic() + 60
    while not lms.scores and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [(s.body["userId"], s.body["scoreGiven"], s.body["scoreMaximum"]) for s in lms.scores] == [
        ("worker-stu", 1, 2)
    ]


@pytest.mark.django_db
def test_a_column_deleted_in_the_lms_is_made_again(
    lms: Any, course: Any, settings: Any, eager_celery: None, django_capture_on_commit_callbacks: Any
) -> None:
    settings.GRADER_QUEUE = "kubelab-test-nobody"
    user = _student(lms, course)
    _grade(user, course.exercises[0], PASSED, django_capture_on_commit_callbacks)
    [first] = lms.lineitems
    lms.delete_lineitem(first["id"])
    _grade(user, course.exercises[1], PASSED, django_capture_on_commit_callbacks)
    # The send to the deleted column failed (404), the retry found no column and made a new one.
    [second] = lms.lineitems
    assert second["id"] != first["id"] and second["resourceId"] == f"lab-{course.lab.pk}"
    assert lms.kept_results()["stu-1"]["scoreGiven"] == 2
    assert [s.lineitem for s in lms.scores] == [first["id"], second["id"]]


@pytest.mark.django_db
def test_a_broker_failure_on_the_send_never_stops_the_verdict_reaching_the_page(
    lms: Any, course: Any, settings: Any, monkeypatch: Any, django_capture_on_commit_callbacks: Any
) -> None:
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    settings.GRADER_QUEUE = "kubelab-test-nobody"
    user = _student(lms, course)
    session = _session(user, course.lab)
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(f"lab.{session.pk}", channel)

    def broker_down(*args: Any, **kwargs: Any) -> None:
        # stands in for Redis refusing the publish (cannot be made to fail for one test)
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr(send_lab_score, "delay", broker_down)
    _grade(user, course.exercises[0], PASSED, django_capture_on_commit_callbacks)
    message = async_to_sync(layer.receive)(channel)
    assert message["type"] == "grader.result" and message["result"]["status"] == "passed"
    assert lms.scores == []
    # The broker is back: beat's sweep finds the score the LMS never got, and sends it once.
    monkeypatch.undo()
    from config.celery import app

    app.conf.task_always_eager = True
    try:
        assert services.scores_resend_stale() == 1
        assert services.scores_resend_stale() == 0
    finally:
        app.conf.task_always_eager = False
    assert [(s.body["userId"], s.body["scoreGiven"]) for s in lms.scores] == [("stu-1", 1)]
