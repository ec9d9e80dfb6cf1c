"""ControllerRevisions: StatefulSet and DaemonSet history, ``kubectl rollout history|undo``."""

from __future__ import annotations

import json

from tests.runtime.kube.conftest import Kubectl
from tests.runtime.kube.test_rollouts import mark_ready, not_ready


def _rows(out: str) -> list[list[str]]:
    return [line.split() for line in out.strip().splitlines() if line.strip()]


def _sts(name: str, image: str) -> str:
    return json.dumps(
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": name},
            "spec": {
                "serviceName": name,
                "replicas": 2,
                "podManagementPolicy": "Parallel",
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "nginx", "image": image}]},
                },
            },
        }
    )


def _ds(name: str, image: str) -> str:
    return json.dumps(
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": name},
            "spec": {
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "agent", "image": image}]},
                },
            },
        }
    )


def _roll(k: Kubectl, ns: str) -> None:
    """Play the kubelet: make every new pod ready until the StatefulSet's rollout is done."""
    for _ in range(5):
        pending = not_ready(k, ns)
        if not pending:
            return
        mark_ready(k, ns, *pending)
    raise AssertionError("rollout did not finish")


def test_statefulset_revisions_history_and_undo(alpha: Kubectl, ns: str) -> None:
    alpha("create", "-n", ns, "-f", "-", stdin=_sts("web", "nginx:1.25"))
    _roll(alpha, ns)
    # pods are replaced one at a time once the previous one is ready (the rollout waits for a kubelet)
    alpha("set", "image", "sts/web", "nginx=nginx:1.26", "-n", ns)
    _roll(alpha, ns)
    revs = _rows(alpha("get", "controllerrevisions", "-n", ns))
    assert revs[0] == ["NAME", "CONTROLLER", "REVISION", "AGE"]
    assert sorted(r[1:3] for r in revs[1:]) == [["statefulset.apps/web", "1"], ["statefulset.apps/web", "2"]]
    cr = {c["revision"]: c for c in json.loads(alpha("get", "controllerrevisions", "-n", ns, "-o", "json"))["items"]}
    first, second = cr[1], cr[2]
    h = first["metadata"]["name"].removeprefix("web-")
    assert first["metadata"]["labels"] == {"app": "web", "controller.kubernetes.io/hash": h}
    assert first["metadata"]["ownerReferences"][0]["kind"] == "StatefulSet"
    tmpl = first["data"]["spec"]["template"]
    assert tmpl["$patch"] == "replace" and tmpl["spec"]["containers"][0]["image"] == "nginx:1.25"
    sts = json.loads(alpha("get", "sts", "web", "-n", ns, "-o", "json"))
    assert sts["status"]["currentRevision"] == second["metadata"]["name"]
    assert sts["status"]["updateRevision"] == second["metadata"]["name"]
    pods = json.loads(alpha("get", "pods", "-n", ns, "-o", "json"))["items"]
    assert {p["metadata"]["labels"]["controller-revision-hash"] for p in pods} == {second["metadata"]["name"]}
    assert {p["spec"]["containers"][0]["image"] for p in pods} == {"nginx:1.26"}

    assert alpha("rollout", "history", "sts/web", "-n", ns) == (
        "statefulset.apps/web \nREVISION  CHANGE-CAUSE\n1         <none>\n2         <none>\n\n"
    )
    detail = alpha("rollout", "history", "sts/web", "-n", ns, "--revision=1")
    assert detail.startswith("statefulset.apps/web with revision #1\nPod Template:\n  Labels:\tapp=web\n")
    assert "    Image:\tnginx:1.25\n" in detail
    assert "unable to find the specified revision" in alpha.fails(
        "rollout", "history", "sts/web", "-n", ns, "--revision=7"
    )

    assert alpha("rollout", "undo", "sts/web", "-n", ns) == "statefulset.apps/web rolled back\n"
    _roll(alpha, ns)
    assert alpha("rollout", "history", "sts/web", "-n", ns).splitlines()[1:4] == [
        "REVISION  CHANGE-CAUSE",
        "2         <none>",
        "3         <none>",
    ]
    image = alpha("get", "sts", "web", "-n", ns, "-o", "jsonpath={.spec.template.spec.containers[0].image}")
    assert image == "nginx:1.25"
    # the live template equals revision 3 byte for byte, so kubectl skips the rollback
    assert alpha("rollout", "undo", "sts/web", "-n", ns, "--to-revision=3") == (
        "statefulset.apps/web skipped rollback (current template already matches revision 3)\n"
    )
    pods = json.loads(alpha("get", "pods", "-n", ns, "-o", "json"))["items"]
    assert {p["metadata"]["labels"]["controller-revision-hash"] for p in pods} == {first["metadata"]["name"]}


