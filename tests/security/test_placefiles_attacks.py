"""The host-side writer of a sandbox's service files (runtime/sandbox/placefiles.py) never
leaves the sandbox's root, and is open only while runtimed creates the sandbox.

runtimed (root on the host) writes ``/var/run/docker.sock`` and ``/root/.kube/config``
into a sandbox it is creating, from the host (issue #13: no ``runc exec`` on the ready
path). A link in the root, whoever put it there, must not make that write land on the
host; and once the sandbox has run anything of the student's (it is ready, or paused and
resumed), the files are written from inside as before, never from the host.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime import errors
from runtime.sandbox import fastexec, placefiles
from runtime.sandbox.manager import SandboxManager
from runtime.sandbox.spec import SandboxSpec
from tests.runtime.sandbox_helpers import destroy_manager, make_manager, run_in

UID = 3_551_000_000
TAG = 251

pytestmark = pytest.mark.root


@pytest.mark.parametrize("escape", ["/", "../../..", "/../../.."])
def test_links_in_the_root_never_lead_out_of_it(tmp_path: Path, escape: str) -> None:
    """Whatever an image (or anyone) put in the root, every write lands inside it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("host file\n")
    r = tmp_path / "rootfs"
    r.mkdir()
    (r / "root").symlink_to(escape)
    (r / "var").symlink_to(str(outside))  # an absolute host path: resolved as /<that> inside
    placefiles.write_file(r, "/root/.kube/config", b"x\n", UID)
    with pytest.raises(FileNotFoundError):  # /<outside> does not exist inside the root
        placefiles.symlink(r, "/var/victim", "/pwned", UID)
    with pytest.raises(FileNotFoundError):
        placefiles.write_file(r, "/var/victim", b"pwned\n", UID)
    assert (outside / "victim").read_text() == "host file\n"
    assert sorted(p.name for p in outside.iterdir()) == ["victim"]
    assert (r / ".kube" / "config").read_bytes() == b"x\n"  # /root -> / inside: the root's own /.kube


def test_a_last_component_that_is_a_link_is_replaced_not_followed(tmp_path: Path) -> None:
    host_file = tmp_path / "host-secret"
    host_file.write_text("keep\n")
    r = tmp_path / "rootfs"
    (r / "root" / ".kube").mkdir(parents=True)
    (r / "root" / ".kube" / "config").symlink_to(host_file)
    placefiles.write_file(r, "/root/.kube/config", b"mine\n", UID)
    placefiles.symlink(r, "/root/.kube/config", "/run/x", UID)
    assert host_file.read_text() == "keep\n"
    assert os.readlink(r / "root" / ".kube" / "config") == "/run/x"


class _Hook:
    """A sandbox service (registered as "docker" in a private manager) that places a link
    and returns a file, as the Docker and Kubernetes services do, and notes what it got."""

    def __init__(self, mgr: SandboxManager) -> None:
        self.mgr = mgr
        self.placed: list[bool] = []

    def start(self, sid: str, pid: int) -> dict[str, str]:
        self.placed.append(self.mgr.place_symlink(sid, "/var/run/placed.sock", "/run/target"))
        return {".kube/config": "kubeconfig\n"}

    def stop(self, sid: str, *, remove: bool) -> None:
        pass

    def pause(self, sid: str) -> None:
        pass


@pytest.fixture(scope="module")
def mgr() -> Iterator[SandboxManager]:
    if os.geteuid() != 0 or shutil.which("runc") is None:
        pytest.skip("sandboxes need root and runc")
    m = make_manager(TAG)
    yield m
    destroy_manager(m)


def test_the_host_writes_only_while_the_sandbox_is_created(mgr: SandboxManager, tmp_path: Path) -> None:
    hook = _Hook(mgr)
    mgr.register_service("docker", hook)
    info = mgr.create(SandboxSpec(services=("docker",)))
    try:
        assert hook.placed == [True]
        assert mgr.agents.pid(info.id) is None  # nothing was exec'd to place them
        assert run_in(mgr, info.id, "readlink /var/run/placed.sock; cat /root/.kube/config") == (
            0,
            "/run/target\nkubeconfig\n",
            "",
        )
        # ready: the student has run things; the host writes nothing for them any more
        host_target = tmp_path / "host-target"
        link = f"rm -rf /root/.kube; mkdir -p {host_target}; ln -s {host_target} /root/.kube"
        assert run_in(mgr, info.id, link)[0] == 0
        assert mgr.place_symlink(info.id, "/root/.kube/config", "/run/x") is False
        assert not host_target.exists()
        # a resume starts the services again: the file is written from inside, through the
        # student's link as the student's own shell would, inside the sandbox only
        mgr.pause(info.id)
        mgr.resume(info.id)
        assert hook.placed == [True, False]
        assert not host_target.exists()
        assert run_in(mgr, info.id, f"cat {host_target}/config") == (0, "kubeconfig\n", "")
        if fastexec.AGENT_BUILT.is_file():
            assert mgr.agents.pid(info.id) is not None  # the resume wrote it through the agent
    finally:
        with contextlib.suppress(errors.SandboxNotFound):
            mgr.remove(info.id)
