"""Deployments, ReplicaSets and Pods: the controllers as kubectl sees them."""

from __future__ import annotations

import json

from tests.runtime.kube.conftest import Kubectl


def _rows(out: str) -> list[list[str]]:
    return [line.split() for line in out.strip().splitlines() if line.strip()]


def test_create_deployment_makes_one_rs_with_pending_pods(alpha: Kubectl, ns: str) -> None:
    assert alpha("create", "deployment", "web", "--image=nginx", "--replicas=3", "-n", ns) == (
        "deployment.apps/web created\n"
    )
    rs = _rows(alpha("get", "rs", "-n", ns))
    assert rs[0] == ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]
    assert len(rs) == 2 and rs[1][0].startswith("web-") and rs[1][1:4] == ["3", "3", "0"]
    pods = _rows(alpha("get", "pods", "-n", ns))
    assert pods[0] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert len(pods) == 4
    for p in pods[1:]:
        assert p[0].startswith(rs[1][0] + "-") and p[1:4] == ["0/1", "Pending", "0"]
    dep = _rows(alpha("get", "deploy", "web", "-n", ns, "-o", "wide"))
    assert dep[0] == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]
    assert dep[1][:4] == ["web", "0/3", "3", "0"] and dep[1][5:] == ["nginx", "nginx", "app=web"]
    # the pods carry the template hash and a controller reference to the RS
    pod = json.loads(alpha("get", "pod", pods[1][0], "-n", ns, "-o", "json"))
    hash_ = rs[1][0].removeprefix("web-")
    assert pod["metadata"]["labels"] == {"app": "web", "pod-template-hash": hash_}
    ref = pod["metadata"]["ownerReferences"][0]
    assert ref["kind"] == "ReplicaSet" and ref["name"] == rs[1][0] and ref["controller"] is True
    assert pod["spec"]["containers"][0]["imagePullPolicy"] == "Always"
    assert pod["status"]["phase"] == "Pending"


def test_scale_changes_pod_count(alpha: Kubectl, ns: str) -> None:
    alpha("create", "deployment", "s", "--image=nginx", "--replicas=1", "-n", ns)
    assert alpha("scale", "deployment", "s", "--replicas=4", "-n", ns) == "deployment.apps/s scaled\n"
    assert len(alpha("get", "pods", "-n", ns, "-o", "name").split()) == 4
    alpha("scale", "deployment", "s", "--replicas=2", "-n", ns)
    assert len(alpha("get", "pods", "-n", ns, "-o", "name").split()) == 2
    assert alpha("get", "deploy", "s", "-n", ns, "-o", "jsonpath={.spec.replicas}") == "2"


def test_set_image_rollout_history_and_undo(alpha: Kubectl, ns: str) -> None:
    alpha("create", "deployment", "app", "--image=nginx:1.25", "--replicas=2", "-n", ns)
    assert alpha("set", "image", "deployment/app", "nginx=nginx:1.26", "-n", ns) == (
        "deployment.apps/app image updated\n"
    )
    hist = alpha("rollout", "history", "deployment/app", "-n", ns)
    assert hist.splitlines()[1:4] == ["REVISION  CHANGE-CAUSE", "1         <none>", "2         <none>"]
    # no kubelet, so no pod is ever ready: the rollout surges one new pod (maxSurge 25% of 2,
    # rounded up) and keeps both old ones (maxUnavailable 25% of 2 rounded down is 0)
    rs = _rows(alpha("get", "rs", "-n", ns, "--no-headers"))
    assert sorted(r[1] for r in rs) == ["1", "2"]
    assert alpha("rollout", "undo", "deployment/app", "-n", ns) == "deployment.apps/app rolled back\n"
    hist = alpha("rollout", "history", "deployment/app", "-n", ns)
    assert hist.splitlines()[1:4] == ["REVISION  CHANGE-CAUSE", "2         <none>", "3         <none>"]
    image = alpha("get", "deploy", "app", "-n", ns, "-o", "jsonpath={.spec.template.spec.containers[0].image}")
    assert image == "nginx:1.25"
    pods = json.loads(alpha("get", "pods", "-n", ns, "-o", "json"))["items"]
    images = sorted(p["spec"]["containers"][0]["image"] for p in pods)
    # the 1.25 ReplicaSet is the new one again with its 2 pods; the surged 1.26 pod stays until
    # enough pods are available to scale it down (none ever is without a kubelet)
    assert images == ["nginx:1.25", "nginx:1.25", "nginx:1.26"]
    detail = alpha("rollout", "history", "deployment/app", "-n", ns, "--revision=3")
    assert "Image:\tnginx:1.25" in detail


