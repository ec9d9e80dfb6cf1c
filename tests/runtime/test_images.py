"""ImageStore: the busybox recipe, digests, OCI import/export, whiteouts, concurrency."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import struct
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

from runtime import errors
from runtime.images import ImageConfig, ImageStore, default_store
from runtime.images.locking import file_lock
from runtime.images.recipes import busybox as busybox_recipe
from runtime.images.recipes import run_logged
from runtime.images.tarutil import extract_layer, tar_directory
from tests.runtime.test_images_helpers import Entry, layer_tar, oci_archive, sha

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="the image store chowns and mknods: needs root"),
]

REPO = Path(__file__).resolve().parents[2]
CAP_NET_BIND = struct.pack("<IIIII", 0x02000001, 1 << 10, 0, 0, 0)  # v2, cap_net_bind_service


def file_sha(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[ImageStore, ImageConfig, list[str]]:
    """A store with busybox built once for the module, and the progress lines of that build."""
    lines: list[str] = []
    store = ImageStore(tmp_path_factory.mktemp("store") / "images")
    cfg = store.build("busybox", lines.append)
    return store, cfg, lines


def test_busybox_rootfs_has_applets_users_and_tini(
    built: tuple[ImageStore, ImageConfig, list[str]],
) -> None:
    store, cfg, lines = built
    assert any("applets linked" in line for line in lines), lines
    [root] = store.layer_dirs("busybox")
    busybox = root / "bin/busybox"
    assert busybox.is_file() and os.access(busybox, os.X_OK)
    applets = subprocess.run(
        ["/bin/busybox", "--list-full"], capture_output=True, text=True, timeout=30, check=True
    ).stdout.split()
    for rel in applets:
        if rel != "bin/busybox":
            assert (root / rel).readlink().as_posix() == "/bin/busybox", rel
    assert (root / "sbin/tini").read_bytes() == Path("/usr/bin/tini-static").read_bytes()
    passwd = (root / "etc/passwd").read_text()
    assert passwd.startswith("root:x:0:0:") and "\nnobody:x:65534:65534:" in passwd
    group = (root / "etc/group").read_text()
    assert "root:x:0:" in group and "nobody:x:65534:" in group
    assert "localhost" in (root / "etc/hosts").read_text()
    assert "PS1=" in (root / "etc/profile").read_text()
    assert stat.S_IMODE((root / "tmp").stat().st_mode) == 0o1777
    for d in ("proc", "sys", "dev", "root"):
        assert (root / d).is_dir() and not (root / d).is_symlink(), d
    assert cfg.cmd == ["/bin/sh"]
    assert any(e.startswith("PATH=") and "/bin" in e for e in cfg.env)
    assert cfg.working_dir == "/root" and cfg.user == ""


def test_busybox_rootfs_runs_a_shell(built: tuple[ImageStore, ImageConfig, list[str]]) -> None:
    store, _, _ = built
    [root] = store.layer_dirs("busybox")
    out = subprocess.run(
        [
            "chroot",
            str(root),
            "/bin/sh",
            "-c",
            "echo hello from $(basename $(readlink /bin/ls)); id -u",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert out.split() == ["hello", "from", "busybox", "0"]


def test_digests_are_content_addresses(built: tuple[ImageStore, ImageConfig, list[str]]) -> None:
    store, cfg, _ = built
    manifest_blob = store.blob_path(cfg.digest)
    assert file_sha(manifest_blob) == cfg.digest
    manifest = json.loads(manifest_blob.read_bytes())
    config_blob = store.blob_path(manifest["config"]["digest"])
    assert file_sha(config_blob) == manifest["config"]["digest"]
    config = json.loads(config_blob.read_bytes())
    assert config["rootfs"]["diff_ids"] == cfg.layers
    assert config["config"]["Cmd"] == ["/bin/sh"] and config["config"]["WorkingDir"] == "/root"
    for desc, diff_id in zip(manifest["layers"], cfg.layers, strict=True):
        blob = store.blob_path(desc["digest"])
        assert file_sha(blob) == desc["digest"] == diff_id  # plain tar: digest is the diff id
        assert blob.stat().st_size == desc["size"]
    # every blob on disk is named by its own sha256
    for blob in (store.root / "blobs/sha256").iterdir():
        assert file_sha(blob) == "sha256:" + blob.name
    index = json.loads((store.root / "index.json").read_text())
    [entry] = index["manifests"]
    assert entry["digest"] == cfg.digest
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == "busybox"
    assert cfg.size > 1_000_000  # the busybox binary alone is ~2 MB


def test_second_build_returns_the_same_image_without_rebuilding(
    built: tuple[ImageStore, ImageConfig, list[str]],
) -> None:
    store, cfg, _ = built
    blob = store.blob_path(cfg.layers[0])
    before = blob.stat().st_ino
    lines: list[str] = []
    again = store.build("busybox", lines.append)
    assert again == cfg
    assert any("already built" in line for line in lines)
    assert blob.stat().st_ino == before


def test_busybox_build_is_reproducible(tmp_path: Path, built: tuple[ImageStore, ImageConfig, list[str]]) -> None:
    _, cfg, _ = built
    other = ImageStore(tmp_path / "images").build("busybox", lambda _line: None)
    assert other.digest == cfg.digest and other.layers == cfg.layers


def test_layer_dirs_are_unpacked_once_and_reused(
    built: tuple[ImageStore, ImageConfig, list[str]],
) -> None:
    store, _, _ = built
    [first] = store.layer_dirs("busybox")
    marker = (first / "bin/busybox").stat().st_ino
    [second] = store.layer_dirs("busybox")
    assert first == second and (second / "bin/busybox").stat().st_ino == marker
    assert not [p for p in (store.root / "layers").iterdir() if p.name.startswith(".tmp-")]


def test_list_get_and_missing_image_names_what_exists(
    built: tuple[ImageStore, ImageConfig, list[str]],
) -> None:
    store, cfg, _ = built
    assert [c.name for c in store.list()] == ["busybox"]
    assert store.get("busybox") == cfg
    with pytest.raises(errors.ImageNotFound, match="busybox"):
        store.get("nginx")
    with pytest.raises(
        errors.ImageNotFound,
        match=r"recipes: busybox, debian:bookworm, kubelab-hello:1, kubelab-hello:2, lab-base, nginx:1\.22, python",
    ):
        store.build("no-such-recipe", lambda _line: None)


def test_default_store_lives_under_images(tmp_path: Path) -> None:
    assert default_store(tmp_path).root == tmp_path / "images"
    assert (tmp_path / "images/oci-layout").is_file()


def test_missing_busybox_tells_the_operator_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(busybox_recipe, "BUSYBOX", tmp_path / "nope/busybox")
    store = ImageStore(tmp_path / "images")
    with pytest.raises(errors.RuntimeError, match="busybox-static"):
        store.build("busybox", lambda _line: None)
    assert store.list() == []
    assert list((store.root / "tmp").iterdir()) == []


def test_export_then_import_round_trips(tmp_path: Path, built: tuple[ImageStore, ImageConfig, list[str]]) -> None:
    store, cfg, _ = built
    archive = tmp_path / "busybox.tar"
    store.export_oci("busybox", archive)
    with tarfile.open(archive) as tf:
        names = set(tf.getnames())
    assert {"oci-layout", "index.json", "blobs/sha256/" + cfg.digest.split(":")[1]} <= names

    other = ImageStore(tmp_path / "other")
    imported = other.import_oci(archive)
    assert imported.name == "busybox"
    assert imported.digest == cfg.digest and imported.layers == cfg.layers
    assert imported.env == cfg.env and imported.cmd == cfg.cmd and imported.size == cfg.size
    [root] = other.layer_dirs("busybox")
    assert (root / "bin/busybox").read_bytes() == Path("/bin/busybox").read_bytes()
    assert (root / "bin/sh").readlink().as_posix() == "/bin/busybox"

    renamed = other.import_oci(archive, "copy")
    assert renamed.digest == cfg.digest and {c.name for c in other.list()} == {"busybox", "copy"}
    again = tmp_path / "again.tar"
    other.export_oci("busybox", again)
    assert ImageStore(tmp_path / "third").import_oci(again).digest == cfg.digest


def test_import_accepts_gzip_layers(tmp_path: Path) -> None:
    layer = layer_tar([Entry("etc", tarfile.DIRTYPE, mode=0o755), Entry("etc/motd", data=b"hi\n")])
    archive = tmp_path / "gz.tar"
    digest = oci_archive(archive, [layer], name="gz", gzip_layers=True)
    store = ImageStore(tmp_path / "images")
    cfg = store.import_oci(archive)
    assert cfg.name == "gz" and cfg.digest == digest and cfg.layers == [sha(layer)]
    [root] = store.layer_dirs("gz")
    assert (root / "etc/motd").read_text() == "hi\n"
    out = tmp_path / "out.tar"
    store.export_oci("gz", out)
    assert ImageStore(tmp_path / "again").import_oci(out).digest == digest


def test_import_rejects_corrupt_and_foreign_archives(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    layer = layer_tar([Entry("a", data=b"a")])
    good = tmp_path / "good.tar"
    oci_archive(good, [layer], name="x")
    # flip a byte of the layer blob but keep its name: the digest check must catch it
    bad = tmp_path / "bad.tar"
    with tarfile.open(good) as src, tarfile.open(bad, "w") as dst:
        for m in src.getmembers():
            data = src.extractfile(m).read()  # type: ignore[union-attr]
            if m.name.endswith(sha(layer).split(":")[1]):
                data = data.replace(b"a", b"b", 1)
            m.size = len(data)
            dst.addfile(m, io.BytesIO(data))
    with pytest.raises(errors.BadRequest, match="digest"):
        store.import_oci(bad)
    # drop the layer blob: the archive is incomplete
    partial = tmp_path / "partial.tar"
    with tarfile.open(good) as src, tarfile.open(partial, "w") as dst:
        for m in src.getmembers():
            if not m.name.endswith(sha(layer).split(":")[1]):
                dst.addfile(m, src.extractfile(m))
    with pytest.raises(errors.BadRequest, match="lacks blob"):
        ImageStore(tmp_path / "fresh").import_oci(partial)
    unnamed = tmp_path / "unnamed.tar"
    oci_archive(unnamed, [layer], name=None)
    with pytest.raises(errors.BadRequest, match="pass a name"):
        store.import_oci(unnamed)
    assert store.import_oci(unnamed, "named").name == "named"
    notar = tmp_path / "not.tar"
    notar.write_bytes(b"hello")
    with pytest.raises(errors.BadRequest):
        store.import_oci(notar)
    with pytest.raises(errors.BadRequest, match="invalid image name"):
        store.import_oci(good, "../evil")
    assert [c.name for c in store.list()] == ["named"]


def test_whiteouts_become_overlay_whiteouts_and_hide_lower_files(tmp_path: Path) -> None:
    lower = layer_tar(
        [
            Entry("keep", data=b"k"),
            Entry("gone", data=b"g"),
            Entry("dir", tarfile.DIRTYPE, mode=0o755),
            Entry("dir/old", data=b"o"),
        ]
    )
    upper = layer_tar(
        [
            Entry(".wh.gone"),
            Entry("dir", tarfile.DIRTYPE, mode=0o755),
            Entry("dir/.wh..wh..opq"),
            Entry("dir/new", data=b"n"),
        ]
    )
    archive = tmp_path / "wh.tar"
    oci_archive(archive, [lower, upper], name="wh")
    store = ImageStore(tmp_path / "images")
    store.import_oci(archive)
    low, up = store.layer_dirs("wh")
    st = os.lstat(up / "gone")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)
    assert os.getxattr(up / "dir", "trusted.overlay.opaque") == b"y"
    assert os.getxattr(up / "dir", "user.overlay.opaque") == b"y"
    assert not (up / ".wh.gone").exists() and not (up / "dir/.wh..wh..opq").exists()
    # stack them as the sandbox does and look from the merged view
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    script = f"mount -t overlay overlay -o ro,lowerdir={up}:{low} {mnt} && ls -A {mnt} && echo -- && ls -A {mnt}/dir"
    out = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.split()
    assert out == ["dir", "keep", "--", "new"]
    # flattened into one tree, the whiteouts delete instead
    flat = tmp_path / "flat"
    store.flatten("wh", flat)
    assert sorted(p.name for p in flat.iterdir()) == ["dir", "keep"]
    assert [p.name for p in (flat / "dir").iterdir()] == ["new"]
    assert "trusted.overlay.opaque" not in os.listxattr(flat / "dir")
    with pytest.raises(errors.BadRequest, match="not empty"):
        store.flatten("wh", flat)


def test_remove_forgets_the_image_and_collects_its_blobs(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    shared = layer_tar([Entry("shared", data=b"s")])
    only = layer_tar([Entry("only", data=b"o")])
    oci_archive(tmp_path / "a.tar", [shared], name="a")
    oci_archive(tmp_path / "b.tar", [shared, only], name="b")
    store.import_oci(tmp_path / "a.tar")
    b = store.import_oci(tmp_path / "b.tar")
    store.remove("b")
    with pytest.raises(errors.ImageNotFound):
        store.get("b")
    assert not store.blob_path(b.digest).exists()
    assert not store.blob_path(sha(only)).exists()
    assert store.blob_path(sha(shared)).exists()
    assert (store.layer_dirs("a")[0] / "shared").read_bytes() == b"s"
    with pytest.raises(errors.ImageNotFound):
        store.remove("b")


def test_add_layers_stacks_on_a_base_image(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    oci_archive(tmp_path / "base.tar", [layer_tar([Entry("base", data=b"b")])], name="base")
    base = store.import_oci(tmp_path / "base.tar")
    extra = tmp_path / "extra.tar"
    extra.write_bytes(layer_tar([Entry("extra", data=b"e")]))
    cfg = store.add_layers("derived", [extra], base="base", working_dir="/srv")
    assert cfg.layers == [*base.layers, sha(extra.read_bytes())]
    assert cfg.cmd == base.cmd and cfg.env == base.env and cfg.working_dir == "/srv"
    assert [d.name for d in store.layer_dirs("derived")] == [d.split(":")[1] for d in cfg.layers]


CONCURRENT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    sys.path.insert(0, {repo!r})
    from runtime.images import ImageStore
    go = Path({go!r})
    while not go.exists():
        time.sleep(0.01)
    store = ImageStore(Path({root!r}))
    cfg = store.build("busybox", lambda line: print(line, file=sys.stderr))
    dirs = store.layer_dirs("busybox")
    shifted = store.shifted_layer_dirs("busybox", 200000)
    print(cfg.digest, dirs[0], shifted[0])
    """
)


