"""Two Python 3.11 images from Debian bookworm's packages (bookworm ships Python 3.11.2).

``python:3.11-slim``
    ``debian:bookworm`` plus one layer: ``apt-get install --no-install-recommends python3
    ca-certificates`` (debian.py's ``apt_layer``), and ``/usr/bin/python`` -> ``python3``
    as the official image has. Its first layer *is* debian:bookworm's (the recipe's base),
    so an image built FROM it is recognisably built on Debian. Unlike Docker Hub's
    ``python:3.11-slim`` (a CPython compiled into /usr/local, with pip), this is
    Debian's python3 in /usr/bin, without pip (``apt-get install python3-pip`` adds it).
``python:3.11-minimal``
    The smallest Python that runs a script: no Docker Hub image of this name exists.
    Debian's ``python3.11-minimal`` (the interpreter and the core of the standard
    library that ``libpython3.11-minimal`` ships: os, sys, re, subprocess, ...; no json,
    ssl, sqlite, venv or pip) with the files of exactly the packages it depends on (its
    ``Depends``/``Pre-Depends`` closure: libc6, libssl3, zlib1g, libexpat1, ...) minus
    their docs, ``python3`` and ``python`` symlinks, and busybox-static as ``/bin/sh``
    with its applets (``ls``, ``mkdir``, ``sleep``...; not its ``dpkg``/``rpm``), so
    ``RUN`` lines and ``docker exec`` work. No apt, no dpkg database, no bash; one layer,
    about 33 MB. The packages are installed with apt into a scratch copy of
    debian:bookworm and their files, listed by ``/var/lib/dpkg/info/PKG.list``, copied
    out of it.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from runtime import errors
from runtime.images import tarutil
from runtime.images.recipes import BuildContext, BuiltImage, Recipe, busybox, debian

PYTHON = "python3.11"
SLIM_PACKAGES = ("python3", "ca-certificates")
MINIMAL_ROOT_PACKAGE = "python3.11-minimal"
ENV = [f"PATH={debian.PATH}", "LANG=C.UTF-8"]
DROP_PREFIXES = ("usr/share/man/", "usr/share/info/", "usr/share/lintian/", "usr/share/bug/")

MINIMAL_FILES: dict[str, tuple[str, int]] = {
    "etc/passwd": (
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
        0o644,
    ),
    "etc/group": ("root:x:0:\nnogroup:x:65534:\n", 0o644),
    "etc/hosts": ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n", 0o644),
    "etc/hostname": ("localhost\n", 0o644),
    "etc/resolv.conf": ("", 0o644),
    "etc/os-release": (
        'NAME="kubelab python minimal"\nID=kubelab-python-minimal\nID_LIKE=debian\n'
        'PRETTY_NAME="kubelab python:3.11-minimal (Debian bookworm python3.11-minimal, busybox sh)"\n',
        0o644,
    ),
}
MINIMAL_DIRS: dict[str, int] = {
    "usr": 0o755,
    "usr/bin": 0o755,
    "usr/sbin": 0o755,
    "usr/lib": 0o755,
    "usr/lib64": 0o755,
    "etc": 0o755,
    "root": 0o700,
    "tmp": 0o1777,
    "var": 0o755,
    "var/tmp": 0o1777,
    "run": 0o755,
    "proc": 0o555,
    "sys": 0o555,
    "dev": 0o755,
}
# busybox's own package tools would pose as a package manager that knows no database
NOT_APPLETS = frozenset({"dpkg", "dpkg-deb", "rpm", "rpm2cpio"})
MERGED_USR = {"bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib", "lib64": "usr/lib64"}


def _python_links(root: Path) -> None:
    bindir = root / "usr/bin"
    for name, target in (("python3", PYTHON), ("python", "python3")):
        if not os.path.lexists(bindir / name):
            (bindir / name).symlink_to(target)


def build_slim(ctx: BuildContext) -> BuiltImage:
    base = ctx.image_layers("debian:bookworm")
    layer = debian.apt_layer(ctx, base, SLIM_PACKAGES, finish=_python_links)
    return BuiltImage(
        layers=[layer],
        env=ENV,
        cmd=["python3"],
        comment="kubelab recipe python:3.11-slim: apt-get install --no-install-recommends " + " ".join(SLIM_PACKAGES),
        move=True,
    )


# -- python:3.11-minimal ------------------------------------------------------------------------


def _installed(root: Path) -> dict[str, list[list[str]]]:
    """Installed packages of the dpkg database at ``root``: name -> dependency alternatives."""
    out: dict[str, list[list[str]]] = {}
    text = (root / "var/lib/dpkg/status").read_text(encoding="utf-8", errors="replace")
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        key = ""
        for line in stanza.splitlines():
            if line[:1].isspace() and key:
                fields[key] += " " + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if "Package" not in fields or not fields.get("Status", "").endswith(" installed"):
            continue
        deps = []
        for field_name in ("Pre-Depends", "Depends"):
            for clause in filter(None, (c.strip() for c in fields.get(field_name, "").split(","))):
                deps.append([re.split(r"[\s(:]", alt.strip(), maxsplit=1)[0] for alt in clause.split("|")])
        out[fields["Package"]] = deps
    return out


def dependency_closure(root: Path, package: str) -> list[str]:
    """``package`` and everything it (pre-)depends on, as installed at ``root``."""
    installed = _installed(root)
    if package not in installed:
        raise errors.RuntimeError(f"{package} is not installed in {root}")
    seen: set[str] = set()
    todo = [package]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for alternatives in installed[name]:
            chosen = next((alt for alt in alternatives if alt in installed), None)
            if chosen is None:
                raise errors.RuntimeError(f"{name} depends on {' | '.join(alternatives)}, which is not installed")
            todo.append(chosen)
    return sorted(seen)


def _package_paths(root: Path, package: str) -> list[str]:
    info = root / "var/lib/dpkg/info"
    for candidate in (info / f"{package}.list", *sorted(info.glob(f"{package}:*.list"))):
        if candidate.is_file():
            lines = candidate.read_text(encoding="utf-8", errors="surrogateescape").splitlines()
            return [line.strip("/") for line in lines if line.strip("/") not in ("", ".")]
    raise errors.RuntimeError(f"no file list for the installed package {package} under {info}")


def _keep(rel: str) -> bool:
    if rel.startswith(DROP_PREFIXES):
        return False
    return not (rel.startswith("usr/share/doc/") and rel.count("/") >= 4 and not rel.endswith("/copyright"))


def _copy_entry(src_root: Path, dest_root: Path, rel: str) -> None:
    src = src_root / rel
    dest = dest_root / rel
    if os.path.lexists(dest) or not os.path.lexists(src):
        return
    st = src.lstat()
    dest.parent.mkdir(parents=True, exist_ok=True)
    if src.is_symlink():
        dest.symlink_to(src.readlink())
    elif src.is_dir():
        dest.mkdir()
    else:
        shutil.copyfile(src, dest, follow_symlinks=False)
    os.chown(dest, st.st_uid, st.st_gid, follow_symlinks=False)
    if not src.is_symlink():
        dest.chmod(st.st_mode & 0o7777)


def build_minimal(ctx: BuildContext) -> BuiltImage:
    if not busybox.BUSYBOX.is_file():
        raise errors.NotAvailable(f"{busybox.BUSYBOX} is missing: `apt-get install -y busybox-static`")
    scratch = ctx.work_dir / "scratch"
    debian.unpack(ctx.image_layers("debian:bookworm"), scratch)
    debian.apt_install(ctx, scratch, (MINIMAL_ROOT_PACKAGE,))
    packages = dependency_closure(scratch, MINIMAL_ROOT_PACKAGE)
    ctx.say(f"copying the files of {', '.join(packages)}")
    root = ctx.work_dir / "rootfs"
    root.mkdir(mode=0o755)
    for rel, mode in MINIMAL_DIRS.items():
        (root / rel).mkdir(exist_ok=True)
        (root / rel).chmod(mode)
    for link, target in MERGED_USR.items():
        (root / link).symlink_to(target)
    for package in packages:
        for rel in _package_paths(scratch, package):
            if _keep(rel):
                _copy_entry(scratch, root, rel)
    shutil.copyfile(busybox.BUSYBOX, root / "usr/bin/busybox")
    (root / "usr/bin/busybox").chmod(0o755)
    for rel in busybox.applets(busybox.BUSYBOX):
        if rel.rsplit("/", 1)[-1] in NOT_APPLETS:
            continue
        if not os.path.lexists(root / rel):  # Debian's own files (none today) win over applets
            (root / rel).symlink_to("/usr/bin/busybox")
    _python_links(root)
    for rel, (text, mode) in MINIMAL_FILES.items():
        (root / rel).write_text(text)
        (root / rel).chmod(mode)
    layer = ctx.work_dir / "layer.tar"
    stats = tarutil.tar_directory(root, layer)
    ctx.say(f"layer {stats.diff_id} ({stats.entries} entries, {stats.size} bytes)")
    return BuiltImage(
        layers=[layer],
        env=ENV,
        cmd=["python3"],
        comment="kubelab recipe python:3.11-minimal: Debian python3.11-minimal and its dependencies, busybox sh",
        move=True,
    )


SLIM = Recipe(
    name="python:3.11-slim",
    version="1",
    description="debian:bookworm + Debian's python3 3.11 and ca-certificates (no pip)",
    build=build_slim,
    base="debian:bookworm",
)

MINIMAL = Recipe(
    name="python:3.11-minimal",
    version="3",
    description="Debian's python3.11-minimal and the libraries it needs, busybox; no apt (about 33 MB)",
    build=build_minimal,
)
