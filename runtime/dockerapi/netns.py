"""The engine's networks, all of them inside the *sandbox's* network namespace.

Docker's bridges, rebuilt per sandbox. The default bridge ``docker0`` is 172.17.0.1/16;
each user-defined network (``docker network create``) is a bridge ``br-<id12>`` with its
own subnet (172.18.0.0/16, 172.19.0.0/16, ... as Docker allocates them) and gateway .1.
A bridge is created lazily (the first container that needs it) with ``nsenter
--net=/proc/<sandbox pid>/ns/net ip``, and each container gets a veth pair: ``kdv<id12>``
on its network's bridge, ``eth0`` (an address of that subnet, a MAC derived from it as
Docker does, default route via the gateway) in the netns runc made for it (owned by the
sandbox's user namespace); ``docker network connect`` adds ``kx<n><id12>``/``eth<n>``
pairs on other networks' bridges (no default route). Nothing here touches the host's namespaces: host root only
*enters* the sandbox's.

All filtering and NAT is one nftables table ``ip kubelab-docker`` in the sandbox's netns,
rewritten as a whole (atomically, ``nft -f``) from the engine's networks and running
containers whenever one of them changes:

* ``prerouting`` (DNAT): traffic for a local address of the sandbox (its eth0 address, or
  from a container towards the sandbox's address) on a published port;
* ``output`` (DNAT): the sandbox's own connections (``curl localhost:8080`` in a
  terminal); ``route_localnet=1`` lets 127.0.0.1-sourced packets leave towards a bridge,
  and ``postrouting`` masquerades their source to the bridge's gateway;
* ``postrouting``: containers' traffic leaving their network (through the sandbox's eth0,
  or published ports reached from another network) is masqueraded, so the host's rules for
  the sandbox apply unchanged and replies come back through the sandbox;
* ``forward`` (Docker's network isolation): traffic from one engine bridge to another is
  dropped, unless it is a connection to a published port (``ct status dnat``); an
  ``--internal`` network's traffic never leaves its bridge.

``ip_forward=1`` is set in the sandbox's netns only (sysctls under ``net.`` are per netns).

Every ``nsenter`` runs through the engine's ``Placement`` (``place``): in the sandbox's
cgroup, so the work a student's containers cause counts against that sandbox's limits
(runtime/sandbox/cgexec.py). Without one (tests, tools) it runs where the caller runs.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from runtime import errors
from runtime.kernel.netns import run as netns_run
from runtime.sandbox.cgexec import Placement

BRIDGE = "docker0"
SUBNET = ipaddress.IPv4Network("172.17.0.0/16")
GATEWAY = "172.17.0.1"
TABLE = "kubelab-docker"
ANY = "0.0.0.0"  # noqa: S104 - Docker's "all addresses" HostIp (of the sandbox's netns)


@dataclass(frozen=True)
class Bridge:
    """One engine network as the kernel sees it."""

    name: str  # docker0 | br-<id12>
    subnet: ipaddress.IPv4Network
    gateway: str
    internal: bool = False


DEFAULT = Bridge(BRIDGE, SUBNET, GATEWAY)


@dataclass(frozen=True)
class PortRule:
    host_ip: str  # "0.0.0.0" = every local address of the sandbox
    host_port: int
    proto: str  # "tcp" | "udp"
    ip: str  # the container's address
    port: int


def check_port_bindings(bindings: object) -> None:
    """``HostConfig.PortBindings`` as dockerd's ``validatePortBindings`` checks it at create
    (errors.BadRequest, its words), before anything is expanded or written: the host ports
    and addresses become nft rules run as root (``apply_ports``), so only a port, a bounded
    ``lo-hi`` range and an IPv4 address get through."""
    if not bindings:
        return
    if not isinstance(bindings, dict):
        raise errors.BadRequest("invalid port bindings: an object of port -> bindings is expected")
    for key, binds in bindings.items():
        port, _, proto = str(key).partition("/")
        if not _port_range(port, single=True) or proto not in ("", "tcp", "udp", "sctp"):
            raise errors.BadRequest(f"invalid port specification: {port!r}")
        for b in binds or []:
            if not isinstance(b, dict):
                raise errors.BadRequest(f"invalid port binding for {key}: {b!r}")
            host_port = str(b.get("HostPort") or "")
            if host_port and not _port_range(host_port):
                raise errors.BadRequest(f"invalid port specification: {host_port!r}")
            host_ip = str(b.get("HostIp") or "")
            if host_ip and not _ipv4(host_ip):
                raise errors.BadRequest(
                    f"invalid IP address: {host_ip!r} (this engine publishes on IPv4 addresses of the sandbox)"
                )


def _port_range(text: str, *, single: bool = False) -> bool:
    """``N`` or ``N-M`` with 0 <= N <= M <= 65535 (moby's nat.ParsePortRange); ``single``: no range."""
    lo, sep, hi = text.partition("-")
    if sep and single:
        return False
    parts = [lo, hi] if sep else [lo]
    if not all(p.isascii() and p.isdigit() and len(p) <= 5 for p in parts):
        return False
    nums = [int(p) for p in parts]
    return nums[-1] <= 65535 and nums[0] <= nums[-1]


def _ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def veth_name(cid: str, index: int = 0) -> str:
    """The host side of a container's ``eth<index>``: ``kdv<id12>`` for eth0, ``kx<n><id12>``
    for the networks ``docker network connect`` adds (15 characters at most)."""
    return f"kdv{cid[:12]}" if index == 0 else f"kx{index:x}{cid[:12]}"


def bridge_name(network_id: str) -> str:
    return f"br-{network_id[:12]}"


def address(index: int, subnet: ipaddress.IPv4Network = SUBNET, gateway: str = GATEWAY) -> str:
    """The address of allocation index ``index`` in ``subnet``: hosts in order, skipping
    the gateway (172.17.0.N: 0 -> .2 when the gateway is .1). ``ValueError`` past the end."""
    addr = subnet.network_address + 1 + index
    if addr >= ipaddress.IPv4Address(gateway):
        addr += 1
    if addr >= subnet.broadcast_address:
        raise ValueError(f"no available IPv4 addresses on this network's address pools: {subnet}")
    return str(addr)


def mac_address(ip: str) -> str:
    """Docker's MAC for an IPv4 address: 02:42 followed by the address's four bytes."""
    return "02:42:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(ip).packed)


def ensure_bridge(sandbox_pid: int, bridge: Bridge = DEFAULT, *, place: Placement | None = None) -> None:
    """The bridge with its gateway address, forwarding and route_localnet (idempotent)."""
    links = netns_run(sandbox_pid, ["ip", "-o", "link", "show"], place=place)
    if f": {bridge.name}:" not in links:
        netns_run(
            sandbox_pid,
            ["ip", "-batch", "-"],
            f"link add {bridge.name} type bridge\n"
            f"addr add {bridge.gateway}/{bridge.subnet.prefixlen} dev {bridge.name}\n"
            f"link set {bridge.name} up\n",
            place=place,
        )
    netns_run(
        sandbox_pid,
        [
            "sysctl",
            "-q",
            "-w",
            "net.ipv4.ip_forward=1",
            "net.ipv4.conf.all.route_localnet=1",
            f"net.ipv4.conf.{bridge.name}.route_localnet=1",
        ],
        place=place,
    )


def remove_bridge(sandbox_pid: int, name: str, *, place: Placement | None = None) -> None:
    """Delete a bridge (absent already: nothing to do)."""
    netns_run(sandbox_pid, ["ip", "link", "del", name], check=False, place=place)


def links(sandbox_pid: int, *, place: Placement | None = None) -> set[str]:
    """Names of the network interfaces in the sandbox's netns."""
    out = netns_run(sandbox_pid, ["ip", "-o", "link", "show"], place=place)
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if line.count(":") >= 2}


