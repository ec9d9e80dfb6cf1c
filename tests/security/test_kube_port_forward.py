"""Hostile clients of pods/portforward (runtime/kube/node/portforward.py), through server.py's app.

The kubelet side is a stand-in here (it needs runc): ``FakeKubelet.port_forward`` records
what it was asked for and connects to a local echo server, as the real one connects to
the pod's loopback. tests/runtime/kube/node/test_port_forward.py runs the real kubectl against
the real kubelet. What is proved here: the request picks a pod and a port, never an
address; bad ports never reach the kubelet; malformed, oversized and compressed-bomb SPDY
ends that session with GOAWAY and nothing else; stream limits hold; refusals are Status.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient, TestServer

from runtime.kube.apiserver.provision import create_cluster
from runtime.kube.apiserver.server import Hub, make_app
from runtime.kube.controllers.manager import Controllers
from runtime.kube.node import portforward as pf

POD = "/clusters/victim/api/v1/namespaces/default/pods/web/portforward"


class FakeKubelet:
    """Stands in for the kubelet (needs runc): connects to ``echo_port`` whatever the port."""

    def __init__(self, echo_port: int) -> None:
        self.echo_port = echo_port
        self.calls: list[tuple[str, str, int]] = []
        self.ended: list[bool] = []

    def port_forward(self, ns: str, pod: str, port: int) -> socket.socket:
        self.calls.append((ns, pod, port))
        if port == 7777:
            raise ConnectionRefusedError(111, "connection refused")
        s = socket.create_connection(("127.0.0.1", self.echo_port), timeout=5)
        s.setblocking(False)
        return s


class Spdy:
    """A minimal SPDY/3.1 client writer/reader, as client-go's is."""

    def __init__(self) -> None:
        self.deflate = zlib.compressobj(9, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY, pf.DICTIONARY)
        self.inflate = zlib.decompressobj(zdict=pf.DICTIONARY)
        self.buf = b""

    def headers(self, h: dict[str, str]) -> bytes:
        return self.deflate.compress(pf.encode_headers(h)) + self.deflate.flush(zlib.Z_SYNC_FLUSH)

    def syn(self, sid: int, h: dict[str, str], fin: bool = False) -> bytes:
        payload = struct.pack(">IIH", sid, 0, 0) + self.headers(h)
        return pf.control_frame(pf.SYN_STREAM, pf.FLAG_FIN if fin else 0, payload)

    def frames(self, data: bytes) -> list[tuple[bool, int, int, bytes]]:
        """(control?, type or stream id, flags, payload) of each whole frame received."""
        self.buf += data
        out = []
        while len(self.buf) >= 8:
            a, b = struct.unpack_from(">II", self.buf)
            n = b & 0xFFFFFF
            if len(self.buf) < 8 + n:
                break
            payload, self.buf = self.buf[8 : 8 + n], self.buf[8 + n :]
            out.append((bool(a & 0x80000000), a & 0xFFFF if a & 0x80000000 else a, b >> 24, payload))
        return out


async def read_until(ws: Any, spdy: Spdy, done: Any, timeout: float = 10) -> list[tuple[bool, int, int, bytes]]:
    seen: list[tuple[bool, int, int, bytes]] = []
    async with asyncio.timeout(timeout):
        while not done(seen):
            msg = await ws.receive()
            if msg.type != WSMsgType.BINARY:
                seen.append((True, -1, 0, b""))  # closed
                break
            seen += spdy.frames(msg.data)
    return seen


