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
                if not used:  # pvc-protection lets go; the API server removes a claim left with none
                    self.client.modify(PVC, ns, name, lambda n: _drop_finalizer(n, PVC_PROTECTION))
                    if store.get(PVC.gr, ns, name) is None:
                        self._release(pvc)
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
            self._bind(pv, pvc)
        for pv in store.list(PV.gr):
            if pv["metadata"].get("deletionTimestamp"):
                if (pv.get("status") or {}).get("phase") != "Bound":  # pv-protection lets go
                    self.client.modify(PV, "", pv["metadata"]["name"], lambda n: _drop_finalizer(n, PV_PROTECTION))
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
            pv_name = pv["metadata"]["name"]
            if (pv.get("status") or {}).get("phase") != "Released":
                self.client.modify(PV, "", pv_name, _released, status=True)
            if (pv.get("spec") or {}).get("persistentVolumeReclaimPolicy") == "Delete":
                # deleteVolumeOperation: the PV goes through the delete path; released, its
                # pv-protection finalizer is dropped in the same reconcile (see _volumes)
                self.client.delete(PV, "", pv_name, uid=pv["metadata"]["uid"])

    def _bind(self, pv: Obj, pvc: Obj) -> None:
        """bindVolumeToClaim then bindClaimToVolume: each object's spec and annotations by an
        update, its phase through the status subresource (with retry on conflict)."""
        PV, PVC = R["persistentvolumes"], R["persistentvolumeclaims"]
        meta = pvc["metadata"]
        ns, name, pv_name = meta["namespace"], meta["name"], pv["metadata"]["name"]
        claim_ref = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "name": name,
            "namespace": ns,
            "resourceVersion": meta.get("resourceVersion", ""),
            "uid": meta["uid"],
        }

        def bind_pv(n: Obj) -> bool:
            n["spec"]["claimRef"] = copy.deepcopy(claim_ref)
            n["metadata"].setdefault("annotations", {})["pv.kubernetes.io/bound-by-controller"] = "yes"
            return True

        npv = self.client.modify(PV, "", pv_name, bind_pv)
        if npv is None:
            return
        self.client.modify(PV, "", pv_name, lambda n: _set_status(n, {"phase": "Bound"}), status=True)

        def bind_pvc(n: Obj) -> bool:
            n["spec"]["volumeName"] = pv_name
            ann = n["metadata"].setdefault("annotations", {})
            ann["pv.kubernetes.io/bind-completed"] = "yes"
            ann["pv.kubernetes.io/bound-by-controller"] = "yes"
            return True

        self.client.modify(PVC, ns, name, bind_pvc)
        status = {
            "phase": "Bound",
            "accessModes": list(npv["spec"].get("accessModes") or []),
            "capacity": dict(npv["spec"].get("capacity") or {}),
        }
        self.client.modify(PVC, ns, name, lambda n: _set_status(n, status), status=True)


PV_PROTECTION = "kubernetes.io/pv-protection"
PVC_PROTECTION = "kubernetes.io/pvc-protection"


def _drop_finalizer(obj: Obj, name: str) -> bool:
    fins = obj["metadata"].get("finalizers") or []
    if name not in fins:
        return False
    obj["metadata"]["finalizers"] = [f for f in fins if f != name]
    return True


def _set_status(obj: Obj, status: Obj) -> bool:
    obj["status"] = copy.deepcopy(status)
    return True


def _released(pv: Obj) -> bool:
    if (pv.get("status") or {}).get("phase") == "Released":
        return False
    pv["status"] = {"phase": "Released"}
    return True
