"""Short-lived helper that builds a sandbox's root filesystem (a helper module: stdlib, kernel/mounts.py).

The daemon never does mount work in its own threads (CONVENTIONS.md, 10). It forks
this module's ``main`` from runtime/kernel/forkserver.py's server, which imported it
(else starts ``python -m runtime.sandbox._mounthelper``, ``runtime.kernel.children``),
with a JSON request on stdin; the helper does the whole job in one process and prints
one JSON line.

``setup`` (request ``{"op": "setup", ...}``):

1. attach the sandbox's sparse ext4 image to a free loop device with
   ``LOOP_CONFIGURE`` and ``LO_FLAGS_AUTOCLEAR`` (the device frees itself when
   the last mount of the filesystem goes away), mount it, create ``upper`` and
   ``work`` owned by the sandbox's mapped root;
2. write the initial files (``/etc/hosts``, ``/root/...``) into the fresh upper
   dir, walking every directory with ``O_NOFOLLOW`` (nothing student-controlled
   exists yet, but the habit is cheap);
3. idmapped layers (runtime/kernel/mounts.py): fork a child that unshares a user
   namespace, write the sandbox's uid/gid map for it, then for each layer
   ``open_tree(OPEN_TREE_CLONE)`` + ``mount_setattr(MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY)``
   + ``move_mount`` into ``layers/<i>``. If the kernel refuses (exit code 3) the caller
   retries with pre-shifted layer copies and ``"idmap": false``;
4. mount overlayfs on ``rootfs`` and detach the layer and ext4 mounts again:
   overlayfs holds private clones of its layers, so a running sandbox shows
   exactly one mount on the host and unmounting it releases the loop device.
   With ``"keep_disk": true`` the ext4 stays mounted at ``disk_mnt`` (a sandbox
   service keeps its data there, on the sandbox's quota: the Docker engine).

With ``"resume": true`` (a paused sandbox started again) the image already holds
``upper`` and ``work``: steps 1 and 2 only mount it, nothing is created or written.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import struct
import sys

from runtime.kernel.mounts import (
    EXIT_IDMAP_REFUSED,
    MS_NOATIME,
    MS_NODEV,
    MS_NOSUID,
    IdmapRefused,
    idmapped_bind,
    mount,
    umount_detach,
    userns_fd,
)

# Imports cost CPU at each start of the fork server that imports this helper, and of this
# helper where it is started directly (issue #13: a class of 50 starting at once is
# CPU-bound), so no pathlib or typing here. mypy takes any name TYPE_CHECKING as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

LOOP_CTL_GET_FREE = 0x4C82
LOOP_CONFIGURE = 0x4C0A
LO_FLAGS_AUTOCLEAR = 4


def loop_attach(image: str) -> tuple[str, int]:
    """Attach ``image`` to a free loop device with autoclear; return its path and an open fd.

    Autoclear detaches on the last close, so the caller keeps the fd until the
    filesystem is mounted (the mount then holds the device).
    """
    backing = os.open(image, os.O_RDWR | os.O_CLOEXEC)
    try:
        ctl = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
        try:
            for _ in range(64):
                n = fcntl.ioctl(ctl, LOOP_CTL_GET_FREE)
                dev = f"/dev/loop{n}"
                try:
                    fd = os.open(dev, os.O_RDWR | os.O_CLOEXEC)
                except FileNotFoundError:
                    continue
                try:
                    # struct loop_config {u32 fd; u32 block_size; loop_info64 info; u64 rsvd[8]}
                    cfg = bytearray(304)
                    struct.pack_into("=II", cfg, 0, backing, 0)
                    struct.pack_into("=I", cfg, 8 + 52, LO_FLAGS_AUTOCLEAR)
                    name = os.path.basename(image).encode()[:63]  # noqa: PTH119 - no pathlib (import cost)
                    cfg[8 + 56 : 8 + 56 + len(name)] = name
                    fcntl.ioctl(fd, LOOP_CONFIGURE, bytes(cfg))
                except OSError as exc:
                    os.close(fd)
                    if exc.errno == errno.EBUSY:  # raced with another attacher
                        continue
                    raise
                return dev, fd
            raise OSError(errno.EBUSY, "no free loop device after 64 attempts")
        finally:
            os.close(ctl)
    finally:
        os.close(backing)


def write_files(upper: str, files: list[dict[str, Any]], uid: int) -> None:
    """Create files beneath ``upper`` without following any symlink on the way."""
    root = os.open(upper, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        for f in files:
            parts = [p for p in f["path"].split("/") if p]
            if not parts or any(p in (".", "..") for p in parts):
                raise ValueError(f"bad path {f['path']!r}")
            cur = os.dup(root)
            try:
                for i, part in enumerate(parts[:-1]):
                    mode = f.get("dir_modes", {}).get("/".join(parts[: i + 1]), 0o755)
                    try:
                        os.mkdir(part, mode, dir_fd=cur)
                        os.chown(part, uid, uid, dir_fd=cur, follow_symlinks=False)
                        os.chmod(part, mode, dir_fd=cur, follow_symlinks=False)
                    except FileExistsError:
                        pass
                    nxt = os.open(
                        part,
                        os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                        dir_fd=cur,
                    )
                    os.close(cur)
                    cur = nxt
                fd = os.open(
                    parts[-1],
                    os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                    f.get("mode", 0o644),
                    dir_fd=cur,
                )
                try:
                    os.write(fd, f["content"].encode())
                    os.fchown(fd, uid, uid)
                    os.fchmod(fd, f.get("mode", 0o644))
                finally:
                    os.close(fd)
            finally:
                os.close(cur)
    finally:
        os.close(root)


def setup(req: dict[str, Any]) -> dict[str, Any]:
    uid = int(req["uid_base"])
    disk_mnt, rootfs, layers_dir = req["disk_mnt"], req["rootfs"], req["layers_dir"]
    dev, loop_fd = loop_attach(req["disk_image"])
    try:
        mount(dev, disk_mnt, "ext4", MS_NOATIME | MS_NODEV | MS_NOSUID, "")
    finally:
        os.close(loop_fd)
    mounted = [disk_mnt]
    try:
        upper, work = f"{disk_mnt}/upper", f"{disk_mnt}/work"
        if not req.get("resume"):  # a resumed sandbox's disk has them, and its files
            for d in (upper, work):
                os.mkdir(d, 0o755)  # noqa: PTH102 - no pathlib (import cost)
            os.chown(upper, uid, uid)
            write_files(upper, req["files"], uid)
        lowers: list[str] = []
        if req["idmap"]:
            ns = userns_fd(uid, int(req["size"]))
            try:
                for i, layer in enumerate(req["layers"]):
                    target = f"{layers_dir}/{i}"
                    os.makedirs(target, exist_ok=True)  # noqa: PTH103 - no pathlib (import cost)
                    idmapped_bind(layer, target, ns)
                    mounted.append(target)
                    lowers.append(target)
            finally:
                os.close(ns)
        else:
            lowers = list(req["layers"])
        opts = f"lowerdir={':'.join(reversed(lowers))},upperdir={upper},workdir={work}"
        mount("overlay", rootfs, "overlay", MS_NODEV, opts)
    except BaseException:
        for m in reversed(mounted):
            try:  # noqa: SIM105 - no contextlib (import cost)
                umount_detach(m)
            except OSError:
                pass
        raise
    # overlayfs keeps private clones of its layers: drop ours from the mount table (but
    # keep the disk where a sandbox service stores data on it: runtime.dockerapi).
    for m in reversed(mounted):
        if not (req.get("keep_disk") and m == disk_mnt):
            umount_detach(m)
    return {"loop": dev, "idmap": bool(req["idmap"])}


def main() -> int:
    req = json.loads(sys.stdin.read())
    try:
        if req["op"] == "setup":
            out = setup(req)
        else:
            raise ValueError(f"unknown op {req['op']!r}")
    except IdmapRefused as exc:
        sys.stdout.write(json.dumps({"error": str(exc)}) + "\n")
        return EXIT_IDMAP_REFUSED
    except (OSError, ValueError) as exc:
        sys.stdout.write(json.dumps({"error": str(exc)}) + "\n")
        return 1
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
