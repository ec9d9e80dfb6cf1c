"""Short-lived mount helper of the Docker engine (a helper module: stdlib and kernel/mounts.py).

The engine never mounts in runtimed's own threads (CONVENTIONS.md, 10): it starts this
module with ``runtime.kernel.children.helper_argv`` (``python -P -s -S -m
runtime.dockerapi._enginehelper``) in the sandbox's cgroup (``Placement``), writes one JSON
request on stdin and reads one JSON line back. The mount and idmapping primitives are
runtime/kernel/mounts.py's, shared with the sandbox's mount helper. The ``ingest`` and
``tree_tar`` ops import runtime/dockerapi/images/store.py when they run, so the mount ops
start without it.

Ops:

``overlay``
    ``{"lowers": [{"path", "idmap"}...] (lowest first), "target", "upper"?, "work"?,
    "uid_base", "size", "scratch"}``: layers flagged ``idmap`` (shared catalog layers,
    owned by host uid 0..) are first cloned with ``open_tree`` and idmapped to the
    sandbox's range into ``scratch/<i>``; overlayfs is mounted on ``target`` (read-only
    when there is no upper) and the clones are detached again (overlayfs keeps its own
    references), so a container shows exactly one mount on the host.
``bind_fd``
    ``{"fd", "target"}``: bind-mount the object behind descriptor ``fd`` (passed to the
    helper, opened by the engine with ``openat2(RESOLVE_IN_ROOT)``) onto ``target``. The
    source is ``/proc/self/fd/N``, a magic link the kernel follows to that exact object:
    no path is resolved again, so a student cannot swap in a symlink meanwhile.
``umount``
    ``{"targets": [...]}``: detach each (missing or unmounted targets are skipped).
``ingest``
    ``{"raw_fd", "spool_fd", "dir_fd", "uid_base", "budget", "expect", "what"}``: the
    unpack of a layer a student sent (docker load/import/commit), so its decompression,
    digests and extraction run in the sandbox's cgroup, not in runtimed: the archive as
    sent (descriptor ``raw_fd``) is decompressed into ``spool_fd`` while hashed, checked
    against ``expect``, then unpacked by ``tarutil.extract_layer_stream`` into the directory
    behind ``dir_fd`` (the helper's cwd, so no path is resolved from outside it), and the
    store's own tar digest of the result is computed. Answers ``{"digest", "own",
    "size"}``; a refusal is ``{"error", "kind": "bad_request"|"disk_full"}``.
``tree_tar``
    ``{"dir_fd", "out_fd", "uid_base", "budget"}``: the store's tar of a container's upper
    dir (docker commit; a walk relative to ``dir_fd`` that follows no link) written to
    ``out_fd``, at most ``budget`` bytes. Answers ``{"size"}``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys

from runtime.kernel import mounts

# Imports cost CPU at each start of this helper (one ahead of need per engine, more under
# load), so no pathlib or typing here. mypy takes any name TYPE_CHECKING as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

EINVAL = 22


def overlay(req: dict[str, Any]) -> dict[str, Any]:
    scratch = req["scratch"]
    lowers: list[str] = []
    cloned: list[str] = []
    ns = -1
    try:
        for i, layer in enumerate(req["lowers"]):
            if layer["idmap"]:
                if ns < 0:
                    ns = mounts.userns_fd(int(req["uid_base"]), int(req["size"]))
                target = f"{scratch}/{i}"
                os.makedirs(target, exist_ok=True)  # noqa: PTH103 - no pathlib (import cost)
                mounts.idmapped_bind(layer["path"], target, ns)
                cloned.append(target)
                lowers.append(target)
            else:
                lowers.append(layer["path"])
        opts = "lowerdir=" + ":".join(reversed(lowers))
        flags = mounts.MS_NODEV
        if req.get("upper"):
            opts += f",upperdir={req['upper']},workdir={req['work']}"
        else:
            flags |= mounts.MS_RDONLY
        mounts.mount("overlay", req["target"], "overlay", flags, opts)
    finally:
        if ns >= 0:
            os.close(ns)
        for m in reversed(cloned):
            with contextlib.suppress(OSError):
                mounts.umount_detach(m)
    return {}


def bind_fd(req: dict[str, Any]) -> dict[str, Any]:
    mounts.mount(f"/proc/self/fd/{int(req['fd'])}", req["target"], "", mounts.MS_BIND, "")
    return {}


def umount(req: dict[str, Any]) -> dict[str, Any]:
    for target in req["targets"]:
        try:
            mounts.umount_detach(target)
        except OSError as exc:
            if exc.errno not in (EINVAL, 2):  # not a mount point / gone
                raise
    return {}


def ingest(req: dict[str, Any]) -> dict[str, Any]:
    # Imported here: the mount ops stay stdlib-only and quick to start.
    from runtime.dockerapi.images import store

    return store.ingest_in_helper(req)


def tree_tar(req: dict[str, Any]) -> dict[str, Any]:
    from runtime.dockerapi.images import store

    return store.tree_tar_in_helper(req)


def main() -> int:
    req = json.loads(sys.stdin.read())
    ops = {"overlay": overlay, "bind_fd": bind_fd, "umount": umount, "ingest": ingest, "tree_tar": tree_tar}
    try:
        if req.get("op") not in ops:
            raise ValueError(f"unknown op {req.get('op')!r}")
        out = ops[req["op"]](req)
    except mounts.IdmapRefused as exc:
        sys.stdout.write(json.dumps({"error": str(exc)}) + "\n")
        return int(mounts.EXIT_IDMAP_REFUSED)
    except (OSError, ValueError, KeyError) as exc:
        sys.stdout.write(json.dumps({"error": str(exc)}) + "\n")
        return 1
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
