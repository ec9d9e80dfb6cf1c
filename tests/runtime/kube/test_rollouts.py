"""Rollouts that wait for ready pods: Deployment, ReplicaSet, StatefulSet and DaemonSet controllers.

Most tests drive the real kubectl against the ``server`` fixture and play the kubelet's part
by writing pod readiness through the pods' status subresource (``kubectl patch
--subresource=status``), which is exactly what a kubelet does and what the controllers react
to. One in-process test gives the cluster a kubelet hook that never finishes deleting pods
(so deleted pods stay Terminating, as on a node); the last test runs the real kubelet on a
real sandbox engine (tag 254).
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from runtime.kube import registry
from runtime.kube.apiserver.cluster import Cluster
from runtime.kube.apiserver.provision import clusters_dir, create_cluster
from runtime.kube.controllers.manager import Controllers
from tests.runtime.kube.conftest import KUBECTL, Kubectl

R = registry.BY_GR


def _ts(ago: float = 0) -> str:
    t = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=ago)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def mark_ready(k: Kubectl, ns: str, *pods: str, ago: float = 0) -> None:
    """What a kubelet writes once a pod's containers run and pass readiness."""
    body = {
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": _ts(ago)}],
        }
    }
    for p in pods:
        k("patch", "pod", p, "-n", ns, "--subresource=status", "--type=merge", "-p", json.dumps(body))


def pods_json(k: Kubectl, ns: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(k("get", "pods", "-n", ns, "-o", "json"))["items"]
    return items


def not_ready(k: Kubectl, ns: str) -> list[str]:
    out = []
    for p in pods_json(k, ns):
        conds = (p.get("status") or {}).get("conditions") or []
        if not any(c["type"] == "Ready" and c["status"] == "True" for c in conds):
            out.append(p["metadata"]["name"])
    return sorted(out)


def rs_sizes(k: Kubectl, ns: str) -> dict[str, int]:
    items = json.loads(k("get", "rs", "-n", ns, "-o", "json"))["items"]
    return {r["metadata"]["name"]: int(r["spec"]["replicas"]) for r in items}


def deploy(k: Kubectl, ns: str, name: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(k("get", "deploy", name, "-n", ns, "-o", "json"))
    return out


def cond(obj: dict[str, Any], typ: str) -> dict[str, Any]:
    return next(c for c in obj["status"]["conditions"] if c["type"] == typ)


def events(k: Kubectl, ns: str, reason: str) -> list[str]:
    items = json.loads(k("get", "events", "-n", ns, "-o", "json"))["items"]
    items.sort(key=lambda e: e["metadata"]["resourceVersion"].zfill(20))
    return [e["message"] for e in items if e["reason"] == reason]


def deployment_yaml(name: str, replicas: int, image: str, **strategy: Any) -> str:
    spec: dict[str, Any] = {
        "replicas": replicas,
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": "c", "image": image}]},
        },
    }
    if strategy:
        spec["strategy"] = strategy
    return json.dumps({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name}, "spec": spec})


def ready_deployment(k: Kubectl, ns: str, name: str, replicas: int, **strategy: Any) -> str:
    """A deployment of ``replicas`` ready pods; returns its ReplicaSet's name."""
    k("create", "-n", ns, "-f", "-", stdin=deployment_yaml(name, replicas, "busybox:1.35", **strategy))
    mark_ready(k, ns, *not_ready(k, ns))
    d = deploy(k, ns, name)
    assert d["status"]["availableReplicas"] == replicas
    (rs,) = rs_sizes(k, ns)
    assert cond(d, "Progressing")["reason"] == "NewReplicaSetAvailable"
    assert cond(d, "Progressing")["message"] == f'ReplicaSet "{rs}" has successfully progressed.'
    assert cond(d, "Available")["message"] == "Deployment has minimum availability."
    return rs


