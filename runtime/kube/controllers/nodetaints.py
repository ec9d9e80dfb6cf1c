"""The node lifecycle controller's NoSchedule tainting pass (``doNoScheduleTaintingPass``).

A node whose ``spec.unschedulable`` is true (``kubectl cordon``, ``kubectl drain``) carries
the taint ``node.kubernetes.io/unschedulable:NoSchedule``, and loses it on ``kubectl
uncordon``. The API server never adds it; kube-controller-manager does, so ``kubectl
describe node`` of a cordoned node shows both ``Unschedulable: true`` and the taint.

Kept apart from controllers/nodelifecycle.py (Lease monitoring and taint-based eviction) so that the two
can change independently; upstream both passes live in one controller.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runtime.kernel.clock import now_ts
from runtime.kube import registry
from runtime.kube.meta import Obj
from runtime.kube.scheduler import UNSCHEDULABLE_TAINT

if TYPE_CHECKING:
    from runtime.kube.controllers.manager import Controllers


NODES = registry.BY_GR["nodes"]


def reconcile(ctl: Controllers) -> None:
    for node in ctl.c.store.list(NODES.gr):
        spec = node.get("spec") or {}
        taints = list(spec.get("taints") or [])
        has = any(t.get("key") == UNSCHEDULABLE_TAINT and t.get("effect") == "NoSchedule" for t in taints)
        want = bool(spec.get("unschedulable"))
        if has == want:
            continue
        ctl.client.modify(NODES, "", node["metadata"]["name"], _set_unschedulable_taint)


def _set_unschedulable_taint(node: Obj) -> bool:
    """The unschedulable taint as spec.unschedulable says (False: already so)."""
    spec = node.setdefault("spec", {})
    taints = list(spec.get("taints") or [])
    has = any(t.get("key") == UNSCHEDULABLE_TAINT and t.get("effect") == "NoSchedule" for t in taints)
    want = bool(spec.get("unschedulable"))
    if has == want:
        return False
    if want:
        taints.append({"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule", "timeAdded": now_ts()})
    else:
        taints = [t for t in taints if t.get("key") != UNSCHEDULABLE_TAINT]
    if taints:
        spec["taints"] = taints
    else:
        spec.pop("taints", None)
    return True
