"""The HorizontalPodAutoscaler controller (pkg/controller/podautoscaler): replicas clamped to
[minReplicas, maxReplicas] (no metrics server).
"""

from __future__ import annotations

import copy

from runtime.kernel.clock import now_ts
from runtime.kube.controllers.base import DEPLOY, RC, RS, ControllerBase, R
from runtime.kube.meta import Obj


class HorizontalPodAutoscalerController(ControllerBase):
    def _hpas(self) -> None:
        HPA = R["horizontalpodautoscalers.autoscaling"]
        kinds_ = {
            "Deployment": DEPLOY,
            "ReplicaSet": RS,
            "StatefulSet": R["statefulsets.apps"],
            "ReplicationController": RC,
        }
        for hpa in self.c.store.list(HPA.gr):
            meta, spec = hpa["metadata"], hpa.get("spec") or {}
            ns = meta["namespace"]
            ref = spec.get("scaleTargetRef") or {}
            tdef = kinds_.get(ref.get("kind", ""))
            target = self.c.store.get(tdef.gr, ns, ref.get("name", "")) if tdef else None
            st: Obj = dict(hpa.get("status") or {})
            if target is None:
                conds: list[Obj] = [
                    {
                        "type": "AbleToScale",
                        "status": "False",
                        "lastTransitionTime": now_ts(),
                        "reason": "FailedGetScale",
                        "message": f"the HPA controller was unable to get the target's current scale: "
                        f"{(tdef.resource + '.' + tdef.group) if tdef else ref.get('kind', '')} "
                        f'"{ref.get("name", "")}" not found',
                    }
                ]
                new_st = {"currentReplicas": 0, "desiredReplicas": 0, "conditions": conds}
            else:
                cur = int(target["spec"].get("replicas", 1))
                mn, mx = int(spec.get("minReplicas", 1)), int(spec.get("maxReplicas", 1))
                desired = cur
                reason = ""
                if cur != 0 and cur < mn:
                    desired, reason = mn, "Current number of replicas below Spec.MinReplicas"
                elif cur > mx:
                    desired, reason = mx, "Current number of replicas above Spec.MaxReplicas"
                if desired != cur and tdef is not None:

                    def rescale(n: Obj, desired: int = desired) -> bool:
                        n["spec"]["replicas"] = desired  # the API server bumps generation
                        return True

                    self.client.modify(tdef, ns, target["metadata"]["name"], rescale)
                    self.event(
                        hpa,
                        "Normal",
                        "SuccessfulRescale",
                        f"New size: {desired}; reason: {reason}",
                        "horizontal-pod-autoscaler",
                    )
                old_conds: dict[str, Obj] = {str(c.get("type")): c for c in st.get("conditions") or []}
                ts = now_ts()
                able = old_conds.get("AbleToScale")
                conds = [
                    able
                    if able is not None and able.get("status") == "True"
                    else {
                        "type": "AbleToScale",
                        "status": "True",
                        "lastTransitionTime": ts,
                        "reason": "SucceededGetScale",
                        "message": "the HPA controller was able to get the target's current scale",
                    },
                    old_conds.get("ScalingActive")
                    or {
                        "type": "ScalingActive",
                        "status": "False",
                        "lastTransitionTime": ts,
                        "reason": "FailedGetResourceMetric",
                        "message": "the HPA was unable to compute the replica count: failed to get cpu "
                        "utilization: unable to get metrics for resource cpu: no metrics returned "
                        "from resource metrics API",
                    },
                ]
                new_st = {"currentReplicas": desired, "desiredReplicas": desired, "conditions": conds}
                if desired != cur:
                    new_st["lastScaleTime"] = ts
                elif "lastScaleTime" in st:
                    new_st["lastScaleTime"] = st["lastScaleTime"]
            if new_st != st:
                cur_h = self.c.store.get(HPA.gr, ns, meta["name"])
                if cur_h is not None:
                    n = copy.deepcopy(cur_h)
                    n["status"] = new_st
                    self.client.update_status(HPA, n)
