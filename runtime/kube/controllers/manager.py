"""The controllers of kube-controller-manager, run to quiescence after every write.

A real control plane runs these loops in kube-controller-manager and reacts
within milliseconds; here ``reconcile()`` runs synchronously after each
mutating request, so a client never observes a half-reconciled cluster
(e.g. ``kubectl create deployment`` then ``kubectl get pods`` always shows the
pods). Each loop is level-triggered (it looks at the whole state, not at the
event), bounded in passes, and writes only when something differs.

Rollouts follow kube-controller-manager: the Deployment controller is a port of
pkg/controller/deployment (rolling.go, recreate.go, sync.go, progress.go): the new
ReplicaSet grows by at most maxSurge over replicas, old ones shrink (oldest first,
unhealthy replicas first) keeping replicas - maxUnavailable available pods, Recreate
waits for every old pod to be gone, paused deployments only scale proportionally, and
the Available/Progressing conditions, events and revision bookkeeping are kube's, so
``kubectl rollout status|history|undo|pause|resume`` behave as on a real cluster.
Availability comes from pods' Ready condition as the kubelet (kubelet.py) or anyone
writing the status subresource sets it; with no kubelet no pod is ever ready and a
rollout waits, as it would on a cluster without nodes. Controllers delete pods through
``Cluster.delete`` so that, with a kubelet, they terminate gracefully. StatefulSets roll
from the highest ordinal one Running-and-Ready pod at a time; DaemonSets honour
maxUnavailable. Clock-driven steps (progressDeadlineSeconds, minReadySeconds) run on
the server's periodic tick (``has_timers``).
"""

from __future__ import annotations

import copy
import datetime
import json
import secrets
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from runtime.kube import registry, scheduler
from runtime.kube.apiserver import aggregator, rbac
from runtime.kube.apiserver.admission import quota_status
from runtime.kube.controllers import nodelifecycle, nodetaints, podgc
from runtime.kube.machinery.apierrors import ApiError
from runtime.kube.machinery.cron import CronError, Schedule
from runtime.kube.machinery.quantity import Quantity, QuantityError
from runtime.kube.machinery.selectors import selector_from_match
from runtime.kube.meta import Obj, now_ts, parse_time
from runtime.kube.registry import ResourceDef, crd, kinds

if TYPE_CHECKING:
    from runtime.kube.apiserver.cluster import Cluster


REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
CHANGE_CAUSE = "kubernetes.io/change-cause"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
HASH_LABEL = "pod-template-hash"
SLICE_SERVICE_NAME = "kubernetes.io/service-name"
SLICE_MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
SLICE_CONTROLLER = "endpointslice-controller.k8s.io"
EP_MANAGED_BY = "endpoints.kubernetes.io/managed-by"
EP_CONTROLLER = "endpoint-controller"

_ALNUM = "bcdfghjklmnpqrstvwxz2456789"
NODE_PORT_MIN, NODE_PORT_END = 30000, 32768  # kube-apiserver's default --service-node-port-range


def _allocation_full(what: str) -> ApiError:
    """kube-apiserver's answer when an allocator's range has no free value left."""
    msg = f"failed to allocate a {what}: range is full"
    return ApiError(500, "InternalError", f"Internal error occurred: {msg}", {"causes": [{"message": msg}]})


R = registry.BY_GR
PODS = R["pods"]
RS = R["replicasets.apps"]
RC = R["replicationcontrollers"]
DEPLOY = R["deployments.apps"]
NS = R["namespaces"]
SA = R["serviceaccounts"]
CM = R["configmaps"]
SVC = R["services"]
EVENTS = R["events"]
CR = R["controllerrevisions.apps"]
POD_REVISION = "controller-revision-hash"


def _fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def template_hash(template: Obj, collisions: int = 0) -> str:
    """pod-template-hash the way the deployment controller encodes it (SafeEncodeString)."""
    t = copy.deepcopy(template)
    (t.get("metadata") or {}).get("labels", {}).pop(HASH_LABEL, None)
    raw = json.dumps(t, sort_keys=True, separators=(",", ":")).encode()
    if collisions:
        raw += str(collisions).encode()
    digits = str(_fnv32a(raw))
    return "".join(_ALNUM[ord(c) % len(_ALNUM)] for c in digits)


def _go_sorted(v: Any) -> Any:
    """A JSON value with map keys in the order Go's encoding/json writes them (sorted)."""
    if isinstance(v, dict):
        return {k: _go_sorted(v[k]) for k in sorted(v)}
    if isinstance(v, list):
        return [_go_sorted(x) for x in v]
    return v


def history_patch(template: Obj) -> Obj:
    """ControllerRevision.data of a StatefulSet/DaemonSet: a strategic patch replacing the template.

    kube 1.37 omits a zero ``creationTimestamp``; dropping our ``null`` keeps the bytes equal to
    kubectl's own encoding of the template.
    """
    t = copy.deepcopy(template)
    if (t.get("metadata") or {}).get("creationTimestamp", "") is None:
        del t["metadata"]["creationTimestamp"]
    t["$patch"] = "replace"
    out: Obj = _go_sorted({"spec": {"template": t}})
    return out


def _data_hash(data: Obj, collisions: int) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    if collisions:
        raw += str(collisions).encode()
    return "".join(_ALNUM[ord(c) % len(_ALNUM)] for c in str(_fnv32a(raw)))


def _ordinal(pod_name: str) -> int:
    tail = pod_name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else -1


def _strip_hash(template: Obj) -> Obj:
    t = copy.deepcopy(template)
    labels = (t.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(HASH_LABEL, None)
    (t.get("metadata") or {}).pop("creationTimestamp", None)
    return t


def _owner_ref(obj: Obj, block: bool = True) -> Obj:
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": block,
    }


def _controlled_by(obj: Obj, owner: Obj) -> bool:
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("controller") and ref.get("uid") == owner["metadata"]["uid"]:
            return True
    return False


