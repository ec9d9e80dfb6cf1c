"""Each served resource's strategy (rest.py), looked up from its registry entry.

The group modules (core, apps, batch, networking, storage, autoscaling, policy, scheduling,
rbac, apiextensions) each list their resources' strategies by storage key (``ResourceDef.gr``);
a resource none of them lists has the base ``Strategy`` (no defaults, no mutation, no
validation of its own), and so does every custom resource: CRDs get their defaulting,
pruning and validation from their schema (crd.py), never from a built-in kind of the same name.
"""

from __future__ import annotations

from runtime.kube.registry import (
    ResourceDef,
    apiextensions,
    apps,
    autoscaling,
    batch,
    core,
    networking,
    policy,
    rbac,
    scheduling,
    storage,
)
from runtime.kube.registry.rest import Strategy

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
}

_BASE = Strategy()


def for_resource(rdef: ResourceDef) -> Strategy:
    """The strategy of the resource ``rdef`` describes (the base one for custom resources)."""
    if rdef.custom:
        return _BASE
    return STRATEGIES.get(rdef.gr, _BASE)
