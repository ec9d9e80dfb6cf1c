"""The namespace controller (pkg/controller/namespace) and the service-account and root-CA
publishers: a namespace's default ServiceAccount and kube-root-ca.crt, and its termination.
"""

from __future__ import annotations

from runtime.kube.controllers.base import NS, ControllerBase, R

SA = R["serviceaccounts"]
CM = R["configmaps"]


class NamespaceController(ControllerBase):
    def _namespaces(self) -> None:
        store = self.c.store
        for nso in store.list(NS.gr):
            name = nso["metadata"]["name"]
            if nso["metadata"].get("deletionTimestamp"):
                for gr, obj in list(store.iter_all()):
                    if obj["metadata"].get("namespace") == name:
                        store.remove(gr, name, obj["metadata"]["name"])
                store.remove(NS.gr, "", name)
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
