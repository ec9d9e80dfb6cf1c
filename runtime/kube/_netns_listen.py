"""Helper child: open listening TCP (or bound UDP) sockets inside another process's network namespace.

Run as ``python -I -S _netns_listen.py PID FD HOST,PORT,PROTO [HOST,PORT,PROTO ...]`` (PROTO
``tcp`` or ``udp``) by service.py for the cluster's API listener and dns.py's sockets, never
imported by the daemon (kernel work happens in a child process, CONVENTIONS #10). It enters
``/proc/PID/ns/net`` with setns(2), binds (and for TCP listens on) each HOST:PORT there,
sends the sockets back in that order, in one message over the unix socket FD (SCM_RIGHTS),
and exits. A socket keeps the namespace it was created in, so the daemon can serve it from
its own namespace. Several sockets per run: a class starting at once pays one Python
start-up per sandbox, not four.

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
    pid, chan_fd = int(argv[1]), int(argv[2])
    specs = [a.split(",") for a in argv[3:]]
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
    made = []
    for host, port, proto in specs:
        udp = proto == "udp"
        lst = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
        lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            lst.bind((host, int(port)))
        except OSError as e:
            print(f"cannot listen on {host}:{port} ({proto}) in the sandbox: {e.strerror}", file=sys.stderr)
            return 2 if e.errno == errno.EADDRINUSE else 1
        if not udp:
            lst.listen(512)
        made.append(lst)
    socket.send_fds(chan, [b"ok"], [s.fileno() for s in made])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
