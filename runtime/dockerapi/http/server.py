"""HTTP/1.1 for the Docker socket: a small asyncio server, chunked streams, hijacked connections.

Why not aiohttp's web server: the Docker API *hijacks* connections (``POST
/containers/{id}/attach``, ``POST /exec/{id}/start``). The client sends ``Connection:
Upgrade`` / ``Upgrade: tcp``, the daemon answers ``101 UPGRADED`` and from then on the
socket carries raw bytes both ways, and the client *half-closes* it when its stdin ends
(``echo hi | docker exec -i c cat``: the output still has to come back after that).
aiohttp's HTTP parser only honours ``Upgrade: websocket`` (any other upgrade is parsed
as more HTTP requests) and its protocol closes the transport on a half-close. Here an
``asyncio.StreamReader`` sees the half-close as EOF while the transport stays writable,
which is exactly the semantics Docker needs.

What is here:

* ``Request``: one parsed request (query as lists, lower-case headers, the body read on
  demand: ``Content-Length`` or chunked, whole or as a stream), and the connection's
  reader/writer for the handlers that stream or hijack.
* ``Response`` (a whole body) and ``ChunkedStream`` (``Transfer-Encoding: chunked``:
  build progress, pulls, logs, ``docker save``, events, wait).
* ``hijack``: the attach/exec plumbing. Output of an engine ``Stream`` goes to the client
  raw (TTY) or as ``stdcopy`` frames (8-byte header ``[stream, 0, 0, 0, len32be]``), the
  client's bytes go to the process's stdin, the client's EOF closes that stdin, the
  detach keys (default ctrl-p ctrl-q) detach a TTY session, and the connection closes
  when the output ends.
* ``thread_iter`` / ``ThreadPut``: blocking engine work (a log follow, a build, a
  process's output) runs in a dedicated daemon thread, never in the loop's default
  executor (a handful of long waits would starve it), and hands items over through a
  bounded ``asyncio.Queue``, so a slow client slows the producer instead of buffering
  without bound. A ``threading.Event`` tells the thread to stop when the client goes.
* ``DockerServer``: serves one request handler on unix sockets, keep-alive, with the
  headers dockerd puts on every response (``Api-Version``, ``Docker-Experimental``,
  ``Ostype``, ``Server``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import select
import socket
import struct
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, Protocol, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

from runtime.dockerapi import API_VERSION, ENGINE_VERSION

log = logging.getLogger("runtime.dockerapi.http.server")

T = TypeVar("T")

MAX_HEAD = 64 * 1024  # request line + headers
MAX_BODY = 1024 * 1024  # a JSON body read whole into runtimed's memory (container create, exec create...)
READ_CHUNK = 64 * 1024
POLL = 0.5  # how often a blocked thread looks at its cancel event (seconds)
# Open connections per server (one engine's sockets): each costs runtimed a descriptor, a
# task and buffers. Past this a new connection is answered 429 and closed.
MAX_CONNECTIONS = 128
RAW_STREAM = "application/vnd.docker.raw-stream"
MULTIPLEXED_STREAM = "application/vnd.docker.multiplexed-stream"
DEFAULT_DETACH_KEYS = b"\x10\x11"  # ctrl-p ctrl-q


def common_headers() -> list[tuple[str, str]]:
    """What dockerd 20.10 sends on every response (the CLI reads ``Api-Version``)."""
    return [
        ("Api-Version", API_VERSION),
        ("Docker-Experimental", "false"),
        ("Ostype", "linux"),
        ("Server", f"Docker/{ENGINE_VERSION} (linux)"),
        ("Date", formatdate(usegmt=True)),
    ]


class HTTPError(Exception):
    """An error of the API layer itself (bad query, unknown route, too new a version)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _ClientGone(Exception):
    """The client closed the connection (or sent garbage): stop serving it."""


class StdinStream(Protocol):
    """The part of the engine's ``Stream`` the hijack plumbing uses."""

    tty: bool

    def read(self, timeout: float | None = None) -> tuple[int, bytes] | None: ...
    def write(self, data: bytes) -> None: ...
    def close_stdin(self) -> None: ...
    def close(self) -> None: ...


# ----------------------------------------------------------------------------------------------
# requests and responses


