"""Unpacking hostile layers as root, and the uid-shifted layer copies."""

from __future__ import annotations

import os
import stat
import struct
import tarfile
from pathlib import Path

import pytest

from runtime import errors
from runtime.images import ImageStore
from runtime.images.tarutil import extract_layer
from tests.runtime.test_images_helpers import Entry, layer_tar, oci_archive

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="unpacking layers chowns and mknods: needs root"),
]


def unpack(tmp_path: Path, entries: list[Entry], sub: str = "dest") -> Path:
    blob = tmp_path / f"{sub}.tar"
    blob.write_bytes(layer_tar(entries))
    dest = tmp_path / sub
    dest.mkdir()
    extract_layer(blob, dest)
    return dest


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory next to the unpack target that a hostile layer tries to write into."""
    d = tmp_path / "outside"
    d.mkdir()
    return d


def assert_untouched(outside: Path) -> None:
    assert list(outside.iterdir()) == [], list(outside.iterdir())


def test_dotdot_entry_rejects_the_layer(tmp_path: Path, outside: Path) -> None:
    with pytest.raises(errors.BadRequest, match=r"\.\."):
        unpack(tmp_path, [Entry("etc/../../outside/pwned", data=b"x")])
    assert_untouched(outside)


def test_write_through_absolute_symlink_is_refused(tmp_path: Path, outside: Path) -> None:
    with pytest.raises(errors.BadRequest, match="symlink"):
        unpack(
            tmp_path,
            [
                Entry("escape", tarfile.SYMTYPE, linkname=str(outside)),
                Entry("escape/pwned", data=b"x"),
            ],
        )
    assert_untouched(outside)


def test_write_through_relative_symlink_is_refused(tmp_path: Path, outside: Path) -> None:
    with pytest.raises(errors.BadRequest, match="symlink"):
        unpack(
            tmp_path,
            [
                Entry("up", tarfile.SYMTYPE, linkname="../outside"),
                Entry("up/pwned", data=b"x"),
            ],
        )
    assert_untouched(outside)


def test_file_replacing_a_symlink_replaces_the_link_not_its_target(tmp_path: Path, outside: Path) -> None:
    victim = outside / "victim"
    dest = unpack(
        tmp_path,
        [
            Entry("link", tarfile.SYMTYPE, linkname=str(victim)),
            Entry("link", data=b"overwritten"),
        ],
    )
    assert (dest / "link").read_bytes() == b"overwritten" and not (dest / "link").is_symlink()
    assert_untouched(outside)


def test_hardlinks_cannot_reach_outside_the_layer(tmp_path: Path, outside: Path) -> None:
    secret = outside / "secret"
    secret.write_text("s")
    with pytest.raises(errors.BadRequest, match="not in this layer"):
        unpack(tmp_path, [Entry("grab", tarfile.LNKTYPE, linkname=str(secret))])
    with pytest.raises(errors.BadRequest):
        unpack(
            tmp_path,
            [
                Entry("dir", tarfile.SYMTYPE, linkname=str(outside)),
                Entry("grab", tarfile.LNKTYPE, linkname="dir/secret"),
            ],
            sub="second",
        )
    assert secret.stat().st_nlink == 1


def test_absolute_names_land_inside_the_layer(tmp_path: Path) -> None:
    dest = unpack(tmp_path, [Entry("/etc/kubelab-test-file", data=b"inside")])
    assert (dest / "etc/kubelab-test-file").read_bytes() == b"inside"
    assert not Path("/etc/kubelab-test-file").exists()


def test_device_nodes_are_dropped(tmp_path: Path) -> None:
    dest = unpack(
        tmp_path,
        [
            Entry("dev", tarfile.DIRTYPE, mode=0o755),
            Entry("dev/sda", tarfile.BLKTYPE, mode=0o666, devmajor=8, devminor=0),
            Entry("dev/mem", tarfile.CHRTYPE, mode=0o666, devmajor=1, devminor=1),
            Entry("dev/fifo", tarfile.FIFOTYPE, mode=0o600),
        ],
    )
    assert sorted(p.name for p in (dest / "dev").iterdir()) == ["fifo"]
    assert stat.S_ISFIFO(os.lstat(dest / "dev/fifo").st_mode)


def test_hostile_layer_in_an_imported_image_fails_cleanly(tmp_path: Path, outside: Path) -> None:
    archive = tmp_path / "evil.tar"
    layer = layer_tar(
        [
            Entry("escape", tarfile.SYMTYPE, linkname=str(outside)),
            Entry("escape/pwned", data=b"x"),
        ]
    )
    oci_archive(archive, [layer], name="evil")
    store = ImageStore(tmp_path / "images")
    store.import_oci(archive)
    with pytest.raises(errors.BadRequest, match="symlink"):
        store.layer_dirs("evil")
    assert_untouched(outside)
    assert list((store.root / "layers").iterdir()) == []  # the partial unpack was discarded


def test_modes_owners_and_xattrs_survive_unpacking(tmp_path: Path) -> None:
    dest = unpack(
        tmp_path,
        [
            Entry("bin", tarfile.DIRTYPE, mode=0o755),
            Entry("bin/su", data=b"#!", mode=0o4755),
            Entry("bin/wall", data=b"#!", mode=0o2755, gid=5),
            Entry("home", tarfile.DIRTYPE, mode=0o755),
            Entry("home/u", tarfile.DIRTYPE, mode=0o700, uid=1000, gid=1000),
            Entry("tmp", tarfile.DIRTYPE, mode=0o1777),
            Entry("bin/ping", data=b"#!", mode=0o755, xattrs={"user.note": b"\x00\xffbin"}),
            Entry(
                "bin/evil",
                data=b"#!",
                xattrs={"trusted.overlay.redirect": b"/etc", "user.overlay.redirect": b"/etc"},
            ),
        ],
    )
    assert stat.S_IMODE((dest / "bin/su").stat().st_mode) == 0o4755
    assert stat.S_IMODE((dest / "bin/wall").stat().st_mode) == 0o2755
    assert (dest / "bin/wall").stat().st_gid == 5
    st = (dest / "home/u").stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 1000, 0o700)
    assert stat.S_IMODE((dest / "tmp").stat().st_mode) == 0o1777
    assert os.getxattr(dest / "bin/ping", "user.note") == b"\x00\xffbin"
    assert os.listxattr(dest / "bin/evil") == []


# -- shifted copies ----------------------------------------------------------------------------

CAP_NET_RAW = struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0)  # VFS_CAP_REVISION_2, permitted


@pytest.fixture
def shifty(tmp_path: Path) -> ImageStore:
    layer = layer_tar(
        [
            Entry("bin", tarfile.DIRTYPE, mode=0o755),
            Entry("bin/su", data=b"su", mode=0o4755),
            Entry("bin/sg", data=b"sg", mode=0o2711, gid=42),
            Entry("bin/ping", data=b"ping", mode=0o755, xattrs={"security.capability": CAP_NET_RAW}),
            Entry("bin/sh", tarfile.SYMTYPE, linkname="/bin/busybox"),
            Entry("bin/busybox", data=b"bb", mode=0o755),
            Entry("bin/ls", tarfile.LNKTYPE, linkname="bin/busybox"),
            Entry("home", tarfile.DIRTYPE, mode=0o755),
            Entry("home/alice", tarfile.DIRTYPE, mode=0o750, uid=1000, gid=1000),
            Entry("home/alice/notes", data=b"n", mode=0o600, uid=1000, gid=1000),
            Entry("weird", data=b"w", uid=70000, gid=70000, xattrs={"user.k": b"v"}),
            Entry("pipe", tarfile.FIFOTYPE, mode=0o644),
        ]
    )
    archive = tmp_path / "shifty.tar"
    oci_archive(archive, [layer], name="shifty")
    store = ImageStore(tmp_path / "images")
    store.import_oci(archive)
    return store


def owner(path: Path) -> tuple[int, int]:
    st = os.lstat(path)
    return st.st_uid, st.st_gid


def test_shifted_copy_shifts_owners_and_keeps_everything_else(shifty: ImageStore) -> None:
    [orig] = shifty.layer_dirs("shifty")
    [copy] = shifty.shifted_layer_dirs("shifty", 100000)
    assert copy != orig and copy.name == orig.name
    assert owner(copy) == (100000, 100000)
    assert owner(copy / "bin/su") == (100000, 100000)
    assert stat.S_IMODE(os.lstat(copy / "bin/su").st_mode) == 0o4755
    assert owner(copy / "bin/sg") == (100000, 100042)
    assert stat.S_IMODE(os.lstat(copy / "bin/sg").st_mode) == 0o2711
    assert os.getxattr(copy / "bin/ping", "security.capability") == CAP_NET_RAW
    assert (copy / "bin/sh").readlink().as_posix() == "/bin/busybox"
    assert owner(copy / "bin/sh") == (100000, 100000)
    assert os.lstat(copy / "bin/ls").st_ino == os.lstat(copy / "bin/busybox").st_ino
    assert os.lstat(copy / "bin/busybox").st_nlink == 2
    assert owner(copy / "home/alice") == (101000, 101000)
    assert stat.S_IMODE(os.lstat(copy / "home/alice").st_mode) == 0o750
    assert (copy / "home/alice/notes").read_bytes() == b"n"
    assert owner(copy / "home/alice/notes") == (101000, 101000)
    # ids the namespace cannot map become its nobody, as seen from inside
    assert owner(copy / "weird") == (100000 + 65534, 100000 + 65534)
    assert os.getxattr(copy / "weird", "user.k") == b"v"
    assert stat.S_ISFIFO(os.lstat(copy / "pipe").st_mode)
    # the original is untouched
    assert owner(orig / "bin/su") == (0, 0)
    assert owner(orig / "home/alice") == (1000, 1000)


def test_shifted_copy_is_built_once_per_range(shifty: ImageStore) -> None:
    [a] = shifty.shifted_layer_dirs("shifty", 100000)
    ino = os.lstat(a / "bin/su").st_ino
    [again] = shifty.shifted_layer_dirs("shifty", 100000)
    assert again == a and os.lstat(again / "bin/su").st_ino == ino
    [b] = shifty.shifted_layer_dirs("shifty", 300000)
    assert b != a and owner(b / "bin/su") == (300000, 300000)
    shifty.remove_shifted(300000)
    assert not b.exists() and a.exists()
    with pytest.raises(errors.BadRequest):
        shifty.shifted_layer_dirs("shifty", -1)


def test_prune_layers_keeps_what_is_referenced_or_in_use(shifty: ImageStore) -> None:
    [orig] = shifty.layer_dirs("shifty")
    [copy] = shifty.shifted_layer_dirs("shifty", 100000)
    assert shifty.prune_layers() == []
    shifty.remove("shifty")
    assert shifty.prune_layers(in_use=[copy]) == [orig]
    assert copy.exists() and not orig.exists()
    assert shifty.prune_layers() == [copy]


def test_unrepresentable_names_reject_the_layer_cleanly(tmp_path: Path) -> None:
    with pytest.raises(errors.BadRequest, match="unpacking layer entry"):
        unpack(tmp_path, [Entry("x" * 300, data=b"x")])
    with pytest.raises(errors.BadRequest, match="malformed whiteout"):
        unpack(tmp_path, [Entry("dir/.wh.", data=b"")], sub="wh")