def test_rolling_update_surges_one_and_waits_for_each_ready_pod(alpha: Kubectl, ns: str) -> None:
    old = ready_deployment(
        alpha, ns, "web", 3, type="RollingUpdate", rollingUpdate={"maxSurge": 1, "maxUnavailable": 0}
    )
    alpha("set", "image", "deploy/web", "c=debian:bookworm", "-n", ns)
    seen = []
    for _ in range(6):
        sizes = rs_sizes(alpha, ns)
        (new,) = set(sizes) - {old}
        seen.append((sizes[new], sizes[old]))
        d = deploy(alpha, ns, "web")
        # maxUnavailable 0: every step keeps 3 available pods
        assert d["status"]["availableReplicas"] == 3
        if sizes[old] == 0:
            break
        assert cond(d, "Progressing")["reason"] == "ReplicaSetUpdated"
        assert cond(d, "Progressing")["message"] == f'ReplicaSet "{new}" is progressing.'
        assert len(not_ready(alpha, ns)) == 1  # never more than one surge pod
        mark_ready(alpha, ns, *not_ready(alpha, ns))
    assert seen == [(1, 3), (2, 2), (3, 1), (3, 0)]
    d = deploy(alpha, ns, "web")
    assert {k: d["status"].get(k) for k in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas")} == {
        "replicas": 3,
        "updatedReplicas": 3,
        "readyReplicas": 3,
        "availableReplicas": 3,
    }
    assert "unavailableReplicas" not in d["status"]
    assert cond(d, "Progressing")["message"] == f'ReplicaSet "{new}" has successfully progressed.'
    assert [c["type"] for c in d["status"]["conditions"]] == ["Available", "Progressing"]
    assert events(alpha, ns, "ScalingReplicaSet") == [
        f"Scaled up replica set {old} from 0 to 3",
        f"Scaled up replica set {new} from 0 to 1",
        f"Scaled down replica set {old} from 3 to 2",
        f"Scaled up replica set {new} from 1 to 2",
        f"Scaled down replica set {old} from 2 to 1",
        f"Scaled up replica set {new} from 2 to 3",
        f"Scaled down replica set {old} from 1 to 0",
    ]
    out = alpha("rollout", "status", "deployment/web", "-n", ns, timeout=20)
    assert out == 'deployment "web" successfully rolled out\n'


def test_percentages_round_surge_up_and_unavailable_down(alpha: Kubectl, ns: str) -> None:
    # 25% of 10: maxSurge 3 (2.5 rounded up), maxUnavailable 2 (rounded down)
    old = ready_deployment(alpha, ns, "pct", 10)
    alpha("set", "image", "deploy/pct", "c=debian:bookworm", "-n", ns)
    sizes = rs_sizes(alpha, ns)
    (new,) = set(sizes) - {old}
    assert (sizes[new], sizes[old]) == (5, 8)  # 13 pods at most, 8 available at least
    d = deploy(alpha, ns, "pct")
    assert d["status"]["availableReplicas"] == 8 and d["status"]["unavailableReplicas"] == 5
    assert cond(d, "Available")["status"] == "True"
    rows = alpha("rollout", "status", "deployment/pct", "-n", ns, "--watch=false")
    assert rows == 'Waiting for deployment "pct" rollout to finish: 5 out of 10 new replicas have been updated...\n'


def test_broken_image_stalls_times_out_and_undo_recovers(alpha: Kubectl, ns: str) -> None:
    old = ready_deployment(alpha, ns, "b", 4)
    alpha("patch", "deploy", "b", "-n", ns, "-p", '{"spec":{"progressDeadlineSeconds":1}}')
    alpha("set", "image", "deploy/b", "c=nosuch:1", "-n", ns)
    sizes = rs_sizes(alpha, ns)
    (new,) = set(sizes) - {old}
    assert (sizes[new], sizes[old]) == (2, 3)  # maxSurge 1, maxUnavailable 1: 3 old pods keep serving
    d = deploy(alpha, ns, "b")
    assert d["status"]["availableReplicas"] == 3 and cond(d, "Available")["status"] == "True"
    time.sleep(2.2)
    alpha("create", "configmap", "poke", "-n", ns)  # any write runs the controllers (as the periodic tick does)
    d = deploy(alpha, ns, "b")
    prog = cond(d, "Progressing")
    assert (prog["status"], prog["reason"]) == ("False", "ProgressDeadlineExceeded")
    assert prog["message"] == f'ReplicaSet "{new}" has timed out progressing.'
    r = alpha.run("rollout", "status", "deployment/b", "-n", ns)
    assert r.returncode == 1 and 'deployment "b" exceeded its progress deadline' in r.stderr

    assert alpha("rollout", "undo", "deployment/b", "-n", ns) == "deployment.apps/b rolled back\n"
    sizes = rs_sizes(alpha, ns)
    assert (sizes[new], sizes[old]) == (0, 4)  # the unhealthy new pods go first
    mark_ready(alpha, ns, *not_ready(alpha, ns))
    d = deploy(alpha, ns, "b")
    assert d["status"]["updatedReplicas"] == 4 and d["status"]["availableReplicas"] == 4
    assert cond(d, "Progressing")["reason"] == "NewReplicaSetAvailable"
    assert alpha("rollout", "status", "deployment/b", "-n", ns) == 'deployment "b" successfully rolled out\n'


