"""The garbage collector (pkg/controller/garbagecollector): ownerReferences, background,
foreground and orphan deletion.
"""

from __future__ import annotations

import copy

from runtime.kube.controllers.base import ControllerBase
from runtime.kube.meta import Obj


class GarbageCollector(ControllerBase):
    def orphan(self, owner: Obj) -> None:
        uid = owner["metadata"]["uid"]
        for gr, obj in list(self.c.store.iter_all()):
            refs = obj["metadata"].get("ownerReferences") or []
            if any(r.get("uid") == uid for r in refs):
                new = copy.deepcopy(obj)
                new["metadata"]["ownerReferences"] = [r for r in refs if r.get("uid") != uid]
                if not new["metadata"]["ownerReferences"]:
                    del new["metadata"]["ownerReferences"]
                self.c.store.put(gr, new, "MODIFIED")

    def _garbage_collect(self) -> None:
        store = self.c.store
        uids = {obj["metadata"]["uid"] for _, obj in store.iter_all()}
        for gr, obj in list(store.iter_all()):
            meta = obj["metadata"]
            refs = meta.get("ownerReferences") or []
            if refs and not any(r.get("uid") in uids for r in refs):
                store.remove(gr, meta.get("namespace", ""), meta["name"])
                continue
            fins = meta.get("finalizers") or []
            if meta.get("deletionTimestamp") and "foregroundDeletion" in fins:
                uid = meta["uid"]
                deps = [
                    o
                    for _, o in store.iter_all()
                    if any(r.get("uid") == uid for r in o["metadata"].get("ownerReferences") or [])
                ]
                for dgr, d in [(g, o) for g, o in store.iter_all() if o in deps]:
                    store.remove(dgr, d["metadata"].get("namespace", ""), d["metadata"]["name"])
                rest = [f for f in fins if f != "foregroundDeletion"]
                if not rest:
                    store.remove(gr, meta.get("namespace", ""), meta["name"])
                else:
                    new = copy.deepcopy(obj)
                    new["metadata"]["finalizers"] = rest
                    store.put(gr, new, "MODIFIED")
