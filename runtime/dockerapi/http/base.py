"""What every route group of the Docker API shares (moby's ``api/server/httputils``): the
engine, the bounded share of runtimed's executor (``_call``), errors, uploads spooled to
the sandbox's disk, and the ``filters`` query argument."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import tempfile
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from runtime.dockerapi.engine import Engine
from runtime.dockerapi.http.server import (
    HTTPError,
    Request,
    Response,
    json_response,
)

# uploads (build contexts, docker cp) up to this stay in runtimed's memory; larger go to the sandbox's disk
SPOOL_MAX = 1024 * 1024
REFUSED_BODY_MAX = 16 * 1024 * 1024  # a refused upload up to this is read before the answer
NO_CONTENT = Response(204)
T = TypeVar("T")
BuildFn = Callable[..., str]
Handler = Callable[[Request], Awaitable[Response | None]]
OPS_PER_ENGINE = 4  # engine calls of one sandbox in runtimed's shared executor at a time


class APIBase:
    """The state the route groups share; ``DockerAPI`` (api.py) sets it up."""

    engine: Engine
    build: BuildFn
    _ops: asyncio.Semaphore
    _waits: dict[threading.Event, asyncio.Future[int]]

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

    async def _error(self, req: Request, status: int, message: str) -> Response | None:
        if not req.started:
            return json_response({"message": message}, status)
        req.close_connection = True  # headers are out: all we can do is end the response
        return None

    async def _cid(self, req: Request) -> str:
        return await self._call(self.engine.resolve, req.params["id"])

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


def filters_of(req: Request) -> dict[str, list[str]]:
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
