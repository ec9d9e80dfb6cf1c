"""LimitRange and ResourceQuota admission, with kube-apiserver's messages."""

from __future__ import annotations

import json

from tests.runtime.kube.conftest import Kubectl

_LIMITS = """
apiVersion: v1
kind: LimitRange
metadata: {name: lr}
spec:
  limits:
  - type: Container
    default: {cpu: 500m, memory: 256Mi}
    defaultRequest: {cpu: 250m}
    max: {cpu: "1", memory: 1Gi}
    min: {cpu: 100m}
"""


def _pod(name: str, resources: dict[str, dict[str, str]] | None = None) -> str:
    ctr: dict[str, object] = {"name": name, "image": "nginx"}
    if resources is not None:
        ctr["resources"] = resources
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {"containers": [ctr]}})


def test_limitrange_defaults_are_applied_and_annotated(alpha: Kubectl, ns: str) -> None:
    alpha("apply", "-n", ns, "-f", "-", stdin=_LIMITS)
    lr = json.loads(alpha("get", "limits", "lr", "-n", ns, "-o", "json"))
    # SetDefaults_LimitRangeItem: defaultRequest.memory comes from default.memory
    assert lr["spec"]["limits"][0]["defaultRequest"] == {"cpu": "250m", "memory": "256Mi"}
    alpha("run", "plain", "--image=nginx", "-n", ns)
    pod = json.loads(alpha("get", "pod", "plain", "-n", ns, "-o", "json"))
    assert pod["spec"]["containers"][0]["resources"] == {
        "limits": {"cpu": "500m", "memory": "256Mi"},
        "requests": {"cpu": "250m", "memory": "256Mi"},
    }
    assert pod["metadata"]["annotations"]["kubernetes.io/limit-ranger"] == (
        "LimitRanger plugin set: cpu, memory request for container plain; cpu, memory limit for container plain"
    )
    assert pod["status"]["qosClass"] == "Burstable"
    # limits given, requests not: the pod's own defaulting copies them before LimitRanger runs
    alpha("apply", "-n", ns, "-f", "-", stdin=_pod("lim", {"limits": {"cpu": "1000m"}}))
    res = json.loads(alpha("get", "pod", "lim", "-n", ns, "-o", "jsonpath={.spec.containers[0].resources}"))
    assert res == {"limits": {"cpu": "1", "memory": "256Mi"}, "requests": {"cpu": "1", "memory": "256Mi"}}


def test_limitrange_min_and_max_refuse_with_the_real_message(alpha: Kubectl, ns: str) -> None:
    alpha("apply", "-n", ns, "-f", "-", stdin=_LIMITS)
    err = alpha.fails("apply", "-n", ns, "-f", "-", stdin=_pod("big", {"limits": {"cpu": "2"}}))
    assert err.strip() == (
        'Error from server (Forbidden): error when creating "STDIN": pods "big" is forbidden: '
        "maximum cpu usage per Container is 1, but limit is 2"
    )
    err = alpha.fails("apply", "-n", ns, "-f", "-", stdin=_pod("tiny", {"requests": {"cpu": "50m"}}))
    assert err.strip().endswith('pods "tiny" is forbidden: minimum cpu usage per Container is 100m, but request is 50m')
    err = alpha.fails("apply", "-n", ns, "-f", "-", stdin=_pod("both", {"limits": {"cpu": "3", "memory": "2Gi"}}))
    assert err.strip().endswith(
        'pods "both" is forbidden: [maximum cpu usage per Container is 1, but limit is 3, '
        "maximum memory usage per Container is 1Gi, but limit is 2Gi]"
    )
    assert alpha("get", "pods", "-n", ns, "-o", "name") == ""


