"""Strategies of the networking.k8s.io group (pkg/registry/networking/<resource>/strategy.go)."""

from __future__ import annotations

from runtime.kube.machinery.apierrors import FieldError
from runtime.kube.meta import Obj
from runtime.kube.registry import kinds, printers
from runtime.kube.registry.rest import Printed, Strategy


class IngressStrategy(Strategy):
    printer = printers.INGRESS

    def default(self, obj: Obj) -> None:
        kinds.default_ingress(obj)

    def validate(self, obj: Obj) -> list[FieldError]:
        return kinds.validate_ingress(obj)


class NetworkPolicyStrategy(Strategy):
    printer = printers.NETWORK_POLICY

    def default(self, obj: Obj) -> None:
        kinds.default_netpol(obj)

    def validate(self, obj: Obj) -> list[FieldError]:
        return kinds.validate_netpol(obj)


STRATEGIES: dict[str, Strategy] = {
    "ingresses.networking.k8s.io": IngressStrategy(),
    "networkpolicies.networking.k8s.io": NetworkPolicyStrategy(),
    "ingressclasses.networking.k8s.io": Printed(printers.INGRESS_CLASS),
}
