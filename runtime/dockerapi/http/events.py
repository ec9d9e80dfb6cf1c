"""``GET /events`` (moby's ``router/system`` events): the engine's ring, then live ones."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from runtime.dockerapi.engine import events as events_module
from runtime.dockerapi.http.base import APIBase, Handler, filters_of
from runtime.dockerapi.http.server import (
    ChunkedStream,
    HTTPError,
    Request,
    cancel_task,
)

EVENT_FILTERS = (
    "type",
    "event",
    "container",
    "image",
    "label",
    "network",
    "volume",
    "daemon",
    "plugin",
    "node",
    "service",
    "secret",
    "config",
    "scope",
)


class EventRoutes(APIBase):
    def events_routes(self) -> list[tuple[str, str, Handler]]:
        g = "GET"
        return [
            (g, r"/events", self.events),
        ]

    async def events(self, req: Request) -> None:
        """``docker events``: the engine's kept events since ``since``, then live ones until
        ``until`` passes or the client leaves (engine/events.py), filtered as dockerd filters them."""
        filters = filters_of(req)
        unknown = [k for k in filters if k not in EVENT_FILTERS]
        if unknown:
            raise HTTPError(400, f"invalid filter '{unknown[0]}'")
        try:
            since, until = events_module.parse_time(req.arg("since")), events_module.parse_time(req.arg("until"))
        except ValueError as exc:
            raise HTTPError(400, str(exc)) from None
        loop = asyncio.get_running_loop()
        q: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

        def deliver(msg: dict[str, Any] | None) -> bool:
            if msg is not None and q.qsize() >= events_module.QUEUE:
                return False  # a client that does not read is dropped, not buffered for
            try:
                loop.call_soon_threadsafe(q.put_nowait, msg)
            except RuntimeError:  # the API's loop is closed: never fail the engine's caller
                return False
            return True

        bus = self.engine.events
        past = bus.subscribe(deliver, since if since is not None else (None if until is None else 0))
        try:
            out = await ChunkedStream.start(req)
            gone = threading.Event()
            watcher = asyncio.ensure_future(req.watch_disconnect(gone))
            try:
                for msg in past:
                    if (until is None or msg["timeNano"] <= until) and events_module.matches(msg, filters):
                        await out.write_json(msg)
                while until is None or time.time_ns() < until:
                    timeout = None if until is None else (until - time.time_ns()) / 1e9
                    getter = asyncio.ensure_future(q.get())
                    done, _ = await asyncio.wait(
                        {getter, watcher}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                    )
                    if getter not in done:
                        await cancel_task(getter)
                        break
                    live = getter.result()
                    if live is None:
                        break
                    if (until is None or live["timeNano"] <= until) and events_module.matches(live, filters):
                        await out.write_json(live)
            finally:
                await cancel_task(watcher)
        finally:
            bus.unsubscribe(deliver)
        if not gone.is_set():
            await out.finish()
        else:
            req.close_connection = True