def test_rollout_status_prints_the_clients_progress_lines_until_done(alpha: Kubectl, ns: str) -> None:
    ready_deployment(alpha, ns, "w", 3, type="RollingUpdate", rollingUpdate={"maxSurge": 1, "maxUnavailable": 0})
    alpha("set", "image", "deploy/w", "c=debian:bookworm", "-n", ns)
    proc = subprocess.Popen(
        [KUBECTL, "--kubeconfig", str(alpha.kubeconfig), "rollout", "status", "deployment/w", "-n", ns],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # kubectl is watching once it printed the current state
        for _ in range(3):
            mark_ready(alpha, ns, *not_ready(alpha, ns))
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    lines = [first.rstrip("\n"), *out.splitlines()]
    distinct = [x for i, x in enumerate(lines) if i == 0 or x != lines[i - 1]]
    wait = 'Waiting for deployment "w" rollout to finish: '
    assert distinct == [
        wait + "1 out of 3 new replicas have been updated...",
        wait + "2 out of 3 new replicas have been updated...",
        wait + "1 old replicas are pending termination...",
        'deployment "w" successfully rolled out',
    ]


def test_scaling_mid_rollout_is_proportional(alpha: Kubectl, ns: str) -> None:
    old = ready_deployment(alpha, ns, "prop", 10)
    alpha("set", "image", "deploy/prop", "c=debian:bookworm", "-n", ns)
    sizes = rs_sizes(alpha, ns)
    (new,) = set(sizes) - {old}
    assert (sizes[new], sizes[old]) == (5, 8)
    alpha("scale", "deploy/prop", "--replicas=20", "-n", ns)
    # 12 more pods allowed (20 + maxSurge 5 - 13), shared by size: 8*25/13 -> 15, 5*25/13 -> 10
    sizes = rs_sizes(alpha, ns)
    assert (sizes[new], sizes[old]) == (10, 15)
    rs = json.loads(alpha("get", "rs", new, "-n", ns, "-o", "json"))
    ann = rs["metadata"]["annotations"]
    assert ann["deployment.kubernetes.io/desired-replicas"] == "20"
    assert ann["deployment.kubernetes.io/max-replicas"] == "25"
    assert f"Scaled up replica set {old} from 8 to 15" in events(alpha, ns, "ScalingReplicaSet")


def test_quota_refusal_shows_as_replica_failure(alpha: Kubectl, ns: str) -> None:
    alpha("create", "quota", "q", "--hard=pods=2", "-n", ns)
    alpha("create", "deployment", "q", "--image=busybox:1.35", "--replicas=3", "-n", ns)
    (rs,) = rs_sizes(alpha, ns)
    st = json.loads(alpha("get", "rs", rs, "-n", ns, "-o", "json"))["status"]
    (failure,) = st["conditions"]
    assert (failure["type"], failure["reason"]) == ("ReplicaFailure", "FailedCreate")
    assert "exceeded quota: q" in failure["message"]
    d = deploy(alpha, ns, "q")
    c = cond(d, "ReplicaFailure")
    assert (c["status"], c["reason"], c["message"]) == ("True", "FailedCreate", failure["message"])
    alpha("delete", "quota", "q", "-n", ns)
    alpha("scale", "deploy/q", "--replicas=3", "-n", ns)  # any write: the controllers retry
    assert "conditions" not in json.loads(alpha("get", "rs", rs, "-n", ns, "-o", "json"))["status"]
    assert "ReplicaFailure" not in [c["type"] for c in deploy(alpha, ns, "q")["status"]["conditions"]]


def test_pause_holds_the_rollout_and_resume_starts_it(alpha: Kubectl, ns: str) -> None:
    old = ready_deployment(alpha, ns, "p", 2)
    assert alpha("rollout", "pause", "deployment/p", "-n", ns) == "deployment.apps/p paused\n"
    alpha("set", "image", "deploy/p", "c=debian:bookworm", "-n", ns)
    assert rs_sizes(alpha, ns) == {old: 2}
    prog = cond(deploy(alpha, ns, "p"), "Progressing")
    assert (prog["status"], prog["reason"], prog["message"]) == ("Unknown", "DeploymentPaused", "Deployment is paused")
    alpha("scale", "deploy/p", "--replicas=3", "-n", ns)  # scaling still works while paused
    assert rs_sizes(alpha, ns) == {old: 3}
    assert alpha("rollout", "resume", "deployment/p", "-n", ns) == "deployment.apps/p resumed\n"
    sizes = rs_sizes(alpha, ns)
    assert len(sizes) == 2 and sizes[old] == 3
    d = deploy(alpha, ns, "p")
    assert cond(d, "Progressing")["status"] == "True"
    assert cond(d, "Progressing")["reason"] in ("NewReplicaSetCreated", "ReplicaSetUpdated")


def test_replicaset_status_min_ready_seconds_and_scale_down_order(alpha: Kubectl, ns: str) -> None:
    rs = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": "r"},
        "spec": {
            "replicas": 3,
            "minReadySeconds": 3600,
            "selector": {"matchLabels": {"app": "r"}},
            "template": {
                "metadata": {"labels": {"app": "r"}},
                "spec": {"containers": [{"name": "c", "image": "busybox:1.35"}]},
            },
        },
    }
    alpha("create", "-n", ns, "-f", "-", stdin=json.dumps(rs))
    a, b, c = sorted(p["metadata"]["name"] for p in pods_json(alpha, ns))
    mark_ready(alpha, ns, a, ago=7200)  # ready for two hours: available
    mark_ready(alpha, ns, b)  # ready just now: not available for an hour
    st = json.loads(alpha("get", "rs", "r", "-n", ns, "-o", "json"))["status"]
    assert st == {
        "replicas": 3,
        "fullyLabeledReplicas": 3,
        "readyReplicas": 2,
        "availableReplicas": 1,
        "terminatingReplicas": 0,  # DeploymentReplicaSetTerminatingReplicas is on (beta) in 1.37
        "observedGeneration": 1,
    }
    # scale down: the not-ready pod goes first, then the one ready for the shortest time
    alpha("scale", "rs/r", "--replicas=2", "-n", ns)
    assert sorted(p["metadata"]["name"] for p in pods_json(alpha, ns)) == sorted([a, b])
    alpha("scale", "rs/r", "--replicas=1", "-n", ns)
    assert [p["metadata"]["name"] for p in pods_json(alpha, ns)] == [a]
    assert events(alpha, ns, "SuccessfulDelete") == [f"Deleted pod: {c}", f"Deleted pod: {b}"]


