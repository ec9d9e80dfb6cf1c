"""The controllers that need no kubelet, run to quiescence after every write.

A real control plane runs these loops in kube-controller-manager and reacts
within milliseconds; here ``reconcile()`` runs synchronously after each
mutating request, so a client never observes a half-reconciled cluster
(e.g. ``kubectl create deployment`` then ``kubectl get pods`` always shows the
pods). Each loop is level-triggered (it looks at the whole state, not at the
event), bounded in passes, and writes only when something differs.

Rollouts are instant: with no kubelet no pod ever becomes ready, so a real
rolling update would wait; here the new ReplicaSet takes all replicas and old
ones go to zero at once. Revision bookkeeping follows the deployment
controller exactly so ``kubectl rollout history/undo`` behave as on a real
cluster.
"""

from __future__ import annotations

import copy
import json
import secrets
from typing import TYPE_CHECKING, Any

from runtime.kube import kinds, rbac, registry, scheduler
from runtime.kube.apierrors import ApiError
from runtime.kube.registry import ResourceDef
from runtime.kube.selectors import selector_from_match

if TYPE_CHECKING:
    from runtime.kube.apiserver import Cluster

Obj = dict[str, Any]

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

_ALNUM = "bcdfghjklmnpqrstvwxz2456789"

R = registry.BY_GR
PODS = R["pods"]
RS = R["replicasets.apps"]
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
        elif rdef.kind in ("Deployment", "ReplicaSet", "CronJob", "StatefulSet", "DaemonSet"):
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
            while True:
                ip = f"10.96.{secrets.randbelow(256)}.{secrets.randbelow(254) + 1}"
                if ip not in used and ip != "10.96.0.1" and ip != "10.96.0.10":
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
            for p in spec.get("ports") or []:
                if not p.get("nodePort"):
                    while True:
                        np = 30000 + secrets.randbelow(2768)
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
        for _ in range(10):
            before = self.c.store.rv
            self._crds()
            self._namespaces()
            rbac.aggregate(self.c)
            self._garbage_collect()
            self._deployments()
            self._replicasets()
            self._cronjobs()
            self._jobs()
            self._statefulsets()
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

    def _put(self, rdef: ResourceDef, obj: Obj) -> None:
        self.c.store.put(rdef.gr, obj, "MODIFIED")

    def _create(self, rdef: ResourceDef, obj: Obj) -> Obj:
        return self.c.create(rdef, obj["metadata"].get("namespace", ""), obj, internal=True)

    def _create_pod(self, owner: Obj, pod: Obj, component: str, prefix: str = "Error creating: ") -> Obj | None:
        """Create a pod for a controller; admission may refuse it (quota, LimitRange).

        A refusal becomes the controller's ``FailedCreate`` warning event, recorded once per
        distinct reason so the reconcile loop settles instead of logging every pass.
        """
        try:
            return self._create(PODS, pod)
        except ApiError as e:
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
        from runtime.kube.apiserver import now_ts

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
        from runtime.kube import crd
        from runtime.kube.apiserver import now_ts

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

    # deployment controller -------------------------------------------------------------------

    def _deployments(self) -> None:
        for d in self.c.store.list(DEPLOY.gr):
            if d["metadata"].get("deletionTimestamp"):
                continue
            self._sync_deployment(d)

    def _owned_rs(self, d: Obj) -> list[Obj]:
        ns = d["metadata"]["namespace"]
        return [rs for rs in self.c.store.list(RS.gr, ns) if _controlled_by(rs, d)]

    def _sync_deployment(self, d: Obj) -> None:
        ns = d["metadata"]["namespace"]
        spec = d["spec"]
        replicas = int(spec.get("replicas", 1))
        paused = bool(spec.get("paused"))
        owned = self._owned_rs(d)
        want = _strip_hash(spec["template"])
        new_rs = next((rs for rs in owned if _strip_hash(rs["spec"]["template"]) == want), None)
        old_rs = [rs for rs in owned if rs is not new_rs]
        max_rev = max((int(rs["metadata"].get("annotations", {}).get(REVISION, "0")) for rs in owned), default=0)
        surge = replicas + _surge(spec, replicas)
        if new_rs is None and not paused:
            h = template_hash(spec["template"], int((d.get("status") or {}).get("collisionCount", 0)))
            tmpl = copy.deepcopy(spec["template"])
            tmpl.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = h
            sel = copy.deepcopy(spec["selector"])
            sel.setdefault("matchLabels", {})[HASH_LABEL] = h
            ann = {
                k: v
                for k, v in (d["metadata"].get("annotations") or {}).items()
                if k not in (LAST_APPLIED, REVISION, REVISION_HISTORY)
            }
            ann.update({DESIRED: str(replicas), MAX_REPLICAS: str(surge), REVISION: str(max_rev + 1)})
            rs: Obj = {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": {
                    "name": f"{d['metadata']['name']}-{h}",
                    "namespace": ns,
                    "labels": copy.deepcopy(tmpl["metadata"]["labels"]),
                    "annotations": ann,
                    "ownerReferences": [_owner_ref(d)],
                },
                "spec": {
                    "replicas": replicas,
                    "selector": sel,
                    "template": tmpl,
                    "minReadySeconds": spec.get("minReadySeconds", 0),
                },
            }
            if not rs["spec"]["minReadySeconds"]:
                del rs["spec"]["minReadySeconds"]
            new_rs = self._create(RS, rs)
            if replicas > 0:
                self.event(
                    d,
                    "Normal",
                    "ScalingReplicaSet",
                    f"Scaled up replica set {rs['metadata']['name']} from 0 to {replicas}",
                    "deployment-controller",
                )
        elif new_rs is not None and not paused:
            ann = new_rs["metadata"].setdefault("annotations", {})
            cur_rev = ann.get(REVISION, "0")
            want_ann = dict(ann)
            if int(cur_rev) < max_rev:
                hist = [x for x in want_ann.get(REVISION_HISTORY, "").split(",") if x]
                hist.append(cur_rev)
                want_ann[REVISION_HISTORY] = ",".join(hist)
                want_ann[REVISION] = str(max_rev + 1)
            want_ann[DESIRED] = str(replicas)
            want_ann[MAX_REPLICAS] = str(surge)
            dcause = (d["metadata"].get("annotations") or {}).get(CHANGE_CAUSE)
            if dcause is not None:
                want_ann[CHANGE_CAUSE] = dcause
            if want_ann != ann or new_rs["spec"].get("replicas") != replicas:
                old_n = new_rs["spec"].get("replicas", 0)
                nrs = copy.deepcopy(new_rs)
                nrs["metadata"]["annotations"] = want_ann
                nrs["spec"]["replicas"] = replicas
                if old_n != replicas:
                    nrs["metadata"]["generation"] = int(nrs["metadata"].get("generation", 1)) + 1
                new_rs = self.c.store.put(RS.gr, nrs, "MODIFIED")
                if old_n != replicas:
                    verb = "up" if replicas > old_n else "down"
                    self.event(
                        d,
                        "Normal",
                        "ScalingReplicaSet",
                        f"Scaled {verb} replica set {nrs['metadata']['name']} from {old_n} to {replicas}",
                        "deployment-controller",
                    )
        if not paused:
            for rs in old_rs:
                if rs["spec"].get("replicas", 0) != 0:
                    n = copy.deepcopy(rs)
                    old_n = n["spec"].get("replicas", 0)
                    n["spec"]["replicas"] = 0
                    n["metadata"]["generation"] = int(n["metadata"].get("generation", 1)) + 1
                    n["metadata"].setdefault("annotations", {})[DESIRED] = str(replicas)
                    self.c.store.put(RS.gr, n, "MODIFIED")
                    self.event(
                        d,
                        "Normal",
                        "ScalingReplicaSet",
                        f"Scaled down replica set {n['metadata']['name']} from {old_n} to 0",
                        "deployment-controller",
                    )
            # revisionHistoryLimit: drop the oldest zero-replica old ReplicaSets
            limit = int(spec.get("revisionHistoryLimit", 10))
            live_old = [self.c.store.get(RS.gr, ns, rs["metadata"]["name"]) for rs in old_rs]
            olds = sorted(
                (o for o in live_old if o is not None and o["spec"].get("replicas", 0) == 0),
                key=lambda r: int((r["metadata"].get("annotations") or {}).get(REVISION, "0")),
            )
            for o in olds[: max(0, len(olds) - limit)]:
                self.c.store.remove(RS.gr, ns, o["metadata"]["name"])
        self._deployment_status(d, new_rs)

    def _deployment_status(self, d: Obj, new_rs: Obj | None) -> None:
        from runtime.kube.apiserver import now_ts

        cur = self.c.store.get(DEPLOY.gr, d["metadata"]["namespace"], d["metadata"]["name"])
        if cur is None:
            return
        owned = self._owned_rs(cur)
        total = sum(int((rs.get("status") or {}).get("replicas", 0)) for rs in owned)
        ready = sum(int((rs.get("status") or {}).get("readyReplicas", 0)) for rs in owned)
        avail = sum(int((rs.get("status") or {}).get("availableReplicas", 0)) for rs in owned)
        updated = int(((new_rs or {}).get("status") or {}).get("replicas", 0)) if new_rs else 0
        replicas = int(cur["spec"].get("replicas", 1))
        old_st = cur.get("status") or {}
        st: Obj = {"observedGeneration": cur["metadata"].get("generation", 1)}
        if total:
            st["replicas"] = total
        if updated:
            st["updatedReplicas"] = updated
        if ready:
            st["readyReplicas"] = ready
        if avail:
            st["availableReplicas"] = avail
        if total - avail > 0:
            st["unavailableReplicas"] = total - avail
        old_conds = {c["type"]: c for c in old_st.get("conditions") or []}
        ts = now_ts()
        max_unavail = _unavailable(cur["spec"], replicas)
        available = avail >= replicas - max_unavail
        conds = []
        want_avail = (
            ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
            if available
            else ("False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.")
        )
        conds.append(_cond(old_conds.get("Available"), "Available", *want_avail, ts))
        if new_rs is not None:
            name = new_rs["metadata"]["name"]
            if avail >= replicas and updated == replicas:
                prog = ("True", "NewReplicaSetAvailable", f'ReplicaSet "{name}" has successfully progressed.')
            else:
                prog = ("True", "ReplicaSetUpdated", f'ReplicaSet "{name}" is progressing.')
            conds.append(_cond(old_conds.get("Progressing"), "Progressing", *prog, ts))
        st["conditions"] = conds
        if "collisionCount" in old_st:
            st["collisionCount"] = old_st["collisionCount"]
        ann = cur["metadata"].get("annotations") or {}
        rev = ((new_rs or {}).get("metadata", {}).get("annotations") or {}).get(REVISION)
        if st != old_st or (rev is not None and ann.get(REVISION) != rev):
            n = copy.deepcopy(cur)
            n["status"] = st
            if rev is not None:
                n["metadata"].setdefault("annotations", {})[REVISION] = rev
            self.c.store.put(DEPLOY.gr, n, "MODIFIED")

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
            meta, spec = sts["metadata"], sts["spec"]
            if meta.get("deletionTimestamp"):
                continue
            ns, name = meta["namespace"], meta["name"]
            pods = {p["metadata"]["name"]: p for p in self.c.store.list(PODS.gr, ns) if _controlled_by(p, sts)}
            running = {str((p["metadata"].get("labels") or {}).get(POD_REVISION, "")) for p in pods.values()}
            update, _ = self._sync_history(sts, "controller.kubernetes.io/hash", running)
            rev = update["metadata"]["name"]
            replicas = int(spec.get("replicas", 1))
            ordered = spec.get("podManagementPolicy", "OrderedReady") == "OrderedReady"
            strategy = spec.get("updateStrategy") or {}
            if strategy.get("type", "RollingUpdate") == "RollingUpdate":
                # instant rolling update (no kubelet to wait for): replace outdated pods at once
                partition = int((strategy.get("rollingUpdate") or {}).get("partition", 0))
                for pname, p in sorted(pods.items(), key=lambda kv: _ordinal(kv[0]), reverse=True):
                    if _ordinal(pname) >= partition and (p["metadata"].get("labels") or {}).get(POD_REVISION) != rev:
                        self.c.store.remove(PODS.gr, ns, pname)
                        del pods[pname]
                        self.event(
                            sts,
                            "Normal",
                            "SuccessfulDelete",
                            f"delete Pod {pname} in StatefulSet {name} successful",
                            "statefulset-controller",
                        )
            for i in range(replicas):
                pname = f"{name}-{i}"
                if pname in pods:
                    if ordered and not self._ready(pods[pname]):
                        break
                    continue
                pod = self._new_pod(
                    sts,
                    pname,
                    {
                        "apps.kubernetes.io/pod-index": str(i),
                        POD_REVISION: rev,
                        "statefulset.kubernetes.io/pod-name": pname,
                    },
                )
                pod["spec"]["hostname"] = pname
                if spec.get("serviceName"):
                    pod["spec"]["subdomain"] = spec["serviceName"]
                created = self._create_pod(
                    sts, pod, "statefulset-controller", f"create Pod {pname} in StatefulSet {name} failed error: "
                )
                if created is None:
                    break
                pods[pname] = created
                self.event(
                    sts,
                    "Normal",
                    "SuccessfulCreate",
                    f"create Pod {pname} in StatefulSet {name} successful",
                    "statefulset-controller",
                )
                if ordered:
                    break
            for pname in sorted(pods, key=_ordinal, reverse=True):
                if _ordinal(pname) >= replicas:
                    self.c.store.remove(PODS.gr, ns, pname)
                    self.event(
                        sts,
                        "Normal",
                        "SuccessfulDelete",
                        f"delete Pod {pname} in StatefulSet {name} successful",
                        "statefulset-controller",
                    )
                    if ordered:
                        break
            live = [p for p in self.c.store.list(PODS.gr, ns) if _controlled_by(p, sts)]
            ready = sum(1 for p in live if self._ready(p))
            labels = [(p["metadata"].get("labels") or {}).get(POD_REVISION) for p in live]
            old_st = sts.get("status") or {}
            current = old_st.get("currentRevision") or rev
            if all(x == rev for x in labels):
                current = rev
            st: Obj = {
                "observedGeneration": meta.get("generation", 1),
                "replicas": len(live),
                "currentReplicas": labels.count(current),
                "updatedReplicas": labels.count(rev),
                "currentRevision": current,
                "updateRevision": rev,
                "collisionCount": int(old_st.get("collisionCount", 0)),
                "availableReplicas": ready,
            }
            for k in ("currentReplicas", "updatedReplicas"):
                if not st[k]:
                    del st[k]
            if ready:
                st["readyReplicas"] = ready
            cur = self.c.store.get(STS.gr, ns, name)
            if cur is not None and cur.get("status") != st:
                n = copy.deepcopy(cur)
                n["status"] = st
                self.c.store.put(STS.gr, n, "MODIFIED")

    def _daemonsets(self) -> None:
        DS = R["daemonsets.apps"]
        nodes = [n for n in self.c.store.list(R["nodes"].gr) if not (n.get("spec") or {}).get("unschedulable")]
        for ds in self.c.store.list(DS.gr):
            meta, spec = ds["metadata"], ds["spec"]
            if meta.get("deletionTimestamp"):
                continue
            ns, name = meta["namespace"], meta["name"]
            pods = [p for p in self.c.store.list(PODS.gr, ns) if _controlled_by(p, ds)]
            running = {str((p["metadata"].get("labels") or {}).get(POD_REVISION, "")) for p in pods}
            _, rev = self._sync_history(ds, POD_REVISION, {f"{name}-{h}" for h in running})
            if (spec.get("updateStrategy") or {}).get("type", "RollingUpdate") == "RollingUpdate":
                for p in [p for p in pods if (p["metadata"].get("labels") or {}).get(POD_REVISION) != rev]:
                    self.c.store.remove(PODS.gr, ns, p["metadata"]["name"])
                    pods.remove(p)
                    self.event(
                        ds,
                        "Normal",
                        "SuccessfulDelete",
                        f"Deleted pod: {p['metadata']['name']}",
                        "daemonset-controller",
                    )
            sel = ((spec.get("template") or {}).get("spec") or {}).get("nodeSelector") or {}
            wanted = [n for n in nodes if all((n["metadata"].get("labels") or {}).get(k) == v for k, v in sel.items())]
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
                tol = pod["spec"].setdefault("tolerations", [])
                for key, effect in (
                    ("node.kubernetes.io/not-ready", "NoExecute"),
                    ("node.kubernetes.io/unreachable", "NoExecute"),
                    ("node.kubernetes.io/disk-pressure", "NoSchedule"),
                    ("node.kubernetes.io/memory-pressure", "NoSchedule"),
                    ("node.kubernetes.io/pid-pressure", "NoSchedule"),
                    ("node.kubernetes.io/unschedulable", "NoSchedule"),
                ):
                    tol.append({"key": key, "operator": "Exists", "effect": effect})
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
            st: Obj = {
                "currentNumberScheduled": len(live),
                "desiredNumberScheduled": len(wanted),
                "numberMisscheduled": 0,
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

        from runtime.kube.cron import CronError, Schedule
        from runtime.kube.printers import parse_time

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
        """Whether this cluster has work that depends on the clock (CronJobs)."""
        return bool(self.c.store.objects.get("cronjobs.batch"))

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
            want = _quantity(((spec.get("resources") or {}).get("requests") or {}).get("storage", "0"))
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
                if _quantity((cs.get("capacity") or {}).get("storage", "0")) < want:
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
        from runtime.kube.apiserver import now_ts

        HPA = R["horizontalpodautoscalers.autoscaling"]
        kinds_ = {"Deployment": DEPLOY, "ReplicaSet": RS, "StatefulSet": R["statefulsets.apps"]}
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
        from runtime.kube.admission import quota_status

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
            healthy = sum(1 for p in pods if self._ready(p))
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
        from runtime.kube.apiserver import now_ts

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
            want_labels = dict(meta.get("labels") or {})
            if cur is None:
                ep: Obj = {
                    "apiVersion": "v1",
                    "kind": "Endpoints",
                    "metadata": {"name": name, "namespace": ns, "labels": want_labels},
                }
                if subsets:
                    ep["subsets"] = subsets
                self._create(EP, ep)
            elif (cur.get("subsets") or []) != subsets:
                n = copy.deepcopy(cur)
                if subsets:
                    n["subsets"] = subsets
                else:
                    n.pop("subsets", None)
                store.put(EP.gr, n, "MODIFIED")
        for ep in store.list(EP.gr):
            m = ep["metadata"]
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

    # replicaset controller -------------------------------------------------------------------

    def _replicasets(self) -> None:
        for rs in self.c.store.list(RS.gr):
            if rs["metadata"].get("deletionTimestamp"):
                continue
            self._sync_rs(rs)

    def _sync_rs(self, rs: Obj) -> None:
        ns = rs["metadata"]["namespace"]
        sel = selector_from_match(rs["spec"].get("selector"))
        pods = [
            p
            for p in self.c.store.list(PODS.gr, ns)
            if _controlled_by(p, rs) and not p["metadata"].get("deletionTimestamp")
        ]
        # adopt orphans that match
        for p in self.c.store.list(PODS.gr, ns):
            if not p["metadata"].get("ownerReferences") and sel(p) and not p["metadata"].get("deletionTimestamp"):
                n = copy.deepcopy(p)
                n["metadata"]["ownerReferences"] = [_owner_ref(rs)]
                pods.append(self.c.store.put(PODS.gr, n, "MODIFIED"))
        want = int(rs["spec"].get("replicas", 1))
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
                created = self._create_pod(rs, pod, "replicaset-controller")
                if created is None:
                    break
                self.event(
                    rs,
                    "Normal",
                    "SuccessfulCreate",
                    f"Created pod: {created['metadata']['name']}",
                    "replicaset-controller",
                )
        elif len(pods) > want:
            victims = sorted(pods, key=lambda p: p["metadata"]["creationTimestamp"], reverse=True)
            for p in victims[: len(pods) - want]:
                self.c.store.remove(PODS.gr, ns, p["metadata"]["name"])
                self.event(
                    rs, "Normal", "SuccessfulDelete", f"Deleted pod: {p['metadata']['name']}", "replicaset-controller"
                )
        cur = self.c.store.get(RS.gr, ns, rs["metadata"]["name"])
        if cur is None:
            return
        live = [p for p in self.c.store.list(PODS.gr, ns) if _controlled_by(p, cur)]
        ready = sum(
            1
            for p in live
            if any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in (p.get("status") or {}).get("conditions") or []
            )
        )
        labeled = sum(1 for p in live if sel(p))
        st: Obj = {"replicas": len(live)}
        if labeled:
            st["fullyLabeledReplicas"] = labeled
        if ready:
            st["readyReplicas"] = ready
            st["availableReplicas"] = ready
        st["observedGeneration"] = cur["metadata"].get("generation", 1)
        if st != cur.get("status"):
            n = copy.deepcopy(cur)
            n["status"] = st
            self.c.store.put(RS.gr, n, "MODIFIED")


