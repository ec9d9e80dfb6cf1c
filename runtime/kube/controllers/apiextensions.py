"""The CRD finalizer and status of apiextensions-apiserver: a CRD's Established/NamesAccepted
conditions, and the deletion of its resources when it is deleted.
"""

from __future__ import annotations

import copy

from runtime.kernel.clock import now_ts
from runtime.kube.controllers.base import ControllerBase
from runtime.kube.registry import crd


class CRDController(ControllerBase):
    def _crds(self) -> None:
        store = self.c.store
        for c in store.list(crd.GR):
            meta, spec = c["metadata"], c.get("spec") or {}
            if meta.get("deletionTimestamp"):
                plural, group = (spec.get("names") or {}).get("plural", ""), spec.get("group", "")
                gr = f"{plural}.{group}"
                for o in store.list(gr):
                    store.remove(gr, o["metadata"].get("namespace", ""), o["metadata"]["name"])
                store.remove(crd.GR, "", meta["name"])
                continue
            st = crd.crd_status(c, now_ts())
            if st != c.get("status"):
                n = copy.deepcopy(c)
                n["status"] = st
                store.put(crd.GR, n, "MODIFIED")
