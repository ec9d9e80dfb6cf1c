"""``/build`` and ``/build/prune`` (moby's ``router/build``)."""

from __future__ import annotations

import asyncio
import logging
import tempfile
import threading
from typing import Any

from runtime import errors
from runtime.dockerapi.build.builder import BuildParams
from runtime.dockerapi.engine import containers as engine_containers
from runtime.dockerapi.http.base import SPOOL_MAX, APIBase, Handler
from runtime.dockerapi.http.server import (
    ChunkedStream,
    HTTPError,
    Request,
    Response,
    ThreadPut,
    cancel_task,
    json_response,
)

log = logging.getLogger("runtime.dockerapi.http.build")


class BuildRoutes(APIBase):
    def build_routes(self) -> list[tuple[str, str, Handler]]:
        p = "POST"
        return [
            (p, r"/build", self.image_build),
            (p, r"/build/prune", self.build_prune),
        ]

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
            extra_hosts = engine_containers.parse_extra_hosts([str(h) for h in req.args("extrahosts")]) or []
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
