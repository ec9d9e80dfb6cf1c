"""Strategies of the rbac.authorization.k8s.io group (pkg/registry/rbac/<resource>/strategy.go)."""

from __future__ import annotations

from runtime.kube.machinery.apierrors import FieldError, invalid, not_supported, required
from runtime.kube.meta import Obj
from runtime.kube.registry import printers
from runtime.kube.registry.rest import Strategy

GROUP = "rbac.authorization.k8s.io"


class RoleStrategy(Strategy):
    """Roles and ClusterRoles: every rule names at least one verb."""

    printer = printers.ROLE

    def validate(self, obj: Obj) -> list[FieldError]:
        errs: list[FieldError] = []
        for i, r in enumerate(obj.get("rules") or []):
            if not r.get("verbs"):
                errs.append(required(f"rules[{i}].verbs", "verbs must contain at least one value"))
        return errs


class BindingStrategy(Strategy):
    """RoleBindings and ClusterRoleBindings: a roleRef naming a Role or ClusterRole, immutable."""

    printer = printers.ROLE_BINDING

    def validate(self, obj: Obj) -> list[FieldError]:
        errs: list[FieldError] = []
        ref = obj.get("roleRef") or {}
        if not ref.get("name"):
            errs.append(required("roleRef.name"))
        if ref.get("kind") not in ("Role", "ClusterRole"):
            errs.append(not_supported("roleRef.kind", ref.get("kind", ""), ["ClusterRole", "Role"]))
        return errs

    def validate_update(self, new: Obj, old: Obj) -> list[FieldError]:
        if new.get("roleRef") != old.get("roleRef"):
            return [invalid("roleRef", None, "cannot change roleRef")]
        return []


STRATEGIES: dict[str, Strategy] = {
    f"roles.{GROUP}": RoleStrategy(),
    f"clusterroles.{GROUP}": RoleStrategy(),
    f"rolebindings.{GROUP}": BindingStrategy(),
    f"clusterrolebindings.{GROUP}": BindingStrategy(),
}
