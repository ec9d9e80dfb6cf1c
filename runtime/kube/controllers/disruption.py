"""The disruption controller (pkg/controller/disruption): PodDisruptionBudget status."""

from __future__ import annotations

import copy

from runtime.kube.controllers.base import PODS, ControllerBase, R, pct
from runtime.kube.machinery.selectors import selector_from_match
from runtime.kube.meta import Obj


class DisruptionController(ControllerBase):
    def _pdbs(self) -> None:
        PDB = R["poddisruptionbudgets.policy"]
        for pdb in self.c.store.list(PDB.gr):
            meta, spec = pdb["metadata"], pdb.get("spec") or {}
            sel = selector_from_match(spec.get("selector"))
            pods = [p for p in self.c.store.list(PODS.gr, meta["namespace"]) if sel(p)]
            # countHealthyPods: a pod being deleted (an eviction in progress) is not healthy
            healthy = sum(1 for p in pods if self._ready(p) and not p["metadata"].get("deletionTimestamp"))
            expected = len(pods)
            if "minAvailable" in spec:
                desired = pct(spec["minAvailable"], expected, True)
            elif "maxUnavailable" in spec:
                desired = expected - pct(spec["maxUnavailable"], expected, True)
            else:
                desired = expected
            st: Obj = {
                "observedGeneration": meta.get("generation", 1),
                "disruptionsAllowed": max(0, healthy - desired),
                "currentHealthy": healthy,
                "desiredHealthy": max(0, desired),
                "expectedPods": expected,
            }
            old = dict(pdb.get("status") or {})
            old.pop("conditions", None)
            if st != old:
                n = copy.deepcopy(pdb)
                n["status"] = {
                    **st,
                    "conditions": [
                        {
                            "type": "DisruptionAllowed",
                            "status": "True" if st["disruptionsAllowed"] else "False",
                            "reason": "SufficientPods" if st["disruptionsAllowed"] else "InsufficientPods",
                            "message": "",
                            "observedGeneration": st["observedGeneration"],
                            "lastTransitionTime": (pdb["metadata"].get("creationTimestamp") or ""),
                        }
                    ],
                }
                self.client.update_status(PDB, n)
