"""``pods/exec`` and ``pods/attach`` WebSocket messages are bounded in runtimed's memory.

The exec WebSocket was served with ``max_msg_size=0``: no bound on one message, which
aiohttp buffers whole (and, with permessage-deflate, inflates whole) before the server sees
it. A student in the sandbox could send one message of gigabytes, or a few compressed
megabytes that inflate to gigabytes, and runtimed, shared by the class, held it all. Now a
message over the bound closes that session with 1009 (message too big), as the kubelet's
WebSocket server refuses payloads over its limit, and nothing of it reaches the process.

The kubelet side is a stand-in (the real one needs runc): it records what reaches stdin.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient, TestServer

from runtime.kube.apiserver import server as kserver
from runtime.kube.apiserver.podio import WS_PROTOCOLS
from runtime.kube.apiserver.provision import create_cluster
from runtime.kube.apiserver.server import Hub, make_app
from runtime.kube.controllers.manager import Controllers

LIMIT = kserver.MAX_WS_MESSAGE
EXEC = "/clusters/victim/api/v1/namespaces/default/pods/web/exec?command=cat&stdin=true&stdout=true"


class RecordingStream:
    def __init__(self) -> None:
        self.stdin = bytearray()
        self.done = threading.Event()

    def read(self) -> tuple[int, bytes] | None:
        self.done.wait(30)
        return None

    def write(self, data: bytes) -> None:
        self.stdin += data

    def close_stdin(self) -> None:
        pass

    def resize(self, cols: int, rows: int) -> None:
        pass

    def exit_code(self) -> int:
        return 0

    def close(self) -> None:
        self.done.set()


class FakeKubelet:
    def __init__(self) -> None:
        self.streams: list[RecordingStream] = []

    def exec(self, ns: str, pod: str, container: str, command: list[str], *, stdin: bool, tty: bool) -> RecordingStream:
        s = RecordingStream()
        self.streams.append(s)
        return s


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[TestClient, dict[str, str], FakeKubelet]]:
    token = yaml.safe_load(create_cluster(tmp_path, "victim", "https://127.0.0.1:1", controllers=Controllers))["users"][
        0
    ]["user"]["token"]
    hub = Hub(tmp_path, controllers=Controllers)
    kubelet = FakeKubelet()
    try:
        async with TestClient(TestServer(make_app(hub))) as tc:
            headers = {"Authorization": f"Bearer {token}"}
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "web"},
                "spec": {"nodeName": "node", "containers": [{"name": "c", "image": "busybox:1.35"}]},
            }
            resp = await tc.post("/clusters/victim/api/v1/namespaces/default/pods", json=pod, headers=headers)
            assert resp.status == 201, await resp.text()
            hub.clusters["victim"].pod_io = kubelet  # type: ignore[assignment]
            yield tc, headers, kubelet
    finally:
        for s in kubelet.streams:
            s.close()
        hub.close()


async def refused(ws: Any, message: bytes) -> int | None:
    """Send ``message``; the session's close code once the server has ended it (the server
    may reset the connection while the client is still writing: no code then)."""
    with contextlib.suppress(ConnectionError):
        await ws.send_bytes(message)
    async with asyncio.timeout(20):
        while True:
            msg = await ws.receive()
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING, WSMsgType.ERROR):
                return ws.close_code


async def test_an_oversized_stdin_message_is_refused_not_buffered(api: Any) -> None:
    tc, headers, kubelet = api
    ws = await tc.ws_connect(EXEC, protocols=[WS_PROTOCOLS[0]], headers=headers, max_msg_size=0)
    big = LIMIT + 1
    assert await refused(ws, b"\x00" + b"x" * big) in (1009, 1006, None)
    assert all(len(s.stdin) == 0 for s in kubelet.streams)


async def test_a_compressed_bomb_is_refused_before_it_is_inflated(api: Any) -> None:
    tc, headers, kubelet = api
    ws = await tc.ws_connect(EXEC, protocols=[WS_PROTOCOLS[0]], headers=headers, compress=15, max_msg_size=0)
    inflated = 4 * LIMIT  # some KiB on the wire
    assert await refused(ws, b"\x00" + bytes(inflated)) in (1009, 1006, None)
    assert all(len(s.stdin) < LIMIT for s in kubelet.streams)


async def test_ordinary_stdin_still_reaches_the_process(api: Any) -> None:
    tc, headers, kubelet = api
    ws = await tc.ws_connect(EXEC, protocols=[WS_PROTOCOLS[0]], headers=headers)
    await ws.send_bytes(b"\x00" + b"hello")
    async with asyncio.timeout(10):
        while not (kubelet.streams and bytes(kubelet.streams[0].stdin) == b"hello"):
            await asyncio.sleep(0.05)
    await ws.close()
