"""Sandboxes: runc containers with user namespaces, idmapped overlay roots, cgroups and a network.

See manager.py (lifecycle, processes), fastexec.py and agent/ (the resident
exec agent behind ``spawn``: starting, adopting and talking to it), bundle.py (namespaces, capabilities,
seccomp), _mounthelper.py (idmapped layers, disk quota; forked from runtime/kernel/
forkserver.py's pre-imported server), cgroups.py (v1/v2, delegation) and
network.py (bridge, veth, nftables isolation).
"""

from __future__ import annotations

from runtime.sandbox.manager import SandboxManager, Spawned
from runtime.sandbox.spec import SandboxInfo, SandboxSpec

__all__ = ["SandboxInfo", "SandboxManager", "SandboxSpec", "Spawned"]
