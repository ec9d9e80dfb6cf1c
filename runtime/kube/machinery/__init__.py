"""apimachinery: the API's building blocks (errors, quantities, selectors, patches, apply, CEL, cron,
protobuf, size limits). Imports nothing above it: only ``runtime.kube.meta`` and itself."""

from __future__ import annotations
