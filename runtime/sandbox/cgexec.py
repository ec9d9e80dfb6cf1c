"""Host helpers that work for a sandbox run in that sandbox's cgroup: ``Placement``.

Why. runtimed does a sandbox service's kernel work in child processes (CONVENTIONS.md,
10): ``runc create/start/exec/delete`` of a student's containers, ``nsenter`` + ``ip`` /
``nft`` in the sandbox's netns, the engine's mount helper, the ``sleep`` that holds a
running container's output pipes. A child of runtimed starts in runtimed's own cgroup:
that work would be charged to no sandbox, and a flood of requests from one student
(issue #12: 3,000 ``docker create``/``run`` in a loop) would start hundreds of processes
outside every limit. Every process working for a sandbox must count against that
sandbox's pids, memory and cpu.

Where. A child cgroup of the sandbox's, ``<sandbox cgroup>/.engine`` (``name``), in the
hierarchies that limit or account the sandbox: the unified dir on v2; on v1 ``pids``,
``memory``, ``cpu``, ``cpuacct`` and ``blkio``, plus the unified hierarchy of a hybrid
host (no controllers there, but ``/proc/<pid>/cgroup`` then names the sandbox in every
line that matters). Not ``cpuset`` (a fresh v1 cpuset child has no cpus: joining it
fails), ``devices`` or ``freezer``. A child rather than the sandbox's own cgroup: on v2 a
cgroup whose controllers are delegated to children may hold no processes itself, and
``.engine`` keeps runtimed's helpers apart from the student's processes in ``docker top``
or ``cgroup.procs``. The sandbox's root may remove the empty ``.engine`` (its parent is
delegated to it) and make its own: each spawn re-creates it if needed, and whatever the
student sets there still sits below the sandbox's own limits.

How. At each spawn runtimed makes the dirs (``exist_ok``), opens their ``cgroup.procs``
(as root, on the host) and starts ``kl-cgexec FD,FD,... PROGRAM ARGS`` with those
descriptors (``pass_fds``): the wrapper writes "0" to each -- which moves the writer
itself -- closes them and execs PROGRAM with the same pid. So the program is in the
sandbox's cgroup before its first instruction, and so is every process it forks. No
``preexec_fn`` (a fork of a threaded interpreter running Python), no process-wide state.
``kl-cgexec`` is a static C program (``agent/build.sh``, ~1 ms); where it was not built,
``_cgexec.py`` does the same under ``python -I -S`` (~20 ms more per helper), started by path
rather than as a helper module (runtime/kernel/children.py): it execs the program with the
caller's environment unchanged, so that environment cannot carry the ``PYTHONPATH`` that
``python -m`` needs.

Limits, exactly. Charges follow the process from the moment it joins. The kernel lets a
process *migrate* into a pids cgroup that is at ``pids.max`` (only fork is refused), so a
joining wrapper can put the sandbox one pid over its limit for as long as it runs; every
process it forks is refused past the limit. The engine bounds how many helpers one
sandbox runs at once (``Engine`` admits a few operations at a time), which bounds that.

When the sandbox's cgroup no longer exists (the sandbox died, runc removed it), there is
nothing left to charge and teardown (unmount, delete runc state) must still happen: the
helper then runs where runtimed runs, and a debug line says so. Any other failure to
join fails the spawn: a helper never runs outside the sandbox's cgroup silently.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from runtime import errors
from runtime.kernel.proc import wait as wait_proc
from runtime.sandbox.cgroups import CGROUP_ROOT, Cgroups

log = logging.getLogger("runtime.sandbox")

WRAPPER_BUILT = Path(__file__).with_name("agent") / "kl-cgexec"
WRAPPER_PY = Path(__file__).with_name("_cgexec.py")
ENGINE_CGROUP = ".engine"
V1_JOINED = ("pids", "memory", "cpu", "cpuacct", "blkio", "unified")
EXIT_NOT_JOINED = 125


def wrapper_argv() -> list[str]:
    """The wrapper's own argv prefix: the static program if built, else its Python twin."""
    if os.access(WRAPPER_BUILT, os.X_OK):
        return [str(WRAPPER_BUILT)]
    return [sys.executable, "-I", "-S", str(WRAPPER_PY)]


