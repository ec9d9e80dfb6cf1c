"""The patch types of the Kubernetes API: JSON patch, JSON merge patch, strategic merge patch.

Strategic merge patch needs each list field's patch strategy, which a real
server reads from Go struct tags (``patchMergeKey``). We read the same tags from
upstream's vendored generated.proto (machinery/upstream.py); a list without one
is replaced, as for an untagged field.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any

from runtime.kube.machinery import upstream
from runtime.kube.machinery.apierrors import ApiError
from runtime.kube.machinery.limits import expanded_size

JSONPATCH = "application/json-patch+json"
MERGEPATCH = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"

# Strategic-merge list strategies come from upstream's own data (machinery/upstream.py over runtime/kube/upstream: the
# patchMergeKey/patchStrategy markers of k8s.io/api's generated.proto), read by the patcher and by
# server-side apply's field sets (machinery/ssa.py). The served OpenAPI (apiserver/openapi.py), which
# kubectl reads to compute its own client-side apply patches, is upstream's api/openapi-spec/v3,
# whose x-kubernetes-patch-* / list-* extensions tests/runtime/kube/test_openapi_upstream.py checks
# against the same markers.


def schema_merge_key(owner: str, fld: str) -> str | None:
    """The merge key of list field ``fld`` of the upstream type ``owner`` (its short name,
    e.g. ``ServiceSpec``, or its OpenAPI name); "" for a merged set of primitives, None for
    a replaced list."""
    return upstream.patch_merge_key(owner, fld)


def merge_key(path: tuple[str, ...], fld: str, kind: str = "") -> str | None:
    """The merge key of list field ``fld`` at ``path`` (field names from the object's root,
    list items not counted) of an object of ``kind``; without a known kind (or for a kind
    upstream does not define), the key every upstream kind with that path agrees on."""
    if kind:
        owner = upstream.owner_at(kind, path)
        if owner is not None:
            return upstream.patch_merge_key(owner.full_name, fld)
    return upstream.path_merge_key(path, fld)


# -- JSON merge patch (RFC 7386) ---------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge_patch(result.get(k), v)
    return result


# -- JSON patch (RFC 6902) -----------------------------------------------------


def _unesc(tok: str) -> str:
    return tok.replace("~1", "/").replace("~0", "~")


def _walk(doc: Any, pointer: str) -> tuple[Any, str]:
    if not pointer.startswith("/"):
        raise ApiError(
            422,
            "Invalid",
            f"the server rejected our request due to an error in our request: invalid path {pointer}",
        )
    toks = [_unesc(t) for t in pointer[1:].split("/")]
    cur = doc
    for t in toks[:-1]:
        if isinstance(cur, list):
            cur = cur[int(t)]
        elif isinstance(cur, dict):
            if t not in cur:
                raise KeyError(t)
            cur = cur[t]
        else:
            raise KeyError(t)
    return cur, toks[-1]


def json_patch(doc: Any, ops: Any, max_copy_bytes: int | None = None) -> Any:
    """``max_copy_bytes``: json-patch's AccumulatedCopySizeLimit (kube-apiserver sets 3 MiB):
    without it, a few ``copy`` operations that each double the document grow it
    exponentially."""
    if not isinstance(ops, list):
        raise ApiError(400, "BadRequest", "json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    doc = copy.deepcopy(doc)
    copied = 0
    for op in ops:
        if max_copy_bytes is not None and isinstance(op, dict) and op.get("op") == "copy":
            with contextlib.suppress(KeyError, IndexError, ValueError, TypeError, AttributeError):
                # (a missing path is the op's own error, below)
                copied += expanded_size(_get(doc, op.get("from", "")), max_copy_bytes + 1)
            if copied > max_copy_bytes:
                raise ApiError(
                    422,
                    "Invalid",
                    "the server rejected our request due to an error in our request (Unable to complete the "
                    f"copy, the accumulated size increase of copy is {copied}, exceeding the limit {max_copy_bytes})",
                )
        try:
            doc = _apply_op(doc, op)
        except (KeyError, IndexError, ValueError, TypeError) as e:
            path = op.get("path", "") if isinstance(op, dict) else ""
            kind = op.get("op", "") if isinstance(op, dict) else ""
            raise ApiError(
                422,
                "Invalid",
                f"the server rejected our request due to an error in our request"
                f" (json patch {kind} operation does not apply: doc is missing path: {path!s}): {e}",
            ) from None
    return doc


def _get(doc: Any, pointer: str) -> Any:
    if pointer == "":
        return doc
    parent, last = _walk(doc, pointer)
    if isinstance(parent, list):
        return parent[int(last)]
    return parent[last]


def _apply_op(doc: Any, op: dict[str, Any]) -> Any:
    kind = op["op"]
    path = op["path"]
    if kind == "test":
        if _get(doc, path) != op.get("value"):
            raise ValueError("testing value failed")
        return doc
    if kind in ("copy", "move"):
        value = copy.deepcopy(_get(doc, op["from"]))
        if kind == "move":
            doc = _apply_op(doc, {"op": "remove", "path": op["from"]})
        return _apply_op(doc, {"op": "add", "path": path, "value": value})
    if path == "":
        if kind in ("add", "replace"):
            return copy.deepcopy(op["value"])
        raise ValueError("cannot remove root")
    parent, last = _walk(doc, path)
    if kind == "add":
        if isinstance(parent, list):
            if last == "-":
                parent.append(copy.deepcopy(op["value"]))
            else:
                idx = int(last)
                if idx > len(parent):
                    raise IndexError(idx)
                parent.insert(idx, copy.deepcopy(op["value"]))
        else:
            parent[last] = copy.deepcopy(op["value"])
    elif kind == "replace":
        if isinstance(parent, list):
            parent[int(last)] = copy.deepcopy(op["value"])
        else:
            if last not in parent:
                raise KeyError(last)
            parent[last] = copy.deepcopy(op["value"])
    elif kind == "remove":
        if isinstance(parent, list):
            del parent[int(last)]
        else:
            del parent[last]
    else:
        raise ValueError(f"unknown op {kind}")
    return doc


# -- strategic merge patch ------------------------------------------------------


def strategic_merge(
    original: Any, patch: Any, path: tuple[str, ...] = (), *, patch_order: bool = True, kind: str = ""
) -> Any:
    """A strategic merge patch. ``patch_order``: merged lists in strategicpatch's order
    (``_element_order``); server-side apply (machinery/ssa.py) passes False and keeps the live order
    with new items after it, as its structured merge does for items it adds at the end."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if not isinstance(original, dict):
        original = {}
    if not path and not kind:
        kind = str(original.get("kind") or patch.get("kind") or "")
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return None
    result = dict(original)
    retain = patch.get("$retainKeys")
    for k, v in patch.items():
        if k in ("$patch", "$retainKeys"):
            continue
        if k.startswith("$setElementOrder/"):
            continue
        if k.startswith("$deleteFromPrimitiveList/"):
            fld = k.split("/", 1)[1]
            if isinstance(result.get(fld), list):
                result[fld] = [x for x in result[fld] if x not in v]
            continue
        if v is None:
            result.pop(k, None)
            continue
        cur = result.get(k)
        if isinstance(v, dict):
            merged = strategic_merge(cur, v, (*path, k), patch_order=patch_order, kind=kind)
            if merged is None:
                result.pop(k, None)
            else:
                result[k] = merged
        elif isinstance(v, list):
            result[k] = _merge_list(cur, v, (*path, k), merge_key(path, k, kind), patch_order, kind)
        else:
            result[k] = copy.deepcopy(v)
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    for k, v in patch.items():
        if k.startswith("$setElementOrder/"):
            fld = k.split("/", 1)[1]
            if isinstance(result.get(fld), list) and isinstance(v, list):
                key = merge_key(path, fld, kind)
                if patch_order and key is not None:
                    # normalizeElementOrder with the directive as the patch's order: the
                    # server-only items keep their places among the ordered ones
                    live = original.get(fld) if isinstance(original.get(fld), list) else []
                    result[fld] = _element_order(result[fld], v, live, _ident(key))
                else:
                    result[fld] = _reorder(result[fld], v, key)
    return result


