"""exec/attach/log through the Python client's own WebSocket code (``kubernetes.stream``).

The client sends stdin as a WebSocket TEXT frame when it is given a ``str``
(``WSClient.write_channel``) and as a BINARY frame for ``bytes``; apimachinery's wsstream
reads a frame's payload whatever its opcode, so both reach the process. The pod's
streams are real host processes (``HostPodIO``), so what comes back went through the
server's channel protocol end to end.
"""

from __future__ import annotations

import ssl
import time
from typing import Any

import pytest

from tests.compat.kube.conftest import Kubectl

CLIENT = "kubernetes-python"


@pytest.fixture
def pod(kubectl: Kubectl, ns: str) -> tuple[str, str]:
    kubectl("run", "sh", "-n", ns, "--image=busybox:1.36", "--restart=Never", "--", "sleep", "3600")
    assert kubectl("get", "pod", "sh", "-n", ns, "-o", "jsonpath={.spec.nodeName}")
    return ns, "sh"


def _read_until(resp: Any, want: str, timeout: float = 15.0) -> str:
    out = ""
    deadline = time.monotonic() + timeout
    while want not in out and time.monotonic() < deadline and resp.is_open():
        resp.update(timeout=1)
        out += resp.read_stdout(timeout=0) or ""
    return out


@pytest.mark.parametrize("data", ["hello from text\n", b"hello from binary\n"], ids=["text-frame", "binary-frame"])
def test_write_stdin_reaches_the_process(api: Any, pod: tuple[str, str], data: str | bytes) -> None:
    from kubernetes import client
    from kubernetes.stream import stream

    ns, name = pod
    resp = stream(
        client.CoreV1Api(api).connect_get_namespaced_pod_exec,
        name,
        ns,
        command=["cat"],
        stdin=True,
        stdout=True,
        stderr=True,
        tty=False,
        _preload_content=False,
    )
    try:
        assert resp.subprotocol == "v5.channel.k8s.io"
        resp.write_stdin(data)
        text = data if isinstance(data, str) else data.decode()
        assert _read_until(resp, text) == text
        resp.close_channel(0)  # v5: end of stdin, cat exits
        deadline = time.monotonic() + 15
        while resp.is_open() and time.monotonic() < deadline:
            resp.update(timeout=1)
        assert resp.returncode == 0
    finally:
        resp.close()


def test_v4_text_frames_reach_the_process(api: Any, pod: tuple[str, str]) -> None:
    """A v4 client (no close channel) that sends text frames: ``head -n 1`` ends on its own."""
    import websocket

    ws = _head_one_line(api, pod, "v4.channel.k8s.io")
    try:
        assert ws.subprotocol == "v4.channel.k8s.io"
        ws.send("\x00one line\n", opcode=websocket.ABNF.OPCODE_TEXT)
        got: dict[int, bytes] = {}
        while True:
            op, frame = ws.recv_data()
            if op == websocket.ABNF.OPCODE_CLOSE:
                break
            got[frame[0]] = got.get(frame[0], b"") + frame[1:]
            if frame[0] == 3:
                break
        assert got[1] == b"one line\n"
        assert b'"status":"Success"' in got[3]
    finally:
        ws.close()


def test_exec_without_stdin_returns_output_and_exit_code(api: Any, pod: tuple[str, str]) -> None:
    from kubernetes import client
    from kubernetes.stream import stream

    ns, name = pod
    resp = stream(
        client.CoreV1Api(api).connect_get_namespaced_pod_exec,
        name,
        ns,
        command=["sh", "-c", "echo out; echo err >&2; exit 3"],
        stdin=False,
        stdout=True,
        stderr=True,
        tty=False,
        _preload_content=False,
    )
    resp.run_forever(timeout=15)
    assert resp.read_stdout() == "out\n"
    assert resp.read_stderr() == "err\n"
    assert resp.returncode == 3


def test_v4_base64_channels(api: Any, pod: tuple[str, str]) -> None:
    """v4.base64.channel.k8s.io (browser clients): text frames, the channel an ASCII digit,
    the data base64, both ways."""
    import base64

    import websocket

    ws = _head_one_line(api, pod, "v4.base64.channel.k8s.io")
    try:
        assert ws.subprotocol == "v4.base64.channel.k8s.io"
        ws.send("0" + base64.b64encode(b"b64 line\n").decode(), opcode=websocket.ABNF.OPCODE_TEXT)
        got: dict[str, bytes] = {}
        while True:
            op, frame = ws.recv_data()
            if op == websocket.ABNF.OPCODE_CLOSE:
                break
            assert op == websocket.ABNF.OPCODE_TEXT
            text = frame.decode()
            got[text[0]] = got.get(text[0], b"") + base64.b64decode(text[1:])
            if text[0] == "3":
                break
        assert got["1"] == b"b64 line\n"
        assert got["3"] == b'{"metadata":{},"status":"Success"}'
    finally:
        ws.close()


def _head_one_line(api: Any, pod: tuple[str, str], subprotocol: str) -> Any:
    """A raw WebSocket exec of ``head -n 1`` with stdin in ``pod``, speaking ``subprotocol``."""
    import websocket

    ns, name = pod
    cfg = api.configuration
    url = cfg.host.replace("https://", "wss://") + (
        f"/api/v1/namespaces/{ns}/pods/{name}/exec?command=head&command=-n&command=1&stdin=true&stdout=true"
    )
    ssl_opts: dict[str, Any] = {"ca_certs": cfg.ssl_ca_cert, "cert_reqs": ssl.CERT_REQUIRED}
    if cfg.tls_server_name:
        ssl_opts["server_hostname"] = cfg.tls_server_name
    return websocket.create_connection(
        url,
        header=[f"Authorization: {cfg.get_api_key_with_prefix('BearerToken')}"],
        subprotocols=[subprotocol],
        sslopt=ssl_opts,
        timeout=15,
    )
