"""Field ownership (metadata.managedFields) and server-side apply conflicts.

Every write records which field manager set which fields, in the ``FieldsV1``
form a real API server uses (``f:spec``, ``k:{"name":"c"}`` for list items
with a merge key, ``v:"x"`` for set members). An Update takes ownership of the
fields it changed; an Apply owns exactly the fields of the applied config,
fails with a 409 listing the conflicting managers when it would change a field
someone else owns (unless forced), and removes the fields it applied before
but no longer applies if nobody else owns them.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from runtime.kube.machinery.apierrors import ApiError
from runtime.kube.machinery.patch import merge_key, strategic_merge
from runtime.kube.meta import Obj

Leaf = tuple[str, ...]

_SKIP_META = {
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
    "generateName",
}
_MISSING = object()


def _item_key(item: Any, key: str) -> str:
    return "k:" + json.dumps({key: item.get(key)}, separators=(",", ":"))


def leaves(obj: Any, path: tuple[str, ...] = (), top: bool = True, status: bool = False, kind: str = "") -> set[Leaf]:
    """The set of leaf field paths of an object, excluding system-owned fields."""
    out: set[Leaf] = set()
    if not isinstance(obj, dict):
        return out
    if top and not kind:
        kind = str(obj.get("kind") or "")
    plain = tuple(p[2:] for p in path if p.startswith("f:"))
    for k, v in obj.items():
        if top and k in ("apiVersion", "kind"):
            continue
        if top and k == "status" and not status:
            continue
        if top and k != "status" and status:
            continue
        if path == ("f:metadata",) and k in _SKIP_META:
            continue
        p = (*path, f"f:{k}")
        if isinstance(v, dict) and v:
            out |= leaves(v, p, top=False, kind=kind)
        elif isinstance(v, list):
            mk = merge_key(plain, k, kind)
            if mk is None:
                out.add(p)
            elif mk == "":
                out |= {(*p, "v:" + json.dumps(x, separators=(",", ":"))) for x in v}
            else:
                for item in v:
                    if isinstance(item, dict) and mk in item:
                        ip = (*p, _item_key(item, mk))
                        out.add((*ip, "."))
                        out |= leaves(item, ip, top=False, kind=kind)
                    else:
                        out.add(p)
        else:
            out.add(p)
    return out


def value(obj: Any, leaf: Leaf) -> Any:
    cur = obj
    for seg in leaf:
        if seg == ".":
            return True if cur is not _MISSING else _MISSING
        if seg.startswith("f:"):
            if not isinstance(cur, dict) or seg[2:] not in cur:
                return _MISSING
            cur = cur[seg[2:]]
        elif seg.startswith("k:"):
            want = json.loads(seg[2:])
            ((k, kv),) = want.items()
            if not isinstance(cur, list):
                return _MISSING
            cur = next((x for x in cur if isinstance(x, dict) and x.get(k) == kv), _MISSING)
            if cur is _MISSING:
                return _MISSING
        elif seg.startswith("v:"):
            return True if isinstance(cur, list) and json.loads(seg[2:]) in cur else _MISSING
    return cur


def remove(obj: Any, leaf: Leaf) -> None:
    """Delete the field at leaf (for ``.`` and ``v:`` the list element) from obj."""
    parent: Any = None
    cur = obj
    for i, seg in enumerate(leaf):
        last = i == len(leaf) - 1
        if seg == ".":
            if isinstance(parent, list):
                parent[:] = [x for x in parent if x is not cur]
            return
        if seg.startswith("f:"):
            if not isinstance(cur, dict) or seg[2:] not in cur:
                return
            if last:
                del cur[seg[2:]]
                return
            parent, cur = cur, cur[seg[2:]]
        elif seg.startswith("k:"):
            ((k, kv),) = json.loads(seg[2:]).items()
            if not isinstance(cur, list):
                return
            nxt = next((x for x in cur if isinstance(x, dict) and x.get(k) == kv), None)
            if nxt is None:
                return
            parent, cur = cur, nxt
        elif seg.startswith("v:"):
            if isinstance(cur, list):
                cur[:] = [x for x in cur if x != json.loads(seg[2:])]
            return


def to_tree(ls: set[Leaf]) -> Obj:
    tree: Obj = {}
    for leaf in sorted(ls):
        node = tree
        for seg in leaf:
            node = node.setdefault(seg, {})
    return tree


def from_tree(tree: Any, prefix: Leaf = ()) -> set[Leaf]:
    out: set[Leaf] = set()
    if not isinstance(tree, dict):
        return out
    for k, v in tree.items():
        p = (*prefix, k)
        if isinstance(v, dict) and v:
            out |= from_tree(v, p)
        else:
            out.add(p)
    return out


def path_string(leaf: Leaf) -> str:
    s = ""
    for seg in leaf:
        if seg.startswith("f:"):
            s += "." + seg[2:]
        elif seg.startswith("k:"):
            ((k, kv),) = json.loads(seg[2:]).items()
            s += f"[{k}={json.dumps(kv)}]"
        elif seg.startswith("v:"):
            s += f"[={seg[2:]}]"
    return s


def _entries(obj: Obj) -> list[Obj]:
    return list((obj.get("metadata") or {}).get("managedFields") or [])


def _set_entries(obj: Obj, entries: list[Obj]) -> None:
    entries = [e for e in entries if e.get("fieldsV1")]
    if entries:
        obj["metadata"]["managedFields"] = entries
    else:
        obj["metadata"].pop("managedFields", None)


def _strip(entries: list[Obj], taken: set[Leaf], except_idx: int | None = None) -> list[Obj]:
    out = []
    for i, e in enumerate(entries):
        if i == except_idx:
            out.append(e)
            continue
        fs = from_tree(e.get("fieldsV1")) - taken
        ne = dict(e, fieldsV1=to_tree(fs))
        out.append(ne)
    return out


def record_update(new: Obj, old: Obj | None, manager: str, api_version: str, now: str, subresource: str = "") -> None:
    """Give manager the fields this write changed (an ``Update`` operation). A write of the
    status subresource owns what it changed anywhere: its status, and what else the kind's
    status strategy let through (a Deployment's revision annotation)."""
    status = subresource == "status"
    entries = _entries(old) if old is not None else []

    def all_leaves(obj: Obj) -> set[Leaf]:
        return leaves(obj, status=True) | leaves(obj) if status else leaves(obj)

    new_l = all_leaves(new)
    if old is None:
        changed = new_l
        removed: set[Leaf] = set()
    else:
        old_l = all_leaves(old)
        changed = {leaf for leaf in new_l if value(old, leaf) != value(new, leaf)}
        removed = old_l - new_l
    entries = _strip(entries, changed | removed)
    if changed:
        idx = next(
            (
                i
                for i, e in enumerate(entries)
                if e.get("manager") == manager
                and e.get("operation") == "Update"
                and e.get("subresource", "") == subresource
            ),
            None,
        )
        if idx is None:
            entry: Obj = {
                "manager": manager,
                "operation": "Update",
                "apiVersion": api_version,
                "time": now,
                "fieldsType": "FieldsV1",
                "fieldsV1": {},
            }
            if subresource:
                entry["subresource"] = subresource
            entries.append(entry)
            idx = len(entries) - 1
        e = dict(entries[idx])
        e["fieldsV1"] = to_tree(from_tree(e.get("fieldsV1")) | changed)
        e["time"] = now
        entries[idx] = e
    _set_entries(new, entries)


def apply(live: Obj, applied: Obj, manager: str, api_version: str, now: str, force: bool) -> Obj:
    """Merge an applied config into live, owning its fields; raise 409 on conflicts."""
    entries = _entries(live)
    applied_l = leaves(applied)
    mine = next(
        (i for i, e in enumerate(entries) if e.get("manager") == manager and e.get("operation") == "Apply"), None
    )
    conflicts: dict[str, list[Leaf]] = {}
    for i, e in enumerate(entries):
        if i == mine:
            continue
        owned = from_tree(e.get("fieldsV1"))
        for leaf in applied_l & owned:
            lv = value(live, leaf)
            if lv is not _MISSING and lv != value(applied, leaf):
                conflicts.setdefault(f'"{e.get("manager")}" using {e.get("apiVersion", api_version)}', []).append(leaf)
    if conflicts and not force:
        n = sum(len(v) for v in conflicts.values())
        parts = []
        causes = []
        for who, ls in conflicts.items():
            for leaf in sorted(ls):
                causes.append(
                    {"reason": "FieldManagerConflict", "message": f"conflict with {who}", "field": path_string(leaf)}
                )
            if len(ls) == 1:
                parts.append(f"conflict with {who}: {path_string(ls[0])}")
            else:
                parts.append(f"conflicts with {who}:\n" + "\n".join(f"- {path_string(x)}" for x in sorted(ls)))
        msg = f"Apply failed with {n} conflict{'s' if n > 1 else ''}: " + "\n".join(parts)
        raise ApiError(409, "Conflict", msg, {"causes": causes})
    merged = copy.deepcopy(live)
    prev = from_tree(entries[mine].get("fieldsV1")) if mine is not None else set()
    others: set[Leaf] = set()
    for i, e in enumerate(entries):
        if i != mine:
            others |= from_tree(e.get("fieldsV1"))
    gone = prev - applied_l - others
    # whole list items first (so their fields are not stripped one by one), then fields
    for leaf in sorted((x for x in gone if x[-1] == "."), key=len):
        remove(merged, leaf)
    for leaf in sorted((x for x in gone if x[-1] != "."), key=len, reverse=True):
        remove(merged, leaf)
    out = strategic_merge(merged, applied, patch_order=False)
    merged = out if isinstance(out, dict) else {}
    taken = applied_l
    entries = _strip(entries, taken, except_idx=mine)
    entry: Obj = {
        "manager": manager,
        "operation": "Apply",
        "apiVersion": api_version,
        "time": now,
        "fieldsType": "FieldsV1",
        "fieldsV1": to_tree(applied_l),
    }
    if mine is None:
        entries.append(entry)
    else:
        entries[mine] = entry
    merged.setdefault("metadata", {})
    _set_entries(merged, entries)
    return merged