def attach(
    sandbox_pid: int,
    container_pid: int,
    cid: str,
    ip: str,
    bridge: Bridge = DEFAULT,
    index: int = 0,
    *,
    mac: str = "",
    link_local: tuple[str, ...] = (),
    place: Placement | None = None,
) -> None:
    """Wire the netns of ``container_pid`` to ``bridge`` as ``eth<index>`` with ``ip``; eth0
    carries the default route, the others only their subnet's (as Docker does). ``mac``
    replaces Docker's address-derived MAC; ``link_local`` addresses (169.254.0.0/16) are
    added to the interface (``--mac-address``, ``--link-local-ip``: addresses are data,
    checked by the engine before they get here)."""
    veth, ifname = veth_name(cid, index), f"eth{index}"
    netns_run(
        sandbox_pid,
        ["ip", "-batch", "-"],
        f"link add {veth} type veth peer name {ifname} netns {container_pid}\n"
        f"link set {veth} master {bridge.name}\nlink set {veth} up\n",
        place=place,
    )
    route = f"route add default via {bridge.gateway}\n" if index == 0 else ""
    netns_run(
        container_pid,
        ["ip", "-batch", "-"],
        f"link set lo up\nlink set {ifname} address {mac or mac_address(ip)}\n"
        f"addr add {ip}/{bridge.subnet.prefixlen} dev {ifname}\n"
        + "".join(f"addr add {ipaddress.IPv4Address(a)}/16 dev {ifname}\n" for a in link_local)
        + f"link set {ifname} up\n{route}",
        place=place,
    )


