"""Pod Security Admission through the real kubectl: namespace labels, enforce/warn/audit,
the Pod Security Standards' messages byte for byte (k8s.io/pod-security-admission)."""

from __future__ import annotations

import json
from typing import Any

from tests.runtime.kube.conftest import Kubectl

ENFORCE = "pod-security.kubernetes.io/enforce"
WARN = "pod-security.kubernetes.io/warn"


def pod(name: str, spec: dict[str, Any] | None = None, ctr: dict[str, Any] | None = None) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {"containers": [{"name": name, "image": "busybox:1.35", **(ctr or {})}], **(spec or {})},
        }
    )


RESTRICTED_OK_CTR = {
    "securityContext": {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
}


def test_restricted_enforce_refuses_a_plain_pod_with_every_reason(alpha: Kubectl, ns: str) -> None:
    alpha("label", "namespace", ns, f"{ENFORCE}=restricted")
    err = alpha.fails("apply", "-n", ns, "-f", "-", stdin=pod("web"))
    assert (
        'Error from server (Forbidden): error when creating "STDIN": pods "web" is forbidden: violates PodSecurity '
        '"restricted:latest": allowPrivilegeEscalation != false (container "web" must set '
        'securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container "web" must set '
        'securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true (pod or container "web" must set '
        'securityContext.runAsNonRoot=true), seccompProfile (pod or container "web" must set '
        'securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")'
    ) in err
    assert "web" not in alpha("get", "pods", "-n", ns, "-o", "name")


def test_restricted_enforce_admits_a_compliant_pod(alpha: Kubectl, ns: str) -> None:
    alpha("label", "namespace", ns, f"{ENFORCE}=restricted")
    r = alpha.run("apply", "-n", ns, "-f", "-", stdin=pod("ok", ctr=RESTRICTED_OK_CTR))
    assert r.returncode == 0, r.stderr
    assert "Warning" not in r.stderr
    assert alpha("get", "pod", "ok", "-n", ns, "-o", "jsonpath={.metadata.name}") == "ok"


def test_baseline_enforce_refuses_host_namespaces_and_host_ports_but_not_restricted_gaps(
    alpha: Kubectl, ns: str
) -> None:
    alpha("label", "namespace", ns, f"{ENFORCE}=baseline")
    err = alpha.fails(
        "apply",
        "-n",
        ns,
        "-f",
        "-",
        stdin=pod("host", {"hostIPC": True}, {"ports": [{"containerPort": 80, "hostPort": 8080}]}),
    )
    assert (
        'pods "host" is forbidden: violates PodSecurity "baseline:latest": host namespaces (hostIPC=true), '
        'hostPort (container "host" uses hostPort 8080)'
    ) in err
    # a plain pod meets baseline: only restricted asks for runAsNonRoot and the rest
    alpha("apply", "-n", ns, "-f", "-", stdin=pod("plain"))


def test_a_versioned_policy_names_its_version(alpha: Kubectl, ns: str) -> None:
    alpha("label", "namespace", ns, f"{ENFORCE}=baseline", f"{ENFORCE}-version=v1.30")
    err = alpha.fails(
        "apply",
        "-n",
        ns,
        "-f",
        "-",
        stdin=pod("caps", ctr={"securityContext": {"capabilities": {"add": ["SYS_ADMIN", "NET_ADMIN"]}}}),
    )
    assert (
        'pods "caps" is forbidden: violates PodSecurity "baseline:v1.30": non-default capabilities '
        '(container "caps" must not include "NET_ADMIN", "SYS_ADMIN" in securityContext.capabilities.add)'
    ) in err


def test_warn_mode_admits_and_kubectl_prints_the_warning(alpha: Kubectl, ns: str) -> None:
    alpha("label", "namespace", ns, f"{WARN}=restricted")
    r = alpha.run("apply", "-n", ns, "-f", "-", stdin=pod("warned", {"securityContext": {"runAsNonRoot": True}}))
    assert r.returncode == 0, r.stderr
    assert (
        'Warning: would violate PodSecurity "restricted:latest": allowPrivilegeEscalation != false '
        '(container "warned" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities '
        '(container "warned" must set securityContext.capabilities.drop=["ALL"]), seccompProfile (pod or '
        'container "warned" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")'
    ) in r.stderr
    assert alpha("get", "pod", "warned", "-n", ns, "-o", "jsonpath={.metadata.name}") == "warned"


def test_a_deployment_is_warned_about_not_refused_and_its_pods_are(alpha: Kubectl, ns: str) -> None:
    alpha("label", "namespace", ns, f"{ENFORCE}=restricted")
    r = alpha.run("create", "deployment", "web", "--image=busybox:1.35", "-n", ns)
    assert r.returncode == 0, r.stderr
    # warn follows an explicitly stricter enforce, as upstream
    assert (
        'Warning: would violate PodSecurity "restricted:latest": allowPrivilegeEscalation != false '
        '(container "busybox" must set securityContext.allowPrivilegeEscalation=false)'
    ) in r.stderr
    events = alpha("get", "events", "-n", ns, "-o", "jsonpath={range .items[*]}{.reason}: {.message}{'\\n'}{end}")
    assert "FailedCreate: Error creating: pods" in events
    assert 'is forbidden: violates PodSecurity "restricted:latest"' in events
    assert alpha("get", "pods", "-n", ns, "-o", "name") == ""


def test_labelling_enforce_warns_about_existing_violating_pods(alpha: Kubectl, ns: str) -> None:
    alpha("apply", "-n", ns, "-f", "-", stdin=pod("old"))
    alpha("apply", "-n", ns, "-f", "-", stdin=pod("older"))
    r = alpha.run("label", "namespace", ns, f"{ENFORCE}=restricted")
    assert r.returncode == 0, r.stderr
    assert (
        f'Warning: existing pods in namespace "{ns}" violate the new PodSecurity enforce level "restricted:latest"\n'
        "Warning: old (and 1 other pod): allowPrivilegeEscalation != false, unrestricted capabilities, "
        "runAsNonRoot != true, seccompProfile\n"
    ) in r.stderr
    assert ENFORCE in alpha("get", "namespace", ns, "-o", "jsonpath={.metadata.labels}")


def test_invalid_policy_labels_are_refused(alpha: Kubectl, ns: str) -> None:
    err = alpha.fails("label", "namespace", ns, f"{ENFORCE}=strict")
    assert (
        f'Namespace "{ns}" is invalid: metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: '
        '"strict": must be one of privileged, baseline, restricted'
    ) in err
    err = alpha.fails("label", "namespace", ns, f"{WARN}-version=1.30")
    assert 'Invalid value: "1.30": must be "latest" or "v1.x"' in err


def test_an_image_change_of_a_pod_is_judged_again(alpha: Kubectl, ns: str) -> None:
    alpha("apply", "-n", ns, "-f", "-", stdin=pod("img"))
    alpha("label", "namespace", ns, f"{ENFORCE}=restricted")
    err = alpha.fails("set", "image", "pod/img", "img=busybox:1.36", "-n", ns)
    assert 'pods "img" is forbidden: violates PodSecurity "restricted:latest"' in err
    # a metadata-only change is not a significant update: allowed
    alpha("label", "pod", "img", "x=y", "-n", ns)
