"""The lab editor's validation as you type (labs/editor.py, runtime/kube/apiserver/dryrun.py) against a
hostile student and a curious classmate: another session's cluster, oversize text, a flood of
requests, manifests meant to create something through the dry run (a List, generateName), YAML
bombs, and apiVersion/kind/namespace/name values meant to route the request elsewhere.

Each test fails if the attack gets through: an answer about another student's cluster, an
object that exists afterwards, a request path outside the one collection, unbounded memory."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from django.db import transaction
from django.test import Client

from labs import editor, manifests, services
from labs.models import LabSession
from runtime import errors
from runtime.client import Client as RuntimeClient
from runtime.kube.apiserver import dryrun
from runtime.kube.apiserver.cluster import Cluster
from runtime.kube.apiserver.provision import clusters_dir, create_cluster
from runtime.kube.controllers.manager import Controllers
from runtime.kube.meta import Request
from tests.factories import InstructorFactory, LabFactory, StudentFactory
from tests.labs.helpers import provisioned

KUBE_LAB = {"image": "lab-base", "memory": 512 * 2**20, "pids": 512, "services": ["kubernetes"]}
CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: probe}\ndata: {a: b}\n"


def _laughs(levels: int = 10, fan: int = 10) -> str:
    lines = ["l0: &l0 [" + ", ".join(["lol"] * fan) + "]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * fan) + "]")
    return "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bomb}\ndata:\n  " + "\n  ".join(lines) + "\n"


# -- without a sandbox -----------------------------------------------------------------------


def test_a_billion_laughs_is_refused_at_its_alias_within_bounded_memory() -> None:
    text = _laughs()
    assert len(text) < manifests.MAX_TEXT  # small text; 10**10 nodes once expanded
    tracemalloc.start()
    try:
        with pytest.raises(manifests.ManifestError) as caught:
            manifests.parse(text)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "excessive aliasing" in caught.value.diagnostic.message
    assert caught.value.diagnostic.line > 4  # at an alias line, not at the top of the file
    assert peak < 64 * 2**20, f"parsing the bomb took {peak / 2**20:.0f} MiB"
    # a long string repeated through aliases is refused the same way (bytes, not only nodes)
    big = "x" * 100_000
    with pytest.raises(manifests.ManifestError, match="excessive aliasing"):
        manifests.parse(f"a: &a {big}\nb: [{', '.join(['*a'] * 12)}]\n")
    # recursive aliases and deep nesting: refused, not a crash
    with pytest.raises(manifests.ManifestError):
        manifests.parse("a: &a [*a, *a]\n")
    with pytest.raises(manifests.ManifestError):
        manifests.parse("[" * 50_000)


@pytest.fixture
def cluster(tmp_path: Path) -> Cluster:
    create_cluster(tmp_path, "lab", "https://127.0.0.1:1", controllers=Controllers)
    return Cluster("lab", clusters_dir(tmp_path) / "lab", controllers=Controllers)


@pytest.mark.parametrize(
    "obj",
    [
        {"apiVersion": "http://169.254.169.254/latest", "kind": "ConfigMap"},
        {"apiVersion": "../../api/v1", "kind": "ConfigMap"},
        {"apiVersion": "v1", "kind": "../secrets"},
        {"apiVersion": "v1/../../apis/apps/v1", "kind": "Deployment"},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"namespace": "kube-system/../../secrets"}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"namespace": "../kube-system"}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "../../../secrets", "namespace": "default"}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kube-root-ca.crt/../../secrets/x"}},
        {"apiVersion": "v1", "kind": "SelfSubjectAccessReview"},  # virtual: answered by no store
    ],
)
def test_manifest_values_never_route_the_dry_run(cluster: Cluster, obj: dict[str, Any]) -> None:
    paths: list[str] = []
    dry: list[str | None] = []
    real = cluster.handle

    def spy(req: Request) -> Any:
        paths.append(req.path)
        dry.append(req.query.get("dryRun"))
        return real(req)

    cluster.handle = spy  # type: ignore[method-assign]
    rv = cluster.store.rv
    result = dryrun.validate(cluster, {**obj, "data": {"a": "b"}})
    assert result["status"] is not None, "a manifest with such a value was accepted"
    allowed = {"/api/v1/namespaces/default/configmaps", "/api/v1/namespaces/default/configmaps/kube-root-ca.crt"}
    assert set(paths) <= allowed, paths
    assert set(dry) <= {"All"}
    assert cluster.store.rv == rv


def test_the_rate_limit_holds_per_session(monkeypatch: pytest.MonkeyPatch) -> None:
    class Fake:
        pk = "0b7a0f5c-1111-4c2e-9d6b-000000000001"

    other = type("Other", (), {"pk": "0b7a0f5c-1111-4c2e-9d6b-000000000002"})()
    monkeypatch.setattr(editor, "_now", lambda: 1_000_003.0)
    answers = [editor._rate_limited(Fake()) for _ in range(editor.VALIDATE_PER_WINDOW + 3)]  # type: ignore[arg-type]
    assert answers[: editor.VALIDATE_PER_WINDOW] == [0] * editor.VALIDATE_PER_WINDOW
    assert answers[editor.VALIDATE_PER_WINDOW :] == [7, 7, 7]  # until the next 10 s window
    assert editor._rate_limited(other) == 0  # another session's budget is its own
    monkeypatch.setattr(editor, "_now", lambda: 1_000_010.0)
    assert editor._rate_limited(Fake()) == 0  # type: ignore[arg-type]


# -- against a real sandbox and its cluster ----------------------------------------------------


@pytest.mark.django_db(transaction=True)
class TestLive:
    @pytest.fixture
    def session(self, runtime_socket: str) -> LabSession:
        with transaction.atomic():
            lab = LabFactory.create(environment=KUBE_LAB)
            started = services.lab_session_start(user=StudentFactory.create(), lab=lab)
        ready = provisioned(started)
        assert ready is not None and ready.status == "ready", ready and ready.error
        return ready

    @staticmethod
    def post(client: Client, session: LabSession, content: Any) -> Any:
        body = json.dumps({"content": content})
        return client.post(f"/labs/{session.pk}/files/validate/", body, content_type="application/json")

    @staticmethod
    def kubectl(runtime_socket: str, session: LabSession, args: str) -> str:
        with RuntimeClient(runtime_socket) as rt:
            r = rt.exec(session.sandbox_id, ["sh", "-c", f"kubectl {args}"], timeout=30)
        assert r.exit_code == 0, r.stderr_text
        return r.stdout_text

    def test_only_the_owner_validates_and_only_against_their_own_cluster(
        self, session: LabSession, runtime_socket: str
    ) -> None:
        for outsider in (StudentFactory.create(), InstructorFactory.create()):
            c = Client()
            c.force_login(outsider)
            assert self.post(c, session, CM).status_code == 404
        anonymous = self.post(Client(), session, CM)
        assert anonymous.status_code == 302 and "login" in anonymous["Location"]

        # runtimed itself: the session's web token names this sandbox only; the graders'
        # token (kubeconfig, exec) does not carry 'validate'
        with RuntimeClient(runtime_socket) as admin:
            other = admin.create_sandbox({"image": "busybox"})["id"]
            grader = admin.mint_token(session.sandbox_id, role="grader", ttl=60)
        try:
            with RuntimeClient(runtime_socket, token=session.runtime_token) as web:
                with pytest.raises(errors.Forbidden, match="another sandbox"):
                    web.kube_validate(other, [{"apiVersion": "v1", "kind": "ConfigMap"}])
                assert web.kube_validate(session.sandbox_id, [])["results"] == []
            with RuntimeClient(runtime_socket, token=grader) as g, pytest.raises(errors.Forbidden, match="validate"):
                g.kube_validate(session.sandbox_id, [])
        finally:
            with RuntimeClient(runtime_socket) as admin:
                admin.remove_sandbox(other)

    def test_oversize_text_and_bad_bodies_are_refused_before_any_work(self, session: LabSession) -> None:
        owner = Client()
        owner.force_login(session.user)
        too_long = CM + "#" * manifests.MAX_TEXT
        refused = self.post(owner, session, too_long)
        assert refused.status_code == 413 and "KiB at most" in refused.json()["error"]
        flood = owner.post(
            f"/labs/{session.pk}/files/validate/",
            b"{" * (editor.VALIDATE_MAX_BODY + 1),
            content_type="application/json",
        )
        assert flood.status_code == 413
        assert self.post(owner, session, 42).status_code == 400

    def test_a_dry_run_creates_nothing_whatever_the_file_holds(self, session: LabSession, runtime_socket: str) -> None:
        owner = Client()
        owner.force_login(session.user)
        before = self.kubectl(runtime_socket, session, "get ns,cm,pods,deploy,jobs -A -o name")
        text = """\
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: from-a-list}
- apiVersion: v1
  kind: Pod
  metadata: {generateName: sneaky-}
  spec:
    containers: [{name: c, image: busybox, command: [sleep, "3600"]}]
