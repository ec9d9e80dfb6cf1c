"""Strategies of the autoscaling group (pkg/registry/autoscaling/<resource>/strategy.go)."""

from __future__ import annotations

from runtime.kube.machinery.apierrors import FieldError
from runtime.kube.meta import Obj
from runtime.kube.registry import kinds, printers
from runtime.kube.registry.rest import Strategy


class HorizontalPodAutoscalerStrategy(Strategy):
    printer = printers.HORIZONTAL_POD_AUTOSCALER

    def default(self, obj: Obj) -> None:
        kinds.default_hpa(obj)

    def validate(self, obj: Obj) -> list[FieldError]:
        return kinds.validate_hpa(obj)


STRATEGIES: dict[str, Strategy] = {"horizontalpodautoscalers.autoscaling": HorizontalPodAutoscalerStrategy()}
