"""The Deployment, ReplicaSet, Endpoints and EndpointSlice controllers write through the API
client (apiserver/client.py, #16): their writes carry resourceVersions, generation and
managedFields of kube-controller-manager, deletions take the API's delete path, and a write
that meets a 409 Conflict (the object changed since it was read) is re-read and re-applied, as
client-go's retry.RetryOnConflict does, instead of aborting the reconcile pass."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from runtime.kube import registry
from runtime.kube.apiserver import admission
from runtime.kube.apiserver.client import CONTROLLER_MANAGER, RETRY_STEPS, SCHEDULER, Client, node_user
from runtime.kube.apiserver.cluster import Cluster, RequestState
from runtime.kube.apiserver.provision import clusters_dir, create_cluster
from runtime.kube.controllers.manager import Controllers
from runtime.kube.machinery.apierrors import ApiError
from runtime.kube.meta import Obj, User
from runtime.kube.node.ingress import COMPONENT, IngressController, Rendered
from runtime.kube.node.kubelet import ClusterHost

R = registry.BY_GR
DEPLOY, RS, CM, SVC, EP, ES, PODS = (
    R["deployments.apps"],
    R["replicasets.apps"],
    R["configmaps"],
    R["services"],
    R["endpoints"],
    R["endpointslices.discovery.k8s.io"],
    R["pods"],
)
BUSYBOX = {"name": "c", "image": "busybox"}


@pytest.fixture
def cluster(tmp_path: Path) -> Cluster:
    create_cluster(tmp_path, "lab", "https://127.0.0.1:1", controllers=Controllers)
    c = Cluster("lab", clusters_dir(tmp_path) / "lab", controllers=Controllers)
    c.controllers.reconcile()
    return c


def student_update(cluster: Cluster, rdef: Any, obj: Obj) -> Obj:
    """A write by another client (field manager "student"), as between a controller's read and write."""
    with cluster.acting(RequestState(manager="student")):
        out, _ = cluster.update(rdef, obj["metadata"].get("namespace", ""), obj["metadata"]["name"], obj)
    return out


def deployment(name: str, replicas: int) -> Obj:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [BUSYBOX]}},
        },
    }


def slices(cluster: Cluster) -> list[Obj]:
    return [
        s
        for s in cluster.store.list(ES.gr, "default")
        if (s["metadata"].get("labels") or {}).get("kubernetes.io/service-name") == "web"
    ]


def managers(obj: Obj) -> set[tuple[str, str | None]]:
    return {(m["manager"], m.get("subresource")) for m in obj["metadata"].get("managedFields") or []}


def test_modify_rereads_and_reapplies_after_a_conflict(cluster: Cluster) -> None:
    cm = cluster.create(CM, "default", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}})
    client = Client(cluster, "kube-controller-manager", CONTROLLER_MANAGER)
    seen: list[str] = []

    def change(n: Obj) -> bool:
        seen.append(n["metadata"]["resourceVersion"])
        if len(seen) == 1:  # another client writes after our read: our update is now stale
            other = copy.deepcopy(n)
            other["metadata"]["labels"] = {"theirs": "1"}
            student_update(cluster, CM, other)
        n["metadata"].setdefault("labels", {})["ours"] = "1"
        return True

    out = client.modify(CM, "default", "x", change)
    assert out is not None
    assert len(seen) == 2 and seen[0] == cm["metadata"]["resourceVersion"] and seen[1] != seen[0]
    assert out["metadata"]["labels"] == {"theirs": "1", "ours": "1"}  # theirs kept, ours applied again
    assert ("kube-controller-manager", None) in managers(out) and ("student", None) in managers(out)


def test_modify_gives_up_with_the_conflict_after_the_retry_steps(cluster: Cluster) -> None:
    cluster.create(CM, "default", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}})
    client = Client(cluster, "kube-controller-manager", CONTROLLER_MANAGER)
    calls = 0

    def change(n: Obj) -> bool:  # somebody always writes between our read and our write
        nonlocal calls
        calls += 1
        other = copy.deepcopy(n)
        other["data"] = {"n": str(calls)}
        student_update(cluster, CM, other)
        return True

    with pytest.raises(ApiError) as e:
        client.modify(CM, "default", "x", change)
    assert e.value.status == 409 and calls == RETRY_STEPS


