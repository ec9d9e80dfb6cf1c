"""The engine's network, all of it inside the *sandbox's* network namespace.

Docker's default bridge, rebuilt per sandbox: ``docker0`` 172.17.0.1/16 lives in the
sandbox's netns (created lazily with ``nsenter --net=/proc/<sandbox pid>/ns/net ip``), and
each container gets a veth pair: ``kdv<id12>`` on docker0, ``eth0`` (172.17.0.N/16, default
route via 172.17.0.1) in the netns runc made for it (owned by the sandbox's user namespace).
Nothing here touches the host's namespaces: host root only *enters* the sandbox's.

Published ports are nftables DNAT rules in the sandbox's netns, in one table
``ip kubelab-docker`` that is rewritten as a whole (atomically, ``nft -f``) from the
engine's list of running containers whenever one starts or stops:

* ``prerouting``: traffic for a local address of the sandbox (its eth0 address, or from
  another container towards the sandbox's address) on a published port;
* ``output``: the sandbox's own connections (``curl localhost:8080`` in a terminal);
  ``route_localnet=1`` lets 127.0.0.1-sourced packets leave towards docker0, and the
  ``postrouting`` masquerade rewrites their source to 172.17.0.1;
* ``postrouting``: containers' traffic leaving through the sandbox's eth0 is masqueraded
  to the sandbox's own address, so the host's rules for the sandbox apply unchanged.

``ip_forward=1`` is set in the sandbox's netns only (sysctls under ``net.`` are per netns).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from runtime.sandbox._proc import run

BRIDGE = "docker0"
SUBNET = ipaddress.IPv4Network("172.17.0.0/16")
GATEWAY = "172.17.0.1"
TABLE = "kubelab-docker"
ANY = "0.0.0.0"  # noqa: S104 - Docker's "all addresses" HostIp (of the sandbox's netns)


@dataclass(frozen=True)
class PortRule:
    host_ip: str  # "0.0.0.0" = every local address of the sandbox
    host_port: int
    proto: str  # "tcp" | "udp"
    ip: str  # the container's address
    port: int


def _in_ns(pid: int, argv: list[str], script: str | None = None, *, check: bool = True) -> str:
    cp = run(
        ["nsenter", f"--net=/proc/{pid}/ns/net", *argv],
        input=script.encode() if script is not None else None,
        check=check,
    )
    return cp.stdout.decode(errors="replace")


def veth_name(cid: str) -> str:
    return f"kdv{cid[:12]}"


def address(index: int) -> str:
    """172.17.0.N for allocation index ``index`` (0 -> .2; .1 is the gateway)."""
    return str(SUBNET.network_address + 2 + index)


def ensure_bridge(sandbox_pid: int) -> None:
    """docker0, forwarding and route_localnet in the sandbox's netns (idempotent)."""
    links = _in_ns(sandbox_pid, ["ip", "-o", "link", "show"])
    if f": {BRIDGE}:" not in links:
        _in_ns(
            sandbox_pid,
            ["ip", "-batch", "-"],
            f"link add {BRIDGE} type bridge\n"
            f"addr add {GATEWAY}/{SUBNET.prefixlen} dev {BRIDGE}\n"
            f"link set {BRIDGE} up\n",
        )
    _in_ns(
        sandbox_pid,
        [
            "sysctl",
            "-q",
            "-w",
            "net.ipv4.ip_forward=1",
            "net.ipv4.conf.all.route_localnet=1",
            f"net.ipv4.conf.{BRIDGE}.route_localnet=1",
        ],
    )


def attach(sandbox_pid: int, container_pid: int, cid: str, ip: str) -> None:
    """Wire the netns of ``container_pid`` to docker0 as eth0 with ``ip``."""
    veth = veth_name(cid)
    _in_ns(
        sandbox_pid,
        ["ip", "-batch", "-"],
        f"link add {veth} type veth peer name eth0 netns {container_pid}\n"
        f"link set {veth} master {BRIDGE}\nlink set {veth} up\n",
    )
    _in_ns(
        container_pid,
        ["ip", "-batch", "-"],
        f"link set lo up\naddr add {ip}/{SUBNET.prefixlen} dev eth0\n"
        f"link set eth0 up\nroute add default via {GATEWAY}\n",
    )


def detach(sandbox_pid: int, cid: str) -> None:
    """Remove a container's veth (gone already when its netns died; idempotent)."""
    _in_ns(sandbox_pid, ["ip", "link", "del", veth_name(cid)], check=False)


def apply_ports(sandbox_pid: int, rules: Iterable[PortRule]) -> None:
    """Rewrite the DNAT table from ``rules`` (all running containers' published ports)."""
    dnat: list[str] = []
    for r in rules:
        everywhere = r.host_ip in (ANY, "")
        match = "fib daddr type local" if everywhere else f"ip daddr {r.host_ip}"
        dnat.append(f"{match} {r.proto} dport {r.host_port} dnat to {r.ip}:{r.port}")
    body = "\n".join(f"    {d}" for d in dnat)
    script = (
        f"table ip {TABLE}\ndelete table ip {TABLE}\n"
        f"table ip {TABLE} {{\n"
        "  chain prerouting {\n    type nat hook prerouting priority dstnat; policy accept;\n"
        f"{body}\n  }}\n"
        "  chain output {\n    type nat hook output priority -100; policy accept;\n"
        f"{body}\n  }}\n"
        "  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n"
        f'    ip saddr 127.0.0.0/8 oifname "{BRIDGE}" masquerade\n'
        f'    ip saddr {SUBNET} oifname != "{BRIDGE}" masquerade\n'
        "  }\n}\n"
    )
    _in_ns(sandbox_pid, ["nft", "-f", "-"], script)


def remove_table(sandbox_pid: int) -> None:
    _in_ns(sandbox_pid, ["nft", "delete", "table", "ip", TABLE], check=False)


def listening(sandbox_pid: int, proto: str) -> set[int]:
    """Ports something in the sandbox's netns is bound to (``/proc/<pid>/net/{tcp,udp}``)."""
    ports: set[int] = set()
    for name in (proto, proto + "6"):
        try:
            with open(f"/proc/{sandbox_pid}/net/{name}") as fh:
                next(fh, None)
                for line in fh:
                    fields = line.split()
                    if len(fields) < 4:
                        continue
                    if proto == "tcp" and fields[3] != "0A":  # LISTEN
                        continue
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
        except OSError:
            continue
    return ports
