"""The lab cluster's scheduler: binds Pending pods to a node, or says why it cannot.

It runs in the controllers' reconcile loop (after every write), on every pod with no
``spec.nodeName`` whose ``schedulerName`` is ``default-scheduler``, and applies the filter
plugins of kube-scheduler that a lab can exercise, in kube-scheduler's order, stopping at a
node's first failure as kube-scheduler does:

``NodeUnschedulable``  ``kubectl cordon`` (unless the pod tolerates
                       ``node.kubernetes.io/unschedulable:NoSchedule``);
``TaintToleration``    ``NoSchedule``/``NoExecute`` taints the pod does not tolerate;
``NodeAffinity``       ``nodeSelector`` and required node affinity (``matchExpressions``
                       In/NotIn/Exists/DoesNotExist/Gt/Lt, ``matchFields`` on
                       ``metadata.name``);
``NodeResourcesFit``   requests (cpu, memory, ephemeral-storage; a pod's request is the
                       larger of its containers' sum and any init container's) against the
                       node's allocatable minus what its pods already requested, and the
                       node's pod count.

A pod that fits is bound like ``POST pods/binding``: ``spec.nodeName``, the condition
``PodScheduled=True`` and the ``Scheduled`` event. One that does not fit gets
``PodScheduled=False`` (reason ``Unschedulable``) and a ``FailedScheduling`` warning with
kube-scheduler's own message, e.g. ``0/1 nodes are available: 1 Insufficient cpu.
preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.``; the
pod is tried again after every change (a label, a taint removed, a pod deleted), and the
event is recorded once per distinct message. Among feasible nodes the one with the fewest
untolerated ``PreferNoSchedule`` taints and then the most free cpu wins.

Pods stay ``Pending`` after binding until a kubelet runs them (part 2).
"""

from __future__ import annotations

import copy
from collections import Counter
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from runtime.kube import registry
from runtime.kube.quantity import Quantity, QuantityError

if TYPE_CHECKING:
    from runtime.kube.controllers import Controllers

Obj = dict[str, Any]

SCHEDULER = "default-scheduler"
RESOURCES = ("cpu", "memory", "ephemeral-storage")
NOT_HELPFUL = "Preemption is not helpful for scheduling"
NO_VICTIMS = "No preemption victims found for incoming pod"
UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"

R = registry.BY_GR
PODS = R["pods"]
NODES = R["nodes"]
EVENTS = R["events"]


def schedule(ctl: Controllers) -> None:
    """Bind every schedulable pending pod; record why the others wait."""
    store = ctl.c.store
    pending = [
        p
        for p in store.list(PODS.gr)
        if not (p.get("spec") or {}).get("nodeName")
        and not p["metadata"].get("deletionTimestamp")
        and (p.get("spec") or {}).get("schedulerName", SCHEDULER) == SCHEDULER
        and (p.get("status") or {}).get("phase", "Pending") == "Pending"
    ]
    if not pending:
        return
    nodes = store.list(NODES.gr)
    pending.sort(key=lambda p: (p["metadata"].get("creationTimestamp", ""), p["metadata"]["name"]))
    for pod in pending:
        fits: list[tuple[int, Fraction, str]] = []
        reasons: Counter[str] = Counter()
        unresolvable = 0
        pods = store.list(PODS.gr)  # again for each pod: the one bound before counts now
        for node in nodes:
            why, final = _filter(pod, node, pods)
            if not why:
                fits.append((_prefer_no_schedule(pod, node), -_free(node, pods, "cpu"), _name(node)))
                continue
            reasons.update(why)
            unresolvable += final
        if fits:
            _bind(ctl, pod, min(fits)[2])
        else:
            _unschedulable(ctl, pod, _message(len(nodes), reasons, unresolvable))


# -- filters ------------------------------------------------------------------------------------


