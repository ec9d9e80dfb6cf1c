"""Sandbox networking: one bridge, a veth per sandbox, and one nftables table of our own.

Layout (defaults): bridge ``kl0`` with the gateway ``10.77.0.1/16``; each
sandbox's network namespace is created by runc (so it is owned by the
sandbox's user namespace and root inside may configure it and nest more), and
right after ``runc run`` we add a veth pair whose peer is created directly in
that namespace (``ip link add ... peer name eth0 netns <pid>``), enslave the host
end to the bridge, and configure ``eth0`` from the host with
``nsenter --net`` (runtime.kernel.netns): two ``ip -batch`` runs, one ``bridge fdb``, one ``nft -f``;
no per-sandbox daemon. The bridge has a fixed MAC (derived from the gateway
address): a bridge that borrows its lowest port's MAC changes address as
sandboxes come and go, and each change flushes its neighbour table, static
entries included.

Isolation, by layer:

* L2, sandbox to sandbox: every host-side veth is an *isolated* bridge port
  (``bridge_slave isolated on``): isolated ports only talk to non-isolated
  ones, i.e. to the bridge itself, never to each other.
* Spoofing (root inside has CAP_NET_ADMIN over its netns and may change its
  addresses): a per-sandbox ``ingress`` base chain on its host-side veth drops
  IPv4 packets whose Ethernet or IP source is not the sandbox's own, and all
  IPv6 (disabled on the bridge and inside anyway). The inet family's ingress
  hook never sees ARP or other ethertypes, so those are made harmless instead
  of filtered: the host's neighbour entry for each sandbox is static
  (``nud permanent``: a forged ARP cannot redirect the host's traffic for a
  classmate), and bridge ports do not learn (``learning off``) but carry one
  static FDB entry each, so a forged source MAC cannot steal a classmate's
  frames and host-to-sandbox unicast is never flooded to other ports.
* L3, to the host: ``input`` drops everything arriving from our bridges except
  replies to connections the host opened (the daemon probing a sandbox) and
  ICMP echo. That covers every host address (bridge gateway, eth0, ...).
  runtimed's unix socket is out of reach by construction: its path is not in
  the sandbox's mount namespace and abstract sockets are per network namespace.
* L3, sandbox to sandbox through the gateway (a student adding a route via
  the bridge address): ``forward`` drops bridge-to-bridge traffic first, so
  not even an ``allow_outbound`` covering the sandbox subnet opens it.
* L3, outward: ``forward`` drops everything from our bridges unless the
  sandbox's address maps, in the ``outbound`` verdict map, to its own chain
  ``sb-<id>`` that accepts its ``allow_outbound`` CIDRs; ``postrouting``
  masquerades what was accepted. Forwarding is enabled per interface
  (``net.ipv4.conf.<if>.forwarding``) on the bridge and on the route's
  output device for each allowed CIDR, never host-wide.

The table ``inet kubelab`` is (re)asserted idempotently under a lock at every
start; nothing else on the host is touched. A sandbox's rules are its chain,
its map element and its ingress chain, added and deleted in single ``nft -f``
transactions; its static neighbour entry is deleted with them.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
from collections.abc import Iterator
from pathlib import Path

from runtime import errors
from runtime.kernel import netns
from runtime.kernel.proc import run

TABLE = "kubelab"
LOCK = Path("/run/lock/kubelab-runtime-net.lock")

# Idempotent and self-healing: the containers are added if missing, the base chains' rules
# are replaced as a whole, in one transaction. Per-sandbox state lives in the sets, the map
# and the per-sandbox chains, which this never touches.
_BASE = f"""
add table inet {TABLE}
add set inet {TABLE} bridges {{ type ifname; }}
add set inet {TABLE} subnets {{ type ipv4_addr; flags interval; }}
add map inet {TABLE} outbound {{ type ipv4_addr : verdict; }}
add chain inet {TABLE} input {{ type filter hook input priority filter - 10; policy accept; }}
add chain inet {TABLE} forward {{ type filter hook forward priority filter - 10; policy accept; }}
add chain inet {TABLE} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}
flush chain inet {TABLE} input
flush chain inet {TABLE} forward
flush chain inet {TABLE} postrouting
add rule inet {TABLE} input iifname @bridges ct state established,related accept
add rule inet {TABLE} input iifname @bridges icmp type echo-request accept
add rule inet {TABLE} input iifname @bridges counter drop
add rule inet {TABLE} forward oifname @bridges ct state established,related accept
add rule inet {TABLE} forward iifname @bridges oifname @bridges counter drop
add rule inet {TABLE} forward iifname @bridges ip saddr vmap @outbound
add rule inet {TABLE} forward iifname @bridges counter drop
add rule inet {TABLE} forward oifname @bridges counter drop
add rule inet {TABLE} postrouting ip saddr @subnets oifname != @bridges masquerade
"""


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def nft(script: str, *, timeout: float = 10.0) -> None:
    run(["nft", "-f", "-"], input=script.encode(), timeout=timeout)


def _sysctl(key: str, value: str) -> None:
    path = Path("/proc/sys") / key.replace(".", "/")
    with contextlib.suppress(FileNotFoundError):
        if path.read_text().strip() != value:
            path.write_text(value)


def mac_for(ip: str) -> str:
    b = ipaddress.IPv4Address(ip).packed
    return "02:6b:" + ":".join(f"{x:02x}" for x in b)


class Network:
    def __init__(self, subnet: str, bridge: str) -> None:
        net = ipaddress.ip_network(subnet)
        if not isinstance(net, ipaddress.IPv4Network) or net.prefixlen > 29:
            raise errors.BadRequest(f"subnet {subnet!r}: need an IPv4 network of /29 or larger")
        if len(bridge) > 15:
            raise errors.BadRequest(f"bridge name {bridge!r} is longer than 15 characters")
        self.subnet = net
        self.bridge = bridge
        self.gateway = str(net.network_address + 1)

    # host side, once ----------------------------------------------------------------------------

    def ensure(self) -> None:
        """Create the bridge and the nftables table if missing (idempotent, concurrent-safe)."""
        with _locked():
            if not Path(f"/sys/class/net/{self.bridge}").exists():
                run(["ip", "link", "add", self.bridge, "type", "bridge"])
            # A fixed address: a bridge that takes its ports' lowest MAC changes address as
            # sandboxes come and go, and every change flushes its neighbour table, static
            # entries included (the anti-ARP-spoofing entries below).
            mac = mac_for(self.gateway)
            if Path(f"/sys/class/net/{self.bridge}/address").read_text().strip() != mac:
                run(["ip", "link", "set", self.bridge, "address", mac])
            _sysctl(f"net.ipv6.conf.{self.bridge}.disable_ipv6", "1")
            addrs = run(["ip", "-o", "-4", "addr", "show", "dev", self.bridge]).stdout.decode()
            cidr = f"{self.gateway}/{self.subnet.prefixlen}"
            if cidr not in addrs:
                run(["ip", "addr", "add", cidr, "dev", self.bridge])
            run(["ip", "link", "set", self.bridge, "up"])
            _sysctl(f"net.ipv4.conf.{self.bridge}.forwarding", "1")
            script = _BASE
            script += f'add element inet {TABLE} bridges {{ "{self.bridge}" }}\n'
            script += f"add element inet {TABLE} subnets {{ {self.subnet} }}\n"
            nft(script)

    def destroy(self) -> None:
        """Remove this bridge and its set elements (tests; production keeps its bridge)."""
        with _locked():
            with contextlib.suppress(errors.RuntimeError):
                nft(
                    f'delete element inet {TABLE} bridges {{ "{self.bridge}" }}\n'
                    f"delete element inet {TABLE} subnets {{ {self.subnet} }}\n"
                )
            if Path(f"/sys/class/net/{self.bridge}").exists():
                run(["ip", "link", "del", self.bridge])

    # addresses ----------------------------------------------------------------------------------

    def address(self, index: int) -> str:
        """The sandbox address for allocation index ``index`` (0 -> gateway + 1)."""
        ip = self.subnet.network_address + 2 + index
        if ip >= self.subnet.broadcast_address:
            raise errors.LimitExceeded(f"subnet {self.subnet} has no address left")
        return str(ip)

    @property
    def capacity(self) -> int:
        return int(self.subnet.num_addresses) - 3

    # per sandbox --------------------------------------------------------------------------------

    @staticmethod
    def veth(sid: str) -> str:
        return f"klh{sid[:12]}"

    def attach(self, sid: str, pid: int, ip: str, allow_outbound: tuple[str, ...]) -> None:
        """Wire the netns of ``pid`` to the bridge as ``eth0`` with ``ip``; apply its rules."""
        veth, mac = self.veth(sid), mac_for(ip)
        run(
            ["ip", "-batch", "-"],
            input=(
                f"link add {veth} type veth peer name eth0 address {mac} netns {pid}\n"
                f"link set {veth} master {self.bridge}\n"
                f"link set dev {veth} type bridge_slave isolated on learning off\n"
                f"link set {veth} up\n"
                f"neigh replace {ip} lladdr {mac} dev {self.bridge} nud permanent\n"
            ).encode(),
        )
        run(["bridge", "fdb", "replace", mac, "dev", veth, "master", "static"])
        netns.run(
            pid,
            ["ip", "-batch", "-"],
            "link set lo up\n"
            f"addr add {ip}/{self.subnet.prefixlen} dev eth0\n"
            "link set eth0 up\n"
            f"route add default via {self.gateway}\n",
        )
        script = (
            f"add chain inet {TABLE} in-{sid} {{ type filter hook ingress device "
            f'"{veth}" priority -500; policy accept; }}\n'
            f"add rule inet {TABLE} in-{sid} ether saddr != {mac} drop\n"
            f"add rule inet {TABLE} in-{sid} meta protocol ip ip saddr != {ip} drop\n"
            f"add rule inet {TABLE} in-{sid} meta protocol ip6 drop\n"
        )
        if allow_outbound:
            cidrs = ", ".join(str(ipaddress.ip_network(c, strict=False)) for c in allow_outbound)
            script += (
                f"add chain inet {TABLE} sb-{sid}\n"
                f"add rule inet {TABLE} sb-{sid} ip daddr {{ {cidrs} }} accept\n"
                f"add element inet {TABLE} outbound {{ {ip} : jump sb-{sid} }}\n"
            )
            for c in allow_outbound:
                self._enable_forwarding_towards(c)
        nft(script)

    def _enable_forwarding_towards(self, cidr: str) -> None:
        target = str(ipaddress.ip_network(cidr, strict=False).network_address)
        out = run(["ip", "-o", "route", "get", target], check=False).stdout.decode().split()
        if "dev" in out:
            dev = out[out.index("dev") + 1]
            if dev != "lo":
                _sysctl(f"net.ipv4.conf.{dev}.forwarding", "1")

    def detach(self, sid: str, ip: str | None) -> None:
        """Remove a sandbox's rules and veth (idempotent; the netns dies with the sandbox)."""
        listing = run(["nft", "list", "table", "inet", TABLE], check=False).stdout.decode()
        script = ""
        if ip and f"{ip} : jump sb-{sid}" in listing:
            script += f"delete element inet {TABLE} outbound {{ {ip} }}\n"
        if f"chain sb-{sid} " in listing:
            script += f"delete chain inet {TABLE} sb-{sid}\n"
        if f"chain in-{sid} " in listing:
            script += f"delete chain inet {TABLE} in-{sid}\n"
        if script:
            nft(script)
        veth = self.veth(sid)
        if ip:
            run(["ip", "neigh", "del", ip, "dev", self.bridge], check=False)
        if Path(f"/sys/class/net/{veth}").exists():
            run(["ip", "link", "del", veth], check=False)
