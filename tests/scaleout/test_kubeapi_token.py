"""runtime.placement.KubeAPI with a token kept in a file (the in-cluster service account's
projected token, a kubeconfig's ``tokenFile``): the kubelet replaces that file long before
the token expires, so the client reads it again (at most every TOKEN_RELOAD seconds, as
client-go does) instead of sending the token of its start-up forever.

The API server here is a plain HTTP server in a thread that records each request's
Authorization header and answers ``{}``: only the client's side is under test."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from runtime import errors, placement


class _Recorder(BaseHTTPRequestHandler):
    seen: list[str] = []

    def do_GET(self) -> None:
        type(self).seen.append(self.headers.get("Authorization", ""))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, list[str]]]:
    seen: list[str] = []
    handler = type("Handler", (_Recorder,), {"seen": seen})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()


def _kubeconfig(tmp_path: Path, server: str, user: dict[str, str]) -> Path:
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_a_rotated_token_file_is_read_again(
    tmp_path: Path, server: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, seen = server
    token = tmp_path / "token"
    token.write_text("first\n")
    api = placement.KubeAPI(_kubeconfig(tmp_path, url, {"tokenFile": str(token)}))
    try:
        api.request("GET", "/api/v1/nodes/a")
        token.write_text("second\n")  # the kubelet rotated it
        api.request("GET", "/api/v1/nodes/a")  # within TOKEN_RELOAD: the one read last
        monkeypatch.setattr(placement, "TOKEN_RELOAD", 0.0)
        api.request("GET", "/api/v1/nodes/a")
        token.unlink()  # a failed read (the file mid-swap): the last token, not an error
        api.request("GET", "/api/v1/nodes/a")
    finally:
        api.close()
    assert seen == ["Bearer first", "Bearer first", "Bearer second", "Bearer second"]


def test_an_unreadable_token_file_fails_at_start(tmp_path: Path, server: tuple[str, list[str]]) -> None:
    url, seen = server
    with pytest.raises(errors.NotAvailable, match="cannot be read"):
        placement.KubeAPI(_kubeconfig(tmp_path, url, {"tokenFile": str(tmp_path / "missing")}))
    assert seen == []


def test_a_token_in_the_kubeconfig_is_sent_as_it_is(tmp_path: Path, server: tuple[str, list[str]]) -> None:
    url, seen = server
    api = placement.KubeAPI(_kubeconfig(tmp_path, url, {"token": "inline"}))
    try:
        api.request("GET", "/api/v1/nodes/a")
    finally:
        api.close()
    assert seen == ["Bearer inline"]
