"""Cluster DNS for one sandbox's lab cluster (CoreDNS's ``kubernetes`` plugin, in-process).

Where it listens: 10.96.0.10:53, UDP and TCP, *inside the sandbox's network namespace*.
The address is added to the sandbox's ``lo`` (``add_address``); the sockets are made there
by the ``node/_netns_listen.py`` helper child and handed back (service.py
``open_listener_in_netns``), and served here on runtimed's event loop, which is also the
API server's: answers read the cluster's store directly, so they are always current. Pods
reach the address through their default route (the pod bridge's gateway is the sandbox),
the sandbox's own terminal over ``lo``; node/proxy.py drops anything else sent to it. The
``kube-dns`` Service (kube-system, 10.96.0.10, created with the cluster) makes it visible
the way ``kubectl get svc -n kube-system`` shows it on a real cluster.

What it answers (TTL 5; messages parsed and built with dnspython, the answers are ours):

* ``SVC.NS.svc.cluster.local``: A = the ClusterIP; headless Services: one A per ready
  endpoint; ExternalName: a CNAME.
* ``HOST.SVC.NS.svc.cluster.local``: an endpoint with that hostname (StatefulSet pods,
  pods with ``hostname`` + ``subdomain``), ready or listed with publishNotReadyAddresses.
* ``_PORT._PROTO.SVC.NS.svc.cluster.local``: SRV per named port (ClusterIP: the Service
  name; headless: each endpoint's name).
* ``A-B-C-D.NS.pod.cluster.local``: A = a.b.c.d (CoreDNS's ``pods insecure``).
* PTR of a ClusterIP or of a pod IP (``D.C.B.A.in-addr.arpa``).
* Any other name under cluster.local: NXDOMAIN (names that exist with no record of the
  asked type: NOERROR with no answer, as CoreDNS does for AAAA).
* Names outside cluster.local are forwarded to the sandbox's own resolvers (its
  resolv.conf, loopback ones excepted) from a socket in the sandbox's netns; with none, or
  no reply within ``FORWARD_TIMEOUT``, SERVFAIL (labs have no internet).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
from dns.rcode import FORMERR, NOERROR, NOTIMP, NXDOMAIN, SERVFAIL
from dns.rdata import Rdata
from dns.rdatatype import ANY, CNAME, PTR, SRV, A

from runtime.kernel import netns, safewrite
from runtime.kube import registry
from runtime.kube.meta import Obj

log = logging.getLogger("runtime.kube.node.dns")


DNS_IP = "10.96.0.10"
DNS_PORT = 53
DOMAIN = "cluster.local"
TTL = 5
FORWARD_TIMEOUT = 2.0
MAX_UDP = 512

IN = dns.rdataclass.IN
MAX_EDNS_UDP = 1232  # what we advertise and honour at most (CoreDNS's bufsize default, DNS flag day 2020)

R = registry.BY_GR
SVC = R["services"].gr
SLICES = R["endpointslices.discovery.k8s.io"].gr
NAMESPACES = R["namespaces"].gr
SLICE_SERVICE_NAME = "kubernetes.io/service-name"


class FormatError(Exception):
    """A message we cannot parse (answered FORMERR when its id is readable)."""


class Ignored(Exception):
    """A message a server does not answer at all (a response: replying could start a loop)."""


@dataclass
class Question:
    msg: dns.message.Message  # the query as parsed
    name: str  # lower case, no trailing dot

    @property
    def qtype(self) -> int:
        return int(self.msg.question[0].rdtype)


@dataclass
class Answer:
    rcode: dns.rcode.Rcode = NOERROR
    records: list[Rdata] = field(default_factory=list)  # all owned by the question's name
    authoritative: bool = True


def parse_query(msg: bytes) -> Question:
    """The one question of a query message (dnspython's parser; miekg/dns's acceptance rules,
    which CoreDNS applies: a response is ignored, anything but exactly one question refused)."""
    try:
        m = dns.message.from_wire(msg)
    except Exception as e:  # dnspython raises its own FormError and a few others on hostile input
        raise FormatError(str(e) or type(e).__name__) from e
    if m.flags & dns.flags.QR:
        raise Ignored("a response")
    if len(m.question) != 1:
        raise FormatError(f"{len(m.question)} questions")
    qname = m.question[0].name
    name = "" if qname == dns.name.root else qname.to_text(omit_final_dot=True).lower()
    return Question(m, name)


def _name(target: str) -> dns.name.Name:
    return dns.name.from_text(target.strip(".") + ".")


def rd_a(ip: str) -> Rdata:
    return dns.rdata.from_text(IN, A, str(ipaddress.IPv4Address(ip)))


def rd_srv(port: int, target: str) -> Rdata:
    return dns.rdata.from_text(IN, SRV, f"0 100 {int(port)} {_name(target)}")


def rd_cname(target: str) -> Rdata:
    return dns.rdata.from_text(IN, CNAME, _name(target).to_text())


def rd_ptr(target: str) -> Rdata:
    return dns.rdata.from_text(IN, PTR, _name(target).to_text())


def udp_limit(q: Question) -> int:
    """How big a UDP reply may be: 512, or the client's EDNS payload size (at most ours)."""
    return max(MAX_UDP, min(q.msg.payload, MAX_EDNS_UDP)) if q.msg.edns >= 0 else MAX_UDP


