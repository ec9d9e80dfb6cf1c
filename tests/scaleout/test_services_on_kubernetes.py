"""Labs with a lab cluster or a Docker engine under SANDBOX_BACKEND=kubernetes (issue #17): the
student's ``kubectl``/``docker`` inside the sandbox reach the node-local services as on one
box; graders (the kube and image checks) and the editor's manifest validation reach them on
the sandbox's node through that node's runtimed (runtime.relay), with the session's tokens.

The lab-base image (kubectl and the docker CLI) is copied to both nodes: `make` builds it;
without it these tests are skipped, as tests/runtime/test_kube_service.py's are.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.db import transaction
from django.test import Client as DjangoClient
from django.urls import reverse

from grader import services as grader_services
from grader.models import Submission
from labs.models import LabSession
from runtime.images.store import ImageStore
from runtime.placement import split_id
from tests.factories import LabFactory, StepFactory
from tests.grader.helpers import ExerciseFactory
from tests.scaleout.test_labs_on_kubernetes import kube_settings, start, stop, terminal
from tests.scaleout.topology import Topology

REPO = Path(__file__).resolve().parents[2]
IMAGES = Path(os.environ.get("RUNTIME_TEST_IMAGE_ROOT", REPO / "var/runtime/images"))


def _has_lab_base() -> bool:
    with contextlib.suppress(Exception):
        ImageStore(IMAGES).get("lab-base")
        return True
    return False


NODE_CPU = "2"
NODE_IMAGES = IMAGES if _has_lab_base() else None
pytestmark = [
    pytest.mark.root,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(NODE_IMAGES is None, reason=f"no lab-base image in {IMAGES} (make builds it)"),
]
__all__ = ["kube_settings"]  # the fixture, shared with test_labs_on_kubernetes


def lab_with(service: str) -> Any:
    return LabFactory.create(
        environment={"image": "lab-base", "cpus": 1, "memory": 768 * 2**20, "pids": 1024, "services": [service]}
    )


def grade(session: LabSession, lab: Any, checks: list[dict[str, Any]]) -> Submission:
    exercise = ExerciseFactory.create(step=StepFactory.create(lab=lab), checks=checks)
    with transaction.atomic():
        submission = grader_services.submission_create(user=session.user, exercise=exercise, session=session)
    grader_services.grade_submission(submission.pk)
    return Submission.objects.get(pk=submission.pk)


def test_a_kubernetes_lab_kubectl_inside_checks_and_validation_through_the_node(
    topo: Topology, kube_settings: None
) -> None:
    lab = lab_with("kubernetes")
    session = start(lab)
    assert session.status == LabSession.Status.READY, session.error
    _pod, node, box = split_id(session.sandbox_id)
    assert node in topo.nodes
    # the student's kubectl, in the terminal, on the sandbox's own cluster on that node
    asyncio.run(
        terminal(
            session,
            session.user,
            b"kubectl create configmap made-inside --from-literal=k=v && echo MADE-$((6*7))\n",
            b"MADE-42",
        )
    )
    # the grader's kubeconfig is the node's relay, with the session's grader token
    target = grader_services._target(session)
    assert target is not None and target.kubeconfig is not None
    server = yaml.safe_load(target.kubeconfig)["clusters"][0]["cluster"]["server"]
    assert server == f"https://{topo.nodes[node].ip}:{topo.port}/v1/sandboxes/{box}/kube-api"
    passed = grade(session, lab, [{"type": "kube", "kind": "ConfigMap", "name": "made-inside"}])
    assert passed.status == Submission.Status.PASSED, passed.results
    failed = grade(session, lab, [{"type": "kube", "kind": "ConfigMap", "name": "never-made"}])
    assert failed.status == Submission.Status.FAILED, failed.results
    # the editor's validation as you type: a dry run on the sandbox's cluster, through the node
    browser = DjangoClient()
    browser.force_login(session.user)
    url = reverse("labs:file-validate", args=[session.pk])
    bad = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: c\n    imagez: x\n"
    answer = browser.post(url, data=json.dumps({"content": bad}), content_type="application/json")
    assert answer.status_code == 200, answer.content
    assert answer.json()["diagnostics"], answer.json()
    stop(session)


def test_a_docker_lab_docker_inside_and_an_image_check_through_the_node(topo: Topology, kube_settings: None) -> None:
    lab = lab_with("docker")
    session = start(lab)
    assert session.status == LabSession.Status.READY, session.error
    asyncio.run(
        terminal(
            session,
            session.user,
            b"mkdir -p /root/app && cd /root/app && printf 'FROM busybox\\nLABEL made=inside\\n' > Dockerfile"
            b" && docker build -q -t made:1 . >/dev/null && echo BUILT-$((6*7))\n",
            b"BUILT-42",
        )
    )
    target = grader_services._target(session)
    assert target is not None and target.docker_url is not None and target.docker_url.startswith("https://")
    passed = grade(session, lab, [{"type": "image", "image": "made:1", "labels": {"made": "inside"}}])
    assert passed.status == Submission.Status.PASSED, passed.results
    failed = grade(session, lab, [{"type": "image", "image": "never:1"}])
    assert failed.status == Submission.Status.FAILED, failed.results
    stop(session)
