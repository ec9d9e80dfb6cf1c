"""Strategies of the apps group (pkg/registry/apps/<resource>/strategy.go)."""

from __future__ import annotations

from collections.abc import Callable

from runtime.kube.machinery.apierrors import FieldError
from runtime.kube.meta import Obj
from runtime.kube.registry import kinds
from runtime.kube.registry.rest import Strategy, WorkloadStatusReset


class WorkloadStrategy(WorkloadStatusReset):
    """Deployments, ReplicaSets, StatefulSets and DaemonSets: their own defaults, the shared
    selector-matches-template validation, an immutable selector, an empty status on create."""

    def __init__(self, defaults: Callable[[Obj], None]) -> None:
        self._defaults = defaults

    def default(self, obj: Obj) -> None:
        self._defaults(obj)

    def validate(self, obj: Obj) -> list[FieldError]:
        return kinds.validate_workload(obj)

    def validate_update(self, new: Obj, old: Obj) -> list[FieldError]:
        return kinds.validate_selector_immutable(new, old)


STRATEGIES: dict[str, Strategy] = {
    "deployments.apps": WorkloadStrategy(kinds.default_deployment),
    "replicasets.apps": WorkloadStrategy(kinds.default_replicaset),
    "statefulsets.apps": WorkloadStrategy(kinds.default_statefulset),
    "daemonsets.apps": WorkloadStrategy(kinds.default_daemonset),
}
