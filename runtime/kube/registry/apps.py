"""Strategies of the apps group (pkg/registry/apps/<resource>/strategy.go)."""

from __future__ import annotations

from collections.abc import Callable

from runtime.kube.machinery.apierrors import FieldError
from runtime.kube.meta import Obj
from runtime.kube.registry import kinds, printers
from runtime.kube.registry.rest import Printed, Strategy, WorkloadStatusReset


class WorkloadStrategy(WorkloadStatusReset):
    """Deployments, ReplicaSets, StatefulSets and DaemonSets: their own defaults, the shared
    selector-matches-template validation, an immutable selector, an empty status on create."""

    def __init__(self, defaults: Callable[[Obj], None], printer: printers.Printer) -> None:
        self._defaults = defaults
        self.printer = printer

    def default(self, obj: Obj) -> None:
        self._defaults(obj)

    def validate(self, obj: Obj) -> list[FieldError]:
        return kinds.validate_workload(obj)

    def validate_update(self, new: Obj, old: Obj) -> list[FieldError]:
        return kinds.validate_selector_immutable(new, old)


class DeploymentStrategy(WorkloadStrategy):
    def prepare_for_status_update(self, new: Obj, body: Obj) -> None:
        # deploymentStatusStrategy.PrepareForUpdate keeps the stored spec and labels and lets
        # the rest of the metadata through: the controller writes the revision annotation and
        # the status in one UpdateStatus (finalizers and ownerReferences stay as stored here)
        ann = (body.get("metadata") or {}).get("annotations")
        if ann:
            new["metadata"]["annotations"] = ann
        else:
            new["metadata"].pop("annotations", None)


STRATEGIES: dict[str, Strategy] = {
    "deployments.apps": DeploymentStrategy(kinds.default_deployment, printers.DEPLOYMENT),
    "replicasets.apps": WorkloadStrategy(kinds.default_replicaset, printers.REPLICA_SET),
    "statefulsets.apps": WorkloadStrategy(kinds.default_statefulset, printers.STATEFUL_SET),
    "daemonsets.apps": WorkloadStrategy(kinds.default_daemonset, printers.DAEMON_SET),
    "controllerrevisions.apps": Printed(printers.CONTROLLER_REVISION),
}