def _ident(key: str) -> Any:
    return (lambda x: x.get(key) if isinstance(x, dict) else x) if key else (lambda x: x)


def _reorder(items: list[Any], order: list[Any], key: str | None) -> list[Any]:
    def ident(x: Any) -> Any:
        if key and isinstance(x, dict):
            return x.get(key)
        return x if not isinstance(x, dict | list) else None

    wanted = [ident(o) for o in order]
    ranked = [x for w in wanted for x in items if ident(x) == w and w is not None]
    rest = [x for x in items if ident(x) not in wanted or ident(x) is None]
    return ranked + rest


def _merge_list(
    cur: Any, patch: list[Any], path: tuple[str, ...], key: str | None, patch_order: bool = True, kind: str = ""
) -> list[Any]:
    if key is None:
        # no strategy: replace (after dropping directive elements)
        return [copy.deepcopy(x) for x in patch if not (isinstance(x, dict) and "$patch" in x)]
    current: list[Any] = list(cur) if isinstance(cur, list) else []
    if any(isinstance(x, dict) and x.get("$patch") == "replace" for x in patch):
        return [copy.deepcopy(x) for x in patch if not (isinstance(x, dict) and "$patch" in x)]
    if key == "":
        out = list(current)
        for x in patch:
            if x not in out:
                out.append(copy.deepcopy(x))
        return _element_order(out, patch, current, lambda x: x) if patch_order else out
    out = [copy.deepcopy(x) for x in current]
    for item in patch:
        if not isinstance(item, dict):
            out.append(copy.deepcopy(item))
            continue
        kv = item.get(key)
        idx = next((i for i, x in enumerate(out) if isinstance(x, dict) and x.get(key) == kv), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                out = [x for x in out if not (isinstance(x, dict) and x.get(key) == kv)]
            continue
        if idx is None:
            out.append(strategic_merge({}, item, path, patch_order=patch_order, kind=kind))
        else:
            out[idx] = strategic_merge(out[idx], item, path, patch_order=patch_order, kind=kind)
    if not patch_order:
        return out
    return _element_order(out, patch, current, lambda x: x.get(key) if isinstance(x, dict) else x)


def _element_order(merged: list[Any], patch: list[Any], server: list[Any], ident: Any) -> list[Any]:
    """strategicpatch's normalizeElementOrder: the merged items the patch names, in the
    patch's order, interleaved with the server-only items, in the live order, by
    mergeSortedSlice (a server-only item goes before a patch item only when both are in the
    live list and it comes first there). A new item of the patch therefore comes before the
    live items (the kubectl patch task's example: the added container is listed first)."""
    patch_ids = [ident(x) for x in patch if not (isinstance(x, dict) and "$patch" in x)]
    server_ids = [ident(x) for x in server]
    in_patch = [x for x in merged if ident(x) in patch_ids]
    in_patch.sort(key=lambda x: patch_ids.index(ident(x)))
    server_only = [x for x in merged if ident(x) not in patch_ids]
    server_only.sort(key=lambda x: server_ids.index(ident(x)) if ident(x) in server_ids else len(server_ids))

    def pos(x: Any) -> int:
        i = ident(x)
        return server_ids.index(i) if i in server_ids else -1

    out: list[Any] = []
    i = j = 0
    while i < len(server_only) or j < len(in_patch):
        if i >= len(server_only):
            out.append(in_patch[j])
            j += 1
        elif j >= len(in_patch):
            out.append(server_only[i])
            i += 1
        else:
            li, ri = pos(server_only[i]), pos(in_patch[j])
            if li >= 0 and ri >= 0 and li < ri:
                out.append(server_only[i])
                i += 1
            else:
                out.append(in_patch[j])
                j += 1
    return out
