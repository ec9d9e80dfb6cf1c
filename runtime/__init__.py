"""The bundled namespace runtime: sandboxes on runc, PTY sessions, images.

This package is a library and a daemon in one and imports no Django (see
ARCHITECTURE.md). ``python -m runtime --help`` is its command line.

Layers, lowest first. A module imports from its own layer and the layers below, never
from above (not even for type hints), and never a ``_private`` name or module of another
package (tests/runtime/test_layering.py keeps both, and that every module imports alone):

1. ``errors``, ``procfs``, ``urlsafety``, ``loops``, ``unixsock``, ``auth``, ``proxy``, ``nodecert``
2. ``kernel``
3. ``images``, ``sessions``
4. ``sandbox``
5. ``dockerapi``
6. ``kube``
7. ``relay``, ``client``, ``backends``, ``placement``, ``daemon``, ``__main__``, ``runtime``

``kernel`` is the host-side machinery every sandbox service shares (running a command or
opening a socket in a network namespace, helper children, short host commands). ``kube``
sits above ``dockerapi`` because the lab cluster's kubelet runs pods on the sandbox's
Docker engine. Layer 7 is the daemon, its clients and the backends the web tier uses.
"""

from __future__ import annotations
