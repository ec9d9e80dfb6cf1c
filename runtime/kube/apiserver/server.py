"""Serving many lab clusters from one HTTPS listener.

Routing: each cluster's kubeconfig says
``server: https://HOST:PORT/clusters/NAME`` and ``tls-server-name: NAME.cluster.kubelab``.
client-go keeps the path prefix for every request (discovery included), so
the path picks the cluster; the SNI name picks the certificate, so each
cluster presents a serving certificate signed by its own CA (one socket, many
CAs). A bearer token is looked up only in the cluster the path names, so a
token of one cluster is worthless on another.

Clusters are loaded lazily on their first request (a cluster created by
``new-cluster`` while the server runs is picked up without a restart).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import signal
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiohttp import web

from runtime.kube.apiserver import pki
from runtime.kube.apiserver.cluster import Cluster, ControllerFactory
from runtime.kube.apiserver.podio import (
    BASE64_PROTOCOL,
    CLOSE,
    ERROR,
    RESIZE,
    STDIN,
    STDOUT,
    WS_PROTOCOLS,
    ExecCall,
    LogCall,
    PodStream,
)
from runtime.kube.apiserver.provision import SNI_SUFFIX, clusters_dir, valid_cluster_name
from runtime.kube.apiserver.request import decode_body
from runtime.kube.machinery.apierrors import ApiError, go_json, path_not_found, unauthorized
from runtime.kube.machinery.limits import Limits, expired, request_too_large
from runtime.kube.meta import Reply, Request, WatchReply
from runtime.kube.node import portforward
from runtime.kube.registry import crd, strategies

log = logging.getLogger(__name__)

# one exec/attach WebSocket message (after inflating, when the client negotiated compression):
# aiohttp holds a message whole before it is handed on, in runtimed's memory; kubectl sends
# stdin in messages of at most 32 KiB, a larger one closes the session with 1009
MAX_WS_MESSAGE = 4 << 20
# request bodies decoded at once, across every cluster of the process (Hub.decode); threads
# share the GIL with the loop, which still gets its turn every switch interval (5 ms)
DECODE_THREADS = 2
# a body this small is decoded on the loop (YAML, the slowest, ~35 ms): a classmate's
# ordinary kubectl write never waits for a thread that hostile bodies hold
INLINE_DECODE_BYTES = 8 << 10
_DECODER = ThreadPoolExecutor(max_workers=DECODE_THREADS, thread_name_prefix="kube-decode")


class Hub:
    """All clusters under one data directory, loaded on first use."""

    def __init__(self, data: Path, limits: Limits | None = None, *, controllers: ControllerFactory) -> None:
        self.data = data
        self.controllers = controllers  # each cluster's kube-controller-manager (controllers/manager.py)
        self.limits = limits or Limits()  # every cluster's, unless its cluster.json says otherwise
        self.clusters: dict[str, Cluster] = {}
        self._ssl: dict[str, ssl.SSLContext] = {}
        self._decoding: dict[str, asyncio.Semaphore] = {}  # per cluster: one body decoded at a time
        clusters_dir(data).mkdir(parents=True, exist_ok=True)

    def get(self, name: str) -> Cluster | None:
        c = self.clusters.get(name)
        if c is not None:
            return c
        if not valid_cluster_name(name):
            return None
        d = clusters_dir(self.data) / name
        if not (d / "cluster.json").exists():
            return None
        c = Cluster(name, d, self.limits, controllers=self.controllers)
        c.controllers.reconcile()
        self.clusters[name] = c
        return c

    def ssl_for(self, name: str) -> ssl.SSLContext | None:
        ctx = self._ssl.get(name)
        if ctx is not None:
            return ctx
        d = clusters_dir(self.data) / name
        if not valid_cluster_name(name) or not (d / "tls.crt").exists():
            return None
        ctx = _server_context()
        ctx.load_cert_chain(d / "tls.crt", d / "tls.key")
        if len(self._ssl) > 1024:
            self._ssl.pop(next(iter(self._ssl)))
        self._ssl[name] = ctx
        return ctx

    def default_ssl(self) -> ssl.SSLContext:
        crt, key = self.data / "server.crt", self.data / "server.key"
        if not crt.exists():
            ca, ca_key = pki.make_ca("kubelab-default")
            c, k = pki.make_serving_cert(ca, ca_key, ["localhost"], ["127.0.0.1"])
            key.write_bytes(k)
            key.chmod(0o600)
            crt.write_bytes(c)
        ctx = _server_context()
        ctx.load_cert_chain(crt, key)

        def sni(sslobj: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> None:
            if server_name and server_name.endswith(SNI_SUFFIX):
                other = self.ssl_for(server_name[: -len(SNI_SUFFIX)])
                if other is not None:
                    sslobj.context = other

        ctx.sni_callback = sni
        return ctx

    async def tick(self, interval: float = 10.0) -> None:
        """Run clock-driven controllers (CronJobs) of loaded clusters that have any."""
        while True:
            await asyncio.sleep(interval)
            for c in list(self.clusters.values()):
                if c.controllers.has_timers():
                    try:
                        c.controllers.reconcile()
                    except Exception:
                        log.exception("timed controllers of cluster %s failed", c.name)

    async def decode(self, cluster: Cluster, req: Request) -> None:
        """Decode ``req``'s body off the loop (apiserver/request.py's decode_body): pure CPU work on the
        request's own bytes, which on the loop every cluster of the host shares would stall
        all of them (3 MiB of YAML: about 7 s; of protobuf fields: about 1 s). At most
        ``DECODE_THREADS`` bodies are decoded at once, and one cluster decodes one body at a
        time, so a student who floods their cluster queues behind themselves only; small
        bodies (most of kubectl's) skip the queue."""
        if len(req.body) <= INLINE_DECODE_BYTES:  # a few ms at most: not worth a queue
            decode_body(req, cluster.limits)
            return
        slot = self._decoding.get(cluster.name)
        if slot is None:
            slot = self._decoding[cluster.name] = asyncio.Semaphore(1)
        async with slot:
            await asyncio.get_running_loop().run_in_executor(_DECODER, decode_body, req, cluster.limits)

    def unload(self, name: str) -> None:
        """Forget a loaded cluster (its open watches end); its files are the caller's."""
        self._decoding.pop(name, None)
        c = self.clusters.pop(name, None)
        if c is not None:
            c.store.close()
        self._ssl.pop(name, None)

    def close(self) -> None:
        for c in self.clusters.values():
            c.store.close()


def _server_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def _json_response(reply: Reply, pretty: bool = False) -> web.Response:
    if isinstance(reply.body, str) and reply.content_type == "text/plain":
        return web.Response(status=reply.status, text=reply.body, content_type="text/plain")
    body = bytes(reply.body) if isinstance(reply.body, bytes) else go_json(reply.body, pretty)
    resp = web.Response(status=reply.status, body=body)
    resp.headers["Content-Type"] = reply.content_type
    if reply.status == 429 and isinstance(reply.body, dict):
        retry = (reply.body.get("details") or {}).get("retryAfterSeconds")
        if retry:
            resp.headers["Retry-After"] = str(retry)
    for w in reply.warnings:
        # quoted as Go's strconv.Quote does (net.NewWarningHeader); kubectl drops what it cannot unquote
        text = w.replace("\\", "\\\\").replace('"', '\\"')
        resp.headers.add("Warning", f'299 - "{text}"')
    return resp


def _status_response(e: ApiError, pretty: bool = False) -> web.Response:
    return _json_response(Reply(e.status, e.to_status()), pretty)


def _pretty(request: web.Request) -> bool:
    """kube-apiserver's isPrettyPrint: ``?pretty=`` (strconv.ParseBool) wins; otherwise
    curl, Wget and browsers get indented JSON."""
    pp = request.query.get("pretty", "")
    if pp:
        return pp in ("1", "t", "T", "true", "TRUE", "True")
    ua = request.headers.get("User-Agent", "")
    return ua.startswith(("curl", "Wget", "Mozilla/5.0"))


def make_app(hub: Hub, only: str | None = None) -> web.Application:
    """The HTTP app over ``hub``; with ``only``, it serves that one cluster (a sandbox's
    private listener, see service.py) also without the ``/clusters/NAME`` prefix, and
    answers 404 for any other cluster's path."""

    async def handler(request: web.Request) -> web.StreamResponse:
        name = request.match_info.get("name", only or "")
        tail = "/" + request.match_info.get("tail", "")
        if only is not None and name != only:
            return _status_response(path_not_found(), _pretty(request))
        cluster = hub.get(name)
        if cluster is None:
            return _status_response(unauthorized(), _pretty(request))
        auth = request.headers.get("Authorization", "")
        user = None
        if auth.startswith("Bearer "):
            user = cluster.authenticate(auth[7:].strip())
        if user is None:
            return _status_response(unauthorized(), _pretty(request))
        try:
            body = await _read_body(request, cluster.limits.max_request_bytes)
        except ApiError as e:
            return _status_response(e, _pretty(request))
        req = Request.build(request.method, tail, request.query_string, dict(request.headers), body)
        try:
            req.user = cluster.impersonate(req, user)
        except ApiError as e:
            return _status_response(e, _pretty(request))
        try:
            if body:
                await hub.decode(cluster, req)
            reply = cluster.handle(req)
        except Exception as e:  # a bug must not take the listener down; the client gets a Status
            log.exception("internal error serving %s %s on cluster %s", request.method, tail, name)
            return _status_response(
                ApiError(
                    500, "InternalError", f"an error on the server ({e!r}) has prevented the request from succeeding"
                ),
                _pretty(request),
            )
        if isinstance(reply, WatchReply):
            return await _stream_watch(request, cluster, reply)
        if isinstance(reply.body, LogCall):
            return await _stream_log(request, reply.body)
        if isinstance(reply.body, ExecCall):
            return await _stream_exec(request, reply.body)
        if isinstance(reply.body, portforward.PortForwardCall):
            return await portforward.serve(request, reply.body)
        pretty = _pretty(request)
        if _list_key(reply.body) is not None:
            reply.body = await encode_yielding(reply.body, pretty)
        return _json_response(reply, pretty)

    # bodies are read by _read_body, within the cluster's own limit
    app = web.Application(client_max_size=hub.limits.max_request_bytes)
    app.router.add_route("*", "/clusters/{name}", handler)
    app.router.add_route("*", "/clusters/{name}/{tail:.*}", handler)
    if only is not None:  # in-cluster clients (pods: https://10.96.0.1:443, node/proxy.py) use no prefix
        app.router.add_route("*", "/{tail:.*}", handler)
    return app


# a list reply is encoded in slices of about this many bytes, the loop free between them
ENCODE_SLICE = 256 << 10


def _list_key(body: Any) -> str | None:
    """The key of a list reply's items (``items``; ``rows`` of a Table), if it has many."""
    if not isinstance(body, dict):
        return None
    for key in ("items", "rows"):
        v = body.get(key)
        if isinstance(v, list) and len(v) > 16:
            return key
    return None


async def encode_yielding(body: dict[str, Any], pretty: bool) -> bytes:
    """``go_json(body, pretty)``, byte for byte, letting the loop run other requests between
    slices of the list. json.dumps of a whole list holds the loop (and the GIL) throughout:
    one student's 30 MiB ``kubectl get -o json`` (or curl's indented copy) took 200 ms, during
    which no other cluster of the host answered anything. The items are the store's own
    objects, which nothing changes in place (a write stores a new object), as a watch's
    stream already relies on across its awaits."""
    key = _list_key(body)
    if key is None:
        return go_json(body, pretty)
    indent = b"\n  " if pretty else b""
    parts = []
    for k, v in body.items():
        name = go_json(k)[:-1] + (b": " if pretty else b":")
        if k != key:
            parts.append(name + _nested(v, pretty, 1))
            continue
        items, size = [], 0
        for item in v:
            enc = _nested(item, pretty, 2)
            items.append(enc)
            size += len(enc)
            if size >= ENCODE_SLICE:
                size = 0
                await asyncio.sleep(0)
        if not items:
            parts.append(name + b"[]")
        elif pretty:
            parts.append(name + b"[\n    " + b",\n    ".join(items) + b"\n  ]")
        else:
            parts.append(name + b"[" + b",".join(items) + b"]")
    if pretty:
        return b"{" + indent + (b"," + indent).join(parts) + b"\n}"
    return b"{" + b",".join(parts) + b"}\n"


def _nested(value: Any, pretty: bool, depth: int) -> bytes:
    """``value`` as go_json writes it ``depth`` levels in (JSON text holds no raw newline but
    between tokens, so re-indenting is a replace)."""
    if pretty:
        return go_json(value, True).replace(b"\n", b"\n" + b"  " * depth)
    return go_json(value)[:-1]


async def _read_body(request: web.Request, limit: int) -> bytes:
    """The request body, or the 413 Status kube-apiserver's ``limitedReadBody`` answers once
    it is over ``limit`` (JSON, YAML, protobuf or a patch alike), without reading the rest."""
    if not request.can_read_body:
        return b""
    if request.content_length is not None and request.content_length > limit:
        raise request_too_large(limit)
    buf = bytearray()
    async for chunk in request.content.iter_chunked(1 << 16):
        buf += chunk
        if len(buf) > limit:
            raise request_too_large(limit)
    return bytes(buf)


def _event_obj(w: WatchReply, obj: dict[str, Any]) -> dict[str, Any]:
    if w.rdef.custom:  # stored in the CRD's storage version, sent in the watched one
        obj = crd.as_version(obj, w.rdef.group_version, w.rdef.schema)
    if w.table:
        meta = {"resourceVersion": obj["metadata"].get("resourceVersion", "")}
        return strategies.for_resource(w.rdef).convert_to_table(w.rdef, [obj], w.include_object, meta)
    return obj


async def _stream_watch(request: web.Request, cluster: Cluster, w: WatchReply) -> web.StreamResponse:
    """Stream a watch: its initial events, then what the store's watch cache holds for it
    (apiserver/store.py). A watcher that fell behind the cache ends with an ``ERROR`` event (410
    ``Expired``): the client re-lists. If its client reads nothing at all, the write in
    progress never ends; the connection is cut ``watch_stall_seconds`` after the expiry, so
    what that write holds is not held for ever."""
    store = cluster.store
    watcher = w.watcher
    resp = web.StreamResponse(status=200)
    resp.headers["Content-Type"] = "application/json;as=Table;v=v1;g=meta.k8s.io" if w.table else "application/json"
    resp.enable_chunked_encoding()
    loop = asyncio.get_running_loop()
    writing = False

    def cut() -> None:
        if writing and request.transport is not None:
            request.transport.abort()

    def on_expire() -> None:
        loop.call_later(cluster.limits.watch_stall_seconds, cut)

    watcher.on_expire = on_expire
    try:
        await resp.prepare(request)

        async def send(typ: str, obj: dict[str, Any]) -> int:
            nonlocal writing
            line = go_json({"type": typ, "object": obj})  # json.Encoder.Encode: one line each
            writing = True
            try:
                await resp.write(line)
            finally:
                writing = False
            return len(line)

        sent = 0
        for typ, obj in w.initial:
            sent += await send(typ, _event_obj(w, obj))
            if sent >= ENCODE_SLICE:  # a replay of a full cluster: other requests run between slices
                sent = 0
                await asyncio.sleep(0)
        last_rv = str(store.rv)
        if w.initial_end_bookmark:
            await send("BOOKMARK", _bookmark(w, last_rv, initial_end=True))
        deadline = time.monotonic() + w.timeout
        idle = 0.0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            watcher.wake.clear()
            ev = store.next_event(watcher)
            if ev is not None:
                idle = 0.0
                if ev.rv <= w.start_rv and w.initial:
                    continue
                await send(ev.type, _event_obj(w, ev.obj))
                continue
            if watcher.expired:
                oldest = store.history[0].rv - 1 if store.history else store.rv
                await send("ERROR", expired(watcher.pos, oldest).to_status())
                break
            if watcher.closed:
                break
            try:
                await asyncio.wait_for(watcher.wake.wait(), timeout=min(remaining, 5.0))
            except TimeoutError:
                if request.transport is None or request.transport.is_closing():
                    break  # the client went away: drop the watcher now, not at the next event
                idle += 5.0
                if w.bookmarks and idle >= 60.0 and deadline - time.monotonic() > 0:
                    idle = 0.0
                    await send("BOOKMARK", _bookmark(w, str(store.rv)))
        await resp.write_eof()
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        watcher.on_expire = None
        store.watchers.discard(watcher)
    return resp


async def _stream_log(request: web.Request, call: LogCall) -> web.StreamResponse:
    """``GET .../log``: the PodIO's log as chunked text/plain until it ends or the client
    goes away. The blocking reads run on a one-thread pool of this request's own; when the
    client leaves, ``close()`` ends the read in progress and the thread with it."""
    loop = asyncio.get_running_loop()
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pod-log")
    stream = None
    resp = web.StreamResponse(status=200)
    try:
        try:
            stream = await loop.run_in_executor(pool, call.open)
        except ApiError as e:
            return _status_response(e)
        except Exception as e:  # a PodIO bug: the client gets a Status, the listener stays up
            log.exception("logs of pod %s/%s failed", call.ns, call.pod)
            msg = f"an error on the server ({e!r}) has prevented the request from succeeding"
            return _status_response(ApiError(500, "InternalError", msg))
        resp.headers["Content-Type"] = "text/plain"
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        while True:
            chunk = await _until_gone(request, loop.run_in_executor(pool, stream.read))
            if chunk is None:
                break
            await resp.write(chunk)
        await resp.write_eof()
        return resp
    except ConnectionResetError:  # the client went away
        return resp
    finally:
        if stream is not None:
            stream.close()
        pool.shutdown(wait=False, cancel_futures=True)


async def _until_gone(request: web.Request, fut: asyncio.Future[bytes | None]) -> bytes | None:
    """The result of ``fut``, or ConnectionResetError as soon as the client has gone (a
    follow on a quiet container would otherwise wait for the next line to notice)."""
    while True:
        done, _ = await asyncio.wait({fut}, timeout=1.0)
        if done:
            return fut.result()
        if request.transport is None or request.transport.is_closing():
            raise ConnectionResetError("the client went away")


def _exit_status(call: ExecCall, code: int) -> dict[str, Any]:
    """The error channel's last word: kubectl exits with the ExitCode cause's number."""
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    what = f"error executing command [{' '.join(call.command)}]" if call.command else "attached process"
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: {what}, exit code {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


async def _send_channel(ws: web.WebSocketResponse, channel: int, data: bytes) -> None:
    """One message on a channel: binary ``[channel] + data``, or for v4.base64 a text frame
    of the channel's ASCII digit and the data in base64 (wsstream's base64Codec)."""
    if ws.ws_protocol == BASE64_PROTOCOL:
        await ws.send_str(chr(ord("0") + channel) + base64.b64encode(data).decode("ascii"))
    else:
        await ws.send_bytes(bytes([channel]) + data)


def _read_channel(ws: web.WebSocketResponse, msg: Any) -> tuple[int, bytes] | None:
    """(channel, data) of a client message, None for what carries none. wsstream reads a
    frame's payload whatever its opcode: text frames (the Python client's
    ``write_stdin(str)``) are read as binary ones, except under v4.base64, where the
    channel is an ASCII digit and the data base64."""
    if msg.type == web.WSMsgType.TEXT:
        raw = msg.data.encode("utf-8", "surrogatepass")
    elif msg.type == web.WSMsgType.BINARY:
        raw = msg.data
    else:
        return None
    if not raw:
        return None
    if ws.ws_protocol == BASE64_PROTOCOL:
        try:
            return raw[0] - ord("0"), base64.b64decode(raw[1:], validate=True)
        except ValueError:
            return None
    return raw[0], raw[1:]


async def _stream_exec(request: web.Request, call: ExecCall) -> web.StreamResponse:
    """exec/attach over a WebSocket (channel protocol v5, or v4: see apiserver/podio.py). The command
    is a repeated query parameter, read here (``Request.query`` keeps one value per name)."""
    if call.kind == "exec":
        call.command = request.query.getall("command", [])
        if not call.command:
            return _status_response(ApiError(400, "BadRequest", "you must specify at least 1 command"))
    ws = web.WebSocketResponse(protocols=WS_PROTOCOLS, max_msg_size=MAX_WS_MESSAGE)
    ready = ws.can_prepare(request)
    if not ready.ok:
        msg = (
            f"{call.kind} is served over WebSocket only (subprotocol {WS_PROTOCOLS[0]} or {WS_PROTOCOLS[1]}), "
            "not SPDY: use kubectl 1.30 or newer"
        )
        return _status_response(ApiError(400, "BadRequest", msg))
    if ready.protocol is None:
        msg = f"none of the requested WebSocket subprotocols is served: use {' or '.join(WS_PROTOCOLS)}"
        return _status_response(ApiError(400, "BadRequest", msg))
    await ws.prepare(request)
    loop = asyncio.get_running_loop()
    # at most one read and one write/resize at a time: two threads, for this session only
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix=f"pod-{call.kind}")
    stream: PodStream | None = None
    try:
        try:
            stream = await loop.run_in_executor(pool, call.open)
        except ApiError as e:
            await _send_channel(ws, ERROR, go_json(e.to_status())[:-1])
            return ws
        await _exec_session(ws, call, stream, pool)
    except ConnectionResetError:
        pass
    except Exception as e:  # a PodIO bug ends this session with a Status, not the listener
        log.exception("%s in pod %s/%s failed", call.kind, call.ns, call.pod)
        if not ws.closed:
            err = ApiError(
                500, "InternalError", f"an error on the server ({e!r}) has prevented the request from succeeding"
            )
            with contextlib.suppress(ConnectionResetError):
                await _send_channel(ws, ERROR, go_json(err.to_status())[:-1])
    finally:
        if stream is not None:
            stream.close()
        pool.shutdown(wait=False, cancel_futures=True)
        if not ws.closed:
            with contextlib.suppress(ConnectionResetError):
                await ws.close()
    return ws


async def _exec_session(ws: web.WebSocketResponse, call: ExecCall, stream: PodStream, pool: ThreadPoolExecutor) -> None:
    """Pump output to the client and its stdin/resize/close messages to the stream until
    the process ends (then its exit status on channel 3) or the client goes away."""
    loop = asyncio.get_running_loop()
    v5 = ws.ws_protocol == WS_PROTOCOLS[0]

    async def output() -> None:
        while True:
            item = await loop.run_in_executor(pool, stream.read)
            if item is None:
                break
            channel, data = item
            if data and (call.stdout if channel == STDOUT else call.stderr):
                await _send_channel(ws, channel, data)
        code = await loop.run_in_executor(pool, stream.exit_code)
        await _send_channel(ws, ERROR, go_json(_exit_status(call, code))[:-1])

    async def client() -> None:
        stdin_open = call.stdin
        async for msg in ws:
            got = _read_channel(ws, msg)
            if got is None:
                continue
            channel, data = got
            if channel == STDIN and stdin_open and data:
                try:
                    await loop.run_in_executor(pool, stream.write, data)
                except OSError:  # the process closed its stdin or ended: drop the rest
                    stdin_open = False
            elif channel == RESIZE:
                try:
                    size = json.loads(data)
                    cols, rows = int(size["Width"]), int(size["Height"])
                except (ValueError, TypeError, KeyError):
                    continue
                await loop.run_in_executor(pool, stream.resize, cols, rows)
            elif channel == CLOSE and v5 and data[:1] == bytes([STDIN]) and stdin_open:
                stdin_open = False
                await loop.run_in_executor(pool, stream.close_stdin)

    out, inp = asyncio.ensure_future(output()), asyncio.ensure_future(client())
    try:
        await asyncio.wait({out, inp}, return_when=asyncio.FIRST_COMPLETED)
        if out.done():
            out.result()  # the status is sent (or sending it failed: raised here)
        else:  # the client closed the connection or went away: end the process now
            stream.close()
    finally:
        for t in (out, inp):
            t.cancel()
        for t in (out, inp):
            with contextlib.suppress(asyncio.CancelledError, ConnectionResetError):
                await t


def _bookmark(w: WatchReply, rv: str, initial_end: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"resourceVersion": rv}
    if initial_end:
        meta["annotations"] = {"k8s.io/initial-events-end": "true"}
    return {"kind": w.rdef.kind, "apiVersion": w.rdef.group_version, "metadata": meta}


async def serve(
    data: Path,
    host: str,
    port: int,
    ready: asyncio.Event | None = None,
    limits: Limits | None = None,
    *,
    controllers: ControllerFactory,
) -> None:
    hub = Hub(data, limits, controllers=controllers)
    app = make_app(hub)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=hub.default_ssl(), backlog=512)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    ticker = asyncio.create_task(hub.tick())
    if ready is not None:
        ready.set()
    print(f"serving clusters under {data} on https://{host}:{port}", flush=True)
    try:
        await stop.wait()
    finally:
        ticker.cancel()
        hub.close()
        await runner.cleanup()
