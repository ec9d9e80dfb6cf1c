"""Networks of the engine (moby's ``daemon/network.go``, libnetwork): docker0 and the
user-defined bridges (netns.py does the kernel side), addresses, published ports, the
``hosts`` files names resolve through, legacy links, ``docker network ...``."""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import ipaddress
import random
import re
import secrets
from typing import Any

from runtime import errors
from runtime.dockerapi import netns
from runtime.dockerapi.engine.core import EngineBase, _Container, _write_file
from runtime.dockerapi.images.store import Forbidden, Network, NotFound
from runtime.kernel.clock import micro_ts

PORT_RANGE = (32768, 60999)


BRIDGE_ID = hashlib.sha256(b"kubelab-docker-bridge").hexdigest()


# the predefined networks: name -> (driver, id); only bridge (and none) can be used
BUILTIN_NETWORKS = {
    "bridge": ("bridge", BRIDGE_ID),
    "host": ("host", hashlib.sha256(b"kubelab-docker-host").hexdigest()),
    "none": ("null", hashlib.sha256(b"kubelab-docker-none").hexdigest()),
}


BRIDGE_OPTIONS = {
    "com.docker.network.bridge.default_bridge": "true",
    "com.docker.network.bridge.enable_icc": "true",
    "com.docker.network.bridge.enable_ip_masquerade": "true",
    "com.docker.network.bridge.name": netns.BRIDGE,
    "com.docker.network.driver.mtu": "1500",
}