---
apiVersion: v1
kind: Namespace
metadata: {name: planted}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: in-planted, namespace: planted}
---
apiVersion: batch/v1
kind: Job
metadata: {generateName: job-}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: c, image: busybox}]
"""
        answer = self.post(owner, session, text)
        assert answer.status_code == 200 and answer.json() == {"diagnostics": []}, answer.content
        assert self.kubectl(runtime_socket, session, "get ns,cm,pods,deploy,jobs -A -o name") == before

    def test_a_yaml_bomb_and_routing_values_get_errors_and_reach_nothing(
        self, session: LabSession, runtime_socket: str
    ) -> None:
        owner = Client()
        owner.force_login(session.user)
        bomb = self.post(owner, session, _laughs())
        (mark,) = bomb.json()["diagnostics"]
        assert "excessive aliasing" in mark["message"]
        sneaky = (
            "apiVersion: http://169.254.169.254/latest\nkind: ConfigMap\nmetadata: {name: a}\n---\n"
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b, namespace: ../kube-system}\n"
        )
        marks = self.post(owner, session, sneaky).json()["diagnostics"]
        assert [m["line"] for m in marks] == [2, 7]
        assert "no matches for kind" in marks[0]["message"] and "metadata.namespace" in marks[1]["message"]
        assert "/a" not in self.kubectl(runtime_socket, session, "get cm -A -o name")
