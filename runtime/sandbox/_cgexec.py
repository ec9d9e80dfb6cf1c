"""kl-cgexec in Python, for hosts where ``agent/build.sh`` was not run (see cgexec.py).

``python -I -S _cgexec.py FD[,FD...] PROGRAM [ARG...]``: write "0" to each descriptor (a
cgroup's ``cgroup.procs`` passed by runtimed: this process joins that cgroup), close it,
exec PROGRAM. Exit 125 if a cgroup cannot be joined, 127 if PROGRAM cannot be executed.
Started by path, not as a helper module (``python -m`` needs a ``PYTHONPATH`` that would
reach PROGRAM's environment); it imports nothing of ours.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        sys.stderr.write("usage: _cgexec.py FD[,FD...] PROGRAM [ARG...]\n")
        return 125
    for item in argv[1].split(","):
        try:
            fd = int(item)
            os.write(fd, b"0")
            os.close(fd)
        except (ValueError, OSError) as exc:
            sys.stderr.write(f"kl-cgexec: joining the sandbox's cgroup ({item}): {exc}\n")
            return 125
    try:
        os.execvp(argv[2], argv[2:])  # noqa: S606 - an argv, never a shell line
    except OSError as exc:
        sys.stderr.write(f"kl-cgexec: {argv[2]}: {exc.strerror}\n")
    return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv))
