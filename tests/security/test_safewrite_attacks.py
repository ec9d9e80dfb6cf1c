"""runtime/kernel/safewrite.py never leaves the root it is given, whatever links the root holds.

runtimed (host root) resolves paths a student controls there: a container's bind-mount
sources and working directory, an image's ``/etc/passwd``, a sandbox's ``/etc/resolv.conf``,
the files a sandbox's services place while it is created. A student (or an image) fills the
tree with links towards the host; every one of them must resolve inside the root.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from runtime.kernel import safewrite

pytestmark = pytest.mark.root


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """A directory outside the root standing for the host, with a file worth stealing."""
    h = tmp_path / "host"
    h.mkdir()
    (h / "secret").write_text("host secret\n")
    return h


@pytest.fixture
def root(tmp_path: Path, host: Path) -> Path:
    r = tmp_path / "rootfs"
    (r / "etc").mkdir(parents=True)
    (r / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (r / "abs").symlink_to(host)  # an absolute host path: resolved as /<that> inside the root
    (r / "up").symlink_to("../../../../../../..")
    (r / "secret").symlink_to(host / "secret")
    (r / "magic").symlink_to("/proc/self/root")
    return r


def test_reads_through_links_stay_inside_the_root(root: Path, host: Path) -> None:
    assert safewrite.read_in_root(root, "/etc/passwd") == b"root:x:0:0:root:/root:/bin/sh\n"
    for path in ("/secret", "/abs/secret", "/up" + str(host / "secret"), "/../../.." + str(host / "secret")):
        assert safewrite.read_in_root(root, path) is None, path


def test_dot_dot_and_absolute_links_resolve_as_if_the_root_were_slash(root: Path) -> None:
    fd = safewrite.open_in_root(root, "/up/up/../etc", os.O_PATH | os.O_DIRECTORY)
    try:
        assert safewrite.fd_path(fd) == str(root / "etc")
    finally:
        os.close(fd)


def test_magic_links_are_refused(root: Path) -> None:
    with pytest.raises(OSError):
        os.close(safewrite.open_in_root(root, "/magic/etc"))
    with pytest.raises(OSError):
        os.close(safewrite.open_in_root(root, "/proc/self/root"))  # no /proc inside: absent, never the host's


def test_a_read_is_bounded_and_only_of_regular_files(root: Path) -> None:
    (root / "big").write_bytes(b"x" * (1 << 20))
    data = safewrite.read_in_root(root, "/big", limit=1000)
    assert data is not None and 1000 <= len(data) <= 1000 + 65536
    assert safewrite.read_in_root(root, "/etc") is None


def test_mkdir_p_follows_links_only_inside_the_root(root: Path, host: Path) -> None:
    (root / "work").symlink_to("/etc")  # absolute, as images have them: /etc of the root
    safewrite.mkdirs_in_root(root, "/work/app/data", 1234, 5678)
    made = root / "etc" / "app" / "data"
    assert made.is_dir()
    assert (made.stat().st_uid, made.stat().st_gid) == (1234, 5678)
    with pytest.raises(FileNotFoundError):  # /<host> does not exist inside the root
        safewrite.mkdirs_in_root(root, "/abs/work/dir", 1234, 5678)
    safewrite.mkdirs_in_root(root, "/up" + str(host) + "/dir", 1234, 5678)  # /up is / of the root
    assert (root / host.relative_to("/") / "dir").is_dir()
    assert sorted(p.name for p in host.iterdir()) == ["secret"]


def test_writes_replace_a_link_and_never_write_through_it(root: Path, host: Path) -> None:
    safewrite.write_file(root, "/secret", b"mine\n", 1234, mode=0o644, dir_mode=0o755)
    assert (host / "secret").read_text() == "host secret\n"
    assert not (root / "secret").is_symlink() and (root / "secret").read_bytes() == b"mine\n"
    st = (root / "secret").stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (1234, 1234, 0o644)
    with pytest.raises(ValueError):
        safewrite.write_file(root, "/etc/../../x", b"", 1234, mode=0o644, dir_mode=0o755)


def test_same_mount_refuses_to_cross_a_mount_point(tmp_path: Path, root: Path) -> None:
    (root / "mnt").mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "kl-safewrite-test", str(root / "mnt")], check=True)
    try:
        os.close(safewrite.open_in_root(root, "/mnt"))  # allowed by default (bind-mount sources)
        with pytest.raises(OSError):
            os.close(safewrite.open_in_root(root, "/mnt", same_mount=True))
        with pytest.raises(OSError):
            safewrite.write_file(root, "/mnt/x", b"", 0, mode=0o644, dir_mode=0o755)
        assert os.listdir(root / "mnt") == []
    finally:
        subprocess.run(["umount", str(root / "mnt")], check=True)
