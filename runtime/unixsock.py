"""Listening unix sockets with their mode and owner from the moment they have a name.

runtimed's API socket and each sandbox's Docker sockets (inside for the student, on the
host for graders) must never exist, even for an instant, with a wider mode than meant, and
may replace a stale socket of an earlier runtimed. Setting the process umask around bind()
is not an option: the umask is shared by every thread of runtimed, and sandboxes start in
threads meanwhile (issue #13: a umask left at 0117 made every later sandbox untraversable;
CONVENTIONS.md 13c). So the socket is bound in a fresh 0700 directory beside its path, given
its mode and owner there (nothing in that directory can be swapped for a link), then renamed
into place, and only then listens.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from pathlib import Path

BACKLOG = 128


def bind_unix(
    path: Path,
    *,
    uid: int = -1,
    gid: int = -1,
    mode: int = 0o660,
    backlog: int = BACKLOG,
    kind: int = socket.SOCK_STREAM,
) -> socket.socket:
    """A listening, non-blocking unix socket at ``path`` with ``mode``, owned ``uid:gid``
    (-1: unchanged); ``kind`` ``SOCK_STREAM`` or ``SOCK_SEQPACKET``."""
    private = Path(tempfile.mkdtemp(prefix=".b-", dir=path.parent))
    tmp = private / "s"
    sock = socket.socket(socket.AF_UNIX, kind)
    try:
        sock.bind(str(tmp))
        tmp.chmod(mode)
        os.chown(tmp, uid, gid)
        tmp.rename(path)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    finally:
        shutil.rmtree(private, ignore_errors=True)
    return sock
