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
                       node's pod count;
``PodTopologySpread``  ``topologySpreadConstraints`` with ``whenUnsatisfiable:
                       DoNotSchedule`` (maxSkew, minDomains, matchLabelKeys; domains are the
                       values of ``topologyKey`` on the nodes that pass the pod's node
                       affinity, as ``nodeAffinityPolicy: Honor`` says);
``InterPodAffinity``   required pod affinity and anti-affinity (any ``topologyKey``,
                       ``kubernetes.io/hostname`` in the labs; ``namespaces``,
                       ``namespaceSelector``, ``matchLabelKeys``), and the required
                       anti-affinity of pods already running.

A pod that fits is bound like ``POST pods/binding``: ``spec.nodeName``, the condition
``PodScheduled=True`` and the ``Scheduled`` event. One that does not fit gets
``PodScheduled=False`` (reason ``Unschedulable``) and a ``FailedScheduling`` warning with
kube-scheduler's own message, e.g. ``0/3 nodes are available: 1 node(s) had untolerated taint
{node-role.kubernetes.io/control-plane: }, 2 node(s) didn't match pod anti-affinity rules.
preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, 2 No
preemption victims found for incoming pod.``, recorded once per distinct message. Like
kube-scheduler's unschedulable queue (``Queue``), such a pod is tried again only when the pod
itself changes, when a Node, a Namespace or a pod on a node changes (a label, a taint removed,
a pod deleted), or when its backoff runs out (1 s doubling to 10 s, podInitialBackoffSeconds
and podMaxBackoffSeconds); one reconcile tries at most ``MAX_PER_PASS`` pods, the rest are due
at once for the next pass (``next_due``), and the placed pods are listed once per pass. So a
Deployment of thousands of replicas that cannot fit costs bounded work per request on the event
loop every cluster shares.

