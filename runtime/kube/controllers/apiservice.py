"""kube-aggregator's autoregister and availability controllers, for local APIServices only
(what they keep is described in registry/apiservice.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from runtime.kernel.clock import now_ts
from runtime.kube import registry
from runtime.kube.registry.apiservice import AUTOMANAGED, GR, LOCAL_MESSAGE, wanted

if TYPE_CHECKING:
    from runtime.kube.controllers.manager import Controllers


def reconcile(ctl: Controllers) -> None:
    """autoregister + the availability controller: built-in and CRD APIServices exist, and
    every local APIService is Available (reason Local)."""
    c = ctl.c
    rdef = registry.BY_GR[GR]
    want = wanted(c.custom_defs())
    names = {o["metadata"]["name"] for o in want}
    for obj in want:
        if c.store.get(GR, "", obj["metadata"]["name"]) is None:
            ctl.client.create(rdef, obj)
    for svc in c.store.list(GR):  # a CRD group-version that is gone takes its APIService along
        name = svc["metadata"]["name"]
        if (svc["metadata"].get("labels") or {}).get(AUTOMANAGED) == "true" and name not in names:
            ctl.client.delete(rdef, "", name, uid=svc["metadata"]["uid"])
    for svc in c.store.list(GR):
        if svc["metadata"].get("deletionTimestamp"):
            continue
        st = svc.get("status") or {}
        conds = st.get("conditions") or []
        cur = next((x for x in conds if x.get("type") == "Available"), None)
        if (svc.get("spec") or {}).get("service"):
            continue  # refused at admission; none can exist
        if cur is not None and cur.get("status") == "True" and cur.get("reason") == "Local":
            continue
        new = {**svc, "status": {**st, "conditions": [x for x in conds if x.get("type") != "Available"]}}
        new["status"]["conditions"].append(
            {
                "type": "Available",
                "status": "True",
                "lastTransitionTime": now_ts(),
                "reason": "Local",
                "message": LOCAL_MESSAGE,
            }
        )
        new["metadata"] = dict(svc["metadata"])
        ctl.client.update_status(rdef, new)  # the availability controller's UpdateStatus
