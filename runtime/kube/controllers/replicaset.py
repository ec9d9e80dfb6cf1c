"""The ReplicaSet controller (pkg/controller/replicaset), which also runs ReplicationControllers."""

from __future__ import annotations

import copy

from runtime.kernel.clock import now_ts
from runtime.kube.controllers.base import (
    PODS,
    RC,
    RS,
    ControllerBase,
    controlled_by,
    epoch,
    owner_ref,
    pod_available,
    ready_since,
)
from runtime.kube.machinery.selectors import selector_from_match
from runtime.kube.meta import Obj
from runtime.kube.registry import ResourceDef


class ReplicaSetController(ControllerBase):
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
                self._adopt(p, rs)
        pods = [p for p in self.c.store.list(PODS.gr, ns) if controlled_by(p, rs) and _pod_active(p)]
        want = int(rs["spec"].get("replicas", 1))
        failure = ""
        if len(pods) < want:
            tmpl = rs["spec"]["template"]
            for _ in range(want - len(pods)):
                meta = copy.deepcopy(tmpl.get("metadata") or {})
                meta.pop("creationTimestamp", None)
                meta["generateName"] = rs["metadata"]["name"] + "-"
                meta["namespace"] = ns
                meta["ownerReferences"] = [owner_ref(rs)]
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
                self.delete_pod(ns, p["metadata"]["name"])
                self.event(rs, "Normal", "SuccessfulDelete", f"Deleted pod: {p['metadata']['name']}", component)
        cur = self.c.store.get(rdef.gr, ns, rs["metadata"]["name"])
        if cur is None:
            return
        owned = [p for p in self.c.store.list(PODS.gr, ns) if controlled_by(p, cur)]
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
            ("availableReplicas", sum(1 for p in live if pod_available(p, min_ready))),
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

            def set_status(n: Obj) -> bool:
                if n["metadata"]["uid"] != cur["metadata"]["uid"] or n.get("status") == st:
                    return False
                n["status"] = copy.deepcopy(st)
                return True

            self.client.modify(rdef, ns, cur["metadata"]["name"], set_status, status=True)

    def _adopt(self, pod: Obj, owner: Obj) -> None:
        """AdoptPod: the orphan, still matching and alive, gets its controller reference."""
        uid = pod["metadata"]["uid"]

        def adopt(n: Obj) -> bool:
            meta = n["metadata"]
            if meta["uid"] != uid or meta.get("ownerReferences") or meta.get("deletionTimestamp"):
                return False
            meta["ownerReferences"] = [owner_ref(owner)]
            return True

        self.client.modify(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"], adopt)


_FINISHED = ("Succeeded", "Failed")


def _pod_active(p: Obj) -> bool:
    """controller.IsPodActive: not terminating and not finished."""
    phase = (p.get("status") or {}).get("phase")
    return not p["metadata"].get("deletionTimestamp") and phase not in _FINISHED


def _has_labels(p: Obj, want: dict[str, str]) -> bool:
    labels = p["metadata"].get("labels") or {}
    return all(labels.get(k) == v for k, v in want.items())


def _deletion_rank(p: Obj) -> tuple[bool, int, bool, float, int, float]:
    """controller.ActivePods order, deleted first: unscheduled, pending, not ready, ready the
    shortest time, most restarts, newest."""
    st = p.get("status") or {}
    since = ready_since(p)
    restarts = max((int(c.get("restartCount", 0)) for c in st.get("containerStatuses") or []), default=0)
    return (
        bool((p.get("spec") or {}).get("nodeName")),
        {"Pending": 0, "Unknown": 1, "Running": 2}.get(str(st.get("phase", "")), 0),
        since is not None,
        -(since or 0.0),
        -restarts,
        -epoch(p["metadata"].get("creationTimestamp")),
    )
