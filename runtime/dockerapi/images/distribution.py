"""``GET /distribution/{name}/json`` (moby's ``distribution/``): there is no registry, so only
catalog images have a manifest to describe."""

from __future__ import annotations

import json
from typing import Any

from runtime.dockerapi.images.store import EngineStore
from runtime.images import catalog


def descriptor(store: EngineStore, ref: str) -> dict[str, Any] | None:
    """``GET /distribution/{name}/json`` for a catalog reference: the manifest's descriptor
    and platforms as a registry would give them (None outside the catalog)."""
    entry = catalog.lookup(ref)
    if entry is None:
        return None
    for cfg in store.catalog_store.list():
        if cfg.name != entry.name:
            continue
        raw = store.catalog_store.blob_path(cfg.digest).read_bytes()
        manifest = json.loads(raw)
        config = json.loads(store.catalog_store.blob_path(manifest["config"]["digest"]).read_bytes())
        platform = {
            "architecture": str(config.get("architecture") or "amd64"),
            "os": str(config.get("os") or "linux"),
        }
        if config.get("variant"):
            platform["variant"] = str(config["variant"])
        media = str(manifest.get("mediaType") or "application/vnd.oci.image.manifest.v1+json")
        return {"Descriptor": {"mediaType": media, "digest": cfg.digest, "size": len(raw)}, "Platforms": [platform]}
    return None
