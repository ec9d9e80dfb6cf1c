"""Strategies of the networking.k8s.io group (pkg/registry/networking/<resource>/strategy.go)."""

from __future__ import annotations

from runtime.kube.machinery.apierrors import FieldError
from runtime.kube.meta import Obj
from runtime.kube.registry import kinds
from runtime.kube.registry.rest import Strategy


class IngressStrategy(Strategy):
    def default(self, obj: Obj) -> None:
        kinds.default_ingress(obj)

    def validate(self, obj: Obj) -> list[FieldError]:
        return kinds.validate_ingress(obj)


class NetworkPolicyStrategy(Strategy):
    def default(self, obj: Obj) -> None:
        kinds.default_netpol(obj)

    def validate(self, obj: Obj) -> list[FieldError]:
        return kinds.validate_netpol(obj)


STRATEGIES: dict[str, Strategy] = {
    "ingresses.networking.k8s.io": IngressStrategy(),
    "networkpolicies.networking.k8s.io": NetworkPolicyStrategy(),
}
