"""Quota evaluators (pkg/quota/v1/evaluator/core): what an object counts against a ResourceQuota.

Usage is computed from the store, never trusted from status, with the pod evaluator's rules:
terminal pods do not count, requests/limits of containers add up and init containers count by
their maximum; scopes BestEffort, NotBestEffort, Terminating and NotTerminating select the pods
a quota counts. The ResourceQuota admission plugin (apiserver/admission.py) and the resource
quota controller (controllers/resourcequota.py) both count with these.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runtime.kube import registry
from runtime.kube.machinery.quantity import Quantity
from runtime.kube.meta import Obj

if TYPE_CHECKING:
    from runtime.kube.apiserver.cluster import Cluster
    from runtime.kube.registry import ResourceDef


# object-count quota names that predate count/<resource>
COUNTED = {
    "pods": "pods",
    "services": "services",
    "configmaps": "configmaps",
    "secrets": "secrets",
    "persistentvolumeclaims": "persistentvolumeclaims",
    "replicationcontrollers": "replicationcontrollers",
    "resourcequotas": "resourcequotas",
}


def add(acc: dict[str, Quantity], key: str, q: Quantity) -> None:
    acc[key] = acc[key] + q if key in acc else q


def pod_resources(pod: Obj) -> tuple[dict[str, Quantity], dict[str, Quantity]]:
    """Pod-level requests and limits: containers add up, an init container counts if larger."""
    req: dict[str, Quantity] = {}
    lim: dict[str, Quantity] = {}
    spec = pod.get("spec") or {}
    for ctr in spec.get("containers") or []:
        res = ctr.get("resources") or {}
        for k, v in (res.get("requests") or {}).items():
            add(req, k, Quantity.parse(v))
        for k, v in (res.get("limits") or {}).items():
            add(lim, k, Quantity.parse(v))
    for ctr in spec.get("initContainers") or []:
        res = ctr.get("resources") or {}
        for acc, part in ((req, "requests"), (lim, "limits")):
            for k, v in (res.get(part) or {}).items():
                q = Quantity.parse(v)
                if k not in acc or q.value > acc[k].value:
                    acc[k] = q
    return req, lim


def terminal(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def pod_in_scopes(pod: Obj, scopes: list[str]) -> bool:
    spec = pod.get("spec") or {}
    best_effort = not any(
        (ctr.get("resources") or {}).get(part)
        for ctr in (spec.get("containers") or []) + (spec.get("initContainers") or [])
        for part in ("requests", "limits")
    )
    terminating = spec.get("activeDeadlineSeconds") is not None
    checks = {
        "BestEffort": best_effort,
        "NotBestEffort": not best_effort,
        "Terminating": terminating,
        "NotTerminating": not terminating,
    }
    return all(checks.get(s, True) for s in scopes)


def pod_usage(pod: Obj) -> dict[str, Quantity]:
    """What one pod counts against a quota (podEvaluator.Usage)."""
    use: dict[str, Quantity] = {"pods": Quantity.parse(1), "count/pods": Quantity.parse(1)}
    req, lim = pod_resources(pod)
    for k, q in req.items():
        use[f"requests.{k}"] = q
        if k in ("cpu", "memory", "ephemeral-storage"):
            use[k] = q
    for k, q in lim.items():
        use[f"limits.{k}"] = q
    return use


class Evaluator:
    """The object-count evaluator (generic.NewObjectCountEvaluator): ``count/<resource>[.<group>]``,
    plus the pre-count/ name (``configmaps``, ``secrets``...) for the core resources that have one."""

    # counted for every quota, whatever its spec.hard names (the evaluators upstream installs by
    # default for pods, services and claims), not only when hard lists one of its count names
    always = False

    def usage(self, rdef: ResourceDef, obj: Obj, scopes: list[str]) -> dict[str, Quantity]:
        if scopes:
            return {}
        one = Quantity.parse(1)
        use: dict[str, Quantity] = {_count(rdef): one}
        if not rdef.group and rdef.resource in COUNTED:
            use[COUNTED[rdef.resource]] = one
        return use

    def missing(self, obj: Obj, scopes: list[str], hard: Obj) -> dict[str, list[str]]:
        """Constraints: what a quota's ``hard`` makes mandatory that ``obj`` leaves out, with the
        names of the containers lacking each (nothing, but for pods)."""
        return {}


# resources a quota can only count if every container states them (podEvaluator's validationSet)
MUST_SPECIFY = {"cpu", "memory", "requests.cpu", "requests.memory", "limits.cpu", "limits.memory"}


class PodEvaluator(Evaluator):
    """podEvaluator: requests and limits of non-terminal pods in the quota's scopes."""

    always = True

    def missing(self, obj: Obj, scopes: list[str], hard: Obj) -> dict[str, list[str]]:
        if not hard or terminal(obj) or not pod_in_scopes(obj, scopes):
            return {}
        required = sorted(MUST_SPECIFY & set(hard))
        spec = obj.get("spec") or {}
        out: dict[str, list[str]] = {}
        for ctr in (spec.get("containers") or []) + (spec.get("initContainers") or []):
            if not isinstance(ctr, dict):
                continue
            have = set(pod_usage({"spec": {"containers": [ctr]}}))
            for r in required:
                if r not in have:
                    out.setdefault(r, []).append(str(ctr.get("name", "")))
        return out

    def usage(self, rdef: ResourceDef, obj: Obj, scopes: list[str]) -> dict[str, Quantity]:
        if terminal(obj) or not pod_in_scopes(obj, scopes):
            return {}
        return pod_usage(obj)


