"""Sandboxes: runc containers with user namespaces, idmapped overlay roots, cgroups and a network.

See manager.py (lifecycle, processes: ``SandboxManager``), spec.py (``SandboxSpec``,
``SandboxInfo``), fastexec.py and agent/ (the resident exec agent behind ``spawn``: starting,
adopting and talking to it), bundle.py (namespaces, capabilities, seccomp), _mounthelper.py
(idmapped layers, disk quota; forked from runtime/kernel/forkserver.py's pre-imported server),
cgroups.py (v1/v2, delegation) and network.py (bridge, veth, nftables isolation).

This package's ``__init__`` imports nothing: its helper children (``_mounthelper``,
``_fileshelper``) are modules below it started with ``python -m``
(runtime/kernel/children.py), and importing a helper imports its packages first. Import
what you use from its module (``from runtime.sandbox.manager import SandboxManager``).
"""

from __future__ import annotations
