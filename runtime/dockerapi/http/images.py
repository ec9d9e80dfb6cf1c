"""``/images/...`` and ``/commit`` (moby's ``router/image``)."""

from __future__ import annotations

import asyncio
import fnmatch
import json
import threading
from typing import Any

from runtime import errors
from runtime.dockerapi import ENGINE_VERSION
from runtime.dockerapi.http.base import APIBase, Handler, filters_of
from runtime.dockerapi.http.server import (
    ChunkedStream,
    HTTPError,
    Request,
    Response,
    cancel_task,
    json_response,
    run_in_thread,
    thread_iter,
)
from runtime.dockerapi.images import tarexport
from runtime.dockerapi.images.store import Image
from runtime.images import catalog


class ImageRoutes(APIBase):
    def images_routes(self) -> list[tuple[str, str, Handler]]:
        g, p, d = "GET", "POST", "DELETE"
        n = r"(?P<name>.+)"  # image names: slashes allowed
        return [
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
        ]

    async def image_list(self, req: Request) -> Response:
        filters = filters_of(req)
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
        dangling = filters_of(req).get("dangling", ["true"])
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
            async for chunk in thread_iter("docker-save", lambda: tarexport.save(store, refs), cancel):
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
