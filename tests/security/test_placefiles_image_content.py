"""What an image can hold where runtimed places a sandbox's service files from the host
(runtime/sandbox/placefiles.py over runtime/kernel/safewrite.py), brief A of round 5.

The sandbox's root is an image's tree (a lab image, or one a student built or committed
that a lab then uses): whatever sits at ``/root/.kube/config`` or ``/var/run/docker.sock``
or on the way there is the image's. tests/security/test_placefiles_attacks.py and
test_safewrite_attacks.py cover symlinks out of the root, ``..`` and mount points; here:
hard links to a file outside the root, a directory or a non-directory in the way, a
directory swapped for a link while the host makes it (a racing process, simulated at the one
moment it matters), and the owner and modes of what the host makes or finds.
No sandbox: a directory stands for the root (the writes are the same ``*at`` calls).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from runtime.sandbox import placefiles

pytestmark = pytest.mark.root

UID = 3_552_000_000


@pytest.fixture
def host(tmp_path: Path) -> Path:
    h = tmp_path / "host"
    h.mkdir()
    (h / "shadow").write_text("root:$6$secret\n")
    os.chmod(h / "shadow", 0o600)
    return h


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "rootfs"
    r.mkdir()
    return r


def test_a_hard_link_to_a_host_file_is_replaced_never_written_or_chowned(root: Path, host: Path) -> None:
    (root / "root" / ".kube").mkdir(parents=True)
    os.link(host / "shadow", root / "root" / ".kube" / "config")  # same filesystem: an image layer could
    before = (host / "shadow").stat()
    placefiles.write_file(root, "/root/.kube/config", b"kubeconfig\n", UID)
    after = (host / "shadow").stat()
    assert (host / "shadow").read_text() == "root:$6$secret\n"
    assert (after.st_uid, after.st_gid, after.st_mode, after.st_nlink) == (0, 0, before.st_mode, 1)
    placed = (root / "root" / ".kube" / "config").stat()
    assert placed.st_ino != after.st_ino
    assert (placed.st_uid, placed.st_gid, stat.S_IMODE(placed.st_mode)) == (UID, UID, 0o644)


def test_a_hard_link_where_the_link_goes_is_replaced_too(root: Path, host: Path) -> None:
    (root / "var" / "run").mkdir(parents=True)
    os.link(host / "shadow", root / "var" / "run" / "docker.sock")
    placefiles.symlink(root, "/var/run/docker.sock", "/run/kubelab/docker.sock", UID)
    assert os.readlink(root / "var" / "run" / "docker.sock") == "/run/kubelab/docker.sock"
    assert (host / "shadow").read_text() == "root:$6$secret\n"
    assert (host / "shadow").stat().st_nlink == 1
    assert os.lstat(root / "var" / "run" / "docker.sock").st_uid == UID


def test_a_directory_in_the_files_place_is_refused_and_left_as_it_was(root: Path) -> None:
    (root / "root" / ".kube" / "config").mkdir(parents=True)
    (root / "root" / ".kube" / "config" / "keep").write_text("image content\n")
    with pytest.raises(OSError):
        placefiles.write_file(root, "/root/.kube/config", b"kubeconfig\n", UID)
    with pytest.raises(OSError):
        placefiles.symlink(root, "/root/.kube/config", "/x", UID)
    assert sorted(p.name for p in (root / "root" / ".kube").iterdir()) == ["config"]  # no temporary link left
    assert (root / "root" / ".kube" / "config" / "keep").read_text() == "image content\n"


@pytest.mark.parametrize("kind", ["file", "fifo", "dangling-link", "link-loop"])
def test_a_non_directory_on_the_way_is_refused(root: Path, host: Path, kind: str) -> None:
    (root / "root").mkdir()
    way = root / "root" / ".kube"
    if kind == "file":
        way.write_text("not a dir\n")
    elif kind == "fifo":
        os.mkfifo(way)
    elif kind == "dangling-link":
        way.symlink_to(str(host / "made-by-us"))  # an absolute host path: /<that> inside, absent
    else:
        way.symlink_to(".kube")
    with pytest.raises(OSError):
        placefiles.write_file(root, "/root/.kube/config", b"kubeconfig\n", UID)
    assert sorted(p.name for p in host.iterdir()) == ["shadow"]
    assert os.path.lexists(way) and not way.is_dir()


def test_a_directory_swapped_for_a_link_as_the_host_makes_it_is_not_followed(
    root: Path, host: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process racing the host (none runs in a sandbox being created; the code must not rely
    on it): right after the host's mkdir, the new directory is replaced by a link to the host."""
    (root / "root").mkdir()
    real_mkdir = os.mkdir

    def racing_mkdir(path: str, mode: int = 0o777, *, dir_fd: int | None = None) -> None:
        real_mkdir(path, mode, dir_fd=dir_fd)
        os.rmdir(path, dir_fd=dir_fd)
        os.symlink(str(host), path, dir_fd=dir_fd)

    monkeypatch.setattr(os, "mkdir", racing_mkdir)  # the os module safewrite calls
    with pytest.raises(OSError):
        placefiles.write_file(root, "/root/.kube/config", b"kubeconfig\n", UID)
    monkeypatch.undo()
    assert sorted(p.name for p in host.iterdir()) == ["shadow"]
    assert (host.stat().st_uid, stat.S_IMODE(host.stat().st_mode)) == (0, 0o755)


def test_what_the_host_makes_is_the_sandboxs_and_what_it_finds_keeps_its_owner(root: Path) -> None:
    (root / "root").mkdir(mode=0o700)
    os.chown(root / "root", 0, 0)
    os.chmod(root / "root", 0o700)
    placefiles.write_file(root, "/root/.kube/config", b"kubeconfig\n", UID)
    kept = (root / "root").stat()
    assert (kept.st_uid, stat.S_IMODE(kept.st_mode)) == (0, 0o700)  # the image's /root as it was
    made = (root / "root" / ".kube").stat()
    assert (made.st_uid, made.st_gid, stat.S_IMODE(made.st_mode)) == (UID, UID, 0o755)
    placed = (root / "root" / ".kube" / "config").stat()
    assert (placed.st_uid, placed.st_gid, stat.S_IMODE(placed.st_mode)) == (UID, UID, 0o644)
    assert not placed.st_mode & (stat.S_ISUID | stat.S_ISGID)


def test_a_setgid_directory_of_the_image_gives_its_group_to_nothing_placed(root: Path) -> None:
    """An image's setgid ``/root/.kube`` (group 4242): a file made in it would take that group;
    the host sets the sandbox's own instead."""
    (root / "root" / ".kube").mkdir(parents=True)
    os.chown(root / "root" / ".kube", 0, 4242)
    os.chmod(root / "root" / ".kube", 0o2777)
    placefiles.write_file(root, "/root/.kube/config", b"kubeconfig\n", UID)
    placed = (root / "root" / ".kube" / "config").stat()
    assert (placed.st_uid, placed.st_gid, stat.S_IMODE(placed.st_mode)) == (UID, UID, 0o644)


def test_a_root_that_is_itself_a_link_is_refused(tmp_path: Path, host: Path) -> None:
    link = tmp_path / "rootfs-link"
    link.symlink_to(host)
    with pytest.raises(OSError):
        placefiles.write_file(link, "/shadow", b"pwned\n", UID)
    assert (host / "shadow").read_text() == "root:$6$secret\n"
