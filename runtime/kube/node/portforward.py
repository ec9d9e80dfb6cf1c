"""``kubectl port-forward``: the pods/portforward subresource, served inside the sandbox.

What kubectl 1.31+ speaks
-------------------------
kubectl dials ``GET .../pods/NAME/portforward`` as a WebSocket with the subprotocol
``SPDY/3.1+portforward.k8s.io`` (client-go's ``NewSPDYOverWebsocketDialer``; it falls back
to a bare SPDY upgrade only when that fails) and then runs an SPDY/3.1 client *through*
the WebSocket: the binary messages' payloads, concatenated, are the SPDY byte stream
(apimachinery ``portforward/tunneling_connection.go``). kube-apiserver passes that tunnel
on to the kubelet's SPDY server; here one class plays both.

Per local connection kubectl opens two SPDY streams sharing a ``requestID`` header: an
``error`` stream (it half-closes it at once and reads it to the end: any text there is
the error it prints) and a ``data`` stream (the connection's bytes both ways; FIN is the
half-close), both carrying the remote ``port``. Each stream is answered with SYN_REPLY.
Once both are there the kubelet dials the port *inside the pod's network namespace*
(``127.0.0.1:port``, as the real kubelet's ``PortForward`` does), pumps bytes, then
half-closes the data stream and closes the error stream (empty: success).

SPDY/3.1 (draft-mbelshe-httpbis-spdy-00, version 3): 8-byte frame headers, control
frames SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS,
WINDOW_UPDATE; header blocks are zlib streams (one per direction, per connection) primed
with the spec's dictionary. Flow control windows are not enforced in either direction:
client-go's SPDY library (moby/spdystream) neither sends nor honours WINDOW_UPDATE.

Where the bytes may go
----------------------
Only to a port of the named pod, through ``PodIO.port_forward`` (node/kubelet.py), which makes
the socket in that pod's own network namespace and connects it to its loopback: no address
comes from the request, so nothing outside the pod (the sandbox, runtimed, the host,
another sandbox) is reachable this way. Frames are bounded (``MAX_FRAME``), client data
waiting for a pod by ``QUEUE_CHUNKS`` frames per stream (then the tunnel is not read), header
blocks after decompression, a session holds at most ``MAX_PAIRS`` connections and
``MAX_PENDING`` half-opened streams, and a misbehaving client gets GOAWAY and is closed. A
client's RST_STREAM of a data stream closes its connection to the pod.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

from runtime.kube.machinery.apierrors import ApiError, go_json

if TYPE_CHECKING:
    from runtime.kube.apiserver.podio import PodIO

log = logging.getLogger("runtime.kube.node.portforward")

WS_PROTOCOL = "SPDY/3.1+portforward.k8s.io"
CHANNEL_PROTOCOL = "v4.channel.k8s.io"

# frame types
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 1, 2, 3, 4, 6, 7, 8, 9
FLAG_FIN = 0x01
# RST_STREAM status codes
PROTOCOL_ERROR, REFUSED_STREAM, CANCEL, STREAM_IN_USE = 1, 3, 5, 8
GOAWAY_PROTOCOL_ERROR = 1

MAX_FRAME = 128 << 10  # client-go writes data frames of at most 32 KiB (io.Copy's buffer)
MAX_HEADER_BLOCK = 16 << 10  # decompressed: kubectl sends three short headers
MAX_PAIRS = 32  # forwarded connections open at once in one session
# ... and in one cluster, all its sessions together: each holds a runtimed fd (and, while it
# dials, a runtimed thread), so a student opening session after session is bounded too
MAX_CLUSTER_PAIRS = 64
MAX_PENDING = 16  # streams waiting for their partner
READ_CHUNK = 32 << 10
QUEUE_CHUNKS = 4  # client->pod frames buffered per stream before the tunnel is paused
CONNECT_TIMEOUT = 10.0


def _dictionary() -> bytes:
    """The SPDY/3 header compression dictionary, built as the spec lists it: header names
    and common values, each with a 32-bit length, then a run of status codes, texts, dates
    and content types. Checked against its Adler-32, so a typo cannot go unnoticed."""
    words = [
        "options",
        "head",
        "post",
        "put",
        "delete",
        "trace",
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "accept-ranges",
        "age",
        "allow",
        "authorization",
        "cache-control",
        "connection",
        "content-base",
        "content-encoding",
        "content-language",
        "content-length",
        "content-location",
        "content-md5",
        "content-range",
        "content-type",
        "date",
        "etag",
        "expect",
        "expires",
        "from",
        "host",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "last-modified",
        "location",
        "max-forwards",
        "pragma",
        "proxy-authenticate",
        "proxy-authorization",
        "range",
        "referer",
        "retry-after",
        "server",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "vary",
        "via",
        "warning",
        "www-authenticate",
        "method",
        "get",
        "status",
    ]
    words += ["200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive", "origin"]
    tail = (
        "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
        "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized"
        "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable"
        "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
        "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
        "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
    )
    out = b"".join(struct.pack(">I", len(w)) + w.encode() for w in words) + tail.encode()
    if len(out) != 1423 or zlib.adler32(out) != 3821447106:
        raise AssertionError("the SPDY/3 header dictionary is not the spec's")
    return out


DICTIONARY = _dictionary()


class ProtocolError(Exception):
    """The client broke SPDY: the session ends with GOAWAY."""


def control_frame(kind: int, flags: int, payload: bytes) -> bytes:
    return struct.pack(">HHI", 0x8000 | 3, kind, (flags << 24) | len(payload)) + payload


def data_frame(stream_id: int, flags: int, payload: bytes) -> bytes:
    return struct.pack(">II", stream_id & 0x7FFFFFFF, (flags << 24) | len(payload)) + payload


def encode_headers(headers: dict[str, str]) -> bytes:
    out = struct.pack(">I", len(headers))
    for k, v in headers.items():
        kb, vb = k.lower().encode(), v.encode()
        out += struct.pack(">I", len(kb)) + kb + struct.pack(">I", len(vb)) + vb
    return out


def decode_headers(block: bytes) -> dict[str, str]:
    """An uncompressed SPDY/3 header block; repeated names keep their first value."""
    try:
        (n,) = struct.unpack_from(">I", block, 0)
        i = 4
        out: dict[str, str] = {}
        for _ in range(n):
            (ln,) = struct.unpack_from(">I", block, i)
            name = block[i + 4 : i + 4 + ln]
            i += 4 + ln
            (lv,) = struct.unpack_from(">I", block, i)
            value = block[i + 4 : i + 4 + lv]
            i += 4 + lv
            if len(name) != ln or len(value) != lv or i > len(block):
                raise ProtocolError("truncated header block")
            out.setdefault(name.decode("latin-1").lower(), value.split(b"\x00")[0].decode("latin-1"))
    except struct.error:
        raise ProtocolError("truncated header block") from None
    return out


@dataclass
class Budget:
    """One cluster's forwarded connections (dialing or open) across its sessions; counted on
    the event loop only (``take``/``give``), so it needs no lock."""

    active: int = 0

    def take(self) -> None:
        if self.active >= MAX_CLUSTER_PAIRS:
            raise ApiError(
                429, "TooManyRequests", f"at most {MAX_CLUSTER_PAIRS} forwarded connections at once in this cluster"
            )
        self.active += 1

    def give(self) -> None:
        self.active -= 1


@dataclass
class PortForwardCall:
    """A checked portforward request: apiserver/server.py serves it with ``serve``."""

    io: PodIO
    ns: str
    pod: str
    uid: str
    budget: Budget  # the cluster's (apiserver/cluster.py), shared by all its sessions
    # the blocking dials of this session's connections run here (serve() makes it, one thread,
    # so one student's many connections queue behind each other, never behind others' work)
    dialer: ThreadPoolExecutor | None = None


@dataclass
class _Stream:
    id: int
    kind: str  # "data" | "error"
    request_id: str
    port: int
    inbox: asyncio.Queue[bytes | None] = field(default_factory=lambda: asyncio.Queue(QUEUE_CHUNKS))
    remote_fin: bool = False
    local_fin: bool = False
    reset: bool = False
    task: asyncio.Task[None] | None = None  # the forwarded connection, once both streams are there


class Session:
    """One tunnelled SPDY connection: its streams and the connections they forward."""

    def __init__(self, ws: web.WebSocketResponse, call: PortForwardCall) -> None:
        self.ws, self.call = ws, call
        self.inflate = zlib.decompressobj(zdict=DICTIONARY)
        self.deflate = zlib.compressobj(
            zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY, DICTIONARY
        )
        self.streams: dict[int, _Stream] = {}
        self.pending: dict[str, dict[str, _Stream]] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.last_id = 0
        self.send_lock = asyncio.Lock()
        self.closed = False

    # -- output ---------------------------------------------------------------------------

    async def send(self, frame: bytes) -> None:
        if self.closed or self.ws.closed:
            return
        async with self.send_lock:
            with contextlib.suppress(ConnectionResetError):
                await self.ws.send_bytes(frame)

    def header_block(self, headers: dict[str, str]) -> bytes:
        return self.deflate.compress(encode_headers(headers)) + self.deflate.flush(zlib.Z_SYNC_FLUSH)

    async def send_data(self, st: _Stream, data: bytes, fin: bool = False) -> None:
        if st.reset or st.local_fin:
            return
        for i in range(0, len(data), READ_CHUNK):
            await self.send(data_frame(st.id, 0, data[i : i + READ_CHUNK]))
        if fin:
            st.local_fin = True
            await self.send(data_frame(st.id, FLAG_FIN, b""))

    async def rst(self, stream_id: int, code: int) -> None:
        await self.send(control_frame(RST_STREAM, 0, struct.pack(">II", stream_id & 0x7FFFFFFF, code)))

    # -- input ------------------------------------------------------------------------------

    async def run(self) -> None:
        buf = bytearray()
        try:
            async for msg in self.ws:
                if msg.type != web.WSMsgType.BINARY:
                    if msg.type == web.WSMsgType.TEXT:
                        buf += msg.data.encode("utf-8", "surrogatepass")
                    else:
                        continue
                else:
                    buf += msg.data
                while len(buf) >= 8:
                    (length,) = struct.unpack_from(">I", buf, 4)
                    length &= 0xFFFFFF
                    if length > MAX_FRAME:
                        raise ProtocolError(f"frame of {length} bytes (at most {MAX_FRAME})")
                    if len(buf) < 8 + length:
                        break
                    frame = bytes(buf[: 8 + length])
                    del buf[: 8 + length]
                    await self.frame(frame)
                if len(buf) > MAX_FRAME + 8:
                    raise ProtocolError("frame too large")
        except ProtocolError as e:
            log.info("port-forward to %s/%s: %s", self.call.ns, self.call.pod, e)
            await self.send(control_frame(GOAWAY, 0, struct.pack(">II", self.last_id, GOAWAY_PROTOCOL_ERROR)))
        finally:
            self.closed = True
            for t in list(self.tasks):
                t.cancel()
            for t in list(self.tasks):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t

    async def frame(self, frame: bytes) -> None:
        head, flags_len = struct.unpack_from(">II", frame, 0)
        flags, payload = flags_len >> 24, frame[8:]
        if not head & 0x80000000:
            await self.on_data(head & 0x7FFFFFFF, flags, payload)
            return
        version, kind = head >> 16 & 0x7FFF, head & 0xFFFF
        if version != 3:
            raise ProtocolError(f"SPDY version {version} (only 3 is spoken)")
        if kind == SYN_STREAM:
            await self.on_syn_stream(flags, payload)
        elif kind == RST_STREAM:
            if len(payload) != 8:
                raise ProtocolError("RST_STREAM of the wrong size")
            await self.on_rst(struct.unpack(">II", payload)[0] & 0x7FFFFFFF)
        elif kind == PING:
            if len(payload) != 4:
                raise ProtocolError("PING of the wrong size")
            await self.send(control_frame(PING, 0, payload))
        elif kind == GOAWAY:
            await self.ws.close()
        elif kind == HEADERS:
            self.inflate_block(payload[4:])  # keeps the shared zlib context in step
        elif kind in (SETTINGS, WINDOW_UPDATE, SYN_REPLY):
            pass  # no windows are enforced (module docstring); a server gets no SYN_REPLY it needs
        # unknown control frames are ignored, as SPDY/3 says

    def inflate_block(self, block: bytes) -> dict[str, str]:
        try:
            raw = self.inflate.decompress(block, MAX_HEADER_BLOCK)
        except zlib.error as e:
            raise ProtocolError(f"header block does not decompress: {e}") from None
        if self.inflate.unconsumed_tail:
            raise ProtocolError(f"header block over {MAX_HEADER_BLOCK} bytes")
        return decode_headers(raw)

    async def on_syn_stream(self, flags: int, payload: bytes) -> None:
        if len(payload) < 10:
            raise ProtocolError("SYN_STREAM too short")
        sid = struct.unpack_from(">I", payload, 0)[0] & 0x7FFFFFFF
        headers = self.inflate_block(payload[10:])
        if sid % 2 == 0 or sid <= self.last_id:
            await self.rst(sid, PROTOCOL_ERROR)
            return
        self.last_id = sid
        kind, request_id, port_s = headers.get("streamtype", ""), headers.get("requestid", ""), headers.get("port", "")
        await self.send(control_frame(SYN_REPLY, 0, struct.pack(">I", sid) + self.header_block({})))
        if kind not in ("data", "error"):
            await self.rst(sid, PROTOCOL_ERROR)
            return
        port = int(port_s) if port_s.isdigit() and len(port_s) <= 5 else 0
        st = _Stream(sid, kind, request_id, port, remote_fin=bool(flags & FLAG_FIN))
        group = self.pending.get(request_id)
        if group is None:
            if len(self.pending) >= MAX_PENDING:
                await self.rst(sid, REFUSED_STREAM)
                return
            group = self.pending[request_id] = {}
        if kind in group:
            await self.rst(sid, STREAM_IN_USE)
            return
        self.streams[sid] = st
        group[kind] = st
        if len(group) == 2:
            del self.pending[request_id]
            task = asyncio.ensure_future(self.forward(group["data"], group["error"]))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            ids = (group["data"].id, group["error"].id)
            # a finished connection's streams are forgotten (late frames for them are dropped):
            # a session holds what is open, not every stream it has seen
            task.add_done_callback(lambda _t: [self.streams.pop(i, None) for i in ids])
            group["data"].task = group["error"].task = task

    async def on_data(self, sid: int, flags: int, payload: bytes) -> None:
        st = self.streams.get(sid)
        if st is None or st.reset:
            return  # data for a stream we reset or never had: dropped, as SPDY says
        if st.remote_fin:
            await self.rst(sid, PROTOCOL_ERROR)
            return
        if payload and st.kind == "data":
            await st.inbox.put(payload)  # a full inbox pauses this tunnel: backpressure
        if flags & FLAG_FIN:
            st.remote_fin = True
            if st.kind == "data":
                await st.inbox.put(None)

    async def on_rst(self, sid: int) -> None:
        st = self.streams.pop(sid, None)
        if st is None:
            return
        st.reset = True
        if st.kind == "data" and st.task is not None:
            st.task.cancel()  # the client gave the connection up: close it on the pod's side too

    # -- one forwarded connection -------------------------------------------------------------

    async def forward(self, data: _Stream, err: _Stream) -> None:
        try:
            active = sum(1 for t in self.tasks if not t.done())
            if active > MAX_PAIRS:
                raise ApiError(429, "TooManyRequests", f"at most {MAX_PAIRS} forwarded connections at once")
            if not 0 < data.port < 65536 or data.port != err.port:
                raise ApiError(400, "BadRequest", f"invalid port {data.port}: a port is 1 to 65535")
            self.call.budget.take()
        except ApiError as e:
            text = f"error forwarding port {data.port} to pod {self.call.pod}, uid {self.call.uid}: {e.message}"
            await self.send_data(err, text.encode(), fin=True)
            await self.send_data(data, b"", fin=True)
            return
        try:
            await self._forward(data, err)
        finally:
            self.call.budget.give()

    async def _forward(self, data: _Stream, err: _Stream) -> None:
        writer: asyncio.StreamWriter | None = None
        try:
            loop = asyncio.get_running_loop()
            sock = await loop.run_in_executor(
                self.call.dialer, self.call.io.port_forward, self.call.ns, self.call.pod, data.port
            )
            reader, writer = await asyncio.open_connection(sock=sock, limit=READ_CHUNK)
        except (ApiError, OSError) as e:
            msg = e.message if isinstance(e, ApiError) else (e.strerror or str(e))
            text = f"error forwarding port {data.port} to pod {self.call.pod}, uid {self.call.uid}: {msg}"
            await self.send_data(err, text.encode(), fin=True)
            await self.send_data(data, b"", fin=True)
            return
        w = writer

        async def to_pod() -> None:
            while True:
                chunk = await data.inbox.get()
                if chunk is None:
                    break
                w.write(chunk)
                await w.drain()
            if w.can_write_eof():
                w.write_eof()

        async def from_pod() -> None:
            while True:
                chunk = await reader.read(READ_CHUNK)
                if not chunk:
                    break
                await self.send_data(data, chunk)
            await self.send_data(data, b"", fin=True)

        up, down = asyncio.ensure_future(to_pod()), asyncio.ensure_future(from_pod())
        try:
            await asyncio.wait({down, up}, return_when=asyncio.FIRST_EXCEPTION)
            if not down.done():
                await down
            if not up.done():  # the pod closed its side: the client's later data is not wanted
                up.cancel()
        except (ConnectionError, OSError):
            pass
        finally:
            for t in (up, down):
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionError, OSError):
                    await t
            w.close()
            with contextlib.suppress(ConnectionError, OSError):
                await w.wait_closed()
            await self.send_data(data, b"", fin=True)
            await self.send_data(err, b"", fin=True)


async def serve(request: web.Request, call: PortForwardCall) -> web.StreamResponse:
    """Upgrade to the tunnelled SPDY WebSocket and serve the session until either side ends it."""

    def refuse(message: str) -> web.Response:
        e = ApiError(400, "BadRequest", message)
        resp = web.Response(status=400, body=go_json(e.to_status()))
        resp.headers["Content-Type"] = "application/json"
        return resp

    ws = web.WebSocketResponse(protocols=(WS_PROTOCOL, CHANNEL_PROTOCOL), max_msg_size=4 * MAX_FRAME, autoping=True)
    ready = ws.can_prepare(request)
    if not ready.ok:
        return refuse(
            f"port-forward is served over WebSocket (subprotocol {WS_PROTOCOL}, kubectl 1.31 or newer, "
            f"or {CHANNEL_PROTOCOL} with ?ports=), not over a bare SPDY upgrade"
        )
    if ready.protocol is None:
        return refuse(
            f"none of the requested WebSocket subprotocols is served: use {WS_PROTOCOL} or {CHANNEL_PROTOCOL}"
        )
    ports: list[int] = []
    if ready.protocol == CHANNEL_PROTOCOL:
        for value in request.query.getall("ports", []):
            for item in value.split(","):
                port = int(item) if item.strip().isdigit() and len(item.strip()) <= 5 else 0
                if not 0 < port < 65536:
                    return refuse(f"invalid port {item!r}: a port is 1 to 65535")
                ports.append(port)
        if not ports:
            return refuse("at least one port is required: ?ports=PORT[,PORT...]")
        if len(ports) > MAX_PAIRS:
            return refuse(f"at most {MAX_PAIRS} ports at once")
    await ws.prepare(request)
    call.dialer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="portforward-dial")
    try:
        if ready.protocol == CHANNEL_PROTOCOL:
            await serve_channels(ws, call, ports)
        else:
            await Session(ws, call).run()
    except ConnectionResetError:
        pass
    except Exception:  # a bug ends this session, never the listener
        log.exception("port-forward to %s/%s failed", call.ns, call.pod)
    finally:
        call.dialer.shutdown(wait=False, cancel_futures=True)
        if not ws.closed:
            with contextlib.suppress(ConnectionResetError):
                await ws.close()
    return ws


async def serve_channels(ws: web.WebSocketResponse, call: PortForwardCall, ports: list[int]) -> None:
    """The channel protocol (``v4.channel.k8s.io``, the Python client's and the kubelet's
    WebSocket port-forward): per port ``i`` (in ``?ports=`` order) data on channel ``2i`` and
    errors on ``2i+1``, each first announcing its port as two little-endian bytes. One
    connection per port per session; the session ends when every connection has."""
    loop = asyncio.get_running_loop()
    send_lock = asyncio.Lock()

    async def send(channel: int, data: bytes) -> None:
        async with send_lock:
            if not ws.closed:
                await ws.send_bytes(bytes([channel]) + data)

    for i, port in enumerate(ports):
        await send(2 * i, struct.pack("<H", port))
        await send(2 * i + 1, struct.pack("<H", port))
    inboxes = [asyncio.Queue[bytes](QUEUE_CHUNKS) for _ in ports]

    async def pump(i: int, port: int) -> None:
        try:
            call.budget.take()
        except ApiError as e:
            await send(
                2 * i + 1, f"error forwarding port {port} to pod {call.pod}, uid {call.uid}: {e.message}".encode()
            )
            return
        try:
            await pump_taken(i, port)
        finally:
            call.budget.give()

    async def pump_taken(i: int, port: int) -> None:
        try:
            sock = await loop.run_in_executor(call.dialer, call.io.port_forward, call.ns, call.pod, port)
            reader, writer = await asyncio.open_connection(sock=sock, limit=READ_CHUNK)
        except (ApiError, OSError) as e:
            msg = e.message if isinstance(e, ApiError) else (e.strerror or str(e))
            await send(2 * i + 1, f"error forwarding port {port} to pod {call.pod}, uid {call.uid}: {msg}".encode())
            return

        async def to_pod() -> None:
            while True:  # what the client sent before the pod answered waits in the inbox
                writer.write(await inboxes[i].get())
                await writer.drain()

        up = asyncio.ensure_future(to_pod())
        try:
            while chunk := await reader.read(READ_CHUNK):
                await send(2 * i, chunk)
        finally:
            up.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError, OSError):
                await up
            writer.close()

    async def client() -> None:
        async for msg in ws:
            raw = msg.data if msg.type == web.WSMsgType.BINARY else b""
            if len(raw) < 2 or raw[0] % 2 or raw[0] // 2 >= len(ports):
                continue  # the error channels and unknown ones are read-only
            await inboxes[raw[0] // 2].put(raw[1:])  # a full inbox pauses the WebSocket

    async def pump_all() -> None:
        await asyncio.gather(*(pump(i, port) for i, port in enumerate(ports)))

    pumps, reading = asyncio.ensure_future(pump_all()), asyncio.ensure_future(client())
    try:
        await asyncio.wait({reading, pumps}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (pumps, reading):
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError, OSError):
                await t


def connect_in(sock: socket.socket, port: int, timeout: float = CONNECT_TIMEOUT) -> socket.socket:
    """Connect a socket made in a pod's network namespace to that pod's own loopback."""
    sock.settimeout(timeout)
    try:
        sock.connect(("127.0.0.1", port))
    except BaseException:
        sock.close()
        raise
    sock.setblocking(False)
    return sock
