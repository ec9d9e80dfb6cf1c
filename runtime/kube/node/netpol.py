"""NetworkPolicy enforcement for one sandbox's lab cluster: the CNI's policy agent.

NetworkPolicies are made real *inside the sandbox's network namespace* (never the host's),
as a CNI with an nftables dataplane does it: one table ``ip kubelab-netpol`` there,
rendered by ``render`` (a pure function of the cluster's NetworkPolicies, Pods and
Namespaces) and loaded atomically (``nft -f`` with ``delete table`` first, as node/proxy.py and
netns.py do) whenever the rendered text changes. ``NetworkPolicyAgent`` syncs in a thread of
its own, woken after every write to the cluster (a policy, a pod's labels or IP, a namespace's
labels: ``Cluster.network_notify``) and after every kubelet sync, so a change is enforced at
once, never queued behind a kubelet sync that is starting containers; an unchanged state costs
one render and a string compare, and a cluster without policies not even that.

Where packets are seen
----------------------
All pods of the node are on one Linux bridge (the engine network ``kube-pods``,
10.244.0.0/24). Bridged frames pass the IPv4 netfilter hooks of that namespace
(``net.bridge.bridge-nf-call-iptables=1``, a per-netns sysctl the agent sets, as kube-proxy
and the bridge CNI plugin require it), so pod-to-pod traffic, direct or through a Service,
meets the ``forward`` hook with connection tracking. A Service's traffic is DNATed in
``prerouting`` (node/proxy.py) before ``forward``, and masqueraded in ``postrouting`` after it, so
the rules see the client pod's address and the *backend* pod's, as kube-proxy + a CNI do.

The rules, as the NetworkPolicy API defines them
------------------------------------------------
* ``ct state established,related accept`` first: replies of allowed connections pass.
* A pod selected by a policy whose ``policyTypes`` has ``Egress`` is egress-isolated: a new
  connection from its address jumps (``ip saddr vmap``) to its chain ``eg-N``; likewise
  ``Ingress`` and ``ip daddr vmap`` to ``in-N``. A pod no policy selects for a direction has
  no chain for it: everything passes. Policies combine additively: a pod's chain holds the
  rules of every policy that selects it, each allowing rule ends in ``return`` (on to the
  other direction's check), and the chain ends in ``drop`` (as Calico and Cilium do: the
  sender sees a time-out, not a refusal).
* A rule is peers times ports. Peers: ``podSelector`` (pods of the policy's namespace),
  ``namespaceSelector`` (every pod of the matching namespaces), both (pods matching the one
  in namespaces matching the other), ``ipBlock`` (``cidr`` with ``except``); no peers
  means any address. Ports: ``protocol`` (TCP, UDP, SCTP; default TCP), ``port`` as a
  number, with ``endPort`` a range, or a *named* port resolved per pod against its
  containers' ``ports`` (the selected pod's for ingress, each destination pod's for egress:
  pods may number a name differently); no ports means every port and protocol (ICMP too).
* ``{}`` selects everything, a missing or empty ``ingress``/``egress`` list allows nothing:
  the default-deny patterns fall out of the above.
* Traffic to and from the node is always allowed (the NetworkPolicy API says so): the
  sandbox's own terminal, kubelet probes, the API server through ``kubernetes``. One
  exception makes the lab behave like a real cluster: the cluster DNS (node/dns.py serves
  10.96.0.10 on the node, where a real cluster runs CoreDNS pods) is treated as a pod of
  ``kube-system`` labelled ``k8s-app: kube-dns`` with ports ``dns`` (53/UDP) and ``dns-tcp``
  (53/TCP), so a default-deny egress policy breaks name resolution until DNS is allowed,
  exactly as students will meet it at work. That traffic is checked in ``input``.

Everything a student wrote is data: addresses go through ``ipaddress``, ports through
``int`` with range checks, protocols through a fixed table, and what does not parse is left
out (the API server validates policies; this is the second line). Pod addresses are taken
only inside the pod network. These rules live in the student's own sandbox netns: whatever
they say, they cannot open what the host's table (runtime/sandbox/network.py) closes.

Proof by traffic
----------------
``probe`` (runtimed's ``POST /v1/sandboxes/{id}/kube/connectivity``, the grader's
``connectivity`` check) makes one connection from inside a pod's network namespace (a helper
child, node/_netns_probe.py, setns()es into the pod's infra container): the packets carry the
pod's address and meet exactly the rules above, and the sandbox boundary besides.

Not done: IPv6 (the pod network is IPv4 only), ``hostNetwork`` pods (refused at admission).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runtime import errors
from runtime.kernel import children, netns
from runtime.kube.machinery.selectors import selector_from_match
from runtime.kube.meta import Obj
from runtime.kube.node.podstate import CONTAINER_NAME, INFRA, POD_NAME, POD_NAMESPACE

if TYPE_CHECKING:
    from runtime.dockerapi.engine import Engine
    from runtime.kube.node.kubelet import ClusterHost

log = logging.getLogger("runtime.kube.node.netpol")


TABLE = "kubelab-netpol"
POD_SUBNET = ipaddress.IPv4Network("10.244.0.0/24")
DNS_IP = "10.96.0.10"
NS_NAME_LABEL = "kubernetes.io/metadata.name"
PROTOCOLS = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}
NETPOLS = "networkpolicies.networking.k8s.io"
MAX_PROBE_TIMEOUT = 10.0
MAX_RULE_BYTES = 512 * 1024
TOO_BIG = (
    f"# kubelab: the NetworkPolicies make more than {MAX_RULE_BYTES // 1024} KiB of rules: "
    "isolated pods are allowed nothing\n"
)
_DNS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")

# The cluster DNS as the pod it stands for (see the module docstring).
DNS_POD: Obj = {
    "metadata": {"namespace": "kube-system", "name": "coredns", "labels": {"k8s-app": "kube-dns"}},
    "spec": {
        "containers": [
            {
                "name": "coredns",
                "ports": [
                    {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                    {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                ],
            }
        ]
    },
    "status": {"podIP": DNS_IP},
}


@dataclass(frozen=True)
class _Pod:
    namespace: str
    name: str
    ip: str
    labels: Mapping[str, str]
    ports: tuple[tuple[str, str, int], ...]  # (name, protocol, number) of its containers' ports
    virtual: bool = False  # the cluster DNS: a destination only


@dataclass
class _Chain:
    name: str
    rules: list[str] = field(default_factory=list)


def _labels(obj: Obj) -> dict[str, str]:
    raw = (obj.get("metadata") or {}).get("labels") or {}
    return {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}


def _selects(selector: Any) -> Callable[[Mapping[str, str]], bool]:
    """A LabelSelector as a predicate on labels; ``{}`` selects everything."""
    if not isinstance(selector, dict):
        return lambda _lb: False
    if not selector.get("matchLabels") and not selector.get("matchExpressions"):
        return lambda _lb: True
    pred = selector_from_match(selector)
    return lambda lb: bool(pred({"metadata": {"labels": dict(lb)}}))


def _pod_ip(pod: Obj) -> str | None:
    status = pod.get("status") or {}
    try:
        ip = ipaddress.IPv4Address(str(status.get("podIP") or ""))
    except ValueError:
        return None
    return str(ip) if ip in POD_SUBNET else None


def _pod(obj: Obj, *, virtual: bool = False) -> _Pod | None:
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    if virtual:
        ip: str | None = str(obj["status"]["podIP"])
    else:
        if spec.get("hostNetwork") or (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return None
        ip = _pod_ip(obj)
    if ip is None:
        return None
    ports: list[tuple[str, str, int]] = []
    for c in spec.get("containers") or []:
        for p in (c.get("ports") or []) if isinstance(c, dict) else []:
            try:
                number = int(p.get("containerPort"))
            except (TypeError, ValueError, AttributeError):
                continue
            if p.get("name") and 0 < number < 65536:
                ports.append((str(p["name"]), str(p.get("protocol") or "TCP"), number))
    return _Pod(str(meta.get("namespace", "")), str(meta.get("name", "")), ip, _labels(obj), tuple(ports), virtual)


def _cidr(raw: Any) -> ipaddress.IPv4Network | None:
    try:
        net = ipaddress.ip_network(str(raw), strict=False)
    except ValueError:
        return None
    return net if isinstance(net, ipaddress.IPv4Network) else None


@dataclass(frozen=True)
class _Peer:
    """One ``from``/``to`` entry: a set of pods, or an address block."""

    pods: tuple[_Pod, ...] = ()
    block: ipaddress.IPv4Network | None = None
    excepts: tuple[ipaddress.IPv4Network, ...] = ()

    def match(self, field_: str) -> str | None:
        """The nft match on ``ip saddr``/``ip daddr`` (None: matches nothing)."""
        if self.block is not None:
            m = f"ip {field_} {self.block}"
            if self.excepts:
                m += f" ip {field_} != {{ {', '.join(str(e) for e in self.excepts)} }}"
            return m
        ips = sorted({p.ip for p in self.pods}, key=ipaddress.IPv4Address)
        return f"ip {field_} {{ {', '.join(ips)} }}" if ips else None

    def contains(self, ip: str) -> bool:
        if self.block is not None:
            a = ipaddress.IPv4Address(ip)
            return a in self.block and not any(a in e for e in self.excepts)
        return any(p.ip == ip for p in self.pods)


@dataclass(frozen=True)
class _Port:
    proto: str  # tcp | udp | sctp
    number: int | None = None  # None: every port of the protocol
    end: int | None = None
    name: str | None = None  # a named port, resolved per pod

    def match(self, number: int | None = None) -> str:
        n = self.number if number is None else number
        if n is None:
            return f"meta l4proto {self.proto}"
        rng = f"{n}-{self.end}" if self.end is not None and self.end > n else str(n)
        return f"meta l4proto {self.proto} th dport {rng}"

    def resolve(self, pod: _Pod) -> int | None:
        proto = self.proto.upper()
        return next((n for name, p, n in pod.ports if name == self.name and p == proto), None)


def _ports(raw: Any) -> list[_Port] | None:
    """A rule's ``ports`` (None: every port; [] after filtering: the rule allows nothing)."""
    if not raw:
        return None
    out: list[_Port] = []
    for p in raw if isinstance(raw, list) else []:
        if not isinstance(p, dict):
            continue
        proto = PROTOCOLS.get(str(p.get("protocol") or "TCP"))
        if proto is None:
            continue
        port = p.get("port")
        if port is None:
            out.append(_Port(proto))
        elif isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
            n = int(port)
            end = p.get("endPort")
            try:
                e = int(end) if end is not None else None
            except (TypeError, ValueError):
                continue
            if 0 < n < 65536 and (e is None or n <= e < 65536):
                out.append(_Port(proto, n, e))
        elif isinstance(port, str) and port and p.get("endPort") is None:
            out.append(_Port(proto, name=port))
    return out