class ServiceEvaluator(Evaluator):
    """serviceEvaluator: LoadBalancers and node ports besides the count."""

    always = True

    def usage(self, rdef: ResourceDef, obj: Obj, scopes: list[str]) -> dict[str, Quantity]:
        use = super().usage(rdef, obj, scopes)
        if scopes:
            return use
        typ = (obj.get("spec") or {}).get("type", "ClusterIP")
        if typ == "LoadBalancer":
            use["services.loadbalancers"] = Quantity.parse(1)
        if typ in ("NodePort", "LoadBalancer"):
            use["services.nodeports"] = Quantity.parse(len((obj.get("spec") or {}).get("ports") or []))
        return use


class PersistentVolumeClaimEvaluator(Evaluator):
    """pvcEvaluator: requested storage, in total and per storage class."""

    always = True

    def usage(self, rdef: ResourceDef, obj: Obj, scopes: list[str]) -> dict[str, Quantity]:
        use = super().usage(rdef, obj, scopes)
        if scopes:
            return use
        spec = obj.get("spec") or {}
        storage = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
        if storage is not None:
            use["requests.storage"] = Quantity.parse(storage)
            if spec.get("storageClassName"):
                cls = spec["storageClassName"]
                use[f"{cls}.storageclass.storage.k8s.io/requests.storage"] = Quantity.parse(storage)
                use[f"{cls}.storageclass.storage.k8s.io/persistentvolumeclaims"] = Quantity.parse(1)
        return use


# the evaluators by storage key (``ResourceDef.gr``), as upstream's quota registry is keyed by
# GroupResource (pkg/quota/v1/install); every other resource, custom ones included, is counted
_EVALUATORS: dict[str, Evaluator] = {
    "pods": PodEvaluator(),
    "services": ServiceEvaluator(),
    "persistentvolumeclaims": PersistentVolumeClaimEvaluator(),
}
_OBJECT_COUNT = Evaluator()


def evaluator_for(rdef: ResourceDef) -> Evaluator:
    if rdef.custom:
        return _OBJECT_COUNT
    return _EVALUATORS.get(rdef.gr, _OBJECT_COUNT)


def _count(rdef: ResourceDef) -> str:
    return f"count/{rdef.resource}" + (f".{rdef.group}" if rdef.group else "")


def usage(rdef: ResourceDef, obj: Obj, scopes: list[str]) -> dict[str, Quantity]:
    """What ``obj`` counts against a quota with ``scopes`` (its resource's evaluator's Usage)."""
    return evaluator_for(rdef).usage(rdef, obj, scopes)


def quota_status(c: Cluster, quota: Obj) -> Obj:
    """status.hard (= spec.hard) and status.used, as the resource quota controller computes them."""
    ns = quota["metadata"]["namespace"]
    spec = quota.get("spec") or {}
    hard: Obj = dict(spec.get("hard") or {})
    scopes = list(spec.get("scopes") or [])
    totals: dict[str, Quantity] = {}
    for rdef in registry.RESOURCES:
        if not rdef.namespaced or rdef.virtual:
            continue
        always = evaluator_for(rdef).always
        if not always and _count(rdef) not in hard and not (not rdef.group and rdef.resource in hard):
            continue
        for o in c.store.list(rdef.gr, ns):
            for k, q in usage(rdef, o, scopes).items():
                add(totals, k, q)
    used = {k: str(totals[k]) if k in totals else "0" for k in hard}
    return {"hard": hard, "used": used}
