"""The cluster DNS server (node/dns.py) over real sockets, asked by dnspython's client.

The server runs on 127.0.0.1 (not in a sandbox's netns: the wire protocol is what is tested
here; tests/runtime/kube/test_services_live.py asks it with busybox's nslookup in a sandbox).
The store is a stand-in with the two reads the resolver uses (``get``, ``list``), holding the
objects the API server would.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import dns.flags
import dns.message
import dns.opcode
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
import pytest_asyncio

from runtime.kube.node import dns as clusterdns

Obj = dict[str, Any]


class FakeStore:
    """Stands in for apiserver.store.Store's reads (get, list by group-resource and namespace)."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[tuple[str, str], Obj]] = {}

    def add(self, gr: str, obj: Obj) -> None:
        md = obj["metadata"]
        self.objects.setdefault(gr, {})[(md.get("namespace", ""), md["name"])] = obj

    def get(self, gr: str, ns: str, name: str) -> Obj | None:
        return self.objects.get(gr, {}).get((ns, name))

    def list(self, gr: str, ns: str | None = None) -> list[Obj]:
        return [o for (n, _), o in sorted(self.objects.get(gr, {}).items()) if ns is None or n == ns]


def _store() -> FakeStore:
    s = FakeStore()
    s.add(clusterdns.NAMESPACES, {"metadata": {"name": "shop"}})
    s.add(
        clusterdns.SVC,
        {
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"clusterIP": "10.96.0.50", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
        },
    )
    s.add(
        clusterdns.SVC,
        {
            "metadata": {"name": "db", "namespace": "shop"},
            "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]},
        },
    )
    s.add(
        clusterdns.SVC,
        {"metadata": {"name": "ext", "namespace": "shop"}, "spec": {"type": "ExternalName", "externalName": "ex.org"}},
    )
    # a headless Service with many endpoints: its answer does not fit 512 bytes
    s.add(clusterdns.SVC, {"metadata": {"name": "big", "namespace": "shop"}, "spec": {"clusterIP": "None"}})
    eps = [{"addresses": [f"10.244.1.{i}"], "conditions": {"ready": True}} for i in range(1, 61)]
    s.add(
        clusterdns.SLICES,
        {
            "metadata": {"name": "big-x", "namespace": "shop", "labels": {clusterdns.SLICE_SERVICE_NAME: "big"}},
            "endpoints": eps,
        },
    )
    s.add(
        clusterdns.SLICES,
        {
            "metadata": {"name": "db-x", "namespace": "shop", "labels": {clusterdns.SLICE_SERVICE_NAME: "db"}},
            "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
            "endpoints": [
                {"addresses": ["10.244.0.7"], "hostname": "db-0", "conditions": {"ready": True}},
                {"addresses": ["10.244.0.8"], "hostname": "db-1", "conditions": {"ready": True}},
            ],
        },
    )
    return s


Server = tuple[clusterdns.ClusterDNS, int]


@pytest_asyncio.fixture
async def server() -> AsyncIterator[Server]:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    port = udp.getsockname()[1]
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind(("127.0.0.1", port))
    tcp.listen()
    fwd = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    fwd.bind(("127.0.0.1", 0))
    srv = clusterdns.ClusterDNS(_store(), [])  # no upstream: names outside the cluster get SERVFAIL
    await srv.start(udp, tcp, fwd)
    try:
        yield srv, port
    finally:
        await srv.close()


async def _udp(port: int, q: dns.message.Message) -> dns.message.Message:
    return await asyncio.to_thread(dns.query.udp, q, "127.0.0.1", timeout=5, port=port, ignore_trailing=False)


async def _tcp(port: int, q: dns.message.Message) -> dns.message.Message:
    return await asyncio.to_thread(dns.query.tcp, q, "127.0.0.1", timeout=5, port=port)


def _addresses(r: dns.message.Message) -> list[str]:
    return sorted(rd.to_text() for rrset in r.answer for rd in rrset)