class _Cluster:
    """The state one render looks at: pods by namespace, namespace labels."""

    def __init__(self, pods: Iterable[Obj], namespaces: Iterable[Obj]) -> None:
        self.pods: list[_Pod] = []
        for obj in pods:
            p = _pod(obj)
            if p is not None:
                self.pods.append(p)
        dns = _pod(DNS_POD, virtual=True)
        assert dns is not None
        self.destinations = [*self.pods, dns]
        self.ns_labels: dict[str, dict[str, str]] = {}
        for ns in namespaces:
            name = str((ns.get("metadata") or {}).get("name", ""))
            self.ns_labels[name] = {NS_NAME_LABEL: name, **_labels(ns)}
        self.ns_labels.setdefault("kube-system", {NS_NAME_LABEL: "kube-system"})

    def _ns(self, name: str) -> dict[str, str]:
        return self.ns_labels.get(name, {NS_NAME_LABEL: name})

    def peers(self, raw: Any, policy_ns: str, candidates: list[_Pod]) -> list[_Peer] | None:
        """A rule's ``from``/``to`` (None: any address)."""
        if not raw:
            return None
        out: list[_Peer] = []
        for entry in raw if isinstance(raw, list) else []:
            if not isinstance(entry, dict):
                continue
            block = entry.get("ipBlock")
            if isinstance(block, dict):
                net = _cidr(block.get("cidr"))
                if net is None:
                    continue
                ex = tuple(e for e in (_cidr(x) for x in block.get("except") or []) if e is not None)
                out.append(_Peer(block=net, excepts=ex))
                continue
            # a selector that is null is absent (both are pointers in the API)
            if entry.get("podSelector") is None and entry.get("namespaceSelector") is None:
                continue
            pod_ok = _selects(entry.get("podSelector") if entry.get("podSelector") is not None else {})
            if entry.get("namespaceSelector") is not None:
                ns_sel = _selects(entry.get("namespaceSelector"))
                namespaces = {ns for ns in {p.namespace for p in candidates} if ns_sel(self._ns(ns))}
            else:
                namespaces = {policy_ns}
            out.append(_Peer(pods=tuple(p for p in candidates if p.namespace in namespaces and pod_ok(p.labels))))
        return out