def test_modify_and_delete_of_a_missing_object_are_none(cluster: Cluster) -> None:
    client = Client(cluster, "kube-controller-manager", CONTROLLER_MANAGER)
    assert client.modify(CM, "default", "gone", lambda n: True) is None
    assert client.delete(CM, "default", "gone") is None


def test_delete_with_a_stale_uid_is_refused_and_keeps_the_object(cluster: Cluster) -> None:
    cm = cluster.create(CM, "default", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}})
    client = Client(cluster, "kube-controller-manager", CONTROLLER_MANAGER)
    with pytest.raises(ApiError) as e:
        client.delete(CM, "default", "x", uid="not-" + cm["metadata"]["uid"])
    assert e.value.status == 409 and cluster.store.get(CM.gr, "default", "x") is not None
    assert client.delete(CM, "default", "x", uid=cm["metadata"]["uid"]) is not None
    assert cluster.store.get(CM.gr, "default", "x") is None


def test_deployment_scale_survives_a_conflicting_replicaset_write(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster.create(DEPLOY, "default", deployment("web", 1))
    cluster.controllers.reconcile()
    (rs,) = cluster.store.list(RS.gr, "default")
    rs_name = rs["metadata"]["name"]
    assert rs["spec"]["replicas"] == 1
    # the first time the controller writes the ReplicaSet, a student labels it first
    real_update = cluster.update
    raced: list[str] = []

    def update(rdef: Any, ns: str, name: str, obj: Any, **kw: Any) -> tuple[Obj, bool]:
        if rdef is RS and name == rs_name and not raced and cluster.request_state.manager == "kube-controller-manager":
            raced.append(obj["metadata"]["resourceVersion"])
            cur = copy.deepcopy(cluster.store.get(RS.gr, ns, name))
            assert cur is not None
            cur["metadata"].setdefault("labels", {})["student"] = "was-here"
            student_update(cluster, RS, cur)
        return real_update(rdef, ns, name, obj, **kw)

    monkeypatch.setattr(cluster, "update", update)
    d = cluster.store.get(DEPLOY.gr, "default", "web")
    assert d is not None
    d = copy.deepcopy(d)
    d["spec"]["replicas"] = 3
    real_update(DEPLOY, "default", "web", d)
    cluster.controllers.reconcile()  # must not raise the 409
    assert raced, "the controller never wrote the ReplicaSet"
    after = cluster.store.get(RS.gr, "default", rs_name)
    assert after is not None
    rs = after
    assert rs["spec"]["replicas"] == 3 and rs["metadata"]["labels"]["student"] == "was-here"
    assert rs["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] == "3"
    assert rs["metadata"]["generation"] == 2  # one spec change, one generation
    assert len(cluster.store.list(PODS.gr, "default")) == 3


def test_deployment_and_replicaset_status_are_written_through_the_status_subresource(cluster: Cluster) -> None:
    cluster.create(DEPLOY, "default", deployment("web", 2))
    cluster.controllers.reconcile()
    d = cluster.store.get(DEPLOY.gr, "default", "web")
    (rs,) = cluster.store.list(RS.gr, "default")
    assert d is not None
    assert d["status"]["replicas"] == 2 and d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    assert ("kube-controller-manager", "status") in managers(d)
    assert rs["status"]["replicas"] == 2 and ("kube-controller-manager", "status") in managers(rs)
    # the ReplicaSet was created by the controller, its pods adopted by nobody else
    for p in cluster.store.list(PODS.gr, "default"):
        assert p["metadata"]["ownerReferences"][0]["uid"] == rs["metadata"]["uid"]


def test_replicaset_adopts_an_orphan_through_an_update(cluster: Cluster) -> None:
    labels = {"app": "solo"}
    cluster.create(
        PODS,
        "default",
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "orphan", "labels": labels},
            "spec": {"containers": [BUSYBOX]},
        },
    )
    rs = cluster.create(
        RS,
        "default",
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {"name": "solo"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": {"containers": [BUSYBOX]}},
            },
        },
    )
    cluster.controllers.reconcile()
    pods = cluster.store.list(PODS.gr, "default")
    assert [p["metadata"]["name"] for p in pods] == ["orphan"]  # adopted, so none created
    assert pods[0]["metadata"]["ownerReferences"][0]["uid"] == rs["metadata"]["uid"]
    assert ("kube-controller-manager", None) in managers(pods[0])