def pair(spdy: Spdy, request_id: str, port: str, base: int) -> bytes:
    h = {"streamtype": "error", "port": port, "requestid": request_id}
    return spdy.syn(base, h, fin=True) + spdy.syn(base + 2, {**h, "streamtype": "data"})


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[TestClient, dict[str, str], FakeKubelet]]:
    ended: list[bool] = []

    async def echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
        except ConnectionError:
            pass
        finally:
            ended.append(True)  # the pod side of one forwarded connection is closed
            w.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    echo_port = server.sockets[0].getsockname()[1]
    token = yaml.safe_load(create_cluster(tmp_path, "victim", "https://127.0.0.1:1", controllers=Controllers))["users"][
        0
    ]["user"]["token"]
    hub = Hub(tmp_path, controllers=Controllers)
    kubelet = FakeKubelet(echo_port)
    kubelet.ended = ended
    try:
        async with TestClient(TestServer(make_app(hub))) as tc:
            headers = {"Authorization": f"Bearer {token}"}
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "web"},
                "spec": {"nodeName": "node", "containers": [{"name": "c", "image": "busybox:1.35"}]},
            }
            resp = await tc.post("/clusters/victim/api/v1/namespaces/default/pods", json=pod, headers=headers)
            assert resp.status == 201, await resp.text()
            hub.clusters["victim"].pod_io = kubelet  # type: ignore[assignment]
            yield tc, headers, kubelet
    finally:
        hub.close()
        server.close()


async def connect(tc: TestClient, headers: dict[str, str]) -> Any:
    return await tc.ws_connect(POD, protocols=[pf.WS_PROTOCOL], headers=headers)


async def test_a_forwarded_connection_echoes_and_ends_cleanly(api: Any) -> None:
    tc, headers, kubelet = api
    ws, spdy = await connect(tc, headers), Spdy()
    await ws.send_bytes(pair(spdy, "0", "8080", 1))
    await ws.send_bytes(pf.data_frame(3, 0, b"hello") + pf.data_frame(3, pf.FLAG_FIN, b""))
    seen = await read_until(ws, spdy, lambda s: sum(1 for f in s if not f[0] and f[2] & pf.FLAG_FIN) >= 2)
    data = b"".join(f[3] for f in seen if not f[0] and f[1] == 3)
    assert data == b"hello"
    assert [f for f in seen if not f[0] and f[1] == 1] == [(False, 1, pf.FLAG_FIN, b"")]  # no error text
    assert kubelet.calls == [("default", "web", 8080)]
    await ws.close()


@pytest.mark.parametrize("port", ["0", "70000", "-1", "http", "", "99999999999999999999"])
async def test_a_bad_port_never_reaches_the_kubelet(api: Any, port: str) -> None:
    tc, headers, kubelet = api
    ws, spdy = await connect(tc, headers), Spdy()
    await ws.send_bytes(pair(spdy, "0", port, 1))
    seen = await read_until(ws, spdy, lambda s: any(not f[0] and f[1] == 1 and f[2] & pf.FLAG_FIN for f in s))
    text = b"".join(f[3] for f in seen if not f[0] and f[1] == 1).decode()
    assert "invalid port" in text
    assert kubelet.calls == []
    await ws.close()


async def test_headers_cannot_name_an_address(api: Any) -> None:
    tc, headers, kubelet = api
    ws, spdy = await connect(tc, headers), Spdy()
    extra = {"host": "169.254.169.254", "address": "10.0.0.1", "pod": "other"}
    h = {"streamtype": "error", "port": "8080", "requestid": "7", **extra}
    await ws.send_bytes(spdy.syn(1, h, fin=True) + spdy.syn(3, {**h, "streamtype": "data"}))
    await ws.send_bytes(pf.data_frame(3, pf.FLAG_FIN, b""))
    await read_until(ws, spdy, lambda s: any(not f[0] and f[1] == 1 and f[2] & pf.FLAG_FIN for f in s))
    assert kubelet.calls == [("default", "web", 8080)]
    await ws.close()