def test_change_cause_annotation_shows_in_history(alpha: Kubectl, ns: str) -> None:
    alpha("create", "deployment", "cc", "--image=nginx", "-n", ns)
    alpha("annotate", "deployment", "cc", "-n", ns, "kubernetes.io/change-cause=first")
    hist = alpha("rollout", "history", "deployment/cc", "-n", ns)
    assert "1         first" in hist


def test_revision_history_limit_prunes_old_replicasets(alpha: Kubectl, ns: str) -> None:
    # old ReplicaSets are pruned only once a rollout completes; with no kubelet only a deployment
    # of 0 replicas ever completes (its ReplicaSets hold no pods), so that is what this test uses
    alpha("create", "deployment", "h", "--image=nginx:1", "--replicas=0", "-n", ns)
    alpha("patch", "deploy", "h", "-n", ns, "-p", '{"spec":{"revisionHistoryLimit":1}}')
    for tag in ("2", "3", "4"):
        alpha("set", "image", "deploy/h", f"nginx=nginx:{tag}", "-n", ns)
    assert len(alpha("get", "rs", "-n", ns, "-o", "name").split()) == 2


def test_delete_deployment_cascades_and_orphan_keeps_pods(alpha: Kubectl, ns: str) -> None:
    alpha("create", "deployment", "gone", "--image=nginx", "--replicas=2", "-n", ns)
    alpha("delete", "deployment", "gone", "-n", ns)
    assert alpha("get", "rs,pods", "-n", ns, "-o", "name") == ""
    alpha("create", "deployment", "kept", "--image=nginx", "--replicas=2", "-n", ns)
    alpha("delete", "deployment", "kept", "-n", ns, "--cascade=orphan")
    assert len(alpha("get", "rs", "-n", ns, "-o", "name").split()) == 1
    assert len(alpha("get", "pods", "-n", ns, "-o", "name").split()) == 2


def test_deleting_a_pod_of_a_replicaset_is_replaced(alpha: Kubectl, ns: str) -> None:
    alpha("create", "deployment", "r", "--image=nginx", "--replicas=2", "-n", ns)
    before = set(alpha("get", "pods", "-n", ns, "-o", "name").split())
    victim = sorted(before)[0]
    alpha("delete", victim, "-n", ns)
    after = set(alpha("get", "pods", "-n", ns, "-o", "name").split())
    assert len(after) == 2 and victim not in after


def test_run_pod_and_describe(alpha: Kubectl, ns: str) -> None:
    assert alpha("run", "solo", "--image=busybox", "-n", ns) == "pod/solo created\n"
    pod = json.loads(alpha("get", "pod", "solo", "-n", ns, "-o", "json"))
    assert pod["spec"]["restartPolicy"] == "Always"
    assert pod["spec"]["serviceAccountName"] == "default"
    assert pod["status"]["qosClass"] == "BestEffort"
    out = alpha("describe", "pod", "solo", "-n", ns)
    assert "Status:           Pending" in out and "busybox" in out
    wide = _rows(alpha("get", "pod", "solo", "-n", ns, "-o", "wide"))
    assert wide[0] == [
        "NAME",
        "READY",
        "STATUS",
        "RESTARTS",
        "AGE",
        "IP",
        "NODE",
        "NOMINATED",
        "NODE",
        "READINESS",
        "GATES",
    ]


def test_pod_spec_is_immutable_except_image(alpha: Kubectl, ns: str) -> None:
    alpha("run", "imm", "--image=busybox", "-n", ns)
    alpha("set", "image", "pod/imm", "imm=busybox:1.36", "-n", ns)
    err = alpha.fails(
        "patch", "pod", "imm", "-n", ns, "-p", '{"spec":{"containers":[{"name":"imm","workingDir":"/tmp"}]}}'
    )
    assert 'The Pod "imm" is invalid: spec: Forbidden: pod updates may not change fields' in err


def test_events_are_recorded_and_selectable(alpha: Kubectl, ns: str) -> None:
    alpha("create", "deployment", "ev", "--image=nginx", "-n", ns)
    out = alpha("get", "events", "-n", ns, "--field-selector", "involvedObject.kind=Deployment")
    assert "ScalingReplicaSet" in out and "Scaled up replica set ev-" in out