def test_quota_counts_usage_and_refuses_over_quota(alpha: Kubectl, ns: str) -> None:
    assert alpha("create", "quota", "q", "--hard=pods=2,requests.cpu=1,configmaps=3", "-n", ns) == (
        "resourcequota/q created\n"
    )
    alpha("apply", "-n", ns, "-f", "-", stdin=_pod("one", {"requests": {"cpu": "300m"}}))
    alpha("apply", "-n", ns, "-f", "-", stdin=_pod("two", {"requests": {"cpu": "0.2"}}))
    q = json.loads(alpha("get", "quota", "q", "-n", ns, "-o", "json"))
    # kube-root-ca.crt is a configmap too, as on a real cluster
    assert q["status"] == {
        "hard": {"configmaps": "3", "pods": "2", "requests.cpu": "1"},
        "used": {"configmaps": "1", "pods": "2", "requests.cpu": "500m"},
    }
    rows = [line.split() for line in alpha("describe", "quota", "q", "-n", ns).splitlines()]
    assert ["pods", "2", "2"] in rows and ["requests.cpu", "500m", "1"] in rows and ["configmaps", "1", "3"] in rows
    assert alpha("get", "quota", "-n", ns, "--no-headers").split()[2:] == [
        "configmaps:",
        "1/3,",
        "pods:",
        "2/2,",
        "requests.cpu:",
        "500m/1",
    ]
    err = alpha.fails("apply", "-n", ns, "-f", "-", stdin=_pod("three", {"requests": {"cpu": "100m"}}))
    assert err.strip() == (
        'Error from server (Forbidden): error when creating "STDIN": pods "three" is forbidden: '
        "exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2"
    )
    alpha("delete", "pod", "two", "-n", ns)
    err = alpha.fails("apply", "-n", ns, "-f", "-", stdin=_pod("greedy", {"requests": {"cpu": "800m"}}))
    assert err.strip().endswith(
        'pods "greedy" is forbidden: exceeded quota: q, requested: requests.cpu=800m, used: '
        "requests.cpu=300m, limited: requests.cpu=1"
    )
    alpha("create", "configmap", "c1", "-n", ns)
    alpha("create", "configmap", "c2", "-n", ns)
    err = alpha.fails("create", "configmap", "c3", "-n", ns)
    assert err.strip() == (
        'error: failed to create configmap: configmaps "c3" is forbidden: exceeded quota: q, '
        "requested: configmaps=1, used: configmaps=3, limited: configmaps=3"
    )


def test_quota_on_limits_requires_them_and_blocks_replicaset_pods(alpha: Kubectl, ns: str) -> None:
    alpha("create", "quota", "compute", "--hard=pods=2,limits.cpu=2,limits.memory=1Gi", "-n", ns)
    err = alpha.fails("run", "bare", "--image=nginx", "-n", ns)
    assert err.strip() == (
        'Error from server (Forbidden): pods "bare" is forbidden: failed quota: compute: must specify '
        "limits.cpu for: bare; limits.memory for: bare"
    )
    alpha("create", "-n", ns, "-f", "-", stdin=_LIMITS)  # defaults make the pods acceptable
    alpha("create", "deployment", "web", "--image=nginx", "--replicas=3", "-n", ns)
    rs = alpha("get", "rs", "-n", ns, "--no-headers").split()
    assert rs[1:4] == ["3", "2", "0"]
    events = json.loads(alpha("get", "events", "-n", ns, "--field-selector=reason=FailedCreate", "-o", "json"))
    msgs = [e["message"] for e in events["items"]]
    assert len(msgs) == 1 and msgs[0].startswith(f'Error creating: pods "{rs[0]}-')
    assert msgs[0].endswith("is forbidden: exceeded quota: compute, requested: pods=1, used: pods=2, limited: pods=2")
    assert events["items"][0]["type"] == "Warning"
    used = json.loads(alpha("get", "quota", "compute", "-n", ns, "-o", "jsonpath={.status.used}"))
    assert used == {"limits.cpu": "1", "limits.memory": "512Mi", "pods": "2"}
