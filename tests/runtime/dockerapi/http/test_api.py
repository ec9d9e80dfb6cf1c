"""The Docker API's protocol, over a raw unix socket: version negotiation, routing, errors,
HTTP framing (keep-alive, chunked bodies both ways) and hijacked connections.

A real Engine on a real sandbox behind the API (as test_cli.py); the client is a socket
written by hand, so the bytes on the wire are what is asserted.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.runtime.conftest_daemon import real_sandboxes_available, short_tmp
from tests.runtime.dockerapi.api_helpers import served
from tests.runtime.dockerapi.engine_helpers import DockerSandbox, docker_sandbox, engine_on

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def sandbox() -> Iterator[DockerSandbox]:
    why = real_sandboxes_available()
    if why:
        pytest.skip(why)
    with docker_sandbox(47) as sb:
        yield sb


@pytest.fixture(scope="module")
def sock(sandbox: DockerSandbox) -> Iterator[Path]:
    d = short_tmp("dapi-")
    with engine_on(sandbox) as eng, served(eng, d / "docker.sock"):
        yield d / "docker.sock"
    d.rmdir()


class Conn:
    """One HTTP/1.1 connection to the API, read and written by hand."""

    def __init__(self, path: Path) -> None:
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(60)
        self.s.connect(str(path))
        self.buf = b""

    def send(self, method: str, target: str, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        hdrs = {"Host": "docker", **(headers or {})}
        if body and "Transfer-Encoding" not in hdrs:
            hdrs["Content-Length"] = str(len(body))
        head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
        self.s.sendall(head.encode() + body)

    def _fill(self) -> None:
        data = self.s.recv(65536)
        if not data:
            raise EOFError
        self.buf += data

    def read_head(self) -> tuple[int, str, dict[str, str]]:
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        _, status, reason = lines[0].split(" ", 2)
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        return int(status), reason, headers

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_body(self, headers: dict[str, str]) -> bytes:
        if headers.get("transfer-encoding") == "chunked":
            out = b""
            while True:
                while b"\r\n" not in self.buf:
                    self._fill()
                line, self.buf = self.buf.split(b"\r\n", 1)
                size = int(line, 16)
                out += self.read_exact(size + 2)[:size]
                if size == 0:
                    return out
        return self.read_exact(int(headers.get("content-length", "0")))

    def read_to_eof(self) -> bytes:
        try:
            while True:
                self._fill()
        except EOFError:
            pass
        out, self.buf = self.buf, b""
        return out

    def request(self, method: str, target: str, body: Any = None) -> tuple[int, dict[str, str], Any]:
        raw = json.dumps(body).encode() if body is not None else b""
        self.send(method, target, raw, {"Content-Type": "application/json"} if raw else None)
        status, _reason, headers = self.read_head()
        data = b"" if method == "HEAD" or status in (204, 304) else self.read_body(headers)
        ctype = headers.get("content-type", "")
        return status, headers, json.loads(data) if ctype == "application/json" and data.strip() else data

    def close(self) -> None:
        self.s.close()


def call(path: Path, method: str, target: str, body: Any = None) -> tuple[int, dict[str, str], Any]:
    c = Conn(path)
    try:
        return c.request(method, target, body)
    finally:
        c.close()


def frames(data: bytes) -> list[tuple[int, bytes]]:
    out = []
    while data:
        stream, size = struct.unpack(">BxxxL", data[:8])
        out.append((stream, data[8 : 8 + size]))
        data = data[8 + size :]
    return out


def test_ping_get_and_head(sock: Path) -> None:
    for method in ("GET", "HEAD"):
        status, headers, body = call(sock, method, "/_ping")
        assert status == 200
        assert headers["api-version"] == "1.41"
        assert headers["docker-experimental"] == "false"
        assert headers["ostype"] == "linux"
        assert headers["builder-version"] == "1"
        assert body == (b"OK" if method == "GET" else b"")


@pytest.mark.parametrize("prefix", ["", "/v1.24", "/v1.40", "/v1.41"])
def test_every_supported_version_prefix_routes(sock: Path, prefix: str) -> None:
    status, _, body = call(sock, "GET", f"{prefix}/version")
    assert status == 200
    assert (body["ApiVersion"], body["MinAPIVersion"]) == ("1.41", "1.24")


def test_too_new_and_too_old_versions_are_refused(sock: Path) -> None:
    status, _, body = call(sock, "GET", "/v1.99/info")
    assert status == 400
    assert body == {"message": "client version 1.99 is too new. Maximum supported API version is 1.41"}
    status, _, body = call(sock, "GET", "/v1.12/info")
    assert status == 400
    assert body["message"].startswith("client version 1.12 is too old. Minimum supported API version is 1.24")


def test_unknown_routes_are_404_page_not_found(sock: Path) -> None:
    for method, target in (("GET", "/v1.41/nope"), ("POST", "/containers/json")):  # /swarm answers 503
        status, _, body = call(sock, method, target)
        assert (status, body) == (404, {"message": "page not found"})


def test_image_names_with_slashes_and_tags_route(sock: Path) -> None:
    status, _, _ = call(sock, "POST", "/v1.41/images/busybox:1.35/tag?repo=reg.example/team/app&tag=v1")
    assert status == 201
    status, _, body = call(sock, "GET", "/v1.41/images/reg.example/team/app:v1/json")
    assert status == 200 and "reg.example/team/app:v1" in body["RepoTags"]
    status, _, history = call(sock, "GET", "/images/reg.example/team/app:v1/history")
    assert status == 200 and isinstance(history, list) and history[0]["Id"] == body["Id"]
    status, _, removed = call(sock, "DELETE", "/v1.41/images/reg.example/team/app:v1")
    assert (status, removed) == (200, [{"Untagged": "reg.example/team/app:v1"}])
    status, _, missing = call(sock, "GET", "/v1.41/images/reg.example/team/app:v1/json")
    assert status == 404 and missing["message"] == "No such image: reg.example/team/app:v1"


def test_engine_errors_keep_their_status_and_message(sock: Path) -> None:
    assert call(sock, "GET", "/containers/nope/json")[::2] == (404, {"message": "No such container: nope"})
    status, _, body = call(
        sock, "POST", "/containers/create", {"Image": "busybox:1.35", "HostConfig": {"Privileged": True}}
    )
    assert status == 403 and "--privileged is not available in this lab" in body["message"]
    status, _, body = call(sock, "POST", "/containers/create", {"Image": "busybox:7"})
    assert (status, body) == (404, {"message": "No such image: busybox:7"})
    status, _, body = call(sock, "POST", "/containers/create?name=x", None)
    assert status == 400 and body["message"].startswith("No image specified")
    status, _, body = call(sock, "GET", "/containers/json?filters=notjson")
    assert status == 400 and "filters" in body["message"]
    status, _, body = call(sock, "POST", "/networks/create", {"Name": "mine", "Driver": "macvlan"})
    assert status == 403 and 'network driver "macvlan" is not available in this lab' in body["message"]


def test_pull_refusal_is_a_404_with_the_catalog(sock: Path) -> None:
    status, _, body = call(sock, "POST", "/images/create?fromImage=alpine&tag=3")
    assert status == 404
    assert body["message"].startswith("pull access denied for alpine")
    assert body["errorDetail"]["message"] == body["message"]
    assert "available images: busybox:1.35" in body["message"]


def test_keep_alive_and_chunked_request_bodies(sock: Path) -> None:
    c = Conn(sock)
    try:
        payload = json.dumps({"Image": "busybox:1.35", "Cmd": ["true"]}).encode()
        chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (payload[:10], payload[10:])) + b"0\r\n\r\n"
        c.send("POST", "/v1.41/containers/create?name=chunky", chunked, {"Transfer-Encoding": "chunked"})
        status, _, headers = c.read_head()
        created = json.loads(c.read_body(headers))
        assert status == 201 and created["Warnings"] == []
        # same connection: a chunked response, then a plain one
        status, headers, body = c.request("GET", "/v1.41/containers/chunky/json")
        assert status == 200 and body["Id"] == created["Id"]
        assert c.request("DELETE", "/v1.41/containers/chunky")[0] == 204
    finally:
        c.close()


def running(sock: Path, cmd: list[str]) -> str:
    status, _, body = call(sock, "POST", "/containers/create", {"Image": "busybox:1.35", "Cmd": cmd})
    assert status == 201
    assert call(sock, "POST", f"/containers/{body['Id']}/start")[0] == 204
    return str(body["Id"])


def test_exec_hijack_half_close_returns_the_output(sock: Path) -> None:
    cid = running(sock, ["sleep", "600"])
    try:
        status, _, body = call(
            sock, "POST", f"/containers/{cid}/exec", {"Cmd": ["cat"], "AttachStdin": True, "AttachStdout": True}
        )
        assert status == 201
        c = Conn(sock)
        start = json.dumps({"Detach": False, "Tty": False}).encode()
        c.send("POST", f"/exec/{body['Id']}/start", start, {"Connection": "Upgrade", "Upgrade": "tcp"})
        status, reason, headers = c.read_head()
        assert (status, reason) == (101, "UPGRADED")
        assert headers["content-type"] == "application/vnd.docker.multiplexed-stream"
        assert (headers["connection"], headers["upgrade"]) == ("Upgrade", "tcp")
        c.s.sendall(b"half ")
        c.s.sendall(b"closed\n")
        c.s.shutdown(socket.SHUT_WR)  # stdin ends here; the output must still come back
        assert frames(c.read_to_eof()) == [(1, b"half closed\n")]
        c.close()
        status, _, info = call(sock, "GET", f"/exec/{body['Id']}/json")
        assert (info["Running"], info["ExitCode"]) == (False, 0)
    finally:
        call(sock, "DELETE", f"/containers/{cid}?force=1")


def test_exec_without_upgrade_headers_streams_until_close(sock: Path) -> None:
    cid = running(sock, ["sleep", "600"])
    try:
        body = {"Cmd": ["sh", "-c", "echo out; echo err >&2"], "AttachStdout": True, "AttachStderr": True}
        eid = call(sock, "POST", f"/containers/{cid}/exec", body)[2]["Id"]
        c = Conn(sock)
        c.send("POST", f"/exec/{eid}/start", json.dumps({"Detach": False, "Tty": False}).encode())
        status, _, _headers = c.read_head()
        assert status == 200
        assert sorted(frames(c.read_to_eof())) == [(1, b"out\n"), (2, b"err\n")]
        c.close()
    finally:
        call(sock, "DELETE", f"/containers/{cid}?force=1")


def test_a_client_leaving_logs_follow_ends_the_follower(sock: Path) -> None:
    cid = running(sock, ["sh", "-c", "echo started; sleep 600"])
    try:
        c = Conn(sock)
        c.send("GET", f"/containers/{cid}/logs?follow=1&stdout=1&stderr=1")
        status, _, headers = c.read_head()
        assert status == 200 and headers["transfer-encoding"] == "chunked"
        while b"started" not in c.buf:
            c._fill()
        assert any(t.name == "docker-logs" for t in threading.enumerate())
        c.close()
        deadline = time.monotonic() + 30
        while any(t.name == "docker-logs" for t in threading.enumerate()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(t.name == "docker-logs" for t in threading.enumerate())
    finally:
        call(sock, "DELETE", f"/containers/{cid}?force=1")


def test_wait_answers_when_the_container_exits(sock: Path) -> None:
    status, _, body = call(sock, "POST", "/containers/create", {"Image": "busybox:1.35", "Cmd": ["sh", "-c", "exit 3"]})
    cid = body["Id"]
    try:
        c = Conn(sock)
        c.send("POST", f"/containers/{cid}/wait?condition=next-exit")
        status, _, headers = c.read_head()  # the head comes before the start, as docker run needs
        assert status == 200
        assert call(sock, "POST", f"/containers/{cid}/start")[0] == 204
        assert json.loads(c.read_body(headers)) == {"StatusCode": 3, "Error": None}
        c.close()
    finally:
        call(sock, "DELETE", f"/containers/{cid}?force=1")


def test_system_routes(sock: Path) -> None:
    status, _, df = call(sock, "GET", "/system/df")
    assert status == 200 and {"LayersSize", "Images", "Containers", "Volumes", "BuildCache"} <= set(df)
    status, _, nets = call(sock, "GET", "/networks")
    assert status == 200 and [n["Name"] for n in nets] == ["bridge", "host", "none"]
    assert nets[0]["IPAM"]["Config"][0]["Subnet"] == "172.17.0.0/16"
    assert call(sock, "GET", "/networks/bridge")[0] == 200
    assert call(sock, "GET", "/networks/other")[0] == 404
    assert call(sock, "POST", "/build/prune")[2] == {"CachesDeleted": [], "SpaceReclaimed": 0}
    status, _, body = call(sock, "POST", "/build?remote=https://example.com/repo.git")
    assert status == 501 and "remote build contexts" in body["message"]


def test_a_client_leaving_an_attach_detaches_it(sock: Path) -> None:
    cid = running(sock, ["sleep", "600"])
    names = {f"attach-{cid[:12]}-out", f"attach-{cid[:12]}-in"}
    try:
        c = Conn(sock)
        c.send(
            "POST",
            f"/containers/{cid}/attach?stream=1&stdout=1&stderr=1&stdin=1",
            b"",
            {"Connection": "Upgrade", "Upgrade": "tcp"},
        )
        assert c.read_head()[0] == 101
        deadline = time.monotonic() + 30
        while not names & {t.name for t in threading.enumerate()} and time.monotonic() < deadline:
            time.sleep(0.05)
        assert names & {t.name for t in threading.enumerate()}
        c.close()  # a full close, not a half-close: the session ends although the process is silent
        deadline = time.monotonic() + 30
        while names & {t.name for t in threading.enumerate()} and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not names & {t.name for t in threading.enumerate()}
        assert call(sock, "GET", f"/containers/{cid}/json")[2]["State"]["Running"] is True
    finally:
        call(sock, "DELETE", f"/containers/{cid}?force=1")
