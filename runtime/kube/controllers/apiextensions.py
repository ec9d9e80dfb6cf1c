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
            meta = c["metadata"]
            if meta.get("deletionTimestamp"):
                self._finalize_crd(c)
                continue
            st = crd.crd_status(c, now_ts())
            if st != c.get("status"):
                n = copy.deepcopy(c)
                n["status"] = st
                self.client.update_status(CRD, n)

    def _finalize_crd(self, c: Obj) -> None:
        """The CRD finalizer (apiextensions-apiserver's crdFinalizer): the Terminating condition,
        then every custom resource deleted through the API's delete path of the resource, still
        served while its CRD terminates (their own finalizers are honoured: the CRD waits for
        them), then the cleanup finalizer dropped by an update: the API server removes the CRD
        when no finalizer is left."""
        meta, spec = c["metadata"], c.get("spec") or {}
        if CRD_CLEANUP_FINALIZER not in (meta.get("finalizers") or []):
            return
        store = self.c.store
        gr = f"{(spec.get('names') or {}).get('plural', '')}.{spec.get('group', '')}"
        conds = (c.get("status") or {}).get("conditions") or []
        if not any(x.get("type") == "Terminating" for x in conds):
            n = copy.deepcopy(c)
            n.setdefault("status", {})["conditions"] = [*conds, _terminating(now_ts())]
            c = self.client.update_status(CRD, n)
        rdef = next((d for d in self.c.custom_defs() if d.gr == gr), None)
        for o in store.list(gr):
            om = o["metadata"]
            if rdef is None:  # no version served: no API path to them (see remove_unserved)
                self.client.remove_unserved(gr, om.get("namespace", ""), om["name"])
            elif not om.get("deletionTimestamp"):
                self.client.delete(rdef, om.get("namespace", ""), om["name"], uid=om["uid"])
        if store.list(gr):
            return  # finalizers hold some: the next pass looks again
        self.client.modify(CRD, "", meta["name"], _drop_cleanup_finalizer)


def _terminating(now: str) -> Obj:
    return {
        "type": "Terminating",
        "status": "True",
        "lastTransitionTime": now,
        "reason": "InstanceDeletionInProgress",
        "message": "CustomResource deletion is in progress",
    }


def _drop_cleanup_finalizer(obj: Obj) -> bool:
    fins = obj["metadata"].get("finalizers") or []
    if CRD_CLEANUP_FINALIZER not in fins:
        return False
    obj["metadata"]["finalizers"] = [f for f in fins if f != CRD_CLEANUP_FINALIZER]
    return True