def test_endpoints_and_slices_follow_their_service_through_the_api(cluster: Cluster) -> None:
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]},
    }
    cluster.create(SVC, "default", svc)
    cluster.create(DEPLOY, "default", deployment("web", 1))
    cluster.controllers.reconcile()
    ep = cluster.store.get(EP.gr, "default", "web")
    (sl,) = slices(cluster)
    assert ep is not None
    gen = sl["metadata"]["generation"]
    # the pod gets an IP and turns ready: both are rewritten by an update
    (pod,) = cluster.store.list(PODS.gr, "default")
    pod = copy.deepcopy(pod)
    pod["status"].update(
        {
            "phase": "Running",
            "podIP": "10.0.0.9",
            "podIPs": [{"ip": "10.0.0.9"}],
            "conditions": [{"type": "Ready", "status": "True"}],
        }
    )
    with cluster.acting(RequestState(manager="kubelet")):
        cluster.update(PODS, "default", pod["metadata"]["name"], pod, sub="status")
    cluster.controllers.reconcile()
    ep = cluster.store.get(EP.gr, "default", "web")
    (sl,) = slices(cluster)
    assert ep is not None and ep["subsets"][0]["addresses"][0]["ip"] == "10.0.0.9"
    assert ("kube-controller-manager", None) in managers(ep)
    assert [e["addresses"] for e in sl["endpoints"]] == [["10.0.0.9"]]
    assert sl["metadata"]["generation"] == gen + 1
    # the Service goes: its Endpoints through the delete path, its slice by the controller or the GC
    cluster.delete(SVC, "default", "web")
    cluster.controllers.reconcile()
    assert cluster.store.get(EP.gr, "default", "web") is None
    assert slices(cluster) == []


NS = R["namespaces"]


def configmap(name: str, ns: str = "default", **meta: Any) -> Obj:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns, **meta}}


def test_a_terminating_namespace_waits_for_content_with_finalizers(cluster: Cluster) -> None:
    cluster.create(NS, "", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "doomed"}})
    cluster.controllers.reconcile()
    cluster.create(CM, "doomed", configmap("held", "doomed", finalizers=["example.com/hold"]))
    cluster.create(CM, "doomed", configmap("plain", "doomed"))
    cluster.delete(NS, "", "doomed")
    cluster.controllers.reconcile()
    # content goes through the delete path: the finalizer holds its object, and the namespace
    assert cluster.store.get(CM.gr, "doomed", "plain") is None
    held = cluster.store.get(CM.gr, "doomed", "held")
    assert held is not None and held["metadata"].get("deletionTimestamp")
    ns = cluster.store.get(NS.gr, "", "doomed")
    assert ns is not None and ns["status"]["phase"] == "Terminating"
    held = copy.deepcopy(held)
    held["metadata"]["finalizers"] = []
    student_update(cluster, CM, held)  # whoever owns the finalizer lets go: the object goes
    cluster.controllers.reconcile()
    assert cluster.store.get(CM.gr, "doomed", "held") is None
    assert cluster.store.get(NS.gr, "", "doomed") is None


