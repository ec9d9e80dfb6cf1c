"""The platform with SANDBOX_BACKEND=kubernetes (issue #17): lab sessions started, used, graded,
waiting for capacity and ended by a lost node through the labs and grader services and the
terminal consumer, on the two-node topology of tests/scaleout/topology.py. The database is the
test database; the provisioning and grading services are called as their Celery tasks do.

Two nodes of 3 cpus, one-cpu labs: room for 6 sessions. The tests run in order.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.db import transaction

from grader import services as grader_services
from grader.models import Submission
from labs import sandboxes, services
from labs.models import LabSession
from labs.routing import websocket_urlpatterns
from runtime.placement import split_id
from tests.factories import LabFactory, StepFactory, StudentFactory
from tests.grader.helpers import ExerciseFactory
from tests.scaleout.topology import GRACE, TOLERATION, Topology

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

NODE_CPU = "3"
app = URLRouter(websocket_urlpatterns)


@pytest.fixture
def kube_settings(topo: Topology, settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # This test drives provisioning and release itself (start/stop below). The suite's real
    # Celery worker, if an earlier test started it, runs with the test run's settings (the
    # namespace backend, no lab nodes): a task it took would claim the session first and
    # fail it there. So the tasks these services enqueue are not sent here. The same for
    # the grading a Check enqueues (grader.services._enqueue): that worker would claim the
    # submission and hold its lease while the test grades it itself (a fresh-clone run saw
    # ClaimBusy); it goes to a queue no worker takes, as tests/lti/test_grade_passback.py does.
    from labs import tasks

    monkeypatch.setattr(tasks.provision_sandbox, "delay_on_commit", lambda *a, **k: None)
    monkeypatch.setattr(tasks.release_sandbox, "delay_on_commit", lambda *a, **k: None)
    settings.GRADER_QUEUE = "kubelab-test-nobody"
    settings.SANDBOX_BACKEND = "kubernetes"
    settings.SANDBOX_KUBECONFIG = str(topo.kubeconfig)
    settings.SANDBOX_NAMESPACE = "kubelab-sandboxes"
    settings.RUNTIME_CA = topo.ca.read_text()
    settings.RUNTIME_NODE_PORT = topo.port
    settings.RUNTIME_ADMIN_TOKEN = topo.admin_token
    settings.SANDBOX_CAPACITY_WAIT = 120
    sandboxes._BACKENDS.clear()
    yield
    for backend in sandboxes._BACKENDS.values():
        backend.close()
    sandboxes._BACKENDS.clear()


def start(lab: Any, user: Any | None = None) -> LabSession:
    session = services.lab_session_start(user=user or StudentFactory.create(), lab=lab)
    result = services.lab_session_provision(session_id=str(session.pk))
    assert result is not None
    return result


def stop(session: LabSession) -> None:
    services.lab_session_stop(session=session)
    services.lab_session_release(session_id=str(session.pk))


async def terminal(session: LabSession, user: Any, typed: bytes, needle: bytes) -> bytes:
    communicator = WebsocketCommunicator(app, f"/ws/labs/{session.pk}/term/1/?rows=30&cols=100")
    communicator.scope["user"] = user
    connected, code = await communicator.connect(timeout=20)
    assert connected, code
    first = await communicator.receive_output(timeout=20)
    assert first["type"] == "websocket.send" and json.loads(first["text"])["type"] == "hello", first
    await communicator.send_to(bytes_data=typed)
    seen = b""
    deadline = time.monotonic() + 20
    while needle not in seen:
        assert time.monotonic() < deadline, seen[-500:]
        message = await communicator.receive_output(timeout=20)
        assert message["type"] != "websocket.close", (message, seen[-500:])
        if message.get("bytes"):
            seen += message["bytes"]
            await communicator.send_to(text_data=json.dumps({"type": "ack", "bytes": len(message["bytes"])}))
    await communicator.disconnect()
    return seen


def test_a_lab_session_runs_on_a_lab_node_with_terminal_and_checks(topo: Topology, kube_settings: None) -> None:
    lab = LabFactory.create()
    session = start(lab)
    assert session.status == LabSession.Status.READY, session.error
    assert session.backend == "kubernetes" and split_id(session.sandbox_id)[1] in topo.nodes
    # the terminal, through the consumer, on the node's runtimed with the session's own token
    asyncio.run(terminal(session, session.user, b"echo hello > /root/mark; echo $((6*7))\n", b"42"))
    # a check, graded with the session's grader token on that node
    exercise = ExerciseFactory.create(
        step=StepFactory.create(lab=lab),
        checks=[{"type": "run", "name": "mark", "command": "grep -q hello /root/mark"}],
    )
    with transaction.atomic():
        submission = grader_services.submission_create(user=session.user, exercise=exercise, session=session)
    grader_services.grade_submission(submission.pk)
    assert Submission.objects.get(pk=submission.pk).status == Submission.Status.PASSED
    stop(session)  # its room is free again: the Pod is gone
    assert not sandboxes.backend_for("kubernetes").placements()


def test_the_port_preview_reaches_an_app_on_the_lab_node(topo: Topology, kube_settings: None) -> None:
    from django.test import AsyncClient

    session = start(LabFactory.create())
    assert session.status == LabSession.Status.READY, session.error
    backend = sandboxes.backend_for("kubernetes").backend
    script = "mkdir -p /root/www && echo hello-from-the-node > /root/www/index.html"
    script += " && busybox httpd -p 8080 -h /root/www"
    assert backend.exec(session.sandbox_id, ["sh", "-c", script], timeout=10).exit_code == 0
    owner, classmate = session.user, StudentFactory.create()  # loaded here: no lazy query in async code

    async def browse() -> list[tuple[int, bytes]]:
        out = []
        for user, path in (
            (owner, "8080/index.html"),
            (owner, "8080/..%2f..%2fv1/sandboxes"),
            (classmate, "8080/index.html"),
        ):
            client = AsyncClient()
            await client.aforce_login(user)
            response = await client.get(f"/labs/{session.pk}/port/{path}")
            body = b"".join([c async for c in response.streaming_content]) if response.streaming else response.content  # type: ignore[attr-defined]
            out.append((response.status_code, body))
        return out

    (ok, traversal, other) = asyncio.run(browse())
    assert ok == (200, b"hello-from-the-node\n"), ok
    assert traversal[0] == 400, traversal  # the path is data, checked before any hop
    assert other[0] == 404, other  # one access check, whichever backend
    stop(session)


def test_a_full_cluster_waits_for_capacity_and_a_lost_node_ends_its_sessions(
    topo: Topology, kube_settings: None
) -> None:
    # (one test: the database is emptied between tests, the cluster is not)
    lab = LabFactory.create()
    live = [start(lab) for _ in range(6)]  # 6 of 6 cpus
    assert all(s.status == LabSession.Status.READY for s in live), [s.error for s in live]
    assert {split_id(s.sandbox_id)[1] for s in live} == set(topo.nodes)
    waiting = services.lab_session_start(user=StudentFactory.create(), lab=lab)
    done: dict[str, Any] = {}
    t = threading.Thread(
        target=lambda: done.update(s=services.lab_session_provision(session_id=str(waiting.pk))), daemon=True
    )
    t.start()
    deadline = time.monotonic() + 60
    while True:
        waiting.refresh_from_db()
        stages = [p for p in waiting.progress if p["stage"] == "waiting"]
        if stages:
            break
        assert time.monotonic() < deadline, waiting.progress
        time.sleep(0.2)
    assert waiting.status == LabSession.Status.STARTING and not waiting.error
    assert "Waiting for capacity" in stages[0]["message"]
    freed = live.pop(1)
    stop(freed)
    t.join(120)
    result = done["s"]
    assert result.status == LabSession.Status.READY, result.error
    assert split_id(result.sandbox_id)[1] == split_id(freed.sandbox_id)[1]
    live.append(result)

    # node a goes away: its sessions end, saying why; node b's go on
    on_a = [s for s in live if split_id(s.sandbox_id)[1] == "kl-node-a"]
    on_b = [s for s in live if split_id(s.sandbox_id)[1] == "kl-node-b"]
    assert on_a and on_b
    stop(on_b.pop())  # room on b for a restart
    topo.nodes["kl-node-a"].stop()
    ended = 0
    deadline = time.monotonic() + GRACE + TOLERATION + 60
    while ended < len(on_a):
        ended += services.end_lost_placements()
        assert time.monotonic() < deadline, topo.logs()
        time.sleep(1)
    for s in on_a:
        s.refresh_from_db()
        assert s.end_reason == LabSession.EndReason.LOST
        assert s.status in (LabSession.Status.STOPPING, LabSession.Status.STOPPED)
        assert "taken out of service" in s.error
    for s in on_b:
        s.refresh_from_db()
        assert s.status == LabSession.Status.READY
    # the student starts the lab again: it runs on the node that is left
    again = start(on_a[0].lab, on_a[0].user)
    assert again.status == LabSession.Status.READY, again.error
    assert split_id(again.sandbox_id)[1] == "kl-node-b"
    asyncio.run(terminal(again, again.user, b"echo $((6*7))\n", b"42"))
