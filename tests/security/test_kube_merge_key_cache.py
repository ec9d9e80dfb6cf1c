"""Merge keys are looked up (and cached) by field names and kinds from request bodies: a
student sending patches with ever new names must not grow the server's memory without bound."""

from __future__ import annotations

from runtime.kube.machinery import patch, upstream


def test_lookups_keyed_by_request_data_stay_bounded() -> None:
    for i in range(upstream.CACHE_SIZE + 500):
        live = {"kind": f"Kind{i}", "spec": {f"list{i}": [1]}}
        patch.strategic_merge(live, {"spec": {f"list{i}": [2], "containers": [{"name": "c"}]}})
    for fn in (upstream.owner_at, upstream.path_merge_key, upstream.patch_merge_key, upstream.message):
        info = fn.cache_info()
        assert info.maxsize == upstream.CACHE_SIZE
        assert info.currsize <= upstream.CACHE_SIZE


def test_unknown_kinds_and_fields_replace_lists() -> None:
    out = patch.strategic_merge({"kind": "Nope", "spec": {"xs": [1]}}, {"spec": {"xs": [2]}})
    assert out["spec"]["xs"] == [2]