def test_change_cause_and_history_limit_on_statefulset(alpha: Kubectl, ns: str) -> None:
    alpha("create", "-n", ns, "-f", "-", stdin=_sts("db", "postgres:15"))
    _roll(alpha, ns)
    alpha("patch", "sts", "db", "-n", ns, "-p", '{"spec":{"revisionHistoryLimit":1}}')
    alpha("annotate", "sts", "db", "-n", ns, "kubernetes.io/change-cause=move to 16")
    alpha("set", "image", "sts/db", "nginx=postgres:16", "-n", ns)
    _roll(alpha, ns)  # revisions that live pods still run are kept, so finish each rollout
    alpha("set", "image", "sts/db", "nginx=postgres:17", "-n", ns)
    _roll(alpha, ns)
    hist = alpha("rollout", "history", "sts/db", "-n", ns).splitlines()
    # revision 1 is gone (limit 1 besides the live one); 2 carries the annotation it was made with
    assert hist[1:4] == ["REVISION  CHANGE-CAUSE", "2         move to 16", "3         move to 16"]


def test_daemonset_revisions_history_and_undo(alpha: Kubectl, ns: str) -> None:
    alpha("create", "-n", ns, "-f", "-", stdin=_ds("agent", "busybox:1.36"))
    alpha("set", "image", "ds/agent", "agent=busybox:1.37", "-n", ns)
    cr = {c["revision"]: c for c in json.loads(alpha("get", "controllerrevisions", "-n", ns, "-o", "json"))["items"]}
    assert sorted(cr) == [1, 2]
    h = cr[2]["metadata"]["name"].removeprefix("agent-")
    assert cr[2]["metadata"]["labels"] == {"app": "agent", "controller-revision-hash": h}
    pods = json.loads(alpha("get", "pods", "-n", ns, "-o", "json"))["items"]
    assert pods and {p["metadata"]["labels"]["controller-revision-hash"] for p in pods} == {h}
    assert alpha("rollout", "history", "daemonset/agent", "-n", ns) == (
        "daemonset.apps/agent \nREVISION  CHANGE-CAUSE\n1         <none>\n2         <none>\n\n"
    )
    detail = alpha("rollout", "history", "daemonset/agent", "-n", ns, "--revision=2")
    assert detail.startswith("daemonset.apps/agent with revision #2\n") and "Image:\tbusybox:1.37" in detail
    assert alpha("rollout", "undo", "daemonset/agent", "-n", ns) == "daemonset.apps/agent rolled back\n"
    image = alpha("get", "ds", "agent", "-n", ns, "-o", "jsonpath={.spec.template.spec.containers[0].image}")
    assert image == "busybox:1.36"
    assert alpha("rollout", "undo", "daemonset/agent", "-n", ns, "--to-revision=3") == (
        "daemonset.apps/agent skipped rollback (current template already matches revision 3)\n"
    )
    pods = json.loads(alpha("get", "pods", "-n", ns, "-o", "json"))["items"]
    assert {p["spec"]["containers"][0]["image"] for p in pods} == {"busybox:1.36"}
