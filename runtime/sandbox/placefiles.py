"""What a sandbox service puts in a sandbox being created, written from the host.

Why. Before a lab sandbox is ready its services place two things in its filesystem:
the Docker service the link ``/var/run/docker.sock``, the Kubernetes service the
student's ``/root/.kube/config``. Written from inside, each costs a process in the
sandbox, and the first of them the start of the exec agent, one ``runc exec`` (a Go
start-up, namespace joins, a seccomp compile: fastexec.py), on the ready path of every
student of a class that starts together (issue #13: the host is CPU-bound then, and
every CPU-second before one student's "ready" delays everyone behind them). With these
two written here, a create runs no process in the sandbox at all (unless the lab has a
setup script), and the agent starts on the first exec after ready (the terminal).

When. Only while ``SandboxManager.create`` starts the services of a sandbox it has just
built: nothing of the student's has run in it (its processes are tini and ``sleep``;
no credential for it has been handed out; a lab's setup script runs after the
services), exactly as when the mount helper writes ``/etc/hosts`` and the lab's files
before ``runc run``. A resumed sandbox, or anything that fails here, takes the inside
path as before (the caller falls back).

How, never leaving the root anyway (runtime/kernel/safewrite.py does the writing). The
sandbox's root filesystem is the overlay the mount helper mounted at ``<sandbox dir>/rootfs``
on the host. Every directory is opened
with ``openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)`` from a
descriptor of that root: an image's absolute symlink (Debian's ``/var/run -> /run``)
resolves inside the sandbox's root as it does inside, ``..`` stops at it, and no mount
is crossed. The last component is created with ``*at`` calls on that directory
descriptor that never follow it (``O_CREAT | O_EXCL | O_NOFOLLOW``; a symlink made
under a temporary name, then renamed over). The result is what the inside path gave:
owned by the sandbox's root (host uid ``uid_base``), directories 0755 and files 0644
(the shell's umask 022), a file replaced rather than written through (``rm -f`` then
``cat >``), a link replaced (``ln -sfn``). Modes are set with ``fchmod`` on the new
object, never through the process umask (CONVENTIONS.md 13c).
"""

from __future__ import annotations

from pathlib import Path

from runtime.kernel import safewrite

DIR_MODE = 0o755
FILE_MODE = 0o644


def write_file(rootfs: Path, path: str, content: bytes, uid: int) -> None:
    """Replace (or create) the file ``path`` inside the root ``rootfs``, owned by ``uid``."""
    safewrite.write_file(rootfs, path, content, uid, mode=FILE_MODE, dir_mode=DIR_MODE)


def symlink(rootfs: Path, path: str, target: str, uid: int) -> None:
    """Make ``path`` inside the root ``rootfs`` a symlink to ``target`` (``ln -sfn``), owned by ``uid``."""
    safewrite.symlink(rootfs, path, target, uid, dir_mode=DIR_MODE)
