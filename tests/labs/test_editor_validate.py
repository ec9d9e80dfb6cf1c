"""The lab editor's validation as you type (labs/editor.py ``file_validate``) over a real
provisioned sandbox with a lab cluster: the owner gets the cluster's own answers at the lines
of the manifest, a valid file gets none, and nothing is created in the cluster."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import transaction
from django.test import Client

from labs import services
from labs.models import LabSession
from runtime.client import Client as RuntimeClient
from tests.factories import LabFactory, StudentFactory
from tests.labs.helpers import provisioned

pytestmark = pytest.mark.django_db(transaction=True)

KUBE_LAB = {"image": "lab-base", "memory": 512 * 2**20, "pids": 512, "services": ["kubernetes"]}

MANIFEST = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.27
        ports:
        - containerPort: 80
"""


@pytest.fixture
def kube_session(runtime_socket: str) -> LabSession:
    with transaction.atomic():
        started = services.lab_session_start(user=StudentFactory.create(), lab=LabFactory.create(environment=KUBE_LAB))
    ready = provisioned(started)
    assert ready is not None and ready.status == "ready", ready and ready.error
    return ready


def kubectl(runtime_socket: str, session: LabSession, args: str) -> str:
    with RuntimeClient(runtime_socket) as rt:
        r = rt.exec(session.sandbox_id, ["sh", "-c", f"kubectl {args}"], timeout=30)
    assert r.exit_code == 0, r.stderr_text
    return r.stdout_text


def validate(client: Client, session: LabSession, content: str) -> Any:
    body = json.dumps({"content": content})
    return client.post(f"/labs/{session.pk}/files/validate/", body, content_type="application/json")


def test_the_owner_gets_the_clusters_answers_at_their_lines(kube_session: LabSession, runtime_socket: str) -> None:
    owner = Client()
    owner.force_login(kube_session.user)
    ok = validate(owner, kube_session, MANIFEST)
    assert ok.status_code == 200 and ok.json() == {"diagnostics": []}

    bad_port = validate(owner, kube_session, MANIFEST.replace("containerPort: 80", "containerPort: 99999"))
    (mark,) = bad_port.json()["diagnostics"]
    assert (mark["line"], mark["col"], mark["severity"]) == (17, 25, "error")
    assert "must be between 1 and 65535, inclusive" in mark["message"]

    typo = validate(owner, kube_session, MANIFEST.replace("        image:", "        imagee:"))
    (mark,) = typo.json()["diagnostics"]
    assert mark["line"] == 15 and 'unknown field "spec.template.spec.containers[0].imagee"' in mark["message"]

    # a value of the wrong type: refused as decoding into the Go struct refuses it, at its line
    wrong_type = validate(owner, kube_session, MANIFEST.replace("replicas: 2", "replicas: two"))
    (mark,) = wrong_type.json()["diagnostics"]
    assert (mark["line"], mark["col"]) == (6, 12)
    assert "cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32" in mark["message"]

    syntax = validate(owner, kube_session, MANIFEST.replace("  replicas: 2", " replicas: 2"))
    (mark,) = syntax.json()["diagnostics"]
    assert mark["line"] == 7 and "yaml: line 7" in mark["message"]  # where go-yaml stops too

    # the kind the cluster does not serve, in the second document of the file
    two = MANIFEST + "---\napiVersion: v1\nkind: ConfigMapp\nmetadata: {name: c}\n"
    (mark,) = validate(owner, kube_session, two).json()["diagnostics"]
    assert mark["line"] == 20 and 'no matches for kind "ConfigMapp"' in mark["message"]

    # validated many times, created never
    assert kubectl(runtime_socket, kube_session, "get deployments -A -o name") == ""


def test_a_session_started_before_validation_existed_is_told_to_reset(
    kube_session: LabSession, runtime_socket: str
) -> None:
    # the web credential such a session holds: the editor's files, not 'validate'
    with RuntimeClient(runtime_socket) as admin:
        old = admin.mint_token(kube_session.sandbox_id, ops=["read", "touch", "terminal", "preview", "files"], ttl=600)
    LabSession.objects.filter(pk=kube_session.pk).update(runtime_token=old)
    owner = Client()
    owner.force_login(kube_session.user)
    refused = validate(owner, kube_session, MANIFEST)
    assert refused.status_code == 403 and "reset the lab" in refused.json()["error"]
