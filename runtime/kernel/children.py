"""Child processes that runtimed did not fork itself but waits for as its own: ``AdoptedPopen``.

runtimed is a child subreaper (``PR_SET_CHILD_SUBREAPER``): a process started for it by
another one (``runc exec -d`` in a sandbox or a student's container, the helper fork server)
whose parent exits is re-parented to runtimed, so ``waitpid`` on it works as on a forked
child. ``AdoptedPopen`` gives such a process the whole ``subprocess.Popen`` interface
(pipes, ``wait``/``poll``/``communicate``, ``kill``): Popen makes the pipes as usual and
hands their child ends to ``launch``, which starts the process with them by whatever means
and returns its pid, instead of forking.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from typing import Any

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
