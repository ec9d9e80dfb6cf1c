"""``/networks/...`` (moby's ``router/network``)."""

from __future__ import annotations

from runtime.dockerapi.http.base import NO_CONTENT, APIBase, Handler, filters_of
from runtime.dockerapi.http.server import (
    HTTPError,
    Request,
    Response,
    json_response,
)


class NetworkRoutes(APIBase):
    def networks_routes(self) -> list[tuple[str, str, Handler]]:
        g, p, d = "GET", "POST", "DELETE"
        return [
            (g, r"/networks", self.network_list),
            (p, r"/networks/create", self.network_create),
            (p, r"/networks/prune", self.network_prune),
            (g, r"/networks/(?P<id>[^/]+)", self.network_inspect),
            (d, r"/networks/(?P<id>[^/]+)", self.network_remove),
            (p, r"/networks/(?P<id>[^/]+)/connect", self.network_connect),
            (p, r"/networks/(?P<id>[^/]+)/disconnect", self.network_disconnect),
        ]

    async def network_list(self, req: Request) -> Response:
        filters = filters_of(req)
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
