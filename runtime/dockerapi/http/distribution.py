"""``/distribution/{name}/json`` (moby's ``router/distribution``)."""

from __future__ import annotations

from runtime import errors
from runtime.dockerapi.http.base import APIBase, Handler
from runtime.dockerapi.http.server import (
    Request,
    Response,
    json_response,
)
from runtime.dockerapi.images import distribution as image_distribution
from runtime.images import catalog


class DistributionRoutes(APIBase):
    def distribution_routes(self) -> list[tuple[str, str, Handler]]:
        g = "GET"
        n = r"(?P<name>.+)"  # image names: slashes allowed
        return [
            (g, rf"/distribution/{n}/json", self.distribution_inspect),
        ]

    async def distribution_inspect(self, req: Request) -> Response:
        """The catalog's images answer as a registry would; any other name as dockerd answers
        for a repository it cannot reach (this lab has no registry and no internet)."""
        name = req.params["name"]
        info = await self._call(image_distribution.descriptor, self.engine.store, name)
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
