"""Images for sandboxes: a content-addressed OCI store, base image recipes, import/export.

See ``runtime/images/store.py`` for the on-disk design.
"""

from __future__ import annotations

from runtime.images.store import ImageConfig, ImageStore, default_store

__all__ = ["ImageConfig", "ImageStore", "default_store"]