async def test_a_refused_port_is_reported_on_the_error_stream(api: Any) -> None:
    tc, headers, _ = api
    ws, spdy = await connect(tc, headers), Spdy()
    await ws.send_bytes(pair(spdy, "0", "7777", 1))
    seen = await read_until(ws, spdy, lambda s: any(not f[0] and f[1] == 1 and f[2] & pf.FLAG_FIN for f in s))
    text = b"".join(f[3] for f in seen if not f[0] and f[1] == 1).decode()
    assert text.startswith("error forwarding port 7777 to pod web, uid ") and "connection refused" in text


@pytest.mark.parametrize(
    "attack",
    ["oversized frame", "header bomb", "garbage", "wrong version", "bad header block", "short syn"],
)
async def test_malformed_spdy_ends_only_that_session(api: Any, attack: str) -> None:
    tc, headers, kubelet = api
    ws, spdy = await connect(tc, headers), Spdy()
    if attack == "oversized frame":
        bad = struct.pack(">HHI", 0x8003, pf.SYN_STREAM, 0xFFFFFF) + b"\x00" * 64
    elif attack == "header bomb":
        block = struct.pack(">I", 1) + struct.pack(">I", 4) + b"port" + struct.pack(">I", 8 << 20) + b"0" * (8 << 20)
        z = spdy.deflate.compress(block) + spdy.deflate.flush(zlib.Z_SYNC_FLUSH)
        bad = pf.control_frame(pf.SYN_STREAM, 0, struct.pack(">IIH", 1, 0, 0) + z)
        assert len(bad) < pf.MAX_FRAME  # small on the wire, 8 MiB inflated
    elif attack == "garbage":
        bad = b"\xfe" * 1024
    elif attack == "wrong version":
        bad = struct.pack(">HHI", 0x8002, pf.PING, 4) + b"\x00\x00\x00\x01"
    elif attack == "bad header block":
        bad = pf.control_frame(pf.SYN_STREAM, 0, struct.pack(">IIH", 1, 0, 0) + b"not zlib at all")
    else:
        bad = pf.control_frame(pf.SYN_STREAM, 0, b"\x00\x00\x00\x01")
    await ws.send_bytes(bad)
    seen = await read_until(ws, spdy, lambda s: any(f[1] in (pf.GOAWAY, -1) and f[0] for f in s))
    assert any(f[0] and f[1] in (pf.GOAWAY, -1) for f in seen), seen
    assert kubelet.calls == []
    # the listener is fine: a new session forwards as before
    ws2, spdy2 = await connect(tc, headers), Spdy()
    await ws2.send_bytes(pair(spdy2, "0", "8080", 1) + pf.data_frame(3, pf.FLAG_FIN, b"again"))
    seen = await read_until(ws2, spdy2, lambda s: sum(1 for f in s if not f[0] and f[2] & pf.FLAG_FIN) >= 2)
    assert b"".join(f[3] for f in seen if not f[0] and f[1] == 3) == b"again"
    await ws2.close()


async def test_half_open_streams_are_bounded(api: Any) -> None:
    tc, headers, kubelet = api
    ws, spdy = await connect(tc, headers), Spdy()
    frames = b"".join(
        spdy.syn(1 + 2 * i, {"streamtype": "error", "port": "8080", "requestid": str(i)}, fin=True)
        for i in range(pf.MAX_PENDING + 4)
    )
    await ws.send_bytes(frames)
    seen = await read_until(ws, spdy, lambda s: sum(1 for f in s if f[0] and f[1] == pf.RST_STREAM) >= 4)
    refused = [struct.unpack(">II", f[3]) for f in seen if f[0] and f[1] == pf.RST_STREAM]
    assert [code for _, code in refused] == [pf.REFUSED_STREAM] * 4
    assert kubelet.calls == []
    await ws.close()