def _filter(pod: Obj, node: Obj, pods: list[Obj]) -> tuple[list[str], bool]:
    """The first failing filter's reasons for this node ([] if the pod fits), and whether
    the failure is one preemption cannot cure (UnschedulableAndUnresolvable)."""
    spec = pod.get("spec") or {}
    tolerations = spec.get("tolerations") or []
    if (node.get("spec") or {}).get("unschedulable") and not _tolerated(
        {"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule"}, tolerations
    ):
        return ["node(s) were unschedulable"], True
    for taint in (node.get("spec") or {}).get("taints") or []:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not _tolerated(taint, tolerations):
            return [f"node(s) had untolerated taint {{{taint.get('key', '')}: {taint.get('value', '')}}}"], True
    if not _affinity_matches(spec, node):
        return ["node(s) didn't match Pod's node affinity/selector"], True
    insufficient = _insufficient(pod, node, pods)
    return insufficient, False


def _tolerated(taint: Obj, tolerations: list[Obj]) -> bool:
    for t in tolerations:
        if t.get("effect") and t["effect"] != taint.get("effect"):
            continue
        op = t.get("operator") or "Equal"
        if not t.get("key") and op == "Exists":
            return True
        if t.get("key") != taint.get("key"):
            continue
        if op == "Exists" or str(t.get("value") or "") == str(taint.get("value") or ""):
            return True
    return False


def _prefer_no_schedule(pod: Obj, node: Obj) -> int:
    tolerations = (pod.get("spec") or {}).get("tolerations") or []
    return sum(
        1
        for taint in (node.get("spec") or {}).get("taints") or []
        if taint.get("effect") == "PreferNoSchedule" and not _tolerated(taint, tolerations)
    )


def _affinity_matches(spec: Obj, node: Obj) -> bool:
    labels = node["metadata"].get("labels") or {}
    if any(labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
        return False
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    )
    if not required:
        return True
    # terms are ORed, the requirements of one term ANDed; an empty term matches nothing
    for term in required.get("nodeSelectorTerms") or []:
        exprs = term.get("matchExpressions") or []
        fields = term.get("matchFields") or []
        if not exprs and not fields:
            continue
        if all(_requirement(e, labels) for e in exprs) and all(
            _requirement(f, {"metadata.name": _name(node)}) for f in fields
        ):
            return True
    return False


def _requirement(req: Obj, labels: dict[str, str]) -> bool:
    key, op, values = req.get("key", ""), req.get("operator", ""), [str(v) for v in req.get("values") or []]
    have = key in labels
    if op == "In":
        return have and labels[key] in values
    if op == "NotIn":
        return not have or labels[key] not in values
    if op == "Exists":
        return have
    if op == "DoesNotExist":
        return not have
    if op in ("Gt", "Lt") and have and len(values) == 1:
        try:
            mine, theirs = int(labels[key]), int(values[0])
        except ValueError:
            return False
        return mine > theirs if op == "Gt" else mine < theirs
    return False


def _insufficient(pod: Obj, node: Obj, pods: list[Obj]) -> list[str]:
    name = _name(node)
    on_node = [p for p in pods if _bound_to(p, name)]
    allocatable = (node.get("status") or {}).get("allocatable") or {}
    reasons = []
    max_pods = _quantity(allocatable.get("pods", "110"))
    if len(on_node) + 1 > max_pods:
        reasons.append("Too many pods")
    want = pod_requests(pod)
    for resource in RESOURCES:
        if want.get(resource, 0) == 0:
            continue
        used = sum((pod_requests(p).get(resource, Fraction(0)) for p in on_node), Fraction(0))
        if used + want[resource] > _quantity(allocatable.get(resource, "0")):
            reasons.append(f"Insufficient {resource}")
    return reasons


def _free(node: Obj, pods: list[Obj], resource: str) -> Fraction:
    allocatable = _quantity(((node.get("status") or {}).get("allocatable") or {}).get(resource, "0"))
    used = sum(
        (pod_requests(p).get(resource, Fraction(0)) for p in pods if _bound_to(p, _name(node))),
        Fraction(0),
    )
    return allocatable - used


