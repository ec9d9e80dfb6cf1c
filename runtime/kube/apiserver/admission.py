"""Admission: the LimitRanger, ResourceQuota and NamespaceLifecycle plugins of kube-apiserver.

``mutate()`` runs after defaulting and before validation, ``admit()`` after validation
and before the object is stored, as the mutating and validating admission phases do.
Both run for every create, the controllers' own included, so a ReplicaSet over quota
fails to create pods exactly as on a real cluster (a ``FailedCreate`` event with the
quota message).

LimitRanger (plugin/pkg/admission/limitranger): for ``type: Container`` items, missing
container requests/limits are filled from ``defaultRequest``/``default`` (the pod gets the
``kubernetes.io/limit-ranger`` annotation), then ``min``, ``max`` and
``maxLimitRequestRatio`` are checked with the plugin's messages. ``type: Pod`` items check
the sum over containers; ``type: PersistentVolumeClaim`` items check the requested storage.

ResourceQuota (plugin/pkg/admission/resourcequota + pkg/quota/v1/evaluator/core): usage is
computed from the store, never trusted from status (one asyncio loop, so nothing races),
with the pod evaluator's rules: terminal pods do not count, requests/limits of containers
add up and init containers count by their maximum. A quota on cpu/memory requests or
limits makes them mandatory for every container ("must specify ..."). Scopes BestEffort,
NotBestEffort, Terminating and NotTerminating select the pods a quota counts.
The evaluators (what an object counts, ``quota_status()``) are registry/quota.py.

NamespaceLifecycle (plugin/pkg/admission/namespace/lifecycle): ``admit_delete()`` refuses to
delete its immortal namespaces (default, kube-system, kube-public).

NodeRestriction (plugin/pkg/admission/noderestriction), the part that keys on the user for
the pods a kubelet writes: a ``system:node:<name>`` user in ``system:nodes`` (the lab's own
kubelet, apiserver/client.py's ``node_user``, or whoever is authenticated or impersonated as
one) may update the status of, and delete, only pods bound to its node (``node_restriction``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runtime.kube.apiserver import podsecurity
from runtime.kube.machinery.apierrors import ApiError, forbidden
from runtime.kube.machinery.quantity import Quantity
from runtime.kube.meta import Obj
from runtime.kube.registry import apiservice
from runtime.kube.registry.quota import evaluator_for, pod_resources, quota_status, usage

if TYPE_CHECKING:
    from runtime.kube.apiserver.cluster import Cluster
    from runtime.kube.registry import ResourceDef


LIMIT_RANGER_ANNOTATION = "kubernetes.io/limit-ranger"

# the resources these plugins act on, by storage key (ResourceDef.gr): upstream's plugins test
# ``a.GetResource().GroupResource()``, never the kind's name (a CRD may call its kind "Pod")
_PODS = "pods"
_CLAIMS = "persistentvolumeclaims"
_INGRESSES = "ingresses.networking.k8s.io"


def _forbidden(rdef: ResourceDef, name: str, message: str) -> ApiError:
    gr = f"{rdef.resource}.{rdef.group}" if rdef.group else rdef.resource
    return forbidden(rdef.resource, rdef.group, name, f'{gr} "{name}" is forbidden: {message}')


def _aggregate(errs: list[str]) -> str:
    """utilerrors.NewAggregate(...).Error()."""
    return errs[0] if len(errs) == 1 else "[" + ", ".join(errs) + "]"


# -- LimitRanger -------------------------------------------------------------------


def _containers(pod: Obj) -> list[tuple[str, Obj]]:
    spec = pod.get("spec") or {}
    out = [("container", c) for c in spec.get("containers") or [] if isinstance(c, dict)]
    out += [("init container", c) for c in spec.get("initContainers") or [] if isinstance(c, dict)]
    return out


def _limit_items(c: Cluster, ns: str, typ: str) -> list[Obj]:
    return [
        item
        for lr in c.store.list("limitranges", ns)
        for item in (lr.get("spec") or {}).get("limits") or []
        if isinstance(item, dict) and item.get("type") == typ
    ]


def mutate(c: Cluster, rdef: ResourceDef, obj: Obj) -> None:
    """LimitRanger's defaults for a new pod's containers; DefaultIngressClass for a new Ingress."""
    if rdef.gr == _INGRESSES:
        default_ingress_class(c, obj)
        return
    if rdef.gr != _PODS:
        return
    notes: list[str] = []
    for item in _limit_items(c, obj["metadata"].get("namespace", ""), "Container"):
        for label, ctr in _containers(obj):
            res = ctr.setdefault("resources", {})
            lims = res.setdefault("limits", {})
            reqs = res.setdefault("requests", {})
            set_l = sorted(k for k in item.get("default") or {} if k not in lims)
            set_r = sorted(k for k in item.get("defaultRequest") or {} if k not in reqs)
            for k in set_l:
                lims[k] = item["default"][k]
            for k in set_r:
                reqs[k] = item["defaultRequest"][k]
            if set_r:
                notes.append(f"{', '.join(set_r)} request for {label} {ctr.get('name', '')}")
            if set_l:
                notes.append(f"{', '.join(set_l)} limit for {label} {ctr.get('name', '')}")
            for k in ("limits", "requests"):
                if not res[k]:
                    del res[k]
    if notes:
        ann = obj["metadata"].setdefault("annotations", {})
        ann[LIMIT_RANGER_ANNOTATION] = "LimitRanger plugin set: " + "; ".join(notes)


def default_ingress_class(c: Cluster, obj: Obj) -> None:
    """The DefaultIngressClass plugin (plugin/pkg/admission/network/defaultingressclass): an
    Ingress created without ``spec.ingressClassName`` and without the legacy
    ``kubernetes.io/ingress.class`` annotation gets the IngressClass marked
    ``ingressclass.kubernetes.io/is-default-class: "true"`` (the newest, if several are)."""
    spec = obj.get("spec")
    if not isinstance(spec, dict) or spec.get("ingressClassName"):
        return
    if "kubernetes.io/ingress.class" in ((obj.get("metadata") or {}).get("annotations") or {}):
        return
    defaults = [
        ic
        for ic in c.store.list("ingressclasses.networking.k8s.io")
        if (ic["metadata"].get("annotations") or {}).get("ingressclass.kubernetes.io/is-default-class") == "true"
    ]
    if defaults:
        newest = max(
            defaults, key=lambda ic: (str(ic["metadata"].get("creationTimestamp", "")), ic["metadata"]["name"])
        )
        spec["ingressClassName"] = newest["metadata"]["name"]


def _min(typ: str, res: str, enforced: Any, req: Obj, lim: Obj) -> str:
    e = Quantity.parse(enforced)
    if res not in req:
        return f"minimum {res} usage per {typ} is {e}.  No request is specified"
    if Quantity.parse(req[res]).milli() < e.milli():
        return f"minimum {res} usage per {typ} is {e}, but request is {Quantity.parse(req[res])}"
    if res in lim and Quantity.parse(lim[res]).milli() < e.milli():
        return f"minimum {res} usage per {typ} is {e}, but limit is {Quantity.parse(lim[res])}"
    return ""


def _max(typ: str, res: str, enforced: Any, req: Obj, lim: Obj) -> str:
    e = Quantity.parse(enforced)
    if res not in lim:
        return f"maximum {res} usage per {typ} is {e}.  No limit is specified"
    if Quantity.parse(lim[res]).milli() > e.milli():
        return f"maximum {res} usage per {typ} is {e}, but limit is {Quantity.parse(lim[res])}"
    if res in req and Quantity.parse(req[res]).milli() > e.milli():
        return f"maximum {res} usage per {typ} is {e}, but request is {Quantity.parse(req[res])}"
    return ""


def _ratio(typ: str, res: str, enforced: Any, req: Obj, lim: Obj) -> str:
    e = Quantity.parse(enforced)
    r = Quantity.parse(req[res]).milli() if res in req else 0
    lv = Quantity.parse(lim[res]).milli() if res in lim else 0
    if not r:
        return f"{res} max limit to request ratio per {typ} is {e}, but no request is specified or request is 0"
    if not lv:
        return f"{res} max limit to request ratio per {typ} is {e}, but no limit is specified or limit is 0"
    observed = lv / r
    if observed * 1000 > e.milli():
        return f"{res} max limit to request ratio per {typ} is {e}, but provided ratio is {observed:f}"
    return ""


def _check_item(typ: str, item: Obj, req: Obj, lim: Obj) -> list[str]:
    errs = []
    for field, fn in (("min", _min), ("max", _max), ("maxLimitRequestRatio", _ratio)):
        for res, v in sorted((item.get(field) or {}).items()):
            msg = fn(typ, res, v, req, lim)
            if msg:
                errs.append(msg)
    return errs


def _validate_limits(c: Cluster, rdef: ResourceDef, obj: Obj) -> None:
    ns = obj["metadata"].get("namespace", "")
    errs: list[str] = []
    if rdef.gr == _PODS:
        for item in _limit_items(c, ns, "Container"):
            for _, ctr in _containers(obj):
                res = ctr.get("resources") or {}
                errs += _check_item("Container", item, res.get("requests") or {}, res.get("limits") or {})
        pod_items = _limit_items(c, ns, "Pod")
        if pod_items:
            req, lim = pod_resources(obj)
            for item in pod_items:
                errs += _check_item(
                    "Pod", item, {k: str(v) for k, v in req.items()}, {k: str(v) for k, v in lim.items()}
                )
    elif rdef.gr == _CLAIMS:
        res = (obj.get("spec") or {}).get("resources") or {}
        for item in _limit_items(c, ns, "PersistentVolumeClaim"):
            for field, fn in (("min", _min), ("max", _max)):
                for k, v in sorted((item.get(field) or {}).items()):
                    req = res.get("requests") or {}
                    # a claim has no limit: the storage request stands for both bounds
                    msg = fn("PersistentVolumeClaim", k, v, req, res.get("limits") or req)
                    if msg:
                        errs.append(msg)
    if errs:
        raise _forbidden(rdef, obj["metadata"].get("name", ""), _aggregate(errs))


# -- ResourceQuota -------------------------------------------------------------------


def _check_quota(c: Cluster, rdef: ResourceDef, obj: Obj) -> None:
    ns = obj["metadata"].get("namespace", "")
    name = obj["metadata"].get("name", "")
    quotas = sorted(c.store.list("resourcequotas", ns), key=lambda q: q["metadata"]["name"])
    for quota in quotas:
        spec = quota.get("spec") or {}
        hard = (quota.get("status") or {}).get("hard") or spec.get("hard") or {}
        missing = evaluator_for(rdef).missing(obj, list(spec.get("scopes") or []), hard)
        if missing:
            detail = "; ".join(f"{r} for: {','.join(sorted(set(names)))}" for r, names in sorted(missing.items()))
            raise _forbidden(rdef, name, f"failed quota: {quota['metadata']['name']}: must specify {detail}")
    for quota in quotas:
        spec = quota.get("spec") or {}
        hard = (quota.get("status") or {}).get("hard") or spec.get("hard") or {}
        delta = {k: v for k, v in usage(rdef, obj, list(spec.get("scopes") or [])).items() if k in hard}
        if not delta:
            continue
        used = quota_status(c, quota)["used"]
        exceeded = sorted(
            k for k, q in delta.items() if (Quantity.parse(used.get(k, 0)) + q).value > Quantity.parse(hard[k]).value
        )
        if exceeded:
            requested = ",".join(f"{k}={delta[k]}" for k in exceeded)
            was = ",".join(f"{k}={Quantity.parse(used.get(k, 0))}" for k in exceeded)
            limited = ",".join(f"{k}={Quantity.parse(hard[k])}" for k in exceeded)
            raise _forbidden(
                rdef,
                name,
                f"exceeded quota: {quota['metadata']['name']}, requested: {requested}, used: {was}, limited: {limited}",
            )


def admit(c: Cluster, rdef: ResourceDef, obj: Obj) -> None:
    """Validating admission of a create: PodSecurity (and what the lab's kubelet cannot
    honour, apiserver/podsecurity.py), LimitRanger's bounds, then ResourceQuota."""
    if rdef.virtual:
        return
    podsecurity.admit(c, rdef, obj)
    apiservice.admit(rdef, obj)
    if not rdef.namespaced:
        return
    _validate_limits(c, rdef, obj)
    _check_quota(c, rdef, obj)


