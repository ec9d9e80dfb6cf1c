"""``debian:bookworm``, and the Debian machinery every Debian-based recipe shares.

The image is one layer: ``debootstrap --variant=minbase`` of bookworm from
``$RUNTIME_DEBIAN_MIRROR`` (default http://deb.debian.org/debian), cleaned as lab-base's
first layer is (apt lists and caches, logs, docs except copyright files, man pages;
``/dev``, ``/proc``, ``/sys``, ``/run``, ``/tmp`` emptied), ``CMD ["bash"]`` like the
official image. It differs from Docker Hub's ``debian:bookworm`` in that it is the
bookworm *release* from the mirror (no -updates/-security packages baked in; its
``sources.list`` names only ``bookworm main`` of that mirror) and it is built here, so
its digest is not Docker Hub's.

Shared machinery:

``debootstrap_tarball(ctx, packages, cache_format)``
    runs debootstrap (inside ``unshare --mount --propagation private``, so the /proc
    and /sys it mounts vanish with it, even if killed), cleans and packs the rootfs,
    and caches the tarball in ``ctx.cache_dir`` keyed by suite, mirror and packages.
``apt_layer(ctx, base_layers, packages, finish)``
    what ``RUN apt-get install`` does in a Dockerfile, without a container engine: the
    base layers are unpacked into a work tree, then, in a private mount namespace
    (host ``/dev`` bind-mounted, a fresh ``/proc``), ``chroot ... apt-get update`` and
    ``apt-get install --download-only`` fetch the packages and ``apt-get install`` runs
    under ``unshare --net`` (no network: a maintainer script can never reach or bind
    anything on the host) with a ``policy-rc.d`` that forbids starting services. The
    tree is cleaned, ``finish(root)`` adds the recipe's own touches, and the layer is the
    difference from the base: new or changed entries (regular files compared by
    content), their parent directories, and an OCI whiteout (``.wh.NAME``) for each
    removed path.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from runtime import errors
from runtime.images import tarutil
from runtime.images.recipes import BuildContext, BuiltImage, Recipe, run_logged
from runtime.kernel.clock import format_ts

SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEBOOTSTRAP_TIMEOUT = 3600.0
APT_TIMEOUT = 1800.0
CACHE_FORMAT = "1"  # bump when this image's layer changes (cleanup, package list)
BUILD_ENV = {
    "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "DEBIAN_FRONTEND": "noninteractive",
}

# Run by ``sh -c`` inside ``unshare --mount``; $1 is the root, the rest are packages.
APT_SCRIPT = r"""set -eu
root=$1
shift
mount --rbind /dev "$root/dev"
mount -t proc proc "$root/proc"
cp -L /etc/resolv.conf "$root/etc/resolv.conf"
printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"
chroot "$root" apt-get -q update
chroot "$root" apt-get -q -y --no-install-recommends --download-only install "$@"
unshare --net chroot "$root" apt-get -q -y --no-install-recommends install "$@"
rm -f "$root/usr/sbin/policy-rc.d"
"""


def mirror() -> str:
    return os.environ.get("RUNTIME_DEBIAN_MIRROR", "").strip() or DEFAULT_MIRROR


def _cache_key(packages: Iterable[str], cache_format: str) -> str:
    text = "\n".join([cache_format, SUITE, mirror(), *sorted(packages)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cleanup_rootfs(root: Path) -> None:
    """Drop what an image need not carry; keeps copyright files (licences)."""
    for rel in ("var/cache/apt/archives", "var/lib/apt/lists"):
        d = root / rel
        for entry in d.iterdir() if d.is_dir() else []:
            if entry.is_file() and entry.name != "lock":
                entry.unlink()
            elif entry.is_dir() and entry.name == "partial":
                for leftover in entry.iterdir():
                    leftover.unlink()
    for entry in (root / "var/cache/apt").glob("*.bin"):
        entry.unlink()
    for dirpath, _dirs, files in os.walk(root / "var/log"):
        for f in files:
            (Path(dirpath) / f).unlink()
    for rel in ("usr/share/man", "usr/share/info"):
        d = root / rel
        if d.is_dir() and not d.is_symlink():
            shutil.rmtree(d)
            d.mkdir(mode=0o755)
    docs = root / "usr/share/doc"
    for dirpath, _dirs, files in os.walk(docs):
        for f in files:
            if f != "copyright":
                (Path(dirpath) / f).unlink()
    (root / "etc/resolv.conf").unlink(missing_ok=True)
    (root / "etc/resolv.conf").write_text("")
    (root / "etc/hostname").write_text("localhost\n")
    machine_id = root / "etc/machine-id"
    if machine_id.exists() and not machine_id.is_symlink():
        machine_id.write_text("")


def exclude_contents(relpath: str) -> bool:
    """The contents (not the directories) of /dev, /proc, /sys, /run and /tmp stay out."""
    head, _, rest = relpath.partition("/")
    return bool(rest) and head in ("dev", "proc", "sys", "run", "tmp")


def debootstrap_tarball(ctx: BuildContext, packages: Sequence[str], cache_format: str) -> Path:
    """The cached debootstrap layer tarball (minbase + ``packages``), made when missing."""
    cached = ctx.cache_dir / f"debootstrap-{SUITE}-{_cache_key(packages, cache_format)}.tar"
    if cached.is_file():
        ctx.say(f"reusing cached debootstrap rootfs {cached.name}")
        return cached
    if shutil.which("debootstrap") is None:
        raise errors.NotAvailable("debootstrap is missing: `apt-get install -y debootstrap` and build again")
    target = ctx.work_dir / "debootstrap"
    target.mkdir(mode=0o755)
    argv = ["unshare", "--mount", "--propagation", "private", "--", "debootstrap", "--variant=minbase"]
    argv += ["--merged-usr"]
    if packages:
        argv.append("--include=" + ",".join(packages))
    argv += [SUITE, str(target), mirror()]
    ctx.say(f"debootstrap {SUITE} from {mirror()} (takes a few minutes)")
    run_logged(
        argv,
        timeout=DEBOOTSTRAP_TIMEOUT,
        progress=ctx.progress,
        prefix=f"{ctx.name}: debootstrap: ",
        env=BUILD_ENV,
    )
    cleanup_rootfs(target)
    tmp = ctx.work_dir / "debootstrap.tar"
    ctx.say("packing the debootstrap rootfs")
    stats = tarutil.tar_directory(target, tmp, exclude=exclude_contents)
    ctx.say(f"debootstrap layer {stats.diff_id} ({stats.entries} entries, {stats.size} bytes)")
    tmp.replace(cached)
    return cached


# -- a layer of installed packages ------------------------------------------------------------

Entry = tuple[int, int, int, int, str]  # (file type, mode, uid, gid, content digest or link target)


def snapshot(root: Path) -> dict[str, Entry]:
    """Every path under ``root`` (relative) with what makes it differ from another version."""
    out: dict[str, Entry] = {}
    for dirpath, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            full = Path(dirpath) / name
            rel = str(full.relative_to(root))
            if exclude_contents(rel):
                continue
            st = os.lstat(full)
            what = ""
            if stat.S_ISREG(st.st_mode):
                h = hashlib.sha256()
                with open(full, "rb") as f:
                    while chunk := f.read(tarutil.CHUNK):
                        h.update(chunk)
                what = h.hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                what = str(full.readlink())
            out[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, what)
    return out


def _parents(rel: str) -> list[str]:
    parts = rel.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def diff_layer(root: Path, before: dict[str, Entry], dest: Path, *, mtime_clamp: int | None = None) -> None:
    """Write the layer that turns ``before`` into the tree at ``root`` (see the module docstring)."""
    after = snapshot(root)
    keep: set[str] = set()
    for rel, entry in after.items():
        if before.get(rel) != entry:
            keep.add(rel)
            keep.update(_parents(rel))
    removed = sorted(rel for rel in before if rel not in after)
    gone: list[str] = []
    for rel in removed:
        if not any(rel.startswith(g + "/") for g in gone):
            gone.append(rel)
    for rel in gone:
        parent, _, name = rel.rpartition("/")
        marker = f"{parent}/{tarutil.WHITEOUT_PREFIX}{name}" if parent else tarutil.WHITEOUT_PREFIX + name
        (root / marker).write_bytes(b"")
        keep.add(marker)
        keep.update(_parents(marker))
    tarutil.tar_directory(root, dest, exclude=lambda rel: rel not in keep, mtime_clamp=mtime_clamp)


def unpack(layers: Sequence[Path], root: Path) -> None:
    """Unpack image layers (lowest first) into one tree at ``root``."""
    root.mkdir(mode=0o755, exist_ok=True)
    for blob in layers:
        tarutil.extract_layer(blob, root, flatten=True)


def apt_install(ctx: BuildContext, root: Path, packages: Sequence[str]) -> None:
    """``apt-get install --no-install-recommends packages`` into the tree at ``root``."""
    ctx.say(f"apt-get install {' '.join(packages)}")
    run_logged(
        ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", APT_SCRIPT, "apt", str(root), *packages],
        timeout=APT_TIMEOUT,
        progress=ctx.progress,
        prefix=f"{ctx.name}: apt: ",
        env=BUILD_ENV,
    )
    for d in ("dev", "proc"):
        if (root / d).is_dir() and os.path.ismount(root / d):
            raise errors.RuntimeError(f"{root / d} is still mounted after apt-get; unmount it by hand")
    cleanup_rootfs(root)


def apt_layer(
    ctx: BuildContext,
    base_layers: Sequence[Path],
    packages: Sequence[str],
    finish: Callable[[Path], None] | None = None,
) -> Path:
    """A layer with ``packages`` installed on top of ``base_layers``; see the module docstring."""
    root = ctx.work_dir / "rootfs"
    unpack(base_layers, root)
    before = snapshot(root)
    apt_install(ctx, root, packages)
    if finish is not None:
        finish(root)
    layer = ctx.work_dir / "packages.tar"
    diff_layer(root, before, layer)
    stats = tarutil.scan_layer(layer)
    ctx.say(f"package layer {stats.diff_id} ({stats.entries} entries, {stats.size} bytes)")
    return layer


def created_of(path: Path) -> str:
    mtime = int(path.stat().st_mtime)
    return format_ts(mtime)


def build(ctx: BuildContext) -> BuiltImage:
    base = debootstrap_tarball(ctx, (), CACHE_FORMAT)
    return BuiltImage(
        layers=[base],
        env=[f"PATH={PATH}"],
        cmd=["bash"],
        created=created_of(base),
        comment=f"kubelab recipe debian:bookworm: debootstrap --variant=minbase {SUITE} from {mirror()}",
    )


RECIPE = Recipe(
    name="debian:bookworm",
    version="1",
    description="Debian 12 bookworm, debootstrap --variant=minbase (about 100 MB)",
    build=build,
)