def test_orphan_and_foreground_deletion_write_through_the_api(cluster: Cluster) -> None:
    owner = cluster.create(CM, "default", configmap("owner"))
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}
    before = cluster.create(CM, "default", configmap("kept", ownerReferences=[ref]))
    cluster.delete(CM, "default", "owner", "Orphan")
    kept = cluster.store.get(CM.gr, "default", "kept")
    assert kept is not None and "ownerReferences" not in kept["metadata"]
    assert int(kept["metadata"]["resourceVersion"]) > int(before["metadata"]["resourceVersion"])

    owner = cluster.create(CM, "default", configmap("owner2"))
    ref = {**ref, "name": "owner2", "uid": owner["metadata"]["uid"], "blockOwnerDeletion": True}
    cluster.create(CM, "default", configmap("dep", ownerReferences=[ref], finalizers=["example.com/hold"]))
    cluster.delete(CM, "default", "owner2", "Foreground")
    cluster.controllers.reconcile()
    # the dependent is deleted through the API, its finalizer holds it, so the owner waits
    dep = cluster.store.get(CM.gr, "default", "dep")
    assert dep is not None and dep["metadata"].get("deletionTimestamp")
    held = cluster.store.get(CM.gr, "default", "owner2")
    assert held is not None and held["metadata"]["finalizers"] == ["foregroundDeletion"]
    dep = copy.deepcopy(dep)
    dep["metadata"]["finalizers"] = []
    student_update(cluster, CM, dep)
    cluster.controllers.reconcile()
    assert cluster.store.get(CM.gr, "default", "dep") is None
    assert cluster.store.get(CM.gr, "default", "owner2") is None


NODES = R["nodes"]
LEASES = R["leases.coordination.k8s.io"]


def test_node_lifecycle_taints_by_update_and_marks_conditions_through_status(cluster: Cluster) -> None:
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "w1"},
        "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]},
    }
    created = cluster.create(NODES, "", node)
    with cluster.acting(RequestState(manager="kubelet")):  # what the node's kubelet posted
        cluster.update(NODES, "", "w1", {**created, "status": node["status"]}, sub="status")
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "w1", "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": "w1", "renewTime": "2020-01-01T00:00:00.000000Z"},
    }
    cluster.create(LEASES, "kube-node-lease", lease)  # renewed long ago: unreachable
    cluster.controllers.reconcile()
    n = cluster.store.get(NODES.gr, "", "w1")
    assert n is not None
    assert {(t["key"], t["effect"]) for t in n["spec"]["taints"]} == {
        ("node.kubernetes.io/unreachable", "NoSchedule"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
    }
    (ready,) = n["status"]["conditions"]
    assert (ready["status"], ready["reason"]) == ("Unknown", "NodeStatusUnknown")
    assert {("kube-controller-manager", None), ("kube-controller-manager", "status")} <= managers(n)
    # cordon: the unschedulable taint is added by the controller's update too
    n = copy.deepcopy(n)
    n["spec"]["unschedulable"] = True
    student_update(cluster, NODES, n)
    cluster.controllers.reconcile()
    n = cluster.store.get(NODES.gr, "", "w1")
    assert n is not None and ("node.kubernetes.io/unschedulable", "NoSchedule") in {
        (t["key"], t["effect"]) for t in n["spec"]["taints"]
    }


CROLES = R["clusterroles.rbac.authorization.k8s.io"]


def test_clusterrole_aggregation_writes_the_rules_by_an_update(cluster: Cluster) -> None:
    rule = {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}
    cluster.create(
        CROLES,
        "",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "agg"},
            "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"lab/agg": "true"}}]},
        },
    )
    cluster.create(
        CROLES,
        "",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "part", "labels": {"lab/agg": "true"}},
            "rules": [rule],
        },
    )
    cluster.controllers.reconcile()
    agg = cluster.store.get(CROLES.gr, "", "agg")
    assert agg is not None and agg["rules"] == [rule]
    assert ("kube-controller-manager", None) in managers(agg)


PV, PVC = R["persistentvolumes"], R["persistentvolumeclaims"]


