"""The namespace controller (pkg/controller/namespace) and the service-account and root-CA
publishers: a namespace's default ServiceAccount and kube-root-ca.crt, and its termination.
"""

from __future__ import annotations

from runtime.kube.controllers.base import NS, ControllerBase, R
from runtime.kube.registry import ResourceDef

SA = R["serviceaccounts"]
CM = R["configmaps"]


class NamespaceController(ControllerBase):
    def _namespaces(self) -> None:
        store = self.c.store
        for nso in store.list(NS.gr):
            name = nso["metadata"]["name"]
            if nso["metadata"].get("deletionTimestamp"):
                self._delete_content(name)
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

    def _delete_content(self, name: str) -> None:
        """deleteAllContent, then finalize: everything in the terminating namespace is deleted
        through the API's delete path (finalizers, graceful pods where a kubelet runs them);
        the Namespace goes once nothing is left in it.

        The last step stays a store removal: the API's finalize subresource empties
        spec.finalizers, but the apiserver here does not yet remove a finalized Namespace (#16)."""
        store = self.c.store
        defs = {d.gr: d for d in self.c.custom_defs()}
        left = False
        for gr, obj in list(store.iter_all()):
            meta = obj["metadata"]
            if meta.get("namespace") != name:
                continue
            left = True
            rdef: ResourceDef | None = R.get(gr) or defs.get(gr)
            if rdef is None:  # the kind is no longer served (its CRD went): nothing can delete it but us
                store.remove(gr, name, meta["name"])
                continue
            self.client.delete(rdef, name, meta["name"], uid=meta["uid"])
        if left and any(o["metadata"].get("namespace") == name for _, o in store.iter_all()):
            return  # terminating pods, finalizers: the next pass looks again
        store.remove(NS.gr, "", name)
