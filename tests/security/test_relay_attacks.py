"""Attacks on runtimed's relays of a sandbox's lab-cluster and Docker APIs (runtime/relay.py,
``/v1/sandboxes/{id}/kube-api/...`` and ``/docker-api/...`` on a lab node's TLS listener, #17).

tests/security/test_scaleout_attacks.py covers the path encodings, other sandboxes' tokens, the
web role and connection upgrades. Here, what a caller holding one sandbox's grader token (or a
web tier made to forward anything) tries next, on the request line and in the headers as a raw
client writes them:

- Host, X-Forwarded-*, X-Original-URL and similar headers never choose another cluster: the
  route's sandbox alone decides, and the answer is that sandbox's own cluster's.
- An absolute-form request target (``GET https://elsewhere/...``) is no way to another sandbox
  or another server.
- Conflicting body framing (Content-Length with Transfer-Encoding, two Content-Lengths) is
  refused before anything is relayed, so no second request hides in a body; CONNECT (an
  implicit tunnel) is not relayed.
- One sandbox holding its relay's every slot (long watches) gets 429 past its share, and a
  neighbour on the same node is still served.
"""

from __future__ import annotations

import socket
import ssl
import time

import pytest

from runtime.placement import KubernetesBackend, split_id
from tests.scaleout.topology import Topology

MARK = "relay-attack-mark"


@pytest.fixture(scope="module")
def pair(backend: KubernetesBackend) -> tuple[str, str]:
    """Two sandboxes with a lab cluster and an engine each, on the same lab node (three are
    placed on two nodes: two of them share one)."""
    spec = {"image": "busybox", "cpus": 1, "memory": 256 * 2**20, "services": ["kubernetes", "docker"]}
    made = [backend.create({**spec, "labels": {"session": f"relay{i}"}})["id"] for i in range(3)]
    by_node: dict[str, list[str]] = {}
    for sid in made:
        by_node.setdefault(split_id(sid)[1], []).append(sid)
    x, y = next(v for v in by_node.values() if len(v) >= 2)[:2]
    # a marker object in X's cluster only: an answer holding it came from X's cluster
    token = backend.mint_token(x, "grader", 600)
    status, body = _exchange(
        backend,
        x,
        _req(
            "POST",
            _target(x, "kube-api/api/v1/namespaces/default/configmaps"),
            token,
            extra={"Content-Type": "application/json"},
            body=b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"' + MARK.encode() + b'"}}',
        ),
    )
    assert status == 201, body
    return x, y


def _target(sid: str, tail: str) -> str:
    return f"/v1/sandboxes/{split_id(sid)[2]}/{tail}"


def _req(
    method: str, target: str, token: str, *, extra: dict[str, str] | None = None, body: bytes = b"", host: str = "x"
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", f"Authorization: Bearer {token}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (extra or {}).items()]
    if body and not any(k.lower() in ("content-length", "transfer-encoding") for k in extra or {}):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _connect(backend: KubernetesBackend, sid: str, ca: str) -> ssl.SSLSocket:
    host, _, port = backend.node_address(split_id(sid)[1]).removeprefix("https://").rpartition(":")
    ctx = ssl.create_default_context(cafile=ca)
    raw = socket.create_connection((host, int(port)), timeout=30)
    return ctx.wrap_socket(raw, server_hostname=host)


def _exchange(backend: KubernetesBackend, sid: str, raw: bytes) -> tuple[int, bytes]:
    """Send ``raw`` exactly as written to the node holding ``sid``; (status, whole answer)."""
    with _connect(backend, sid, str(backend.ca)) as s:
        s.sendall(raw)
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, ssl.SSLError):
                break
            if not chunk:
                break
            data += chunk
    if not data.startswith(b"HTTP/1."):
        return 0, data  # closed without an answer: refused to parse
    return int(data.split(b" ", 2)[1]), data


def _mark_seen(backend: KubernetesBackend, sid: str) -> int:
    """The status of reading the marker in ``sid``'s own cluster with its own grader token."""
    token = backend.mint_token(sid, "grader", 300)
    status, _ = _exchange(
        backend, sid, _req("GET", _target(sid, f"kube-api/api/v1/namespaces/default/configmaps/{MARK}"), token)
    )
    return status