def response(q: Question, ans: Answer, *, limit: int | None = None) -> bytes:
    """The reply message: the question echoed, the records, TC when they do not fit ``limit``."""
    r = dns.message.make_response(q.msg, recursion_available=True, our_payload=MAX_EDNS_UDP)
    if ans.authoritative:
        r.flags |= dns.flags.AA
    r.set_rcode(ans.rcode)
    qname = q.msg.question[0].name
    for rd in ans.records:
        r.find_rrset(r.answer, qname, IN, rd.rdtype, create=True).add(rd, TTL)
    # prefer_truncation: what does not fit is dropped a whole RRset at a time, with TC set
    return r.to_wire(max_size=limit or 65535, prefer_truncation=True)


def error_reply(msg: bytes, rcode: dns.rcode.Rcode) -> bytes | None:
    """A bare reply with ``rcode`` to a message we could not parse (None: no id to answer)."""
    if len(msg) < 12:
        return None
    qid, flags = struct.unpack("!HH", msg[:4])
    r = dns.message.Message(id=qid)
    r.flags = dns.flags.QR | dns.flags.RA | (flags & (dns.flags.RD | 0x7800))  # 0x7800: the opcode
    r.set_rcode(rcode)
    return r.to_wire()


def _dashed(ip: str) -> str:
    return ip.replace(".", "-")


def _ready(ep: Obj) -> bool:
    c = ep.get("conditions") or {}
    return bool(c.get("ready", True)) and not c.get("terminating")