class _TooBig(Exception):
    """The rules would exceed ``MAX_RULE_BYTES``: enforce the isolation, allow nothing."""


class _Budget:
    def __init__(self, size: int) -> None:
        self.left = size

    def take(self, line: str) -> str:
        self.left -= len(line) + 5
        if self.left < 0:
            raise _TooBig
        return line


def _rule_lines(
    peers: list[_Peer] | None,
    ports: list[_Port] | None,
    field_: str,
    dests: list[_Pod],
    target: _Pod | None,
    budget: _Budget,
) -> list[str]:
    """nft rules (ending in ``return``) for one ingress/egress rule.

    ``field_`` is the peer's address (``saddr`` for ingress, ``daddr`` for egress); named
    ports resolve against ``target`` (ingress: the selected pod) or, per destination, against
    the pods of ``dests`` that the peer covers (egress)."""
    out: list[str] = []
    peer_list: list[_Peer | None] = list(peers) if peers is not None else [None]
    port_list: list[_Port | None] = list(ports) if ports is not None else [None]
    for peer in peer_list:
        pm = peer.match(field_) if peer is not None else ""
        if pm is None:
            continue
        for port in port_list:
            if port is None:
                out.append(budget.take(f"{pm} return".strip()))
            elif port.name is None:
                out.append(budget.take(f"{pm} {port.match()} return".strip()))
            elif target is not None:
                n = port.resolve(target)
                if n is not None:
                    out.append(budget.take(f"{pm} {port.match(n)} return".strip()))
            else:
                by_number: dict[int, list[str]] = {}
                for d in dests:
                    if peer is None or peer.contains(d.ip):
                        n = port.resolve(d)
                        if n is not None:
                            by_number.setdefault(n, []).append(d.ip)
                for n, ips in sorted(by_number.items()):
                    addrs = ", ".join(sorted(set(ips), key=ipaddress.IPv4Address))
                    out.append(budget.take(f"ip daddr {{ {addrs} }} {port.match(n)} return"))
    return out


