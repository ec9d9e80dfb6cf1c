"""The ``kube`` and ``rbac`` check types against the embedded lab cluster, end to end.

A real ``python -m runtime.kube serve`` subprocess serves a fresh cluster; objects are made with
the real kubectl 1.37; the checks run through ``run_checks`` with the official ``kubernetes``
client reading the cluster's admin kubeconfig, both as a path and as the YAML text runtimed
hands out. Nothing is mocked.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from grader.checks import InfrastructureError, Target, run_checks
from tests.runtime.kube.conftest import Kubectl, Server, free_port


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Kubectl, Path]]:
    srv = Server(tmp_path_factory.mktemp("kube-grader"), free_port())
    srv.start()
    try:
        kubeconfig = srv.new_cluster("lab")
        k = Kubectl(kubeconfig)
        k("create", "namespace", "shop")
        k("create", "deployment", "web", "--image=nginx:1.27", "--replicas=3", "-n", "shop")
        k("annotate", "deployment", "web", "-n", "shop", "kubernetes.io/change-cause=first")
        k("set", "image", "deployment/web", "nginx=nginx:1.28", "-n", "shop")
        k("create", "deployment", "api", "--image=nginx:1.27", "--replicas=3", "-n", "shop")
        k("create", "configmap", "settings", "--from-literal=mode=prod", "-n", "shop")
        k("create", "sa", "ci", "-n", "shop")
        k("create", "role", "log-reader", "--verb=get,list", "--resource=pods,pods/log", "-n", "shop")
        k("create", "rolebinding", "ci-logs", "--role=log-reader", "--serviceaccount=shop:ci", "-n", "shop")
        k("create", "rolebinding", "jane-edit", "--clusterrole=edit", "--user=jane", "-n", "shop")
        yield k, kubeconfig
    finally:
        srv.stop()


def _statuses(target: Target, checks: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(t["status"], t["output"]) for t in run_checks(target, checks)["tests"]]


def test_kube_field_expectations_pass_and_fail(cluster: tuple[Kubectl, Path]) -> None:
    _, kubeconfig = cluster
    target = Target(kubeconfig=str(kubeconfig))
    deploy = {"type": "kube", "apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "namespace": "shop"}
    results = _statuses(
        target,
        [
            {
                **deploy,
                "expect": [
                    {"path": ".spec.replicas", "equals": 3},
                    {"path": ".spec.template.spec.containers[0].image", "equals": "nginx:1.28"},
                    {"path": ".metadata.annotations['deployment.kubernetes.io/revision']", "gte": 2},
                ],
            },
            {**deploy, "expect": [{"path": ".spec.template.spec.containers[0].image", "equals": "nginx:1.29"}]},
            {"type": "kube", "kind": "ConfigMap", "name": "settings", "namespace": "shop",
             "expect": [{"path": ".data.mode", "equals": "prod"}]},
            {"type": "kube", "kind": "ConfigMap", "name": "missing", "namespace": "shop"},
            {"type": "kube", "kind": "ConfigMap", "name": "missing", "namespace": "shop", "exists": False},
        ],
    )  # fmt: skip
    assert [s for s, _ in results] == ["passed", "failed", "passed", "failed", "passed"]
    assert "nginx:1.28" in results[1][1] and ".spec.template.spec.containers[0].image" in results[1][1]
    assert results[3][1] == "There is no ConfigMap missing in namespace shop."


def test_kube_counts_with_selector_and_kubeconfig_text(cluster: tuple[Kubectl, Path]) -> None:
    k, kubeconfig = cluster
    target = Target(kubeconfig=kubeconfig.read_text())  # the YAML itself, as runtimed hands it out
    # the pods of api, which no rollout touched (web's waits: no kubelet here, so its surge pod
    # never becomes ready, as on a cluster whose new pods never start)
    pods = {"type": "kube", "kind": "Pod", "selector": "app=api", "namespace": "shop"}
    rs = {"type": "kube", "apiVersion": "apps/v1", "kind": "ReplicaSet", "selector": "app=web", "namespace": "shop"}
    results = _statuses(target, [{**pods, "count": 3}, {**pods, "count": 4}, {**rs, "count": {"gte": 2}},
                                 {**rs, "count": {"lte": 1}}])  # fmt: skip
    assert [s for s, _ in results] == ["passed", "failed", "passed", "failed"]
    assert results[1][1] == "found 3 objects, expected 4"
    # the same check follows the cluster as the student changes it
    k("scale", "deployment", "api", "--replicas=4", "-n", "shop")
    assert _statuses(target, [{**pods, "count": 4}])[0][0] == "passed"
    k("scale", "deployment", "api", "--replicas=3", "-n", "shop")


def test_kube_conditions(cluster: tuple[Kubectl, Path]) -> None:
    _, kubeconfig = cluster
    target = Target(kubeconfig=str(kubeconfig))
    deploy = {"type": "kube", "apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "namespace": "shop"}
    pod = {"type": "kube", "kind": "Pod", "selector": "app=web", "namespace": "shop"}
    results = _statuses(
        target,
        [
            {**deploy, "condition": {"type": "Progressing"}},
            # part 1 has no kubelet: pods stay Pending and the deployment is not Available
            {**deploy, "condition": {"type": "Available"}},
            {**deploy, "condition": {"type": "Available", "status": "False"}},
            {**pod, "condition": {"type": "Ready"}},
        ],
    )
    assert [s for s, _ in results] == ["passed", "failed", "passed", "failed"]
    assert results[1][1] == (
        "Deployment web: condition Available is False, expected True (Deployment does not have minimum availability.)"
    )
    assert "has no Ready condition yet" in results[3][1]


def test_rbac_can_and_cannot(cluster: tuple[Kubectl, Path]) -> None:
    k, kubeconfig = cluster
    target = Target(kubeconfig=str(kubeconfig))
    ci = {"type": "rbac", "serviceaccount": "shop:ci", "namespace": "shop"}
    jane = {"type": "rbac", "user": "jane", "namespace": "shop"}
    results = _statuses(
        target,
        [
            {**ci, "verb": "get", "resource": "pods", "subresource": "log", "allowed": True},
            {**ci, "verb": "delete", "resource": "pods", "allowed": False},
            {**ci, "verb": "delete", "resource": "pods", "allowed": True},
            {**jane, "verb": "create", "resource": "deployments", "group": "apps", "allowed": True},
            {**jane, "verb": "create", "resource": "rolebindings", "group": "rbac.authorization.k8s.io",
             "allowed": False},
            {**jane, "verb": "create", "resource": "deployments", "group": "apps", "namespace": "default",
             "allowed": True},
        ],
    )  # fmt: skip
    assert [s for s, _ in results] == ["passed", "passed", "failed", "passed", "passed", "failed"]
    assert results[2][1] == "system:serviceaccount:shop:ci may not delete pods in namespace shop."
    assert results[0][1].startswith("system:serviceaccount:shop:ci may get pods/log in namespace shop (RBAC: allowed")
    # kubectl auth can-i agrees with the check
    assert k.run("auth", "can-i", "delete", "pods", "-n", "shop", "--as=system:serviceaccount:shop:ci").stdout == "no\n"


def test_unreachable_cluster_is_retried_not_a_verdict(tmp_path: Path, cluster: tuple[Kubectl, Path]) -> None:
    """The cluster's API server is the platform's (runtimed): a refused connection means it is
    down or restarting, so grading raises InfrastructureError (the task retries it) instead
    of ending the student's attempt as ``error`` or ``failed``."""
    _, kubeconfig = cluster
    cfg = kubeconfig.read_text()
    dead = free_port()
    broken = tmp_path / "dead.kubeconfig"
    broken.write_text(re.sub(r"https://127\.0\.0\.1:\d+", f"https://127.0.0.1:{dead}", cfg))
    checks = [
        {"type": "rbac", "user": "jane", "verb": "get", "resource": "pods", "timeout": 5},
        {"type": "kube", "kind": "Pod", "name": "x", "timeout": 5},
    ]
    for check in checks:
        with pytest.raises(InfrastructureError, match=r"^The lab cluster is not reachable: "):
            run_checks(Target(kubeconfig=str(broken)), [check])