class Resolver:
    """Answers for one cluster's store (``apiserver.Cluster.store``; called on its loop)."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def _service(self, ns: str, name: str) -> Obj | None:
        obj: Obj | None = self.store.get(SVC, ns, name)
        return obj

    def _endpoints(self, ns: str, svc: str) -> list[tuple[Obj, str]]:
        """The (endpoint, address) pairs of a Service's slices that DNS publishes."""
        out: list[tuple[Obj, str]] = []
        for sl in self.store.list(SLICES, ns):
            if (sl["metadata"].get("labels") or {}).get(SLICE_SERVICE_NAME) != svc:
                continue
            for ep in sl.get("endpoints") or []:
                if _ready(ep):
                    out.extend((ep, str(a)) for a in ep.get("addresses") or [])
        out.sort(key=lambda e: ipaddress.IPv4Address(e[1]))
        return out

    def _ports(self, ns: str, svc: str) -> list[Obj]:
        for sl in self.store.list(SLICES, ns):
            if (sl["metadata"].get("labels") or {}).get(SLICE_SERVICE_NAME) == svc:
                return list(sl.get("ports") or [])
        return []

    def resolve(self, name: str, qtype: int) -> Answer:
        """Everything under cluster.local and the reverse zones of services and pods."""
        if name.endswith(".in-addr.arpa"):
            return self._reverse(name, qtype)
        if name == DOMAIN:
            return Answer()
        labels = name[: -len(DOMAIN) - 1].split(".")
        zone = labels[-1]
        if zone == "svc":
            return self._svc_zone(name, labels[:-1], qtype)
        if zone == "pod":
            return self._pod_zone(name, labels[:-1], qtype)
        return Answer(NXDOMAIN)

    def _svc_zone(self, name: str, labels: list[str], qtype: int) -> Answer:
        if not labels:
            return Answer()
        ns = labels[-1]
        if len(labels) == 1:
            return Answer() if self.store.get(NAMESPACES, "", ns) is not None else Answer(NXDOMAIN)
        svc = self._service(ns, labels[-2])
        if svc is None:
            return Answer(NXDOMAIN)
        spec = svc.get("spec") or {}
        headless = spec.get("clusterIP") == "None"
        sname = labels[-2]
        base = f"{sname}.{ns}.svc.{DOMAIN}"
        if len(labels) == 2:
            if spec.get("type") == "ExternalName":
                try:
                    return Answer(records=[rd_cname(str(spec.get("externalName", "")))])
                except dns.exception.DNSException:  # not a DNS name: nothing we can point at
                    return Answer(SERVFAIL)
            if qtype not in (A, ANY):
                return Answer()
            if headless:
                return Answer(records=[rd_a(ip) for _ep, ip in self._endpoints(ns, sname)])
            return Answer(records=[rd_a(str(spec["clusterIP"]))]) if spec.get("clusterIP") else Answer()
        if len(labels) == 3:
            host = labels[0]
            hits = [ip for ep, ip in self._endpoints(ns, sname) if ep.get("hostname") == host or _dashed(ip) == host]
            if not hits:
                return Answer(NXDOMAIN)
            return Answer(records=[rd_a(ip) for ip in hits] if qtype in (A, ANY) else [])
        if len(labels) == 4 and labels[0].startswith("_") and labels[1].startswith("_"):
            pname, proto = labels[0][1:], labels[1][1:].upper()
            ports = [
                p
                for p in self._ports(ns, sname)
                if str(p.get("name", "")).lower() == pname and p.get("protocol", "TCP") == proto
            ]
            spec_ports = [
                p
                for p in spec.get("ports") or []
                if str(p.get("name", "")).lower() == pname and p.get("protocol", "TCP") == proto
            ]
            if not ports and not spec_ports:
                return Answer(NXDOMAIN)
            if qtype not in (SRV, ANY):
                return Answer()
            if not headless:
                return Answer(records=[rd_srv(int(p["port"]), base) for p in spec_ports])
            recs = []
            for p in ports:
                for ep, ip in self._endpoints(ns, sname):
                    target = f"{ep.get('hostname') or _dashed(ip)}.{base}"
                    recs.append(rd_srv(int(p["port"]), target))
            return Answer(records=recs)
        return Answer(NXDOMAIN)

    def _pod_zone(self, name: str, labels: list[str], qtype: int) -> Answer:
        if len(labels) == 1:
            return Answer() if self.store.get(NAMESPACES, "", labels[0]) is not None else Answer(NXDOMAIN)
        if len(labels) != 2:
            return Answer(NXDOMAIN)
        try:
            ip = str(ipaddress.IPv4Address(labels[0].replace("-", ".")))
        except ValueError:
            return Answer(NXDOMAIN)
        return Answer(records=[rd_a(ip)] if qtype in (A, ANY) else [])

    def _reverse(self, name: str, qtype: int) -> Answer:
        """PTR of a Service's ClusterIP or a pod's IP; None-like NXDOMAIN otherwise."""
        parts = name[: -len(".in-addr.arpa")].split(".")
        if len(parts) != 4:
            return Answer(NXDOMAIN)
        ip = ".".join(reversed(parts))
        targets: list[str] = []
        for svc in self.store.list(SVC):
            if (svc.get("spec") or {}).get("clusterIP") == ip:
                targets.append(f"{svc['metadata']['name']}.{svc['metadata']['namespace']}.svc.{DOMAIN}")
        if not targets:
            for sl in self.store.list(SLICES):
                svc_name = (sl["metadata"].get("labels") or {}).get(SLICE_SERVICE_NAME)
                for ep in sl.get("endpoints") or []:
                    if ip in (ep.get("addresses") or []) and ep.get("hostname") and svc_name:
                        targets.append(f"{ep['hostname']}.{svc_name}.{sl['metadata']['namespace']}.svc.{DOMAIN}")
        if not targets:
            for pod in self.store.list(R["pods"].gr):
                if (pod.get("status") or {}).get("podIP") == ip:
                    targets.append(f"{_dashed(ip)}.{pod['metadata']['namespace']}.pod.{DOMAIN}")
        if not targets:
            return Answer(NXDOMAIN)
        return Answer(records=[rd_ptr(t) for t in targets] if qtype in (PTR, ANY) else [])


def ours(name: str) -> bool:
    """Names this server is the authority for (the rest is forwarded)."""
    if name == DOMAIN or name.endswith("." + DOMAIN):
        return True
    if name.endswith(".in-addr.arpa"):
        parts = name[: -len(".in-addr.arpa")].split(".")
        return len(parts) == 4 and parts[-1] == "10" and parts[-2] in ("96", "244")
    return False


def upstreams(rootfs: Path) -> list[str]:
    """The sandbox's own resolvers (its resolv.conf; loopback ones would be ourselves)."""
    raw = safewrite.read_in_root(rootfs, "/etc/resolv.conf") or b""
    out: list[str] = []
    for line in raw.decode(errors="replace").splitlines():
        f = line.split()
        if len(f) >= 2 and f[0] == "nameserver" and not f[1].startswith("127."):
            with contextlib.suppress(ValueError):
                out.append(str(ipaddress.IPv4Address(f[1])))
    return out[:3]


