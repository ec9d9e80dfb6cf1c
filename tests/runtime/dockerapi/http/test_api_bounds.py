"""One engine's share of runtimed: bounded engine calls, requests and connections (issue #12).

runtimed's default executor (64 threads) serves every sandbox. A student who floods
their engine must get at most ``OPS_PER_ENGINE`` engine calls running at once (the rest
wait on the loop, costing no thread), at most ``MAX_IN_FLIGHT`` requests being handled
(more are answered 429 with the reason) and at most ``MAX_CONNECTIONS`` connections.

The engine here is a stand-in whose ``info`` blocks until released (a real engine call
cannot be held open on demand); the API, its server and the HTTP on the socket are real.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime.dockerapi.http.api import MAX_IN_FLIGHT, DockerAPI
from runtime.dockerapi.http.base import OPS_PER_ENGINE
from runtime.dockerapi.http.server import MAX_CONNECTIONS
from tests.runtime.conftest_daemon import short_tmp
from tests.runtime.dockerapi.api_helpers import served


class HeldEngine:
    """Stand-in: ``info`` counts its callers and blocks until ``release``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0
        self.done = 0
        self.gate = threading.Event()

    def info(self) -> dict[str, Any]:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        self.gate.wait(60)
        with self.lock:
            self.running -= 1
            self.done += 1
        return {"ID": "held"}


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=60)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(60)
        self.sock.connect(str(self.path))


def get(path: Path, target: str) -> tuple[int, Any]:
    conn = UnixHTTP(path)
    try:
        conn.request("GET", target)
        r = conn.getresponse()
        raw = r.read()
        return r.status, json.loads(raw) if r.getheader("Content-Type") == "application/json" else raw
    finally:
        conn.close()


def until(cond: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"never: {what}")
        time.sleep(0.01)


@pytest.fixture
def held() -> Iterator[tuple[HeldEngine, DockerAPI, Path]]:
    d = short_tmp("dab-")
    engine = HeldEngine()
    try:
        with served(engine, d / "docker.sock") as api:  # type: ignore[arg-type]
            yield engine, api, d / "docker.sock"
            engine.gate.set()
    finally:
        engine.gate.set()
        d.rmdir()


def test_a_request_flood_runs_a_few_engine_calls_at_a_time_and_refuses_past_the_cap(
    held: tuple[HeldEngine, DockerAPI, Path],
) -> None:
    engine, api, sock = held
    results: list[tuple[int, Any]] = []
    threads = [threading.Thread(target=lambda: results.append(get(sock, "/v1.41/info"))) for _ in range(MAX_IN_FLIGHT)]
    for t in threads:
        t.start()
    until(lambda: api._in_flight == MAX_IN_FLIGHT, f"{MAX_IN_FLIGHT} requests in flight")
    until(lambda: engine.running == OPS_PER_ENGINE, f"{OPS_PER_ENGINE} engine calls running")
    # the others wait on the loop: give them every chance to get in if nothing held them
    time.sleep(0.5)
    assert engine.most == OPS_PER_ENGINE

    status, body = get(sock, "/v1.41/info")  # one more than the engine may have in flight
    assert status == 429
    assert f"too many requests in progress on this Docker engine ({MAX_IN_FLIGHT} at most" in body["message"]

    engine.gate.set()
    for t in threads:
        t.join(60)
    assert [s for s, _ in results] == [200] * MAX_IN_FLIGHT
    assert engine.most == OPS_PER_ENGINE and engine.done == MAX_IN_FLIGHT
    assert get(sock, "/v1.41/info")[0] == 200  # and the engine serves again


def test_connections_past_the_cap_are_answered_429_and_closed(held: tuple[HeldEngine, DockerAPI, Path]) -> None:
    _engine, api, sock = held
    idle = []
    try:
        for _ in range(MAX_CONNECTIONS):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(str(sock))
            idle.append(s)
        until(lambda: len(api.server._conns) == MAX_CONNECTIONS, f"{MAX_CONNECTIONS} connections open")
        status, body = get(sock, "/_ping")
        assert status == 429
        assert f"too many open connections to this Docker engine ({MAX_CONNECTIONS} at most)" in body["message"]
    finally:
        for s in idle:
            s.close()
    until(lambda: not api.server._conns, "idle connections closed")
    assert get(sock, "/_ping")[0] == 200
