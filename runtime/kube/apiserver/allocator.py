"""The API server's ClusterIP and NodePort allocators (kube-apiserver's service REST storage,
pkg/registry/core/service/ipallocator and portallocator).

Allocation belongs to the API server, not to a controller: a Service is answered with its
clusterIP and nodePorts by the create (or update) that asks for them. What is taken is read
from the cluster's stored Services, so nothing is kept beside the store that could disagree
with it after a restart; the ranges are kube's defaults (``--service-cluster-ip-range`` 10.96.0.0/16
less the kubernetes and kube-dns addresses, ``--service-node-port-range`` 30000-32767).
"""

from __future__ import annotations

import secrets

from runtime.kube.apiserver.store import Store
from runtime.kube.machinery.apierrors import ApiError
from runtime.kube.meta import Obj

NODE_PORT_MIN, NODE_PORT_END = 30000, 32768  # kube-apiserver's default --service-node-port-range
SERVICES = "services"
RESERVED_IPS = {"10.96.0.1", "10.96.0.10"}  # the kubernetes Service and kube-dns


def allocation_full(what: str) -> ApiError:
    """kube-apiserver's answer when an allocator's range has no free value left."""
    msg = f"failed to allocate a {what}: range is full"
    return ApiError(500, "InternalError", f"Internal error occurred: {msg}", {"causes": [{"message": msg}]})


class ServiceAllocator:
    """Fills a Service's clusterIP(s) and its ports' nodePorts left empty."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def allocate(self, svc: Obj) -> None:
        spec = svc["spec"]
        typ = spec.get("type", "ClusterIP")
        if typ == "ExternalName":
            return
        if not spec.get("clusterIP"):
            used = {(o.get("spec") or {}).get("clusterIP") for o in self.store.list(SERVICES)}
            used |= RESERVED_IPS
            # a random pick while the range is not full, never an endless search (#12)
            if sum(1 for u in used if isinstance(u, str) and u.startswith("10.96.")) >= 256 * 254:
                raise allocation_full("serviceIP")
            while True:
                ip = f"10.96.{secrets.randbelow(256)}.{secrets.randbelow(254) + 1}"
                if ip not in used:
                    break
            spec["clusterIP"] = ip
        if spec["clusterIP"] != "None":
            spec["clusterIPs"] = [spec["clusterIP"]]
        else:
            spec["clusterIPs"] = ["None"]
        if typ in ("NodePort", "LoadBalancer"):
            used_np = {
                p.get("nodePort") for o in self.store.list(SERVICES) for p in (o.get("spec") or {}).get("ports") or []
            }
            # one Service with more ports than the range holds must not spin the cluster's
            # thread forever (#12): kube-apiserver's "range is full" instead
            taken = sum(1 for u in used_np if isinstance(u, int) and NODE_PORT_MIN <= u < NODE_PORT_END)
            for p in spec.get("ports") or []:
                if not p.get("nodePort"):
                    if taken >= NODE_PORT_END - NODE_PORT_MIN:
                        raise allocation_full("nodePort")
                    taken += 1
                    while True:
                        np = NODE_PORT_MIN + secrets.randbelow(NODE_PORT_END - NODE_PORT_MIN)
                        if np not in used_np:
                            break
                    p["nodePort"] = np
                    used_np.add(np)
