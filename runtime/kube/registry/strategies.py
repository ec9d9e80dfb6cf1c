"""Each served resource's strategy (rest.py), looked up from its registry entry.

The group modules (core, apps, batch, networking, storage, autoscaling, policy, scheduling,
rbac, apiextensions, discovery, coordination) each list their resources' strategies by storage key (``ResourceDef.gr``);
a resource none of them lists has the base ``Strategy`` (no defaults, no mutation, no
validation of its own, the default table); every custom resource has ``CustomResourceStrategy``:
CRDs get their defaulting, pruning, validation and table columns from their definition (crd.py),
never from a built-in kind of the same name.
"""

from __future__ import annotations

from runtime.kube.registry import (
    ResourceDef,
    apiextensions,
    apps,
    autoscaling,
    batch,
    coordination,
    core,
    discovery,
    networking,
    policy,
    rbac,
    scheduling,
    storage,
)
from runtime.kube.registry.rest import CustomResourceStrategy, Strategy

STRATEGIES: dict[str, Strategy] = {
    **core.STRATEGIES,
    **apps.STRATEGIES,
    **batch.STRATEGIES,
    **networking.STRATEGIES,
    **storage.STRATEGIES,
    **autoscaling.STRATEGIES,
    **policy.STRATEGIES,
    **scheduling.STRATEGIES,
    **rbac.STRATEGIES,
    **apiextensions.STRATEGIES,
    **discovery.STRATEGIES,
    **coordination.STRATEGIES,
}

_BASE = Strategy()
_CUSTOM = CustomResourceStrategy()


def for_resource(rdef: ResourceDef) -> Strategy:
    """The strategy of the resource ``rdef`` describes (the CRD-driven one for custom resources)."""
    if rdef.custom:
        return _CUSTOM
    return STRATEGIES.get(rdef.gr, _BASE)