def _sts(name: str, replicas: int, image: str, partition: int = 0) -> str:
    return json.dumps(
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": name},
            "spec": {
                "serviceName": name,
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": partition}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "c", "image": image}]},
                },
            },
        }
    )


def _sts_pods(k: Kubectl, ns: str) -> dict[str, str]:
    return {p["metadata"]["name"]: p["spec"]["containers"][0]["image"] for p in pods_json(k, ns)}


def test_statefulset_ordered_ready_creation_and_rolling_update_from_the_top(alpha: Kubectl, ns: str) -> None:
    alpha("create", "-n", ns, "-f", "-", stdin=_sts("db", 3, "busybox:1.35", partition=1))
    for i in range(3):
        assert sorted(_sts_pods(alpha, ns)) == [f"db-{j}" for j in range(i + 1)]  # N+1 waits for N
        mark_ready(alpha, ns, f"db-{i}")
    st = json.loads(alpha("get", "sts", "db", "-n", ns, "-o", "json"))["status"]
    first = st["currentRevision"]
    assert st["readyReplicas"] == 3 and st["updateRevision"] == first
    alpha("set", "image", "sts/db", "c=debian:bookworm", "-n", ns)
    # highest ordinal first; db-1 waits until db-2 runs the new revision and is ready
    assert _sts_pods(alpha, ns) == {"db-0": "busybox:1.35", "db-1": "busybox:1.35", "db-2": "debian:bookworm"}
    mark_ready(alpha, ns, "db-2")
    assert _sts_pods(alpha, ns) == {"db-0": "busybox:1.35", "db-1": "debian:bookworm", "db-2": "debian:bookworm"}
    mark_ready(alpha, ns, "db-1")
    out = alpha("rollout", "status", "sts/db", "-n", ns, timeout=20)
    assert out == "partitioned roll out complete: 2 new pods have been updated...\n"
    st = json.loads(alpha("get", "sts", "db", "-n", ns, "-o", "json"))["status"]
    # partition 1 keeps db-0 on the old revision, so the current revision does not switch
    assert _sts_pods(alpha, ns)["db-0"] == "busybox:1.35"
    assert st["currentRevision"] == first and st["updateRevision"] != first and st["updatedReplicas"] == 2
    alpha("patch", "sts", "db", "-n", ns, "-p", '{"spec":{"updateStrategy":{"rollingUpdate":{"partition":0}}}}')
    assert _sts_pods(alpha, ns)["db-0"] == "debian:bookworm"
    mark_ready(alpha, ns, "db-0")
    st = json.loads(alpha("get", "sts", "db", "-n", ns, "-o", "json"))["status"]
    assert st["currentRevision"] == st["updateRevision"] and st["currentReplicas"] == 3
    out = alpha("rollout", "status", "sts/db", "-n", ns, timeout=20)
    assert out == "partitioned roll out complete: 3 new pods have been updated...\n"  # kubectl's wording