def detach(sandbox_pid: int, cid: str, index: int = 0, *, place: Placement | None = None) -> None:
    """Remove a container's veth (gone already when its netns died; idempotent)."""
    netns_run(sandbox_pid, ["ip", "link", "del", veth_name(cid, index)], check=False, place=place)


def apply_ports(
    sandbox_pid: int,
    rules: Iterable[PortRule],
    bridges: Iterable[Bridge] = (DEFAULT,),
    *,
    place: Placement | None = None,
) -> None:
    """Rewrite the table from ``rules`` (all running containers' published ports) and
    ``bridges`` (every engine network: masquerade and isolation)."""
    nets = list(bridges)
    dnat: list[str] = []
    for r in rules:
        if r.host_ip not in (ANY, "") and not _ipv4(r.host_ip):  # stored before create checked it
            raise errors.BadRequest(f"invalid IP address: {r.host_ip!r}")
        everywhere = r.host_ip in (ANY, "")
        match = "fib daddr type local" if everywhere else f"ip daddr {r.host_ip}"
        dnat.append(f"{match} {r.proto} dport {r.host_port} dnat to {r.ip}:{r.port}")
    body = "\n".join(f"    {d}" for d in dnat)
    names = ", ".join(f'"{b.name}"' for b in nets)
    post: list[str] = []
    internal: list[str] = []  # first: nothing crosses an internal network's bridge, published ports neither
    forward = ["ct status dnat accept"]
    for b in nets:
        post.append(f'ip saddr 127.0.0.0/8 oifname "{b.name}" masquerade')
        if b.internal:
            internal.append(f'iifname "{b.name}" oifname != "{b.name}" drop')
            internal.append(f'oifname "{b.name}" iifname != "{b.name}" drop')
        else:
            post.append(f'ip saddr {b.subnet} oifname != "{b.name}" masquerade')
            forward.append(f'iifname "{b.name}" oifname != "{b.name}" oifname {{ {names} }} drop')
    forward = internal + forward
    script = (
        f"table ip {TABLE}\ndelete table ip {TABLE}\n"
        f"table ip {TABLE} {{\n"
        "  chain prerouting {\n    type nat hook prerouting priority dstnat; policy accept;\n"
        f"{body}\n  }}\n"
        "  chain output {\n    type nat hook output priority -100; policy accept;\n"
        f"{body}\n  }}\n"
        "  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n"
        + "".join(f"    {p}\n" for p in post)
        + "  }\n"
        "  chain forward {\n    type filter hook forward priority filter; policy accept;\n"
        + "".join(f"    {f}\n" for f in forward)
        + "  }\n}\n"
    )
    netns_run(sandbox_pid, ["nft", "-f", "-"], script, place=place)


def remove_table(sandbox_pid: int, *, place: Placement | None = None) -> None:
    netns_run(sandbox_pid, ["nft", "delete", "table", "ip", TABLE], check=False, place=place)


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
