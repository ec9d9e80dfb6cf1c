"""Helper child: one connection attempt from inside a pod's network namespace.

Run as ``python -m runtime.kube.node._netns_probe PID START HOST PORT tcp|udp TIMEOUT`` by
node/netpol.py's ``probe`` (the grader's ``connectivity`` check; the argv from
``runtime.kernel.children.helper_argv``), never imported by the daemon (kernel work happens
in a child process, CONVENTIONS #10). It enters ``/proc/PID/ns/net`` (the pod's infra
container; START is the start time the engine recorded for it, checked once the namespace is
open, so a pid reused by another process, a host one, is never entered) with setns(2), so
the packets leave from the pod's own address and meet the same rules as the pod's own
traffic, and prints one JSON line:

``{"result": "open" | "refused" | "timeout" | "unreachable" | "error", "detail": str}``

TCP: ``open`` when the handshake completes, ``refused`` on a reset (reachable, nothing
listens), ``timeout`` when nothing came back (what a NetworkPolicy's drop looks like). UDP:
a DNS query (``kubernetes.default.svc.cluster.local``, A) is sent (a DNS server answers it, an echo server
echoes it); ``open`` when any datagram comes back, ``refused`` on ICMP port-unreachable,
``timeout`` otherwise (UDP cannot tell a drop from a server that stays silent).
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import socket
import sys

CLONE_NEWNET = 0x40000000
# an A query for kubernetes.default.svc.cluster.local (the cluster DNS answers it itself)
DNS_QUERY = (
    b"\x4b\x4c\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
    + b"".join(bytes([len(label)]) + label for label in b"kubernetes.default.svc.cluster.local".split(b"."))
    + b"\x00\x00\x01\x00\x01"
)


def _start_time(pid: int) -> int | None:
    """As runtime.procfs.proc_start (this child imports nothing of ours)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="latin-1") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else int(fields[19])


def _say(result: str, detail: str) -> int:
    print(json.dumps({"result": result, "detail": detail}))
    return 0


def main(argv: list[str]) -> int:
    pid, start, host, port = int(argv[1]), int(argv[2]), argv[3], int(argv[4])
    proto, timeout = argv[5], float(argv[6])
    try:
        ns = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        return _say("error", f"cannot open the pod's network namespace: {e.strerror}")
    if _start_time(pid) != start:  # read after opening: the namespace is that process's
        os.close(ns)
        return _say("error", "the pod's infra container is no longer running")
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(ns, CLONE_NEWNET) != 0:
        return _say("error", f"cannot enter the pod's network namespace: {os.strerror(ctypes.get_errno())}")
    os.close(ns)
    kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
    s = socket.socket(socket.AF_INET, kind)
    s.settimeout(timeout)
    try:
        s.connect((host, port))
        if proto == "udp":
            s.send(DNS_QUERY)
            s.recv(512)
            return _say("open", f"{host}:{port}/UDP answered")
        return _say("open", f"connected to {host}:{port}/TCP")
    except ConnectionRefusedError:
        return _say("refused", f"{host}:{port}/{proto.upper()} refused the connection (nothing listens there)")
    except TimeoutError:
        return _say("timeout", f"no answer from {host}:{port}/{proto.upper()} within {timeout:g} s")
    except OSError as e:
        if e.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return _say("unreachable", f"{host}:{port}/{proto.upper()}: {e.strerror}")
        return _say("error", f"{host}:{port}/{proto.upper()}: {e.strerror or e}")
    finally:
        s.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
