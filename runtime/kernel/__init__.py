"""Host-side kernel machinery shared by every sandbox service (layer 2, above ``errors``).

Everything here runs as runtimed (root, on the host) and knows nothing of sandboxes,
engines or clusters; the packages above hand it a pid, a command, a descriptor.

``proc.py``
    One way to run a short host command: argv list, timeout, errors that say what failed,
    waits on a pidfd (no polling).
``netns.py``
    One way to run a command inside another process's network namespace (``nsenter
    --net=/proc/<pid>/ns/net``), where runtimed starts it or, given a ``Runner`` such as
    a sandbox's ``Placement``, in that sandbox's cgroup.
``safewrite.py``
    One way to act on a path inside a tree a student controls (``openat2`` with
    ``RESOLVE_IN_ROOT``): open, bounded read, ``mkdir -p``, replace a file or a link.
``children.py``
    The one way to start a Python helper child: ``helper_argv``/``helper_env`` (``python -P
    -s -S -m MODULE``, a module of ``HELPERS`` below packages whose ``__init__`` imports
    nothing); and ``AdoptedPopen``, the ``Popen`` of a process started for runtimed by another
    one (``runc exec -d``, the helper fork server) and re-parented to it, a child subreaper.
``forkserver.py`` / ``_forkserver.py``
    The per-sandbox-start helpers (the mount helper, the netns listener) forked from one
    server that imported them by module name, instead of a fresh interpreter each (issue #13).
``mounts.py``
    The mount primitives of the helper children that mount (the sandbox's mount helper, the
    engine's helper): mount, detach, idmapped binds of shared layers; ``ctypes`` and ``os`` only.
``clock.py``
    One set of timestamp helpers: Kubernetes' ``metav1.Time`` (to the second) and
    ``MicroTime``, the Docker engine's RFC 3339 with a fraction, Go's ``RFC3339Nano``, and
    their parsers (strict for what the cluster wrote itself, lenient for clients').
"""

from __future__ import annotations
