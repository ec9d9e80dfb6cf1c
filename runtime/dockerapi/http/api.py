"""The Docker Engine API (v1.24-1.41) of one sandbox's engine, as the docker CLI 20.10 and
the ``docker`` SDK 7 use it.

``make_app(engine)`` returns a ``DockerAPI``; ``await api.serve_unix(path)`` listens (any
number of sockets, e.g. the sandbox's and the graders'), ``await api.close()`` ends it.
HTTP and the stream plumbing (chunked responses, hijacked attach/exec connections, the
threads that run blocking engine calls) are in ``server.py``: aiohttp's server cannot
hijack a connection with ``Upgrade: tcp`` nor keep it writable after the client's
half-close, so the Docker socket has its own small HTTP/1.1 server.

Route groups, one module each as moby's ``api/server/router/<group>``: ``system.py``,
``events.py``, ``images.py``, ``distribution.py``, ``build.py``, ``containers.py`` (with
``docker cp``, ``diff``, ``export``), ``exec.py``, ``volumes.py``, ``networks.py``. Each is a
class of handlers with its ``<group>_routes()``; ``DockerAPI`` inherits them all and keeps
serving, routing, version negotiation and the in-flight bound; ``base.py`` holds what the
groups share (the engine, ``_call``, errors, spooled uploads, ``filters``).

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
import logging
import re
import socket
import threading
from collections.abc import Callable

from runtime import errors
from runtime.dockerapi import API_VERSION, MIN_API_VERSION
from runtime.dockerapi.build import builder as build_module
from runtime.dockerapi.engine import Engine
from runtime.dockerapi.http.base import OPS_PER_ENGINE, BuildFn, Handler
from runtime.dockerapi.http.build import BuildRoutes
from runtime.dockerapi.http.containers import ContainerRoutes
from runtime.dockerapi.http.distribution import DistributionRoutes
from runtime.dockerapi.http.events import EventRoutes
from runtime.dockerapi.http.exec import ExecRoutes
from runtime.dockerapi.http.images import ImageRoutes
from runtime.dockerapi.http.networks import NetworkRoutes
from runtime.dockerapi.http.server import (
    DockerServer,
    HTTPError,
    Request,
    Response,
)
from runtime.dockerapi.http.system import SystemRoutes
from runtime.dockerapi.http.volumes import VolumeRoutes

log = logging.getLogger("runtime.dockerapi.http.api")


VERSION_RE = re.compile(r"^/v(\d+)\.(\d+)(/.*)$")
MAX_IN_FLIGHT = 32  # requests of one engine being handled at a time (streams: a thread or two each)


def _version_tuple(v: str) -> tuple[int, int]:
    major, minor = v.split(".")
    return int(major), int(minor)


def make_app(engine: Engine, *, build: BuildFn = build_module.build) -> DockerAPI:
    """The Docker Engine API of ``engine``; serve it with ``await app.serve_unix(path)``."""
    return DockerAPI(engine, build=build)


class DockerAPI(
    SystemRoutes,
    EventRoutes,
    ImageRoutes,
    DistributionRoutes,
    BuildRoutes,
    ContainerRoutes,
    ExecRoutes,
    VolumeRoutes,
    NetworkRoutes,
):
    def __init__(self, engine: Engine, *, build: BuildFn = build_module.build) -> None:
        self.engine = engine
        self.build = build
        self.server = DockerServer(self.handle)
        self._guarded: list[DockerServer] = []
        self._ops = asyncio.Semaphore(OPS_PER_ENGINE)
        self._in_flight = 0
        # pending waits (their threads block in the engine): cancelled and awaited on close
        self._waits: dict[threading.Event, asyncio.Future[int]] = {}
        routes: list[tuple[str, str, Handler]] = [
            *self.system_routes(),
            *self.events_routes(),
            *self.images_routes(),
            *self.distribution_routes(),
            *self.build_routes(),
            *self.containers_routes(),
            *self.exec_routes(),
            *self.volumes_routes(),
            *self.networks_routes(),
        ]
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


# ----------------------------------------------------------------------------------------------
# helpers