def test_daemonset_rolling_update_replaces_the_node_pod(alpha: Kubectl, ns: str) -> None:
    ds = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent"},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {
                "metadata": {"labels": {"app": "agent"}},
                "spec": {"containers": [{"name": "c", "image": "busybox:1.35"}]},
            },
        },
    }
    alpha("create", "-n", ns, "-f", "-", stdin=json.dumps(ds))
    (before,) = pods_json(alpha, ns)
    mark_ready(alpha, ns, before["metadata"]["name"])
    alpha("set", "image", "ds/agent", "c=debian:bookworm", "-n", ns)
    (after,) = pods_json(alpha, ns)
    assert after["metadata"]["name"] != before["metadata"]["name"]
    assert after["spec"]["containers"][0]["image"] == "debian:bookworm"
    assert events(alpha, ns, "SuccessfulDelete") == [f"Deleted pod: {before['metadata']['name']}"]


@pytest.fixture
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    data = tmp_path_factory.mktemp("kube-inproc")
    create_cluster(data, "inproc", "https://127.0.0.1:1", controllers=Controllers)
    c = Cluster("inproc", clusters_dir(data) / "inproc", controllers=Controllers)
    c.controllers.reconcile()
    yield c
    c.store.close()


def test_recreate_waits_for_old_pods_to_be_gone(cluster: Cluster) -> None:
    # A kubelet hook that never finishes deletions: deleted pods stay Terminating, as on a node
    # whose kubelet has not stopped them yet (the real kubelet runs in the last test).
    cluster.kubelet_notify = lambda: None
    body = json.loads(deployment_yaml("rc", 2, "busybox:1.35", type="Recreate"))
    cluster.create(R["deployments.apps"], "default", body)
    cluster.controllers.reconcile()
    (old,) = [r["metadata"]["name"] for r in cluster.store.list(R["replicasets.apps"].gr, "default")]
    d = cluster.store.get(R["deployments.apps"].gr, "default", "rc")
    assert d is not None
    n = copy.deepcopy(d)
    n["spec"]["template"]["spec"]["containers"][0]["image"] = "debian:bookworm"
    cluster.update(R["deployments.apps"], "default", "rc", n)
    cluster.controllers.reconcile()
    rss = {r["metadata"]["name"]: r for r in cluster.store.list(R["replicasets.apps"].gr, "default")}
    assert list(rss) == [old] and rss[old]["spec"]["replicas"] == 0  # no new RS while old pods exist
    pods = cluster.store.list(R["pods"].gr, "default")
    assert len(pods) == 2 and all(p["metadata"].get("deletionTimestamp") for p in pods)
    for p in pods:  # the kubelet finishes the deletions
        cluster.store.remove(R["pods"].gr, "default", p["metadata"]["name"])
    cluster.controllers.reconcile()
    rss = {r["metadata"]["name"]: r for r in cluster.store.list(R["replicasets.apps"].gr, "default")}
    (new,) = set(rss) - {old}
    assert rss[new]["spec"]["replicas"] == 2
    assert len(cluster.store.list(R["pods"].gr, "default")) == 2


