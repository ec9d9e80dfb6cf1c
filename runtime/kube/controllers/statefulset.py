"""The StatefulSet controller (pkg/controller/statefulset): ordered names, OrderedReady and
Parallel, rolling update from the top ordinal, partition, ControllerRevision history.
"""

from __future__ import annotations

import copy

from runtime.kube.controllers.base import (
    CR,
    POD_REVISION,
    PODS,
    ControllerBase,
    R,
    controlled_by,
    pod_available,
    ready_since,
)
from runtime.kube.meta import Obj
from runtime.kube.registry import ResourceDef


def _ordinal(pod_name: str) -> int:
    tail = pod_name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else -1


class StatefulSetController(ControllerBase):
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
        pods = {p["metadata"]["name"]: p for p in self.c.store.list(PODS.gr, ns) if controlled_by(p, sts)}
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
            self.delete_pod(ns, pname)
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
        live = [p for p in self.c.store.list(PODS.gr, ns) if controlled_by(p, sts)]
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
            "availableReplicas": sum(1 for p in live if _running_ready(p) and pod_available(p, min_ready)),
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
            self.client.update_status(STS, n)


def _running_ready(p: Obj) -> bool:
    """isRunningAndReady: phase Running and the Ready condition True."""
    return (p.get("status") or {}).get("phase") == "Running" and ready_since(p) is not None