def render(policies: list[Obj], pods: list[Obj], namespaces: list[Obj]) -> str:
    """The whole ``nft -f`` script for the cluster's state (deterministic: equal states give
    equal text, which is how ``NetworkPolicyAgent.sync`` knows nothing changed).

    The rules are bounded (``MAX_RULE_BYTES``: a student's policies are hostile input, and
    peers times ports multiplies): past that, every isolated pod keeps its isolation and is
    allowed nothing (fail closed), and the script says so in a comment (``TOO_BIG``)."""
    cl = _Cluster(pods, namespaces)
    ingress: dict[str, list[str]] = {}  # pod ip -> rules of every policy isolating it
    egress: dict[str, list[str]] = {}
    order = sorted(policies, key=lambda p: (p["metadata"].get("namespace", ""), p["metadata"].get("name", "")))
    work: list[tuple[str, dict[str, Any], list[_Pod], list[str]]] = []
    for pol in order:
        meta, spec = pol.get("metadata") or {}, pol.get("spec") or {}
        if not isinstance(spec, dict):
            continue
        ns = str(meta.get("namespace", ""))
        sel = _selects(spec.get("podSelector") or {})  # not a pointer: null is {}, every pod
        selected = [p for p in cl.pods if p.namespace == ns and sel(p.labels)]
        types = spec.get("policyTypes") or (["Ingress", "Egress"] if "egress" in spec else ["Ingress"])
        for pod in selected:  # isolation first: it holds even when the rules are too many
            if "Ingress" in types:
                ingress.setdefault(pod.ip, [])
            if "Egress" in types:
                egress.setdefault(pod.ip, [])
        if selected:
            work.append((ns, spec, selected, list(types) if isinstance(types, list) else []))
    budget = _Budget(MAX_RULE_BYTES)
    too_big = False
    try:
        for ns, spec, selected, types in work:
            if "Ingress" in types:
                rules = [
                    (cl.peers(r.get("from"), ns, cl.pods), _ports(r.get("ports")))
                    for r in spec.get("ingress") or []
                    if isinstance(r, dict)
                ]
                for pod in selected:
                    for peers, ports in rules:
                        ingress[pod.ip] += _rule_lines(peers, ports, "saddr", [], pod, budget)
            if "Egress" in types:
                lines: list[str] = []  # the same for every selected pod: named ports are the destinations'
                for r in spec.get("egress") or []:
                    if isinstance(r, dict):
                        peers = cl.peers(r.get("to"), ns, cl.destinations)
                        lines += _rule_lines(peers, _ports(r.get("ports")), "daddr", cl.destinations, None, budget)
                for pod in selected:
                    for line in lines:
                        egress[pod.ip].append(budget.take(line))
    except _TooBig:
        too_big = True
        ingress = {ip: [] for ip in ingress}
        egress = {ip: [] for ip in egress}
    chains: list[_Chain] = []
    vmaps: dict[str, list[str]] = {"in": [], "eg": []}
    for kind, table in (("in", ingress), ("eg", egress)):
        for ip in sorted(table, key=ipaddress.IPv4Address):
            chain = _Chain(f"{kind}-{len(chains)}", [*dict.fromkeys(table[ip]), "drop"])
            chains.append(chain)
            vmaps[kind].append(f"{ip} : jump {chain.name}")
    forward = ["ct state established,related accept"]
    if vmaps["eg"]:
        forward.append(f"ip saddr vmap {{ {', '.join(vmaps['eg'])} }}")
    if vmaps["in"]:
        forward.append(f"ip daddr vmap {{ {', '.join(vmaps['in'])} }}")
    inp = ["ct state established,related accept"]
    if vmaps["eg"]:
        inp.append(f"ip daddr {DNS_IP} ip saddr vmap {{ {', '.join(vmaps['eg'])} }}")
    return (
        (TOO_BIG if too_big else "") + f"table ip {TABLE}\ndelete table ip {TABLE}\n"
        f"table ip {TABLE} {{\n"
        "  chain forward {\n    type filter hook forward priority filter - 5; policy accept;\n"
        + "".join(f"    {r}\n" for r in forward)
        + "  }\n"
        "  chain input {\n    type filter hook input priority filter - 5; policy accept;\n"
        + "".join(f"    {r}\n" for r in inp)
        + "  }\n"
        + "".join(f"  chain {c.name} {{\n" + "".join(f"    {r}\n" for r in c.rules) + "  }\n" for c in chains)
        + "}\n"
    )


