"""Shared pieces of the sandbox test suites: the busybox image, managers, running commands.

Each suite gets its own manager (root dir, bridge, subnet, cgroup parent and uid
range, keyed by ``tag``) so suites can run beside each other and beside a
production runtimed on the same host.
"""

from __future__ import annotations

import contextlib
import ctypes
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from runtime.images.store import ImageStore
from runtime.kernel import forkserver
from runtime.sandbox.manager import PR_SET_CHILD_SUBREAPER, SandboxManager, Spawned


def images_for(root: Path) -> ImageStore:
    """The real image store with the busybox image built (about 0.2 s, once per suite)."""
    store = ImageStore(root)
    if not store.exists("busybox"):
        store.build("busybox", lambda _msg: None)
    return store


def make_manager(tag: int) -> SandboxManager:
    """A manager on a fresh root with its own bridge, subnet, cgroup parent and uid range."""
    root = new_root()
    images = images_for(root / "images")
    return SandboxManager(
        root,
        images,
        subnet=f"10.231.{tag}.0/24",
        bridge=f"kltest{tag}",
        cgroup_parent=f"kubelab-test-{tag}",
        uid_start=2_000_000_000 + tag * 65536 * 32,
    )


def destroy_manager(mgr: SandboxManager) -> None:
    for info in mgr.list():
        mgr.remove(info.id)
    mgr.net.destroy()
    mgr.cgroups.remove_parent()
    mgr.close()
    shutil.rmtree(mgr.root)


def new_root() -> Path:
    d = Path(tempfile.mkdtemp(prefix="klt-", dir="/tmp"))
    d.chmod(0o711)
    return d


def run_in(
    mgr: SandboxManager, sid: str, script: str, *, timeout: float = 60, stdin: bytes | None = None
) -> tuple[int, str, str]:
    sp: Spawned = mgr.spawn(sid, ["/bin/sh", "-c", script], tty=False)
    try:
        out, err = sp.proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        sp.kill_tree()
        raise
    return sp.proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


@contextlib.contextmanager
def as_subreaper() -> Iterator[None]:
    """This (test) process a child subreaper, as runtimed is, for the block; the flag as it was after."""
    libc = ctypes.CDLL(None, use_errno=True)
    was = forkserver.is_subreaper()
    assert libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    try:
        yield
    finally:
        if not was:
            libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