Among feasible nodes the score plugins of kube-scheduler's default profile pick, each
normalised to 0..100 and weighted as there: TaintToleration (3, fewer untolerated
``PreferNoSchedule`` taints), NodeAffinity (2, preferred node affinity weights),
PodTopologySpread (2, ``ScheduleAnyway`` constraints, or else the system default: spread a
controller's pods over hostnames), InterPodAffinity (2, preferred pod (anti-)affinity) and
NodeResourcesFit (1, LeastAllocated over cpu and memory, a pod without requests counting as
100m and 200Mi as kube-scheduler counts it). kube-scheduler breaks a tie at random; here the
node first by name wins, so a test sees the same choice every run.

Pods stay ``Pending`` after binding until a kubelet runs them (part 2).
"""

from __future__ import annotations

import copy
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Protocol

from runtime.kernel.clock import now_ts
from runtime.kube import registry
from runtime.kube.machinery.apierrors import ApiError
from runtime.kube.machinery.quantity import Quantity
from runtime.kube.machinery.selectors import selector_from_match
from runtime.kube.meta import Obj

if TYPE_CHECKING:
    from runtime.kube.apiserver.store import Store
    from runtime.kube.registry import ResourceDef


SCHEDULER = "default-scheduler"
RESOURCES = ("cpu", "memory", "ephemeral-storage")
NOT_HELPFUL = "Preemption is not helpful for scheduling"
NO_VICTIMS = "No preemption victims found for incoming pod"
UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"

R = registry.BY_GR
PODS = R["pods"]
NODES = R["nodes"]
EVENTS = R["events"]
NAMESPACES = R["namespaces"]
HOSTNAME = "kubernetes.io/hostname"
# kube-scheduler's non-zero defaults for a pod without requests (LeastAllocated scoring)
DEFAULT_CPU = Fraction(1, 10)
DEFAULT_MEMORY = Fraction(200 * 2**20)


# the scheduling queue (kube-scheduler's activeQ/backoffQ/unschedulablePods, simplified)
INITIAL_BACKOFF = 1.0  # podInitialBackoffSeconds
MAX_BACKOFF = 10.0  # podMaxBackoffSeconds
MAX_PER_PASS = 64  # pods tried per reconcile; the rest are due at once (next_due), tried next time


@dataclass
class _Waiting:
    """A pod that failed to schedule: its resourceVersion after the failure, and when its
    backoff runs out."""

    rv: str
    attempts: int
    retry_at: float


class Queue:
    """Per cluster: the pods that did not fit, and the state of the cluster they did not fit
    in. A pod is tried again only when it changed, when a Node, Namespace or placed pod
    changed (``sig``), or when its backoff (1 s doubling to 10 s) ran out; so one student's
    5000 unschedulable replicas cost a bounded amount of work per request, not O(pending x pods)."""

    def __init__(self) -> None:
        self.sig: int | None = None
        self.waiting: dict[str, _Waiting] = {}
        self.leftover = False  # more pods were due than one pass may try
        self.budget = MAX_PER_PASS  # pods still to try in this reconcile (Controllers.reconcile resets it)

    def next_due(self) -> float | None:
        if self.leftover:
            return time.time()
        return min((w.retry_at for w in self.waiting.values()), default=None)


class EventRecorder(Protocol):
    """Records an Event about ``obj`` (client-go's record.EventRecorder.Event), as the scheduler."""

    def event(self, obj: Obj, typ: str, reason: str, message: str) -> None: ...


class Writer(Protocol):
    """What the scheduler writes through: an API client with its identity (apiserver/client.py)."""

    def bind(self, pod: Obj, node: str) -> Obj: ...

    def update_status(self, rdef: ResourceDef, obj: Obj) -> Obj: ...


def _signature(nodes: list[Obj], placed: list[Obj], namespaces: dict[str, Obj]) -> int:
    """What could make a waiting pod fit: the nodes, the namespaces (namespaceSelector) and
    the pods on nodes, by resourceVersion."""
    return hash(
        (
            tuple((_name(n), n["metadata"].get("resourceVersion")) for n in nodes),
            tuple((k, v["metadata"].get("resourceVersion")) for k, v in sorted(namespaces.items())),
            tuple((p["metadata"].get("uid"), p["metadata"].get("resourceVersion")) for p in placed),
        )
    )


def schedule(store: Store, queue: Queue, client: Writer, events: EventRecorder) -> None:
    """Bind the schedulable pending pods that are due (read from ``store``, written through
    ``client``); record why the others wait."""
    all_pods = store.list(PODS.gr)
    pending = [
        p
        for p in all_pods
        if not (p.get("spec") or {}).get("nodeName")
        and not p["metadata"].get("deletionTimestamp")
        and (p.get("spec") or {}).get("schedulerName", SCHEDULER) == SCHEDULER
        and (p.get("status") or {}).get("phase", "Pending") == "Pending"
    ]
    queue.leftover = False
    if not pending:
        queue.waiting.clear()
        return
    nodes = sorted(store.list(NODES.gr), key=_name)
    names = {_name(n) for n in nodes}
    namespaces = {n["metadata"]["name"]: n for n in store.list(NAMESPACES.gr)}
    # the snapshot of placed pods, once per pass; a pod bound below joins it
    placed = [
        p
        for p in all_pods
        if (p.get("spec") or {}).get("nodeName") in names
        and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
    ]
    sig = _signature(nodes, placed, namespaces)
    if sig != queue.sig:  # something that could make a waiting pod fit changed: all are due
        queue.sig = sig
        queue.waiting.clear()
    uids = {p["metadata"].get("uid") for p in pending}
    for uid in [u for u in queue.waiting if u not in uids]:
        del queue.waiting[uid]
    now = time.time()
    due = []
    for p in pending:
        w = queue.waiting.get(p["metadata"].get("uid"))
        if w is None or w.rv != p["metadata"].get("resourceVersion") or w.retry_at <= now:
            due.append(p)
    # pods not tried yet (or changed) before those whose backoff ran out, then oldest first
    due.sort(
        key=lambda p: (
            p["metadata"].get("uid") in queue.waiting,
            p["metadata"].get("creationTimestamp", ""),
            p["metadata"]["name"],
        )
    )
    if len(due) > queue.budget:
        due, queue.leftover = due[: queue.budget], True
    queue.budget -= len(due)
    for pod in due:
        reasons: Counter[str] = Counter()
        unresolvable = 0
        cycle = _Cycle(pod, nodes, placed, namespaces)
        feasible = []
        for node in nodes:
            why, final = _filter(pod, node, cycle)
            if not why:
                feasible.append(node)
                continue
            reasons.update(why)
            unresolvable += final
        uid = str(pod["metadata"].get("uid"))
        if feasible:
            bound = _bind(client, events, pod, _best(pod, feasible, cycle))
            if bound is not None:
                placed.append(bound)
            queue.waiting.pop(uid, None)
        else:
            rv = _unschedulable(client, events, pod, _message(len(nodes), reasons, unresolvable))
            old = queue.waiting.get(uid)
            attempts = old.attempts + 1 if old else 1
            backoff = min(MAX_BACKOFF, INITIAL_BACKOFF * 2 ** (attempts - 1))
            queue.waiting[uid] = _Waiting(rv, attempts, time.time() + backoff)


# -- filters ------------------------------------------------------------------------------------


def _filter(pod: Obj, node: Obj, cycle: _Cycle) -> tuple[list[str], bool]:
    """The first failing filter's reasons for this node ([] if the pod fits), and whether
    the failure is one preemption cannot cure (UnschedulableAndUnresolvable)."""
    spec = pod.get("spec") or {}
    tolerations = spec.get("tolerations") or []
    if (node.get("spec") or {}).get("unschedulable") and not tolerated(
        {"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule"}, tolerations
    ):
        return ["node(s) were unschedulable"], True
    for taint in (node.get("spec") or {}).get("taints") or []:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not tolerated(taint, tolerations):
            return [f"node(s) had untolerated taint {{{taint.get('key', '')}: {taint.get('value', '')}}}"], True
    if not affinity_matches(spec, node):
        return ["node(s) didn't match Pod's node affinity/selector"], True
    insufficient = _insufficient(pod, node, cycle.by_node.get(_name(node), []))
    if insufficient:
        return insufficient, False
    spread = cycle.spread_filter(node)
    if spread:
        return [spread[0]], spread[1]
    inter = cycle.inter_pod_filter(node)
    if inter:
        return [inter[0]], inter[1]
    return [], False


def tolerated(taint: Obj, tolerations: list[Obj]) -> bool:
    """Whether one of ``tolerations`` tolerates ``taint`` (v1.Toleration.ToleratesTaint)."""
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
        if taint.get("effect") == "PreferNoSchedule" and not tolerated(taint, tolerations)
    )


def affinity_matches(spec: Obj, node: Obj) -> bool:
    """``nodeSelector`` and required node affinity of a pod spec against ``node``."""
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


def _insufficient(pod: Obj, node: Obj, on_node: list[Obj]) -> list[str]:
    """NodeResourcesFit's reasons, given the pods already on the node."""
    allocatable = (node.get("status") or {}).get("allocatable") or {}
    reasons = []
    max_pods = Quantity.parse(allocatable.get("pods", "110")).value
    if len(on_node) + 1 > max_pods:
        reasons.append("Too many pods")
    want = pod_requests(pod)
    for resource in RESOURCES:
        if want.get(resource, 0) == 0:
            continue
        used = sum((pod_requests(p).get(resource, Fraction(0)) for p in on_node), Fraction(0))
        if used + want[resource] > Quantity.parse(allocatable.get(resource, "0")).value:
            reasons.append(f"Insufficient {resource}")
    return reasons


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
            out[resource] = Quantity.parse(raw).value
    return out


def _name(node: Obj) -> str:
    return str(node["metadata"]["name"])


# -- pod topology: spread constraints and inter-pod (anti-)affinity -------------------------------


def _selector(sel: Any, pod: Obj, match_keys: Any = None, mismatch_keys: Any = None) -> Callable[[Obj], bool]:
    """A LabelSelector as a predicate over pods: ``null`` matches nothing, ``{}`` everything;
    ``matchLabelKeys``/``mismatchLabelKeys`` add ``key in/notin (the pod's value)``."""
    if not isinstance(sel, dict):
        return lambda _p: False
    sel = copy.deepcopy(sel)
    labels = pod["metadata"].get("labels") or {}
    exprs = sel.setdefault("matchExpressions", [])
    for key in match_keys or []:
        if key in labels:
            exprs.append({"key": key, "operator": "In", "values": [labels[key]]})
    for key in mismatch_keys or []:
        if key in labels:
            exprs.append({"key": key, "operator": "NotIn", "values": [labels[key]]})
    if not sel.get("matchLabels") and not exprs:
        return lambda _p: True
    return selector_from_match(sel)


@dataclass
class _Term:
    """One PodAffinityTerm of ``owner``: which pods it selects, and over which topology."""

    key: str
    selects: Callable[[Obj], bool]
    namespaces: Callable[[str], bool]
    weight: int = 0

    def matches(self, pod: Obj) -> bool:
        return self.namespaces(pod["metadata"].get("namespace", "")) and self.selects(pod)


def _terms(owner: Obj, kind: str, required: bool, namespaces: dict[str, Obj]) -> list[_Term]:
    """``owner``'s podAffinity or podAntiAffinity terms (required, or preferred with weights)."""
    aff = (((owner.get("spec") or {}).get("affinity") or {}).get(kind)) or {}
    raw = (
        aff.get("requiredDuringSchedulingIgnoredDuringExecution")
        if required
        else aff.get("preferredDuringSchedulingIgnoredDuringExecution")
    ) or []
    out = []
    for item in raw:
        if not isinstance(item, dict):
            continue
        term = item if required else (item.get("podAffinityTerm") or {})
        weight = 0 if required else int(item.get("weight") or 0)
        names = set(term.get("namespaces") or [])
        ns_sel = term.get("namespaceSelector")
        own_ns = owner["metadata"].get("namespace", "")
        if not names and ns_sel is None:
            names = {own_ns}
        by_sel = _selector(ns_sel, owner) if ns_sel is not None else (lambda _o: False)

        def in_namespaces(ns: str, names: set[str] = names, by_sel: Callable[[Obj], bool] = by_sel) -> bool:
            return ns in names or (ns in namespaces and by_sel(namespaces[ns]))

        out.append(
            _Term(
                key=str(term.get("topologyKey") or ""),
                selects=_selector(
                    term.get("labelSelector"), owner, term.get("matchLabelKeys"), term.get("mismatchLabelKeys")
                ),
                namespaces=in_namespaces,
                weight=weight,
            )
        )
    return out


class _Cycle:
    """What one scheduling cycle of one pod knows about the cluster (PreFilter/PreScore state):
    the pods already placed, and the topology domains their nodes are in."""

    def __init__(self, pod: Obj, nodes: list[Obj], pods: list[Obj], namespaces: dict[str, Obj]) -> None:
        self.pod = pod
        self.nodes = {_name(n): n for n in nodes}
        self.namespaces = namespaces
        self.placed = [
            p
            for p in pods
            if (p.get("spec") or {}).get("nodeName") in self.nodes
            and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
            and p["metadata"].get("uid") != pod["metadata"].get("uid")
        ]
        # the required anti-affinity of pods already placed, once per cycle (most have none)
        self.existing_anti = [
            (p, term)
            for p in self.placed
            if ((p.get("spec") or {}).get("affinity") or {}).get("podAntiAffinity")
            for term in _terms(p, "podAntiAffinity", True, namespaces)
        ]
        self.affinity = _terms(pod, "podAffinity", True, namespaces)
        self.anti = _terms(pod, "podAntiAffinity", True, namespaces)
        # what the filters and scores ask per node, worked out once per cycle so that a
        # cycle costs O(nodes + pods), not O(nodes x pods) (the API server's loop runs it)
        self.by_node: dict[str, list[Obj]] = {}
        for p in self.placed:
            self.by_node.setdefault(p["spec"]["nodeName"], []).append(p)
        self.anti_domains = [self._matching_domains(t) for t in self.anti]
        self.affinity_domains = [self._matching_domains(t) for t in self.affinity]
        self.blocked = {
            (term.key, value)
            for p, term in self.existing_anti
            if term.matches(pod) and (value := self._pod_domain(p, term.key)) is not None
        }
        self._counts: dict[int, tuple[Counter[str], Callable[[Obj], bool]]] = {}
        self._preferred: list[tuple[str, int, Counter[str]]] | None = None
        self.hostnames = len({self.domain(n, HOSTNAME) for n in self.nodes.values()} - {None})
        self.spread = [
            c
            for c in (pod.get("spec") or {}).get("topologySpreadConstraints") or []
            if isinstance(c, dict) and c.get("whenUnsatisfiable", "DoNotSchedule") == "DoNotSchedule"
        ]

    def domain(self, node: Obj, key: str) -> str | None:
        labels = node["metadata"].get("labels") or {}
        return labels.get(key) if key in labels else None

    def _pod_domain(self, p: Obj, key: str) -> str | None:
        return self.domain(self.nodes[p["spec"]["nodeName"]], key)

    def _matching_domains(self, term: _Term) -> set[str]:
        """The values of ``term``'s topology key on the nodes of the pods it selects."""
        return {value for p in self.placed if term.matches(p) and (value := self._pod_domain(p, term.key)) is not None}

    # PodTopologySpread (filtering.go) --------------------------------------------------------
    def _spread_counts(self, c: Obj) -> tuple[Counter[str], Callable[[Obj], bool]]:
        """Matching pods per domain of constraint ``c``, over the nodes the pod's node affinity
        admits (nodeAffinityPolicy Honor) and, with nodeTaintsPolicy Honor, tolerates."""
        if id(c) not in self._counts:
            self._counts[id(c)] = self._count_spread(c)
        return self._counts[id(c)]

    def _count_spread(self, c: Obj) -> tuple[Counter[str], Callable[[Obj], bool]]:
        key = str(c.get("topologyKey") or "")
        ns = self.pod["metadata"].get("namespace", "")
        selects = _selector(c.get("labelSelector"), self.pod, c.get("matchLabelKeys"))
        spec = self.pod.get("spec") or {}
        counts: Counter[str] = Counter()
        for node in self.nodes.values():
            if c.get("nodeAffinityPolicy", "Honor") == "Honor" and not affinity_matches(spec, node):
                continue
            if c.get("nodeTaintsPolicy", "Ignore") == "Honor" and not all(
                tolerated(t, spec.get("tolerations") or [])
                for t in (node.get("spec") or {}).get("taints") or []
                if t.get("effect") in ("NoSchedule", "NoExecute")
            ):
                continue
            value = self.domain(node, key)
            if value is not None:
                counts.setdefault(value, 0)
        for p in self.placed:
            value = self._pod_domain(p, key)
            if (
                value is not None
                and value in counts
                and p["metadata"].get("namespace") == ns
                and not p["metadata"].get("deletionTimestamp")
                and selects(p)
            ):
                counts[value] += 1
        return counts, selects

    def spread_filter(self, node: Obj) -> tuple[str, bool] | None:
        for c in self.spread:
            key = str(c.get("topologyKey") or "")
            value = self.domain(node, key)
            if value is None:
                return "node(s) didn't match pod topology spread constraints (missing required label)", True
            counts, selects = self._spread_counts(c)
            least = min(counts.values()) if counts else 0
            if len(counts) < int(c.get("minDomains") or 1):
                least = 0
            skew = counts.get(value, 0) + (1 if selects(self.pod) else 0) - least
            if skew > int(c.get("maxSkew") or 1):
                return "node(s) didn't match pod topology spread constraints", False
        return None

    # InterPodAffinity (filtering.go) ---------------------------------------------------------
    def inter_pod_filter(self, node: Obj) -> tuple[str, bool] | None:
        if self.affinity and not self._satisfies_affinity(node):
            return "node(s) didn't match pod affinity rules", True
        for term, domains in zip(self.anti, self.anti_domains, strict=True):
            if self.domain(node, term.key) in domains:
                return "node(s) didn't match pod anti-affinity rules", False
        labels = node["metadata"].get("labels") or {}
        if any(labels.get(key) == value for key, value in self.blocked if key in labels):
            return "node(s) didn't satisfy existing pods anti-affinity rules", False
        return None

    def _satisfies_affinity(self, node: Obj) -> bool:
        exist = True
        for term, domains in zip(self.affinity, self.affinity_domains, strict=True):
            value = self.domain(node, term.key)
            if value is None:
                return False
            if value not in domains:
                exist = False
        if exist:
            return True
        # the first pod of a group with affinity to itself may go anywhere its terms allow
        nobody = not any(term.matches(p) for term in self.affinity for p in self.placed)
        return nobody and all(term.matches(self.pod) for term in self.affinity)

    # scores (the Score/NormalizeScore of each plugin) ----------------------------------------
    def topology_score(self, node: Obj) -> Fraction | None:
        """PodTopologySpread's raw score (scoring.go): per soft constraint, the matching pods
        in the node's domain weighted by log(domains + 2), plus maxSkew - 1; the system
        default constraint (hostname, maxSkew 3, over the pods of the same controller) when
        the pod has none. None: a node without a constraint's topology key (ignored)."""
        spec = self.pod.get("spec") or {}
        total = Fraction(0)
        if not spec.get("topologySpreadConstraints"):
            owner = _controller(self.pod)
            value = self.domain(node, HOSTNAME)
            if owner is None or value is None:
                return Fraction(0)
            count = sum(1 for p in self.by_node.get(_name(node), []) if _controller(p) == owner)
            return Fraction(count * math.log(self.hostnames + 2)) + 2
        for c in spec["topologySpreadConstraints"]:
            if not isinstance(c, dict) or c.get("whenUnsatisfiable") != "ScheduleAnyway":
                continue
            value = self.domain(node, str(c.get("topologyKey") or ""))
            if value is None:
                return None
            counts, _ = self._spread_counts(c)
            total += Fraction(counts.get(value, 0) * math.log(len(counts) + 2)) + int(c.get("maxSkew") or 1) - 1
        return total

    def affinity_score(self, node: Obj) -> int:
        """InterPodAffinity's raw score: preferred terms' weights for each matching pod in
        the node's domain (anti-affinity subtracts)."""
        if self._preferred is None:  # per term, matching pods per domain: once per cycle
            self._preferred = []
            for kind, sign in (("podAffinity", 1), ("podAntiAffinity", -1)):
                for term in _terms(self.pod, kind, False, self.namespaces):
                    per_domain: Counter[str] = Counter(
                        value
                        for p in self.placed
                        if term.matches(p) and (value := self._pod_domain(p, term.key)) is not None
                    )
                    self._preferred.append((term.key, sign * term.weight, per_domain))
        score = 0
        for key, weight, per_domain in self._preferred:
            value = self.domain(node, key)
            if value is not None:
                score += weight * per_domain.get(value, 0)
        return score


def _controller(pod: Obj) -> str | None:
    for ref in pod["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("uid"))
    return None


def _preferred_node_affinity(spec: Obj, node: Obj) -> int:
    labels = node["metadata"].get("labels") or {}
    preferred = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "preferredDuringSchedulingIgnoredDuringExecution"
    ) or []
    total = 0
    for item in preferred:
        term = (item or {}).get("preference") or {}
        exprs, fields = term.get("matchExpressions") or [], term.get("matchFields") or []
        if (
            (exprs or fields)
            and all(_requirement(e, labels) for e in exprs)
            and all(_requirement(f, {"metadata.name": _name(node)}) for f in fields)
        ):
            total += int(item.get("weight") or 0)
    return total


def _least_allocated(pod: Obj, node: Obj, on_node: list[Obj]) -> Fraction:
    """NodeResourcesFit's LeastAllocated score (0..100), cpu and memory weighted equally."""
    allocatable = (node.get("status") or {}).get("allocatable") or {}
    here = [*on_node, pod]
    scores = []
    for resource, default in (("cpu", DEFAULT_CPU), ("memory", DEFAULT_MEMORY)):
        capacity = Quantity.parse(allocatable.get(resource, "0")).value
        if capacity <= 0:
            scores.append(Fraction(0))
            continue
        used = sum((pod_requests(p).get(resource) or default for p in here), Fraction(0))
        scores.append(max(Fraction(0), (capacity - used) * 100 / capacity))
    return sum(scores, Fraction(0)) / len(scores)


def _normalize(raw: dict[str, Fraction], reverse: bool = False) -> dict[str, Fraction]:
    """kube-scheduler's DefaultNormalizeScore: scale to 0..100 by the highest."""
    top = max(raw.values(), default=Fraction(0))
    if top == 0:
        return {k: Fraction(100 if reverse else 0) for k in raw}
    return {k: (100 - v * 100 / top) if reverse else v * 100 / top for k, v in raw.items()}


def _best(pod: Obj, feasible: list[Obj], cycle: _Cycle) -> str:
    """The feasible node with the highest weighted score (ties: the first by name)."""
    if len(feasible) == 1:
        return _name(feasible[0])
    spec = pod.get("spec") or {}
    names = [_name(n) for n in feasible]
    total: dict[str, Fraction] = dict.fromkeys(names, Fraction(0))
    taint = _normalize({_name(n): Fraction(_prefer_no_schedule(pod, n)) for n in feasible}, reverse=True)
    node_aff = _normalize({_name(n): Fraction(_preferred_node_affinity(spec, n)) for n in feasible})
    fit = {_name(n): _least_allocated(pod, n, cycle.by_node.get(_name(n), [])) for n in feasible}
    raw_aff = {_name(n): Fraction(cycle.affinity_score(n)) for n in feasible}
    lo, hi = min(raw_aff.values()), max(raw_aff.values())
    pod_aff = {k: (v - lo) * 100 / (hi - lo) if hi > lo else Fraction(0) for k, v in raw_aff.items()}
    raw_spread = {_name(n): cycle.topology_score(n) for n in feasible}
    counted = [v for v in raw_spread.values() if v is not None]
    most, least = max(counted, default=0), min(counted, default=0)
    spread = {
        k: Fraction(0) if v is None else (Fraction(100) if most == 0 else 100 * (most + least - v) / most)
        for k, v in raw_spread.items()
    }
    for k in names:
        total[k] = 3 * taint[k] + 2 * node_aff[k] + 2 * spread[k] + 2 * pod_aff[k] + fit[k]
    best = max(total.values())
    return next(k for k in sorted(names) if total[k] == best)


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


def _bind(client: Writer, events: EventRecorder, pod: Obj, node: str) -> Obj | None:
    """POST the pod's Binding; None if the API refused it (the pod was deleted or bound by
    someone else meanwhile: it leaves the pending pods, or is tried again next pass)."""
    meta = pod["metadata"]
    try:
        bound = client.bind(pod, node)
    except ApiError:
        return None
    events.event(bound, "Normal", "Scheduled", f"Successfully assigned {meta['namespace']}/{meta['name']} to {node}")
    return bound


def _unschedulable(client: Writer, events: EventRecorder, pod: Obj, message: str) -> str:
    """Say why ``pod`` waits (once per distinct message); its resourceVersion afterwards."""
    conds = (pod.get("status") or {}).get("conditions") or []
    old = next((c for c in conds if c.get("type") == "PodScheduled"), None)
    if old is not None and old.get("status") == "False" and old.get("message") == message:
        return str(pod["metadata"].get("resourceVersion"))  # already said
    waiting = copy.deepcopy(pod)
    cond = {
        "type": "PodScheduled",
        "status": "False",
        "lastProbeTime": None,
        "reason": "Unschedulable",
        "message": message,
    }
    _set_condition(waiting, cond, now_ts())
    try:
        waiting = client.update_status(PODS, waiting)
    except ApiError:  # changed or deleted meanwhile: tried again when its change is seen
        return str(pod["metadata"].get("resourceVersion"))
    events.event(waiting, "Warning", "FailedScheduling", message)
    return str(waiting["metadata"].get("resourceVersion"))


def _set_condition(pod: Obj, cond: Obj, ts: str) -> None:
    status = pod.setdefault("status", {})
    conds = [c for c in status.get("conditions") or [] if c.get("type") != cond["type"]]
    old = next((c for c in status.get("conditions") or [] if c.get("type") == cond["type"]), None)
    cond["lastTransitionTime"] = old["lastTransitionTime"] if old and old.get("status") == cond["status"] else ts
    status["conditions"] = [*conds, cond]
