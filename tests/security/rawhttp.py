"""Raw HTTP/1.1 and WebSocket handshakes on a socket: the request line and headers go out
exactly as written (no client normalises a path or picks the Host), so the tests see what a
hostile browser or script can really send."""

from __future__ import annotations

import base64
import os
import socket
from dataclasses import dataclass
from http.cookies import SimpleCookie
from urllib.parse import urlparse


@dataclass
class Answer:
    status: int  # 0: the server closed without an HTTP answer (it refused to parse the request)
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def cookies(self) -> dict[str, str]:
        jar: SimpleCookie = SimpleCookie()
        for k, v in self.headers:
            if k.lower() == "set-cookie":
                jar.load(v)
        return {k: m.value for k, m in jar.items()}


def _dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2 :]
    return out


def request(
    base: str,
    method: str,
    path: str,
    *,
    host: str | None = None,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
) -> Answer:
    url = urlparse(base)
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host or url.netloc}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body:
        lines += [f"Content-Length: {len(body)}"]
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    with socket.create_connection((url.hostname, url.port), timeout=60) as sock:
        sock.sendall(raw)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/"):
        return Answer(0, [], data)
    first, *fields = head.decode("latin-1").split("\r\n")
    parsed = [(k.strip(), v.strip()) for k, _, v in (f.partition(":") for f in fields)]
    answer = Answer(int(first.split(" ", 2)[1]), parsed, rest)
    if (answer.header("Transfer-Encoding") or "").lower() == "chunked":
        answer.body = _dechunk(rest)
    return answer


def websocket_status(base: str, path: str, *, host: str | None = None, headers: dict[str, str] | None = None) -> int:
    """The status of a WebSocket handshake (101: accepted; 0: closed without an answer)."""
    url = urlparse(base)
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host or url.netloc}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        *(f"{k}: {v}" for k, v in (headers or {}).items()),
    ]
    with socket.create_connection((url.hostname, url.port), timeout=60) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        head = b""
        while b"\r\n\r\n" not in head and (chunk := sock.recv(4096)):
            head += chunk
    return int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
