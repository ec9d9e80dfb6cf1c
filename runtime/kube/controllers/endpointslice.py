"""The EndpointSlice controller (pkg/controller/endpointslice): one slice per selecting Service."""

from __future__ import annotations

import copy

from runtime.kube.controllers.base import PODS, SVC, ControllerBase, R, owner_ref
from runtime.kube.meta import Obj

SLICE_SERVICE_NAME = "kubernetes.io/service-name"
SLICE_MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
SLICE_CONTROLLER = "endpointslice-controller.k8s.io"


class EndpointSliceController(ControllerBase):
    def _endpointslices(self) -> None:
        """One IPv4 EndpointSlice per Service with a selector, as the endpointslice controller keeps.

        Pods without an IP are left out (the real controller skips them too), so until part 2
        assigns IPs a slice is the controller's placeholder: no endpoints, no ports.
        """
        ES = R["endpointslices.discovery.k8s.io"]
        store = self.c.store
        services = {(s["metadata"]["namespace"], s["metadata"]["uid"]): s for s in store.list(SVC.gr)}
        owned: dict[tuple[str, str], Obj] = {}
        for sl in store.list(ES.gr):
            m = sl["metadata"]
            if (m.get("labels") or {}).get(SLICE_MANAGED_BY) != SLICE_CONTROLLER:
                continue
            ref = next((r for r in m.get("ownerReferences") or [] if r.get("kind") == "Service"), None)
            svc = services.get((m["namespace"], (ref or {}).get("uid", "")))
            if (
                svc is None
                or not (svc.get("spec") or {}).get("selector")
                or (m["namespace"], svc["metadata"]["uid"]) in owned
            ):
                self.client.delete(ES, m["namespace"], m["name"], uid=m["uid"])
                continue
            owned[(m["namespace"], svc["metadata"]["uid"])] = sl
        for (ns, uid), svc in services.items():
            meta, spec = svc["metadata"], svc.get("spec") or {}
            sel = spec.get("selector")
            if not sel or meta.get("deletionTimestamp") or spec.get("type") == "ExternalName":
                continue
            want = self._slice_body(svc, sel)
            labels = {
                **(meta.get("labels") or {}),
                SLICE_SERVICE_NAME: meta["name"],
                SLICE_MANAGED_BY: SLICE_CONTROLLER,
            }
            if spec.get("clusterIP") == "None":
                labels["service.kubernetes.io/headless"] = ""
            cur = owned.get((ns, uid))
            if cur is None:
                obj: Obj = {
                    "apiVersion": "discovery.k8s.io/v1",
                    "kind": "EndpointSlice",
                    "metadata": {
                        "generateName": meta["name"] + "-",
                        "namespace": ns,
                        "labels": labels,
                        "ownerReferences": [owner_ref(svc)],
                    },
                    **want,
                }
                self._create(ES, obj)
                continue
            have = {k: cur.get(k) for k in want}
            if have != want or cur["metadata"].get("labels") != labels:

                def sync(n: Obj, want: Obj = want, labels: dict[str, str] = labels) -> bool:
                    n.update(copy.deepcopy(want))  # the API server bumps generation: endpoints changed
                    n["metadata"]["labels"] = labels
                    return True

                m = cur["metadata"]
                self.client.modify(ES, m["namespace"], m["name"], sync)

    def _slice_body(self, svc: Obj, sel: dict[str, str]) -> Obj:
        ns, spec = svc["metadata"]["namespace"], svc.get("spec") or {}
        publish = bool(spec.get("publishNotReadyAddresses"))
        endpoints: list[Obj] = []
        pods: list[Obj] = []
        for p in self.c.store.list(PODS.gr, ns):
            labels = p["metadata"].get("labels") or {}
            if not (p.get("status") or {}).get("podIP") or any(labels.get(k) != v for k, v in sel.items()):
                continue
            pods.append(p)
            ready = self._ready(p)
            ep: Obj = {
                "addresses": [p["status"]["podIP"]],
                "conditions": {
                    "ready": publish or ready,
                    "serving": ready,
                    "terminating": bool(p["metadata"].get("deletionTimestamp")),
                },
                "targetRef": {
                    "kind": "Pod",
                    "namespace": ns,
                    "name": p["metadata"]["name"],
                    "uid": p["metadata"]["uid"],
                },
            }
            pspec = p.get("spec") or {}
            if pspec.get("nodeName"):
                ep["nodeName"] = pspec["nodeName"]
            if pspec.get("hostname") and pspec.get("subdomain") == svc["metadata"]["name"]:
                ep["hostname"] = pspec["hostname"]
            endpoints.append(ep)
        ports: list[Obj] = []
        if endpoints:
            for sp in spec.get("ports") or []:
                port: Obj = {
                    "name": sp.get("name", ""),
                    "port": _slice_port(sp, pods[0]),
                    "protocol": sp.get("protocol", "TCP"),
                }
                if sp.get("appProtocol"):
                    port["appProtocol"] = sp["appProtocol"]
                ports.append(port)
        return {"addressType": "IPv4", "endpoints": endpoints or None, "ports": ports or None}


def _slice_port(sp: Obj, pod: Obj) -> int | None:
    """A service port's targetPort resolved against a pod (named ports look up containerPort)."""
    t = sp.get("targetPort", sp.get("port"))
    if isinstance(t, int):
        return t
    for c in (pod.get("spec") or {}).get("containers") or []:
        for cp in c.get("ports") or []:
            if cp.get("name") == t:
                return int(cp["containerPort"])
    return None
