"""The netns listener helper (_netns_listen.py) in a real network namespace: one helper child
gives lo cluster DNS's address and opens the API listener and DNS's sockets (issue #13: one
Python start-up per sandbox start instead of two, and no ``nsenter ip`` runs)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator

import pytest

from runtime import errors
from runtime.kube.node import dns
from runtime.kube.service import DNS_SOCKETS, open_listeners_in_netns

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare(1)"
)


@pytest.fixture
def netns_pid() -> Iterator[int]:
    """A process alone in a fresh network namespace (lo up, nothing else), like a sandbox's."""
    proc = subprocess.Popen(
        ["unshare", "--net", "sh", "-c", "ip link set lo up && echo up && exec sleep 60"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "up"
        yield proc.pid
    finally:
        proc.kill()
        proc.wait(10)


def lo_addresses(pid: int) -> str:
    out = subprocess.run(
        ["nsenter", f"--net=/proc/{pid}/ns/net", "ip", "-o", "-4", "addr", "show", "dev", "lo"],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    return out.stdout


def test_one_helper_adds_the_dns_address_and_opens_every_socket(netns_pid: int) -> None:
    assert f" {dns.DNS_IP}/32 " not in lo_addresses(netns_pid)
    specs = [("127.0.0.1", 6443, "tcp"), *DNS_SOCKETS]
    socks = open_listeners_in_netns(netns_pid, specs, (dns.DNS_IP,))
    try:
        assert f" {dns.DNS_IP}/32 " in lo_addresses(netns_pid)
        assert [(s.type, s.getsockname()[:2]) for s in socks[:3]] == [
            (socket.SOCK_STREAM, ("127.0.0.1", 6443)),
            (socket.SOCK_DGRAM, (dns.DNS_IP, 53)),
            (socket.SOCK_STREAM, (dns.DNS_IP, 53)),
        ]
        assert socks[3].type == socket.SOCK_DGRAM and socks[3].getsockname()[1] != 0
        # the sockets live in the sandbox's namespace, not the host's: a datagram sent from
        # inside it to 10.96.0.10:53 reaches the DNS socket the daemon holds
        probe = subprocess.run(
            [
                *("nsenter", f"--net=/proc/{netns_pid}/ns/net", "python3", "-c"),
                f"import socket as s; s.socket(s.AF_INET, s.SOCK_DGRAM).sendto(b'ping', ('{dns.DNS_IP}', 53))",
            ],
            timeout=10,
        )
        assert probe.returncode == 0
        socks[1].settimeout(5)
        assert socks[1].recv(16) == b"ping"
    finally:
        for s in socks:
            s.close()


def test_the_address_is_added_once_and_a_second_run_is_a_no_op(netns_pid: int) -> None:
    for _ in range(2):
        for s in open_listeners_in_netns(netns_pid, list(DNS_SOCKETS), (dns.DNS_IP,)):
            s.close()
    assert lo_addresses(netns_pid).count(f" {dns.DNS_IP}/32 ") == 1


def test_a_socket_it_cannot_bind_fails_the_helper_with_the_reason(netns_pid: int) -> None:
    held = open_listeners_in_netns(netns_pid, [("127.0.0.1", 6443, "tcp")])
    try:
        with pytest.raises(errors.RuntimeError, match=re.escape("cannot listen on 127.0.0.1:6443")):
            open_listeners_in_netns(netns_pid, [("127.0.0.1", 6443, "tcp"), *DNS_SOCKETS], (dns.DNS_IP,))
    finally:
        for s in held:
            s.close()


def test_a_bad_address_is_refused_with_the_reason(netns_pid: int) -> None:
    with pytest.raises(errors.RuntimeError, match="cannot add not-an-ip/32 to lo"):
        open_listeners_in_netns(netns_pid, [("127.0.0.1", 0, "tcp")], ("not-an-ip",))
    assert "not-an-ip" not in lo_addresses(netns_pid)