@pytest.mark.asyncio
async def test_service_a_record_authoritative_with_the_question_echoed(server: Server) -> None:
    q = dns.message.make_query("Web.Shop.svc.cluster.local", "A")
    r = await _udp(server[1], q)
    assert r.id == q.id and r.rcode() == dns.rcode.NOERROR
    assert r.flags & dns.flags.AA and r.flags & dns.flags.RA and r.flags & dns.flags.RD
    assert r.question[0].name == q.question[0].name  # the asker's spelling, as CoreDNS echoes it
    assert _addresses(r) == ["10.96.0.50"]
    assert r.answer[0].ttl == clusterdns.TTL


@pytest.mark.asyncio
async def test_headless_srv_cname_and_ptr(server: Server) -> None:
    port = server[1]
    r = await _udp(port, dns.message.make_query("db.shop.svc.cluster.local", "A"))
    assert _addresses(r) == ["10.244.0.7", "10.244.0.8"]
    r = await _udp(port, dns.message.make_query("db-1.db.shop.svc.cluster.local", "A"))
    assert _addresses(r) == ["10.244.0.8"]
    r = await _udp(port, dns.message.make_query("_pg._tcp.db.shop.svc.cluster.local", "SRV"))
    assert _addresses(r) == [
        "0 100 5432 db-0.db.shop.svc.cluster.local.",
        "0 100 5432 db-1.db.shop.svc.cluster.local.",
    ]
    r = await _udp(port, dns.message.make_query("ext.shop.svc.cluster.local", "A"))
    assert r.answer[0].rdtype == dns.rdatatype.CNAME and _addresses(r) == ["ex.org."]
    r = await _udp(port, dns.message.make_query("50.0.96.10.in-addr.arpa", "PTR"))
    assert _addresses(r) == ["web.shop.svc.cluster.local."]
    r = await _udp(port, dns.message.make_query("10-244-0-9.shop.pod.cluster.local", "A"))
    assert _addresses(r) == ["10.244.0.9"]


@pytest.mark.asyncio
async def test_nxdomain_nodata_and_servfail(server: Server) -> None:
    port = server[1]
    r = await _udp(port, dns.message.make_query("nothing.shop.svc.cluster.local", "A"))
    assert r.rcode() == dns.rcode.NXDOMAIN and not r.answer
    r = await _udp(port, dns.message.make_query("web.shop.svc.cluster.local", "AAAA"))
    assert r.rcode() == dns.rcode.NOERROR and not r.answer  # the name exists: NODATA
    r = await _udp(port, dns.message.make_query("example.com", "A"))
    assert r.rcode() == dns.rcode.SERVFAIL and not r.flags & dns.flags.AA  # no upstream to forward to


@pytest.mark.asyncio
async def test_big_answer_truncated_over_udp_and_whole_over_tcp(server: Server) -> None:
    port = server[1]
    q = dns.message.make_query("big.shop.svc.cluster.local", "A")
    r = await _udp(port, q)
    assert r.flags & dns.flags.TC and not r.answer
    r = await _tcp(port, q)
    assert not r.flags & dns.flags.TC and len(_addresses(r)) == 60
    # an EDNS client that takes 1232 bytes gets it over UDP, with our OPT record
    r = await _udp(port, dns.message.make_query("big.shop.svc.cluster.local", "A", use_edns=0, payload=1232))
    assert not r.flags & dns.flags.TC and len(_addresses(r)) == 60 and r.edns == 0


@pytest.mark.asyncio
async def test_other_opcodes_are_not_implemented(server: Server) -> None:
    q = dns.message.make_query("web.shop.svc.cluster.local", "A")
    q.set_opcode(dns.opcode.STATUS)
    r = await _udp(server[1], q)
    assert r.rcode() == dns.rcode.NOTIMP and r.opcode() == dns.opcode.STATUS