def test_binding_and_release_write_through_the_api(cluster: Cluster) -> None:
    pv = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": "disk"},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "manual",
            "persistentVolumeReclaimPolicy": "Delete",
            "hostPath": {"path": "/tmp/x"},
        },
    }
    cluster.create(PV, "", pv)
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "c"},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "manual",
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }
    cluster.create(PVC, "default", claim)
    cluster.controllers.reconcile()
    got_pv, got_pvc = cluster.store.get(PV.gr, "", "disk"), cluster.store.get(PVC.gr, "default", "c")
    assert got_pv is not None and got_pvc is not None
    assert got_pv["status"]["phase"] == "Bound" and got_pv["spec"]["claimRef"]["name"] == "c"
    assert got_pvc["status"]["phase"] == "Bound" and got_pvc["spec"]["volumeName"] == "disk"
    for o in (got_pv, got_pvc):
        assert {("kube-controller-manager", None), ("kube-controller-manager", "status")} <= managers(o)
    # a bound claim's volumeName is immutable (it may be set once, on an unbound claim)
    moved = copy.deepcopy(got_pvc)
    moved["spec"]["volumeName"] = "elsewhere"
    with pytest.raises(ApiError) as e:
        student_update(cluster, PVC, moved)
    assert e.value.status == 422
    # the claim goes: the volume (reclaim policy Delete) is released, then deleted, protection and all
    cluster.delete(PVC, "default", "c")
    cluster.controllers.reconcile()
    assert cluster.store.get(PVC.gr, "default", "c") is None
    assert cluster.store.get(PV.gr, "", "disk") is None


def test_an_unbound_claim_may_name_its_volume_once(cluster: Cluster) -> None:
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "c"},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "none-such",
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }
    created = cluster.create(PVC, "default", claim)
    named = copy.deepcopy(created)
    named["spec"]["volumeName"] = "disk"
    assert student_update(cluster, PVC, named)["spec"]["volumeName"] == "disk"


def test_the_ingress_controller_reports_the_address_through_the_status_subresource(cluster: Cluster) -> None:
    ing = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "web"},
        "spec": {"defaultBackend": {"service": {"name": "web", "port": {"number": 80}}}},
    }
    ING = R["ingresses.networking.k8s.io"]
    cluster.create(ING, "default", ing)
    ctl = IngressController(SimpleNamespace(cluster=cluster, loop=None), None)  # type: ignore[arg-type]
    ctl._report(Rendered("", {}, [("default", "web")], {}, {}), "10.1.2.3")
    got = cluster.store.get(ING.gr, "default", "web")
    assert got is not None and got["status"] == {"loadBalancer": {"ingress": [{"ip": "10.1.2.3"}]}}
    assert (COMPONENT, "status") in managers(got)


def test_the_kubelet_finishes_a_graceful_deletion_through_the_delete_path(cluster: Cluster) -> None:
    cluster.kubelet_notify = lambda: None  # a kubelet runs this cluster's pods
    host = ClusterHost(cluster, None)
    for name, fins in (("plain", []), ("held", ["example.com/hold"])):
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "finalizers": fins},
            "spec": {"nodeName": "node-1", "containers": [BUSYBOX]},
        }
        created = cluster.create(PODS, "default", pod)
        cluster.delete(PODS, "default", name)
        terminating = cluster.store.get(PODS.gr, "default", name)
        assert terminating is not None and terminating["metadata"]["deletionGracePeriodSeconds"] == 30
        host.finish_delete("default", name, "not-" + created["metadata"]["uid"])  # another pod: untouched
        assert cluster.store.get(PODS.gr, "default", name) is not None
        host.finish_delete("default", name, created["metadata"]["uid"])  # its containers are gone
    assert cluster.store.get(PODS.gr, "default", "plain") is None
    held = cluster.store.get(PODS.gr, "default", "held")  # a finalizer holds it, as on a real cluster
    assert held is not None and held["metadata"]["finalizers"] == ["example.com/hold"]
    # its kubelet is done with it: no grace period is left, so dropping the finalizer removes it
    assert held["metadata"]["deletionGracePeriodSeconds"] == 0
    held = copy.deepcopy(held)
    held["metadata"]["finalizers"] = []
    student_update(cluster, PODS, held)
    assert cluster.store.get(PODS.gr, "default", "held") is None


def test_an_update_of_a_pod_its_kubelet_is_still_stopping_does_not_remove_it(cluster: Cluster) -> None:
    cluster.kubelet_notify = lambda: None
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "slow"},
        "spec": {"nodeName": "node-1", "containers": [BUSYBOX]},
    }
    cluster.create(PODS, "default", pod)
    cluster.delete(PODS, "default", "slow")
    marked = cluster.store.get(PODS.gr, "default", "slow")
    assert marked is not None and marked["metadata"]["deletionGracePeriodSeconds"] == 30
    labelled = copy.deepcopy(marked)
    labelled["metadata"]["labels"] = {"seen": "yes"}
    student_update(cluster, PODS, labelled)  # ShouldDeleteDuringUpdate: grace left, so it stays
    got = cluster.store.get(PODS.gr, "default", "slow")
    assert got is not None and got["metadata"]["labels"] == {"seen": "yes"}