async def test_stream_ids_must_be_odd_and_increasing(api: Any) -> None:
    tc, headers, _ = api
    ws, spdy = await connect(tc, headers), Spdy()
    h = {"streamtype": "error", "port": "8080", "requestid": "0"}
    await ws.send_bytes(spdy.syn(5, h) + spdy.syn(3, h) + spdy.syn(8, h))
    seen = await read_until(ws, spdy, lambda s: sum(1 for f in s if f[0] and f[1] == pf.RST_STREAM) >= 2)
    rst = [struct.unpack(">II", f[3]) for f in seen if f[0] and f[1] == pf.RST_STREAM]
    assert rst == [(3, pf.PROTOCOL_ERROR), (8, pf.PROTOCOL_ERROR)]
    await ws.close()


async def test_without_the_tunnel_protocol_the_answer_is_a_status(api: Any) -> None:
    tc, headers, kubelet = api
    for method, extra in (
        ("POST", {"Connection": "Upgrade", "Upgrade": "SPDY/3.1", "X-Stream-Protocol-Version": "portforward.k8s.io"}),
        ("GET", {}),
    ):
        resp = await tc.request(method, POD, headers={**headers, **extra})
        st = await resp.json()
        assert resp.status == 400 and st["kind"] == "Status" and st["code"] == 400, st
        assert pf.WS_PROTOCOL in st["message"]
    resp = await tc.get(
        POD,
        headers={
            **headers,
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Protocol": "v5.channel.k8s.io, channel.k8s.io",
        },
    )
    st = await resp.json()
    assert resp.status == 400 and "none of the requested WebSocket subprotocols" in st["message"], st
    assert kubelet.calls == []


async def test_another_clusters_pod_path_is_not_this_clusters(api: Any, tmp_path: Path) -> None:
    tc, headers, kubelet = api
    resp = await tc.get(POD.replace("/pods/web/", "/pods/nope/"), headers=headers)
    st = await resp.json()
    assert resp.status == 404 and st["reason"] == "NotFound", st
    other = POD.replace("/clusters/victim/", "/clusters/elsewhere/")
    resp = await tc.get(other, headers=headers)
    assert resp.status == 401
    assert kubelet.calls == []


async def test_the_channel_protocol_forwards_only_the_ports_asked_for(api: Any) -> None:
    tc, headers, kubelet = api
    ws = await tc.ws_connect(POD + "?ports=8080,7777", protocols=[pf.CHANNEL_PROTOCOL], headers=headers)
    first = [await ws.receive_bytes() for _ in range(4)]
    assert sorted(first) == sorted([b"\x00\x90\x1f", b"\x01\x90\x1f", b"\x02\x61\x1e", b"\x03\x61\x1e"])
    await ws.send_bytes(b"\x00ping")
    await ws.send_bytes(b"\x01ignored: error channels are read-only")
    await ws.send_bytes(b"\x09no such channel")
    got: dict[int, bytes] = {}
    async with asyncio.timeout(10):
        while got.get(0) != b"ping" or not got.get(3):
            m = await ws.receive_bytes()
            got[m[0]] = got.get(m[0], b"") + m[1:]
    assert got[3].startswith(b"error forwarding port 7777 to pod web, uid ")
    assert sorted(kubelet.calls) == [("default", "web", 7777), ("default", "web", 8080)]
    await ws.close()


@pytest.mark.parametrize("query", ["", "?ports=0", "?ports=65536", "?ports=80,x", "?ports=" + ",".join(["80"] * 40)])
async def test_the_channel_protocol_refuses_bad_ports_before_upgrading(api: Any, query: str) -> None:
    tc, headers, kubelet = api
    resp = await tc.get(
        POD + query,
        headers={
            **headers,
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Protocol": pf.CHANNEL_PROTOCOL,
        },
    )
    st = await resp.json()
    assert resp.status == 400 and st["kind"] == "Status" and st["reason"] == "BadRequest", st
    assert kubelet.calls == []