class Networks(EngineBase):
    def _ensure_net(self, bridge: netns.Bridge = netns.DEFAULT) -> None:
        with self._net_lock:
            if bridge.name not in self._ready_bridges:
                netns.ensure_bridge(self.ctx.pid, bridge, place=self.place)
                self._ready_bridges.add(bridge.name)
                self._net_ready = True

    @staticmethod
    def _bridge(net: Network) -> netns.Bridge:
        return netns.Bridge(
            netns.bridge_name(net.id), ipaddress.IPv4Network(net.subnet), net.gateway, internal=net.internal
        )

    def _bridges(self) -> builtins.list[netns.Bridge]:
        """Every network's bridge, the default one first (the nft table's masquerade/isolation)."""
        return [netns.DEFAULT, *(self._bridge(n) for n in self.store.networks())]

    def _bridge_of(self, c: _Container, network_id: str | None = None) -> netns.Bridge:
        """The bridge of the container's network (``network_id``: one it was connected to);
        NotFound once that network was removed."""
        nid = c.network_id if network_id is None else network_id
        if not nid:
            return netns.DEFAULT
        for n in self.store.networks():
            if n.id == nid:
                return self._bridge(n)
        raise NotFound(f"network {c.host_config.get('NetworkMode') if network_id is None else nid} not found")

    def _net_ips(self, c: _Container) -> dict[str, str]:
        """network id ("" = default bridge) -> the container's address there (while it runs)."""
        ips = {c.network_id: c.ip}
        ips.update({nid: str(ep.get("ip") or "") for nid, ep in c.extra_networks.items()})
        return ips

    def _allocate_ip(self, c: _Container, network_id: str, index: int, bridge: netns.Bridge) -> tuple[int, str]:
        """(index, address) for ``c`` on a network: ``index`` kept unless another running
        container of that network holds it (call with _lock)."""
        used: set[int] = set()
        for o in self._containers.values():
            if o.id == c.id or not (o.running or o.status == "starting"):
                continue
            if o.network_id == network_id:
                used.add(o.ip_index)
            if network_id in o.extra_networks:
                used.add(int(o.extra_networks[network_id].get("ip_index", -1)))
        if index < 0 or index in used:
            index = next(i for i in range(len(used) + 1) if i not in used)
        try:
            return index, netns.address(index, bridge.subnet, bridge.gateway)
        except ValueError as exc:
            raise errors.Conflict(str(exc)) from None

    def _endpoint_config(self, body: dict[str, Any], mode: str) -> tuple[str, builtins.list[str]]:
        """(network id, aliases) for ``create``: NetworkMode resolved, --network-alias checked."""
        endpoints = (body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}
        if not isinstance(endpoints, dict):
            raise errors.BadRequest("NetworkingConfig.EndpointsConfig must be a JSON object")
        aliases = [str(a) for ep in endpoints.values() for a in ((ep or {}).get("Aliases") or [])]
        if mode in ("default", "bridge", "none"):
            if aliases:
                raise errors.BadRequest(
                    "network-scoped alias is supported only for containers in user defined networks"
                )
            return "", []
        net = self._find_network(mode)
        if not isinstance(net, Network):
            raise Forbidden(f"--network={mode} is not available in this lab")
        return net.id, aliases

    def _endpoint_echo(self, body: dict[str, Any], mode: str) -> dict[str, Any]:
        """The EndpointConfig given for the container's network, as inspect echoes it:
        ``DriverOpts`` (kept, as the bridge driver keeps them), ``LinkLocalIPs`` (added to its
        interface), ``Links`` (``container:alias``: the alias resolves in this container,
        user-defined networks only), ``MacAddress`` (its interface's). ``IPAMConfig`` (a fixed
        address) is refused: addresses are allocated."""
        endpoints = (body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}
        eps = [ep for ep in endpoints.values() if isinstance(ep, dict)]
        if len(eps) > 1:
            raise errors.BadRequest(
                "Container cannot be connected to network endpoints: only one network can be given at create "
                "(docker network connect adds more)"
            )
        ep = eps[0] if eps else {}
        out: dict[str, Any] = {}
        ipam = ep.get("IPAMConfig") or {}
        if ipam.get("IPv4Address") or ipam.get("IPv6Address"):
            raise Forbidden(
                "--ip/--ip6 are not available in this lab: a container's address is allocated from its network's "
                "subnet (docker inspect shows it)"
            )
        lls = [str(x) for x in ipam.get("LinkLocalIPs") or ep.get("LinkLocalIPs") or []]
        for ip in lls:
            try:
                if not ipaddress.IPv4Address(ip).is_link_local:
                    raise ValueError
            except ValueError:
                raise errors.BadRequest(f"invalid link-local IP address: {ip}") from None
        if lls:
            out["LinkLocalIPs"] = lls
        opts = ep.get("DriverOpts") or {}
        if not isinstance(opts, dict):
            raise errors.BadRequest("DriverOpts must be a JSON object")
        if opts:
            out["DriverOpts"] = {str(k): str(v) for k, v in opts.items()}
        legacy = [str(x) for x in (body.get("HostConfig") or {}).get("Links") or []]
        links = [str(x) for x in ep.get("Links") or []]
        if mode in ("default", "bridge", "none"):
            if links and sorted(links) != sorted(legacy):
                raise Forbidden(
                    "links in an endpoint config are for user-defined networks; on the default bridge use "
                    "--link (HostConfig.Links), a legacy link"
                )
            links = []  # the default bridge's links are the legacy ones (HostConfig.Links, create)
        else:
            links = links or legacy
        if links:
            for link in links:
                target = link.split(":")[0].lstrip("/")
                self._get(target)  # NotFound as dockerd: the container must exist
            out["Links"] = links
        if ep.get("MacAddress"):
            out["MacAddress"] = str(ep["MacAddress"])
        return out

    def _hosts_text(self, c: _Container) -> str:
        """The container's /etc/hosts: itself (by hostname; on a user-defined network also by
        name, aliases and short id), and on a user-defined network every other running
        container of that network by name, aliases and short id (call with _lock)."""
        text = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        extra = ""
        for entry in c.host_config.get("ExtraHosts") or []:  # --add-host, after the engine's own lines
            name, _, ip = entry.partition(":")
            extra += f"{netns.GATEWAY if ip == 'host-gateway' else ip.strip('[]')}\t{name}\n"
        if c.host_config.get("NetworkMode") == "none":
            return text + extra
        mine = self._net_ips(c)
        for nid, ip in mine.items():
            if not ip:
                continue
            if not nid:  # the default bridge: no names but the container's own hostname and its links
                text += f"{ip}\t{c.config['Hostname']}\n"
                for _full, alias, child in self._links_of(c):
                    if child is not None and child.running and child.ip:
                        names = dict.fromkeys([alias, child.config["Hostname"], child.name])
                        text += f"{child.ip}\t{' '.join(names)}\n"
                continue
            aliases = c.aliases if nid == c.network_id else c.extra_networks[nid].get("aliases") or []
            own = dict.fromkeys([c.config["Hostname"], c.name, *aliases, c.id[:12]])
            text += f"{ip}\t{' '.join(own)}\n"
        for o in sorted(self._containers.values(), key=lambda o: o.ip_index):
            if o.id == c.id or not o.running:
                continue
            for nid, ip in self._net_ips(o).items():
                if nid and nid in mine and ip:
                    aliases = o.aliases if nid == o.network_id else o.extra_networks[nid].get("aliases") or []
                    names = dict.fromkeys([o.name, *aliases, o.id[:12]])
                    text += f"{ip}\t{' '.join(names)}\n"
        for link in c.endpoint.get("Links") or []:  # user-defined network links: this container's view
            target, _, alias = link.partition(":")
            t = next((x for x in self._containers.values() if x.name == target.lstrip("/") or x.id == target), None)
            tip = self._net_ips(t).get(c.network_id) if t is not None and t.running else None
            if tip and alias:
                text += f"{tip}\t{alias.rpartition('/')[2]}\n"
        return text + extra

    def _write_hosts(self, c: _Container) -> None:
        with self._net_lock:
            with self._lock:
                text = self._hosts_text(c)
            with contextlib.suppress(FileNotFoundError):
                _write_file(self._dir(c.id) / "hosts", text, self.ctx.uid_base)

    def _refresh_hosts(self, *network_ids: str) -> None:
        """Rewrite (in place) the hosts file of every running container of these networks
        (the default bridge's, "", have no names to update)."""
        wanted = {n for n in network_ids if n}
        if not wanted:
            return
        with self._lock:
            members = [o for o in self._containers.values() if o.running and wanted & set(self._net_ips(o))]
        for o in members:
            self._write_hosts(o)

    def _allocate_ports(self, c: _Container) -> dict[str, list[dict[str, str]] | None]:
        """Host ports for the container's bindings (PortBindings, -P); Conflict if taken."""
        hc = c.host_config
        taken: set[tuple[str, int]] = set()
        for o in self._containers.values():
            if o.id != c.id and (o.running or o.status == "starting"):
                for port, binds in (o.ports or {}).items():
                    for b in binds or []:
                        taken.add((port.split("/")[1], int(b["HostPort"])))
        listening = {p: netns.listening(self.ctx.pid, p) for p in ("tcp", "udp")}
        result: dict[str, list[dict[str, str]] | None] = {}
        wanted: dict[str, list[dict[str, str]]] = {}
        for port, binds in (hc.get("PortBindings") or {}).items():
            key = port if "/" in port else f"{port}/tcp"
            wanted[key] = list(binds or [{"HostIp": "", "HostPort": ""}])
        if hc.get("PublishAllPorts"):
            for port in c.config.get("ExposedPorts") or {}:
                wanted.setdefault(port, [{"HostIp": "", "HostPort": ""}])
        for port in c.config.get("ExposedPorts") or {}:
            result[port] = None
        for port, binds in wanted.items():
            proto = port.split("/")[1] if "/" in port else "tcp"
            if proto not in ("tcp", "udp"):
                raise errors.BadRequest(f"invalid proto: {proto}")
            out = []
            for b in binds:
                host_ip = str(b.get("HostIp") or "") or netns.ANY
                host_port_s = str(b.get("HostPort") or "")
                if host_port_s:
                    lo, _, hi = host_port_s.partition("-")
                    candidates = list(range(int(lo), int(hi or lo) + 1))
                else:
                    candidates = []
                if not candidates:
                    free = [
                        p
                        for p in range(PORT_RANGE[0], PORT_RANGE[1])
                        if (proto, p) not in taken and p not in listening[proto]
                    ]
                    if not free:
                        raise errors.Conflict("no free host port left to publish on")
                    candidates = [random.choice(free)]  # noqa: S311
                chosen = None
                for p in candidates:
                    if not 1 <= p <= 65535:
                        raise errors.BadRequest(f"invalid port {p}")
                    if (proto, p) not in taken and p not in listening[proto]:
                        chosen = p
                        break
                if chosen is None:
                    raise errors.Conflict(
                        f"driver failed programming external connectivity on endpoint {c.name} ({c.id}): "
                        f"Bind for {host_ip}:{candidates[0]} failed: port is already allocated"
                    )
                taken.add((proto, chosen))
                out.append({"HostIp": host_ip, "HostPort": str(chosen)})
            result[port] = out
        return result

    def _apply_ports(self) -> None:
        """Rewrite the DNAT table from the running containers (never call with _lock held)."""
        with self._net_lock:
            rules = []
            with self._lock:
                for c in self._containers.values():
                    if not c.running:
                        continue
                    for port, binds in (c.ports or {}).items():
                        num, _, proto = port.partition("/")
                        for b in binds or []:
                            rules.append(
                                netns.PortRule(b["HostIp"], int(b["HostPort"]), proto or "tcp", c.ip, int(num))
                            )
            bridges = self._bridges()
            if (rules, bridges) == self._applied_rules:  # nothing changed (most starts and exits): no nft run
                return
            if rules or self._net_ready:
                self._ensure_net()
                netns.apply_ports(self.ctx.pid, rules, bridges, place=self.place)
            self._applied_rules = (rules, bridges)

    def _legacy_links(self, links: Any, name: str) -> builtins.list[str]:
        """HostConfig.Links normalised as dockerd stores them ("/child:/parent/alias"); each
        child must exist and be on the default bridge (call with _lock)."""
        if not isinstance(links, list):
            raise errors.BadRequest("Links must be a list of strings")
        out = []
        for link in links:
            child_ref, _, alias = str(link).partition(":")
            alias = (alias or child_ref).rpartition("/")[2]
            if not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", alias):
                raise errors.BadRequest(f"invalid link alias: {link!r}")
            try:
                child = self._containers[self.resolve(child_ref.lstrip("/"))]
            except NotFound:
                raise NotFound(f"could not get container for {child_ref.lstrip('/')}") from None
            if child.network_id or str(child.host_config.get("NetworkMode")) not in ("default", "bridge"):
                raise errors.BadRequest(f"Cannot link to /{child.name}, as it does not belong to the default network")
            out.append(f"/{child.name}:/{name}/{alias}")
        return out

    def _links_of(self, c: _Container) -> builtins.list[tuple[str, str, _Container | None]]:
        """(link name "/parent/alias", alias, child or None) of a container's legacy links."""
        out = []
        for link in c.host_config.get("Links") or []:
            child_name, _, full = str(link).partition(":")
            child = next((x for x in self._containers.values() if "/" + x.name == child_name), None)
            out.append((full, full.rpartition("/")[2], child))
        return out

    def _check_links(self, c: _Container) -> None:
        """At start, as dockerd: every linked container must be running."""
        with self._lock:
            for link in c.host_config.get("Links") or []:
                child_name, _, full = str(link).partition(":")
                child = next((x for x in self._containers.values() if "/" + x.name == child_name), None)
                if child is None or not child.running:
                    raise errors.Conflict(f"Cannot link to a non running container: {child_name} AS {full}")

    def _link_env(self, c: _Container) -> builtins.list[str]:
        env: builtins.list[str] = []
        with self._lock:
            for full, alias, child in self._links_of(c):
                if child is None or not child.running or not child.ip:
                    continue
                prefix = alias.upper().replace("-", "_")
                ports = sorted(
                    (str(p).partition("/")[0], (str(p).partition("/")[2] or "tcp"))
                    for p in (child.config.get("ExposedPorts") or {})
                )
                ports.sort(key=lambda p: (int(p[0]) if p[0].isdigit() else 0, p[1] != "tcp"))
                if ports:
                    port, proto = ports[0]
                    env.append(f"{prefix}_PORT={proto}://{child.ip}:{port}")
                for port, proto in ports:
                    key = f"{prefix}_PORT_{port}_{proto.upper()}"
                    env += [
                        f"{key}={proto}://{child.ip}:{port}",
                        f"{key}_ADDR={child.ip}",
                        f"{key}_PORT={port}",
                        f"{key}_PROTO={proto}",
                    ]
                env.append(f"{prefix}_NAME={full}")
                for item in child.config.get("Env") or []:
                    k, sep, v = str(item).partition("=")
                    if sep and k not in ("HOME", "PATH"):
                        env.append(f"{prefix}_ENV_{k}={v}")
        return env

    def remove_link(self, name: str) -> None:
        """``DELETE /containers/{/parent/alias}?link=1`` (moby ``daemon.rmLink``): only legacy
        links (the default bridge's ``--link``) are registered under such a name, as in
        dockerd; any other name answers dockerd's 404, a container's own name its conflict.
        A running parent's /etc/hosts loses the link's names at once."""
        full = "/" + name.lstrip("/")
        parent, _, alias = full.rpartition("/")
        if not parent:
            self._get(name)  # dockerd: the container must exist, then this
            raise errors.RuntimeError("Conflict, cannot remove the default link name of the container")
        found: _Container | None = None
        with self._lock:
            p = next((x for x in self._containers.values() if "/" + x.name == parent), None)
            if p is not None and str(p.host_config.get("NetworkMode") or "default") in ("default", "bridge"):
                links = [str(x) for x in p.host_config.get("Links") or []]
                kept = [x for x in links if (x.partition(":")[2] or x.partition(":")[0]).rpartition("/")[2] != alias]
                if len(kept) != len(links):
                    p.host_config["Links"] = kept or None
                    self._save(p)
                    found = p
        if found is None:
            raise NotFound(f"No such container: {name}")
        if found.running:
            self._write_hosts(found)

    def _find_network(self, ref: str) -> Network | str:
        """A user-defined network, or the name of a predefined one, by name, id or id prefix."""
        nets = self.store.networks()
        for name in BUILTIN_NETWORKS:
            if ref in (name, BUILTIN_NETWORKS[name][1]):
                return name
        for n in nets:
            if ref in (n.name, n.id):
                return n
        if len(ref) >= 2 and re.fullmatch(r"[0-9a-f]+", ref):
            found: builtins.list[Network | str] = [n for n in nets if n.id.startswith(ref)]
            found += [name for name, (_, nid) in BUILTIN_NETWORKS.items() if nid.startswith(ref)]
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise errors.BadRequest(f"network {ref} is ambiguous ({len(found)} matches found based on ID prefix)")
        raise NotFound(f"network {ref} not found")

    def _network_members(self, net: Network | str) -> builtins.list[tuple[_Container, str]]:
        """Running containers attached to a network, with their address there (call with _lock)."""
        out = []
        for c in self._containers.values():
            if not c.running:
                continue
            mode = str(c.host_config.get("NetworkMode") or "default")
            if isinstance(net, Network):
                ip = self._net_ips(c).get(net.id)
                if ip is not None:
                    out.append((c, ip))
            elif not c.network_id and {"bridge": mode in ("default", "bridge")}.get(net, mode == net):
                out.append((c, c.ip))
        return sorted(out, key=lambda m: tuple(int(b) for b in m[1].split(".")) if m[1] else ())

    def _network_json(self, net: Network | str, *, containers: bool) -> dict[str, Any]:
        if isinstance(net, Network):
            name, nid, driver, created = net.name, net.id, "bridge", net.created
            ipam = [{"Subnet": net.subnet, "Gateway": net.gateway}]
            options = dict(net.options)
            internal, labels, prefix = net.internal, dict(net.labels), ipaddress.IPv4Network(net.subnet).prefixlen
        else:
            name, (driver, nid) = net, BUILTIN_NETWORKS[net]
            created, internal, labels, prefix = "2024-01-01T00:00:00Z", False, {}, netns.SUBNET.prefixlen
            ipam = [{"Subnet": str(netns.SUBNET), "Gateway": netns.GATEWAY}] if net == "bridge" else []
            options = BRIDGE_OPTIONS if net == "bridge" else {}
        members: dict[str, Any] = {}
        if containers:
            with self._lock:
                for c, ip in self._network_members(net):
                    members[c.id] = {
                        "Name": c.name,
                        "EndpointID": c.id,
                        "MacAddress": (
                            str(c.endpoint.get("MacAddress") or "")
                            if (c.network_id == net.id if isinstance(net, Network) else not c.network_id)
                            else ""
                        )
                        or (netns.mac_address(ip) if net != "host" and ip else ""),
                        "IPv4Address": f"{ip}/{prefix}" if net not in ("host", "none") else "",
                        "IPv6Address": "",
                    }
        return {
            "Name": name,
            "Id": nid,
            "Created": created,
            "Scope": "local",
            "Driver": driver,
            "EnableIPv6": False,
            "IPAM": {"Driver": "default", "Options": None if ipam or name != "bridge" else {}, "Config": ipam},
            "Internal": internal,
            "Attachable": False,
            "Ingress": False,
            "ConfigFrom": {"Network": ""},
            "ConfigOnly": False,
            "Containers": members,
            "Options": options,
            "Labels": labels,
        }

    def networks(self, filters: dict[str, builtins.list[str]] | None = None) -> builtins.list[dict[str, Any]]:
        """``GET /networks``: the predefined networks and the user-defined ones."""
        filters = filters or {}
        out = []
        every: builtins.list[Network | str] = [*BUILTIN_NETWORKS, *self.store.networks()]
        for net in every:
            j = self._network_json(net, containers=False)
            if "name" in filters and not any(f in j["Name"] for f in filters["name"]):
                continue
            if "id" in filters and not any(j["Id"].startswith(f) for f in filters["id"]):
                continue
            if "driver" in filters and j["Driver"] not in filters["driver"]:
                continue
            if "type" in filters and ("custom" if isinstance(net, Network) else "builtin") not in filters["type"]:
                continue
            if "label" in filters:
                labels = j["Labels"]
                wanted = [f.partition("=") for f in filters["label"]]
                if not all(k in labels and (not sep or labels[k] == v) for k, sep, v in wanted):
                    continue
            out.append(j)
        return out

    def network_inspect(self, ref: str) -> dict[str, Any]:
        return self._network_json(self._find_network(ref), containers=True)

    def _pick_subnet(
        self, taken: builtins.list[ipaddress.IPv4Network]
    ) -> tuple[ipaddress.IPv4Network, ipaddress.IPv4Address]:
        """Docker's default pools: 172.18.0.0/16 ... 172.31.0.0/16, then 192.168.N.0/20."""
        pools = [ipaddress.IPv4Network(f"172.{b}.0.0/16") for b in range(18, 32)]
        pools += [ipaddress.IPv4Network(f"192.168.{b}.0/20") for b in range(0, 256, 16)]
        for pool in pools:
            if not any(pool.overlaps(t) for t in taken):
                return pool, pool.network_address + 1
        raise Forbidden(
            "could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network"
        )

    def network_create(self, body: dict[str, Any], *, internal: bool = False) -> dict[str, str]:
        """``docker network create``: a bridge network (Docker's checks and messages).
        ``internal``: the platform's own request (the kubelet's pod network, 10.244.0.0/24),
        whose subnet may lie outside the ranges students may pick."""
        name = str(body.get("Name") or "")
        if not name:
            raise errors.BadRequest("network name cannot be empty")
        if not name.strip():  # dockerd (libnetwork's IsValidName): any name that is not blank
            raise errors.BadRequest(f"invalid name: {name!r}")
        driver = str(body.get("Driver") or "bridge")
        if driver != "bridge":
            raise Forbidden(
                f'network driver "{driver}" is not available in this lab: only bridge networks can be created '
                "(they live inside your sandbox's network namespace; host, macvlan, ipvlan and overlay networks "
                "need the host's network or a swarm)"
            )
        if body.get("EnableIPv6"):
            raise errors.BadRequest("IPv6 networks are not available in this lab")
        ipam = body.get("IPAM") or {}
        configs = [c for c in (ipam.get("Config") or []) if c]
        if str(ipam.get("Driver") or "default") != "default":
            raise Forbidden(f'IPAM driver "{ipam["Driver"]}" is not available in this lab: use the default one')
        if len(configs) > 1:
            raise errors.BadRequest("only one IPv4 subnet per network is supported in this lab")
        cfg = configs[0] if configs else {}
        with self._net_lock:
            if name in BUILTIN_NETWORKS or any(n.name == name for n in self.store.networks()):
                raise errors.Conflict(f"network with name {name} already exists")
            taken = [netns.SUBNET, *(ipaddress.IPv4Network(n.subnet) for n in self.store.networks())]
            taken.append(ipaddress.IPv4Network(f"{self.ctx.ip}/32"))
            if cfg.get("Subnet"):
                try:
                    subnet = ipaddress.IPv4Network(str(cfg["Subnet"]), strict=False)
                except ValueError:
                    raise errors.BadRequest(f"invalid CIDR address: {cfg['Subnet']}") from None
                private = (ipaddress.IPv4Network("172.16.0.0/12"), ipaddress.IPv4Network("192.168.0.0/16"))
                if (not internal and not any(subnet.subnet_of(p) for p in private)) or subnet.prefixlen > 30:
                    raise Forbidden(
                        f"subnet {subnet} is not available in this lab: a network's subnet must lie inside "
                        "172.16.0.0/12 or 192.168.0.0/16 and hold at least 2 addresses (/30 or larger)"
                    )
                if any(subnet.overlaps(t) for t in taken):
                    raise Forbidden("Pool overlaps with other one on this address space")
                gateway = subnet.network_address + 1
                if cfg.get("Gateway"):
                    try:
                        gateway = ipaddress.IPv4Address(str(cfg["Gateway"]))
                    except ValueError:
                        raise errors.BadRequest(f"invalid gateway address: {cfg['Gateway']}") from None
                    if gateway not in subnet or gateway in (subnet.network_address, subnet.broadcast_address):
                        raise errors.BadRequest(f"no matching subnet for gateway {gateway}")
            elif cfg.get("Gateway") or cfg.get("IPRange"):
                raise errors.BadRequest("--gateway and --ip-range need a --subnet")
            else:
                subnet, gateway = self._pick_subnet(taken)
            if cfg.get("IPRange"):
                raise errors.BadRequest("--ip-range is not supported in this lab: addresses come from the whole subnet")
            labels = {str(k): str(v) for k, v in (body.get("Labels") or {}).items()}
            options = {str(k): str(v) for k, v in (body.get("Options") or {}).items()}
            net = Network(
                id=secrets.token_hex(32),
                name=name,
                subnet=str(subnet),
                gateway=str(gateway),
                created=micro_ts(),
                internal=bool(body.get("Internal")),
                labels=tuple(sorted(labels.items())),
                options=tuple(sorted(options.items())),
            )
            self.store.add_network(net)
        return {"Id": net.id, "Warning": ""}

    def network_remove(self, ref: str) -> None:
        net = self._find_network(ref)
        if not isinstance(net, Network):
            raise Forbidden(f"{net} is a pre-defined network and cannot be removed")
        with self._net_lock:
            with self._lock:
                if self._network_members(net) or any(
                    c.status == "starting" and c.network_id == net.id for c in self._containers.values()
                ):
                    raise Forbidden(
                        f"error while removing network: network {net.name} id {net.id} has active endpoints"
                    )
                for c in self._containers.values():  # stopped ones `network connect`ed to it forget it
                    if c.extra_networks.pop(net.id, None) is not None:
                        self._save(c)
            self.store.remove_network(net.id)
            bridge = netns.bridge_name(net.id)
            # made by this Engine or an earlier one, or never
            netns.remove_bridge(self.ctx.pid, bridge, place=self.place)
            self._ready_bridges.discard(bridge)
        with contextlib.suppress(errors.RuntimeError):
            self._apply_ports()

    def network_connect(self, ref: str, container: str, body: dict[str, Any]) -> None:
        """``docker network connect``: one more interface (``eth<n>``) on a user-defined network;
        a running container gets it at once, a stopped one when it starts."""
        net = self._find_network(ref)
        if not isinstance(net, Network):
            raise Forbidden(
                f"connecting containers to the {net} network is not available in this lab: connect them to a "
                "network you create (docker network create)"
            )
        c = self._get(container)
        endpoint = body.get("EndpointConfig") or {}
        if not isinstance(endpoint, dict):
            raise errors.BadRequest("EndpointConfig must be a JSON object")
        aliases = [str(a) for a in endpoint.get("Aliases") or []]
        ipam = endpoint.get("IPAMConfig") or {}
        unsupported = [k for k in ("Links", "DriverOpts", "MacAddress", "LinkLocalIPs") if endpoint.get(k)]
        unsupported += [k for k in ("IPv4Address", "IPv6Address", "LinkLocalIPs") if ipam.get(k)]
        if unsupported:
            raise Forbidden(
                f"{', '.join(unsupported)} at docker network connect are not available in this lab: aliases are; "
                "give a container's MAC address, link-local addresses and links when you create it"
            )
        bridge = self._bridge(net)
        with self._net_lock:
            with self._lock:
                if c.host_config.get("NetworkMode") == "none":
                    raise Forbidden(
                        "container cannot be connected to multiple networks with one of the networks in private "
                        "(none) mode"
                    )
                if c.network_id == net.id or net.id in c.extra_networks:
                    raise Forbidden(f"endpoint with name {c.name} already exists in network {net.name}")
                taken = {int(ep["if"]) for ep in c.extra_networks.values()}
                ep: dict[str, Any] = {"if": next(i for i in range(1, len(taken) + 2) if i not in taken)}
                ep.update(aliases=aliases, ip_index=-1, ip="")
                running = c.running
                if running:
                    ep["ip_index"], ep["ip"] = self._allocate_ip(c, net.id, -1, bridge)
                c.extra_networks[net.id] = ep
                self._save(c)
            if running:
                try:
                    self._ensure_net(bridge)
                    netns.attach(self.ctx.pid, c.pid, c.id, ep["ip"], bridge, index=int(ep["if"]), place=self.place)
                except BaseException:
                    with self._lock:
                        c.extra_networks.pop(net.id, None)
                        self._save(c)
                    netns.detach(self.ctx.pid, c.id, int(ep["if"]), place=self.place)
                    raise
        if running:
            self._apply_ports()
            self._refresh_hosts(c.network_id, net.id)

    def network_disconnect(self, ref: str, container: str) -> None:
        """``docker network disconnect``: remove an interface ``network connect`` added."""
        net = self._find_network(ref)
        c = self._get(container)
        if not isinstance(net, Network) or c.network_id == net.id:
            name = net if isinstance(net, str) else net.name
            if isinstance(net, Network) or (name == "bridge" and not c.network_id):
                raise Forbidden(
                    f"disconnecting {c.name} from {name}, the network it was created on, is not available in this "
                    "lab: remove the container and run it again with --network"
                )
            raise Forbidden(f"container {c.id} is not connected to network {name}")
        with self._net_lock:
            with self._lock:
                ep = c.extra_networks.pop(net.id, None)
                if ep is None:
                    raise Forbidden(f"container {c.id} is not connected to network {net.name}")
                self._save(c)
                running = c.running
            if running:
                netns.detach(self.ctx.pid, c.id, int(ep["if"]), place=self.place)
        if running:
            self._refresh_hosts(c.network_id, net.id)

    def network_prune(self) -> dict[str, Any]:
        deleted: builtins.list[str] = []
        for net in self.store.networks():
            with contextlib.suppress(errors.RuntimeError):
                self.network_remove(net.id)
                deleted.append(net.name)
        return {"NetworksDeleted": deleted or None}
