"""apiregistration.k8s.io/v1 APIServices: kube-aggregator's registry, without the proxy.

A real kube-apiserver keeps one APIService per group-version it serves itself
("local": no ``spec.service``), named ``VERSION.GROUP`` (``v1.`` for the core group),
made on start by its autoregister controller (label
``kube-aggregator.kubernetes.io/automanaged: onstart``, or ``"true"`` for the
group-versions of CRDs), with the ``groupPriorityMinimum``/``versionPriority`` of its
built-in table; the availability controller marks local ones ``Available=True``
(reason ``Local``). ``kubectl get apiservices`` and the clients that read them (helm,
the Python client's ``ApiregistrationV1Api``) see the same here: controllers/apiservice.py keeps
the built-in and CRD APIServices (recreated if deleted, as autoregister does) and the
``Available`` condition of every local one.

What is refused, by design: an APIService backed by a Service (``spec.service``) would
make this API server proxy requests to whatever that Service points at, i.e. into the
student's pods or anywhere they can name. The aggregation layer is not served, so such
an APIService is refused at admission (403 Forbidden, with the reason) instead of being
stored and then never available. Local APIServices a user creates for other
group-versions are stored and reported as the real server reports them, but serve
nothing (a real server serves nothing for them either without a delegate).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runtime.kube import registry
from runtime.kube.machinery.apierrors import forbidden
from runtime.kube.meta import Obj

if TYPE_CHECKING:
    from runtime.kube.registry import ResourceDef


GR = "apiservices.apiregistration.k8s.io"
AUTOMANAGED = "kube-aggregator.kubernetes.io/automanaged"

# kube-apiserver's apiVersionPriorities (group minimum, version), for what is served here
PRIORITIES: dict[tuple[str, str], tuple[int, int]] = {
    ("", "v1"): (18000, 1),
    ("apiregistration.k8s.io", "v1"): (18000, 15),
    ("apps", "v1"): (17800, 15),
    ("events.k8s.io", "v1"): (17750, 15),
    ("authentication.k8s.io", "v1"): (17700, 15),
    ("authorization.k8s.io", "v1"): (17600, 15),
    ("autoscaling", "v2"): (17500, 30),
    ("autoscaling", "v1"): (17500, 15),
    ("batch", "v1"): (17400, 15),
    ("networking.k8s.io", "v1"): (17200, 15),
    ("policy", "v1"): (17100, 15),
    ("rbac.authorization.k8s.io", "v1"): (17000, 15),
    ("storage.k8s.io", "v1"): (16800, 15),
    ("apiextensions.k8s.io", "v1"): (16700, 15),
    ("scheduling.k8s.io", "v1"): (16600, 15),
    ("coordination.k8s.io", "v1"): (16500, 15),
    ("discovery.k8s.io", "v1"): (16200, 15),
}
# CRD group-versions (crdregistration_controller): fixed priorities
CRD_PRIORITY = (1000, 100)

LOCAL_MESSAGE = "Local APIServices are always available"


def apiservice_name(group: str, version: str) -> str:
    return f"{version}.{group}"


def _apiservice(group: str, version: str, prio: tuple[int, int], managed: str) -> Obj:
    return {
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {"name": apiservice_name(group, version), "labels": {AUTOMANAGED: managed}},
        "spec": {"group": group, "version": version, "groupPriorityMinimum": prio[0], "versionPriority": prio[1]},
    }


def wanted(custom: list[ResourceDef]) -> list[Obj]:
    """The APIServices a real server would have for what this one serves."""
    out: list[Obj] = []
    for g in registry.groups():
        for v in registry.versions(g):
            prio = PRIORITIES.get((g, v))
            if prio is not None:
                out.append(_apiservice(g, v, prio, "onstart"))
    seen: set[tuple[str, str]] = set()
    for d in custom:
        if (d.group, d.version) not in seen:
            seen.add((d.group, d.version))
            out.append(_apiservice(d.group, d.version, CRD_PRIORITY, "true"))
    return out


def admit(rdef: ResourceDef, obj: Obj) -> None:
    """Refuse an APIService that would make this server a proxy (see the module doc)."""
    if rdef.gr != GR:
        return
    svc = (obj.get("spec") or {}).get("service")
    if svc:
        name = (obj.get("metadata") or {}).get("name", "")
        raise forbidden(
            "apiservices",
            "apiregistration.k8s.io",
            name,
            f'apiservices.apiregistration.k8s.io "{name}" is forbidden: spec.service: this lab cluster does not '
            "serve the aggregation layer, so an APIService backed by a Service (which would proxy API requests "
            "to it) is refused; only local APIServices (without spec.service) are accepted",
        )