def test_the_marker_is_in_one_cluster_only(backend: KubernetesBackend, pair: tuple[str, str]) -> None:
    x, y = pair
    assert (_mark_seen(backend, x), _mark_seen(backend, y)) == (200, 404)


@pytest.mark.parametrize(
    "header",
    [
        "Host",
        "X-Forwarded-Host",
        "X-Forwarded-Prefix",
        "X-Original-URL",
        "X-Rewrite-URL",
        "X-Kubelab-Sandbox",
        "Forwarded",
    ],
)
def test_headers_never_choose_another_sandboxs_cluster(
    backend: KubernetesBackend, pair: tuple[str, str], header: str
) -> None:
    x, y = pair
    box_y = split_id(y)[2]
    token_x = backend.mint_token(x, "grader", 300)
    node = backend.node_address(split_id(y)[1]).removeprefix("https://")
    value = {
        "Host": node,
        "X-Forwarded-Host": node,
        "X-Forwarded-Prefix": f"/v1/sandboxes/{box_y}/kube-api",
        "X-Original-URL": _target(y, f"kube-api/api/v1/namespaces/default/configmaps/{MARK}"),
        "X-Rewrite-URL": _target(y, f"kube-api/api/v1/namespaces/default/configmaps/{MARK}"),
        "X-Kubelab-Sandbox": box_y,
        "Forwarded": f"host={node};proto=https",
    }[header]
    extra = {} if header == "Host" else {header: value}
    raw = _req(
        "GET",
        _target(x, f"kube-api/api/v1/namespaces/default/configmaps/{MARK}"),
        token_x,
        extra=extra,
        host=value if header == "Host" else "x",
    )
    status, answer = _exchange(backend, x, raw)
    # X's own cluster answered (the marker exists only there), whatever the header named
    assert status == 200 and MARK.encode() in answer, answer[:400]
    # and the same headers on a request for Y's routes with X's token: refused by runtimed
    raw_y = _req("GET", _target(y, "kube-api/api/v1/namespaces"), token_x, extra=extra)
    assert _exchange(backend, x, raw_y)[0] == 403


def test_an_absolute_form_target_reaches_no_other_sandbox_or_server(
    backend: KubernetesBackend, pair: tuple[str, str]
) -> None:
    x, y = pair
    token_x = backend.mint_token(x, "grader", 300)
    mark = f"kube-api/api/v1/namespaces/default/configmaps/{MARK}"
    for target in (
        f"https://127.0.0.1:1{_target(x, mark)}",
        f"http://evil.example{_target(x, mark)}",
        f"https://{backend.node_address(split_id(y)[1]).removeprefix('https://')}{_target(y, mark)}",
    ):
        status, answer = _exchange(backend, x, _req("GET", target, token_x))
        if target.endswith(_target(y, mark)):
            assert status in (400, 403), (target, status, answer[:300])
        else:
            # refused, or the route's own sandbox answered: never a fetch of the URL's host
            assert status == 400 or (status == 200 and MARK.encode() in answer), (target, status, answer[:300])


@pytest.mark.parametrize(
    "framing",
    [
        {"Content-Length": "4", "Transfer-Encoding": "chunked"},
        {"Transfer-Encoding": "chunked", "Content-Length": "4"},
        {"Content-Length": "4, 200"},
        {"Transfer-Encoding": "gzip, chunked, identity"},
    ],
)
def test_conflicting_body_framing_smuggles_no_second_request(
    backend: KubernetesBackend, pair: tuple[str, str], framing: dict[str, str]
) -> None:
    x, _y = pair
    token_x = backend.mint_token(x, "grader", 300)
    hidden = _req("DELETE", _target(x, f"kube-api/api/v1/namespaces/default/configmaps/{MARK}"), token_x)
    body = b"0\r\n\r\n" + hidden
    raw = _req("POST", _target(x, "kube-api/api/v1/namespaces/default/configmaps"), token_x, extra=framing, body=body)
    status, answer = _exchange(backend, x, raw)
    assert status in (0, 400), (framing, status, answer[:300])
    assert answer.count(b"HTTP/1.") <= 1  # no second answer: nothing after the body was a request
    assert _mark_seen(backend, x) == 200  # the hidden DELETE never ran