def test_create_job_runs_one_pending_pod(alpha: Kubectl, ns: str) -> None:
    assert alpha("create", "job", "once", "--image=busybox", "-n", ns, "--", "echo", "hi") == (
        "job.batch/once created\n"
    )
    rows = _rows(alpha("get", "job", "once", "-n", ns))
    assert rows[0] == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
    assert rows[1][:3] == ["once", "Running", "0/1"]
    job = json.loads(alpha("get", "job", "once", "-n", ns, "-o", "json"))
    uid = job["metadata"]["uid"]
    assert job["spec"]["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    assert job["spec"]["backoffLimit"] == 6 and job["spec"]["completions"] == 1
    assert job["status"]["active"] == 1
    pods = _rows(alpha("get", "pods", "-n", ns, "-l", "job-name=once"))
    assert len(pods) == 2 and pods[1][0].startswith("once-") and pods[1][2] == "Pending"
    err = alpha.fails(
        "create",
        "-n",
        ns,
        "-f",
        "-",
        stdin=json.dumps(
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {"name": "norestart"},
                "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}},
            }
        ),
    )
    assert 'spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never"' in err


def test_cronjob_columns_and_job_from_cronjob(alpha: Kubectl, ns: str) -> None:
    out = alpha("create", "cronjob", "tick", "--image=busybox", "--schedule=*/5 * * * *", "-n", ns, "--", "date")
    assert out == "cronjob.batch/tick created\n"
    rows = _rows(alpha("get", "cronjobs", "-n", ns))
    assert rows[0] == ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST", "SCHEDULE", "AGE"]
    assert rows[1][:9] == ["tick", "*/5", "*", "*", "*", "*", "<none>", "False", "0"]
    assert alpha("create", "job", "manual", "--from=cronjob/tick", "-n", ns) == "job.batch/manual created\n"
    job = json.loads(alpha("get", "job", "manual", "-n", ns, "-o", "json"))
    assert job["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
    err = alpha.fails("create", "cronjob", "bad", "--image=busybox", "--schedule=nope", "-n", ns)
    assert 'spec.schedule: Invalid value: "nope"' in err


def _sts(name: str, replicas: int, policy: str) -> dict[str, object]:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": {
            "serviceName": name,
            "replicas": replicas,
            "podManagementPolicy": policy,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]},
            },
        },
    }


def test_statefulset_pods_are_ordered_and_named(alpha: Kubectl, ns: str) -> None:
    alpha("apply", "-n", ns, "-f", "-", stdin=json.dumps(_sts("db", 3, "OrderedReady")))
    # OrderedReady waits for db-0 to be Ready before creating db-1; with no kubelet it stays Pending
    assert alpha("get", "pods", "-n", ns, "-l", "app=db", "-o", "name") == "pod/db-0\n"
    pod = json.loads(alpha("get", "pod", "db-0", "-n", ns, "-o", "json"))
    assert pod["spec"]["hostname"] == "db-0" and pod["spec"]["subdomain"] == "db"
    assert pod["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] == "db-0"
    rows = _rows(alpha("get", "sts", "db", "-n", ns))
    assert rows[0] == ["NAME", "READY", "AGE"] and rows[1][:2] == ["db", "0/3"]
    alpha("apply", "-n", ns, "-f", "-", stdin=json.dumps(_sts("par", 3, "Parallel")))
    assert alpha("get", "pods", "-n", ns, "-l", "app=par", "-o", "name").split() == [
        "pod/par-0",
        "pod/par-1",
        "pod/par-2",
    ]
    assert alpha("scale", "sts", "par", "--replicas=1", "-n", ns) == "statefulset.apps/par scaled\n"
    assert alpha("get", "pods", "-n", ns, "-l", "app=par", "-o", "name") == "pod/par-0\n"


def test_daemonset_runs_one_pod_on_the_node(alpha: Kubectl, ns: str) -> None:
    ds = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent"},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {
                "metadata": {"labels": {"app": "agent"}},
                "spec": {"containers": [{"name": "a", "image": "busybox"}]},
            },
        },
    }
    assert alpha("apply", "-n", ns, "-f", "-", stdin=json.dumps(ds)) == "daemonset.apps/agent created\n"
    rows = _rows(alpha("get", "ds", "-n", ns))
    assert rows[0] == ["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE", "SELECTOR", "AGE"]
    assert rows[1][:7] == ["agent", "1", "1", "0", "1", "0", "<none>"]
    pods = alpha("get", "pods", "-n", ns, "-l", "app=agent", "-o", "name").split()
    assert len(pods) == 1 and pods[0].startswith("pod/agent-")


def test_debug_adds_an_ephemeral_container(alpha: Kubectl, ns: str) -> None:
    alpha("run", "dbg", "--image=busybox", "-n", ns, "--", "sleep", "1000")
    r = alpha.run("debug", "dbg", "-n", ns, "--image=busybox", "--", "true")
    assert "Defaulting debug container name to debugger-" in r.stderr + r.stdout
    pod = json.loads(alpha("get", "pod", "dbg", "-n", ns, "-o", "json"))
    eph = pod["spec"]["ephemeralContainers"]
    assert len(eph) == 1 and eph[0]["image"] == "busybox" and eph[0]["name"].startswith("debugger-")
    # the rest of the pod spec is still immutable
    err = alpha.fails("patch", "pod", "dbg", "-n", ns, "-p", '{"spec":{"hostname":"x"}}')
    assert "pod updates may not change fields" in err