EMPTY = render([], [], [])


class NetworkPolicyAgent:
    """The policy agent of one sandbox: ``sync`` renders and (when changed) applies the table.

    It runs in a thread of its own, woken by ``notify``: the cluster calls it after every
    write (``Cluster.network_notify``, set by ``start``), and the kubelet after every sync
    (an ``after_sync`` hook, service.py), so a change is enforced at once, never behind a
    kubelet sync that is busy starting containers."""

    RESYNC = 60.0  # seconds: a safety net only, every change wakes the agent
    SPACING = 0.2  # seconds between two syncs: a burst of writes is one render, not hundreds

    def __init__(self, host: ClusterHost, engine: Engine) -> None:
        self.host = host
        self.pid = engine.ctx.pid
        self.place = getattr(engine, "place", None)
        self._last = ""
        self._failed = ""
        self._bridged = False
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, cluster: Any) -> None:
        """Follow ``cluster``'s writes from a thread of this agent's own."""
        cluster.network_notify = self.notify
        self._thread = threading.Thread(target=self._loop, daemon=True, name=f"netpol-{self.pid}")
        self._thread.start()
        self.notify()  # the first sync: rules left by an earlier runtimed are replaced

    def notify(self) -> None:
        self._wake.set()

    def close(self, cluster: Any = None) -> None:
        if cluster is not None and cluster.network_notify == self.notify:
            cluster.network_notify = None
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.RESYNC)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.sync()
            except Exception:
                log.exception("network policy agent of sandbox pid %d: sync failed", self.pid)
            self._stop.wait(self.SPACING)

    def _warn_too_big(self, policies: list[Obj]) -> None:
        """Say so where the student looks (``kubectl describe networkpolicy``, ``get events``):
        a Warning on the largest policies (a few: events are bounded per cluster too)."""
        biggest = sorted(policies, key=lambda p: len(json.dumps(p.get("spec"), default=str)), reverse=True)[:3]
        message = (
            f"the NetworkPolicies of this cluster make more than {MAX_RULE_BYTES // 1024} KiB of firewall "
            "rules (peers times ports); until they are fewer, every pod they select is allowed no traffic"
        )
        cluster = self.host.cluster

        def do() -> None:
            for pol in biggest:
                cluster.controllers.event(pol, "Warning", "TooManyRules", message, "network-policy-agent")

        try:
            self.host.call(do)
        except Exception:  # the warning is a courtesy: the rules are enforced (closed) anyway
            log.exception("network policies of sandbox pid %d: no warning event", self.pid)

    def sync(self) -> None:
        """Bring the table in line with the cluster (a no-op when nothing changed)."""
        with self._lock:
            policies = self.host.list_all(NETPOLS)
            # no policies: an empty table (independent of pods), so no pod list is needed
            script = (
                render(policies, self.host.list_all("pods"), self.host.list_all("namespaces")) if policies else EMPTY
            )
            if script == self._last:
                return
            if script.startswith(TOO_BIG):
                log.warning("network policies of sandbox pid %d: too many rules, isolated pods get none", self.pid)
                self._warn_too_big(policies)
            try:
                if policies and not self._bridged:
                    # per netns: bridged pod-to-pod frames meet the IPv4 hooks (see the docstring)
                    netns.run(
                        self.pid, ["sysctl", "-q", "-w", "net.bridge.bridge-nf-call-iptables=1"], place=self.place
                    )
                    self._bridged = True
                netns.run(self.pid, ["nft", "-f", "-"], script, place=self.place)
            except errors.RuntimeError as e:
                # tried again at the next wake-up; said once per state
                if script != self._failed:
                    log.warning("network policies of sandbox pid %d: rules not applied: %s", self.pid, e)
                self._failed = script
                return
            self._last = script


