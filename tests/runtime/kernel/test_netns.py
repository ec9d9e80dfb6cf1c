"""runtime/kernel/netns.py: a command runs in the network namespace of the pid it is given."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Sequence

import pytest

from runtime import errors
from runtime.kernel import netns, proc

pytestmark = pytest.mark.root


@pytest.fixture
def other_netns() -> Iterator[int]:
    """The pid of a process in a fresh network namespace of its own (only ``lo``, down).

    ``unshare`` execs the shell (same pid) only after unshare(2): its line says the new
    namespace exists, and the pid is in it from then on."""
    p = subprocess.Popen(["unshare", "--net", "sh", "-c", "echo ready; exec sleep 120"], stdout=subprocess.PIPE)
    try:
        assert p.stdout is not None and p.stdout.readline() == b"ready\n"
        yield p.pid
    finally:
        p.kill()
        p.wait(timeout=10)


def _links(text: str) -> list[str]:
    return sorted(line.split(":")[1].strip() for line in text.splitlines() if line.strip())


def test_the_command_sees_that_namespace_not_ours(other_netns: int) -> None:
    ours = _links(proc.run(["ip", "-o", "link", "show"]).stdout.decode())
    assert len(ours) > 1  # the host has more than lo (eth0, the runtime's bridges)
    assert _links(netns.run(other_netns, ["ip", "-o", "link", "show"])) == ["lo"]


def test_a_script_goes_to_stdin_and_changes_only_that_namespace(other_netns: int) -> None:
    netns.run(other_netns, ["ip", "-batch", "-"], "link add kltestva type veth peer name kltestvb\nlink set lo up\n")
    assert "kltestvb" in netns.run(other_netns, ["ip", "-o", "link", "show"])
    assert "kltestva" not in proc.run(["ip", "-o", "link", "show"]).stdout.decode()


def test_a_failure_says_what_failed_unless_not_checked(other_netns: int) -> None:
    with pytest.raises(errors.RuntimeError, match="nsenter"):
        netns.run(other_netns, ["ip", "link", "del", "no-such-link"])
    assert netns.run(other_netns, ["ip", "link", "del", "no-such-link"], check=False) == ""


def test_a_runner_runs_it(other_netns: int) -> None:
    """Given ``place`` (a sandbox's Placement in runtimed), the runner starts the command."""
    ran: list[list[str]] = []

    class Recorder:
        def run(
            self,
            argv: Sequence[str],
            *,
            timeout: float = 10.0,
            input: bytes | None = None,  # noqa: A002 - the Runner protocol (subprocess.run)
            check: bool = True,
        ) -> subprocess.CompletedProcess[bytes]:
            ran.append(list(argv))
            return proc.run(list(argv), timeout=timeout, input=input, check=check)

    assert _links(netns.run(other_netns, ["ip", "-o", "link", "show"], place=Recorder())) == ["lo"]
    assert ran == [["nsenter", f"--net=/proc/{other_netns}/ns/net", "ip", "-o", "link", "show"]]
