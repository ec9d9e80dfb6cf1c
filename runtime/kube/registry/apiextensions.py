"""Strategies of the apiextensions.k8s.io and apiregistration.k8s.io groups
(apiextensions-apiserver's and kube-aggregator's registry strategies)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from runtime.kube.machinery.apierrors import FieldError
from runtime.kube.meta import Obj
from runtime.kube.registry import kinds, printers
from runtime.kube.registry.crd import default_crd, validate_crd
from runtime.kube.registry.rest import Strategy

if TYPE_CHECKING:
    from runtime.kube.apiserver.cluster import Cluster

CRD_CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"


class CustomResourceDefinitionStrategy(Strategy):
    def default(self, obj: Obj) -> None:
        default_crd(obj)

    def prepare_for_create(self, cluster: Cluster, obj: Obj) -> None:
        fins = obj["metadata"].setdefault("finalizers", [])
        if CRD_CLEANUP_FINALIZER not in fins:
            fins.append(CRD_CLEANUP_FINALIZER)

    def validate(self, obj: Obj) -> list[FieldError]:
        return validate_crd(obj)


class APIServiceStrategy(Strategy):
    printer = printers.APISERVICE

    def validate(self, obj: Obj) -> list[FieldError]:
        return kinds.validate_apiservice(obj)


STRATEGIES: dict[str, Strategy] = {
    "customresourcedefinitions.apiextensions.k8s.io": CustomResourceDefinitionStrategy(),
    "apiservices.apiregistration.k8s.io": APIServiceStrategy(),
}