@dataclass
class Request:
    method: str
    target: str  # as sent
    path: str  # unquoted, without the /v1.NN prefix (set by the router)
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    api_version: str = API_VERSION
    params: dict[str, str] = field(default_factory=dict)
    # connection state
    close_connection: bool = False
    started: bool = False  # a response (or its head) has been written
    _remaining: int = 0  # Content-Length bytes not read yet
    _chunked: bool = False
    _body_done: bool = True

    # -- query helpers -------------------------------------------------------------------------
    def arg(self, name: str, default: str = "") -> str:
        """The parameter's first value, as Go's ``FormValue`` (dockerd's routers) takes it."""
        values = self.query.get(name)
        return values[0] if values else default

    def args(self, name: str) -> list[str]:
        return [v for v in self.query.get(name, []) if v != ""]

    def flag(self, name: str, default: bool = False) -> bool:
        value = self.arg(name)
        if value == "":
            return default
        return value.lower() not in ("0", "false", "no", "off")

    def int_arg(self, name: str, default: int | None = None) -> int | None:
        value = self.arg(name)
        if value == "":
            return default
        try:
            return int(value)
        except ValueError:
            raise HTTPError(400, f"invalid value for {name}: {value!r} is not an integer") from None

    def float_arg(self, name: str, default: float = 0.0) -> float:
        value = self.arg(name)
        if value == "":
            return default
        try:
            return float(value)
        except ValueError:
            raise HTTPError(400, f"invalid value for {name}: {value!r} is not a number") from None

    def json_arg(self, name: str, default: Any) -> Any:
        value = self.arg(name)
        if value == "":
            return default
        try:
            return json.loads(value)
        except ValueError:
            raise HTTPError(400, f"invalid JSON in the {name} parameter: {value[:100]!r}") from None

    @property
    def wants_upgrade(self) -> bool:
        conn = {t.strip().lower() for t in self.headers.get("connection", "").split(",")}
        return "upgrade" in conn and bool(self.headers.get("upgrade"))

    # -- body ----------------------------------------------------------------------------------
    async def iter_body(self) -> AsyncIterator[bytes]:
        """The request body as it arrives (both framings)."""
        if not self._body_done and self.headers.get("expect", "").lower() == "100-continue" and not self.started:
            self.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.headers.pop("expect")
        if self._chunked:
            while not self._body_done:
                line = await self._readline()
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise _ClientGone("bad chunk size") from None
                if size == 0:
                    while (await self._readline()) not in (b"", b"\r\n", b"\n"):
                        pass  # trailers
                    self._body_done = True
                    break
                while size:
                    data = await self.reader.read(min(size, READ_CHUNK))
                    if not data:
                        raise _ClientGone("body cut short")
                    size -= len(data)
                    yield data
                await self._readline()
        else:
            while self._remaining > 0:
                data = await self.reader.read(min(self._remaining, READ_CHUNK))
                if not data:
                    raise _ClientGone("body cut short")
                self._remaining -= len(data)
                yield data
            self._body_done = True

    async def body(self, limit: int = MAX_BODY) -> bytes:
        parts: list[bytes] = []
        size = 0
        async for data in self.iter_body():
            size += len(data)
            if size > limit:
                raise HTTPError(413, f"request body larger than {limit} bytes")
            parts.append(data)
        return b"".join(parts)

    async def json(self) -> Any:
        raw = await self.body()
        if not raw.strip():
            return {}
        try:
            return json.loads(raw)
        except ValueError as e:
            raise HTTPError(400, f"invalid JSON body: {e}") from None

    async def discard_body(self) -> None:
        async for _ in self.iter_body():
            pass

    async def _readline(self) -> bytes:
        try:
            return await self.reader.readuntil(b"\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError) as e:
            raise _ClientGone(str(e)) from None

    # -- writing -------------------------------------------------------------------------------
    def write_head(self, status: int, headers: list[tuple[str, str]], *, reason: str | None = None) -> None:
        reason = reason or HTTPStatus(status).phrase
        lines = [f"HTTP/1.1 {status} {reason}"]
        lines += [f"{k}: {v}" for k, v in [*common_headers(), *headers]]
        if self.close_connection and not any(k.lower() == "connection" for k, _ in headers):
            lines.append("Connection: close")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        self.started = True

    async def watch_disconnect(self, *events: threading.Event) -> None:
        """Set ``events`` when the client closes the connection (the body must be read)."""
        with contextlib.suppress(Exception):
            while await self.reader.read(READ_CHUNK):
                pass  # a client sends nothing while it waits on a stream
        for event in events:
            event.set()


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)

    async def send(self, req: Request) -> None:
        headers = list(self.headers)
        if self.status not in (204, 304):
            headers += [("Content-Type", self.content_type), ("Content-Length", str(len(self.body)))]
        req.write_head(self.status, headers)
        if req.method != "HEAD" and self.status not in (204, 304):
            req.writer.write(self.body)
        await req.writer.drain()


