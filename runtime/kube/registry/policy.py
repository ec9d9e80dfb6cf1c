"""Strategies of the policy group (pkg/registry/policy/<resource>/strategy.go)."""

from __future__ import annotations

from runtime.kube.machinery.apierrors import FieldError
from runtime.kube.meta import Obj
from runtime.kube.registry import kinds, printers
from runtime.kube.registry.rest import Strategy


class PodDisruptionBudgetStrategy(Strategy):
    printer = printers.POD_DISRUPTION_BUDGET

    def validate(self, obj: Obj) -> list[FieldError]:
        return kinds.validate_pdb(obj)


STRATEGIES: dict[str, Strategy] = {"poddisruptionbudgets.policy": PodDisruptionBudgetStrategy()}