def test_two_processes_building_at_once_make_one_consistent_image(tmp_path: Path) -> None:
    root = tmp_path / "images"
    go = tmp_path / "go"
    code = CONCURRENT.format(repo=str(REPO), go=str(go), root=str(root))
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    go.touch()
    outs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        outs.append((out.split(), err))
    assert outs[0][0] == outs[1][0]
    built_lines = [err for _, err in outs if "busybox: built" in err]
    assert len(built_lines) == 1, [err for _, err in outs]  # one built, the other waited
    store = ImageStore(root)
    [cfg] = store.list()
    assert cfg.digest == outs[0][0][0]
    for blob in (root / "blobs/sha256").iterdir():
        assert file_sha(blob) == "sha256:" + blob.name
    assert [p.name for p in (root / "layers").iterdir()] == [cfg.layers[0].split(":")[1]]
    assert list((root / "tmp").iterdir()) == []
    [shifted] = (root / "shifted").iterdir()
    assert [p.name for p in shifted.iterdir()] == [cfg.layers[0].split(":")[1]]


def test_tar_directory_round_trips_links_modes_and_xattrs(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "bin").mkdir(parents=True)
    (src / "bin/tool").write_bytes(b"tool")
    (src / "bin/tool").chmod(0o4755)
    os.link(src / "bin/tool", src / "bin/alias")
    os.setxattr(src / "bin/tool", "security.capability", CAP_NET_BIND)
    os.setxattr(src / "bin/tool", "user.origin", b"test")
    (src / "bin/sh").symlink_to("/bin/busybox")
    os.mkfifo(src / "fifo")
    os.chown(src / "bin", 1000, 1001)
    layer = tmp_path / "layer.tar"
    stats = tar_directory(src, layer)
    assert stats.diff_id == file_sha(layer)
    dest = tmp_path / "dest"
    dest.mkdir()
    assert extract_layer(layer, dest).diff_id == stats.diff_id
    st = (dest / "bin/tool").lstat()
    assert stat.S_IMODE(st.st_mode) == 0o4755 and st.st_nlink == 2
    assert (dest / "bin/alias").lstat().st_ino == st.st_ino
    assert os.getxattr(dest / "bin/tool", "security.capability") == CAP_NET_BIND
    assert os.getxattr(dest / "bin/tool", "user.origin") == b"test"
    assert (dest / "bin/sh").readlink().as_posix() == "/bin/busybox"
    assert stat.S_ISFIFO((dest / "fifo").lstat().st_mode)
    assert ((dest / "bin").stat().st_uid, (dest / "bin").stat().st_gid) == (1000, 1001)


