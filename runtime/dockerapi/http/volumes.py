"""``/volumes/...`` (moby's ``router/volume``)."""

from __future__ import annotations

from runtime.dockerapi.http.base import NO_CONTENT, APIBase, Handler, filters_of
from runtime.dockerapi.http.server import (
    HTTPError,
    Request,
    Response,
    json_response,
)


class VolumeRoutes(APIBase):
    def volumes_routes(self) -> list[tuple[str, str, Handler]]:
        g, p, d = "GET", "POST", "DELETE"
        return [
            (g, r"/volumes", self.volume_list),
            (p, r"/volumes/create", self.volume_create),
            (p, r"/volumes/prune", self.volume_prune),
            (g, r"/volumes/(?P<name>[^/]+)", self.volume_inspect),
            (d, r"/volumes/(?P<name>[^/]+)", self.volume_remove),
        ]

    async def volume_list(self, req: Request) -> Response:
        vols = await self._call(self.engine.volumes)
        names = filters_of(req).get("name")
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