# NamespaceLifecycle's immortalNamespaces
IMMORTAL_NAMESPACES = frozenset({"default", "kube-system", "kube-public"})


def admit_delete(rdef: ResourceDef, name: str) -> None:
    """Validating admission of a delete (dry runs included): NamespaceLifecycle refuses to
    delete an immortal namespace."""
    if rdef.gr == "namespaces" and name in IMMORTAL_NAMESPACES:
        raise forbidden("namespaces", "", name, f'namespaces "{name}" is forbidden: this namespace may not be deleted')


NODES_GROUP = "system:nodes"
NODE_PREFIX = "system:node:"


def node_restriction(c: Cluster, rdef: ResourceDef, old: Obj, verb: str) -> None:
    """NodeRestriction for a pod's status update (``verb`` "update") or delete ("delete") by
    a node: refused unless the pod is bound to that node."""
    user = c.request_state.user
    if rdef.gr != _PODS or user is None or NODES_GROUP not in user.groups or not user.name.startswith(NODE_PREFIX):
        return
    node = user.name[len(NODE_PREFIX) :]
    if (old.get("spec") or {}).get("nodeName") == node:
        return
    what = "update pod status for pods" if verb == "update" else "delete pods"
    raise _forbidden(rdef, old["metadata"]["name"], f'node "{node}" can only {what} with spec.nodeName set to itself')


def admit_update(c: Cluster, rdef: ResourceDef, new: Obj, old: Obj) -> None:
    """Validating admission of an update: PodSecurity (LimitRanger and ResourceQuota judge
    creates only here)."""
    if not rdef.virtual:
        podsecurity.admit(c, rdef, new, old)
        apiservice.admit(rdef, new)