def add_address(sandbox_pid: int) -> None:
    """10.96.0.10/32 on the sandbox's ``lo`` (idempotent), so the sockets can bind it."""
    have = netns.run(sandbox_pid, ["ip", "-o", "-4", "addr", "show", "dev", "lo"])
    if f" {DNS_IP}/32 " not in have:
        netns.run(sandbox_pid, ["ip", "addr", "add", f"{DNS_IP}/32", "dev", "lo"])


class _Forwarder(asyncio.DatagramProtocol):
    """Queries for other names, sent from a socket in the sandbox's netns; replies matched by id."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: dict[int, asyncio.Future[bytes]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if len(data) >= 2:
            fut = self.pending.pop(struct.unpack("!H", data[:2])[0], None)
            if fut is not None and not fut.done():
                fut.set_result(data)

    async def ask(self, msg: bytes, servers: list[str]) -> bytes | None:
        if self.transport is None or not servers:
            return None
        loop = asyncio.get_running_loop()
        for _ in range(8):
            qid = struct.unpack("!H", os.urandom(2))[0]
            if qid not in self.pending:
                break
        fut: asyncio.Future[bytes] = loop.create_future()
        self.pending[qid] = fut
        out = struct.pack("!H", qid) + msg[2:]
        try:
            for server in servers:
                self.transport.sendto(out, (server, DNS_PORT))
            reply = await asyncio.wait_for(fut, FORWARD_TIMEOUT)
        except (TimeoutError, OSError):
            return None
        finally:
            self.pending.pop(qid, None)
        return msg[:2] + reply[2:]


class ClusterDNS:
    """The DNS server of one sandbox's cluster: ``start`` on the loop with the sockets made in
    the sandbox's netns (UDP and TCP on 10.96.0.10:53, and an unbound UDP one to forward)."""

    def __init__(self, store: Any, servers: list[str]) -> None:
        self.resolver = Resolver(store)
        self.servers = servers
        self._udp: asyncio.DatagramTransport | None = None
        self._fwd: _Forwarder | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, udp: socket.socket, tcp: socket.socket, fwd: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        server = self

        class _Udp(asyncio.DatagramProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                server._udp = cast(asyncio.DatagramTransport, transport)

            def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
                server._spawn(server._udp_query(data, addr))

        await loop.create_datagram_endpoint(_Udp, sock=udp)
        _t, self._fwd = await loop.create_datagram_endpoint(_Forwarder, sock=fwd)
        self._tcp = await asyncio.start_server(self._tcp_client, sock=tcp)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def answer(self, msg: bytes, *, limit: int | None, udp: bool = False) -> bytes | None:
        """The reply to one query message (None: not even an id to reply to, or a response).
        ``udp``: the limit is the client's EDNS payload size when it sent one."""
        try:
            q = parse_query(msg)
        except Ignored:
            return None
        except FormatError:
            return error_reply(msg, FORMERR)
        if udp:
            limit = udp_limit(q)
        if q.msg.opcode() != dns.opcode.QUERY:
            return response(q, Answer(NOTIMP, authoritative=False), limit=limit)
        if ours(q.name):
            return response(q, self.resolver.resolve(q.name, q.qtype), limit=limit)
        reply = await self._fwd.ask(msg, self.servers) if self._fwd is not None else None
        return reply if reply is not None else response(q, Answer(SERVFAIL, authoritative=False), limit=limit)

    async def _udp_query(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        reply = await self.answer(data, limit=MAX_UDP, udp=True)
        if reply is not None and self._udp is not None:
            self._udp.sendto(reply, addr)

    async def _tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                size = struct.unpack("!H", await reader.readexactly(2))[0]
                reply = await self.answer(await reader.readexactly(size), limit=None)
                if reply is None:
                    break
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._fwd is not None and self._fwd.transport is not None:
            self._fwd.transport.close()
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()
        for t in list(self._tasks):
            t.cancel()


def kube_dns_service() -> Obj:
    """The ``kube-system/kube-dns`` Service that names this server (no selector: it is not a pod)."""
    return {
        "metadata": {
            "name": "kube-dns",
            "namespace": "kube-system",
            "labels": {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "CoreDNS"},
            "annotations": {"prometheus.io/port": "9153", "prometheus.io/scrape": "true"},
        },
        "spec": {
            "clusterIP": DNS_IP,
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153},
            ],
            "type": "ClusterIP",
        },
    }


def ensure_kube_dns_service(cluster: Any) -> None:
    """Create the kube-dns Service in a cluster made before it existed (on the cluster's loop)."""
    if cluster.store.get(SVC, "kube-system", "kube-dns") is None and cluster.store.get(NAMESPACES, "", "kube-system"):
        cluster.create(R["services"], "kube-system", kube_dns_service(), internal=True)
