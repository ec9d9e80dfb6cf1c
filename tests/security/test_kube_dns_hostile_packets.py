"""Hostile packets to the lab cluster's DNS server (runtime/kube/node/dns.py).

A student's pod can send anything to 10.96.0.10:53. Malformed queries are refused with
FORMERR the way CoreDNS (miekg/dns) does, responses are not answered (no reflection loop),
a name is never re-read from its label bytes (a label holding dots is one label), and no
packet stops the server answering the next one.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
from collections.abc import AsyncIterator

import dns.flags
import dns.message
import dns.rcode
import pytest_asyncio

from runtime.kube.node import dns as clusterdns
from tests.runtime.kube.node.test_dns import _store

Server = tuple[clusterdns.ClusterDNS, socket.socket]


@pytest_asyncio.fixture
async def server() -> AsyncIterator[Server]:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    port = udp.getsockname()[1]
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.bind(("127.0.0.1", 0))
    tcp.listen()
    fwd = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    fwd.bind(("127.0.0.1", 0))
    srv = clusterdns.ClusterDNS(_store(), [])
    await srv.start(udp, tcp, fwd)
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.connect(("127.0.0.1", port))
    client.setblocking(False)
    try:
        yield srv, client
    finally:
        client.close()
        await srv.close()


async def _ask(client: socket.socket, msg: bytes) -> dns.message.Message:
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(client, msg)
    return dns.message.from_wire(await asyncio.wait_for(loop.sock_recv(client, 65535), 5))


def _header(qid: int, flags: int = 0x0100, qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0) -> bytes:
    return struct.pack("!HHHHHH", qid, flags, qd, an, ns, ar)


def _name(*labels: bytes) -> bytes:
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\0"


A_IN = struct.pack("!HH", 1, 1)


async def test_malformed_queries_get_formerr_with_their_id(server: Server) -> None:
    _srv, client = server
    bad = {
        "pointer loop": _header(0x1111) + b"\xc0\x0c" + A_IN,
        "forward pointer": _header(0x1112) + b"\xc0\x20" + A_IN,
        "label past the end": _header(0x1113) + b"\x3fweb" + A_IN,
        "no question type": _header(0x1114) + _name(b"web", b"shop"),
        "two questions": _header(0x1115, qd=2) + (_name(b"a") + A_IN) * 2,
        "no question": _header(0x1116, qd=0),
        "trailing junk": _header(0x1117) + _name(b"web") + A_IN + b"\xff" * 7,
        "answer count lies": _header(0x1118, an=3) + _name(b"web") + A_IN,
    }
    for what, msg in bad.items():
        r = await _ask(client, msg)
        assert r.id == struct.unpack("!H", msg[:2])[0], what
        assert r.rcode() == dns.rcode.FORMERR and r.flags & dns.flags.QR, what
        assert not r.question and not r.answer, what
    # and it still answers a good query
    good = dns.message.make_query("web.shop.svc.cluster.local", "A")
    r = await _ask(client, good.to_wire())
    assert r.id == good.id and [rd.to_text() for rd in r.answer[0]] == ["10.96.0.50"]


async def test_responses_and_headerless_scraps_get_no_reply(server: Server) -> None:
    srv, _client = server
    reply = dns.message.make_response(dns.message.make_query("web.shop.svc.cluster.local", "A")).to_wire()
    assert await srv.answer(reply, limit=512, udp=True) is None  # answering a response could loop two servers
    assert await srv.answer(b"\x12\x34\x01", limit=512, udp=True) is None  # not even an id


async def test_a_label_holding_dots_is_one_label(server: Server) -> None:
    _srv, client = server
    # one label "web.shop" then svc.cluster.local: not the Service web in namespace shop
    msg = _header(0x2222) + _name(b"web.shop", b"svc", b"cluster", b"local") + A_IN
    r = await _ask(client, msg)
    assert r.rcode() == dns.rcode.NXDOMAIN and not r.answer


async def test_mangled_queries_never_break_the_server(server: Server) -> None:
    srv, client = server
    rng = random.Random(16)
    base = dns.message.make_query("_pg._tcp.db.shop.svc.cluster.local", "SRV", use_edns=0).to_wire()
    for _ in range(400):
        msg = bytearray(base)
        for _ in range(rng.randint(1, 6)):
            msg[rng.randrange(len(msg))] = rng.randrange(256)
        cut = bytes(msg[: rng.randint(0, len(msg))]) if rng.random() < 0.2 else bytes(msg)
        out = await srv.answer(cut, limit=512, udp=True)
        if out is not None:
            r = dns.message.from_wire(out)
            assert r.id == struct.unpack("!H", cut[:2])[0] and r.flags & dns.flags.QR
            assert len(out) <= 1232
    r = await _ask(client, dns.message.make_query("db.shop.svc.cluster.local", "A").to_wire())
    assert sorted(rd.to_text() for rd in r.answer[0]) == ["10.244.0.7", "10.244.0.8"]
