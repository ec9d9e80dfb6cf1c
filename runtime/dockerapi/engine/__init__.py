"""The engine of one sandbox (moby's ``daemon/``): see runtime/dockerapi/__init__.py.

``Engine`` is the façade the HTTP layer, the builder, the kubelet and the tests call; it is
re-exported here so ``from runtime.dockerapi.engine import Engine`` names it wherever it is
implemented.
"""

from __future__ import annotations

from runtime.dockerapi.engine.core import CAPS, Engine, Stream

__all__ = ["CAPS", "Engine", "Stream"]
