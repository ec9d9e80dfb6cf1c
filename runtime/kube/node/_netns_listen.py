"""Helper child: open listening TCP (or bound UDP) sockets inside another process's network namespace.

Run as ``python -m runtime.kube.node._netns_listen PID FD [lo+IP ...] HOST,PORT,PROTO [HOST,PORT,PROTO ...]``
(PROTO ``tcp`` or ``udp``; forked from runtime/kernel/forkserver.py's server, which imported it,
else started with ``runtime.kernel.children.helper_argv``) by service.py for the cluster's API
listener and node/dns.py's sockets, never imported by the daemon (kernel work happens in a
child process, CONVENTIONS #10). It
enters ``/proc/PID/ns/net`` with setns(2), gives ``lo`` each ``lo+IP`` as IP/32 (rtnetlink
RTM_NEWADDR with NLM_F_REPLACE: idempotent, like ``ip addr replace``; cluster DNS's
10.96.0.10), binds (and for TCP listens on) each HOST:PORT there, sends the sockets back in
that order, in one message over the unix socket FD (SCM_RIGHTS), and exits. A socket keeps
the namespace it was created in, so the daemon can serve it from its own namespace. One run
per sandbox start makes the API listener, DNS's address and its three sockets: a class
starting at once pays one Python start-up per sandbox for all of them (issue #13: each
start-up costs ~25 ms of CPU, and two ``nsenter ip`` runs a few more).

Exit status 0 on success; otherwise 1 with the reason on stderr (2 for "address in use").
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct
import sys

CLONE_NEWNET = 0x40000000
# rtnetlink (linux/netlink.h, linux/rtnetlink.h, linux/if_addr.h)
RTM_NEWADDR = 20
NLMSG_ERROR = 2
NLM_F_REQUEST, NLM_F_ACK, NLM_F_REPLACE, NLM_F_CREATE = 0x1, 0x4, 0x100, 0x400
IFA_ADDRESS, IFA_LOCAL = 1, 2


def add_lo_address(ip: str) -> None:
    """IP/32 on ``lo`` of the current network namespace (scope global, as ``ip addr add``
    gives a non-127 address); replaces an existing one, so a second run is a no-op."""
    addr = socket.inet_aton(ip)
    ifa = struct.pack("=BBBBI", socket.AF_INET, 32, 0, 0, socket.if_nametoindex("lo"))
    body = ifa + struct.pack("=HH4s", 8, IFA_LOCAL, addr) + struct.pack("=HH4s", 8, IFA_ADDRESS, addr)
    flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as nl:
        nl.bind((0, 0))
        nl.send(struct.pack("=IHHII", 16 + len(body), RTM_NEWADDR, flags, 1, 0) + body)
        reply = nl.recv(8192)
    _len, kind, _flags, _seq, _pid = struct.unpack_from("=IHHII", reply)
    if kind != NLMSG_ERROR:
        raise OSError(errno.EPROTO, f"unexpected rtnetlink reply type {kind}")
    (err,) = struct.unpack_from("=i", reply, 16)
    if err:
        raise OSError(-err, os.strerror(-err))


def main(argv: list[str]) -> int:
    pid, chan_fd = int(argv[1]), int(argv[2])
    addrs = [a[3:] for a in argv[3:] if a.startswith("lo+")]
    specs = [a.split(",") for a in argv[3:] if not a.startswith("lo+")]
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
    for ip in addrs:
        try:
            add_lo_address(ip)
        except (OSError, ValueError) as e:
            print(f"cannot add {ip}/32 to lo in the sandbox: {e}", file=sys.stderr)
            return 1
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
