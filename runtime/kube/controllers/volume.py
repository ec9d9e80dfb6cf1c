"""The PersistentVolume controller (pkg/controller/volume/persistentvolume): PVC binding, dynamic
provisioning with the default StorageClass, reclaim, and the protection finalizers.
"""

from __future__ import annotations

import copy

from runtime.kube.controllers.base import PODS, ControllerBase, R
from runtime.kube.machinery.quantity import Quantity, QuantityError
from runtime.kube.meta import Obj
from runtime.kube.registry.core import default_storage_class


class PersistentVolumeController(ControllerBase):
    def _default_sc(self) -> Obj | None:
        return default_storage_class(self.c.store.list(R["storageclasses.storage.k8s.io"].gr))

    def _volumes(self) -> None:
        store = self.c.store
        PV, PVC = R["persistentvolumes"], R["persistentvolumeclaims"]
        SC = R["storageclasses.storage.k8s.io"]
        pods = store.list(PODS.gr)
        for pvc in store.list(PVC.gr):
            meta, spec = pvc["metadata"], pvc.get("spec") or {}
            ns, name = meta["namespace"], meta["name"]
            if meta.get("deletionTimestamp"):
                used = any(
                    (v.get("persistentVolumeClaim") or {}).get("claimName") == name
                    for p in pods
                    if p["metadata"].get("namespace") == ns
                    for v in (p.get("spec") or {}).get("volumes") or []
                )
                if not used:
                    n = copy.deepcopy(pvc)
                    n["metadata"]["finalizers"] = [
                        f for f in n["metadata"].get("finalizers") or [] if f != "kubernetes.io/pvc-protection"
                    ]
                    if not n["metadata"]["finalizers"]:
                        store.remove(PVC.gr, ns, name)
                        self._release(pvc)
                    else:
                        store.put(PVC.gr, n, "MODIFIED")
                continue
            if (pvc.get("status") or {}).get("phase") == "Bound":
                continue
            try:  # exact, as resource.Quantity.Cmp: 1Gi > 1000Mi, 500M == 0.5G
                want = Quantity.parse(((spec.get("resources") or {}).get("requests") or {}).get("storage", "0")).value
            except QuantityError:  # the API refuses one at decode; never bind on a guess
                continue
            modes = set(spec.get("accessModes") or [])
            cls = spec.get("storageClassName") or ""
            pv = None
            for cand in store.list(PV.gr):
                cs = cand.get("spec") or {}
                if (cand.get("status") or {}).get("phase") != "Available" or cs.get("claimRef"):
                    continue
                if spec.get("volumeName") and cand["metadata"]["name"] != spec["volumeName"]:
                    continue
                if (cs.get("storageClassName") or "") != cls or not modes <= set(cs.get("accessModes") or []):
                    continue
                try:
                    if Quantity.parse((cs.get("capacity") or {}).get("storage", "0")).value < want:
                        continue
                except QuantityError:
                    continue
                pv = cand
                break
            sc = store.get(SC.gr, "", cls) if cls else None
            if pv is None and sc is not None:
                if sc.get("volumeBindingMode") == "WaitForFirstConsumer":
                    continue
                pv_name = f"pvc-{meta['uid']}"
                pv = self._create(
                    PV,
                    {
                        "apiVersion": "v1",
                        "kind": "PersistentVolume",
                        "metadata": {
                            "name": pv_name,
                            "annotations": {"pv.kubernetes.io/provisioned-by": sc.get("provisioner", "")},
                        },
                        "spec": {
                            "capacity": {
                                "storage": ((spec.get("resources") or {}).get("requests") or {}).get("storage")
                            },
                            "accessModes": list(spec.get("accessModes") or []),
                            "persistentVolumeReclaimPolicy": sc.get("reclaimPolicy", "Delete"),
                            "storageClassName": cls,
                            "volumeMode": spec.get("volumeMode", "Filesystem"),
                            "hostPath": {"path": f"/tmp/hostpath-provisioner/{ns}/{name}", "type": ""},
                        },
                    },
                )
                self.event(
                    pvc,
                    "Normal",
                    "ProvisioningSucceeded",
                    f"Successfully provisioned volume {pv_name}",
                    sc.get("provisioner", ""),
                )
            if pv is None:
                continue
            npv = copy.deepcopy(store.get(PV.gr, "", pv["metadata"]["name"]) or pv)
            npv["spec"]["claimRef"] = {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "name": name,
                "namespace": ns,
                "resourceVersion": meta.get("resourceVersion", ""),
                "uid": meta["uid"],
            }
            npv["status"] = {"phase": "Bound"}
            npv["metadata"].setdefault("annotations", {})["pv.kubernetes.io/bound-by-controller"] = "yes"
            store.put(PV.gr, npv, "MODIFIED")
            npvc = copy.deepcopy(pvc)
            npvc["spec"]["volumeName"] = npv["metadata"]["name"]
            ann = npvc["metadata"].setdefault("annotations", {})
            ann["pv.kubernetes.io/bind-completed"] = "yes"
            ann["pv.kubernetes.io/bound-by-controller"] = "yes"
            npvc["status"] = {
                "phase": "Bound",
                "accessModes": list(npv["spec"].get("accessModes") or []),
                "capacity": dict(npv["spec"].get("capacity") or {}),
            }
            store.put(PVC.gr, npvc, "MODIFIED")
        for pv in store.list(PV.gr):
            if pv["metadata"].get("deletionTimestamp"):
                if (pv.get("status") or {}).get("phase") != "Bound":
                    store.remove(PV.gr, "", pv["metadata"]["name"])
                continue
            ref = (pv.get("spec") or {}).get("claimRef")
            if ref and (pv.get("status") or {}).get("phase") == "Bound":
                claim = store.get(PVC.gr, ref.get("namespace", ""), ref.get("name", ""))
                if claim is None or claim["metadata"]["uid"] != ref.get("uid"):
                    self._release(
                        {
                            "metadata": {
                                "uid": ref.get("uid"),
                                "namespace": ref.get("namespace"),
                                "name": ref.get("name"),
                            }
                        }
                    )

    def _release(self, pvc: Obj) -> None:
        PV = R["persistentvolumes"]
        for pv in self.c.store.list(PV.gr):
            ref = (pv.get("spec") or {}).get("claimRef") or {}
            if ref.get("uid") != pvc["metadata"]["uid"]:
                continue
            if (pv.get("spec") or {}).get("persistentVolumeReclaimPolicy") == "Delete":
                self.c.store.remove(PV.gr, "", pv["metadata"]["name"])
            elif (pv.get("status") or {}).get("phase") != "Released":
                n = copy.deepcopy(pv)
                n["status"] = {"phase": "Released"}
                self.c.store.put(PV.gr, n, "MODIFIED")
