"""The Endpoints controller (pkg/controller/endpoint)."""

from __future__ import annotations

import copy
from typing import Any

from runtime.kube.controllers.base import PODS, SVC, ControllerBase, R
from runtime.kube.meta import Obj

EP_MANAGED_BY = "endpoints.kubernetes.io/managed-by"
EP_CONTROLLER = "endpoint-controller"


class EndpointsController(ControllerBase):
    def _endpoints(self) -> None:
        """One Endpoints object per Service with a selector; ready pods with an IP are addresses."""
        EP = R["endpoints"]
        store = self.c.store
        for svc in store.list(SVC.gr):
            meta = svc["metadata"]
            ns, name = meta["namespace"], meta["name"]
            sel = (svc.get("spec") or {}).get("selector")
            if not sel or meta.get("deletionTimestamp"):
                continue
            ready: list[Obj] = []
            not_ready: list[Obj] = []
            for p in store.list(PODS.gr, ns):
                labels = p["metadata"].get("labels") or {}
                ip = (p.get("status") or {}).get("podIP")
                if not ip or any(labels.get(k) != v for k, v in sel.items()):
                    continue
                addr = {
                    "ip": ip,
                    "targetRef": {
                        "kind": "Pod",
                        "namespace": ns,
                        "name": p["metadata"]["name"],
                        "uid": p["metadata"]["uid"],
                    },
                }
                if (p.get("spec") or {}).get("nodeName"):
                    addr["nodeName"] = p["spec"]["nodeName"]
                conds = (p.get("status") or {}).get("conditions") or []
                ok = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)
                (ready if ok else not_ready).append(addr)
            subsets: list[Obj] = []
            if ready or not_ready:
                ports = [
                    {
                        k: v
                        for k, v in (
                            ("name", sp.get("name")),
                            ("port", _target(sp)),
                            ("protocol", sp.get("protocol", "TCP")),
                        )
                        if v is not None
                    }
                    for sp in (svc.get("spec") or {}).get("ports") or []
                ]
                sub: Obj = {}
                if ready:
                    sub["addresses"] = ready
                if not_ready:
                    sub["notReadyAddresses"] = not_ready
                sub["ports"] = ports
                subsets = [sub]
            cur = store.get(EP.gr, ns, name)
            want_labels = {**(meta.get("labels") or {}), EP_MANAGED_BY: EP_CONTROLLER}
            if cur is None:
                ep: Obj = {
                    "apiVersion": "v1",
                    "kind": "Endpoints",
                    "metadata": {"name": name, "namespace": ns, "labels": want_labels},
                }
                if subsets:
                    ep["subsets"] = subsets
                self._create(EP, ep)
            elif (cur.get("subsets") or []) != subsets or (cur["metadata"].get("labels") or {}).get(
                EP_MANAGED_BY
            ) != EP_CONTROLLER:

                def sync(n: Obj, subsets: list[Obj] = subsets) -> bool:
                    if subsets:
                        n["subsets"] = copy.deepcopy(subsets)
                    else:
                        n.pop("subsets", None)
                    n["metadata"]["labels"] = {**(n["metadata"].get("labels") or {}), EP_MANAGED_BY: EP_CONTROLLER}
                    return True

                self.client.modify(EP, ns, name, sync)
        # the controller's own Endpoints go with their Service; one somebody wrote without a
        # Service (no managed-by label) is theirs, and stays, as on a real cluster
        for ep in store.list(EP.gr):
            m = ep["metadata"]
            if (m.get("labels") or {}).get(EP_MANAGED_BY) != EP_CONTROLLER:
                continue
            if store.get(SVC.gr, m["namespace"], m["name"]) is None:
                self.client.delete(EP, m["namespace"], m["name"], uid=m["uid"])


def _target(sp: Obj) -> Any:
    t = sp.get("targetPort", sp.get("port"))
    return t if isinstance(t, int) else sp.get("port")
