"""Check types without a database: output cleaning, the JSONPath dialect, the
``kube``/``rbac`` decisions, image layer analysis, and ``run``/``file``/``http``
against a real sandbox through ``run_checks``."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from typing import Any

import pytest

from grader.checks import Target, clean_output, run_checks
from grader.checks.image import analyse_layers
from grader.checks.jsonpath import compare, resolve
from grader.checks.kube import access_review_body, evaluate_kube, evaluate_rbac
from runtime.client import Client as RuntimeClient


def test_clean_output_strips_escapes_controls_and_caps() -> None:
    raw = b"\x1b[1;31mred\x1b[0m \x1b]0;evil title\x07ok\r\n\x00\x07bell \xff\xfe \xe2\x80\xaeevil" + b"A" * 100_000
    text = clean_output(raw, limit=1000)
    assert "\x1b" not in text and "\x00" not in text and "\u202e" not in text and "evil title" not in text
    assert text.startswith("red ok\nbell \ufffd\ufffd evil")
    assert len(text) < 1100 and "characters cut" in text


def test_clean_output_keeps_html_as_text() -> None:
    assert clean_output("<script>alert(1)</script>") == "<script>alert(1)</script>"


POD = {
    "kind": "Pod",
    "metadata": {"name": "web", "labels": {"app": "web"}},
    "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}, {"name": "side", "image": "busybox"}]},
    "status": {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}],
    },
}


def test_jsonpath_dialect() -> None:
    assert resolve(POD, ".spec.containers[0].image") == ["nginx:1.27"]
    assert resolve(POD, ".spec.containers[*].name") == ["nginx", "side"]
    assert resolve(POD, '.status.conditions[?(@.type=="Ready")].status') == ["True"]
    assert resolve(POD, "$.metadata.labels['app']") == ["web"]
    assert resolve(POD, ".spec.nothing") == []
    annotated = {"metadata": {"annotations": {"deployment.kubernetes.io/revision": "4"}}}
    revision = resolve(annotated, ".metadata.annotations['deployment.kubernetes.io/revision']")
    assert revision == ["4"] and compare(revision, {"gte": 4}) is None
    assert compare(["3"], {"equals": 3}) is None
    assert "expected ≥ 3" in (compare([2], {"gte": 3}) or "")
    assert compare(["nginx:1.27"], {"matches": r"^nginx:1\.2\d$"}) is None
    assert compare([], {"exists": False}) is None


def test_kube_evaluation_on_canned_objects() -> None:
    """Decided on canned API objects (against the live cluster: test_kube_checks_live.py)."""
    spec = {
        "kind": "Pod",
        "name": "web",
        "expect": [{"path": ".spec.containers[0].image", "contains": "nginx"}],
        "condition": {"type": "Ready", "status": "True"},
    }
    assert evaluate_kube(spec, [POD]).passed
    not_ready = {**POD, "status": {"conditions": [{"type": "Ready", "status": "False", "reason": "CrashLoop"}]}}
    outcome = evaluate_kube(spec, [not_ready])
    assert not outcome.passed and "Ready is False" in outcome.output and "CrashLoop" in outcome.output
    missing = evaluate_kube(spec, [])
    assert not missing.passed and missing.output == "There is no Pod web in namespace default."
    cluster_scoped = evaluate_kube({"kind": "Namespace", "name": "hello"}, [], namespaced=False)
    assert cluster_scoped.output == "There is no Namespace hello."
    assert evaluate_kube({**spec, "exists": False}, []).passed
    assert evaluate_kube({"kind": "Pod", "selector": "app=web", "count": 2}, [POD, POD]).passed
    assert not evaluate_kube({"kind": "Pod", "selector": "app=web", "count": {"gte": 3}}, [POD, POD]).passed


def test_rbac_evaluation_on_canned_reviews() -> None:
    """Decided on canned SubjectAccessReview statuses (live: test_kube_checks_live.py)."""
    spec = {"serviceaccount": "dev:builder", "verb": "list", "resource": "pods", "namespace": "dev"}
    body = access_review_body(spec)
    assert body["spec"]["user"] == "system:serviceaccount:dev:builder"
    assert "system:serviceaccounts:dev" in body["spec"]["groups"]
    assert body["spec"]["resourceAttributes"] == {"verb": "list", "resource": "pods", "namespace": "dev"}
    assert evaluate_rbac(spec, {"allowed": True}).passed
    denied = evaluate_rbac(spec, {"allowed": False, "reason": "no RoleBinding"})
    assert not denied.passed and "may not list pods in namespace dev" in denied.output
    assert evaluate_rbac({**spec, "allowed": False}, {"allowed": False}).passed


def _layer(files: dict[str, bytes | None]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


def test_layer_analysis_counts_waste_like_dive() -> None:
    base = _layer({"bin/": None, "bin/sh": b"x" * 100, "tmp/big": b"b" * 1000, "etc/conf": b"c" * 10})
    overwrite = _layer({"etc/conf": b"C" * 20})
    remove = _layer({"tmp/.wh.big": b"", "opt/": None, "opt/a": b"a" * 5})
    opaque = _layer({"opt/.wh..wh..opq": b"", "opt/b": b"b"})
    report = analyse_layers([base, overwrite, remove, opaque])
    assert report.files == {"/bin", "/bin/sh", "/etc/conf", "/opt", "/opt/b"}
    assert report.total_bytes == 100 + 1000 + 10 + 20 + 5 + 1
    assert report.wasted_bytes == 1000 + 10 + 5
    assert 0 < report.efficiency < 1


def test_misconfigured_and_unknown_checks_are_errors_not_failures() -> None:
    results = run_checks(Target(), [{"type": "nonsense"}, {"type": "run"}, "not a mapping"])  # type: ignore[list-item]
    assert [t["status"] for t in results["tests"]] == ["error", "error", "error"]
    assert results["score"] == 0 and results["max_score"] == 3 and not results["passed"]


def test_checks_that_need_a_missing_service_say_so() -> None:
    results = run_checks(Target(), [{"type": "image", "image": "web:1"}, {"type": "kube", "kind": "Pod", "name": "x"}])
    outputs = [t["output"] for t in results["tests"]]
    assert "Docker engine" in outputs[0] and "Kubernetes cluster" in outputs[1]


# --- against a real sandbox ------------------------------------------------------------------


@pytest.fixture(scope="module")
def sandbox(runtimed: str) -> Iterator[Target]:
    with RuntimeClient(runtimed) as rt:
        sid = str(rt.create_sandbox({"image": "busybox", "labels": {"test": "grader-checks"}})["id"])
        try:
            setup = (
                "mkdir -p /root/www && echo '<h1>hello grader</h1>' > /root/www/index.html && "
                "printf 'replicas: 3\\nname: web\\n' > /root/app.yaml && chmod 640 /root/app.yaml && "
                "mkdir -p /root/www/cgi-bin && printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\n"
                'echo "host=$HTTP_HOST x=$HTTP_X_KUBELAB"\\n\' > /root/www/cgi-bin/headers && '
                "chmod +x /root/www/cgi-bin/headers && "
                "busybox httpd -p 8080 -h /root/www"
            )
            result = rt.exec(sid, ["sh", "-c", setup], timeout=20)
            assert result.ok, result.stderr_text
            target = Target(sandbox_id=sid, runtime_socket=runtimed)
            yield target
            target.close()
        finally:
            rt.remove_sandbox(sid)


def _statuses(target: Target, checks: list[dict[str, Any]]) -> list[str]:
    return [t["status"] for t in run_checks(target, checks)["tests"]]


def test_run_check_expectations(sandbox: Target) -> None:
    assert _statuses(
        sandbox,
        [
            {"type": "run", "command": "echo hello world", "stdout_contains": ["hello", "world"]},
            {"type": "run", "command": "echo 42", "stdout_equals": "42", "stdout_matches": r"^\d+$"},
            {"type": "run", "command": "echo oops >&2; exit 3", "exit_code": 3, "stderr_contains": "oops"},
            {"type": "run", "command": "echo secret", "not_stdout_contains": "secret"},
            {"type": "run", "command": "pwd", "stdout_equals": "/root"},
        ],
    ) == ["passed", "passed", "passed", "failed", "passed"]


def test_file_check(sandbox: Target) -> None:
    results = run_checks(
        sandbox,
        [
            {"type": "file", "path": "/root/app.yaml", "mode": "0640", "owner": "root", "contains": "replicas"},
            {"type": "file", "path": "/root/app.yaml", "document": {"path": ".replicas", "equals": 3}},
            {"type": "file", "path": "/root/app.yaml", "document": [{"path": ".replicas", "gte": 5}]},
            {"type": "file", "path": "/root/www", "is_dir": True},
            {"type": "file", "path": "/root/nothing", "exists": False},
            {"type": "file", "path": "/root/nothing"},
            {"type": "file", "path": "/root/app.yaml", "mode": "0644"},
        ],
    )
    assert [t["status"] for t in results["tests"]] == [
        "passed",
        "passed",
        "failed",
        "passed",
        "passed",
        "failed",
        "failed",
    ]
    assert "mode is 0640, expected 0644" in results["tests"][-1]["output"]


def test_http_check_from_inside_the_sandbox(sandbox: Target) -> None:
    results = run_checks(
        sandbox,
        [
            {"type": "http", "port": 8080, "contains": "hello grader"},
            {"type": "http", "port": 8080, "path": "/missing.html", "status": 404},
            {"type": "http", "port": 8080, "matches": "goodbye"},
            {"type": "http", "port": 8081},
        ],
    )
    assert [t["status"] for t in results["tests"]] == ["passed", "passed", "failed", "failed"]
    assert "Could not connect" in results["tests"][3]["output"]


def test_http_check_sends_the_headers_it_is_given(sandbox: Target) -> None:
    """``headers`` (an Ingress's Host rule) reach the app; ``host`` stays the address."""
    page = {"type": "http", "port": 8080, "path": "/cgi-bin/headers"}
    assert _statuses(
        sandbox,
        [
            {**page, "headers": {"Host": "shop.local", "X-Kubelab": "1"}, "contains": "host=shop.local x=1"},
            {**page, "headers": {"Host": "shop.local"}, "contains": "host=other.local"},
            {**page, "host": "127.0.0.1", "contains": "host=127.0.0.1"},
        ],
    ) == ["passed", "failed", "passed"]


@pytest.mark.parametrize(
    "headers",
    [
        "Host: shop.local",
        {"Host": "shop.local\r\nX-Injected: 1"},
        {"Bad Name": "x"},
        {"Host:": "x"},
        {"Host": ["a"]},
        {f"X-{i}": "1" for i in range(17)},
    ],
)
def test_http_check_refuses_bad_headers(headers: Any) -> None:
    results = run_checks(Target(), [{"type": "http", "port": 8080, "headers": headers}])
    assert results["tests"][0]["status"] == "error", results
