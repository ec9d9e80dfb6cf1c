"""runtimed's Python helper children: ``helper_argv``/``helper_env``, and ``AdoptedPopen``.

Helper children. Kernel work happens in child processes (CONVENTIONS.md, 10); a helper
written in Python is a module of ``runtime`` (importable and testable as any other) started
as ``python -P -s -S -m MODULE ARG...``: ``helper_argv`` builds that argv for a module of
``HELPERS`` only, every argument a string passed as data (never code: no ``-c`` strings),
and ``helper_env`` is its whole environment (``PYTHONPATH`` = the directory holding
``runtime/``, so ``-m`` finds it without any ``sys.path`` edit; ``PATH``, ``LANG``; nothing of
runtimed's own environment). ``-P``: neither the current directory nor a script's is put on
``sys.path``; ``-s -S``: no site-packages, stdlib only. A helper imports what it shares with
another by its module name (the mount helpers: ``runtime.kernel.mounts``), never a private
module of another package, and changes no ``sys.path`` (tests/runtime/test_layering.py).

Cost. Importing a module imports its packages first, so every package on a helper's path
has an ``__init__`` that imports nothing (``runtime``, ``runtime.kernel``, ``runtime.sandbox``,
``runtime.dockerapi``, ``runtime.kube``, ``runtime.kube.node``; tests/runtime/kernel/
test_children.py checks it, and that a helper's start imports no other module of ours than
those, itself and ``runtime.kernel.mounts``). ``-m`` itself costs runpy and importlib.util
(about ten stdlib modules, ~1 ms) over starting a file by path.

Where they run. The caller starts the argv where the work belongs: in a sandbox's cgroup
through ``runtime.sandbox.cgexec.Placement`` when the work is that sandbox's bill (the
engine helper ``runtime.dockerapi._enginehelper``, the editor's ``runtime.sandbox._fileshelper``,
``runtime.kube.node._netns_probe`` and ``_netns_sockets``), else as runtimed's own child.
The per-sandbox-start helpers (``runtime.sandbox._mounthelper``,
``runtime.kube.node._netns_listen``) are forked instead from ``forkserver.py``'s server
(``runtime.kernel._forkserver``, itself started with ``helper_argv``), which imported them.
One Python program is not a helper module: ``runtime/sandbox/_cgexec.py``, the stand-in for
the ``kl-cgexec`` exec wrapper where that was not built, started by path with ``python -I
-S``, because it execs the caller's program with the caller's environment unchanged, which
therefore cannot carry the ``PYTHONPATH`` that ``-m`` needs; it imports nothing of ours.

Adopted children. Child processes that runtimed did not fork itself but waits for as its own.

runtimed is a child subreaper (``PR_SET_CHILD_SUBREAPER``): a process started for it by
another one (``runc exec -d`` in a sandbox or a student's container, the helper fork server)
whose parent exits is re-parented to runtimed, so ``waitpid`` on it works as on a forked
child. ``AdoptedPopen`` gives such a process the whole ``subprocess.Popen`` interface
(pipes, ``wait``/``poll``/``communicate``, ``kill``): Popen makes the pipes as usual and
hands their child ends to ``launch``, which starts the process with them by whatever means
and returns its pid, instead of forking.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# the directory that holds runtime/ (what PYTHONPATH names for a helper)
ROOT = Path(__file__).resolve().parents[2]
# the modules that may be started as helpers (``python -m``), nothing else
HELPERS = frozenset(
    {
        "runtime.kernel._forkserver",
        "runtime.sandbox._mounthelper",
        "runtime.sandbox._fileshelper",
        "runtime.dockerapi._enginehelper",
        "runtime.kube.node._netns_listen",
        "runtime.kube.node._netns_probe",
        "runtime.kube.node._netns_sockets",
    }
)


def helper_argv(module: str, args: Sequence[str]) -> list[str]:
    """``[python, -P, -s, -S, -m, module, *args]`` for a module of ``HELPERS``; start it with
    ``env=helper_env()``. Refuses any other module and any argument that is not a string
    without NUL (an argv is data: each argument reaches the helper's ``sys.argv`` as is)."""
    if module not in HELPERS:
        raise ValueError(f"{module!r} is not a helper module (runtime.kernel.children.HELPERS)")
    for arg in args:
        if not isinstance(arg, str) or "\0" in arg:
            raise ValueError(f"helper argument {arg!r} is not a string without NUL")
    return [sys.executable, "-P", "-s", "-S", "-m", module, *args]


def helper_env() -> dict[str, str]:
    """A helper's whole environment: where ``runtime`` is, ``PATH`` and ``LANG``."""
    return {
        "PYTHONPATH": str(ROOT),
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "LANG": "C.UTF-8",
    }


# launch(stdin, stdout, stderr) -> pid; each descriptor is -1 when not redirected
Launch = Callable[[int, int, int], int]


class AdoptedPopen(subprocess.Popen[bytes]):
    """A Popen for a process started by ``launch`` and re-parented to us (subreaper).

    Popen creates the pipes and hands their child ends to ``_execute_child``;
    we give them to ``launch`` (runc passes them to the process, the fork server places
    them in its child) instead of forking. ``wait``/``poll``/``communicate`` then work
    unchanged: ``waitpid`` on a re-parented child is as good as on a forked one.
    """

    def __init__(
        self,
        launch: Launch,
        *,
        stdin: int | None,
        stdout: int | None,
        stderr: int | None,
        argv: list[str],
    ) -> None:
        self._launch = launch
        super().__init__(argv, stdin=stdin, stdout=stdout, stderr=stderr)

    def _execute_child(self, *a: Any) -> None:
        p2cread, p2cwrite, c2pread, c2pwrite, errread, errwrite = a[10:16]
        try:
            self.pid = self._launch(p2cread, c2pwrite, errwrite)
            self._child_created = True
        finally:
            self._close_pipe_fds(p2cread, p2cwrite, c2pread, c2pwrite, errread, errwrite)  # type: ignore[attr-defined]