class Placement:
    """Spawns host helpers inside ``<cgroup_path>/<name>`` (see the module docstring).

    ``cgroup_path`` is the sandbox's runc ``cgroupsPath`` (``/kubelab/<sid>``)."""

    def __init__(self, cgroup_path: str, name: str = ENGINE_CGROUP, *, cgroups: Cgroups | None = None) -> None:
        self.rel = cgroup_path.strip("/")
        self.name = name
        self._cg = cgroups if cgroups is not None else Cgroups()
        self._wrapper = wrapper_argv()
        if len(self._wrapper) > 1:
            log.warning("%s is not built (agent/build.sh): helpers join cgroups through Python", WRAPPER_BUILT)

    def sandbox_dirs(self) -> list[Path]:
        """The sandbox's own cgroup dirs in the joined hierarchies (one on v2)."""
        if self._cg.v2:
            return [CGROUP_ROOT / self.rel]
        mounts = sorted({self._cg.v1[c] for c in V1_JOINED if c in self._cg.v1})
        return [m / self.rel for m in mounts]

    def dirs(self) -> list[Path]:
        """Where helpers run: ``.engine`` below each of ``sandbox_dirs()``."""
        return [d / self.name for d in self.sandbox_dirs()]

    def _open(self) -> list[int]:
        fds: list[int] = []
        try:
            for parent in self.sandbox_dirs():
                if not parent.is_dir():
                    continue  # the sandbox's cgroup is gone (in this hierarchy): see the docstring
                d = parent / self.name
                with contextlib.suppress(FileExistsError):
                    d.mkdir(mode=0o755)
                fds.append(os.open(d / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW))
        except OSError as exc:
            for fd in fds:
                os.close(fd)
            raise errors.RuntimeError(f"cannot place a helper in the sandbox's cgroup: {exc}") from exc
        return fds

    @contextlib.contextmanager
    def wrap(self, argv: Sequence[str]) -> Iterator[tuple[list[str], tuple[int, ...]]]:
        """``(argv to start, descriptors to pass)``; the descriptors are closed on exit
        (the started child keeps its own copies until the wrapper has used them)."""
        fds = self._open()
        try:
            if not fds:
                log.debug("cgroup %s is gone: %s runs in runtimed's cgroup", self.rel, argv[0])
                yield list(argv), ()
            else:
                yield [*self._wrapper, ",".join(map(str, fds)), *argv], tuple(fds)
        finally:
            for fd in fds:
                os.close(fd)

    # -- the three ways the engine starts a helper (mirroring runtime.sandbox._proc) ----------

    def popen(self, argv: Sequence[str], *, pass_fds: Sequence[int] = (), **kw: Any) -> subprocess.Popen[bytes]:
        kw.setdefault("close_fds", True)
        with self.wrap(argv) as (cmd, fds):
            try:
                return subprocess.Popen(cmd, pass_fds=(*fds, *pass_fds), **kw)
            except FileNotFoundError as exc:
                raise errors.RuntimeError(f"{cmd[0]} is not installed on this host") from exc

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = 10.0,
        input: bytes | None = None,  # noqa: A002 - mirrors subprocess.run
        check: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        """``runtime.kernel.proc.run`` in the sandbox's cgroup: on failure errors.RuntimeError with stderr.
        ``env``: the program's whole environment (default: runtimed's)."""
        proc = self.popen(
            argv,
            env=env,
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            proc.kill()
            proc.communicate()
            raise errors.RuntimeError(f"{argv[0]} did not finish within {timeout:g}s") from exc
        code = proc.returncode
        if code == EXIT_NOT_JOINED and b"kl-cgexec:" in err:
            raise errors.RuntimeError(err.decode(errors="replace").strip()[-400:])
        if check and code != 0:
            tail = (err or out).decode(errors="replace").strip()[-800:]
            raise errors.RuntimeError(f"{' '.join(list(argv)[:3])} failed ({code}): {tail}")
        return subprocess.CompletedProcess(list(argv), code, out, err)

    def run_quiet(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        stdin: int = subprocess.DEVNULL,
        stdout: int = subprocess.DEVNULL,
        stderr: int = subprocess.DEVNULL,
    ) -> int:
        """``runtime.kernel.proc.run_quiet`` in the sandbox's cgroup: the given stdio, its exit status."""
        proc = self.popen(argv, stdin=stdin, stdout=stdout, stderr=stderr)
        try:
            return wait_proc(proc, timeout)
        except subprocess.TimeoutExpired as exc:
            raise errors.RuntimeError(f"{argv[0]} did not finish within {timeout:g}s") from exc
