"""Docker's ``--user`` resolution against an image's ``/etc/passwd`` and ``/etc/group``.

Both files are read from a root the student controls through runtime/kernel/safewrite.py
(``openat2`` with ``RESOLVE_IN_ROOT``), never leaving it. The engine, the builder and the
cluster's DNS import that module directly for bind-mount sources (resolved in the
sandbox's rootfs) and a container's working directory: they keep the returned descriptor
and act on *that* object (``/proc/self/fd/N``), so a path swapped for a symlink afterwards
changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runtime.kernel.safewrite import read_in_root


@dataclass(frozen=True)
class ExecUser:
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str


def _db(root: Path, path: str) -> list[list[str]]:
    raw = read_in_root(root, path) or b""
    out = []
    for line in raw.decode(errors="replace").splitlines():
        if line and not line.startswith("#"):
            out.append(line.split(":"))
    return out


def resolve_user(root: Path, spec: str) -> ExecUser:
    """Docker's ``--user`` rules: "", "name", "uid", "uid:gid", "name:group", against the
    image's /etc/passwd and /etc/group (numeric ids need no entry). ValueError with
    Docker's message when a name is unknown."""
    user, _, group = (spec or "").partition(":")
    uid, gid, home = 0, 0, "/"
    name = ""
    passwd = _db(root, "/etc/passwd")
    if user:
        entry = None
        for f in passwd:
            if len(f) >= 7 and (f[0] == user or (user.isdigit() and f[2] == user)):
                entry = f
                break
        if entry is not None:
            name = entry[0]
            uid, gid, home = int(entry[2]), int(entry[3]), entry[5] or "/"
        elif user.isdigit():
            uid = int(user)
        else:
            raise ValueError(f"unable to find user {user}: no matching entries in passwd file")
    else:
        for f in passwd:
            if len(f) >= 7 and f[2] == "0":
                name, home = f[0], f[5] or "/"
                break
    groups_db = _db(root, "/etc/group")
    if group:
        found = [f for f in groups_db if len(f) >= 3 and (f[0] == group or (group.isdigit() and f[2] == group))]
        if found:
            gid = int(found[0][2])
        elif group.isdigit():
            gid = int(group)
        else:
            raise ValueError(f"unable to find group {group}: no matching entries in group file")
    extra: list[int] = []
    if name and not group:
        for f in groups_db:
            if len(f) >= 4 and name in f[3].split(",") and f[2].isdigit() and int(f[2]) != gid:
                extra.append(int(f[2]))
    return ExecUser(uid, gid, tuple(extra), home)