class Controllers:
    def __init__(self, cluster: Cluster) -> None:
        self.c = cluster
        self.create_error = ""  # why the last _create_pod failed ("" when it succeeded)
        # has_timers' memo: the store's resourceVersion it was computed at, and what falls due
        self._due_rv = -1
        self._due_at: float | None = None
        self.sched_queue = scheduler.Queue()  # pods that did not fit, and their backoff

    # -- hooks inside a write ------------------------------------------------------

    def on_create(self, rdef: ResourceDef, obj: Obj) -> None:
        if rdef.kind == "Pod":
            spec = obj.get("spec") or {}
            self._inject_sa_volume(obj)
            obj["status"] = {"phase": "Pending", "qosClass": kinds.qos_class(spec)}
        elif rdef.kind == "Service":
            self._allocate_service(obj)
        elif rdef.kind == "PersistentVolumeClaim":
            obj["status"] = {"phase": "Pending"}
            spec = obj.setdefault("spec", {})
            if "storageClassName" not in spec:
                default = self._default_sc()
                if default is not None:
                    spec["storageClassName"] = default["metadata"]["name"]
            fins = obj["metadata"].setdefault("finalizers", [])
            if "kubernetes.io/pvc-protection" not in fins:
                fins.append("kubernetes.io/pvc-protection")
        elif rdef.kind == "CustomResourceDefinition" and rdef.group == "apiextensions.k8s.io":
            fins = obj["metadata"].setdefault("finalizers", [])
            if "customresourcecleanup.apiextensions.k8s.io" not in fins:
                fins.append("customresourcecleanup.apiextensions.k8s.io")
        elif rdef.kind == "PersistentVolume":
            obj["status"] = {"phase": "Available"}
            fins = obj["metadata"].setdefault("finalizers", [])
            if "kubernetes.io/pv-protection" not in fins:
                fins.append("kubernetes.io/pv-protection")
        elif rdef.kind in ("Deployment", "ReplicaSet", "ReplicationController", "CronJob", "StatefulSet", "DaemonSet"):
            obj["status"] = {}
        elif rdef.kind == "Job":
            obj["status"] = {}
            spec = obj.setdefault("spec", {})
            if not spec.get("manualSelector"):
                uid, name = obj["metadata"]["uid"], obj["metadata"].get("name", "")
                gen = {
                    "batch.kubernetes.io/controller-uid": uid,
                    "batch.kubernetes.io/job-name": name,
                    "controller-uid": uid,
                    "job-name": name,
                }
                tmeta = spec.setdefault("template", {}).setdefault("metadata", {})
                tmeta["labels"] = {**(tmeta.get("labels") or {}), **gen}
                spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
                if not obj["metadata"].get("labels"):
                    obj["metadata"]["labels"] = dict(tmeta["labels"])

    def on_update(self, rdef: ResourceDef, new: Obj, old: Obj) -> None:
        if rdef.kind == "Service":
            spec = new.setdefault("spec", {})
            ospec = old.get("spec") or {}
            for k in ("clusterIP", "clusterIPs"):
                if k not in spec and k in ospec:
                    spec[k] = ospec[k]
            self._allocate_service(new)

    def _inject_sa_volume(self, pod: Obj) -> None:
        spec = pod["spec"]
        if spec.get("automountServiceAccountToken") is False:
            return
        name = "kube-api-access-" + "".join(secrets.choice(_ALNUM) for _ in range(5))
        spec.setdefault("volumes", []).append(
            {
                "name": name,
                "projected": {
                    "defaultMode": 420,
                    "sources": [
                        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                        {
                            "downwardAPI": {
                                "items": [
                                    {
                                        "path": "namespace",
                                        "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                                    }
                                ]
                            }
                        },
                    ],
                },
            }
        )
        for c in spec.get("containers") or []:
            c.setdefault("volumeMounts", []).append(
                {"name": name, "readOnly": True, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}
            )

    def _allocate_service(self, svc: Obj) -> None:
        spec = svc["spec"]
        typ = spec.get("type", "ClusterIP")
        if typ == "ExternalName":
            return
        if not spec.get("clusterIP"):
            used = {(o.get("spec") or {}).get("clusterIP") for o in self.c.store.list(SVC.gr)}
            used |= {"10.96.0.1", "10.96.0.10"}
            # a random pick while the range is not full, never an endless search (#12)
            if sum(1 for u in used if isinstance(u, str) and u.startswith("10.96.")) >= 256 * 254:
                raise _allocation_full("serviceIP")
            while True:
                ip = f"10.96.{secrets.randbelow(256)}.{secrets.randbelow(254) + 1}"
                if ip not in used:
                    break
            spec["clusterIP"] = ip
        if spec["clusterIP"] != "None":
            spec["clusterIPs"] = [spec["clusterIP"]]
        else:
            spec["clusterIPs"] = ["None"]
        if typ in ("NodePort", "LoadBalancer"):
            used_np = {
                p.get("nodePort") for o in self.c.store.list(SVC.gr) for p in (o.get("spec") or {}).get("ports") or []
            }
            # one Service with more ports than the range holds must not spin the cluster's
            # thread forever (#12): kube-apiserver's "range is full" instead
            taken = sum(1 for u in used_np if isinstance(u, int) and NODE_PORT_MIN <= u < NODE_PORT_END)
            for p in spec.get("ports") or []:
                if not p.get("nodePort"):
                    if taken >= NODE_PORT_END - NODE_PORT_MIN:
                        raise _allocation_full("nodePort")
                    taken += 1
                    while True:
                        np = NODE_PORT_MIN + secrets.randbelow(NODE_PORT_END - NODE_PORT_MIN)
                        if np not in used_np:
                            break
                    p["nodePort"] = np
                    used_np.add(np)

    # -- deletion helpers ------------------------------------------------------------------

    def orphan(self, owner: Obj) -> None:
        uid = owner["metadata"]["uid"]
        for gr, obj in list(self.c.store.iter_all()):
            refs = obj["metadata"].get("ownerReferences") or []
            if any(r.get("uid") == uid for r in refs):
                new = copy.deepcopy(obj)
                new["metadata"]["ownerReferences"] = [r for r in refs if r.get("uid") != uid]
                if not new["metadata"]["ownerReferences"]:
                    del new["metadata"]["ownerReferences"]
                self.c.store.put(gr, new, "MODIFIED")

    # -- the loops ---------------------------------------------------------------------------

    def reconcile(self) -> None:
        self.c._manager = "kube-controller-manager"
        self.c._applying = False
        self.c._apply_config = None
        self.c._requester = None
        self.sched_queue.budget = scheduler.MAX_PER_PASS  # pods the scheduler tries this reconcile
        for _ in range(10):
            before = self.c.store.rv
            self._crds()
            aggregator.reconcile(self)
            self._namespaces()
            rbac.aggregate(self.c)
            self._garbage_collect()
            self._deployments()
            self._replicasets()
            self._replication_controllers()
            self._cronjobs()
            self._jobs()
            self._statefulsets()
            nodetaints.reconcile(self)
            nodelifecycle.reconcile(self)
            podgc.reconcile(self)  # orphaned pods of deleted Nodes, unscheduled terminating ones
            self._daemonsets()
            scheduler.schedule(self)
            self._endpoints()
            self._endpointslices()
            self._volumes()
            self._hpas()
            self._pdbs()
            self._quotas()
            if self.c.store.rv == before:
                break
        if self.c.kubelet_notify is not None:  # the node's kubelet (kubelet.py) syncs its pods
            self.c.kubelet_notify()
        if self.c.network_notify is not None:  # the NetworkPolicy agent (netpol.py) re-renders
            self.c.network_notify()

    def _put(self, rdef: ResourceDef, obj: Obj) -> None:
        self.c.store.put(rdef.gr, obj, "MODIFIED")

    def _create(self, rdef: ResourceDef, obj: Obj) -> Obj:
        return self.c.create(rdef, obj["metadata"].get("namespace", ""), obj, internal=True)

    def _create_pod(self, owner: Obj, pod: Obj, component: str, prefix: str = "Error creating: ") -> Obj | None:
        """Create a pod for a controller; admission may refuse it (quota, LimitRange).

        A refusal becomes the controller's ``FailedCreate`` warning event, recorded once per
        distinct reason so the reconcile loop settles instead of logging every pass; its
        message stays in ``create_error`` (the ReplicaSet's ReplicaFailure condition).
        """
        self.create_error = ""
        try:
            return self._create(PODS, pod)
        except ApiError as e:
            self.create_error = e.message
            reason = e.message.split(" is forbidden: ", 1)[-1]
            for ev in self.c.store.list(EVENTS.gr, owner["metadata"]["namespace"]):
                if (
                    ev.get("reason") == "FailedCreate"
                    and (ev.get("involvedObject") or {}).get("uid") == owner["metadata"]["uid"]
                    and str(ev.get("message", "")).endswith(reason)
                ):
                    return None
            self.event(owner, "Warning", "FailedCreate", prefix + e.message, component)
            return None

    def event(self, obj: Obj, typ: str, reason: str, message: str, component: str) -> None:
        meta = obj["metadata"]
        ns = meta.get("namespace") or "default"
        ts = now_ts()
        ev: Obj = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{meta['name']}.{secrets.token_hex(8)}",
                "namespace": ns,
            },
            "involvedObject": {
                "apiVersion": obj["apiVersion"],
                "kind": obj["kind"],
                "name": meta["name"],
                "namespace": meta.get("namespace", ""),
                "uid": meta["uid"],
                "resourceVersion": meta.get("resourceVersion", ""),
            },
            "reason": reason,
            "message": message,
            "source": {"component": component},
            "firstTimestamp": ts,
            "lastTimestamp": ts,
            "count": 1,
            "type": typ,
            "eventTime": None,
            "reportingComponent": component,
            "reportingInstance": "",
        }
        if not meta.get("namespace"):
            del ev["involvedObject"]["namespace"]
        if self.c.store.get(NS.gr, "", ns) is None:
            return
        try:
            self.c.create(EVENTS, ns, ev, internal=True)
        except ApiError:  # e.g. a count/events quota: the event is dropped, as a recorder drops it
            return

    def _namespaces(self) -> None:
        store = self.c.store
        for nso in store.list(NS.gr):
            name = nso["metadata"]["name"]
            if nso["metadata"].get("deletionTimestamp"):
                for gr, obj in list(store.iter_all()):
                    if obj["metadata"].get("namespace") == name:
                        store.remove(gr, name, obj["metadata"]["name"])
                store.remove(NS.gr, "", name)
                continue
            if store.get(SA.gr, name, "default") is None:
                self._create(
                    SA,
                    {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": name}},
                )
            if store.get(CM.gr, name, "kube-root-ca.crt") is None:
                ca = (self.c.dir / "ca.crt").read_text()
                self._create(
                    CM,
                    {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "metadata": {
                            "name": "kube-root-ca.crt",
                            "namespace": name,
                            "annotations": {
                                "kubernetes.io/description": (
                                    "Contains a CA bundle that can be used to verify the "
                                    "kube-apiserver when using internal endpoints such as the "
                                    "internal service IP or kubernetes.default.svc. No other "
                                    "usage is guaranteed across distributions of Kubernetes "
                                    "clusters."
                                )
                            },
                        },
                        "data": {"ca.crt": ca},
                    },
                )

    def _crds(self) -> None:
        store = self.c.store
        for c in store.list(crd.GR):
            meta, spec = c["metadata"], c.get("spec") or {}
            if meta.get("deletionTimestamp"):
                plural, group = (spec.get("names") or {}).get("plural", ""), spec.get("group", "")
                gr = f"{plural}.{group}"
                for o in store.list(gr):
                    store.remove(gr, o["metadata"].get("namespace", ""), o["metadata"]["name"])
                store.remove(crd.GR, "", meta["name"])
                continue
            st = crd.crd_status(c, now_ts())
            if st != c.get("status"):
                n = copy.deepcopy(c)
                n["status"] = st
                store.put(crd.GR, n, "MODIFIED")

    def _garbage_collect(self) -> None:
        store = self.c.store
        uids = {obj["metadata"]["uid"] for _, obj in store.iter_all()}
        for gr, obj in list(store.iter_all()):
            meta = obj["metadata"]
            refs = meta.get("ownerReferences") or []
            if refs and not any(r.get("uid") in uids for r in refs):
                store.remove(gr, meta.get("namespace", ""), meta["name"])
                continue
            fins = meta.get("finalizers") or []
            if meta.get("deletionTimestamp") and "foregroundDeletion" in fins:
                uid = meta["uid"]
                deps = [
                    o
                    for _, o in store.iter_all()
                    if any(r.get("uid") == uid for r in o["metadata"].get("ownerReferences") or [])
                ]
                for dgr, d in [(g, o) for g, o in store.iter_all() if o in deps]:
                    store.remove(dgr, d["metadata"].get("namespace", ""), d["metadata"]["name"])
                rest = [f for f in fins if f != "foregroundDeletion"]
                if not rest:
                    store.remove(gr, meta.get("namespace", ""), meta["name"])
                else:
                    new = copy.deepcopy(obj)
                    new["metadata"]["finalizers"] = rest
                    store.put(gr, new, "MODIFIED")

    # deployment controller (pkg/controller/deployment: sync.go, rolling.go, recreate.go, progress.go) ----

    def _deployments(self) -> None:
        for d in self.c.store.list(DEPLOY.gr):
            if d["metadata"].get("deletionTimestamp"):
                continue
            self._sync_deployment(copy.deepcopy(d))

    def _owned_rs(self, d: Obj) -> list[Obj]:
        ns = d["metadata"]["namespace"]
        return [rs for rs in self.c.store.list(RS.gr, ns) if _controlled_by(rs, d)]

    def _sync_deployment(self, d: Obj) -> None:
        """syncDeployment: paused conditions, then sync (paused or scaling) or one rollout step."""
        self._check_paused_conditions(d)
        spec = d["spec"]
        if spec.get("paused") or self._is_scaling_event(d):
            self._sync_scale(d)
        elif (spec.get("strategy") or {}).get("type") == "Recreate":
            self._rollout_recreate(d)
        else:
            self._rollout_rolling(d)

    def _write_deploy_status(self, d: Obj) -> None:
        """UpdateStatus: store ``d``'s status (and revision annotation) if they differ."""
        cur = self.c.store.get(DEPLOY.gr, d["metadata"]["namespace"], d["metadata"]["name"])
        if cur is None or cur["metadata"]["uid"] != d["metadata"]["uid"]:
            return
        rev = (d["metadata"].get("annotations") or {}).get(REVISION)
        cur_rev = (cur["metadata"].get("annotations") or {}).get(REVISION)
        if cur.get("status") == d.get("status") and cur_rev == rev:
            return
        n = copy.deepcopy(cur)
        n["status"] = copy.deepcopy(d.get("status") or {})
        if rev is not None:
            n["metadata"].setdefault("annotations", {})[REVISION] = rev
        self.c.store.put(DEPLOY.gr, n, "MODIFIED")

    def _check_paused_conditions(self, d: Obj) -> None:
        if not _has_deadline(d):
            return
        st = d.setdefault("status", {})
        cond = _get_cond(st, "Progressing")
        if cond is not None and cond.get("reason") == "ProgressDeadlineExceeded":
            return
        exists = cond is not None and cond.get("reason") == "DeploymentPaused"
        if d["spec"].get("paused") and not exists:
            _set_cond(st, _new_cond("Progressing", "Unknown", "DeploymentPaused", "Deployment is paused"))
        elif not d["spec"].get("paused") and exists:
            _set_cond(st, _new_cond("Progressing", "Unknown", "DeploymentResumed", "Deployment is resumed"))
        else:
            return
        self._write_deploy_status(d)

    def _is_scaling_event(self, d: Obj) -> bool:
        new_rs, old = self._new_rs(d, False)
        replicas = int(d["spec"].get("replicas", 1))
        for rs in _active([*old, new_rs]):
            desired = (rs["metadata"].get("annotations") or {}).get(DESIRED)
            if desired is not None and desired.isdigit() and int(desired) != replicas:
                return True
        return False

    def _new_rs(self, d: Obj, create: bool) -> tuple[Obj | None, list[Obj]]:
        """getAllReplicaSetsAndSyncRevision: the new ReplicaSet (created if asked) and the old ones."""
        ns, spec = d["metadata"]["namespace"], d["spec"]
        owned = sorted(self._owned_rs(d), key=lambda r: (r["metadata"]["creationTimestamp"], r["metadata"]["name"]))
        want = _strip_hash(spec["template"])
        new_rs = next((rs for rs in owned if _strip_hash(rs["spec"]["template"]) == want), None)
        old = [rs for rs in owned if rs is not new_rs]
        new_revision = str(max((_revision(rs) for rs in old), default=0) + 1)
        st = d.setdefault("status", {})
        if new_rs is not None:
            n = copy.deepcopy(new_rs)
            changed = _set_new_rs_annotations(d, n, new_revision, exists=True)
            mrs = int(spec.get("minReadySeconds", 0))
            if int(n["spec"].get("minReadySeconds", 0)) != mrs:
                changed = True
                if mrs:
                    n["spec"]["minReadySeconds"] = mrs
                else:
                    n["spec"].pop("minReadySeconds", None)
                n["metadata"]["generation"] = int(n["metadata"].get("generation", 1)) + 1
            if changed:
                new_rs = self.c.store.put(RS.gr, n, "MODIFIED")
            need = _set_deploy_revision(d, (new_rs["metadata"].get("annotations") or {}).get(REVISION, ""))
            if _has_deadline(d) and _get_cond(st, "Progressing") is None:
                msg = f'Found new replica set "{new_rs["metadata"]["name"]}"'
                _set_cond(st, _new_cond("Progressing", "True", "FoundNewReplicaSet", msg))
                need = True
            if need:
                self._write_deploy_status(d)
            return new_rs, old
        if not create:
            return None, old
        while True:
            collisions = int(st.get("collisionCount", 0))
            h = template_hash(spec["template"], collisions)
            name = f"{d['metadata']['name']}-{h}"
            if self.c.store.get(RS.gr, ns, name) is None:
                break
            st["collisionCount"] = collisions + 1  # hash collision with a different template
        tmpl = copy.deepcopy(spec["template"])
        tmpl.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = h
        sel = copy.deepcopy(spec["selector"])
        sel.setdefault("matchLabels", {})[HASH_LABEL] = h
        rs: Obj = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": name,
                "namespace": ns,
                "labels": copy.deepcopy(tmpl["metadata"]["labels"]),
                "annotations": {},
                "ownerReferences": [_owner_ref(d)],
            },
            "spec": {"replicas": 0, "selector": sel, "template": tmpl},
        }
        if spec.get("minReadySeconds"):
            rs["spec"]["minReadySeconds"] = spec["minReadySeconds"]
        rs["spec"]["replicas"] = _new_rs_replicas(d, [*old, rs], rs)
        _set_new_rs_annotations(d, rs, new_revision, exists=False)
        new_rs = self._create(RS, rs)
        count = int(new_rs["spec"]["replicas"])
        if count > 0:
            self.event(
                d,
                "Normal",
                "ScalingReplicaSet",
                f"Scaled up replica set {name} from 0 to {count}",
                "deployment-controller",
            )
        _set_deploy_revision(d, new_revision)
        if _has_deadline(d):
            msg = f'Created new replica set "{name}"'
            _set_cond(st, _new_cond("Progressing", "True", "NewReplicaSetCreated", msg))
        self._write_deploy_status(d)
        return new_rs, old

    def _scale_rs(self, rs: Obj, n: int, d: Obj, force_op: str = "") -> tuple[bool, Obj]:
        """scaleReplicaSet: replicas and the desired/max-replicas annotations, with kube's event."""
        old_n = _replicas(rs)
        replicas = int(d["spec"].get("replicas", 1))
        new = copy.deepcopy(rs)
        ann_changed = _set_replicas_annotations(new, replicas, replicas + _max_surge(d))
        if old_n == n and not ann_changed:
            return False, rs
        new["spec"]["replicas"] = n
        if old_n != n:
            new["metadata"]["generation"] = int(new["metadata"].get("generation", 1)) + 1
        out = self.c.store.put(RS.gr, new, "MODIFIED")
        if old_n != n:
            op = force_op or ("up" if old_n < n else "down")
            self.event(
                d,
                "Normal",
                "ScalingReplicaSet",
                f"Scaled {op} replica set {rs['metadata']['name']} from {old_n} to {n}",
                "deployment-controller",
            )
        return old_n != n, out

    def _scale_rs_and_record(self, rs: Obj, n: int, d: Obj) -> tuple[bool, Obj]:
        if _replicas(rs) == n:
            return False, rs
        return self._scale_rs(rs, n, d)

    def _rollout_rolling(self, d: Obj) -> None:
        new_rs, old = self._new_rs(d, True)
        assert new_rs is not None
        all_rs = [*old, new_rs]
        scaled, new_rs = self._reconcile_new_rs(all_rs, new_rs, d)
        if scaled:
            self._sync_rollout_status([*old, new_rs], new_rs, d)
            return
        if self._reconcile_old_rs([*old, new_rs], _active(old), new_rs, d):
            self._sync_rollout_status(self._refresh([*old, new_rs]), new_rs, d)
            return
        if _deployment_complete(d, d.get("status") or {}):
            self._cleanup_deployment(old, d)
        self._sync_rollout_status(self._refresh([*old, new_rs]), new_rs, d)

    def _refresh(self, rss: list[Obj]) -> list[Obj]:
        out = []
        for rs in rss:
            cur = self.c.store.get(RS.gr, rs["metadata"]["namespace"], rs["metadata"]["name"])
            if cur is not None:
                out.append(cur)
        return out

    def _reconcile_new_rs(self, all_rs: list[Obj], new_rs: Obj, d: Obj) -> tuple[bool, Obj]:
        replicas = int(d["spec"].get("replicas", 1))
        if _replicas(new_rs) == replicas:
            return False, new_rs
        if _replicas(new_rs) > replicas:
            return self._scale_rs_and_record(new_rs, replicas, d)
        return self._scale_rs_and_record(new_rs, _new_rs_replicas(d, all_rs, new_rs), d)

    def _reconcile_old_rs(self, all_rs: list[Obj], old: list[Obj], new_rs: Obj, d: Obj) -> bool:
        """Scale old ReplicaSets down as far as maxUnavailable allows (unhealthy replicas first)."""
        if sum(_replicas(rs) for rs in old) == 0:
            return False
        all_count = sum(_replicas(rs) for rs in all_rs)
        min_available = int(d["spec"].get("replicas", 1)) - _max_unavailable(d)
        new_unavailable = _replicas(new_rs) - _stat(new_rs, "availableReplicas")
        max_scaled_down = all_count - min_available - new_unavailable
        if max_scaled_down <= 0:
            return False
        old, cleaned = self._cleanup_unhealthy(old, d, max_scaled_down)
        scaled = self._scale_down_old_for_rolling([*old, new_rs], old, d)
        return cleaned + scaled > 0

    def _cleanup_unhealthy(self, old: list[Obj], d: Obj, max_cleanup: int) -> tuple[list[Obj], int]:
        old = sorted(old, key=_by_creation)
        total = 0
        for i, rs in enumerate(old):
            if total >= max_cleanup:
                break
            if _replicas(rs) == 0 or _replicas(rs) == _stat(rs, "availableReplicas"):
                continue
            down = min(max_cleanup - total, _replicas(rs) - _stat(rs, "availableReplicas"))
            _, old[i] = self._scale_rs_and_record(rs, _replicas(rs) - down, d)
            total += down
        return old, total

    def _scale_down_old_for_rolling(self, all_rs: list[Obj], old: list[Obj], d: Obj) -> int:
        min_available = int(d["spec"].get("replicas", 1)) - _max_unavailable(d)
        available = sum(_stat(rs, "availableReplicas") for rs in all_rs)
        if available <= min_available:
            return 0
        want = available - min_available
        total = 0
        for rs in sorted(old, key=_by_creation):
            if total >= want:
                break
            if _replicas(rs) == 0:
                continue
            down = min(_replicas(rs), want - total)
            self._scale_rs_and_record(rs, _replicas(rs) - down, d)
            total += down
        return total

    def _rollout_recreate(self, d: Obj) -> None:
        new_rs, old = self._new_rs(d, False)
        scaled = False
        for rs in _active(old):
            s, _ = self._scale_rs_and_record(rs, 0, d)
            scaled = scaled or s
        old = self._refresh(old)
        if scaled or self._old_pods_running(d, old):
            self._sync_rollout_status([*old, *([new_rs] if new_rs else [])], new_rs, d)
            return
        if new_rs is None:
            new_rs, old = self._new_rs(d, True)
            assert new_rs is not None
        _, new_rs = self._scale_rs_and_record(new_rs, int(d["spec"].get("replicas", 1)), d)
        if _deployment_complete(d, d.get("status") or {}):
            self._cleanup_deployment(old, d)
        self._sync_rollout_status(self._refresh([*old, new_rs]), new_rs, d)

    def _old_pods_running(self, d: Obj, old: list[Obj]) -> bool:
        """oldPodsRunning: an old ReplicaSet still has pods that have not finished (terminating included)."""
        if sum(_stat(rs, "replicas") for rs in old) > 0:
            return True
        for p in self.c.store.list(PODS.gr, d["metadata"]["namespace"]):
            if any(_controlled_by(p, rs) for rs in old) and (p.get("status") or {}).get("phase") not in (
                "Failed",
                "Succeeded",
            ):
                return True
        return False

    def _sync_scale(self, d: Obj) -> None:
        """sync: proportional scaling (also while paused), history cleanup when paused, status."""
        new_rs, old = self._new_rs(d, False)
        self._scale(d, new_rs, old)
        old = self._refresh(old)
        if d["spec"].get("paused"):
            self._cleanup_deployment(old, d)
            old = self._refresh(old)
        if new_rs is not None:
            fresh = self._refresh([new_rs])
            new_rs = fresh[0] if fresh else None
        all_rs = [*old, *([new_rs] if new_rs else [])]
        st = _calculate_status(all_rs, new_rs, d)
        if st != d.get("status"):
            d["status"] = st
            self._write_deploy_status(d)

    def _scale(self, d: Obj, new_rs: Obj | None, old: list[Obj]) -> None:
        replicas = int(d["spec"].get("replicas", 1))
        latest = _find_active_or_latest(new_rs, old)
        if latest is not None:
            if _replicas(latest) != replicas:
                self._scale_rs_and_record(latest, replicas, d)
            return
        if _is_saturated(d, new_rs):
            for rs in _active(old):
                self._scale_rs_and_record(rs, 0, d)
            return
        if (d["spec"].get("strategy") or {}).get("type") == "Recreate":
            return
        all_rs = _active([*old, new_rs])
        total = sum(_replicas(rs) for rs in all_rs)
        allowed = replicas + _max_surge(d) if replicas > 0 else 0
        to_add = allowed - total
        op = ""
        if to_add > 0:  # ReplicaSetsBySizeNewer
            all_rs.sort(key=lambda r: (_replicas(r), r["metadata"]["creationTimestamp"]), reverse=True)
            op = "up"
        elif to_add < 0:  # ReplicaSetsBySizeOlder
            all_rs.sort(key=lambda r: (-_replicas(r), r["metadata"]["creationTimestamp"]))
            op = "down"
        added = 0
        sizes: dict[str, int] = {}
        for rs in all_rs:
            if to_add:
                prop = _rs_proportion(rs, d, to_add, added)
                sizes[rs["metadata"]["name"]] = _replicas(rs) + prop
                added += prop
            else:
                sizes[rs["metadata"]["name"]] = _replicas(rs)
        for i, rs in enumerate(all_rs):
            name = rs["metadata"]["name"]
            if i == 0 and to_add:
                sizes[name] = max(0, sizes[name] + to_add - added)
            self._scale_rs(rs, sizes[name], d, op)

    def _cleanup_deployment(self, old: list[Obj], d: Obj) -> None:
        """revisionHistoryLimit: delete the oldest old ReplicaSets that run nothing."""
        limit = d["spec"].get("revisionHistoryLimit")
        if limit is None:
            return
        cleanable = [rs for rs in self._refresh(old) if not rs["metadata"].get("deletionTimestamp")]
        diff = len(cleanable) - int(limit)
        if diff <= 0:
            return
        cleanable.sort(key=lambda r: (_revision(r), r["metadata"]["creationTimestamp"]))
        for rs in cleanable[:diff]:
            if _stat(rs, "replicas") != 0 or _replicas(rs) != 0:
                continue
            if int(rs["metadata"].get("generation", 1)) > _stat(rs, "observedGeneration"):
                continue
            self.c.store.remove(RS.gr, rs["metadata"]["namespace"], rs["metadata"]["name"])

    def _sync_rollout_status(self, all_rs: list[Obj], new_rs: Obj | None, d: Obj) -> None:
        st = _calculate_status(all_rs, new_rs, d)
        old_st = d.get("status") or {}
        if not _has_deadline(d):
            _remove_cond(st, "Progressing")
        cur = _get_cond(old_st, "Progressing")
        complete = (
            st.get("replicas", 0) == st.get("updatedReplicas", 0)
            and cur is not None
            and cur.get("reason") == "NewReplicaSetAvailable"
        )
        dname = d["metadata"]["name"]
        what = f'ReplicaSet "{new_rs["metadata"]["name"]}"' if new_rs is not None else f'Deployment "{dname}"'
        if _has_deadline(d) and not complete:
            if _deployment_complete(d, st):
                msg = f"{what} has successfully progressed."
                _set_cond(st, _new_cond("Progressing", "True", "NewReplicaSetAvailable", msg))
            elif _deployment_progressing(old_st, st):
                cond = _new_cond("Progressing", "True", "ReplicaSetUpdated", f"{what} is progressing.")
                if cur is not None:
                    if cur.get("status") == "True":
                        cond["lastTransitionTime"] = cur.get("lastTransitionTime")
                    _remove_cond(st, "Progressing")
                _set_cond(st, cond)
            elif _deployment_timed_out(d, st):
                msg = f"{what} has timed out progressing."
                _set_cond(st, _new_cond("Progressing", "False", "ProgressDeadlineExceeded", msg))
        # the new ReplicaSet's failures over old ones' (getReplicaFailures)
        failures = _replica_failures([new_rs] if new_rs is not None else []) or _replica_failures(all_rs)
        if failures:
            f = failures[0]
            t = f.get("lastTransitionTime")
            _set_cond(
                st,
                {
                    "type": "ReplicaFailure",
                    "status": f.get("status"),
                    "lastUpdateTime": t,
                    "lastTransitionTime": t,
                    "reason": f.get("reason"),
                    "message": f.get("message"),
                },
            )
        else:
            _remove_cond(st, "ReplicaFailure")
        if st != old_st:
            d["status"] = st
            self._write_deploy_status(d)

    # statefulset and daemonset controllers -------------------------------------------------------

    def _new_pod(self, owner: Obj, name: str | None, extra_labels: dict[str, str]) -> Obj:
        tmpl = owner["spec"].get("template") or {}
        meta = copy.deepcopy(tmpl.get("metadata") or {})
        meta.pop("creationTimestamp", None)
        meta["labels"] = {**(meta.get("labels") or {}), **extra_labels}
        if name:
            meta["name"] = name
        else:
            meta["generateName"] = owner["metadata"]["name"] + "-"
        meta["namespace"] = owner["metadata"]["namespace"]
        meta["ownerReferences"] = [_owner_ref(owner)]
        return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": copy.deepcopy(tmpl.get("spec") or {})}

    @staticmethod
    def _ready(p: Obj) -> bool:
        conds = (p.get("status") or {}).get("conditions") or []
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)

    # controller history (ControllerRevisions) for StatefulSets and DaemonSets ---------------------

    def _sync_history(self, owner: Obj, hash_label: str, live_revisions: set[str]) -> tuple[Obj, str]:
        """The owner's update revision and its hash, creating or renumbering it as controller history does.

        ``data`` is the patch the controllers store (``{"spec":{"template":{...,"$patch":"replace"}}}``)
        with Go's map key order, so ``kubectl rollout undo`` (which compares its own encoding of the
        live object's template with ``data`` byte for byte) sees "already matches" as on a real
        cluster. An equal older revision is reused with the next revision number, so undo to
        revision 1 of [1, 2] gives history [2, 3]. Revisions beyond revisionHistoryLimit that no
        live pod runs are deleted, oldest first.
        """
        meta, spec = owner["metadata"], owner["spec"]
        ns, name = meta["namespace"], meta["name"]
        data = history_patch(spec["template"])
        history = sorted(
            (r for r in self.c.store.list(CR.gr, ns) if _controlled_by(r, owner)),
            key=lambda r: int(r.get("revision", 0)),
        )
        next_rev = int(history[-1].get("revision", 0)) + 1 if history else 1
        equal = [r for r in history if r.get("data") == data]
        if equal:
            update = equal[-1]
            if update is not history[-1]:
                n = copy.deepcopy(update)
                n["revision"] = next_rev
                update = self.c.store.put(CR.gr, n, "MODIFIED")
        else:
            collisions = int((owner.get("status") or {}).get("collisionCount", 0))
            h = _data_hash(data, collisions)
            labels = {**((spec["template"].get("metadata") or {}).get("labels") or {}), hash_label: h}
            cr: Obj = {
                "apiVersion": "apps/v1",
                "kind": "ControllerRevision",
                "metadata": {
                    "name": f"{name[:223]}-{h}",
                    "namespace": ns,
                    "labels": labels,
                    "ownerReferences": [_owner_ref(owner)],
                },
                "data": data,
                "revision": next_rev,
            }
            if meta.get("annotations"):
                cr["metadata"]["annotations"] = dict(meta["annotations"])
            update = self._create(CR, cr)
        h = (update["metadata"].get("labels") or {}).get(hash_label, "")
        keep = {update["metadata"]["name"], *live_revisions}
        history = sorted(
            (r for r in self.c.store.list(CR.gr, ns) if _controlled_by(r, owner)),
            key=lambda r: int(r.get("revision", 0)),
        )
        spare = [r for r in history if r["metadata"]["name"] not in keep]
        limit = int(spec.get("revisionHistoryLimit", 10))
        for r in spare[: max(0, len(spare) - limit)]:
            self.c.store.remove(CR.gr, ns, r["metadata"]["name"])
        return update, h

    # statefulset and daemonset controllers -------------------------------------------------------

    def _statefulsets(self) -> None:
        STS = R["statefulsets.apps"]
        for sts in self.c.store.list(STS.gr):
            if not sts["metadata"].get("deletionTimestamp"):
                self._sync_sts(STS, sts)

    def _sts_template(self, sts: Obj, rev_name: str) -> Obj:
        """The StatefulSet as of a ControllerRevision (its template), for pods of the current revision."""
        cr = self.c.store.get(CR.gr, sts["metadata"]["namespace"], rev_name)
        if cr is None:
            return sts
        tmpl = copy.deepcopy(((cr.get("data") or {}).get("spec") or {}).get("template") or {})
        tmpl.pop("$patch", None)
        return {**sts, "spec": {**sts["spec"], "template": tmpl}}

    def _sync_sts(self, STS: ResourceDef, sts: Obj) -> None:
        """stateful_set_control.go: ordered creation, condemned pods from the top, rolling update
        from the highest ordinal down one pod at a time, each waiting for the previous to be
        Running and Ready (OrderedReady and the update; Parallel creates and deletes at once)."""
        meta, spec = sts["metadata"], sts["spec"]
        ns, name = meta["namespace"], meta["name"]
        pods = {p["metadata"]["name"]: p for p in self.c.store.list(PODS.gr, ns) if _controlled_by(p, sts)}
        running = {str((p["metadata"].get("labels") or {}).get(POD_REVISION, "")) for p in pods.values()}
        old_st = sts.get("status") or {}
        update, _ = self._sync_history(
            sts, "controller.kubernetes.io/hash", running | {old_st.get("currentRevision", "")}
        )
        rev = update["metadata"]["name"]
        current = str(old_st.get("currentRevision") or "")
        if not current or self.c.store.get(CR.gr, ns, current) is None:
            current = rev
        replicas = int(spec.get("replicas", 1))
        ordered = spec.get("podManagementPolicy", "OrderedReady") == "OrderedReady"
        strategy = spec.get("updateStrategy") or {}
        rolling = strategy.get("type", "RollingUpdate") == "RollingUpdate"
        partition = int((strategy.get("rollingUpdate") or {}).get("partition", 0)) if rolling else 0

        def delete(pname: str) -> None:
            self._delete_pod(ns, pname)
            msg = f"delete Pod {pname} in StatefulSet {name} successful"
            self.event(sts, "Normal", "SuccessfulDelete", msg, "statefulset-controller")

        def step() -> None:  # one pass of updateStatefulSet; returns where kube's returns
            for i in range(replicas):
                pname = f"{name}-{i}"
                p = pods.get(pname)
                if p is not None and (p.get("status") or {}).get("phase") in ("Failed", "Succeeded"):
                    if not p["metadata"].get("deletionTimestamp"):
                        delete(pname)
                    return
                if p is None:
                    pod_rev = current if rolling and i < partition else rev
                    owner = self._sts_template(sts, pod_rev) if pod_rev != rev else sts
                    labels = {"apps.kubernetes.io/pod-index": str(i), POD_REVISION: pod_rev}
                    pod = self._new_pod(owner, pname, {**labels, "statefulset.kubernetes.io/pod-name": pname})
                    pod["spec"]["hostname"] = pname
                    if spec.get("serviceName"):
                        pod["spec"]["subdomain"] = spec["serviceName"]
                    what = f"create Pod {pname} in StatefulSet {name}"
                    created = self._create_pod(sts, pod, "statefulset-controller", f"{what} failed error: ")
                    if created is None:
                        return
                    pods[pname] = created
                    self.event(sts, "Normal", "SuccessfulCreate", f"{what} successful", "statefulset-controller")
                    if ordered:
                        return
                    continue
                if ordered and (p["metadata"].get("deletionTimestamp") or not _running_ready(p)):
                    return  # wait for a terminating pod to be gone, a new one to be Running and Ready
            condemned = sorted((n for n in pods if _ordinal(n) >= replicas), key=_ordinal, reverse=True)
            first_unhealthy = next(
                (
                    n
                    for n in sorted(pods, key=_ordinal)
                    if pods[n]["metadata"].get("deletionTimestamp") or not _running_ready(pods[n])
                ),
                None,
            )
            for pname in condemned:
                p = pods[pname]
                if p["metadata"].get("deletionTimestamp"):
                    if ordered:
                        return
                    continue
                if ordered and not _running_ready(p) and pname != first_unhealthy:
                    return  # a lower unhealthy pod must be dealt with first
                delete(pname)
                if ordered:
                    return
            if not rolling:
                return
            for i in range(replicas - 1, partition - 1, -1):
                p = pods.get(f"{name}-{i}")
                if p is None:
                    return
                if (p["metadata"].get("labels") or {}).get(POD_REVISION) != rev and not p["metadata"].get(
                    "deletionTimestamp"
                ):
                    delete(p["metadata"]["name"])
                    return
                if not _running_ready(p) or p["metadata"].get("deletionTimestamp"):
                    return

        step()
        live = [p for p in self.c.store.list(PODS.gr, ns) if _controlled_by(p, sts)]
        min_ready = int(spec.get("minReadySeconds", 0))
        revs = [
            (p["metadata"].get("labels") or {}).get(POD_REVISION)
            for p in live
            if not p["metadata"].get("deletionTimestamp")
        ]
        st: Obj = {
            "observedGeneration": meta.get("generation", 1),
            "replicas": len(live),
            "currentReplicas": revs.count(current),
            "updatedReplicas": revs.count(rev),
            "currentRevision": current,
            "updateRevision": rev,
            "collisionCount": int(old_st.get("collisionCount", 0)),
            "availableReplicas": sum(1 for p in live if _running_ready(p) and _available(p, min_ready)),
        }
        ready = sum(1 for p in live if _running_ready(p))
        if ready:
            st["readyReplicas"] = ready
        done = st["updatedReplicas"] == st["replicas"] and (ready == st["replicas"] or not rolling)
        if done and st["replicas"] == replicas:  # completeRollingUpdate
            st["currentReplicas"], st["currentRevision"] = st["updatedReplicas"], rev
        for k in ("currentReplicas", "updatedReplicas"):
            if not st[k]:
                del st[k]
        cur = self.c.store.get(STS.gr, ns, name)
        if cur is not None and cur.get("status") != st:
            n = copy.deepcopy(cur)
            n["status"] = st
            self.c.store.put(STS.gr, n, "MODIFIED")

    def _ds_rolling_update(self, ds: Obj, pods: list[Obj], wanted: list[Obj], rev: str) -> None:
        """daemonset rollingUpdate (maxSurge 0): replace old pods node by node, deleting an
        available old pod only while fewer than maxUnavailable nodes are unavailable; an
        unavailable old pod goes at once. The new pod is created once the old one is gone."""
        ns = ds["metadata"]["namespace"]
        ru = (ds["spec"].get("updateStrategy") or {}).get("rollingUpdate") or {}
        max_unavailable = _pct(ru.get("maxUnavailable", 1), len(wanted), True) or 1
        min_ready = int(ds["spec"].get("minReadySeconds", 0))
        by_node: dict[str, list[Obj]] = {}
        for p in pods:
            by_node.setdefault(_ds_node(p), []).append(p)
        unavailable = sum(
            1
            for n in wanted
            if not any(
                _available(p, min_ready) and not p["metadata"].get("deletionTimestamp")
                for p in by_node.get(n["metadata"]["name"], [])
            )
        )
        for node in wanted:
            here = [p for p in by_node.get(node["metadata"]["name"], []) if not p["metadata"].get("deletionTimestamp")]
            old = [p for p in here if (p["metadata"].get("labels") or {}).get(POD_REVISION) != rev]
            if not old or len(old) < len(here):
                continue
            victim = old[0]
            if _available(victim, min_ready):
                if unavailable >= max_unavailable:
                    continue
                unavailable += 1
            self._delete_pod(ns, victim["metadata"]["name"])
            self.event(
                ds, "Normal", "SuccessfulDelete", f"Deleted pod: {victim['metadata']['name']}", "daemonset-controller"
            )

    def _daemonsets(self) -> None:
        DS = R["daemonsets.apps"]
        nodes = self.c.store.list(R["nodes"].gr)
        for ds in self.c.store.list(DS.gr):
            meta, spec = ds["metadata"], ds["spec"]
            if meta.get("deletionTimestamp"):
                continue
            ns, name = meta["namespace"], meta["name"]
            pods = [p for p in self.c.store.list(PODS.gr, ns) if _controlled_by(p, ds)]
            running = {str((p["metadata"].get("labels") or {}).get(POD_REVISION, "")) for p in pods}
            _, rev = self._sync_history(ds, POD_REVISION, {f"{name}-{h}" for h in running})
            # NodeShouldRunDaemonPod: the template's node selector and affinity, and its taints
            # tolerated (with the tolerations the controller adds: a cordoned node keeps its
            # daemon pod); a pod stays while no NoExecute taint it does not tolerate appears
            tspec = copy.deepcopy((spec.get("template") or {}).get("spec") or {})
            tspec["tolerations"] = [*(tspec.get("tolerations") or []), *_DS_TOLERATIONS]
            eligible = [n for n in nodes if scheduler.affinity_matches(tspec, n)]
            wanted = [n for n in eligible if _taints_tolerated(n, tspec, ("NoSchedule", "NoExecute"))]
            keep = {n["metadata"]["name"] for n in eligible if _taints_tolerated(n, tspec, ("NoExecute",))}
            for p in pods:
                if p["metadata"].get("deletionTimestamp") or _ds_node(p) in keep:
                    continue
                self._delete_pod(ns, p["metadata"]["name"])
                self.event(
                    ds, "Normal", "SuccessfulDelete", f"Deleted pod: {p['metadata']['name']}", "daemonset-controller"
                )
            pods = [p for p in self.c.store.list(PODS.gr, ns) if _controlled_by(p, ds)]
            strategy = spec.get("updateStrategy") or {}
            if strategy.get("type", "RollingUpdate") == "RollingUpdate":
                self._ds_rolling_update(ds, pods, wanted, rev)
                pods = [p for p in self.c.store.list(PODS.gr, ns) if _controlled_by(p, ds)]
            for node in wanted:
                nname = node["metadata"]["name"]
                if any(_ds_node(p) == nname for p in pods):
                    continue
                pod = self._new_pod(
                    ds,
                    None,
                    {"controller-revision-hash": rev, "pod-template-generation": str(meta.get("generation", 1))},
                )
                pod["spec"]["affinity"] = {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [
                                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [nname]}]}
                            ]
                        }
                    }
                }
                pod["spec"].setdefault("tolerations", []).extend(copy.deepcopy(_DS_TOLERATIONS))
                created = self._create_pod(ds, pod, "daemonset-controller")
                if created is None:
                    break
                pods.append(created)
                self.event(
                    ds,
                    "Normal",
                    "SuccessfulCreate",
                    f"Created pod: {created['metadata']['name']}",
                    "daemonset-controller",
                )
            live = [p for p in self.c.store.list(PODS.gr, ns) if _controlled_by(p, ds)]
            ready = sum(1 for p in live if self._ready(p))
            updated = sum(1 for p in live if (p["metadata"].get("labels") or {}).get(POD_REVISION) == rev)
            wanted_names = {n["metadata"]["name"] for n in wanted}
            misplaced = sum(1 for p in live if _ds_node(p) not in wanted_names)
            st: Obj = {
                "currentNumberScheduled": len(live) - misplaced,
                "desiredNumberScheduled": len(wanted),
                "numberMisscheduled": misplaced,
                "numberReady": ready,
                "observedGeneration": meta.get("generation", 1),
                "updatedNumberScheduled": updated,
            }
            if ready:
                st["numberAvailable"] = ready
            if len(wanted) - ready > 0:
                st["numberUnavailable"] = len(wanted) - ready
            cur = self.c.store.get(DS.gr, ns, name)
            if cur is not None and cur.get("status") != st:
                n = copy.deepcopy(cur)
                n["status"] = st
                self.c.store.put(DS.gr, n, "MODIFIED")

    # cronjob controller ---------------------------------------------------------------------------

    def _cronjobs(self) -> None:
        import datetime

        CJ, JOBS = R["cronjobs.batch"], R["jobs.batch"]
        now = datetime.datetime.now(datetime.UTC)
        for cj in self.c.store.list(CJ.gr):
            meta, spec = cj["metadata"], cj.get("spec") or {}
            if meta.get("deletionTimestamp"):
                continue
            ns, name = meta["namespace"], meta["name"]
            st = cj.get("status") or {}
            jobs = [j for j in self.c.store.list(JOBS.gr, ns) if _controlled_by(j, cj)]
            running = [j for j in jobs if not _job_finished(j)]
            new_st: Obj = dict(st)
            due = None
            if not spec.get("suspend"):
                try:
                    sched = Schedule(spec.get("schedule", ""), spec.get("timeZone"))
                except CronError:
                    continue
                last = parse_time(st.get("lastScheduleTime")) or parse_time(meta.get("creationTimestamp")) or now
                due = sched.last_between(last, now)
            policy = spec.get("concurrencyPolicy", "Allow")
            if due is not None and not (policy == "Forbid" and running):
                if policy == "Replace":
                    for j in running:
                        self.c.store.remove(JOBS.gr, ns, j["metadata"]["name"])
                    running = []
                jt = spec.get("jobTemplate") or {}
                jmeta = copy.deepcopy(jt.get("metadata") or {})
                jmeta.pop("creationTimestamp", None)
                jname = f"{name}-{int(due.timestamp()) // 60}"
                jmeta.update({"name": jname, "namespace": ns, "ownerReferences": [_owner_ref(cj)]})
                jmeta.setdefault("annotations", {})["batch.kubernetes.io/cronjob-scheduled-timestamp"] = due.strftime(
                    "%Y-%m-%dT%H:%M:%SZ"
                )
                job = {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "metadata": jmeta,
                    "spec": copy.deepcopy(jt.get("spec") or {}),
                }
                if self.c.store.get(JOBS.gr, ns, jname) is None:
                    created = self._create(JOBS, job)
                    running.append(created)
                    self.event(cj, "Normal", "SuccessfulCreate", f"Created job {jname}", "cronjob-controller")
                new_st["lastScheduleTime"] = due.strftime("%Y-%m-%dT%H:%M:%SZ")
            active = [
                {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "name": j["metadata"]["name"],
                    "namespace": ns,
                    "resourceVersion": j["metadata"].get("resourceVersion", ""),
                    "uid": j["metadata"]["uid"],
                }
                for j in running
            ]
            if active:
                new_st["active"] = active
            else:
                new_st.pop("active", None)
            # history limits for finished jobs
            for kind_, limit in (
                ("Complete", spec.get("successfulJobsHistoryLimit", 3)),
                ("Failed", spec.get("failedJobsHistoryLimit", 1)),
            ):
                done = sorted(
                    (j for j in jobs if _job_finished(j) == kind_), key=lambda j: j["metadata"]["creationTimestamp"]
                )
                for j in done[: max(0, len(done) - int(limit))]:
                    self.c.store.remove(JOBS.gr, ns, j["metadata"]["name"])
            if new_st != st:
                cur = self.c.store.get(CJ.gr, ns, name)
                if cur is not None:
                    n = copy.deepcopy(cur)
                    n["status"] = new_st
                    self.c.store.put(CJ.gr, n, "MODIFIED")

    def has_timers(self) -> bool:
        """Whether clock-driven work is due now (the server's periodic tick asks every cluster,
        and reconciles those that answer yes). What falls due is computed once per change of
        the store (``next_due``), so an idle cluster costs one comparison per tick; a cluster
        with a CronJob is reconciled at its scheduled minutes, not on every tick."""
        rv = self.c.store.rv
        if rv != self._due_rv:
            self._due_rv, self._due_at = rv, self.next_due()
        if self._due_at is None or self._due_at > time.time():
            return False
        self._due_rv = -1  # look again after the reconcile this answer causes
        return True

    def next_due(self) -> float | None:
        """The earliest unix time at which the clock alone changes what a controller does: a
        CronJob's next scheduled minute, a rollout's progressDeadlineSeconds, a ready pod of a
        ReplicaSet becoming available after minReadySeconds (None: nothing depends on the clock)."""
        due: list[float] = []
        for cj in self.c.store.list(R["cronjobs.batch"].gr):
            meta, spec = cj["metadata"], cj.get("spec") or {}
            if meta.get("deletionTimestamp") or spec.get("suspend"):
                continue
            try:
                sched = Schedule(spec.get("schedule", ""), spec.get("timeZone"))
            except CronError:
                continue
            st = cj.get("status") or {}
            last = parse_time(st.get("lastScheduleTime")) or parse_time(meta.get("creationTimestamp"))
            nxt = sched.next_after(last or datetime.datetime.now(datetime.UTC))
            if nxt is not None:
                due.append(nxt.timestamp())
        for d in self.c.store.list(DEPLOY.gr):
            cond = _get_cond(d.get("status") or {}, "Progressing")
            reason = (cond or {}).get("reason")
            if (
                _has_deadline(d)
                and not d["spec"].get("paused")
                and reason in ("ReplicaSetUpdated", "NewReplicaSetCreated", "FoundNewReplicaSet", "DeploymentResumed")
            ):
                since = parse_time((cond or {}).get("lastUpdateTime"))
                due.append(since.timestamp() + int(d["spec"]["progressDeadlineSeconds"]) if since else time.time())
        for rs in self.c.store.list(RS.gr):
            min_ready = int(rs["spec"].get("minReadySeconds") or 0)
            if min_ready and _stat(rs, "readyReplicas") > _stat(rs, "availableReplicas"):
                # a ready pod counts as available min_ready after it became ready (already
                # past: the status lags, due at once, as the old every-tick check was)
                pods = [p for p in self.c.store.list(PODS.gr, rs["metadata"]["namespace"]) if _controlled_by(p, rs)]
                ready = [_ready_since(p) for p in pods]
                due.extend(since + min_ready for since in ready if since is not None)
                if not any(since is not None for since in ready):
                    due.append(time.time())
        due.extend(nodelifecycle.next_due(self))  # Leases running out, tolerationSeconds passing
        due.extend(podgc.next_due(self))  # a deleted Node's quarantine ending
        queued = self.sched_queue.next_due()  # a pending pod's backoff, or pods left for the next pass
        if queued is not None:
            due.append(queued)
        return min(due) if due else None

    # persistent volumes: binder, provisioner, protection ------------------------------------------

    def _default_sc(self) -> Obj | None:
        for sc in self.c.store.list(R["storageclasses.storage.k8s.io"].gr):
            if (sc["metadata"].get("annotations") or {}).get("storageclass.kubernetes.io/is-default-class") == "true":
                return sc
        return None

    def _volumes(self) -> None:
        store = self.c.store
        PV, PVC = R["persistentvolumes"], R["persistentvolumeclaims"]
        SC = R["storageclasses.storage.k8s.io"]
        pods = store.list(PODS.gr)
        for pvc in store.list(PVC.gr):
            meta, spec = pvc["metadata"], pvc.get("spec") or {}
            ns, name = meta["namespace"], meta["name"]
            if meta.get("deletionTimestamp"):
                used = any(
                    (v.get("persistentVolumeClaim") or {}).get("claimName") == name
                    for p in pods
                    if p["metadata"].get("namespace") == ns
                    for v in (p.get("spec") or {}).get("volumes") or []
                )
                if not used:
                    n = copy.deepcopy(pvc)
                    n["metadata"]["finalizers"] = [
                        f for f in n["metadata"].get("finalizers") or [] if f != "kubernetes.io/pvc-protection"
                    ]
                    if not n["metadata"]["finalizers"]:
                        store.remove(PVC.gr, ns, name)
                        self._release(pvc)
                    else:
                        store.put(PVC.gr, n, "MODIFIED")
                continue
            if (pvc.get("status") or {}).get("phase") == "Bound":
                continue
            try:  # exact, as resource.Quantity.Cmp: 1Gi > 1000Mi, 500M == 0.5G
                want = Quantity.parse(((spec.get("resources") or {}).get("requests") or {}).get("storage", "0")).value
            except QuantityError:  # the API refuses one at decode; never bind on a guess
                continue
            modes = set(spec.get("accessModes") or [])
            cls = spec.get("storageClassName") or ""
            pv = None
            for cand in store.list(PV.gr):
                cs = cand.get("spec") or {}
                if (cand.get("status") or {}).get("phase") != "Available" or cs.get("claimRef"):
                    continue
                if spec.get("volumeName") and cand["metadata"]["name"] != spec["volumeName"]:
                    continue
                if (cs.get("storageClassName") or "") != cls or not modes <= set(cs.get("accessModes") or []):
                    continue
                try:
                    if Quantity.parse((cs.get("capacity") or {}).get("storage", "0")).value < want:
                        continue
                except QuantityError:
                    continue
                pv = cand
                break
            sc = store.get(SC.gr, "", cls) if cls else None
            if pv is None and sc is not None:
                if sc.get("volumeBindingMode") == "WaitForFirstConsumer":
                    continue
                pv_name = f"pvc-{meta['uid']}"
                pv = self._create(
                    PV,
                    {
                        "apiVersion": "v1",
                        "kind": "PersistentVolume",
                        "metadata": {
                            "name": pv_name,
                            "annotations": {"pv.kubernetes.io/provisioned-by": sc.get("provisioner", "")},
                        },
                        "spec": {
                            "capacity": {
                                "storage": ((spec.get("resources") or {}).get("requests") or {}).get("storage")
                            },
                            "accessModes": list(spec.get("accessModes") or []),
                            "persistentVolumeReclaimPolicy": sc.get("reclaimPolicy", "Delete"),
                            "storageClassName": cls,
                            "volumeMode": spec.get("volumeMode", "Filesystem"),
                            "hostPath": {"path": f"/tmp/hostpath-provisioner/{ns}/{name}", "type": ""},
                        },
                    },
                )
                self.event(
                    pvc,
                    "Normal",
                    "ProvisioningSucceeded",
                    f"Successfully provisioned volume {pv_name}",
                    sc.get("provisioner", ""),
                )
            if pv is None:
                continue
            npv = copy.deepcopy(store.get(PV.gr, "", pv["metadata"]["name"]) or pv)
            npv["spec"]["claimRef"] = {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "name": name,
                "namespace": ns,
                "resourceVersion": meta.get("resourceVersion", ""),
                "uid": meta["uid"],
            }
            npv["status"] = {"phase": "Bound"}
            npv["metadata"].setdefault("annotations", {})["pv.kubernetes.io/bound-by-controller"] = "yes"
            store.put(PV.gr, npv, "MODIFIED")
            npvc = copy.deepcopy(pvc)
            npvc["spec"]["volumeName"] = npv["metadata"]["name"]
            ann = npvc["metadata"].setdefault("annotations", {})
            ann["pv.kubernetes.io/bind-completed"] = "yes"
            ann["pv.kubernetes.io/bound-by-controller"] = "yes"
            npvc["status"] = {
                "phase": "Bound",
                "accessModes": list(npv["spec"].get("accessModes") or []),
                "capacity": dict(npv["spec"].get("capacity") or {}),
            }
            store.put(PVC.gr, npvc, "MODIFIED")
        for pv in store.list(PV.gr):
            if pv["metadata"].get("deletionTimestamp"):
                if (pv.get("status") or {}).get("phase") != "Bound":
                    store.remove(PV.gr, "", pv["metadata"]["name"])
                continue
            ref = (pv.get("spec") or {}).get("claimRef")
            if ref and (pv.get("status") or {}).get("phase") == "Bound":
                claim = store.get(PVC.gr, ref.get("namespace", ""), ref.get("name", ""))
                if claim is None or claim["metadata"]["uid"] != ref.get("uid"):
                    self._release(
                        {
                            "metadata": {
                                "uid": ref.get("uid"),
                                "namespace": ref.get("namespace"),
                                "name": ref.get("name"),
                            }
                        }
                    )

    def _release(self, pvc: Obj) -> None:
        PV = R["persistentvolumes"]
        for pv in self.c.store.list(PV.gr):
            ref = (pv.get("spec") or {}).get("claimRef") or {}
            if ref.get("uid") != pvc["metadata"]["uid"]:
                continue
            if (pv.get("spec") or {}).get("persistentVolumeReclaimPolicy") == "Delete":
                self.c.store.remove(PV.gr, "", pv["metadata"]["name"])
            elif (pv.get("status") or {}).get("phase") != "Released":
                n = copy.deepcopy(pv)
                n["status"] = {"phase": "Released"}
                self.c.store.put(PV.gr, n, "MODIFIED")

    # horizontal pod autoscaler (min/max clamping; no metrics server yet) and PDB status ---------

    def _hpas(self) -> None:
        HPA = R["horizontalpodautoscalers.autoscaling"]
        kinds_ = {
            "Deployment": DEPLOY,
            "ReplicaSet": RS,
            "StatefulSet": R["statefulsets.apps"],
            "ReplicationController": RC,
        }
        for hpa in self.c.store.list(HPA.gr):
            meta, spec = hpa["metadata"], hpa.get("spec") or {}
            ns = meta["namespace"]
            ref = spec.get("scaleTargetRef") or {}
            tdef = kinds_.get(ref.get("kind", ""))
            target = self.c.store.get(tdef.gr, ns, ref.get("name", "")) if tdef else None
            st: Obj = dict(hpa.get("status") or {})
            if target is None:
                conds: list[Obj] = [
                    {
                        "type": "AbleToScale",
                        "status": "False",
                        "lastTransitionTime": now_ts(),
                        "reason": "FailedGetScale",
                        "message": f"the HPA controller was unable to get the target's current scale: "
                        f"{(tdef.resource + '.' + tdef.group) if tdef else ref.get('kind', '')} "
                        f'"{ref.get("name", "")}" not found',
                    }
                ]
                new_st = {"currentReplicas": 0, "desiredReplicas": 0, "conditions": conds}
            else:
                cur = int(target["spec"].get("replicas", 1))
                mn, mx = int(spec.get("minReplicas", 1)), int(spec.get("maxReplicas", 1))
                desired = cur
                reason = ""
                if cur != 0 and cur < mn:
                    desired, reason = mn, "Current number of replicas below Spec.MinReplicas"
                elif cur > mx:
                    desired, reason = mx, "Current number of replicas above Spec.MaxReplicas"
                if desired != cur and tdef is not None:
                    n = copy.deepcopy(target)
                    n["spec"]["replicas"] = desired
                    n["metadata"]["generation"] = int(n["metadata"].get("generation", 1)) + 1
                    self.c.store.put(tdef.gr, n, "MODIFIED")
                    self.event(
                        hpa,
                        "Normal",
                        "SuccessfulRescale",
                        f"New size: {desired}; reason: {reason}",
                        "horizontal-pod-autoscaler",
                    )
                old_conds: dict[str, Obj] = {str(c.get("type")): c for c in st.get("conditions") or []}
                ts = now_ts()
                able = old_conds.get("AbleToScale")
                conds = [
                    able
                    if able is not None and able.get("status") == "True"
                    else {
                        "type": "AbleToScale",
                        "status": "True",
                        "lastTransitionTime": ts,
                        "reason": "SucceededGetScale",
                        "message": "the HPA controller was able to get the target's current scale",
                    },
                    old_conds.get("ScalingActive")
                    or {
                        "type": "ScalingActive",
                        "status": "False",
                        "lastTransitionTime": ts,
                        "reason": "FailedGetResourceMetric",
                        "message": "the HPA was unable to compute the replica count: failed to get cpu "
                        "utilization: unable to get metrics for resource cpu: no metrics returned "
                        "from resource metrics API",
                    },
                ]
                new_st = {"currentReplicas": desired, "desiredReplicas": desired, "conditions": conds}
                if desired != cur:
                    new_st["lastScaleTime"] = ts
                elif "lastScaleTime" in st:
                    new_st["lastScaleTime"] = st["lastScaleTime"]
            if new_st != st:
                cur_h = self.c.store.get(HPA.gr, ns, meta["name"])
                if cur_h is not None:
                    n = copy.deepcopy(cur_h)
                    n["status"] = new_st
                    self.c.store.put(HPA.gr, n, "MODIFIED")

    def _quotas(self) -> None:
        """The resource quota controller: status.hard from spec.hard, status.used recounted."""
        RQ = R["resourcequotas"]
        for q in self.c.store.list(RQ.gr):
            st = quota_status(self.c, q)
            if q.get("status") != st:
                n = copy.deepcopy(q)
                n["status"] = st
                self.c.store.put(RQ.gr, n, "MODIFIED")

    def _pdbs(self) -> None:
        PDB = R["poddisruptionbudgets.policy"]
        for pdb in self.c.store.list(PDB.gr):
            meta, spec = pdb["metadata"], pdb.get("spec") or {}
            sel = selector_from_match(spec.get("selector"))
            pods = [p for p in self.c.store.list(PODS.gr, meta["namespace"]) if sel(p)]
            # countHealthyPods: a pod being deleted (an eviction in progress) is not healthy
            healthy = sum(1 for p in pods if self._ready(p) and not p["metadata"].get("deletionTimestamp"))
            expected = len(pods)
            if "minAvailable" in spec:
                desired = _pct(spec["minAvailable"], expected, True)
            elif "maxUnavailable" in spec:
                desired = expected - _pct(spec["maxUnavailable"], expected, True)
            else:
                desired = expected
            st: Obj = {
                "observedGeneration": meta.get("generation", 1),
                "disruptionsAllowed": max(0, healthy - desired),
                "currentHealthy": healthy,
                "desiredHealthy": max(0, desired),
                "expectedPods": expected,
            }
            old = dict(pdb.get("status") or {})
            old.pop("conditions", None)
            if st != old:
                n = copy.deepcopy(pdb)
                n["status"] = {
                    **st,
                    "conditions": [
                        {
                            "type": "DisruptionAllowed",
                            "status": "True" if st["disruptionsAllowed"] else "False",
                            "reason": "SufficientPods" if st["disruptionsAllowed"] else "InsufficientPods",
                            "message": "",
                            "observedGeneration": st["observedGeneration"],
                            "lastTransitionTime": (pdb["metadata"].get("creationTimestamp") or ""),
                        }
                    ],
                }
                self.c.store.put(PDB.gr, n, "MODIFIED")

    # job controller -----------------------------------------------------------------------------

    def _jobs(self) -> None:
        JOBS = R["jobs.batch"]
        for job in self.c.store.list(JOBS.gr):
            meta, spec = job["metadata"], job.get("spec") or {}
            if meta.get("deletionTimestamp"):
                continue
            ns = meta["namespace"]
            st = job.get("status") or {}
            pods = [p for p in self.c.store.list(PODS.gr, ns) if _controlled_by(p, job)]
            succeeded = sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Succeeded")
            failed = sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Failed")
            active = [p for p in pods if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
            completions = spec.get("completions")
            parallelism = int(spec.get("parallelism", 1))
            want = parallelism
            if completions is not None:
                want = min(parallelism, int(completions) - succeeded)
            finished = _job_finished(job)
            if spec.get("suspend") or finished or (completions is None and succeeded):
                want = 0
            for _ in range(max(0, want - len(active))):
                tmpl = spec.get("template") or {}
                pmeta = copy.deepcopy(tmpl.get("metadata") or {})
                pmeta.pop("creationTimestamp", None)
                pmeta["generateName"] = meta["name"] + "-"
                pmeta["namespace"] = ns
                pmeta["ownerReferences"] = [_owner_ref(job)]
                pod = {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": pmeta,
                    "spec": copy.deepcopy(tmpl.get("spec") or {}),
                }
                created = self._create_pod(job, pod, "job-controller")
                if created is None:
                    break
                active.append(created)
                self.event(
                    job, "Normal", "SuccessfulCreate", f"Created pod: {created['metadata']['name']}", "job-controller"
                )
            cur = self.c.store.get(JOBS.gr, ns, meta["name"])
            if cur is None:
                continue
            new_st: Obj = dict(cur.get("status") or {})
            if not spec.get("suspend"):
                new_st.setdefault("startTime", now_ts())
            new_st.update({"ready": 0, "terminating": 0, "uncountedTerminatedPods": {}})
            for k, v in (("active", len(active)), ("succeeded", succeeded), ("failed", failed)):
                if v:
                    new_st[k] = v
                else:
                    new_st.pop(k, None)
            # pod phases come from the kubelet: the job-controller's terminal conditions
            done = ""
            if not finished and not active and succeeded >= int(completions if completions is not None else 1):
                done, reason, msg = "Complete", "CompletionsReached", "Reached expected number of succeeded pods"
            elif not finished and failed > int(spec.get("backoffLimit", 6)):
                done, reason, msg = "Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit"
            if done:
                ts = now_ts()
                first = "SuccessCriteriaMet" if done == "Complete" else "FailureTarget"
                new_st["conditions"] = [*(new_st.get("conditions") or [])] + [
                    {"type": t, "status": "True", "lastProbeTime": ts, "lastTransitionTime": ts}
                    | {"reason": reason, "message": msg}
                    for t in (first, done)
                ]
                if done == "Complete":
                    new_st["completionTime"] = ts
            if new_st != st:
                n = copy.deepcopy(cur)
                n["status"] = new_st
                self.c.store.put(JOBS.gr, n, "MODIFIED")

    # endpoints controller ---------------------------------------------------------------------

    def _endpoints(self) -> None:
        """One Endpoints object per Service with a selector; ready pods with an IP are addresses."""
        EP = R["endpoints"]
        store = self.c.store
        for svc in store.list(SVC.gr):
            meta = svc["metadata"]
            ns, name = meta["namespace"], meta["name"]
            sel = (svc.get("spec") or {}).get("selector")
            if not sel or meta.get("deletionTimestamp"):
                continue
            ready: list[Obj] = []
            not_ready: list[Obj] = []
            for p in store.list(PODS.gr, ns):
                labels = p["metadata"].get("labels") or {}
                ip = (p.get("status") or {}).get("podIP")
                if not ip or any(labels.get(k) != v for k, v in sel.items()):
                    continue
                addr = {
                    "ip": ip,
                    "targetRef": {
                        "kind": "Pod",
                        "namespace": ns,
                        "name": p["metadata"]["name"],
                        "uid": p["metadata"]["uid"],
                    },
                }
                if (p.get("spec") or {}).get("nodeName"):
                    addr["nodeName"] = p["spec"]["nodeName"]
                conds = (p.get("status") or {}).get("conditions") or []
                ok = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)
                (ready if ok else not_ready).append(addr)
            subsets: list[Obj] = []
            if ready or not_ready:
                ports = [
                    {
                        k: v
                        for k, v in (
                            ("name", sp.get("name")),
                            ("port", _target(sp)),
                            ("protocol", sp.get("protocol", "TCP")),
                        )
                        if v is not None
                    }
                    for sp in (svc.get("spec") or {}).get("ports") or []
                ]
                sub: Obj = {}
                if ready:
                    sub["addresses"] = ready
                if not_ready:
                    sub["notReadyAddresses"] = not_ready
                sub["ports"] = ports
                subsets = [sub]
            cur = store.get(EP.gr, ns, name)
            want_labels = {**(meta.get("labels") or {}), EP_MANAGED_BY: EP_CONTROLLER}
            if cur is None:
                ep: Obj = {
                    "apiVersion": "v1",
                    "kind": "Endpoints",
                    "metadata": {"name": name, "namespace": ns, "labels": want_labels},
                }
                if subsets:
                    ep["subsets"] = subsets
                self._create(EP, ep)
            elif (cur.get("subsets") or []) != subsets or (cur["metadata"].get("labels") or {}).get(
                EP_MANAGED_BY
            ) != EP_CONTROLLER:
                n = copy.deepcopy(cur)
                if subsets:
                    n["subsets"] = subsets
                else:
                    n.pop("subsets", None)
                n["metadata"]["labels"] = {**(n["metadata"].get("labels") or {}), EP_MANAGED_BY: EP_CONTROLLER}
                store.put(EP.gr, n, "MODIFIED")
        # the controller's own Endpoints go with their Service; one somebody wrote without a
        # Service (no managed-by label) is theirs, and stays, as on a real cluster
        for ep in store.list(EP.gr):
            m = ep["metadata"]
            if (m.get("labels") or {}).get(EP_MANAGED_BY) != EP_CONTROLLER:
                continue
            if store.get(SVC.gr, m["namespace"], m["name"]) is None:
                store.remove(EP.gr, m["namespace"], m["name"])

    # endpointslice controller ----------------------------------------------------------------

    def _endpointslices(self) -> None:
        """One IPv4 EndpointSlice per Service with a selector, as the endpointslice controller keeps.

        Pods without an IP are left out (the real controller skips them too), so until part 2
        assigns IPs a slice is the controller's placeholder: no endpoints, no ports.
        """
        ES = R["endpointslices.discovery.k8s.io"]
        store = self.c.store
        services = {(s["metadata"]["namespace"], s["metadata"]["uid"]): s for s in store.list(SVC.gr)}
        owned: dict[tuple[str, str], Obj] = {}
        for sl in store.list(ES.gr):
            m = sl["metadata"]
            if (m.get("labels") or {}).get(SLICE_MANAGED_BY) != SLICE_CONTROLLER:
                continue
            ref = next((r for r in m.get("ownerReferences") or [] if r.get("kind") == "Service"), None)
            svc = services.get((m["namespace"], (ref or {}).get("uid", "")))
            if (
                svc is None
                or not (svc.get("spec") or {}).get("selector")
                or (m["namespace"], svc["metadata"]["uid"]) in owned
            ):
                store.remove(ES.gr, m["namespace"], m["name"])
                continue
            owned[(m["namespace"], svc["metadata"]["uid"])] = sl
        for (ns, uid), svc in services.items():
            meta, spec = svc["metadata"], svc.get("spec") or {}
            sel = spec.get("selector")
            if not sel or meta.get("deletionTimestamp") or spec.get("type") == "ExternalName":
                continue
            want = self._slice_body(svc, sel)
            labels = {
                **(meta.get("labels") or {}),
                SLICE_SERVICE_NAME: meta["name"],
                SLICE_MANAGED_BY: SLICE_CONTROLLER,
            }
            if spec.get("clusterIP") == "None":
                labels["service.kubernetes.io/headless"] = ""
            cur = owned.get((ns, uid))
            if cur is None:
                obj: Obj = {
                    "apiVersion": "discovery.k8s.io/v1",
                    "kind": "EndpointSlice",
                    "metadata": {
                        "generateName": meta["name"] + "-",
                        "namespace": ns,
                        "labels": labels,
                        "ownerReferences": [_owner_ref(svc)],
                    },
                    **want,
                }
                self._create(ES, obj)
                continue
            have = {k: cur.get(k) for k in want}
            if have != want or cur["metadata"].get("labels") != labels:
                n = copy.deepcopy(cur)
                n.update(copy.deepcopy(want))
                n["metadata"]["labels"] = labels
                n["metadata"]["generation"] = int(n["metadata"].get("generation", 1)) + 1
                store.put(ES.gr, n, "MODIFIED")

    def _slice_body(self, svc: Obj, sel: dict[str, str]) -> Obj:
        ns, spec = svc["metadata"]["namespace"], svc.get("spec") or {}
        publish = bool(spec.get("publishNotReadyAddresses"))
        endpoints: list[Obj] = []
        pods: list[Obj] = []
        for p in self.c.store.list(PODS.gr, ns):
            labels = p["metadata"].get("labels") or {}
            if not (p.get("status") or {}).get("podIP") or any(labels.get(k) != v for k, v in sel.items()):
                continue
            pods.append(p)
            ready = self._ready(p)
            ep: Obj = {
                "addresses": [p["status"]["podIP"]],
                "conditions": {
                    "ready": publish or ready,
                    "serving": ready,
                    "terminating": bool(p["metadata"].get("deletionTimestamp")),
                },
                "targetRef": {
                    "kind": "Pod",
                    "namespace": ns,
                    "name": p["metadata"]["name"],
                    "uid": p["metadata"]["uid"],
                },
            }
            pspec = p.get("spec") or {}
            if pspec.get("nodeName"):
                ep["nodeName"] = pspec["nodeName"]
            if pspec.get("hostname") and pspec.get("subdomain") == svc["metadata"]["name"]:
                ep["hostname"] = pspec["hostname"]
            endpoints.append(ep)
        ports: list[Obj] = []
        if endpoints:
            for sp in spec.get("ports") or []:
                port: Obj = {
                    "name": sp.get("name", ""),
                    "port": _slice_port(sp, pods[0]),
                    "protocol": sp.get("protocol", "TCP"),
                }
                if sp.get("appProtocol"):
                    port["appProtocol"] = sp["appProtocol"]
                ports.append(port)
        return {"addressType": "IPv4", "endpoints": endpoints or None, "ports": ports or None}

    # replicaset controller (pkg/controller/replicaset) ----------------------------------------

    def _replicasets(self) -> None:
        for rs in self.c.store.list(RS.gr):
            if rs["metadata"].get("deletionTimestamp"):
                continue
            self._sync_rs(rs)

    def _replication_controllers(self) -> None:
        for rc in self.c.store.list(RC.gr):
            if rc["metadata"].get("deletionTimestamp"):
                continue
            self._sync_rs(rc, RC, "replication-controller")

    def _delete_pod(self, ns: str, name: str) -> None:
        """Delete as a controller does: gracefully (the kubelet stops it) when a kubelet runs.

        ``Cluster.delete`` marks the cluster dirty for a reconcile after the request; this runs
        inside the reconcile loop, which goes on until nothing changes, so the mark is undone.
        """
        dirty = self.c._dirty
        try:
            self.c.delete(PODS, ns, name)
        except ApiError:
            return
        finally:
            self.c._dirty = dirty

    def _sync_rs(self, rs: Obj, rdef: ResourceDef = RS, component: str = "replicaset-controller") -> None:
        """One ReplicaSet, or one ReplicationController (``rdef`` RC): kube-controller-manager
        runs the very same controller for both (pkg/controller/replication wraps the
        ReplicaSet one), with a selector that is a plain map and its own component name."""
        ns = rs["metadata"]["namespace"]
        if rdef is RC:
            sel = selector_from_match({"matchLabels": rs["spec"].get("selector") or {}})
        else:
            sel = selector_from_match(rs["spec"].get("selector"))
        # adopt orphans that match
        for p in self.c.store.list(PODS.gr, ns):
            if not p["metadata"].get("ownerReferences") and sel(p) and not p["metadata"].get("deletionTimestamp"):
                n = copy.deepcopy(p)
                n["metadata"]["ownerReferences"] = [_owner_ref(rs)]
                self.c.store.put(PODS.gr, n, "MODIFIED")
        pods = [p for p in self.c.store.list(PODS.gr, ns) if _controlled_by(p, rs) and _pod_active(p)]
        want = int(rs["spec"].get("replicas", 1))
        failure = ""
        if len(pods) < want:
            tmpl = rs["spec"]["template"]
            for _ in range(want - len(pods)):
                meta = copy.deepcopy(tmpl.get("metadata") or {})
                meta.pop("creationTimestamp", None)
                meta["generateName"] = rs["metadata"]["name"] + "-"
                meta["namespace"] = ns
                meta["ownerReferences"] = [_owner_ref(rs)]
                pod = {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": meta,
                    "spec": copy.deepcopy(tmpl.get("spec") or {}),
                }
                created = self._create_pod(rs, pod, component)
                if created is None:
                    failure = self.create_error
                    break
                self.event(
                    rs,
                    "Normal",
                    "SuccessfulCreate",
                    f"Created pod: {created['metadata']['name']}",
                    component,
                )
        elif len(pods) > want:
            for p in sorted(pods, key=_deletion_rank)[: len(pods) - want]:
                self._delete_pod(ns, p["metadata"]["name"])
                self.event(rs, "Normal", "SuccessfulDelete", f"Deleted pod: {p['metadata']['name']}", component)
        cur = self.c.store.get(rdef.gr, ns, rs["metadata"]["name"])
        if cur is None:
            return
        owned = [p for p in self.c.store.list(PODS.gr, ns) if _controlled_by(p, cur)]
        live = [p for p in owned if _pod_active(p)]
        terminating = [
            p
            for p in owned
            if p["metadata"].get("deletionTimestamp") and (p.get("status") or {}).get("phase") not in _FINISHED
        ]
        tlabels = ((cur["spec"].get("template") or {}).get("metadata") or {}).get("labels") or {}
        min_ready = int(cur["spec"].get("minReadySeconds", 0))
        st: Obj = {"replicas": len(live)}
        for k, v in (
            ("fullyLabeledReplicas", sum(1 for p in live if _has_labels(p, tlabels))),
            ("readyReplicas", sum(1 for p in live if self._ready(p))),
            ("availableReplicas", sum(1 for p in live if _available(p, min_ready))),
        ):
            if v:
                st[k] = v
        if rdef is RS:  # ReplicationControllerStatus has no such field
            st["terminatingReplicas"] = len(terminating)  # DeploymentReplicaSetTerminatingReplicas (beta, on)
        st["observedGeneration"] = cur["metadata"].get("generation", 1)
        old_conds = (cur.get("status") or {}).get("conditions") or []
        had = next((c for c in old_conds if c.get("type") == "ReplicaFailure"), None)
        conds = [c for c in old_conds if c.get("type") != "ReplicaFailure"]
        if failure and had is None:
            reason = "FailedCreate" if len(live) < want else "FailedDelete"
            conds.append(
                {
                    "type": "ReplicaFailure",
                    "status": "True",
                    "lastTransitionTime": now_ts(),
                    "reason": reason,
                    "message": failure,
                }
            )
        elif had is not None and failure:
            conds.append(had)
        if conds:
            st["conditions"] = conds
        if st != cur.get("status"):
            n = copy.deepcopy(cur)
            n["status"] = st
            self.c.store.put(rdef.gr, n, "MODIFIED")


