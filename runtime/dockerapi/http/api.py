"""The Docker Engine API (v1.24-1.41) of one sandbox's engine, as the docker CLI 20.10 and
the ``docker`` SDK 7 use it.

``make_app(engine)`` returns a ``DockerAPI``; ``await api.serve_unix(path)`` listens (any
number of sockets, e.g. the sandbox's and the graders'), ``await api.close()`` ends it.
HTTP and the stream plumbing (chunked responses, hijacked attach/exec connections, the
threads that run blocking engine calls) are in ``server.py``: aiohttp's server cannot
hijack a connection with ``Upgrade: tcp`` nor keep it writable after the client's
half-close, so the Docker socket has its own small HTTP/1.1 server.

Routing: every path may carry a ``/v1.NN`` prefix (``MIN_API_VERSION`` to
``API_VERSION``; a newer one is refused the way dockerd refuses it, an older one too)
or none. Image names contain slashes and tags (``GET /images/reg.io/team/app:v1/json``):
their routes match greedily and the action is the last path segment. Unknown routes
answer 404 ``{"message": "page not found"}`` as dockerd does.

Errors: a ``runtime.errors.RuntimeError`` raised by the engine (``ImageNotFound``,
``NotFound``, ``Conflict``, ``Forbidden``, ``BadRequest``, ``NotAvailable``...) becomes
its ``status`` and ``{"message": str(err)}``, which the CLI prints as ``Error response
from daemon: <message>`` and the SDK raises as ``APIError``/``NotFound``. Once a stream
has started (build, pull, logs) an error is sent in-stream as
``{"errorDetail": {"message": ...}, "error": ...}``, as dockerd does.

Blocking engine calls: short ones run in runtimed's default executor (shared by every
sandbox: 64 threads), at most ``OPS_PER_ENGINE`` of one engine at a time (``_call``; the
rest wait on the loop, costing no thread), so one student's flood of ``docker create``
cannot occupy the pool the other 49 need. A slot is given back when the engine call
returns, not when its client goes away. Those that may block for long (wait, logs ``-f``,
builds, ``docker save``, ``docker cp``, attach/exec I/O) get a thread of their own with a
cancel event set when the client goes away, so a client that disconnects leaves neither a
thread nor an attached process behind; they count among the engine's requests in flight,
at most ``MAX_IN_FLIGHT`` (more are answered 429 with the reason), and its connections are
capped too (server.py ``MAX_CONNECTIONS``). So an engine's threads are bounded whatever
its student sends.

Pulls: there is no registry (the lab has no internet). A pull of a catalog reference
(``runtime.images.catalog``) answers dockerd's "up to date" progress stream; any other
is refused with 404 and a message that lists the available images.

``docker cp`` (``/containers/{id}/archive``): the body of a ``PUT`` is spooled to the
sandbox's disk (its quota), then fed to tar in the container (engine/archive.py); ``GET``
streams that tar's output with the ``X-Docker-Container-Path-Stat`` header.

``docker load`` and ``docker import`` bodies are spooled the same way (``_spool``: refused
with 403 once larger than the disk's free space) and handed to images/tarexport.py; ``docker
commit`` and ``docker export`` go to the engine. ``/distribution/{name}/json`` answers for
catalog images as a registry would (Descriptor, Platforms) and refuses any other name as
dockerd does for a repository it cannot reach.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import fnmatch
import functools
import json
import logging
import os
import re
import socket
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from runtime import errors
from runtime.dockerapi import API_VERSION, ENGINE_VERSION, MIN_API_VERSION
from runtime.dockerapi.build import builder as build_module
from runtime.dockerapi.build.builder import BuildParams
from runtime.dockerapi.engine import Engine, archive
from runtime.dockerapi.engine import core as engine_module
from runtime.dockerapi.engine import events as events_module
from runtime.dockerapi.http.server import (
    MULTIPLEXED_STREAM,
    RAW_STREAM,
    ChunkedStream,
    DockerServer,
    HTTPError,
    Request,
    Response,
    ThreadPut,
    cancel_task,
    frame,
    hijack,
    json_response,
    parse_detach_keys,
    run_in_thread,
    thread_iter,
    upgrade,
)
from runtime.dockerapi.images import tarexport
from runtime.dockerapi.images.store import Image
from runtime.images import catalog

log = logging.getLogger("runtime.dockerapi.http.api")

T = TypeVar("T")
BuildFn = Callable[..., str]
Handler = Callable[[Request], Awaitable[Response | None]]

VERSION_RE = re.compile(r"^/v(\d+)\.(\d+)(/.*)$")
# uploads (build contexts, docker cp) up to this stay in runtimed's memory; larger go to the sandbox's disk
SPOOL_MAX = 1024 * 1024
REFUSED_BODY_MAX = 16 * 1024 * 1024  # a refused upload up to this is read before the answer
WAIT_CONDITIONS = ("not-running", "next-exit", "removed")
OPS_PER_ENGINE = 4  # engine calls of one sandbox in runtimed's shared executor at a time
MAX_IN_FLIGHT = 32  # requests of one engine being handled at a time (streams: a thread or two each)
NO_CONTENT = Response(204)
NOT_A_SWARM = (
    'This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" to connect this node '
    "to swarm and try again."
)
SWARM_ROUTES = [
    (m, p)
    for p in (
        r"/swarm",
        r"/swarm/(?:init|join|leave|update|unlock|unlockkey)",
        r"/nodes(?:/[^/]+(?:/update)?)?",
        r"/services(?:/create|/[^/]+(?:/update|/logs)?)?",
        r"/tasks(?:/[^/]+(?:/logs)?)?",
        r"/secrets(?:/create|/[^/]+(?:/update)?)?",
        r"/configs(?:/create|/[^/]+(?:/update)?)?",
    )
    for m in ("GET", "POST", "DELETE")
]
EVENT_FILTERS = (
    "type",
    "event",
    "container",
    "image",
    "label",
    "network",
    "volume",
    "daemon",
    "plugin",
    "node",
    "service",
    "secret",
    "config",
    "scope",
)


def _version_tuple(v: str) -> tuple[int, int]:
    major, minor = v.split(".")
    return int(major), int(minor)


def make_app(engine: Engine, *, build: BuildFn = build_module.build) -> DockerAPI:
    """The Docker Engine API of ``engine``; serve it with ``await app.serve_unix(path)``."""
    return DockerAPI(engine, build=build)


class DockerAPI:
    def __init__(self, engine: Engine, *, build: BuildFn = build_module.build) -> None:
        self.engine = engine
        self.build = build
        self.server = DockerServer(self.handle)
        self._guarded: list[DockerServer] = []
        self._ops = asyncio.Semaphore(OPS_PER_ENGINE)
        self._in_flight = 0
        # pending waits (their threads block in the engine): cancelled and awaited on close
        self._waits: dict[threading.Event, asyncio.Future[int]] = {}
        g, p, d, h = "GET", "POST", "DELETE", "HEAD"
        n = r"(?P<name>.+)"  # image names: slashes allowed
        c = r"(?P<id>[^/]+)"
        routes: list[tuple[str, str, Handler]] = [
            # system
            (g, r"/_ping", self.ping),
            (h, r"/_ping", self.ping),
            (g, r"/version", self.version),
            (g, r"/info", self.info),
            (g, r"/system/df", self.system_df),
            (g, r"/events", self.events),
            (p, r"/auth", self.auth),
            # images
            (g, r"/images/json", self.image_list),
            (g, r"/images/get", self.image_save),
            (g, r"/images/search", self.image_search),
            (p, r"/images/create", self.image_pull),
            (p, r"/images/load", self.image_load),
            (p, r"/images/prune", self.image_prune),
            (g, rf"/images/{n}/json", self.image_inspect),
            (g, rf"/images/{n}/history", self.image_history),
            (g, rf"/images/{n}/get", self.image_save),
            (p, rf"/images/{n}/tag", self.image_tag),
            (p, rf"/images/{n}/push", self.image_push),
            (d, rf"/images/{n}", self.image_remove),
            (p, r"/commit", self.image_commit),
            (g, rf"/distribution/{n}/json", self.distribution_inspect),
            # build
            (p, r"/build", self.image_build),
            (p, r"/build/prune", self.build_prune),
            # containers
            (p, r"/containers/create", self.container_create),
            (g, r"/containers/json", self.container_list),
            (p, r"/containers/prune", self.container_prune),
            (g, rf"/containers/{c}/json", self.container_inspect),
            (p, rf"/containers/{c}/start", self.container_start),
            (p, rf"/containers/{c}/stop", self.container_stop),
            (p, rf"/containers/{c}/restart", self.container_restart),
            (p, rf"/containers/{c}/kill", self.container_kill),
            (p, rf"/containers/{c}/wait", self.container_wait),
            (p, rf"/containers/{c}/resize", self.container_resize),
            (p, rf"/containers/{c}/rename", self.container_rename),
            (p, rf"/containers/{c}/attach", self.container_attach),
            (g, rf"/containers/{c}/logs", self.container_logs),
            (g, rf"/containers/{c}/top", self.container_top),
            (g, rf"/containers/{c}/stats", self.container_stats),
            (p, rf"/containers/{c}/pause", self.container_pause),
            (p, rf"/containers/{c}/unpause", self.container_unpause),
            (p, rf"/containers/{c}/update", self.container_update),
            (g, rf"/containers/{c}/changes", self.container_changes),
            (h, rf"/containers/{c}/archive", self.archive_stat),
            (g, rf"/containers/{c}/archive", self.archive_get),
            ("PUT", rf"/containers/{c}/archive", self.archive_put),
            (g, rf"/containers/{c}/export", self.container_export),
            (d, r"/containers/(?P<id>.+)", self.container_remove),  # dockerd's {name:.*}: rm --link /web/db
            # exec
            (p, rf"/containers/{c}/exec", self.exec_create),
            (p, r"/exec/(?P<id>[^/]+)/start", self.exec_start),
            (p, r"/exec/(?P<id>[^/]+)/resize", self.exec_resize),
            (g, r"/exec/(?P<id>[^/]+)/json", self.exec_inspect),
            # volumes
            (g, r"/volumes", self.volume_list),
            (p, r"/volumes/create", self.volume_create),
            (p, r"/volumes/prune", self.volume_prune),
            (g, r"/volumes/(?P<name>[^/]+)", self.volume_inspect),
            (d, r"/volumes/(?P<name>[^/]+)", self.volume_remove),
            # networks
            (g, r"/networks", self.network_list),
            (p, r"/networks/create", self.network_create),
            (p, r"/networks/prune", self.network_prune),
            (g, r"/networks/(?P<id>[^/]+)", self.network_inspect),
            (d, r"/networks/(?P<id>[^/]+)", self.network_remove),
            (p, r"/networks/(?P<id>[^/]+)/connect", self.network_connect),
            (p, r"/networks/(?P<id>[^/]+)/disconnect", self.network_disconnect),
        ]
        # swarm mode: this engine is never part of a swarm; dockerd outside a swarm answers these 503
        for method, pat in SWARM_ROUTES:
            routes.append((method, pat, self.not_a_swarm))
        self.routes = [(m, re.compile(f"^{pat}/?$"), fn) for m, pat, fn in routes]

    # -- serving --------------------------------------------------------------------------------
    async def serve_unix(self, path: str) -> None:
        await self.server.serve_unix(path)

    async def serve_socket(self, sock: socket.socket, *, guard: Callable[[Request], None] | None = None) -> None:
        """Serve on ``sock``; with ``guard``, every request on it must pass ``guard`` first
        (it raises a ``runtime.errors.RuntimeError`` to refuse: the host side's credential check)."""
        if guard is None:
            await self.server.serve_socket(sock)
            return

        async def guarded(req: Request) -> Response | None:
            try:
                guard(req)
            except errors.RuntimeError as e:
                req.close_connection = True
                return await self._error(req, e.status, str(e))
            return await self.handle(req)

        server = DockerServer(guarded)
        self._guarded.append(server)
        await server.serve_socket(sock)

    async def close(self) -> None:
        for cancel in list(self._waits):
            cancel.set()
        await self.server.close()
        for server in self._guarded:
            await server.close()
        if self._waits:
            await asyncio.wait(list(self._waits.values()), timeout=5)

    async def _call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` in the default executor, within this engine's share of it.
        The slot is released when ``fn`` returns: a client that cancels (disconnects) does not
        free it early, so an engine never has more than ``OPS_PER_ENGINE`` calls running."""
        await self._ops.acquire()
        loop = asyncio.get_running_loop()
        try:
            fut = loop.run_in_executor(None, functools.partial(contextvars.copy_context().run, fn, *args, **kwargs))
        except BaseException:
            self._ops.release()
            raise
        fut.add_done_callback(lambda _f: self._ops.release())
        return await asyncio.shield(fut)

    async def handle(self, req: Request) -> Response | None:
        log.debug("%s %s", req.method, req.target)
        if self._in_flight >= MAX_IN_FLIGHT:
            return await self._error(
                req,
                errors.LimitExceeded.status,
                f"too many requests in progress on this Docker engine ({MAX_IN_FLIGHT} at most, "
                "streams such as logs -f, attach and wait included): wait for some to finish",
            )
        self._in_flight += 1
        try:
            return await self._handle(req)
        finally:
            self._in_flight -= 1

    async def _handle(self, req: Request) -> Response | None:
        try:
            self._route_version(req)
            for method, pattern, fn in self.routes:
                m = pattern.match(req.path)
                if m and method == req.method:
                    req.params = m.groupdict()
                    return await fn(req)
            raise HTTPError(404, "page not found")
        except HTTPError:
            raise
        except ConnectionError:  # the client left mid-response (e.g. the SDK stops reading at a build error)
            req.close_connection = True
            return None
        except errors.RuntimeError as e:
            return await self._error(req, e.status, str(e))
        except Exception as e:
            log.exception("docker API %s %s failed", req.method, req.path)
            return await self._error(req, 500, f"{type(e).__name__}: {e}")

    async def _error(self, req: Request, status: int, message: str) -> Response | None:
        if not req.started:
            return json_response({"message": message}, status)
        req.close_connection = True  # headers are out: all we can do is end the response
        return None

    @staticmethod
    def _route_version(req: Request) -> None:
        m = VERSION_RE.match(req.path)
        if not m:
            return
        version = f"{int(m.group(1))}.{int(m.group(2))}"
        req.path = m.group(3)
        req.api_version = version
        if _version_tuple(version) > _version_tuple(API_VERSION):
            raise HTTPError(400, f"client version {version} is too new. Maximum supported API version is {API_VERSION}")
        if _version_tuple(version) < _version_tuple(MIN_API_VERSION):
            raise HTTPError(
                400,
                f"client version {version} is too old. Minimum supported API version is {MIN_API_VERSION}, "
                "please upgrade your client to a newer version",
            )

    async def _cid(self, req: Request) -> str:
        return await self._call(self.engine.resolve, req.params["id"])

    # -- system ---------------------------------------------------------------------------------
    async def ping(self, req: Request) -> Response:
        headers = [
            ("Builder-Version", "1"),
            ("Cache-Control", "no-cache, no-store, must-revalidate"),
            ("Pragma", "no-cache"),
        ]
        return Response(200, b"OK", "text/plain; charset=utf-8", headers)

    async def version(self, req: Request) -> Response:
        uname = os.uname()
        details = {
            "ApiVersion": API_VERSION,
            "Arch": "amd64",
            "BuildTime": "2024-01-01T00:00:00.000000000+00:00",
            "Experimental": "false",
            "GitCommit": "kubelab",
            "GoVersion": "go1.19.8",
            "KernelVersion": uname.release,
            "MinAPIVersion": MIN_API_VERSION,
            "Os": "linux",
        }
        return json_response(
            {
                "Platform": {"Name": "KubeLab sandbox Docker Engine"},
                "Components": [{"Name": "Engine", "Version": ENGINE_VERSION, "Details": details}],
                "Version": ENGINE_VERSION,
                **details,
                "Experimental": False,
            }
        )

    async def info(self, req: Request) -> Response:
        return json_response(await self._call(self.engine.info))

    async def system_df(self, req: Request) -> Response:
        return json_response(await self._call(self.engine.system_df))

    async def events(self, req: Request) -> None:
        """``docker events``: the engine's kept events since ``since``, then live ones until
        ``until`` passes or the client leaves (engine/events.py), filtered as dockerd filters them."""
        filters = _filters(req)
        unknown = [k for k in filters if k not in EVENT_FILTERS]
        if unknown:
            raise HTTPError(400, f"invalid filter '{unknown[0]}'")
        try:
            since, until = events_module.parse_time(req.arg("since")), events_module.parse_time(req.arg("until"))
        except ValueError as exc:
            raise HTTPError(400, str(exc)) from None
        loop = asyncio.get_running_loop()
        q: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

        def deliver(msg: dict[str, Any] | None) -> bool:
            if msg is not None and q.qsize() >= events_module.QUEUE:
                return False  # a client that does not read is dropped, not buffered for
            try:
                loop.call_soon_threadsafe(q.put_nowait, msg)
            except RuntimeError:  # the API's loop is closed: never fail the engine's caller
                return False
            return True

        bus = self.engine.events
        past = bus.subscribe(deliver, since if since is not None else (None if until is None else 0))
        try:
            out = await ChunkedStream.start(req)
            gone = threading.Event()
            watcher = asyncio.ensure_future(req.watch_disconnect(gone))
            try:
                for msg in past:
                    if (until is None or msg["timeNano"] <= until) and events_module.matches(msg, filters):
                        await out.write_json(msg)
                while until is None or time.time_ns() < until:
                    timeout = None if until is None else (until - time.time_ns()) / 1e9
                    getter = asyncio.ensure_future(q.get())
                    done, _ = await asyncio.wait(
                        {getter, watcher}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                    )
                    if getter not in done:
                        await cancel_task(getter)
                        break
                    live = getter.result()
                    if live is None:
                        break
                    if (until is None or live["timeNano"] <= until) and events_module.matches(live, filters):
                        await out.write_json(live)
            finally:
                await cancel_task(watcher)
        finally:
            bus.unsubscribe(deliver)
        if not gone.is_set():
            await out.finish()
        else:
            req.close_connection = True

    async def auth(self, req: Request) -> Response:
        raise errors.NotAvailable("docker login is not available: this lab has no registry and no internet")

    # -- images ---------------------------------------------------------------------------------
    async def image_list(self, req: Request) -> Response:
        filters = _filters(req)
        show_all = req.flag("all")
        store = self.engine.store

        def listing() -> list[dict[str, Any]]:
            out = []
            for img in store.images(all=show_all):
                if not _image_matches(img, filters):
                    continue
                out.append(store.summary(img))
            return out

        return json_response(await self._call(listing))

    async def image_inspect(self, req: Request) -> Response:
        img = await self._call(self.engine.store.resolve, req.params["name"])
        return json_response(_image_inspect(img))

    async def image_history(self, req: Request) -> Response:
        return json_response(await self._call(self.engine.store.history, req.params["name"]))

    async def image_tag(self, req: Request) -> Response:
        repo = req.arg("repo")
        if not repo:
            raise errors.BadRequest("repository name must have at least one component")
        tag = req.arg("tag") or "latest"
        await self._call(self.engine.store.tag, req.params["name"], f"{repo}:{tag}")
        return Response(201)

    async def image_remove(self, req: Request) -> Response:
        result = await self._call(
            self.engine.store.remove, req.params["name"], force=req.flag("force"), prune=not req.flag("noprune")
        )
        return json_response(result)

    async def image_prune(self, req: Request) -> Response:
        dangling = _filters(req).get("dangling", ["true"])
        dangling_only = dangling[-1].lower() not in ("false", "0")
        result = await self._call(self.engine.store.prune, dangling_only=dangling_only)
        return json_response(result)

    async def image_save(self, req: Request) -> None:
        refs = [req.params["name"]] if "name" in req.params else req.args("names")
        if not refs:
            raise errors.BadRequest("no image names given to save")
        store = self.engine.store
        for ref in refs:  # a missing image is a 404 before the stream starts
            await self._call(store.resolve, ref)
        out = await ChunkedStream.start(req, "application/x-tar")
        cancel = threading.Event()
        watcher = asyncio.ensure_future(req.watch_disconnect(cancel))
        try:
            async for chunk in thread_iter("docker-save", lambda: store.save(refs), cancel):
                await out.write(chunk)
        finally:
            await cancel_task(watcher)
        await out.finish()

    async def image_pull(self, req: Request) -> Response | None:
        if req.arg("fromSrc"):
            return await self.image_import(req)
        name = req.arg("fromImage")
        if not name:
            raise errors.BadRequest("fromImage is required")
        tag = req.arg("tag")
        ref = name
        if tag:
            ref = f"{name}@{tag}" if tag.startswith("sha256:") else f"{name}:{tag}"
        entry = catalog.lookup(ref)
        tail = f"this lab has no internet; available images: {catalog.available()}"
        if entry is None:
            base = name.rsplit("/", 1)[-1].split("@")[0]
            if any(r.split(":", 1)[0] == base for image in catalog.CATALOG for r in image.refs):
                message = f"manifest for {ref} not found: manifest unknown: {tail}"
            else:
                message = (
                    f"pull access denied for {name}, repository does not exist or may require 'docker login': {tail}"
                )
            return json_response({"message": message, "error": message, "errorDetail": {"message": message}}, 404)
        normalized = catalog.normalize(ref)
        img = await self._call(self.engine.store.resolve, normalized)
        repo, _, shown_tag = normalized.rpartition(":")
        out = await ChunkedStream.start(req)
        path = repo if "/" in repo else f"library/{repo}"
        await out.write_json({"status": f"Pulling from {path}", "id": shown_tag})
        await out.write_json({"status": f"Digest: {img.id}"})
        await out.write_json({"status": f"Status: Image is up to date for {normalized}"})
        await out.finish()
        return None

    async def image_push(self, req: Request) -> Response:
        raise errors.NotAvailable("docker push is not available: this lab has no registry and no internet")

    async def _spool(self, req: Request, what: str) -> Any:
        """The request body in a file on the sandbox's disk (its quota), never in runtimed's
        memory past SPOOL_MAX; refused (and the connection closed) once it outgrows the disk's
        free space."""
        store = self.engine.store
        body = tempfile.SpooledTemporaryFile(max_size=SPOOL_MAX, dir=str(store.tmp))  # noqa: SIM115
        free = await self._call(store.free_bytes)
        try:
            async for chunk in req.iter_body():
                if body.tell() + len(chunk) > free:
                    req.close_connection = True
                    raise store.disk_full(what, "the upload is larger than that")
                if body.tell() + len(chunk) > SPOOL_MAX:
                    await self._call(body.write, chunk)
                else:
                    body.write(chunk)
            body.seek(0)
        except OSError as exc:
            body.close()
            req.close_connection = True
            raise store.disk_full(what, str(exc)) from None
        except BaseException:
            body.close()
            raise
        return body

    async def image_load(self, req: Request) -> None:
        """``docker load`` (images/tarexport.py): the archive spooled on the sandbox's disk, then read
        in place; the answer is dockerd's JSON stream of "Loaded image" lines. As dockerd's
        (its router writes LoadImage's error into the stream), a refused archive is a 200
        whose stream carries ``{"errorDetail": ..., "error": ...}``: the SDK raises
        ImageLoadError from it, the CLI prints it and exits 1. ``quiet`` defaults to true."""
        quiet = req.flag("quiet", True)
        messages: list[dict[str, Any]] = []
        try:
            body = await self._spool(req, "docker load")
            try:
                messages = await run_in_thread(
                    "docker-load", lambda: tarexport.load(self.engine.store, body, quiet=quiet)
                )
            finally:
                body.close()
        except errors.RuntimeError as e:
            messages.append({"errorDetail": {"message": str(e)}, "error": str(e)})
        out = await ChunkedStream.start(req)  # chunked, as dockerd: clients read it as a JSON stream
        for m in messages:
            await out.write_json(m)
        await out.finish()

    async def image_import(self, req: Request) -> Response:
        src = req.arg("fromSrc")
        if src != "-":
            req.close_connection = True
            raise errors.NotAvailable(
                f"docker import from a URL ({src}) is not available: this lab has no internet; "
                "import a file instead (docker import FILE, or cat FILE | docker import -)"
            )
        repo, tag = req.arg("repo"), req.arg("tag")
        ref = f"{repo}:{tag}" if repo and tag else repo
        changes, message = req.args("changes"), req.arg("message")
        if req.arg("platform") not in ("", "linux", "linux/amd64"):
            raise errors.BadRequest(f"platform {req.arg('platform')} is not available here: linux/amd64 only")
        body = await self._spool(req, "docker import")
        try:
            image_id = await run_in_thread(
                "docker-import",
                lambda: tarexport.import_rootfs(self.engine.store, body, tag=ref, message=message, changes=changes),
            )
        finally:
            body.close()
        return Response(200, json.dumps({"status": image_id}).encode() + b"\n", "application/json")

    async def image_search(self, req: Request) -> Response:
        raise errors.NotAvailable(
            f"docker search is not available: this lab has no internet; available images: {catalog.available()}"
        )

    async def image_commit(self, req: Request) -> Response:
        container = req.arg("container")
        body = await req.json()  # the CLI sends null when no config is given
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise HTTPError(400, "the container configuration must be a JSON object")
        repo, tag = req.arg("repo"), req.arg("tag")
        if tag and not repo:
            raise errors.BadRequest("tag requires a repository (repo)")
        ref = f"{repo}:{tag}" if repo and tag else repo
        cid = await self._call(self.engine.resolve, container)
        image_id = await run_in_thread(
            "docker-commit",
            lambda: self.engine.commit(
                cid,
                tag=ref,
                author=req.arg("author"),
                comment=req.arg("comment"),
                pause=req.flag("pause", True),
                changes=req.args("changes"),
                config=body,
            ),
        )
        return json_response({"Id": image_id}, 201)

    async def distribution_inspect(self, req: Request) -> Response:
        """The catalog's images answer as a registry would; any other name as dockerd answers
        for a repository it cannot reach (this lab has no registry and no internet)."""
        name = req.params["name"]
        info = await self._call(self.engine.store.distribution, name)
        if info is not None:
            return json_response(info)
        tail = f"this lab has no internet; available images: {catalog.available()}"
        base = name.rsplit("/", 1)[-1].split("@")[0].split(":")[0]
        if any(r.split(":", 1)[0] == base for image in catalog.CATALOG for r in image.refs):
            raise errors.ImageNotFound(f"manifest unknown: manifest unknown ({name}): {tail}")
        raise errors.Unauthorized(
            f"errors:\ndenied: requested access to the resource is denied\nunauthorized: authentication required\n"
            f" ({name}: {tail})"
        )

    # -- build ----------------------------------------------------------------------------------
    async def image_build(self, req: Request) -> Response | None:
        if req.arg("remote"):
            req.close_connection = True
            raise errors.NotAvailable(
                "remote build contexts (URLs, git repositories) are not available: this lab has no internet; "
                "build from a local directory (docker build DIR)"
            )
        buildargs = req.json_arg("buildargs", {})
        labels = req.json_arg("labels", {})
        cachefrom = req.json_arg("cachefrom", [])
        if not isinstance(buildargs, dict) or not isinstance(labels, dict) or not isinstance(cachefrom, list):
            raise HTTPError(400, "buildargs and labels must be JSON objects, cachefrom a JSON list")
        try:
            if cachefrom:
                raise errors.NotAvailable(
                    "docker build --cache-from is not available in this lab: the builder's cache is the images "
                    "built in your sandbox, which every build uses already"
                )
            network_mode = req.arg("networkmode") or "default"
            if network_mode not in ("default", "bridge", "none"):
                raise errors.Forbidden(
                    f"docker build --network={network_mode} is not available in this lab: RUN steps use the "
                    "default bridge (inside your sandbox) or none"
                )
            extra_hosts = engine_module.parse_extra_hosts([str(h) for h in req.args("extrahosts")]) or []
        except errors.RuntimeError:
            await self._drain_refused(req)
            raise
        params = BuildParams(
            dockerfile=req.arg("dockerfile") or "Dockerfile",
            tags=req.args("t"),
            buildargs={str(k): None if v is None else str(v) for k, v in buildargs.items()},
            target=req.arg("target"),
            nocache=req.flag("nocache"),
            rm=req.flag("rm", True),
            forcerm=req.flag("forcerm"),
            labels={str(k): str(v) for k, v in labels.items()},
            quiet=req.flag("q"),
            pull=req.flag("pull"),
            cachefrom=[],
            network_mode=network_mode,
            extra_hosts=extra_hosts,
            platform=req.arg("platform"),
        )
        # a large context spills to the sandbox's own disk (its quota), not the host's /tmp
        context = tempfile.SpooledTemporaryFile(max_size=SPOOL_MAX, dir=str(self.engine.store.tmp))  # noqa: SIM115
        try:
            async for chunk in req.iter_body():
                if context.tell() + len(chunk) > SPOOL_MAX:
                    await self._call(context.write, chunk)
                else:
                    context.write(chunk)
            context.seek(0)
            await self._run_build(req, context, params)
        finally:
            context.close()
        return None

    async def _run_build(self, req: Request, context: Any, params: BuildParams) -> None:
        out = await ChunkedStream.start(req)
        loop = asyncio.get_running_loop()
        cancel = threading.Event()
        q: asyncio.Queue[Any] = asyncio.Queue(maxsize=256)
        put = ThreadPut(loop, q, cancel)
        done = object()
        errored = False

        def emit(msg: dict[str, Any]) -> None:
            put(msg)

        def work() -> None:
            try:
                self.build(self.engine, context, params, emit, cancel)
            except errors.RuntimeError as e:
                put({"__failed__": str(e)})
            except Exception as e:
                log.exception("build failed")
                put({"__failed__": f"{type(e).__name__}: {e}"})
            put(done)

        watcher = asyncio.ensure_future(req.watch_disconnect(cancel))
        try:
            thread = threading.Thread(target=work, name="docker-build", daemon=True)
            thread.start()
            while True:
                msg = await q.get()
                if msg is done:
                    break
                if "__failed__" in msg:
                    if errored:
                        continue
                    text = msg["__failed__"]
                    msg = {"errorDetail": {"message": text}, "error": text}
                if "error" in msg:
                    errored = True
                await out.write_json(msg)
        finally:
            cancel.set()
            await cancel_task(watcher)
        await out.finish()

    async def build_prune(self, req: Request) -> Response:
        return json_response({"CachesDeleted": [], "SpaceReclaimed": 0})

    # -- containers -----------------------------------------------------------------------------
    async def container_create(self, req: Request) -> Response:
        body = await req.json()
        if not isinstance(body, dict):
            raise HTTPError(400, "the container configuration must be a JSON object")
        name = req.arg("name") or None
        cid, warnings = await self._call(self.engine.create, body, name=name)
        return json_response({"Id": cid, "Warnings": list(warnings)}, 201)

    async def container_list(self, req: Request) -> Response:
        limit = req.int_arg("limit", -1) or -1
        show_all = req.flag("all") or limit > 0
        items = await self._call(self.engine.list, all=show_all, filters=_filters(req))
        if limit > 0:
            items = items[:limit]
        return json_response(items)

    async def container_prune(self, req: Request) -> Response:
        return json_response(await self._call(self.engine.container_prune))

    async def container_inspect(self, req: Request) -> Response:
        cid = await self._cid(req)
        info = await self._call(self.engine.inspect, cid)
        # dockerd always reports the log driver; the SDK's containers.run() reads it
        host_config = info.setdefault("HostConfig", {})
        if isinstance(host_config, dict):
            host_config.setdefault("LogConfig", {"Type": "json-file", "Config": {}})
        return json_response(info)

    async def container_start(self, req: Request) -> Response:
        cid = await self._cid(req)
        await req.discard_body()
        state = (await self._call(self.engine.inspect, cid)).get("State", {})
        if state.get("Running"):
            return Response(304)
        await self._call(self.engine.start, cid)
        return NO_CONTENT

    async def container_stop(self, req: Request) -> Response:
        cid = await self._cid(req)
        state = (await self._call(self.engine.inspect, cid)).get("State", {})
        if not state.get("Running"):
            return Response(304)
        timeout = req.int_arg("t")
        await run_in_thread("docker-stop", lambda: self.engine.stop(cid, timeout=timeout))
        return NO_CONTENT

    async def container_restart(self, req: Request) -> Response:
        cid = await self._cid(req)
        timeout = req.int_arg("t")
        await run_in_thread("docker-restart", lambda: self.engine.restart(cid, timeout=timeout))
        return NO_CONTENT

    async def container_kill(self, req: Request) -> Response:
        cid = await self._cid(req)
        signal = req.arg("signal") or "SIGKILL"
        await self._call(lambda: self.engine.kill(cid, signal=signal))
        return NO_CONTENT

    async def container_wait(self, req: Request) -> Response | None:
        """dockerd registers the waiter, sends the response head at once, and the body when
        the condition is met; ``docker run`` waits for that head before it starts the
        container. The waiter here is the engine's ``wait`` running in its own thread,
        started before the head goes out."""
        condition = req.arg("condition") or "not-running"
        if condition not in WAIT_CONDITIONS:
            raise HTTPError(400, f"invalid condition: {condition!r}")
        cid = await self._cid(req)
        await req.discard_body()
        cancel = threading.Event()
        waiting = asyncio.ensure_future(run_in_thread("docker-wait", lambda: self._wait(cid, condition, cancel)))
        self._waits[cancel] = waiting

        def forget(f: asyncio.Future[int]) -> None:
            self._waits.pop(cancel, None)
            if not f.cancelled():
                f.exception()  # retrieved: a wait cut short by a client that left is no error

        waiting.add_done_callback(forget)
        # give the thread time to register; an immediate answer (or error) is sent as is
        done, _ = await asyncio.wait({waiting}, timeout=0.05)
        if done:
            return json_response({"StatusCode": waiting.result(), "Error": None})
        out = await ChunkedStream.start(req)
        watcher = asyncio.ensure_future(req.watch_disconnect(cancel))
        try:
            await asyncio.wait({waiting, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_task(watcher)
        if cancel.is_set() and not waiting.done():
            req.close_connection = True  # the client has gone; the thread sees the cancel
            return None
        try:
            body: dict[str, Any] = {"StatusCode": await waiting, "Error": None}
        except errors.RuntimeError as e:
            body = {"StatusCode": -1, "Error": {"Message": str(e)}}
        await out.write_json(body)
        await out.finish()
        return None

    def _wait(self, cid: str, condition: str, cancel: threading.Event) -> int:
        return self.engine.wait(cid, condition=condition, cancel=cancel)

    async def container_resize(self, req: Request) -> Response:
        cid = await self._cid(req)
        height, width = req.int_arg("h", 0) or 0, req.int_arg("w", 0) or 0
        await self._call(lambda: self.engine.resize(cid, height=height, width=width))
        return Response(200, b"", "text/plain; charset=utf-8")

    async def container_rename(self, req: Request) -> Response:
        cid = await self._cid(req)
        name = req.arg("name")
        if not name:
            raise errors.BadRequest("a new name is required")
        await self._call(self.engine.rename, cid, name)
        return NO_CONTENT

    async def container_remove(self, req: Request) -> Response:
        if req.flag("link"):
            await self._call(self.engine.remove_link, req.params["id"])
            return NO_CONTENT
        cid = await self._cid(req)
        force, volumes = req.flag("force"), req.flag("v")
        await run_in_thread("docker-rm", lambda: self.engine.remove(cid, force=force, volumes=volumes))
        return NO_CONTENT

    async def container_logs(self, req: Request) -> Response | None:
        cid = await self._cid(req)
        stdout, stderr = req.flag("stdout"), req.flag("stderr")
        if not (stdout or stderr):
            raise errors.BadRequest("Bad parameters: you must choose at least one stream")
        tail_arg = req.arg("tail", "all")
        tail = None if tail_arg in ("all", "") else req.int_arg("tail")
        follow, timestamps = req.flag("follow"), req.flag("timestamps")
        since, until = req.float_arg("since"), req.float_arg("until")
        info = await self._call(self.engine.inspect, cid)
        tty = bool((info.get("Config") or {}).get("Tty"))
        cancel = threading.Event()

        def produce() -> Any:
            return self.engine.logs(
                cid,
                follow=follow,
                stdout=stdout,
                stderr=stderr,
                since=since,
                until=until,
                tail=tail,
                timestamps=timestamps,
                cancel=cancel,
            )

        out = await ChunkedStream.start(req, RAW_STREAM if tty else MULTIPLEXED_STREAM)
        gone = threading.Event()
        watcher = asyncio.ensure_future(req.watch_disconnect(gone, cancel))
        try:
            async for fd, data in thread_iter("docker-logs", produce, cancel):
                await out.write(data if tty else frame(fd, data))
        finally:
            await cancel_task(watcher)
        if gone.is_set():
            req.close_connection = True
            return None
        await out.finish()
        return None

    async def container_attach(self, req: Request) -> None:
        cid = await self._cid(req)
        await req.discard_body()
        stdin = req.flag("stdin")
        keys = parse_detach_keys(req.arg("detachKeys"))
        stream = await self._call(
            lambda: self.engine.attach(
                cid,
                stdin=stdin,
                stdout=req.flag("stdout"),
                stderr=req.flag("stderr"),
                logs=req.flag("logs"),
                stream=req.flag("stream"),
            )
        )

        def started() -> bool:
            return bool(self.engine.inspect(cid).get("State", {}).get("Status") != "created")

        await hijack(req, stream, stdin=stdin, detach_keys=keys, name=f"attach-{cid[:12]}", stdin_ready=started)

    async def container_top(self, req: Request) -> Response:
        cid = await self._cid(req)
        return json_response(await self._call(self.engine.top, cid))

    async def container_stats(self, req: Request) -> Response | None:
        cid = await self._cid(req)
        if not req.flag("stream", True) or req.flag("one-shot"):
            return json_response(await self._call(self.engine.stats_once, cid))
        out = await ChunkedStream.start(req)
        gone = threading.Event()
        watcher = asyncio.ensure_future(req.watch_disconnect(gone))
        try:
            while not gone.is_set():
                await out.write_json(await self._call(self.engine.stats_once, cid))
                await asyncio.wait({watcher}, timeout=1.0)
        finally:
            await cancel_task(watcher)
        req.close_connection = True
        return None

    async def container_pause(self, req: Request) -> Response:
        cid = await self._cid(req)
        await self._call(self.engine.pause, cid)
        return NO_CONTENT

    async def container_unpause(self, req: Request) -> Response:
        cid = await self._cid(req)
        await self._call(self.engine.unpause, cid)
        return NO_CONTENT

    async def container_update(self, req: Request) -> Response:
        cid = await self._cid(req)
        body = await req.json()
        if not isinstance(body, dict):
            raise HTTPError(400, "the update configuration must be a JSON object")
        warnings = await self._call(self.engine.update, cid, body)
        return json_response({"Warnings": warnings or None})

    async def not_a_swarm(self, req: Request) -> Response:
        """dockerd's answer on a node outside any swarm (503; clients tell it from a 404).
        ``docker swarm init/join`` are refused: a sandbox's engine cannot become a swarm node."""
        req.close_connection = True  # a body (swarm init's spec, a service's) is not read
        if req.method == "POST" and req.path.rstrip("/") in ("/swarm/init", "/swarm/join"):
            reason = (
                "docker swarm is not available in this lab: your sandbox's engine cannot become a swarm node "
                "(run services with docker compose, or on the lab's Kubernetes cluster)"
            )
            return json_response({"message": reason}, 503)
        if req.method == "POST" and req.path.rstrip("/") == "/swarm/leave":
            return json_response({"message": "This node is not part of a swarm"}, 503)
        return json_response({"message": NOT_A_SWARM}, 503)

    async def container_export(self, req: Request) -> None:
        cid = await self._cid(req)
        chunks = await self._call(self.engine.export, cid)
        out = await ChunkedStream.start(req, "application/x-tar")
        cancel = threading.Event()
        watcher = asyncio.ensure_future(req.watch_disconnect(cancel))
        try:
            async for chunk in thread_iter("docker-export", lambda: chunks, cancel):
                await out.write(chunk)
        finally:
            await cancel_task(watcher)
        await out.finish()

    # -- docker diff / docker cp (images/changes.py, engine/archive.py) ---------------------------------------
    async def container_changes(self, req: Request) -> Response:
        return json_response(await self._call(self.engine.changes, req.params["id"]))

    async def archive_stat(self, req: Request) -> Response:
        path = req.arg("path")
        if not path:
            raise errors.BadRequest("path is required")
        fs = await self._call(self.engine.container_fs, req.params["id"])
        stat = await self._call(fs.stat, path)
        return Response(200, headers=[("X-Docker-Container-Path-Stat", archive.encode_stat(stat))])

    async def archive_get(self, req: Request) -> None:
        path = req.arg("path")
        if not path:
            raise errors.BadRequest("path is required")
        fs = await self._call(self.engine.container_fs, req.params["id"])
        stat, chunks = await run_in_thread("docker-cp-stat", lambda: fs.get(path))
        req.write_head(
            200,
            [
                ("Content-Type", "application/x-tar"),
                ("X-Docker-Container-Path-Stat", archive.encode_stat(stat)),
                ("Transfer-Encoding", "chunked"),
            ],
        )
        out = ChunkedStream(req)
        cancel = threading.Event()
        watcher = asyncio.ensure_future(req.watch_disconnect(cancel))
        try:
            async for chunk in thread_iter("docker-cp-out", lambda: chunks, cancel):
                await out.write(chunk)
        finally:
            await cancel_task(watcher)
        await out.finish()

    async def _drain_refused(self, req: Request) -> None:
        """Before refusing an upload: read (and drop) a small body first, so a client still
        writing it sees the reason rather than a broken pipe; a large one is cut off."""
        drained = 0
        with contextlib.suppress(Exception):  # the client may be gone: the refusal stands
            async for chunk in req.iter_body():
                drained += len(chunk)
                if drained > REFUSED_BODY_MAX:
                    break
        req.close_connection = True

    async def archive_put(self, req: Request) -> Response:
        path = req.arg("path")
        try:
            if not path:
                raise errors.BadRequest("path is required")
            fs = await self._call(self.engine.container_fs, req.params["id"])
        except errors.RuntimeError:
            # read (and drop) a small body first: a client still writing it when the answer
            # comes and the connection closes sees "broken pipe", not the reason
            drained = 0
            with contextlib.suppress(Exception):  # the client may be gone: the refusal stands
                async for chunk in req.iter_body():
                    drained += len(chunk)
                    if drained > REFUSED_BODY_MAX:
                        break
            req.close_connection = True
            raise
        no_overwrite = req.flag("noOverwriteDirNonDir")
        # the archive spills to the sandbox's own disk (its quota) when large, as build contexts do
        body = await self._spool(req, "docker cp")
        try:
            await run_in_thread("docker-cp-in", lambda: fs.put(path, body, no_overwrite_dir_non_dir=no_overwrite))
        finally:
            body.close()
        return Response(200)

    # -- exec -----------------------------------------------------------------------------------
    async def exec_create(self, req: Request) -> Response:
        cid = await self._cid(req)
        body = await req.json()
        if not isinstance(body, dict):
            raise HTTPError(400, "the exec configuration must be a JSON object")
        eid = await self._call(self.engine.exec_create, cid, body)
        return json_response({"Id": eid}, 201)

    async def exec_start(self, req: Request) -> Response | None:
        eid = req.params["id"]
        body = await req.json()
        detach, tty = bool(body.get("Detach")), bool(body.get("Tty"))
        info = await self._call(self.engine.exec_inspect, eid)
        if detach:
            await self._call(lambda: self.engine.exec_start(eid, detach=True, tty=tty))
            return Response(200, b"", "application/json")
        keys = parse_detach_keys(str(info.get("DetachKeys") or ""))
        await upgrade(req, tty=tty)
        try:
            stream = await self._call(lambda: self.engine.exec_start(eid, detach=False, tty=tty))
        except errors.RuntimeError as e:  # the head is out: the message goes in the stream, as dockerd does
            req.writer.write(str(e).encode() + b"\n" if tty else frame(2, str(e).encode() + b"\n"))
            await req.writer.drain()
            return None
        if stream is None:
            return None
        await hijack(req, stream, stdin=bool(info.get("OpenStdin")), detach_keys=keys, name=f"exec-{eid[:12]}")
        return None

    async def exec_resize(self, req: Request) -> Response:
        eid = req.params["id"]
        height, width = req.int_arg("h", 0) or 0, req.int_arg("w", 0) or 0
        await self._call(lambda: self.engine.exec_resize(eid, height=height, width=width))
        return Response(200, b"", "text/plain; charset=utf-8")

    async def exec_inspect(self, req: Request) -> Response:
        return json_response(await self._call(self.engine.exec_inspect, req.params["id"]))

    # -- volumes --------------------------------------------------------------------------------
    async def volume_list(self, req: Request) -> Response:
        vols = await self._call(self.engine.volumes)
        names = _filters(req).get("name")
        if names:
            vols = [v for v in vols if any(n in v.get("Name", "") for n in names)]
        return json_response({"Volumes": vols, "Warnings": []})

    async def volume_create(self, req: Request) -> Response:
        body = await req.json()
        if not isinstance(body, dict):
            raise HTTPError(400, "the volume configuration must be a JSON object")
        return json_response(await self._call(self.engine.volume_create, body), 201)

    async def volume_inspect(self, req: Request) -> Response:
        return json_response(await self._call(self.engine.volume_inspect, req.params["name"]))

    async def volume_remove(self, req: Request) -> Response:
        name, force = req.params["name"], req.flag("force")
        await self._call(lambda: self.engine.volume_remove(name, force=force))
        return NO_CONTENT

    async def volume_prune(self, req: Request) -> Response:
        return json_response(await self._call(self.engine.volume_prune))

    # -- networks -------------------------------------------------------------------------------
    async def network_list(self, req: Request) -> Response:
        filters = _filters(req)
        return json_response(await self._call(self.engine.networks, filters))

    async def network_inspect(self, req: Request) -> Response:
        return json_response(await self._call(self.engine.network_inspect, req.params["id"]))

    async def network_create(self, req: Request) -> Response:
        body = await req.json()
        if not isinstance(body, dict):
            raise HTTPError(400, "the network configuration must be a JSON object")
        return json_response(await self._call(self.engine.network_create, body), 201)

    async def network_connect(self, req: Request) -> Response:
        body = await req.json()
        if not isinstance(body, dict):
            raise HTTPError(400, "the request body must be a JSON object")
        ref, container = req.params["id"], str(body.get("Container") or "")
        await self._call(self.engine.network_connect, ref, container, body)
        return Response(200)

    async def network_disconnect(self, req: Request) -> Response:
        body = await req.json()
        if not isinstance(body, dict):
            raise HTTPError(400, "the request body must be a JSON object")
        ref, container = req.params["id"], str(body.get("Container") or "")
        await self._call(self.engine.network_disconnect, ref, container)
        return Response(200)

    async def network_prune(self, req: Request) -> Response:
        return json_response(await self._call(self.engine.network_prune))

    async def network_remove(self, req: Request) -> Response:
        await self._call(self.engine.network_remove, req.params["id"])
        return NO_CONTENT


# ----------------------------------------------------------------------------------------------
# helpers


def _filters(req: Request) -> dict[str, list[str]]:
    """``filters`` as ``{name: [values]}``; old clients send ``{name: {value: true}}``."""
    raw = req.json_arg("filters", {})
    if not isinstance(raw, dict):
        raise HTTPError(400, "filters must be a JSON object")
    out: dict[str, list[str]] = {}
    for key, value in raw.items():
        if isinstance(value, dict):
            out[str(key)] = [str(k) for k, v in value.items() if v]
        elif isinstance(value, list):
            out[str(key)] = [str(v) for v in value]
        else:
            out[str(key)] = [str(value)]
    return out


def _image_matches(img: Image, filters: dict[str, list[str]]) -> bool:
    dangling = filters.get("dangling")
    if dangling:
        want = dangling[-1].lower() in ("true", "1")
        if want != (not img.repo_tags):
            return False
    refs = filters.get("reference")
    if refs:
        names = [*img.repo_tags, *(t.rsplit(":", 1)[0] for t in img.repo_tags)]
        if not any(fnmatch.fnmatchcase(n, pat) for pat in refs for n in names):
            return False
    labels = filters.get("label")
    if labels:
        have = (img.config.get("config") or {}).get("Labels") or {}
        for want_label in labels:
            key, sep, value = want_label.partition("=")
            if key not in have or (sep and have[key] != value):
                return False
    return True


def _image_inspect(img: Image) -> dict[str, Any]:
    cfg = img.config
    return {
        "Id": img.id,
        "RepoTags": list(img.repo_tags),
        "RepoDigests": [],
        "Parent": img.parent,
        "Comment": cfg.get("comment", ""),
        "Created": img.created,
        "Container": cfg.get("container", ""),
        "ContainerConfig": cfg.get("container_config") or {},
        "DockerVersion": cfg.get("docker_version", ENGINE_VERSION),
        "Author": cfg.get("author", ""),
        "Config": cfg.get("config") or {},
        "Architecture": cfg.get("architecture", "amd64"),
        "Os": cfg.get("os", "linux"),
        "Size": img.size,
        "VirtualSize": img.size,
        "GraphDriver": {"Name": "overlay2", "Data": None},
        "RootFS": {"Type": "layers", "Layers": list((cfg.get("rootfs") or {}).get("diff_ids") or [])},
        "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
    }