def pod_requests(pod: Obj) -> dict[str, Fraction]:
    """What a pod asks of its node: per resource, the larger of the sum over its containers
    and the largest init container (a container's limit stands in for a missing request)."""
    spec = pod.get("spec") or {}
    total: dict[str, Fraction] = {}
    for c in spec.get("containers") or []:
        for resource, value in _container_requests(c).items():
            total[resource] = total.get(resource, Fraction(0)) + value
    for c in spec.get("initContainers") or []:
        for resource, value in _container_requests(c).items():
            total[resource] = max(total.get(resource, Fraction(0)), value)
    return total


def _container_requests(container: Obj) -> dict[str, Fraction]:
    res = container.get("resources") or {}
    requests, limits = res.get("requests") or {}, res.get("limits") or {}
    out = {}
    for resource in RESOURCES:
        raw = requests.get(resource, limits.get(resource))
        if raw is not None:
            out[resource] = _quantity(raw)
    return out


def _quantity(raw: Any) -> Fraction:
    try:
        return Quantity.parse(raw).value
    except QuantityError:
        return Fraction(0)


def _bound_to(pod: Obj, node: str) -> bool:
    return (pod.get("spec") or {}).get("nodeName") == node and (pod.get("status") or {}).get("phase") not in (
        "Succeeded",
        "Failed",
    )


def _name(node: Obj) -> str:
    return str(node["metadata"]["name"])


# -- outcomes -----------------------------------------------------------------------------------


def _message(nodes: int, reasons: Counter[str], unresolvable: int) -> str:
    """kube-scheduler's FitError text followed by the preemption post-filter's."""
    if not nodes:
        return "no nodes available to schedule pods"
    parts = sorted(f"{count} {reason}" for reason, count in reasons.items())
    post: list[str] = []
    if unresolvable:
        post.append(f"{unresolvable} {NOT_HELPFUL}")
    if nodes - unresolvable:
        post.append(f"{nodes - unresolvable} {NO_VICTIMS}")
    return (
        f"0/{nodes} nodes are available: {', '.join(parts)}. "
        f"preemption: 0/{nodes} nodes are available: {', '.join(sorted(post))}."
    )


def _bind(ctl: Controllers, pod: Obj, node: str) -> None:
    from runtime.kube.apiserver import now_ts

    meta = pod["metadata"]
    bound = copy.deepcopy(pod)
    bound["spec"]["nodeName"] = node
    _set_condition(bound, {"type": "PodScheduled", "status": "True", "lastProbeTime": None}, now_ts())
    ctl.c.store.put(PODS.gr, bound, "MODIFIED")
    ctl.event(
        bound, "Normal", "Scheduled", f"Successfully assigned {meta['namespace']}/{meta['name']} to {node}", SCHEDULER
    )


def _unschedulable(ctl: Controllers, pod: Obj, message: str) -> None:
    from runtime.kube.apiserver import now_ts

    conds = (pod.get("status") or {}).get("conditions") or []
    old = next((c for c in conds if c.get("type") == "PodScheduled"), None)
    if old is not None and old.get("status") == "False" and old.get("message") == message:
        return  # already said; the next change to the cluster may make it fit
    waiting = copy.deepcopy(pod)
    cond = {
        "type": "PodScheduled",
        "status": "False",
        "lastProbeTime": None,
        "reason": "Unschedulable",
        "message": message,
    }
    _set_condition(waiting, cond, now_ts())
    ctl.c.store.put(PODS.gr, waiting, "MODIFIED")
    ctl.event(waiting, "Warning", "FailedScheduling", message, SCHEDULER)


def _set_condition(pod: Obj, cond: Obj, ts: str) -> None:
    status = pod.setdefault("status", {})
    conds = [c for c in status.get("conditions") or [] if c.get("type") != cond["type"]]
    old = next((c for c in status.get("conditions") or [] if c.get("type") == cond["type"]), None)
    cond["lastTransitionTime"] = old["lastTransitionTime"] if old and old.get("status") == cond["status"] else ts
    status["conditions"] = [*conds, cond]
