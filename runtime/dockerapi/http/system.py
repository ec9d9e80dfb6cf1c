"""``/_ping``, ``/version``, ``/info``, ``/system/df``, ``/auth`` and swarm mode's routes (moby's
``router/system``, ``router/swarm``)."""

from __future__ import annotations

import os

from runtime import errors
from runtime.dockerapi import API_VERSION, ENGINE_VERSION, MIN_API_VERSION
from runtime.dockerapi.http.base import APIBase, Handler
from runtime.dockerapi.http.server import (
    Request,
    Response,
    json_response,
)

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


class SystemRoutes(APIBase):
    def system_routes(self) -> list[tuple[str, str, Handler]]:
        g, p, h = "GET", "POST", "HEAD"
        return [
            (g, r"/_ping", self.ping),
            (h, r"/_ping", self.ping),
            (g, r"/version", self.version),
            (g, r"/info", self.info),
            (g, r"/system/df", self.system_df),
            (p, r"/auth", self.auth),
            # swarm mode: this engine is never part of a swarm; dockerd outside a swarm answers these 503
            *((method, pat, self.not_a_swarm) for method, pat in SWARM_ROUTES),
        ]

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

    async def auth(self, req: Request) -> Response:
        raise errors.NotAvailable("docker login is not available: this lab has no registry and no internet")

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
