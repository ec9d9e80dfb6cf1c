"""list and watch: the collection reads of the generic REST verbs.

``select`` filters a resource's stored objects by the request's label and field selectors (and
shows custom resources in the request's version); ``list_objects`` answers a list, paged with
``limit``/``continue`` (a continue token holds the list's resourceVersion and the last key),
as a ``<Kind>List`` or a Table; ``watch`` starts a watch from ``resourceVersion`` (the initial
events, or the 410 of a version older than the store's event history) that
apiserver/server.py streams. They read the store only; ``Cluster`` routes to them.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from runtime.kube.apiserver.request import truthy
from runtime.kube.apiserver.store import Store, Watcher
from runtime.kube.machinery.apierrors import bad_request
from runtime.kube.machinery.selectors import parse_field_selector, parse_label_selector
from runtime.kube.meta import Obj, Reply, Request, WatchReply
from runtime.kube.registry import ResourceDef, crd, strategies


def select(store: Store, req: Request, rdef: ResourceDef, ns: str) -> list[Obj]:
    objs = store.list(rdef.gr, ns if ns else None)
    ls = req.query.get("labelSelector", "")
    fs = req.query.get("fieldSelector", "")
    if ls:
        lp = parse_label_selector(ls)
        objs = [o for o in objs if lp(o)]
    if fs:
        fp = parse_field_selector(fs, rdef.field_selectors)
        objs = [o for o in objs if fp(o)]
    return [crd.served(rdef, o) for o in objs]


def list_body(rdef: ResourceDef, objs: list[Obj], meta: dict[str, Any]) -> Obj:
    return {
        "kind": f"{rdef.kind}List",
        "apiVersion": rdef.group_version,
        "metadata": meta,
        "items": objs,
    }


def list_objects(store: Store, req: Request, rdef: ResourceDef, ns: str) -> Reply:
    objs = select(store, req, rdef, ns)
    meta: dict[str, Any] = {"resourceVersion": str(store.rv)}
    cont = req.query.get("continue", "")
    if cont:
        try:
            tok = json.loads(base64.urlsafe_b64decode(cont + "=" * (-len(cont) % 4)))
            start = (tok["ns"], tok["n"])
            meta["resourceVersion"] = str(tok["rv"])
        except (ValueError, KeyError, TypeError):
            raise bad_request(
                "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)"
            ) from None
        objs = [o for o in objs if (o["metadata"].get("namespace", ""), o["metadata"]["name"]) > start]
    limit = int(req.query.get("limit") or 0)
    if limit > 0 and len(objs) > limit:
        last = objs[limit - 1]["metadata"]
        tok = {"rv": int(meta["resourceVersion"]), "ns": last.get("namespace", ""), "n": last["name"]}
        meta["continue"] = base64.urlsafe_b64encode(json.dumps(tok).encode()).decode().rstrip("=")
        meta["remainingItemCount"] = len(objs) - limit
        objs = objs[:limit]
    if "as=Table" in req.headers.get("accept", ""):
        inc = req.query.get("includeObject", "Metadata")
        t = strategies.for_resource(rdef).convert_to_table(rdef, objs, inc, meta)
        return Reply(200, t, "application/json;as=Table;v=v1;g=meta.k8s.io")
    return Reply(200, list_body(rdef, objs, meta))


def watch(store: Store, req: Request, rdef: ResourceDef, ns: str, name: str) -> WatchReply:
    preds = []
    ls = req.query.get("labelSelector", "")
    fs = req.query.get("fieldSelector", "")
    if ls:
        preds.append(parse_label_selector(ls))
    if fs:
        preds.append(parse_field_selector(fs, rdef.field_selectors))

    def accept(o: Obj) -> bool:
        return all(p(o) for p in preds)

    rv_s = req.query.get("resourceVersion", "")
    send_initial = truthy(req.query.get("sendInitialEvents"))
    initial: list[tuple[str, Obj]] = []
    start = store.rv
    expired = False
    if rv_s in ("", "0") or send_initial:
        initial = [("ADDED", o) for o in select(store, req, rdef, ns)]
    else:
        try:
            rv = int(rv_s)
        except ValueError:
            raise bad_request(f'invalid resource version: "{rv_s}"') from None
        evs = store.events_since(rv)
        # Older than the watch cache: kube-apiserver's cacher accepts the watch (200) and
        # sends one ERROR event, the 410 Expired Status, then ends ("to match the uncached
        # watch implementation", cacher.go newErrWatcher); the client re-lists.
        expired = evs is None
        for e in evs or ():
            if e.gr != rdef.gr:
                continue
            if ns and e.obj["metadata"].get("namespace", "") != ns:
                continue
            if accept(e.obj):
                initial.append((e.type, e.obj))
    w = Watcher(rdef.gr, ns or None, accept)
    if expired:
        w.pos, w.expired = int(rv_s), True  # the stream sends the ERROR event and ends
    else:
        store.add_watcher(w)
    timeout = float(req.query.get("timeoutSeconds") or 1800)
    return WatchReply(
        watcher=w,
        initial=initial,
        rdef=rdef,
        table="as=Table" in req.headers.get("accept", ""),
        include_object=req.query.get("includeObject", "Metadata"),
        timeout=timeout,
        bookmarks=truthy(req.query.get("allowWatchBookmarks")),
        initial_end_bookmark=send_initial,
        start_rv=start,
    )
