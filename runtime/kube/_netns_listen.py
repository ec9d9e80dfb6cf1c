"""Helper child: open a listening TCP (or bound UDP) socket inside another process's network namespace.

Run as ``python -I -S _netns_listen.py PID HOST PORT FD [tcp|udp]`` by service.py and
dns.py, never imported by the daemon (kernel work happens in a child process, CONVENTIONS
#10). It enters ``/proc/PID/ns/net`` with setns(2), binds (and for TCP listens on)
HOST:PORT there, sends the socket back over the unix socket FD (SCM_RIGHTS) and exits. A socket keeps
the namespace it was created in, so the daemon can serve it from its own namespace.

Exit status 0 on success; otherwise 1 with the reason on stderr (2 for "address in use").
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import sys

CLONE_NEWNET = 0x40000000


def main(argv: list[str]) -> int:
    pid, host, port, chan_fd = int(argv[1]), argv[2], int(argv[3]), int(argv[4])
    udp = argv[5:6] == ["udp"]
    chan = socket.socket(fileno=chan_fd)
    try:
        ns = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        print(f"cannot open the network namespace of pid {pid}: {e.strerror}", file=sys.stderr)
        return 1
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(ns, CLONE_NEWNET) != 0:
        print(f"setns(net of pid {pid}): {os.strerror(ctypes.get_errno())}", file=sys.stderr)
        return 1
    os.close(ns)
    lst = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        lst.bind((host, port))
    except OSError as e:
        print(f"cannot listen on {host}:{port} in the sandbox: {e.strerror}", file=sys.stderr)
        return 2 if e.errno == errno.EADDRINUSE else 1
    if not udp:
        lst.listen(512)
    socket.send_fds(chan, [b"ok"], [lst.fileno()])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
