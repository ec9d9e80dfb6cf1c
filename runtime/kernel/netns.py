"""Run a command inside another process's network namespace: ``run``.

The one way runtimed configures a sandbox's (or a pod's) network from the host: ``nsenter
--net=/proc/<pid>/ns/net COMMAND`` in a child process (CONVENTIONS.md, 10), never a
``setns`` in one of runtimed's own threads. Only the network namespace is entered: the
command is the host's ``ip``/``nft``/``bridge``, run as host root, on the namespace's
links, addresses, routes and nftables tables.

Whose bill: given ``place`` (a sandbox's ``runtime.sandbox.cgexec.Placement``, or anything
with its ``run``), the command runs in that sandbox's cgroup, so what a student's requests
cause counts against the student's limits; without it, where the caller runs.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from typing import Protocol

from runtime.kernel import proc


class Runner(Protocol):
    """What runs a host command for ``run`` (``Placement.run``: the sandbox's cgroup)."""

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = ...,
        input: bytes | None = ...,  # noqa: A002 - mirrors subprocess.run
        check: bool = ...,
    ) -> subprocess.CompletedProcess[bytes]: ...


def argv(pid: int, command: Sequence[str]) -> list[str]:
    """``command`` run in the network namespace of ``pid``: a process id, nothing else (a
    string such as ``"self"`` or ``"1/../self"`` would name runtimed's own, the host's)."""
    if type(pid) is not int or pid <= 0:
        raise ValueError(f"not a process id: {pid!r}")
    return ["nsenter", f"--net=/proc/{pid}/ns/net", *command]


def run(
    pid: int, command: Sequence[str], script: str | None = None, *, check: bool = True, place: Runner | None = None
) -> str:
    """Run ``command`` in the netns of ``pid`` with ``script`` on its stdin; its stdout.

    On failure (``check``) errors.RuntimeError with the command's stderr tail."""
    cmd = argv(pid, command)
    data = script.encode() if script is not None else None
    cp = proc.run(cmd, input=data, check=check) if place is None else place.run(cmd, input=data, check=check)
    return cp.stdout.decode(errors="replace")