def test_set_env_resources_and_service_account_make_new_revisions(alpha: Kubectl, ns: str) -> None:
    alpha("create", "configmap", "cfg", "-n", ns, "--from-literal=color=blue")
    alpha("create", "deployment", "e", "--image=nginx", "-n", ns)
    assert alpha("set", "env", "deploy/e", "FOO=bar", "-n", ns) == "deployment.apps/e env updated\n"
    alpha("set", "env", "deploy/e", "--from=configmap/cfg", "-n", ns)
    assert alpha("set", "resources", "deploy/e", "--limits=cpu=200m,memory=512Mi", "-n", ns) == (
        "deployment.apps/e resource requirements updated\n"
    )
    alpha("create", "sa", "app", "-n", ns)
    assert alpha("set", "sa", "deploy/e", "app", "-n", ns) == "deployment.apps/e serviceaccount updated\n"
    c = json.loads(alpha("get", "deploy", "e", "-n", ns, "-o", "json"))["spec"]["template"]["spec"]
    assert c["serviceAccountName"] == "app"
    assert c["containers"][0]["env"] == [
        {"name": "FOO", "value": "bar"},
        {"name": "COLOR", "valueFrom": {"configMapKeyRef": {"key": "color", "name": "cfg"}}},
    ]
    assert c["containers"][0]["resources"] == {"limits": {"cpu": "200m", "memory": "512Mi"}}
    hist = alpha("rollout", "history", "deploy/e", "-n", ns).splitlines()
    assert [h.split()[0] for h in hist[2:] if h.strip()] == ["1", "2", "3", "4", "5"]
    pods = json.loads(alpha("get", "pods", "-n", ns, "-o", "json"))["items"]
    # no pod is ever ready without a kubelet: each rollout surged one new pod and scaled the oldest
    # unhealthy ReplicaSet down, so revisions 4 and 5 keep one pod each
    assert sorted(p["spec"].get("serviceAccountName") for p in pods) == ["app", "default"]


def test_autoscale_enforces_min_replicas_without_metrics(alpha: Kubectl, ns: str) -> None:
    alpha("create", "deployment", "web", "--image=nginx", "-n", ns)
    out = alpha("autoscale", "deploy", "web", "--min=2", "--max=5", "--cpu=80%", "-n", ns)
    assert out == "horizontalpodautoscaler.autoscaling/web autoscaled\n"
    rows = _rows(alpha("get", "hpa", "-n", ns))
    assert rows[0] == ["NAME", "REFERENCE", "TARGETS", "MINPODS", "MAXPODS", "REPLICAS", "AGE"]
    assert rows[1][:7] == ["web", "Deployment/web", "cpu:", "<unknown>/80%", "2", "5", "2"]
    assert alpha("get", "deploy", "web", "-n", ns, "-o", "jsonpath={.spec.replicas}") == "2"
    assert len(alpha("get", "pods", "-n", ns, "-o", "name").split()) == 2
    assert "New size: 2; reason: Current number of replicas below Spec.MinReplicas" in alpha(
        "describe", "hpa", "web", "-n", ns
    )


def test_pdb_and_priority_class(alpha: Kubectl, ns: str) -> None:
    alpha("create", "deployment", "web", "--image=nginx", "--replicas=2", "-n", ns)
    assert alpha("create", "pdb", "web", "--selector=app=web", "--min-available=1", "-n", ns) == (
        "poddisruptionbudget.policy/web created\n"
    )
    rows = _rows(alpha("get", "pdb", "-n", ns))
    assert rows[0] == ["NAME", "MIN", "AVAILABLE", "MAX", "UNAVAILABLE", "ALLOWED", "DISRUPTIONS", "AGE"]
    assert rows[1][:4] == ["web", "1", "N/A", "0"]  # no pod is ready, so no disruption is allowed
    pdb = json.loads(alpha("get", "pdb", "web", "-n", ns, "-o", "json"))
    assert pdb["status"]["expectedPods"] == 2 and pdb["status"]["desiredHealthy"] == 1
    name = f"pc-{ns}"
    assert alpha("create", "priorityclass", name, "--value=1000") == f"priorityclass.scheduling.k8s.io/{name} created\n"
    names = alpha("get", "priorityclass", "-o", "name").split()
    assert f"priorityclass.scheduling.k8s.io/{name}" in names
    assert "priorityclass.scheduling.k8s.io/system-node-critical" in names
    alpha("delete", "priorityclass", name)