def json_response(obj: Any, status: int = 200) -> Response:
    return Response(status, json.dumps(obj).encode() + b"\n")


def error_response(status: int, message: str) -> Response:
    return json_response({"message": message}, status)


class ChunkedStream:
    """A streamed response body (``Transfer-Encoding: chunked``), flushed per write."""

    def __init__(self, req: Request) -> None:
        self.req = req

    @classmethod
    async def start(cls, req: Request, content_type: str = "application/json", status: int = 200) -> ChunkedStream:
        req.write_head(status, [("Content-Type", content_type), ("Transfer-Encoding", "chunked")])
        await req.writer.drain()
        return cls(req)

    async def write(self, data: bytes) -> None:
        if data:
            self.req.writer.write(b"%x\r\n%s\r\n" % (len(data), data))
            await self.req.writer.drain()

    async def write_json(self, obj: Any) -> None:
        await self.write(json.dumps(obj).encode() + b"\r\n")

    async def finish(self) -> None:
        self.req.writer.write(b"0\r\n\r\n")
        await self.req.writer.drain()


# ----------------------------------------------------------------------------------------------
# threads <-> the loop

_END = object()


class ThreadPut:
    """Puts items from a worker thread into an asyncio queue, waiting for room, giving up
    when ``cancel`` is set or the loop has gone."""

    def __init__(self, loop: asyncio.AbstractEventLoop, q: asyncio.Queue[Any], cancel: threading.Event) -> None:
        self.loop, self.q, self.cancel = loop, q, cancel

    def __call__(self, item: Any) -> bool:
        try:
            fut = asyncio.run_coroutine_threadsafe(self.q.put(item), self.loop)
        except RuntimeError:  # the loop is closed
            self.cancel.set()
            return False
        while True:
            try:
                fut.result(timeout=POLL)
                return True
            except TimeoutError:
                if self.cancel.is_set():
                    fut.cancel()
                    return False
            except Exception:
                self.cancel.set()
                return False


async def cancel_task(task: asyncio.Future[Any]) -> None:
    """Cancel and await: a reader task must be gone before the connection reads again."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


def start_thread(name: str, target: Callable[[], None]) -> threading.Thread:
    t = threading.Thread(target=target, name=name, daemon=True)
    t.start()
    return t


async def run_in_thread(name: str, fn: Callable[[], T]) -> T:
    """Run a call that may block for long (a wait, a build) in its own thread."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[T] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if not fut.done():
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)

    def target() -> None:
        try:
            result = fn()
        except BaseException as e:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, False, e)
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, True, result)

    start_thread(name, target)
    return await fut


async def thread_iter(name: str, make: Callable[[], Iterator[T]], cancel: threading.Event) -> AsyncIterator[T]:
    """Iterate a blocking iterator in its own thread. Closing the async iterator (or the
    client leaving, via ``cancel``) stops the thread at its next item or poll."""
    loop = asyncio.get_running_loop()
    q: asyncio.Queue[Any] = asyncio.Queue(maxsize=64)
    put = ThreadPut(loop, q, cancel)
    failure: list[BaseException] = []

    def target() -> None:
        try:
            for item in make():
                if not put(item):
                    return
        except BaseException as e:
            failure.append(e)
        put(_END)

    start_thread(name, target)
    try:
        while True:
            item = await q.get()
            if item is _END:
                if failure:
                    raise failure[0]
                return
            yield item
    finally:
        cancel.set()


# ----------------------------------------------------------------------------------------------
# hijacked connections


def frame(stream: int, data: bytes) -> bytes:
    """One ``stdcopy`` frame: [stream, 0, 0, 0, big-endian uint32 length] + data."""
    return struct.pack(">BxxxL", stream, len(data)) + data


def parse_detach_keys(spec: str) -> bytes:
    """Docker's ``--detach-keys`` syntax: ``ctrl-p,ctrl-q``, ``a``, ``ctrl-@``..."""
    if not spec:
        return DEFAULT_DETACH_KEYS
    out = bytearray()
    for key in spec.split(","):
        key = key.strip()
        if len(key) == 1:
            out.append(ord(key))
        elif key.lower().startswith("ctrl-") and len(key) == 6:
            c = key[5].lower()
            codes = {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}
            if "a" <= c <= "z":
                out.append(ord(c) - ord("a") + 1)
            elif c in codes:
                out.append(codes[c])
            else:
                raise HTTPError(400, f"Invalid detach keys ({spec}) provided")
        else:
            raise HTTPError(400, f"Invalid detach keys ({spec}) provided")
    return bytes(out)


