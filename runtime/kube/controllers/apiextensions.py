"""The CRD finalizer and status of apiextensions-apiserver: a CRD's Established/NamesAccepted
conditions, and the deletion of its resources when it is deleted.
"""

from __future__ import annotations

import copy

from runtime.kernel.clock import now_ts
from runtime.kube import registry
from runtime.kube.controllers.base import ControllerBase
from runtime.kube.meta import Obj
from runtime.kube.registry import crd
from runtime.kube.registry.apiextensions import CRD_CLEANUP_FINALIZER

CRD = registry.BY_GR[crd.GR]


class CRDController(ControllerBase):
    def _crds(self) -> None:
        store = self.c.store
        for c in store.list(crd.GR):
            meta, spec = c["metadata"], c.get("spec") or {}
            if meta.get("deletionTimestamp"):
                plural, group = (spec.get("names") or {}).get("plural", ""), spec.get("group", "")
                gr = f"{plural}.{group}"
                # the kind is no longer served (crd.defs_from_crds skips a terminating CRD), so
                # its objects cannot take the API's delete path: the finalizer removes them
                for o in store.list(gr):
                    store.remove(gr, o["metadata"].get("namespace", ""), o["metadata"]["name"])
                # then lets go of the CRD: the API server removes it when no finalizer is left
                self.client.modify(CRD, "", meta["name"], _drop_cleanup_finalizer)
                continue
            st = crd.crd_status(c, now_ts())
            if st != c.get("status"):
                n = copy.deepcopy(c)
                n["status"] = st
                self.client.update_status(CRD, n)


def _drop_cleanup_finalizer(obj: Obj) -> bool:
    fins = obj["metadata"].get("finalizers") or []
    if CRD_CLEANUP_FINALIZER not in fins:
        return False
    obj["metadata"]["finalizers"] = [f for f in fins if f != CRD_CLEANUP_FINALIZER]
    return True