CRDS = R["customresourcedefinitions.apiextensions.k8s.io"]


def test_a_terminating_namespace_drops_objects_of_a_kind_no_longer_served(cluster: Cluster) -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                }
            ],
        },
    }
    cluster.create(CRDS, "", crd)
    cluster.create(NS, "", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "lab"}})
    cluster.controllers.reconcile()
    (gadgets,) = [d for d in cluster.custom_defs() if d.gr == "gadgets.example.com"]
    cluster.create(gadgets, "lab", {"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g"}})
    client = Client(cluster, "kube-controller-manager", CONTROLLER_MANAGER)
    assert not client.remove_unserved("gadgets.example.com", "lab", "g")  # served: only the delete path
    # the CRD's cleanup finalizer dropped by hand, then the CRD deleted: it goes at once, its
    # object stays, unserved
    stored = cluster.store.get(CRDS.gr, "", "gadgets.example.com")
    assert stored is not None
    unheld = copy.deepcopy(stored)
    unheld["metadata"]["finalizers"] = []
    student_update(cluster, CRDS, unheld)
    cluster.delete(CRDS, "", "gadgets.example.com")
    assert cluster.store.get(CRDS.gr, "", "gadgets.example.com") is None
    assert cluster.store.get("gadgets.example.com", "lab", "g") is not None
    cluster.delete(NS, "", "lab")
    cluster.controllers.reconcile()
    assert cluster.store.get("gadgets.example.com", "lab", "g") is None
    assert cluster.store.get(NS.gr, "", "lab") is None


def test_a_namespace_finalized_before_its_deletion_goes_on_the_controllers_delete(cluster: Cluster) -> None:
    created = cluster.create(NS, "", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bare"}})
    cluster.create(CM, "bare", configmap("x", "bare"))
    with cluster.acting(RequestState(manager="student")):
        fin = copy.deepcopy(created)
        fin["spec"]["finalizers"] = []
        cluster.update(NS, "", "bare", fin, sub="finalize")
    cluster.delete(NS, "", "bare")  # marked all the same, for the controller to empty it
    assert cluster.store.get(NS.gr, "", "bare") is not None
    cluster.controllers.reconcile()
    assert cluster.store.get(CM.gr, "bare", "x") is None
    assert cluster.store.get(NS.gr, "", "bare") is None


def test_the_components_writes_carry_their_user_but_not_the_students_quota(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_cluster(tmp_path, "tight", "https://127.0.0.1:1", controllers=Controllers)
    c = Cluster("tight", clusters_dir(tmp_path) / "tight", controllers=Controllers)
    c.controllers.reconcile()
    c.limits = dataclasses.replace(c.limits, max_objects=c.store.nobjects + 1)
    c.store.limits = c.limits
    student = User("kubernetes-admin", ("system:masters", "system:authenticated"))
    with c.acting(RequestState(manager="kubectl", requester=student)):
        c.create(CM, "default", configmap("one"))
        with pytest.raises(ApiError) as e:  # the student's limit
            c.create(CM, "default", configmap("two"))
    assert e.value.status == 403 and "exceeded quota" in e.value.message
    seen: list[User | None] = []
    real = admission.admit

    def spy(cluster: Cluster, rdef: Any, obj: Obj) -> None:
        seen.append(cluster.request_state.user)
        real(cluster, rdef, obj)

    monkeypatch.setattr(admission, "admit", spy)
    for user in (CONTROLLER_MANAGER, SCHEDULER, node_user("node-1")):
        Client(c, "component", user).create(CM, configmap(f"by-{user.name.replace(':', '-')}"))
    # admission sees who writes; the writes are the platform's (its reserve above the limit)
    assert seen == [CONTROLLER_MANAGER, SCHEDULER, node_user("node-1")]
    assert node_user("node-1") == User("system:node:node-1", ("system:nodes", "system:authenticated"))
