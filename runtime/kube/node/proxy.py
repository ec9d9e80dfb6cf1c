"""kube-proxy (nftables mode) for one sandbox's lab cluster.

Services of the sandbox's cluster are made real *inside the sandbox's network namespace*
(never the host's): one nftables table ``ip kubelab-kube`` there, rendered from the
cluster's Services, EndpointSlices and Pods and rewritten atomically (``nft -f`` with
``delete table`` first, like netns.py's ``kubelab-docker``) whenever the rendered text
changes. ``Proxy.sync`` is called after every kubelet sync (node/kubelet.py ``after_sync``: on
every cluster write, container exit or due timer, in the kubelet's thread), so nft never runs on the
API server's loop; an unchanged ruleset costs one render and a string compare.

The rules, as kube-proxy's nftables mode has them:

* ``services`` (jumped to from ``prerouting`` for pods, from ``output`` for the sandbox's
  own terminal): ``ClusterIP:port`` and ``NodePort`` on every local address of the
  sandbox (``fib daddr type local``: its eth0 address, 127.0.0.1 — netns.py already set
  ``route_localnet``) jump to the service port's chain, which picks a ready endpoint with
  ``numgen random mod N vmap`` (or with ``sessionAffinity: ClientIP`` always the same
  one per client: ``jhash ip saddr mod N``) and DNATs to it. ``targetPort`` by name is
  resolved per endpoint from its pod's container ports (pods of one Service may number
  their ports differently), by number as is.
* ``postrouting``: connections we DNATed towards the pod network from a pod or from
  127.0.0.1 are masqueraded to the pod bridge's gateway. All pods share one bridge: without
  it the server's reply would go pod to pod at L2 and the client, which talked to the
  ClusterIP, would drop it (hairpin included).
* ``reject`` (filter, before the engine's own forward isolation): a Service port with no
  ready endpoint answers at once, TCP with a reset and UDP with ICMP port-unreachable, as
  kube-proxy does; and the cluster DNS address (node/dns.py, 10.96.0.10 on the sandbox's
  ``lo``) is not answered to anything arriving from outside the sandbox (its ``eth0``).
* The ``kubernetes`` Service (10.96.0.1:443) reaches the API server: the sandbox's listener
  is 127.0.0.1:6443 (service.py), so it is DNATed there — from the pod bridge only in
  ``prerouting`` (``route_localnet`` on that bridge lets a pod's packet be delivered to
  127.0.0.1) and from the sandbox itself in ``output``. Nothing from outside the sandbox
  can use it. That listener serves the cluster without the ``/clusters/<name>`` prefix too,
  so a pod's in-cluster config (``https://10.96.0.1:443``) works.
* kube-dns's ClusterIP (10.96.0.10) is served by node/dns.py on the address itself: no DNAT.

Not done: ``externalTrafficPolicy``/``internalTrafficPolicy`` (all endpoints are local:
one node), LoadBalancer ingress IPs, ``externalIPs``, session affinity timeouts.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from typing import TYPE_CHECKING, Any

from runtime import errors
from runtime.dockerapi import netns
from runtime.kernel.netns import run as netns_run
from runtime.kube.meta import Obj

if TYPE_CHECKING:
    from runtime.dockerapi.engine import Engine
    from runtime.kube.node.kubelet import ClusterHost

log = logging.getLogger("runtime.kube.node.proxy")


TABLE = "kubelab-kube"
POD_SUBNET = "10.244.0.0/24"
POD_NETWORK = "kube-pods"
API_SERVICE_IP = "10.96.0.1"
API_SERVICE_PORT = 443
API_LISTENER = ("127.0.0.1", 6443)
DNS_IP = "10.96.0.10"
SANDBOX_UPLINK = "eth0"  # the sandbox's own interface towards the host (runtime/sandbox/network.py)
SLICE_SERVICE_NAME = "kubernetes.io/service-name"


def _port_of(pod: Obj | None, target: Any, proto: str) -> int | None:
    """A Service port's targetPort for one endpoint: a number as is, a name looked up in the
    pod's container ports (None: that pod does not declare it)."""
    if isinstance(target, int) or (isinstance(target, str) and target.isdigit()):
        return int(target)
    for c in ((pod or {}).get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("name") == target and p.get("protocol", "TCP") == proto:
                return int(p["containerPort"])
    return None


def _ipv4(value: Any) -> str | None:
    """``value`` as the IPv4 address it spells, or None. The script is nft syntax run as root
    in the host's mount namespace: only what parsed as an address is written into it."""
    try:
        return str(ipaddress.IPv4Address(str(value)))
    except ValueError:
        return None


def render(services: list[Obj], slices: list[Obj], pods: list[Obj], pod_bridge: str | None) -> str:
    """The whole ``nft -f`` script for the cluster's state (deterministic: equal states give
    equal text, which is how ``Proxy.sync`` knows nothing changed)."""
    pods_by = {(p["metadata"]["namespace"], p["metadata"]["name"]): p for p in pods}
    slices_by: dict[tuple[str, str], list[Obj]] = {}
    for sl in slices:
        name = (sl["metadata"].get("labels") or {}).get(SLICE_SERVICE_NAME)
        if name:
            slices_by.setdefault((sl["metadata"]["namespace"], name), []).append(sl)
    dispatch: list[str] = []
    reject: list[str] = []
    chains: list[str] = []
    for svc in sorted(services, key=lambda s: (s["metadata"]["namespace"], s["metadata"]["name"])):
        meta, spec = svc["metadata"], svc.get("spec") or {}
        ip = _ipv4(spec.get("clusterIP"))  # None also for "" and headless "None"
        if spec.get("type") == "ExternalName" or ip in (None, API_SERVICE_IP, DNS_IP):
            continue
        affinity = spec.get("sessionAffinity") == "ClientIP"
        for sp in spec.get("ports") or []:
            proto = str(sp.get("protocol", "TCP"))
            if proto not in ("TCP", "UDP"):
                continue
            l4 = proto.lower()
            target = sp.get("targetPort", sp.get("port"))
            ends: list[tuple[str, int]] = []
            for sl in slices_by.get((meta["namespace"], meta["name"]), []):
                sport = next(
                    (
                        p.get("port")
                        for p in sl.get("ports") or []
                        if p.get("name", "") == sp.get("name", "") and p.get("protocol", "TCP") == proto
                    ),
                    None,
                )
                for ep in sl.get("endpoints") or []:
                    cond = ep.get("conditions") or {}
                    if not cond.get("ready") or cond.get("terminating"):
                        continue
                    ref = ep.get("targetRef") or {}
                    pod = pods_by.get((str(ref.get("namespace", "")), str(ref.get("name", ""))))
                    port = _port_of(pod, target, proto) if pod is not None else sport
                    if port is None:
                        continue
                    ends.extend((a, int(port)) for a in map(_ipv4, ep.get("addresses") or []) if a is not None)
            ends = sorted(set(ends), key=lambda e: (ipaddress.IPv4Address(e[0]), e[1]))
            matches = [f"ip daddr {ip} {l4} dport {int(sp['port'])}"]
            if sp.get("nodePort") and spec.get("type") in ("NodePort", "LoadBalancer"):
                matches.append(f"fib daddr type local {l4} dport {int(sp['nodePort'])}")
            if not ends:
                verdict = "reject with tcp reset" if l4 == "tcp" else "reject"
                reject.extend(f"{m} {verdict}" for m in matches)
                continue
            chain = f"svc-{len(chains)}"
            dispatch.extend(f"{m} jump {chain}" for m in matches)
            pick = "jhash ip saddr mod" if affinity else "numgen random mod"
            vmap = ", ".join(f"{i} : goto {chain}-{i}" for i in range(len(ends)))
            body = [f"  chain {chain} {{\n    {pick} {len(ends)} vmap {{ {vmap} }}\n  }}\n"]
            body += [
                f"  chain {chain}-{i} {{\n    meta l4proto {l4} dnat to {a}:{p}\n  }}\n"
                for i, (a, p) in enumerate(ends)
            ]
            chains.append("".join(body))
    api = f"ip daddr {API_SERVICE_IP} tcp dport {API_SERVICE_PORT} dnat to {API_LISTENER[0]}:{API_LISTENER[1]}"
    pre = [f'iifname "{pod_bridge}" {api}'] if pod_bridge else []
    dns_guard = f'iifname "{SANDBOX_UPLINK}" ip daddr {DNS_IP} drop'
    return (
        f"table ip {TABLE}\ndelete table ip {TABLE}\n"
        f"table ip {TABLE} {{\n"
        "  chain prerouting {\n    type nat hook prerouting priority dstnat; policy accept;\n"
        + "".join(f"    {r}\n" for r in pre)
        + "    jump services\n  }\n"
        "  chain output {\n    type nat hook output priority -100; policy accept;\n"
        f"    {api}\n    jump services\n  }}\n"
        "  chain services {\n" + "".join(f"    {r}\n" for r in dispatch) + "  }\n"
        "  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n"
        f"    ct status dnat ip daddr {POD_SUBNET} ip saddr {{ {POD_SUBNET}, 127.0.0.0/8 }} masquerade\n  }}\n"
        "  chain no-endpoints {\n" + "".join(f"    {r}\n" for r in reject) + "  }\n"
        "  chain filter-input {\n    type filter hook input priority -10; policy accept;\n"
        f"    {dns_guard}\n    jump no-endpoints\n  }}\n"
        + "".join(
            f"  chain filter-{hook} {{\n    type filter hook {hook} priority -10; policy accept;\n"
            "    jump no-endpoints\n  }\n"
            for hook in ("forward", "output")
        )
        + "".join(chains)
        + "}\n"
    )


class Proxy:
    """The kube-proxy of one sandbox: ``sync`` renders and (when changed) applies the table."""

    def __init__(self, host: ClusterHost, engine: Engine) -> None:
        self.host = host
        self.engine = engine
        self.pid = engine.ctx.pid
        self._last = ""
        self._lock = threading.Lock()

    def _pod_bridge(self) -> str | None:
        for n in self.engine.networks():
            if n["Name"] == POD_NETWORK:
                return netns.bridge_name(str(n["Id"]))
        return None

    def sync(self) -> None:
        """Bring the table in line with the cluster (a no-op when nothing changed)."""
        with self._lock:
            services = self.host.list_all("services")
            slices = self.host.list_all("endpointslices.discovery.k8s.io")
            named = any(
                isinstance(p.get("targetPort"), str) and not str(p["targetPort"]).isdigit()
                for svc in services
                for p in (svc.get("spec") or {}).get("ports") or []
            )
            pods = self.host.list_all("pods") if named else []  # only named targetPorts need them
            script = render(services, slices, pods, self._pod_bridge())
            if script == self._last:
                return
            self._last = script  # a failed ruleset is logged once, retried when the state changes
            try:
                netns_run(self.pid, ["nft", "-f", "-"], script)
            except errors.RuntimeError as e:
                log.warning("kube-proxy of sandbox pid %d: rules not applied: %s", self.pid, e)