def _epoch(ts: Any) -> float:
    t = parse_time(ts) if isinstance(ts, str) else None
    return t.timestamp() if t is not None else 0.0


def _running_ready(p: Obj) -> bool:
    """isRunningAndReady: phase Running and the Ready condition True."""
    return (p.get("status") or {}).get("phase") == "Running" and _ready_since(p) is not None


_FINISHED = ("Succeeded", "Failed")


def _pod_active(p: Obj) -> bool:
    """controller.IsPodActive: not terminating and not finished."""
    phase = (p.get("status") or {}).get("phase")
    return not p["metadata"].get("deletionTimestamp") and phase not in _FINISHED


def _ready_since(p: Obj) -> float | None:
    for c in (p.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return _epoch(c.get("lastTransitionTime")) if c.get("status") == "True" else None
    return None


def _available(p: Obj, min_ready: int) -> bool:
    """podutil.IsPodAvailable: ready for at least minReadySeconds."""
    import time

    since = _ready_since(p)
    return since is not None and (min_ready == 0 or since + min_ready <= time.time())


def _has_labels(p: Obj, want: dict[str, str]) -> bool:
    labels = p["metadata"].get("labels") or {}
    return all(labels.get(k) == v for k, v in want.items())


def _deletion_rank(p: Obj) -> tuple[bool, int, bool, float, int, float]:
    """controller.ActivePods order, deleted first: unscheduled, pending, not ready, ready the
    shortest time, most restarts, newest."""
    st = p.get("status") or {}
    since = _ready_since(p)
    restarts = max((int(c.get("restartCount", 0)) for c in st.get("containerStatuses") or []), default=0)
    return (
        bool((p.get("spec") or {}).get("nodeName")),
        {"Pending": 0, "Unknown": 1, "Running": 2}.get(str(st.get("phase", "")), 0),
        since is not None,
        -(since or 0.0),
        -restarts,
        -_epoch(p["metadata"].get("creationTimestamp")),
    )


def _job_finished(j: Obj) -> str:
    for c in (j.get("status") or {}).get("conditions") or []:
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return str(c["type"])
    return ""


# what the daemonset controller adds to every daemon pod (util.AddOrUpdateDaemonPodTolerations)
_DS_TOLERATIONS: list[Obj] = [
    {"key": key, "operator": "Exists", "effect": effect}
    for key, effect in (
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    )
]


def _taints_tolerated(node: Obj, spec: Obj, effects: tuple[str, ...]) -> bool:
    tolerations = spec.get("tolerations") or []
    return all(
        scheduler.tolerated(t, tolerations)
        for t in (node.get("spec") or {}).get("taints") or []
        if t.get("effect") in effects
    )


def _ds_node(p: Obj) -> str:
    aff = ((p.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {}
    terms = (aff.get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get("nodeSelectorTerms") or []
    for t in terms:
        for f in t.get("matchFields") or []:
            if f.get("key") == "metadata.name" and f.get("values"):
                return str(f["values"][0])
    return str((p.get("spec") or {}).get("nodeName") or "")


def _target(sp: Obj) -> Any:
    t = sp.get("targetPort", sp.get("port"))
    return t if isinstance(t, int) else sp.get("port")


def _slice_port(sp: Obj, pod: Obj) -> int | None:
    """A service port's targetPort resolved against a pod (named ports look up containerPort)."""
    t = sp.get("targetPort", sp.get("port"))
    if isinstance(t, int):
        return t
    for c in (pod.get("spec") or {}).get("containers") or []:
        for cp in c.get("ports") or []:
            if cp.get("name") == t:
                return int(cp["containerPort"])
    return None


def _pct(v: Any, total: int, round_up: bool) -> int:
    if isinstance(v, int):
        return v
    s = str(v)
    if s.endswith("%"):
        x = int(s[:-1]) * total
        return -(-x // 100) if round_up else x // 100
    return int(s)


# -- deployment helpers (pkg/controller/deployment/util) ------------------------------------------


def _replicas(rs: Obj) -> int:
    return int(rs["spec"].get("replicas", 1))


def _stat(obj: Obj, key: str) -> int:
    return int((obj.get("status") or {}).get(key, 0))


def _revision(rs: Obj) -> int:
    v = str((rs["metadata"].get("annotations") or {}).get(REVISION, "0"))
    return int(v) if v.isdigit() else 0


def _by_creation(rs: Obj) -> tuple[str, str]:
    return (str(rs["metadata"].get("creationTimestamp", "")), str(rs["metadata"]["name"]))


def _active(rss: Sequence[Obj | None]) -> list[Obj]:
    """FilterActiveReplicaSets: the ReplicaSets that want pods."""
    return [rs for rs in rss if rs is not None and _replicas(rs) > 0]


def _fenceposts(d: Obj) -> tuple[int, int]:
    """ResolveFenceposts: maxSurge rounded up, maxUnavailable rounded down, never both zero."""
    replicas = int(d["spec"].get("replicas", 1))
    ru = (d["spec"].get("strategy") or {}).get("rollingUpdate") or {}
    surge = _pct(ru.get("maxSurge", "25%"), replicas, True)
    unavailable = _pct(ru.get("maxUnavailable", "25%"), replicas, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def _rolling(d: Obj) -> bool:
    return str((d["spec"].get("strategy") or {}).get("type", "RollingUpdate")) == "RollingUpdate"


def _max_surge(d: Obj) -> int:
    return _fenceposts(d)[0] if _rolling(d) else 0


def _max_unavailable(d: Obj) -> int:
    replicas = int(d["spec"].get("replicas", 1))
    if not _rolling(d) or replicas == 0:
        return 0
    return min(_fenceposts(d)[1], replicas)


def _new_rs_replicas(d: Obj, all_rs: list[Obj], new_rs: Obj) -> int:
    """NewRSNewReplicas: how far the new ReplicaSet may grow now."""
    replicas = int(d["spec"].get("replicas", 1))
    if not _rolling(d):
        return replicas
    current = sum(_replicas(rs) for rs in all_rs)
    max_total = replicas + _max_surge(d)
    if current >= max_total:
        return _replicas(new_rs)
    return _replicas(new_rs) + min(max_total - current, replicas - _replicas(new_rs))


def _set_replicas_annotations(rs: Obj, desired: int, max_replicas: int) -> bool:
    ann = rs["metadata"].setdefault("annotations", {})
    changed = False
    for k, v in ((DESIRED, str(desired)), (MAX_REPLICAS, str(max_replicas))):
        if ann.get(k) != v:
            ann[k] = v
            changed = True
    return changed


_SKIP_COPY = (LAST_APPLIED, REVISION, REVISION_HISTORY, DESIRED, MAX_REPLICAS, "deprecated.deployment.rollback.to")


def _set_new_rs_annotations(d: Obj, rs: Obj, new_revision: str, exists: bool) -> bool:
    """SetNewReplicaSetAnnotations: copied deployment annotations, revision and its history."""
    ann = rs["metadata"].setdefault("annotations", {})
    changed = False
    for k, v in (d["metadata"].get("annotations") or {}).items():
        if k not in _SKIP_COPY and ann.get(k) != v:
            ann[k] = v
            changed = True
    old_rev = ann.get(REVISION)
    old_int = int(old_rev) if old_rev and old_rev.isdigit() else 0
    if old_int < int(new_revision):
        ann[REVISION] = new_revision
        changed = True
        if old_rev:
            hist = [x for x in str(ann.get(REVISION_HISTORY, "")).split(",") if x]
            ann[REVISION_HISTORY] = ",".join([*hist, old_rev])
    if not exists:
        replicas = int(d["spec"].get("replicas", 1))
        changed = _set_replicas_annotations(rs, replicas, replicas + _max_surge(d)) or changed
    return changed


def _set_deploy_revision(d: Obj, revision: str) -> bool:
    ann = d["metadata"].setdefault("annotations", {})
    if revision and ann.get(REVISION) != revision:
        ann[REVISION] = revision
        return True
    return False


def _has_deadline(d: Obj) -> bool:
    v = d["spec"].get("progressDeadlineSeconds")
    return v is not None and int(v) != 2**31 - 1


def _get_cond(st: Obj, typ: str) -> Obj | None:
    return next((c for c in st.get("conditions") or [] if c.get("type") == typ), None)


def _remove_cond(st: Obj, typ: str) -> None:
    conds = [c for c in st.get("conditions") or [] if c.get("type") != typ]
    if conds:
        st["conditions"] = conds
    else:
        st.pop("conditions", None)


def _new_cond(typ: str, status: str, reason: str, message: str) -> Obj:
    ts = now_ts()
    return {
        "type": typ,
        "status": status,
        "lastUpdateTime": ts,
        "lastTransitionTime": ts,
        "reason": reason,
        "message": message,
    }


def _set_cond(st: Obj, cond: Obj) -> None:
    """SetDeploymentCondition: same status and reason is no change; the transition time stays with the status."""
    cur = _get_cond(st, cond["type"])
    if cur is not None and cur.get("status") == cond["status"] and cur.get("reason") == cond["reason"]:
        return
    if cur is not None and cur.get("status") == cond["status"]:
        cond["lastTransitionTime"] = cur.get("lastTransitionTime")
    st["conditions"] = [c for c in st.get("conditions") or [] if c.get("type") != cond["type"]] + [cond]


def _calculate_status(all_rs: list[Obj], new_rs: Obj | None, d: Obj) -> Obj:
    """calculateStatus: counts from the ReplicaSets, the Available condition, old conditions kept."""
    old = d.get("status") or {}
    available = sum(_stat(rs, "availableReplicas") for rs in all_rs)
    total = sum(_replicas(rs) for rs in all_rs)
    st: Obj = {}
    for k, v in (
        ("observedGeneration", int(d["metadata"].get("generation", 1))),
        ("replicas", sum(_stat(rs, "replicas") for rs in all_rs)),
        ("updatedReplicas", _stat(new_rs, "replicas") if new_rs is not None else 0),
        ("readyReplicas", sum(_stat(rs, "readyReplicas") for rs in all_rs)),
        ("availableReplicas", available),
        ("unavailableReplicas", max(0, total - available)),
    ):
        if v:
            st[k] = v
    terminating: int | None = 0  # GetTerminatingReplicaCountForReplicaSets
    for rs in all_rs:
        rst = rs.get("status") or {}
        if "terminatingReplicas" in rst:
            terminating = None if terminating is None else terminating + int(rst["terminatingReplicas"])
        elif rst.get("observedGeneration"):
            terminating = None
    if terminating is not None:
        st["terminatingReplicas"] = terminating
    if old.get("conditions"):
        st["conditions"] = copy.deepcopy(old["conditions"])
    if old.get("collisionCount"):
        st["collisionCount"] = old["collisionCount"]
    if available >= int(d["spec"].get("replicas", 1)) - _max_unavailable(d):
        msg = "Deployment has minimum availability."
        _set_cond(st, _new_cond("Available", "True", "MinimumReplicasAvailable", msg))
    else:
        msg = "Deployment does not have minimum availability."
        _set_cond(st, _new_cond("Available", "False", "MinimumReplicasUnavailable", msg))
    return st


def _replica_failures(rss: list[Obj]) -> list[Obj]:
    return [
        c for rs in rss for c in (rs.get("status") or {}).get("conditions") or [] if c.get("type") == "ReplicaFailure"
    ]


def _deployment_complete(d: Obj, st: Obj) -> bool:
    replicas = int(d["spec"].get("replicas", 1))
    return (
        int(st.get("updatedReplicas", 0)) == replicas
        and int(st.get("replicas", 0)) == replicas
        and int(st.get("availableReplicas", 0)) == replicas
        and int(st.get("observedGeneration", 0)) >= int(d["metadata"].get("generation", 1))
    )


def _deployment_progressing(old: Obj, new: Obj) -> bool:
    def g(st: Obj, k: str) -> int:
        return int(st.get(k, 0))

    return (
        g(new, "updatedReplicas") > g(old, "updatedReplicas")
        or g(new, "replicas") - g(new, "updatedReplicas") < g(old, "replicas") - g(old, "updatedReplicas")
        or g(new, "readyReplicas") > g(old, "readyReplicas")
        or g(new, "availableReplicas") > g(old, "availableReplicas")
    )


def _deployment_timed_out(d: Obj, st: Obj) -> bool:
    import datetime

    cond = _get_cond(st, "Progressing")
    if not _has_deadline(d) or cond is None or cond.get("reason") == "NewReplicaSetAvailable":
        return False
    if cond.get("reason") == "ProgressDeadlineExceeded":
        return True
    since = parse_time(cond.get("lastUpdateTime"))
    if since is None:
        return False
    deadline = since + datetime.timedelta(seconds=int(d["spec"]["progressDeadlineSeconds"]))
    return deadline < datetime.datetime.now(datetime.UTC)


def _find_active_or_latest(new_rs: Obj | None, old: list[Obj]) -> Obj | None:
    if new_rs is None and not old:
        return None
    old = sorted(old, key=_by_creation, reverse=True)
    active = _active([*old, new_rs])
    if not active:
        return new_rs if new_rs is not None else old[0]
    return active[0] if len(active) == 1 else None


def _is_saturated(d: Obj, new_rs: Obj | None) -> bool:
    if new_rs is None:
        return False
    replicas = int(d["spec"].get("replicas", 1))
    desired = (new_rs["metadata"].get("annotations") or {}).get(DESIRED)
    return desired == str(replicas) and _replicas(new_rs) == replicas and _stat(new_rs, "availableReplicas") == replicas


def _rs_proportion(rs: Obj, d: Obj, to_add: int, added: int) -> int:
    """GetReplicaSetProportion: this ReplicaSet's share of a scaling of the whole deployment."""
    if _replicas(rs) == 0 or to_add == 0 or to_add == added:
        return 0
    replicas = int(d["spec"].get("replicas", 1))
    if replicas == 0:
        fraction = -_replicas(rs)
    else:
        max_now = replicas + _max_surge(d)
        ann = str((rs["metadata"].get("annotations") or {}).get(MAX_REPLICAS, ""))
        before = int(ann) if ann.isdigit() else _stat(d, "replicas")
        if before == 0:
            fraction = 0
        else:
            x = _replicas(rs) * max_now / before
            fraction = int(x + 0.5) - _replicas(rs)  # integer.RoundToInt32 (sizes are positive)
    allowed = to_add - added
    return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)
