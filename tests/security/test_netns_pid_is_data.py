"""runtime/kernel/netns.py builds ``nsenter --net=/proc/<pid>/ns/net``, run as host root:
the pid is the one piece of data in that command (brief A of round 5). Anything but a
positive process id is refused before a process starts: ``"self"`` (or ``"1/../self"``,
``"thread-self"``) names runtimed's own namespace, the host's, and a command meant for a
sandbox (``ip``, ``nft -f -``) would then rewrite the host's network."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from typing import Any

import pytest

from runtime.kernel import netns


class Recorder:
    """A Runner (a sandbox's Placement in runtimed) that notes what it was asked to run."""

    def __init__(self) -> None:
        self.ran: list[list[str]] = []

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = 10.0,
        input: bytes | None = None,  # noqa: A002 - the Runner protocol (subprocess.run)
        check: bool = True,
    ) -> subprocess.CompletedProcess[bytes]:
        self.ran.append(list(argv))
        return subprocess.CompletedProcess(list(argv), 0, b"", b"")


@pytest.mark.parametrize("pid", ["self", "1/../self", "thread-self", "1", True, 0, -1, 1.0, None])
def test_anything_but_a_process_id_is_refused_before_a_command_runs(pid: Any) -> None:
    runner = Recorder()
    with pytest.raises(ValueError, match="not a process id"):
        netns.run(pid, ["nft", "-f", "-"], "flush ruleset\n", place=runner)
    assert runner.ran == []


def test_a_process_id_names_that_process_only() -> None:
    runner = Recorder()
    netns.run(4242, ["ip", "-o", "link", "show"], place=runner)
    assert runner.ran == [["nsenter", "--net=/proc/4242/ns/net", "ip", "-o", "link", "show"]]