def test_work_dirs_of_dead_processes_are_swept(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    stale = store.root / "tmp" / "999999999-build-busybox-x"
    (stale / "rootfs").mkdir(parents=True)
    mine = store.root / "tmp" / f"{os.getpid()}-build-busybox-y"
    mine.mkdir()
    ImageStore(store.root)
    assert not stale.exists() and mine.exists()


def test_a_held_lock_times_out_with_a_clear_error(tmp_path: Path) -> None:
    lock = tmp_path / "x.lock"
    with file_lock(lock, timeout=1, what="the thing"):
        with (
            pytest.raises(errors.Conflict, match="the thing is busy"),
            file_lock(lock, timeout=0.2, what="the thing"),
        ):
            pass
        with (
            pytest.raises(errors.Conflict),
            file_lock(lock, timeout=0.2, what="the thing", shared=True),
        ):
            pass
    # shared holders do not exclude each other
    with (
        file_lock(lock, timeout=1, what="a", shared=True),
        file_lock(lock, timeout=1, what="b", shared=True),
    ):
        pass


def test_recipe_commands_stream_progress_and_time_out(tmp_path: Path) -> None:
    lines: list[str] = []
    run_logged(["sh", "-c", "echo one; echo two >&2"], timeout=30, progress=lines.append, prefix="p: ")
    assert lines == ["p: one", "p: two"]
    with pytest.raises(errors.RuntimeError, match="status 3"):
        run_logged(["sh", "-c", "echo bad; exit 3"], timeout=30, progress=lines.append, prefix="")
    with pytest.raises(errors.RuntimeError, match="did not finish"):
        run_logged(["sh", "-c", "echo slow; exec sleep 60"], timeout=1, progress=lines.append, prefix="")