_SUFFIX = {
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
    "m": 10**-3,
}


def _quantity(q: Any) -> float:
    s = str(q).strip()
    for suf in sorted(_SUFFIX, key=len, reverse=True):
        if s.endswith(suf):
            try:
                return float(s[: -len(suf)]) * _SUFFIX[suf]
            except ValueError:
                return 0.0
    try:
        return float(s)
    except ValueError:
        return 0.0


def _job_finished(j: Obj) -> str:
    for c in (j.get("status") or {}).get("conditions") or []:
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return str(c["type"])
    return ""


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


def _surge(spec: Obj, replicas: int) -> int:
    ru = (spec.get("strategy") or {}).get("rollingUpdate") or {}
    if (spec.get("strategy") or {}).get("type") == "Recreate":
        return 0
    return _pct(ru.get("maxSurge", "25%"), replicas, True)


def _unavailable(spec: Obj, replicas: int) -> int:
    ru = (spec.get("strategy") or {}).get("rollingUpdate") or {}
    if (spec.get("strategy") or {}).get("type") == "Recreate":
        return 0
    return _pct(ru.get("maxUnavailable", "25%"), replicas, False)


def _cond(old: Obj | None, typ: str, status: str, reason: str, message: str, ts: str) -> Obj:
    if old and old.get("status") == status and old.get("reason") == reason and old.get("message") == message:
        return old
    transition = old["lastTransitionTime"] if old and old.get("status") == status else ts
    return {
        "type": typ,
        "status": status,
        "lastUpdateTime": ts,
        "lastTransitionTime": transition,
        "reason": reason,
        "message": message,
    }
