"""kube-controller-manager's pod garbage collector (pkg/controller/podgc), for the lab clusters.

What upstream PodGC does, and what this module does, in the same order:

* orphaned pods: a pod bound (``spec.nodeName``) to a Node that no longer exists is first
  marked ``phase: Failed`` (unless already finished) with the condition
  ``DisruptionTarget=True``, reason ``DeletionByPodGC``, message
  "PodGC: node no longer exists", then force-deleted (grace period 0), so that its
  ReplicaSet/StatefulSet/Job makes a replacement which the scheduler binds to a remaining
  node. As upstream, only once the Node has been missing for the quarantine time (40 s,
  ``$KUBE_POD_GC_QUARANTINE`` here): a pod bound by hand to a Node not registered yet is
  left alone that long. The time a Node was first seen missing is kept per Controllers (in
  memory, one entry per missing node name that pods still reference); ``next_due`` wakes
  the reconcile when it has passed.
* unscheduled terminating pods: a pod with a ``deletionTimestamp`` and no ``nodeName`` (no
  kubelet will ever finish it) is force-deleted.
* terminated pods beyond ``--terminated-pod-gc-threshold`` (12500 by default;
  ``$KUBE_TERMINATED_POD_GC_THRESHOLD`` here, 0 disables it as upstream): the oldest
  ``Succeeded``/``Failed`` pods (by creationTimestamp) beyond the threshold are deleted.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from runtime.kernel.clock import now_ts
from runtime.kube import registry
from runtime.kube.machinery.apierrors import ApiError
from runtime.kube.meta import Obj

if TYPE_CHECKING:
    from runtime.kube.controllers.manager import Controllers

PODS = registry.BY_GR["pods"]
NODES = registry.BY_GR["nodes"]
COMPONENT = "pod-garbage-collector"
FINISHED = ("Succeeded", "Failed")
REASON = "DeletionByPodGC"
MESSAGE = "PodGC: node no longer exists"


def threshold() -> int:
    try:
        return max(0, int(os.environ.get("KUBE_TERMINATED_POD_GC_THRESHOLD", "12500")))
    except ValueError:
        return 12500


def _now() -> float:
    """The controller's clock (tests replace it, not the process's ``time.time``)."""
    return time.time()


def quarantine() -> float:
    try:
        return max(0.0, float(os.environ.get("KUBE_POD_GC_QUARANTINE", "40")))
    except ValueError:
        return 40.0


def _missing(ctl: Controllers) -> dict[str, float]:
    """Node name -> when it was first seen missing while pods were bound to it."""
    missing: dict[str, float] | None = getattr(ctl, "_podgc_missing", None)
    if missing is None:
        missing = {}
        ctl._podgc_missing = missing  # type: ignore[attr-defined]
    return missing


def _force_delete(ctl: Controllers, pod: Obj) -> None:
    """DELETE with gracePeriodSeconds 0 (upstream's podgc uses NewDeleteOptions(0)); a
    reconcile's own deletes must not mark the cluster dirty again (see ``delete_pod``)."""
    meta = pod["metadata"]
    with ctl.c.quiet_writes():
        try:
            ctl.c.delete(PODS, meta["namespace"], meta["name"], grace=0)
        except ApiError:
            return


def _mark_failed(ctl: Controllers, pod: Obj) -> None:
    """The status update upstream's markFailedAndDeletePodWithCondition makes before deleting."""
    meta = pod["metadata"]
    ctl.client.modify(PODS, meta["namespace"], meta["name"], lambda n: _failed(n, meta["uid"]), status=True)


def _failed(new: Obj, uid: str) -> bool:
    """Phase Failed (unless finished) and the DisruptionTarget condition; False: marked already."""
    status = new.get("status") or {}
    if new["metadata"]["uid"] != uid or (
        status.get("phase") in FINISHED
        and any(
            c.get("type") == "DisruptionTarget" and c.get("reason") == REASON for c in status.get("conditions") or []
        )
    ):
        return False  # marked already (or another pod now): no rewrite
    status = new.setdefault("status", {})
    if status.get("phase") not in FINISHED:
        status["phase"] = "Failed"
    conds = [c for c in status.get("conditions") or [] if c.get("type") != "DisruptionTarget"]
    conds.append(
        {
            "type": "DisruptionTarget",
            "status": "True",
            "reason": REASON,
            "message": MESSAGE,
            "lastTransitionTime": now_ts(),
        }
    )
    status["conditions"] = conds
    return True


def _orphaned(ctl: Controllers, now: float) -> None:
    store = ctl.c.store
    nodes = {n["metadata"]["name"] for n in store.list(NODES.gr)}
    missing = _missing(ctl)
    orphans = [
        p
        for p in store.list(PODS.gr)
        if (p.get("spec") or {}).get("nodeName") not in nodes | {None, ""}
        # deleting, held by a finalizer: a force delete would change nothing (and no busy loop)
        and not (p["metadata"].get("deletionTimestamp") and p["metadata"].get("finalizers"))
    ]
    referenced = {p["spec"]["nodeName"] for p in orphans}
    for name in list(missing):
        if name not in referenced:
            del missing[name]  # back, or no pod left on it: bounded by the pods that exist
    for name in referenced:
        missing.setdefault(name, now)
    wait = quarantine()
    for pod in orphans:
        if missing[pod["spec"]["nodeName"]] + wait > now:
            continue
        meta = pod["metadata"]
        _mark_failed(ctl, pod)
        current = store.get(PODS.gr, meta["namespace"], meta["name"])
        if current is not None:
            _force_delete(ctl, current)


def _unscheduled_terminating(ctl: Controllers) -> None:
    for pod in ctl.c.store.list(PODS.gr):
        if pod["metadata"].get("deletionTimestamp") and not (pod.get("spec") or {}).get("nodeName"):
            if pod["metadata"].get("finalizers"):
                continue  # a finalizer holds it whatever the grace: nothing to force
            _force_delete(ctl, pod)


def _terminated(ctl: Controllers) -> None:
    limit = threshold()
    if limit <= 0:
        return
    done = [
        p
        for p in ctl.c.store.list(PODS.gr)
        if (p.get("status") or {}).get("phase") in FINISHED and not p["metadata"].get("deletionTimestamp")
    ]
    if len(done) <= limit:
        return
    done.sort(key=lambda p: (p["metadata"].get("creationTimestamp") or "", p["metadata"]["name"]))
    for pod in done[: len(done) - limit]:
        _force_delete(ctl, pod)


def reconcile(ctl: Controllers) -> None:
    _terminated(ctl)
    _orphaned(ctl, _now())
    _unscheduled_terminating(ctl)


def next_due(ctl: Controllers) -> list[float]:
    """When a missing Node's quarantine ends (its pods are then collected)."""
    wait = quarantine()
    return [since + wait for since in _missing(ctl).values()]