def test_connect_is_not_relayed(backend: KubernetesBackend, pair: tuple[str, str]) -> None:
    x, _y = pair
    token_x = backend.mint_token(x, "grader", 300)
    for kind in ("kube-api/api", "docker-api/_ping"):
        hidden = _req("DELETE", _target(x, f"kube-api/api/v1/namespaces/default/configmaps/{MARK}"), token_x)
        status, answer = _exchange(backend, x, _req("CONNECT", _target(x, kind), token_x) + hidden)
        assert status in (0, 400, 404, 405, 501), (kind, status, answer[:300])  # runtimed refuses it
        assert _mark_seen(backend, x) == 200


def test_one_sandbox_filling_its_relay_does_not_starve_its_neighbour(
    topo: Topology, backend: KubernetesBackend, pair: tuple[str, str]
) -> None:
    from runtime.relay import ApiRelay

    x, y = pair
    share = ApiRelay().per_sandbox
    token_x = backend.mint_token(x, "grader", 300)
    watch = _req("GET", _target(x, "kube-api/api/v1/namespaces/default/configmaps?watch=true"), token_x)
    held: list[ssl.SSLSocket] = []
    try:
        for _ in range(share):
            s = _connect(backend, x, str(topo.ca))
            held.append(s)
            s.sendall(watch)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = s.recv(4096)
                assert chunk, head
                head += chunk
            assert head.startswith(b"HTTP/1.1 200"), head[:200]  # a watch open, relayed
        # X is at its share: the next request for X waits for nothing and is told so
        status, answer = _exchange(backend, x, watch)
        assert status == 429 and b"relayed API requests open" in answer, answer[:300]
        # its neighbour on the same node is served as before
        assert _mark_seen(backend, y) == 404
        ok = _exchange(backend, y, _req("GET", _target(y, "kube-api/api"), backend.mint_token(y, "grader", 300)))
        assert ok[0] == 200, ok[1][:300]
    finally:
        for s in held:
            s.close()
    # once X's watches are closed, X is served again (the relay notices each closed caller)
    deadline = time.monotonic() + 60
    while True:
        if _mark_seen(backend, x) == 200:
            break
        assert time.monotonic() < deadline, "X's relay slots were never given back"
        time.sleep(0.5)


@pytest.mark.parametrize(
    "tail",
    ["kube-api/api/v1/namespaces/default/configmaps", "docker-api/v1.41/containers/create"],
)
def test_a_huge_body_is_refused_upstream_and_the_relay_stays_usable(
    backend: KubernetesBackend, pair: tuple[str, str], tail: str
) -> None:
    x, _y = pair
    token_x = backend.mint_token(x, "grader", 300)
    size = 64 * 2**20  # far past any object either API keeps (the kube API's limit is 3 MiB)
    head = _req(
        "POST",
        _target(x, tail),
        token_x,
        extra={"Content-Type": "application/json", "Content-Length": str(size)},
    )
    status = 0
    with _connect(backend, x, str(backend.ca)) as s:
        s.sendall(head)
        chunk = b'{"a":"' + b"x" * (2**20 - 6)
        sent = 0
        try:
            while sent < size:
                s.sendall(chunk[: min(len(chunk), size - sent)])
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass  # refused mid-body: what is asserted is the answer
        data = b""
        try:
            while not data.startswith(b"HTTP/1.") or b"\r\n" not in data:
                more = s.recv(4096)
                if not more:
                    break
                data += more
        except (ConnectionResetError, ssl.SSLError):
            pass
        if data.startswith(b"HTTP/1."):
            status = int(data.split(b" ", 2)[1])
    assert status in (0, 400, 413), (tail, status, data[:300])
    # the sandbox's relay and cluster still answer
    assert _mark_seen(backend, x) == 200
