"""``busybox``: a tiny rootfs from the host's Debian ``busybox-static`` (and ``tini-static``).

One layer: /bin/busybox with a symlink per applet at the path ``busybox
--list-full`` gives, /sbin/tini (sandboxes run tini as PID 1), minimal /etc,
/root, /tmp (1777) and mount points. Reproducible: every mtime is clamped to the
busybox binary's, so the same host packages give the same digests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from runtime import errors
from runtime.images import tarutil
from runtime.images.recipes import BuildContext, BuiltImage, Recipe
from runtime.kernel.clock import format_ts

BUSYBOX = Path(os.environ.get("RUNTIME_BUSYBOX_BIN", "/bin/busybox"))
TINI = Path(os.environ.get("RUNTIME_TINI_BIN", "/usr/bin/tini-static"))
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

PROFILE = r"""# /etc/profile: read by login shells, and by every interactive sh through $ENV
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME="${HOME:-/root}"
umask 022
if [ "$(id -u)" = 0 ]; then _sfx='#'; else _sfx='$'; fi
PS1="\[\033[1;32m\]\u@\h\[\033[0m\]:\[\033[1;34m\]\w\[\033[0m\]$_sfx "
unset _sfx
alias ll='ls -la'
"""

FILES: dict[str, tuple[str, int]] = {
    "etc/passwd": (
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        0o644,
    ),
    "etc/group": ("root:x:0:\nnobody:x:65534:\n", 0o644),
    "etc/shadow": ("root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n", 0o640),
    "etc/hosts": ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n", 0o644),
    "etc/hostname": ("localhost\n", 0o644),
    "etc/resolv.conf": ("", 0o644),
    "etc/profile": (PROFILE, 0o644),
    "etc/shells": ("/bin/sh\n/bin/ash\n", 0o644),
    "etc/os-release": (
        'NAME="kubelab busybox"\nID=busybox\nPRETTY_NAME="kubelab busybox (Debian busybox-static)"\n',
        0o644,
    ),
    "root/.profile": (". /etc/profile\n", 0o644),
}

DIRS: dict[str, int] = {
    "bin": 0o755,
    "sbin": 0o755,
    "usr": 0o755,
    "usr/bin": 0o755,
    "usr/sbin": 0o755,
    "usr/local": 0o755,
    "usr/local/bin": 0o755,
    "etc": 0o755,
    "root": 0o700,
    "home": 0o755,
    "tmp": 0o1777,
    "var": 0o755,
    "var/tmp": 0o1777,
    "run": 0o755,
    "mnt": 0o755,
    "proc": 0o555,
    "sys": 0o555,
    "dev": 0o755,
}


def applets(busybox: Path) -> list[str]:
    try:
        out = subprocess.run(
            [str(busybox), "--list-full"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise errors.RuntimeError(f"could not list the applets of {busybox}: {exc}") from exc
    paths = sorted({line.strip().lstrip("/") for line in out.splitlines() if line.strip()})
    return [p for p in paths if ".." not in p.split("/")]


def build(ctx: BuildContext) -> BuiltImage:
    if not BUSYBOX.is_file():
        raise errors.NotAvailable(
            f"{BUSYBOX} is missing: install Debian's busybox-static "
            "(`apt-get install -y busybox-static`) and build again"
        )
    mtime = int(BUSYBOX.stat().st_mtime)
    rootfs = ctx.work_dir / "rootfs"
    rootfs.mkdir(mode=0o755)
    ctx.say(f"rootfs from {BUSYBOX}")
    for rel, mode in DIRS.items():
        (rootfs / rel).mkdir(exist_ok=True)
        (rootfs / rel).chmod(mode)
    shutil.copyfile(BUSYBOX, rootfs / "bin/busybox")
    (rootfs / "bin/busybox").chmod(0o755)
    names = applets(BUSYBOX)
    for rel in names:
        target = rootfs / rel
        if rel == "bin/busybox" or os.path.lexists(target):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to("/bin/busybox")
    ctx.say(f"{len(names)} applets linked")
    if TINI.is_file():
        shutil.copyfile(TINI, rootfs / "sbin/tini")
        (rootfs / "sbin/tini").chmod(0o755)
        ctx.say(f"tini from {TINI} at /sbin/tini")
    else:
        ctx.say(f"warning: {TINI} is missing (apt-get install tini); the image has no /sbin/tini")
    for rel, (text, mode) in FILES.items():
        path = rootfs / rel
        path.write_text(text)
        path.chmod(mode)
    layer = ctx.work_dir / "layer.tar"
    stats = tarutil.tar_directory(rootfs, layer, mtime_clamp=mtime)
    ctx.say(f"layer {stats.diff_id} ({stats.entries} entries, {stats.size} bytes)")
    created = format_ts(mtime)
    return BuiltImage(
        layers=[layer],
        env=[f"PATH={PATH}", "ENV=/etc/profile"],
        cmd=["/bin/sh"],
        working_dir="/root",
        created=created,
        comment="kubelab recipe busybox: Debian busybox-static + tini-static",
        move=True,
    )


RECIPE = Recipe(
    name="busybox",
    version="1",
    description="BusyBox (Debian busybox-static) with tini; a few MB, built in a second",
    build=build,
)