class _DetachScanner:
    """Finds the detach sequence in stdin, across chunk boundaries."""

    def __init__(self, keys: bytes) -> None:
        self.keys = keys
        self.pending = b""

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """-> (bytes to pass on, detach now)."""
        buf = self.pending + data
        idx = buf.find(self.keys)
        if idx >= 0:
            self.pending = b""
            return buf[:idx], True
        for n in range(min(len(self.keys) - 1, len(buf)), 0, -1):
            if self.keys.startswith(buf[-n:]):
                self.pending = buf[-n:]
                return buf[:-n], False
        self.pending = b""
        return buf, False


async def upgrade(req: Request, *, tty: bool) -> None:
    """Answer a hijack request: ``101 UPGRADED`` (or, for a client that did not ask to
    upgrade, ``200`` and a body that lasts until the connection closes). Sent before
    an exec's process starts, so the client has read the head before any output comes
    (the SDK reads the stream from the raw socket and would lose what http.client buffered)."""
    req.close_connection = True
    content_type = RAW_STREAM if tty else MULTIPLEXED_STREAM
    if req.wants_upgrade:
        headers = [("Content-Type", content_type), ("Connection", "Upgrade"), ("Upgrade", "tcp")]
        req.write_head(101, headers, reason="UPGRADED")
    else:
        req.write_head(200, [("Content-Type", content_type)])
    await req.writer.drain()


async def hijack(
    req: Request,
    stream: StdinStream,
    *,
    stdin: bool,
    detach_keys: bytes | None = None,
    name: str = "attach",
    stdin_ready: Callable[[], bool] | None = None,
) -> None:
    """Serve an attach/exec session on the request's connection until the output ends,
    the client detaches or leaves. The connection is closed afterwards."""
    if not req.started:
        await upgrade(req, tty=stream.tty)

    loop = asyncio.get_running_loop()
    cancel = threading.Event()
    out_q: asyncio.Queue[Any] = asyncio.Queue(maxsize=64)
    put_out = ThreadPut(loop, out_q, cancel)

    def pump_output() -> None:
        try:
            while not cancel.is_set():
                try:
                    item = stream.read(timeout=POLL)
                except TimeoutError:
                    continue
                if item is None:
                    break
                if item[1] and not put_out(item):
                    return
        except Exception:
            log.exception("%s: reading the process's output failed", name)
        put_out(_END)

    in_q: queue.Queue[bytes | None] = queue.Queue(maxsize=16)

    def pump_input() -> None:
        try:
            # ``docker run -i`` attaches (and sends stdin) before the container starts:
            # hold the input until the process exists to take it
            while stdin_ready is not None and not stdin_ready():
                if cancel.wait(0.05):
                    return
            while True:
                try:
                    data = in_q.get(timeout=POLL)
                except queue.Empty:
                    if cancel.is_set():
                        return
                    continue
                if data is None:
                    stream.close_stdin()
                    return
                stream.write(data)
        except Exception:
            log.debug("%s: writing to the process's stdin failed", name, exc_info=True)

    detached = asyncio.Event()

    async def read_client() -> None:
        scanner = _DetachScanner(detach_keys) if detach_keys and stream.tty else None
        try:
            while True:
                data = await req.reader.read(READ_CHUNK)
                if not data:
                    break
                if not stdin:
                    continue
                if scanner is not None:
                    data, detach = scanner.feed(data)
                    if detach:
                        if data:
                            await _put_blocking(in_q, data, cancel)
                        detached.set()
                        return
                if data:
                    await _put_blocking(in_q, data, cancel)
        except (ConnectionError, OSError):
            pass
        if stdin:
            await _put_blocking(in_q, None, cancel)  # the client's EOF (half-close): stdin ends

    start_thread(f"{name}-out", pump_output)
    if stdin:
        start_thread(f"{name}-in", pump_input)
    reader_task = asyncio.ensure_future(read_client())
    detach_task = asyncio.ensure_future(detached.wait())
    try:
        while True:
            get = asyncio.ensure_future(out_q.get())
            done, _ = await asyncio.wait({get, detach_task}, timeout=POLL * 2, return_when=asyncio.FIRST_COMPLETED)
            if get not in done:
                get.cancel()
                if detach_task in done or req.writer.is_closing():
                    break
                if reader_task.done() and _peer_gone(req.writer):
                    break
                continue
            item = get.result()
            if item is _END:
                break
            fd, data = item
            req.writer.write(data if stream.tty else frame(fd, data))
            await req.writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        cancel.set()
        detach_task.cancel()
        if not reader_task.done():
            # the output ended first: stdin still being written goes on in its thread
            reader_task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.to_thread(stream.close)


