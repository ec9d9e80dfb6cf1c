"""A sandbox's services place their files from the host while it is created (issue #13).

``runtime/sandbox/placefiles.py`` writes ``/var/run/docker.sock`` and ``/root/.kube/config``
into a sandbox being created without a process in it (no ``runc exec`` of the exec agent on
the ready path). What must hold: the result is what the inside path gave (owner the
sandbox's root, 0755 directories, 0644 files, a link replaced, the image's absolute
symlinks resolved inside the root), nothing outside the root is ever touched, whatever
links the root holds, and a lab sandbox really is ready with no process of ours in it,
then works as before: the Docker socket, kubectl, the first exec (which starts the agent).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.client import Client
from runtime.sandbox import placefiles
from tests.runtime.daemon_helpers import RealDaemon
from tests.runtime.labbox import lab_daemon, run

UID = 3_551_000_000

RESOURCES = [
    "--subnet",
    "10.243.0.0/20",
    "--bridge",
    "kltestplc",
    "--cgroup-parent",
    "kubelab-testplc",
    "--uid-start",
    str(3_550_000_000),
]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A root like lab-base's: /var/run is an absolute link to /run, /root exists."""
    r = tmp_path / "rootfs"
    (r / "run").mkdir(parents=True)
    (r / "root").mkdir()
    (r / "var").mkdir()
    (r / "var" / "run").symlink_to("/run")
    return r


def owner_mode(p: Path) -> tuple[int, int, int]:
    st = p.lstat()
    return st.st_uid, st.st_gid, st.st_mode & 0o7777


pytestmark = pytest.mark.root


def test_a_file_is_written_as_the_inside_path_wrote_it(root: Path) -> None:
    placefiles.write_file(root, "/root/.kube/config", b"apiVersion: v1\n", UID)
    cfg = root / "root" / ".kube" / "config"
    assert cfg.read_bytes() == b"apiVersion: v1\n"
    assert owner_mode(cfg) == (UID, UID, 0o644)
    assert owner_mode(cfg.parent) == (UID, UID, 0o755)
    placefiles.write_file(root, "/root/.kube/config", b"second\n", UID)  # replaced, not appended
    assert cfg.read_bytes() == b"second\n"


def test_the_link_follows_the_images_absolute_symlink_inside_the_root(root: Path) -> None:
    placefiles.symlink(root, "/var/run/docker.sock", "/run/kubelab-docker/docker.sock", UID)
    link = root / "run" / "docker.sock"
    assert os.readlink(link) == "/run/kubelab-docker/docker.sock"
    assert owner_mode(link)[:2] == (UID, UID)
    placefiles.symlink(root, "/var/run/docker.sock", "/elsewhere", UID)  # ln -sfn: replaced
    assert os.readlink(link) == "/elsewhere"
    assert sorted(p.name for p in (root / "run").iterdir()) == ["docker.sock"]  # no temporary left


def test_a_missing_parent_is_made_like_mkdir_p(tmp_path: Path) -> None:
    r = tmp_path / "bare"
    r.mkdir()
    placefiles.symlink(r, "/var/run/docker.sock", "/run/kubelab-docker/docker.sock", UID)
    assert (r / "var" / "run" / "docker.sock").is_symlink()
    assert owner_mode(r / "var") == (UID, UID, 0o755)
    assert owner_mode(r / "var" / "run") == (UID, UID, 0o755)


@pytest.mark.parametrize("bad", ["", "/", "/root/../etc/passwd", ".."])
def test_a_path_that_names_no_file_below_the_root_is_refused(root: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="bad path"):
        placefiles.write_file(root, bad, b"x", UID)


# a real lab sandbox ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def daemon() -> Iterator[RealDaemon]:
    with lab_daemon("rtpl-", RESOURCES) as d:
        yield d


def processes_of(sid: str) -> list[str]:
    """The command names of every host process in the sandbox's cgroups."""
    names = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if sid in (proc / "cgroup").read_text():
                names.append((proc / "comm").read_text().strip())
        except OSError:
            continue
    return names


@pytest.mark.timeout(300)
def test_a_lab_sandbox_is_ready_with_no_process_of_ours_in_it_and_works(daemon: RealDaemon) -> None:
    with Client(daemon.socket, timeout=120) as c:
        sid = str(c.create_sandbox({"image": "lab-base", "services": ["kubernetes"]})["id"])
        try:
            # ready: only its init (tini) and sleep ran in it; no exec agent, no shell
            assert sorted(processes_of(sid)) == ["sleep", "tini"], processes_of(sid)
            code, out = run(
                daemon,
                sid,
                "stat -c '%u %g %a' /root/.kube /root/.kube/config; readlink /var/run/docker.sock;"
                "docker version --format '{{.Server.Version}}' >/dev/null && echo docker-ok;"
                "kubectl get namespace default -o name",
            )
            assert code == 0, out
            assert out.split("\n")[:5] == [
                "0 0 755",
                "0 0 644",
                "/run/kubelab-docker/docker.sock",
                "docker-ok",
                "namespace/default",
            ], out
            assert "kl-exec-agent" in processes_of(sid)  # the first exec started the agent
        finally:
            c.remove_sandbox(sid)
