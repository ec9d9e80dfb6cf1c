"""kube-controller-manager's node lifecycle controller and its taint-based eviction.

``python -m runtime kube serve`` is the platform's Kubernetes in the scale-out test (issue
#17): the nodes there are registered by runtimed's node agents (runtime/placement.py), which
renew ``kube-node-lease/<node>`` every 10 s as a kubelet does. What the real controllers do
with that, and what this module does, in the same order:

* a node whose Lease was not renewed for ``grace`` seconds (``--node-monitor-grace-period``,
  40 s; ``$KUBE_NODE_MONITOR_GRACE_PERIOD`` here) gets its ``Ready`` condition set to
  ``Unknown`` (reason ``NodeStatusUnknown``, "Kubelet stopped posting node status.") and
  the taints ``node.kubernetes.io/unreachable`` ``NoSchedule`` (no new pods) and
  ``NoExecute`` (eviction); a node whose kubelet reports ``Ready=False`` gets
  ``node.kubernetes.io/not-ready`` likewise. The taints go away when the node is Ready again.
* taint eviction: a pod bound to a node with a ``NoExecute`` taint it does not tolerate is
  deleted at once; one that tolerates it for ``tolerationSeconds`` is deleted when that
  time has passed since the taint's ``timeAdded`` (event ``TaintManagerEviction``).
  This applies to every node, with a Lease or not (``kubectl taint ... :NoExecute`` in a lab).

Only nodes with a Lease are monitored for heartbeats: the lab clusters' own nodes are run by
the embedded kubelet (node/kubelet.py), which keeps no Lease; a controller that waited for one
would take every student's node out of service after 40 s.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from runtime.kernel.clock import format_ts, parse_micro_time
from runtime.kube import registry
from runtime.kube.meta import Obj

if TYPE_CHECKING:
    from runtime.kube.controllers.manager import Controllers

R = registry.BY_GR
PODS = R["pods"]
NODES = R["nodes"]
LEASES = R["leases.coordination.k8s.io"]
LEASE_NS = "kube-node-lease"
UNREACHABLE = "node.kubernetes.io/unreachable"
NOT_READY = "node.kubernetes.io/not-ready"
COMPONENT = "node-controller"


def grace() -> float:
    try:
        return max(1.0, float(os.environ.get("KUBE_NODE_MONITOR_GRACE_PERIOD", "40")))
    except ValueError:
        return 40.0


def _renewed(ctl: Controllers, node: str) -> float | None:
    lease = ctl.c.store.get(LEASES.gr, LEASE_NS, node)
    if lease is None:
        return None
    spec = lease.get("spec") or {}
    return parse_micro_time(spec.get("renewTime")) or parse_micro_time(spec.get("acquireTime")) or 0.0


def _ready(node: Obj) -> Obj | None:
    return next((c for c in (node.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"), None)


def _tolerates(taint: Obj, tolerations: list[Obj]) -> tuple[bool, float | None]:
    """(tolerated, for how many seconds; None: forever)."""
    best: tuple[bool, float | None] = (False, None)
    for t in tolerations:
        if t.get("effect") and t.get("effect") != taint.get("effect"):
            continue
        op = t.get("operator") or "Equal"
        if t.get("key") and t.get("key") != taint.get("key"):
            continue
        if not t.get("key") and op != "Exists":
            continue
        if op == "Equal" and (t.get("value") or "") != (taint.get("value") or ""):
            continue
        secs = t.get("tolerationSeconds")
        if secs is None:
            return True, None
        seconds = max(0.0, float(secs))
        if not best[0] or (best[1] is not None and seconds < best[1]):
            best = (True, seconds)
    return best


def _monitor(ctl: Controllers, now: float) -> None:
    """NotReady/unreachable conditions and taints of nodes with a Lease."""
    store = ctl.c.store
    for node in store.list(NODES.gr):
        name = node["metadata"]["name"]
        renewed = _renewed(ctl, name)
        if renewed is None:
            continue
        ready = _ready(node)
        stale = renewed + grace() < now
        status = "Unknown" if stale else (ready or {}).get("status", "Unknown")
        want = UNREACHABLE if status == "Unknown" else NOT_READY if status == "False" else None
        taints = list((node.get("spec") or {}).get("taints") or [])
        kept = [t for t in taints if t.get("key") not in (UNREACHABLE, NOT_READY) or t.get("key") == want]
        for effect in ("NoSchedule", "NoExecute") if want else ():
            # TaintNodesByCondition's NoSchedule keeps new pods off; the NoExecute evicts
            if not any(t.get("key") == want and t.get("effect") == effect for t in kept):
                kept.append({"key": want, "effect": effect, "timeAdded": format_ts(now)})
        if kept != taints:  # the taints: an update of the Node

            def set_taints(n: Obj, kept: list[Obj] = kept) -> bool:
                spec = n.setdefault("spec", {})
                if kept:
                    spec["taints"] = kept
                else:
                    spec.pop("taints", None)
                return True

            ctl.client.modify(NODES, "", name, set_taints)
        if stale and ready is not None and ready.get("status") != "Unknown":  # through the status subresource
            ctl.client.modify(NODES, "", name, lambda n: _mark_unknown(n, now), status=True)


def _mark_unknown(node: Obj, now: float) -> bool:
    """Every condition the kubelet no longer reports on: status Unknown, NodeStatusUnknown."""
    st = node.setdefault("status", {})
    conds = []
    for c in st.get("conditions") or []:
        c = dict(c)
        if c.get("status") != "Unknown":
            c.update(
                status="Unknown",
                reason="NodeStatusUnknown",
                message="Kubelet stopped posting node status.",
                lastTransitionTime=format_ts(now),
            )
        conds.append(c)
    st["conditions"] = conds
    return True


def _evict(ctl: Controllers, now: float) -> None:
    store = ctl.c.store
    nodes = {n["metadata"]["name"]: n for n in store.list(NODES.gr)}
    for pod in store.list(PODS.gr):
        meta, spec = pod["metadata"], pod.get("spec") or {}
        bound = spec.get("nodeName")
        if not bound or meta.get("deletionTimestamp"):
            continue
        node = nodes.get(bound)
        if node is None:
            continue
        due = _eviction_due(pod, node)
        if due is not None and due <= now:
            ctl.event(
                pod,
                "Normal",
                "TaintManagerEviction",
                f"Marking for deletion Pod {meta['namespace']}/{meta['name']}",
                "taint-eviction-controller",
            )
            ctl.delete_pod(meta["namespace"], meta["name"])


def _eviction_due(pod: Obj, node: Obj) -> float | None:
    """When the node's NoExecute taints evict ``pod`` (None: they never do)."""
    tolerations = list((pod.get("spec") or {}).get("tolerations") or [])
    due: float | None = None
    for taint in (node.get("spec") or {}).get("taints") or []:
        if taint.get("effect") != "NoExecute":
            continue
        ok, seconds = _tolerates(taint, tolerations)
        if not ok:
            return 0.0
        if seconds is None:
            continue
        added = parse_micro_time(taint.get("timeAdded")) or time.time()
        at = added + seconds
        due = at if due is None else min(due, at)
    return due


def reconcile(ctl: Controllers) -> None:
    now = time.time()
    _monitor(ctl, now)
    _evict(ctl, now)


def next_due(ctl: Controllers) -> list[float]:
    """When the clock alone changes what this controller does: a Lease running out, a
    toleration's seconds passing."""
    store = ctl.c.store
    due: list[float] = []
    nodes = {}
    for node in store.list(NODES.gr):
        name = node["metadata"]["name"]
        nodes[name] = node
        renewed = _renewed(ctl, name)
        if renewed is None:
            continue
        ready = _ready(node)
        if (ready or {}).get("status") != "Unknown":
            due.append(renewed + grace() + 0.001)
    for pod in store.list(PODS.gr):
        bound = nodes.get((pod.get("spec") or {}).get("nodeName") or "")
        if bound is None or pod["metadata"].get("deletionTimestamp"):
            continue
        at = _eviction_due(pod, bound)
        if at is not None:
            due.append(at)
    return due