def probe(engine: Engine, namespace: str, pod: str, host: str, port: int, protocol: str, timeout: float) -> Obj:
    """One connection from pod ``namespace/pod`` to ``host:port`` (see node/_netns_probe.py):
    ``{"result": "open"|"refused"|"timeout"|"unreachable"|"error", "detail": str}``.
    Every argument is checked here: a name is looked up as a label value, never used as a path."""
    for what, value in (("namespace", namespace), ("pod", pod)):
        if not isinstance(value, str) or not _DNS_NAME.match(value):
            raise errors.BadRequest(f"{what} must be a Kubernetes object name, not {value!r}")
    try:
        addr = ipaddress.IPv4Address(host)
    except ValueError:
        raise errors.BadRequest(f"host must be an IPv4 address, not {host!r}") from None
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise errors.BadRequest(f"port must be 1 to 65535, not {port!r}")
    if protocol not in ("TCP", "UDP"):
        raise errors.BadRequest(f"protocol must be TCP or UDP, not {protocol!r}")
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= MAX_PROBE_TIMEOUT:
        raise errors.BadRequest(f"timeout must be more than 0 and at most {MAX_PROBE_TIMEOUT:g} seconds")
    labels = [f"{POD_NAMESPACE}={namespace}", f"{POD_NAME}={pod}", f"{CONTAINER_NAME}={INFRA}"]
    found = engine.list(filters={"label": labels})  # running containers only
    pid = start = 0
    for c in found:
        try:
            rec_pid, rec_start = engine.init_process(str(c["Id"]))  # the engine's own record
        except errors.RuntimeError:
            continue
        if rec_pid and rec_start:
            pid, start = rec_pid, rec_start
            break
    if not pid:
        raise errors.Conflict(f'pod "{pod}" in namespace "{namespace}" is not running, so nothing can be sent from it')
    # the helper checks the start time once it holds the namespace: a pid the infra container
    # left (it exited) and a host process took is never entered (it would be the host's netns)
    argv = children.helper_argv(
        "runtime.kube.node._netns_probe",
        [str(pid), str(start), str(addr), str(port), protocol.lower(), f"{float(timeout):g}"],
    )
    cp = engine.place.run(argv, timeout=float(timeout) + 10, check=False, env=children.helper_env())
    try:
        out = json.loads(cp.stdout.decode(errors="replace").strip().splitlines()[-1])
        return {"result": str(out["result"]), "detail": str(out["detail"])}
    except (ValueError, IndexError, KeyError, TypeError):
        tail = cp.stderr.decode(errors="replace").strip()[-400:]
        raise errors.RuntimeError(f"the connectivity probe failed ({cp.returncode}): {tail}") from None
