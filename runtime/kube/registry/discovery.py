"""Strategies of the discovery.k8s.io group (pkg/registry/discovery/<resource>/strategy.go)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from runtime.kube.meta import Obj
from runtime.kube.registry import printers
from runtime.kube.registry.rest import Printed, Strategy

if TYPE_CHECKING:
    from runtime.kube.apiserver.cluster import Cluster


class EndpointSliceStrategy(Printed):
    def prepare_for_update(self, cluster: Cluster, new: Obj, old: Obj) -> None:
        # endpointSliceStrategy.PrepareForUpdate: generation + 1 when anything but the metadata
        # changed (the server's generic rule, already applied) or when the labels changed
        # (kube-proxy and the EndpointSlice controllers select slices by label)
        meta, ometa = new["metadata"], old["metadata"]
        gen = int(ometa.get("generation", 1))
        if (meta.get("labels") or {}) != (ometa.get("labels") or {}) and int(meta.get("generation", gen)) == gen:
            meta["generation"] = gen + 1


STRATEGIES: dict[str, Strategy] = {"endpointslices.discovery.k8s.io": EndpointSliceStrategy(printers.ENDPOINT_SLICE)}
