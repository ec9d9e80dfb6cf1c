"""``/containers/...`` with ``docker cp`` (``/archive``), ``diff`` and ``export`` (moby's ``router/container``)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

from runtime import errors
from runtime.dockerapi.engine import archive
from runtime.dockerapi.http.base import NO_CONTENT, REFUSED_BODY_MAX, APIBase, Handler, filters_of
from runtime.dockerapi.http.server import (
    MULTIPLEXED_STREAM,
    RAW_STREAM,
    ChunkedStream,
    HTTPError,
    Request,
    Response,
    cancel_task,
    frame,
    hijack,
    json_response,
    parse_detach_keys,
    run_in_thread,
    thread_iter,
)

WAIT_CONDITIONS = ("not-running", "next-exit", "removed")


class ContainerRoutes(APIBase):
    def containers_routes(self) -> list[tuple[str, str, Handler]]:
        g, p, d, h = "GET", "POST", "DELETE", "HEAD"
        c = r"(?P<id>[^/]+)"
        return [
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
        ]

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
        items = await self._call(self.engine.list, all=show_all, filters=filters_of(req))
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
