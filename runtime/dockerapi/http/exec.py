"""``/containers/{id}/exec`` and ``/exec/...`` (moby's ``router/container`` exec routes)."""

from __future__ import annotations

from runtime import errors
from runtime.dockerapi.http.base import APIBase, Handler
from runtime.dockerapi.http.server import (
    HTTPError,
    Request,
    Response,
    frame,
    hijack,
    json_response,
    parse_detach_keys,
    upgrade,
)


class ExecRoutes(APIBase):
    def exec_routes(self) -> list[tuple[str, str, Handler]]:
        g, p = "GET", "POST"
        c = r"(?P<id>[^/]+)"
        return [
            (p, rf"/containers/{c}/exec", self.exec_create),
            (p, r"/exec/(?P<id>[^/]+)/start", self.exec_start),
            (p, r"/exec/(?P<id>[^/]+)/resize", self.exec_resize),
            (g, r"/exec/(?P<id>[^/]+)/json", self.exec_inspect),
        ]

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