@pytest.mark.root
@pytest.mark.timeout(240)
def test_real_kubelet_rolls_pod_by_pod_stalls_on_a_missing_image_and_undo_finishes(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    from runtime.kube.node.kubelet import ClusterHost, Kubelet
    from tests.runtime.conftest_daemon import real_sandboxes_available
    from tests.runtime.dockerapi.engine_helpers import docker_sandbox, engine_on

    why = real_sandboxes_available()
    if why:
        pytest.skip(why)
    data = tmp_path_factory.mktemp("kube-rollout")
    create_cluster(data, "roll", "https://127.0.0.1:1", controllers=Controllers)
    c = Cluster("roll", clusters_dir(data) / "roll", controllers=Controllers)
    c.controllers.reconcile()
    D, RSR = R["deployments.apps"], R["replicasets.apps"]
    body = json.loads(
        deployment_yaml(
            "web", 3, "busybox:1.35", type="RollingUpdate", rollingUpdate={"maxSurge": 1, "maxUnavailable": 0}
        )
    )
    pspec = body["spec"]["template"]["spec"]
    pspec["terminationGracePeriodSeconds"] = 1
    pspec["containers"][0].update(
        command=["sleep", "3600"], readinessProbe={"exec": {"command": ["true"]}, "periodSeconds": 1}
    )

    def sizes() -> dict[str, int]:
        return {r["metadata"]["name"]: int(r["spec"]["replicas"]) for r in c.store.list(RSR.gr, "default")}

    def ready_pods(rs: str) -> int:
        return sum(
            1
            for p in c.store.list(R["pods"].gr, "default")
            if p["metadata"]["name"].startswith(rs + "-")
            and not p["metadata"].get("deletionTimestamp")
            and any(x["type"] == "Ready" and x["status"] == "True" for x in p["status"].get("conditions") or [])
        )

    def set_template(tmpl: dict[str, Any]) -> None:
        d = c.store.get(D.gr, "default", "web")
        assert d is not None
        n = copy.deepcopy(d)
        n["spec"]["template"] = tmpl
        c.update(D, "default", "web", n)
        c.controllers.reconcile()

    with docker_sandbox(254) as sb, engine_on(sb) as engine:
        kubelet = Kubelet(ClusterHost(c, None), engine, "roll-control-plane")
        c.kubelet_notify = kubelet.notify
        try:

            def until(what: str, fn: Any, timeout: float = 60) -> None:
                deadline = time.monotonic() + timeout
                while not fn():
                    phases = [(p["metadata"]["name"], p["status"].get("phase")) for p in c.store.list(R["pods"].gr)]
                    assert time.monotonic() < deadline, f"timed out waiting for {what}: {seen} {sizes()} {phases}"
                    kubelet.sync()
                    time.sleep(0.2)

            c.create(D, "default", body)
            c.controllers.reconcile()
            (first,) = sizes()
            seen: list[tuple[int, int]] = []
            until("3 ready pods", lambda: ready_pods(first) == 3)
            tmpl = copy.deepcopy(body["spec"]["template"])
            # another catalog reference, same command (the test image store builds only busybox)
            tmpl["spec"]["containers"][0]["image"] = "busybox:latest"
            set_template(tmpl)
            (second,) = set(sizes()) - {first}

            def record() -> bool:
                s = sizes()
                if not seen or seen[-1] != (s[second], s[first]):
                    seen.append((s[second], s[first]))
                assert ready_pods(first) + ready_pods(second) >= 3  # maxUnavailable 0
                return s[first] == 0 and ready_pods(second) == 3

            until("the rollout to busybox:latest", record, timeout=90)
            assert seen == [(1, 3), (2, 2), (3, 1), (3, 0)]

            broken = copy.deepcopy(tmpl)
            broken["spec"]["containers"][0]["image"] = "nosuch:1"
            set_template(broken)
            (third,) = set(sizes()) - {first, second}

            def stuck() -> bool:
                pods = [p for p in c.store.list(R["pods"].gr, "default") if p["metadata"]["name"].startswith(third)]
                waits = [
                    ((cs.get("state") or {}).get("waiting") or {}).get("reason")
                    for p in pods
                    for cs in p["status"].get("containerStatuses") or []
                ]
                return bool(waits) and waits[0] in ("ErrImagePull", "ImagePullBackOff")

            until("the broken pod to fail its pull", stuck)
            assert sizes()[third] == 1 and sizes()[second] == 3 and ready_pods(second) == 3
            d = c.store.get(D.gr, "default", "web")
            assert d is not None and cond(d, "Available")["status"] == "True"
            set_template(tmpl)  # what `kubectl rollout undo` writes: the previous ReplicaSet's template
            until("the undo to finish", lambda: sizes()[third] == 0 and ready_pods(second) == 3)
            until(
                "the deployment to report success",
                lambda: (
                    cond(c.store.get(D.gr, "default", "web") or {}, "Progressing")["reason"] == "NewReplicaSetAvailable"
                ),
            )
        finally:
            kubelet.close()
            for v in engine.volumes():
                with contextlib.suppress(Exception):
                    engine.volume_remove(v["Name"], force=True)
            c.store.close()


def _set_ready(cluster: Cluster, ns: str, name: str, ago: float = 0) -> None:
    p = cluster.store.get(R["pods"].gr, ns, name)
    assert p is not None
    n = copy.deepcopy(p)
    n["status"].update(
        phase="Running", conditions=[{"type": "Ready", "status": "True", "lastTransitionTime": _ts(ago)}]
    )
    cluster.store.put(R["pods"].gr, n, "MODIFIED")
    cluster.controllers.reconcile()


def test_terminating_pods_are_counted_and_block_the_daemonset_pod(cluster: Cluster) -> None:
    cluster.kubelet_notify = lambda: None  # deletions stay Terminating (see the Recreate test)
    pods = R["pods"].gr
    body = json.loads(deployment_yaml("t", 2, "busybox:1.35"))
    cluster.create(R["deployments.apps"], "default", body)
    cluster.controllers.reconcile()
    cluster.update(R["deployments.apps"], "default", "t", {**body, "spec": {**body["spec"], "replicas": 1}})
    cluster.controllers.reconcile()
    (rs,) = cluster.store.list(R["replicasets.apps"].gr, "default")
    assert rs["status"]["replicas"] == 1 and rs["status"]["terminatingReplicas"] == 1
    d = cluster.store.get(R["deployments.apps"].gr, "default", "t")
    assert d is not None and d["status"]["terminatingReplicas"] == 1

    ds = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent"},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {
                "metadata": {"labels": {"app": "agent"}},
                "spec": {"containers": [{"name": "c", "image": "busybox:1.35"}]},
            },
        },
    }
    cluster.create(R["daemonsets.apps"], "default", ds)
    cluster.controllers.reconcile()
    (old,) = [p for p in cluster.store.list(pods, "default") if p["metadata"]["name"].startswith("agent-")]
    _set_ready(cluster, "default", old["metadata"]["name"])
    live = cluster.store.get(R["daemonsets.apps"].gr, "default", "agent")
    assert live is not None
    n = copy.deepcopy(live)
    n["spec"]["template"]["spec"]["containers"][0]["image"] = "debian:bookworm"
    cluster.update(R["daemonsets.apps"], "default", "agent", n)
    cluster.controllers.reconcile()
    agents = [p for p in cluster.store.list(pods, "default") if p["metadata"]["name"].startswith("agent-")]
    # maxUnavailable 1: the node's old pod is deleted; the new one waits until it is gone
    assert [p["metadata"]["name"] for p in agents] == [old["metadata"]["name"]]
    assert agents[0]["metadata"].get("deletionTimestamp")
    cluster.store.remove(pods, "default", old["metadata"]["name"])
    cluster.controllers.reconcile()
    (new,) = [p for p in cluster.store.list(pods, "default") if p["metadata"]["name"].startswith("agent-")]
    assert new["spec"]["containers"][0]["image"] == "debian:bookworm"