async def test_a_client_reset_closes_the_pods_side(api: Any) -> None:
    tc, headers, kubelet = api
    ws, spdy = await connect(tc, headers), Spdy()
    await ws.send_bytes(pair(spdy, "0", "8080", 1) + pf.data_frame(3, 0, b"hello"))
    await read_until(ws, spdy, lambda s: b"".join(f[3] for f in s if not f[0] and f[1] == 3) == b"hello")
    assert kubelet.ended == []  # open, and echoing
    await ws.send_bytes(pf.control_frame(pf.RST_STREAM, 0, struct.pack(">II", 3, pf.CANCEL)))
    async with asyncio.timeout(10):
        while not kubelet.ended:
            await asyncio.sleep(0.01)
    await ws.close()


async def test_many_sessions_cannot_multiply_runtimeds_pod_connections(api: Any) -> None:
    """Each session's ``MAX_PAIRS`` is no bound on runtimed: a student opening session after
    session from the sandbox held one runtimed fd (and, while dialing, one runtimed thread) per
    forwarded connection, without limit. A cluster's forwarded connections are bounded together."""
    tc, headers, kubelet = api
    sessions = pf.MAX_CLUSTER_PAIRS // pf.MAX_PAIRS + 2
    socks: list[tuple[Any, Spdy]] = []
    texts: list[str] = []
    for _ in range(sessions):
        ws, spdy = await connect(tc, headers), Spdy()
        frames = b"".join(pair(spdy, str(i), "8080", 1 + 4 * i) for i in range(pf.MAX_PAIRS))
        await ws.send_bytes(frames)
        socks.append((ws, spdy))
    for ws, spdy in socks:
        # every pair either forwards (the echo answers a byte) or ends with an error text
        await ws.send_bytes(b"".join(pf.data_frame(3 + 4 * i, 0, b"x") for i in range(pf.MAX_PAIRS)))

        def settled(s: list[tuple[bool, int, int, bytes]]) -> bool:
            echoed = {f[1] // 4 for f in s if not f[0] and f[1] % 4 == 3 and f[3]}
            refused = {f[1] // 4 for f in s if not f[0] and f[1] % 4 == 1 and f[3]}
            return len(echoed | refused) >= pf.MAX_PAIRS

        seen = await read_until(ws, spdy, settled)
        texts += [f[3].decode() for f in seen if not f[0] and f[1] % 4 == 1 and f[3]]
    assert len(kubelet.calls) <= pf.MAX_CLUSTER_PAIRS
    assert len(texts) == sessions * pf.MAX_PAIRS - len(kubelet.calls)
    assert all("forwarded connections" in t for t in texts)
    for ws, _ in socks:
        await ws.close()


async def test_finished_streams_do_not_pile_up_in_a_session(api: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A session kept every stream it ever saw: pairs that end at once (a bad port is
    answered without a dial) let one session grow runtimed's memory without bound. What a
    session holds is bounded by what is open, not by what it has seen."""
    sessions: list[pf.Session] = []
    real_init = pf.Session.__init__

    def recording_init(self: pf.Session, ws: Any, call: pf.PortForwardCall) -> None:
        real_init(self, ws, call)
        sessions.append(self)

    monkeypatch.setattr(pf.Session, "__init__", recording_init)
    tc, headers, kubelet = api
    ws, spdy = await connect(tc, headers), Spdy()
    n = 4 * (pf.MAX_PAIRS + pf.MAX_PENDING)
    await ws.send_bytes(b"".join(pair(spdy, str(i), "0", 1 + 4 * i) for i in range(n)))
    seen = await read_until(
        ws, spdy, lambda s: sum(1 for f in s if not f[0] and f[1] % 4 == 1 and f[2] & pf.FLAG_FIN) >= n
    )
    texts = [f[3] for f in seen if not f[0] and f[1] % 4 == 1 and f[3]]
    assert len(texts) == n and all(t.startswith(b"error forwarding port 0") for t in texts)
    assert kubelet.calls == []
    (session,) = sessions
    assert len(session.streams) <= 2 * pf.MAX_PAIRS + pf.MAX_PENDING, len(session.streams)
    await ws.close()
