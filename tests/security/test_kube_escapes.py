"""Escapes through the lab cluster: pod settings that would reach past the sandbox.

A student holds cluster-admin on their lab cluster. Its pods are containers inside the
student's sandbox, so privileged mode, host namespaces, hostPath volumes and capabilities
beyond the engine's set cannot be given; the API server refuses them with the reason (and a
Deployment's template is refused up front, so no controller loops on a pod it cannot make).
Each test asserts the refusal and that nothing was stored. The real ``kubectl`` against a
real ``python -m runtime.kube serve`` (tests/runtime/kube/conftest.py); no namespace labels,
so PodSecurity (privileged by default) is not what refuses.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.runtime.kube.conftest import Kubectl, Server, free_port

LEAD = "this lab cluster runs pods as containers inside your sandbox and cannot give"


@pytest.fixture(scope="module")
def kubectl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kubectl]:
    srv = Server(tmp_path_factory.mktemp("kube-escapes"), free_port())
    srv.start()
    try:
        yield Kubectl(srv.new_cluster("escapes"))
    finally:
        srv.stop()


@pytest.fixture
def ns(kubectl: Kubectl) -> str:
    name = f"e-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    return name


def _pod(spec: dict[str, Any], ctr: dict[str, Any]) -> dict[str, Any]:
    return {"containers": [{"name": "x", "image": "busybox:1.35", "command": ["sleep", "3600"], **ctr}], **spec}


ESCAPES: dict[str, tuple[dict[str, Any], dict[str, Any], str]] = {
    "privileged": (
        {},
        {"securityContext": {"privileged": True}},
        'privileged (container "x" must not set securityContext.privileged=true: containers here run in your '
        "sandbox's user namespace and cannot get the host's privileges)",
    ),
    "hostPID": (
        {"hostPID": True},
        {},
        "host namespaces (hostPID=true: a pod always gets its own namespaces inside your sandbox, never the host's)",
    ),
    "hostNetwork": (
        {"hostNetwork": True},
        {},
        "host namespaces (hostNetwork=true: a pod always gets its own namespaces inside your sandbox, "
        "never the host's)",
    ),
    "hostIPC": (
        {"hostIPC": True},
        {},
        "host namespaces (hostIPC=true: a pod always gets its own namespaces inside your sandbox, never the host's)",
    ),
    "hostPath": (
        {"volumes": [{"name": "root", "hostPath": {"path": "/"}}]},
        {"volumeMounts": [{"name": "root", "mountPath": "/host"}]},
        'hostPath volumes (volume "root" cannot mount the node\'s files (use emptyDir or a PersistentVolumeClaim))',
    ),
    "capabilities": (
        {},
        {"securityContext": {"capabilities": {"add": ["SYS_ADMIN", "NET_ADMIN", "CHOWN"]}}},
        'capabilities (container "x" cannot add "NET_ADMIN", "SYS_ADMIN": only these capabilities exist for '
        "containers here: ",
    ),
    "seccomp-unconfined": (
        {"securityContext": {"seccompProfile": {"type": "Unconfined"}}},
        {},
        'seccompProfile (pod cannot set type "Unconfined": the sandbox\'s seccomp filter always applies',
    ),
    "unmasked-proc": (
        {},
        {"securityContext": {"procMount": "Unmasked"}},
        'procMount (container "x" cannot unmask /proc',
    ),
    "kernel-sysctl": (
        {"securityContext": {"sysctls": [{"name": "kernel.core_pattern", "value": "|/tmp/x"}]}},
        {},
        "sysctls (kernel.core_pattern: only net.* sysctls",
    ),
}


@pytest.mark.parametrize("escape", sorted(ESCAPES))
def test_pod_escape_is_refused_with_the_reason(kubectl: Kubectl, ns: str, escape: str) -> None:
    spec, ctr, reason = ESCAPES[escape]
    manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "esc"}, "spec": _pod(spec, ctr)}
    err = kubectl.fails("apply", "-n", ns, "-f", "-", stdin=json.dumps(manifest))
    assert f'Error from server (Forbidden): error when creating "STDIN": pods "esc" is forbidden: {LEAD} them: ' in err
    assert reason in err
    assert kubectl("get", "pods", "-n", ns, "-o", "name") == ""


@pytest.mark.parametrize("escape", sorted(ESCAPES))
def test_deployment_template_escape_is_refused_with_the_reason(kubectl: Kubectl, ns: str, escape: str) -> None:
    spec, ctr, reason = ESCAPES[escape]
    manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "esc"},
        "spec": {
            "selector": {"matchLabels": {"app": "esc"}},
            "template": {"metadata": {"labels": {"app": "esc"}}, "spec": _pod(spec, ctr)},
        },
    }
    err = kubectl.fails("apply", "-n", ns, "-f", "-", stdin=json.dumps(manifest))
    assert f'deployments.apps "esc" is forbidden: {LEAD} the pods of spec.template: ' in err
    assert reason in err
    assert kubectl("get", "deployments,replicasets,pods", "-n", ns, "-o", "name") == ""


def test_an_escape_patched_into_an_existing_deployment_is_refused(kubectl: Kubectl, ns: str) -> None:
    kubectl("create", "deployment", "web", "--image=busybox:1.35", "-n", ns)
    patch = {"spec": {"template": {"spec": {"hostPID": True}}}}
    err = kubectl.fails("patch", "deployment", "web", "-n", ns, "-p", json.dumps(patch))
    assert (
        f'deployments.apps "web" is forbidden: {LEAD} the pods of spec.template: host namespaces (hostPID=true' in err
    )
    assert kubectl("get", "deployment", "web", "-n", ns, "-o", "jsonpath={.spec.template.spec.hostPID}") == ""


@pytest.mark.parametrize(
    "kind,template_path",
    [
        ("StatefulSet", ("spec", "template")),
        ("DaemonSet", ("spec", "template")),
        ("Job", ("spec", "template")),
        ("CronJob", ("spec", "jobTemplate", "spec", "template")),
        ("ReplicaSet", ("spec", "template")),
    ],
)
def test_every_pod_template_is_checked(kubectl: Kubectl, ns: str, kind: str, template_path: tuple[str, ...]) -> None:
    template = {
        "metadata": {"labels": {"app": "esc"}},
        "spec": {**_pod({"hostNetwork": True}, {}), "restartPolicy": "Never" if "Job" in kind else "Always"},
    }
    body: dict[str, Any] = {"selector": {"matchLabels": {"app": "esc"}}} if "Job" not in kind else {}
    if kind == "StatefulSet":
        body["serviceName"] = "esc"
    if kind == "CronJob":
        body = {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": template}}}
    else:
        body["template"] = template
    group = "batch/v1" if "Job" in kind else "apps/v1"
    manifest = {"apiVersion": group, "kind": kind, "metadata": {"name": "esc"}, "spec": body}
    err = kubectl.fails("apply", "-n", ns, "-f", "-", stdin=json.dumps(manifest))
    where = ".".join(template_path)
    assert f'"esc" is forbidden: {LEAD} the pods of {where}: host namespaces (hostNetwork=true' in err
    assert kubectl("get", kind.lower(), "-n", ns, "-o", "name") == ""


def test_what_can_be_honoured_is_admitted(kubectl: Kubectl, ns: str) -> None:
    """Not every security setting is an escape: default capabilities, drops, a read-only root,
    RuntimeDefault seccomp, net.* sysctls and hostPorts are given, so they are accepted."""
    spec = _pod(
        {
            "securityContext": {
                "runAsUser": 1000,
                "runAsGroup": 1000,
                "fsGroup": 2000,
                "seccompProfile": {"type": "RuntimeDefault"},
                "sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}],
            }
        },
        {
            "ports": [{"containerPort": 80, "hostPort": 8080}],
            "securityContext": {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE", "NET_RAW"]},
            },
        },
    )
    manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "fine"}, "spec": spec}
    kubectl("apply", "-n", ns, "-f", "-", stdin=json.dumps(manifest))
    assert kubectl("get", "pod", "fine", "-n", ns, "-o", "name") == "pod/fine\n"
