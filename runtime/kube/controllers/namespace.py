"""The namespace controller (pkg/controller/namespace) and the service-account and root-CA
publishers: a namespace's default ServiceAccount and kube-root-ca.crt, and its termination.
"""

from __future__ import annotations

import copy

from runtime.kube.controllers.base import NS, ControllerBase, R
from runtime.kube.meta import Obj
from runtime.kube.registry import ResourceDef

SA = R["serviceaccounts"]
CM = R["configmaps"]
FINALIZER = "kubernetes"  # the namespace controller's own, in spec.finalizers (FinalizerKubernetes)


class NamespaceController(ControllerBase):
    def _namespaces(self) -> None:
        store = self.c.store
        for nso in store.list(NS.gr):
            name = nso["metadata"]["name"]
            if nso["metadata"].get("deletionTimestamp"):
                self._delete_content(nso)
                continue
            if store.get(SA.gr, name, "default") is None:
                self._create(
                    SA,
                    {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": name}},
                )
            if store.get(CM.gr, name, "kube-root-ca.crt") is None:
                ca = (self.c.dir / "ca.crt").read_text()
                self._create(
                    CM,
                    {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "metadata": {
                            "name": "kube-root-ca.crt",
                            "namespace": name,
                            "annotations": {
                                "kubernetes.io/description": (
                                    "Contains a CA bundle that can be used to verify the "
                                    "kube-apiserver when using internal endpoints such as the "
                                    "internal service IP or kubernetes.default.svc. No other "
                                    "usage is guaranteed across distributions of Kubernetes "
                                    "clusters."
                                )
                            },
                        },
                        "data": {"ca.crt": ca},
                    },
                )

    def _delete_content(self, nso: Obj) -> None:
        """deleteAllContent, then finalize: everything in the terminating namespace is deleted
        through the API's delete path (finalizers, graceful pods where a kubelet runs them,
        custom resources of a terminating CRD, still served); once nothing is left, the
        ``kubernetes`` finalizer is taken out of spec.finalizers through the namespace's
        finalize subresource, and the API server removes the Namespace when no finalizer is
        left (ShouldDeleteNamespaceDuringUpdate), as kube-apiserver does."""
        name = nso["metadata"]["name"]
        store = self.c.store
        defs = {d.gr: d for d in self.c.custom_defs()}
        left = False
        for gr, obj in list(store.iter_all()):
            meta = obj["metadata"]
            if meta.get("namespace") != name:
                continue
            left = True
            rdef: ResourceDef | None = R.get(gr) or defs.get(gr)
            if rdef is None:  # its kind is no longer served: no API path to it (see remove_unserved)
                self.client.remove_unserved(gr, name, meta["name"])
                continue
            self.client.delete(rdef, name, meta["name"], uid=meta["uid"])
        if left and any(o["metadata"].get("namespace") == name for _, o in store.iter_all()):
            return  # terminating pods, finalizers: the next pass looks again
        fins = (nso.get("spec") or {}).get("finalizers") or []
        if FINALIZER in fins:
            fin = copy.deepcopy(nso)
            fin["spec"]["finalizers"] = [f for f in fins if f != FINALIZER]
            self.client.finalize(NS, fin)
        elif not fins and not nso["metadata"].get("finalizers"):
            # finalized before it was deleted (spec.finalizers emptied by hand): the namespace
            # storage's Delete removes a marked namespace with no finalizer left
            self.client.delete(NS, "", name, uid=nso["metadata"]["uid"])
        # else another component's spec.finalizers hold it: it finalizes the namespace itself