def test_clock_driven_work_is_due_at_its_deadline_and_not_before(cluster: Cluster) -> None:
    assert cluster.controllers.next_due() is None and not cluster.controllers.has_timers()
    body = json.loads(deployment_yaml("clock", 1, "busybox:1.35"))
    body["spec"]["minReadySeconds"] = 30
    cluster.create(R["deployments.apps"], "default", body)
    cluster.controllers.reconcile()
    # the rollout may hit its progress deadline (600 s): due then, not on the next tick
    due = cluster.controllers.next_due()
    assert due is not None and 590 < due - time.time() <= 600
    assert not cluster.controllers.has_timers()
    (pod,) = cluster.store.list(R["pods"].gr, "default")
    _set_ready(cluster, "default", pod["metadata"]["name"])
    due = cluster.controllers.next_due()  # ready, available only after minReadySeconds
    assert due is not None and 20 < due - time.time() <= 30
    assert not cluster.controllers.has_timers()
    (rs,) = cluster.store.list(R["replicasets.apps"].gr, "default")
    assert rs["status"]["readyReplicas"] == 1 and "availableReplicas" not in rs["status"]
    # the same pod ready since 31 s: its minReadySeconds have passed, so the tick is due
    p = cluster.store.get(R["pods"].gr, "default", pod["metadata"]["name"])
    assert p is not None
    n = copy.deepcopy(p)
    n["status"]["conditions"][0]["lastTransitionTime"] = _ts(31)
    cluster.store.put(R["pods"].gr, n, "MODIFIED")
    assert cluster.controllers.has_timers()
    cluster.controllers.reconcile()  # what the tick does when the answer is yes
    d = cluster.store.get(R["deployments.apps"].gr, "default", "clock")
    assert d is not None and cond(d, "Progressing")["reason"] == "NewReplicaSetAvailable"
    assert cluster.controllers.next_due() is None and not cluster.controllers.has_timers()


