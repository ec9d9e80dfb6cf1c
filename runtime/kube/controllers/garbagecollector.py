"""The garbage collector (pkg/controller/garbagecollector): ownerReferences, background,
foreground and orphan deletion.
"""

from __future__ import annotations

from runtime.kube.controllers.base import ControllerBase
from runtime.kube.meta import Obj
from runtime.kube.registry import ResourceDef


class GarbageCollector(ControllerBase):
    def orphan(self, owner: Obj) -> None:
        uid = owner["metadata"]["uid"]
        for gr, obj in list(self.c.store.iter_all()):
            refs = obj["metadata"].get("ownerReferences") or []
            rdef = self._def_of(gr) if any(r.get("uid") == uid for r in refs) else None
            if rdef is not None:
                meta = obj["metadata"]
                self.client.modify(rdef, meta.get("namespace", ""), meta["name"], lambda n: _drop_ref(n, uid))

    def _garbage_collect(self) -> None:
        store = self.c.store
        uids = {obj["metadata"]["uid"] for _, obj in store.iter_all()}
        for gr, obj in list(store.iter_all()):
            meta = obj["metadata"]
            refs = meta.get("ownerReferences") or []
            if refs and not any(r.get("uid") in uids for r in refs):
                rdef = self._def_of(gr)
                if rdef is not None:
                    self._delete(rdef, obj)  # every owner is gone: background deletion of a dependent
                continue
            fins = meta.get("finalizers") or []
            rdef = self._def_of(gr) if meta.get("deletionTimestamp") and "foregroundDeletion" in fins else None
            if rdef is not None:
                uid = meta["uid"]
                deps = [
                    (g, o)
                    for g, o in store.iter_all()
                    if any(r.get("uid") == uid for r in o["metadata"].get("ownerReferences") or [])
                ]
                for dgr, d in deps:
                    ddef = self._def_of(dgr)
                    if ddef is not None:
                        self._delete(ddef, d)
                live = {o["metadata"]["uid"] for _, o in store.iter_all()}
                if any(d["metadata"]["uid"] in live for _, d in deps):
                    continue  # dependents still terminating (graceful pods, their own finalizers)

                def finish(n: Obj, uid: str = uid) -> bool:
                    fins = n["metadata"].get("finalizers") or []
                    if n["metadata"]["uid"] != uid or "foregroundDeletion" not in fins:
                        return False
                    n["metadata"]["finalizers"] = [f for f in fins if f != "foregroundDeletion"]
                    return True  # the API server removes the object when no finalizer is left

                self.client.modify(rdef, meta.get("namespace", ""), meta["name"], finish)

    def _delete(self, rdef: ResourceDef, obj: Obj) -> None:
        meta = obj["metadata"]
        self.client.delete(rdef, meta.get("namespace", ""), meta["name"], uid=meta["uid"])


def _drop_ref(obj: Obj, uid: str) -> bool:
    """The object without its ownerReference to ``uid`` (False: it has none)."""
    refs = obj["metadata"].get("ownerReferences") or []
    if not any(r.get("uid") == uid for r in refs):
        return False
    obj["metadata"]["ownerReferences"] = [r for r in refs if r.get("uid") != uid]
    if not obj["metadata"]["ownerReferences"]:
        del obj["metadata"]["ownerReferences"]
    return True
