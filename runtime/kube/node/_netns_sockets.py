"""Helper child: TCP sockets made inside another network namespace, handed back over a unix socket.

Run by node/kubelet.py through ``runtime.kernel.children.helper_argv`` (in the sandbox's cgroup,
``runtime.sandbox.cgexec.Placement``), never imported by the daemon (kernel work happens in a
child process, CONVENTIONS #10). A socket keeps the namespace it was created in, so the helper
setns(2)es into the namespace, makes ``AF_INET``/``SOCK_STREAM`` sockets there and sends each
over the unix socket ``CHAN_FD`` (SCM_RIGHTS, message ``b"s"``); the kubelet connects them.

``python -m runtime.kube.node._netns_sockets pod NS_FD CHAN_FD``
    the namespace is the descriptor ``NS_FD`` (the pod's, opened by the kubelet): one socket,
    then exit (port-forward).
``python -m runtime.kube.node._netns_sockets sandbox PID CHAN_FD``
    the namespace is ``/proc/PID/ns/net`` (the sandbox's init): one socket per byte received
    on ``CHAN_FD``, until it is closed (httpGet/tcpSocket probes).
"""

from __future__ import annotations

import ctypes
import os
import socket
import sys

CLONE_NEWNET = 0x40000000


def _setns(ns_fd: int) -> None:
    if ctypes.CDLL(None, use_errno=True).setns(ns_fd, CLONE_NEWNET) != 0:
        sys.exit("setns: " + os.strerror(ctypes.get_errno()))


def _send_socket(chan: socket.socket) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    socket.send_fds(chan, [b"s"], [s.fileno()])
    s.close()


def main(argv: list[str]) -> int:
    if len(argv) != 4 or argv[1] not in ("pod", "sandbox"):
        sys.stderr.write("usage: _netns_sockets pod NS_FD CHAN_FD | sandbox PID CHAN_FD\n")
        return 2
    mode, target, chan_fd = argv[1], int(argv[2]), int(argv[3])
    chan = socket.socket(fileno=chan_fd)
    if mode == "pod":
        _setns(target)
        _send_socket(chan)
        return 0
    ns = os.open(f"/proc/{target}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    _setns(ns)
    while chan.recv(1):
        _send_socket(chan)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
