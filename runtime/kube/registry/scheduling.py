"""Strategies of the scheduling.k8s.io group (pkg/registry/scheduling/<resource>/strategy.go)."""

from __future__ import annotations

from runtime.kube.meta import Obj
from runtime.kube.registry import printers
from runtime.kube.registry.rest import Strategy


class PriorityClassStrategy(Strategy):
    printer = printers.PRIORITY_CLASS

    def default(self, obj: Obj) -> None:
        obj.setdefault("preemptionPolicy", "PreemptLowerPriority")


STRATEGIES: dict[str, Strategy] = {"priorityclasses.scheduling.k8s.io": PriorityClassStrategy()}