def _peer_gone(writer: asyncio.StreamWriter) -> bool:
    """True when the client has closed both directions. A read EOF alone may be a
    half-close (stdin ended, output still wanted); on a unix socket a full close also
    raises POLLHUP on our end."""
    sock = writer.get_extra_info("socket")
    if sock is None:
        return True
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLHUP)
    return any(ev & (select.POLLHUP | select.POLLERR) for _fd, ev in poller.poll(0))


async def _put_blocking(q: queue.Queue[bytes | None], item: bytes | None, cancel: threading.Event) -> None:
    """Hand stdin to its writer thread; waits (in the loop, not a thread) while it is full,
    which stops reading the socket: the client feels the backpressure."""
    while not cancel.is_set():
        try:
            q.put_nowait(item)
            return
        except queue.Full:
            await asyncio.sleep(0.02)


# ----------------------------------------------------------------------------------------------
# the server

Handler = Callable[[Request], Awaitable[Response | None]]


def _parse_head(head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Request:
    try:
        text = head.decode("latin-1")
        lines = text.split("\r\n")
        method, target, version = lines[0].split(" ", 2)
    except ValueError:
        raise _ClientGone("malformed request line") from None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise _ClientGone("malformed header")
        headers[name.strip().lower()] = value.strip()
    parts = urlsplit(target)
    req = Request(
        method=method.upper(),
        target=target,
        path=unquote(parts.path),
        query=parse_qs(parts.query, keep_blank_values=True),
        headers=headers,
        reader=reader,
        writer=writer,
    )
    if "chunked" in headers.get("transfer-encoding", "").lower():
        req._chunked, req._body_done = True, False
    else:
        try:
            req._remaining = int(headers.get("content-length", "0") or "0")
        except ValueError:
            raise _ClientGone("bad Content-Length") from None
        req._body_done = req._remaining == 0
    conn = headers.get("connection", "").lower()
    req.close_connection = "close" in conn or version.upper() == "HTTP/1.0"
    return req


class DockerServer:
    """Serves ``handler`` on unix sockets (HTTP/1.1, keep-alive, hijacking)."""

    def __init__(self, handler: Handler, *, max_connections: int = MAX_CONNECTIONS) -> None:
        self.handler = handler
        self.max_connections = max_connections
        self._servers: list[asyncio.AbstractServer] = []
        self._conns: set[asyncio.Task[None]] = set()

    async def serve_unix(self, path: str) -> None:
        server = await asyncio.start_unix_server(self._connection, path, limit=MAX_HEAD)
        self._servers.append(server)

    async def serve_socket(self, sock: socket.socket) -> None:
        """Serve on a listening unix socket the caller bound (and gave its mode and owner)."""
        server = await asyncio.start_unix_server(self._connection, sock=sock, limit=MAX_HEAD)
        self._servers.append(server)

    async def close(self) -> None:
        """Stop listening and end every open connection (its handler is cancelled)."""
        for server in self._servers:
            server.close()
        for task in list(self._conns):
            task.cancel()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        if self._conns:
            await asyncio.wait(list(self._conns), timeout=5)
        self._servers.clear()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._conns) >= self.max_connections:
            body = json.dumps(
                {
                    "message": f"too many open connections to this Docker engine ({self.max_connections} at most): "
                    "close some (docker logs -f, attach, events...) and try again"
                }
            ).encode()
            lines = ["HTTP/1.1 429 Too Many Requests", *(f"{k}: {v}" for k, v in common_headers())]
            lines += ["Content-Type: application/json", f"Content-Length: {len(body)}", "Connection: close"]
            with contextlib.suppress(Exception):
                writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
                await writer.drain()
            writer.close()
            return
        self._conns.add(task)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.LimitOverrunError:
                    writer.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n\r\n")
                    break
                except asyncio.IncompleteReadError:
                    break
                req = _parse_head(head, reader, writer)
                try:
                    resp = await self.handler(req)
                except HTTPError as e:
                    if req.started:
                        break
                    resp = error_response(e.status, str(e))
                if resp is not None:
                    await resp.send(req)
                if req.close_connection or writer.is_closing():
                    break
                await req.discard_body()
        except (_ClientGone, ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("docker API connection failed")
        finally:
            self._conns.discard(task)
            with contextlib.suppress(Exception):
                writer.close()