def test_statefulset_scale_down_waits_for_each_pod_to_terminate(cluster: Cluster) -> None:
    cluster.kubelet_notify = lambda: None  # deletions stay Terminating (see the Recreate test)
    STS, pods = R["statefulsets.apps"], R["pods"].gr
    cluster.create(STS, "default", json.loads(_sts("db", 3, "busybox:1.35")))
    cluster.controllers.reconcile()
    for i in range(3):
        _set_ready(cluster, "default", f"db-{i}")
    assert sorted(p["metadata"]["name"] for p in cluster.store.list(pods, "default")) == ["db-0", "db-1", "db-2"]
    live = cluster.store.get(STS.gr, "default", "db")
    assert live is not None
    cluster.update(STS, "default", "db", {**live, "spec": {**live["spec"], "replicas": 1}})
    cluster.controllers.reconcile()

    def terminating() -> list[str]:
        return sorted(
            p["metadata"]["name"] for p in cluster.store.list(pods, "default") if p["metadata"].get("deletionTimestamp")
        )

    assert terminating() == ["db-2"]  # highest ordinal first, db-1 waits for it to be gone
    cluster.store.remove(pods, "default", "db-2")
    cluster.controllers.reconcile()
    assert terminating() == ["db-1"]
    cluster.store.remove(pods, "default", "db-1")
    cluster.controllers.reconcile()
    assert [p["metadata"]["name"] for p in cluster.store.list(pods, "default")] == ["db-0"]
