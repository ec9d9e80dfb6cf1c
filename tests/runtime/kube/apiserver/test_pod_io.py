"""``kubectl logs`` / ``exec`` over the lab cluster's API server (``runtime/kube/apiserver/podio.py``).

The real kubectl 1.37 talks to the real HTTP app (``server.make_app``), served IN-PROCESS on
a thread of its own so that the test can give the cluster a PodIO (``Cluster.pod_io``).

``HostPodIO`` stands in for the kubelet (``runtime/kube/node/kubelet.py``, written in parallel):
its streams are REAL host processes (``/bin/sh -c``, ``cat``, ``tail``, ``sed``; a real
pseudo-terminal for TTY sessions), so what kubectl prints went through the server's
chunked log responses and its WebSocket channel protocol end to end. What the double adds
itself (the log text, ``tail -n`` for tailLines, a timestamp prefix) is only there to show
that the options reach the PodIO; the assertions on ``io.calls`` check that they did.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import select
import signal
import socket
import struct
import subprocess
import termios
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from runtime.kube.apiserver.provision import create_cluster, mint_user_token, user_kubeconfig
from runtime.kube.apiserver.server import Hub, make_app
from runtime.kube.controllers.manager import Controllers
from runtime.kube.machinery.apierrors import ApiError
from tests.runtime.kube.conftest import KUBECTL, Kubectl, free_port

TS = "2026-01-01T10:00:00.000000000Z"


class HostLogStream:
    """A log read from a host shell pipeline's stdout."""

    def __init__(self, script: str) -> None:
        self.proc = subprocess.Popen(["/bin/sh", "-c", script], stdout=subprocess.PIPE, start_new_session=True)
        self.closed = False

    def read(self) -> bytes | None:
        assert self.proc.stdout is not None
        data = os.read(self.proc.stdout.fileno(), 65536)
        if not data:
            self.proc.wait()
            return None
        return data

    def close(self) -> None:
        self.closed = True
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)


class HostExecStream:
    """An exec'd host process: pipes, or a pseudo-terminal when ``tty``."""

    def __init__(self, command: list[str], stdin: bool, tty: bool) -> None:
        self.tty = tty
        self.resizes: list[tuple[int, int]] = []
        self.closed = False
        if tty:
            self.master, slave = pty.openpty()
            self.proc = subprocess.Popen(
                command,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                start_new_session=True,
                preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
            )
            os.close(slave)
            self.fds = {self.master: 1}
        else:
            self.proc = subprocess.Popen(
                command,
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
            assert self.proc.stdout is not None and self.proc.stderr is not None
            self.fds = {self.proc.stdout.fileno(): 1, self.proc.stderr.fileno(): 2}

    def read(self) -> tuple[int, bytes] | None:
        while self.fds:
            ready, _, _ = select.select(list(self.fds), [], [])
            fd = ready[0]
            try:
                data = os.read(fd, 65536)
            except OSError:  # EIO: the pty's other side is gone
                data = b""
            if data:
                return self.fds[fd], data
            del self.fds[fd]
        self.proc.wait()
        return None

    def write(self, data: bytes) -> None:
        if self.tty:
            os.write(self.master, data)
        else:
            assert self.proc.stdin is not None
            self.proc.stdin.write(data)
            self.proc.stdin.flush()

    def close_stdin(self) -> None:
        if self.tty:
            os.write(self.master, b"\x04")
        elif self.proc.stdin is not None:
            self.proc.stdin.close()

    def resize(self, cols: int, rows: int) -> None:
        self.resizes.append((cols, rows))
        if self.tty:
            fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def exit_code(self) -> int:
        rc = self.proc.wait()
        return rc if rc >= 0 else 128 - rc

    def close(self) -> None:
        self.closed = True
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)


class HostPodIO:
    """The PodIO double: logs are shell scripts registered per (pod, container)."""

    def __init__(self) -> None:
        self.scripts: dict[tuple[str, str], str] = {}
        self.calls: list[tuple[str, str, str, dict[str, Any]]] = []
        self.streams: list[HostLogStream | HostExecStream] = []

    def logs(
        self,
        ns: str,
        pod: str,
        container: str,
        *,
        follow: bool,
        tail_lines: int | None,
        previous: bool,
        timestamps: bool,
        since_seconds: int | None,
        since_time: str | None,
        limit_bytes: int | None,
    ) -> HostLogStream:
        opts = {
            "follow": follow,
            "tail_lines": tail_lines,
            "previous": previous,
            "timestamps": timestamps,
            "since_seconds": since_seconds,
            "since_time": since_time,
            "limit_bytes": limit_bytes,
        }
        self.calls.append(("logs", pod, container, opts))
        if previous:
            raise ApiError(400, "BadRequest", f'previous terminated container "{container}" in pod "{pod}" not found')
        script = self.scripts[(pod, container)]
        if tail_lines is not None:
            script = f"({script}) | tail -n {tail_lines}"
        if timestamps:
            script = f"({script}) | sed -u 's/^/{TS} /'"
        s = HostLogStream(script)
        self.streams.append(s)
        return s

    def exec(self, ns: str, pod: str, container: str, command: list[str], *, stdin: bool, tty: bool) -> HostExecStream:
        self.calls.append(("exec", pod, container, {"command": command, "stdin": stdin, "tty": tty}))
        try:
            s = HostExecStream(command, stdin, tty)
        except FileNotFoundError:
            raise ApiError(
                500,
                "InternalError",
                f'OCI runtime exec failed: exec failed: unable to start container process: exec: "{command[0]}": '
                "executable file not found in $PATH: unknown",
            ) from None
        self.streams.append(s)
        return s

    def attach(self, ns: str, pod: str, container: str, *, stdin: bool, tty: bool) -> HostExecStream:
        """The container's main process: started here, as its script says."""
        self.calls.append(("attach", pod, container, {"stdin": stdin, "tty": tty}))
        s = HostExecStream(["/bin/sh", "-c", self.scripts[(pod, container)]], stdin, tty)
        self.streams.append(s)
        return s

    def port_forward(self, ns: str, pod: str, port: int) -> socket.socket:
        """Not done by this stand-in: its pods are host processes with no network of their own
        (port-forward runs against the real kubelet in test_port_forward.py)."""
        self.calls.append(("portforward", pod, "", {"port": port}))
        raise ApiError(400, "BadRequest", "this test PodIO does not forward ports")


class InProcessServer:
    """server.make_app on an event loop in a thread (the subprocess fixture cannot take a PodIO)."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.port = free_port()
        self.hub = Hub(data, controllers=Controllers)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.runner = web.AppRunner(make_app(self.hub), access_log=None, handle_signals=False)
        self.call(self._start())

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    async def _start(self) -> None:
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port, ssl_context=self.hub.default_ssl()).start()

    def cluster_with(self, name: str, io: HostPodIO) -> Kubectl:
        path = self.data / f"{name}.kubeconfig"
        path.write_text(create_cluster(self.data, name, self.url, controllers=Controllers))

        async def attach() -> None:
            c = self.hub.get(name)
            assert c is not None
            c.pod_io = io

        self.call(attach())
        return Kubectl(path)

    def stop(self) -> None:
        self.call(self.runner.cleanup())
        self.hub.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    s = InProcessServer(tmp_path_factory.mktemp("podio"))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def io() -> HostPodIO:
    return HostPodIO()


@pytest.fixture(scope="module")
def kc(srv: InProcessServer, io: HostPodIO) -> Kubectl:
    return srv.cluster_with("podio", io)


@pytest.fixture(scope="module")
def pods(kc: Kubectl, io: HostPodIO) -> str:
    """Namespace ``pio`` with pods web (one container), duo (a, b) and trio (a, b, c with
    b as the annotated default container); all bound to the node by the scheduler."""
    kc("create", "namespace", "pio")
    manifest = """
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: pio}
spec: {containers: [{name: web, image: nginx}]}
---
apiVersion: v1
kind: Pod
metadata: {name: duo, namespace: pio}
spec: {containers: [{name: a, image: busybox}, {name: b, image: busybox}]}
---
apiVersion: v1
kind: Pod
metadata:
  name: trio
  namespace: pio
  annotations: {kubectl.kubernetes.io/default-container: b}
spec: {containers: [{name: a, image: busybox}, {name: b, image: busybox}, {name: c, image: busybox}]}
"""
    kc("apply", "-f", "-", stdin=manifest)
    for p in ("web", "duo", "trio"):
        assert kc("get", "pod", p, "-n", "pio", "-o", "jsonpath={.spec.nodeName}") != ""
    io.scripts[("web", "web")] = "printf 'one\\ntwo\\nthree\\n'"
    io.scripts[("duo", "a")] = "echo from-a"
    io.scripts[("trio", "b")] = "echo from-b"
    return "pio"


def _last_call(io: HostPodIO) -> tuple[str, str, str, dict[str, Any]]:
    return io.calls[-1]


def _wait_for(what: str, cond: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _session_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(("pod-log", "pod-exec"))]


def test_logs_tail_and_timestamps_reach_the_podio(kc: Kubectl, io: HostPodIO, pods: str) -> None:
    assert kc("logs", "web", "-n", pods) == "one\ntwo\nthree\n"
    assert kc("logs", "web", "-n", pods, "--tail=2") == "two\nthree\n"
    assert _last_call(io)[3]["tail_lines"] == 2
    assert kc("logs", "web", "-n", pods, "--timestamps") == f"{TS} one\n{TS} two\n{TS} three\n"
    call = _last_call(io)
    assert call[:3] == ("logs", "web", "web") and call[3]["timestamps"] is True
    kc("logs", "web", "-n", pods, "--since=5m", "--limit-bytes=100")
    assert _last_call(io)[3]["since_seconds"] == 300 and _last_call(io)[3]["limit_bytes"] == 100


def test_logs_previous_is_forwarded_and_kubelet_errors_come_back(kc: Kubectl, io: HostPodIO, pods: str) -> None:
    err = kc.fails("logs", "web", "-n", pods, "--previous")
    assert err.strip() == 'Error from server (BadRequest): previous terminated container "web" in pod "web" not found'
    assert _last_call(io)[3]["previous"] is True


def test_logs_follow_ends_when_the_stream_ends(kc: Kubectl, io: HostPodIO, pods: str) -> None:
    io.scripts[("web", "web")] = "echo first; sleep 0.5; echo second"
    try:
        assert kc("logs", "-f", "web", "-n", pods) == "first\nsecond\n"
        assert _last_call(io)[3]["follow"] is True
    finally:
        io.scripts[("web", "web")] = "printf 'one\\ntwo\\nthree\\n'"


def test_logs_container_defaulting(kc: Kubectl, io: HostPodIO, pods: str) -> None:
    r = kc.run("logs", "duo", "-n", pods)
    assert r.returncode == 0 and r.stdout == "from-a\n"
    assert r.stderr.strip() == 'Defaulted container "a" out of: a, b'
    assert _last_call(io)[:3] == ("logs", "duo", "a")
    r = kc.run("logs", "trio", "-n", pods)  # the annotation picks b (kubectl decides, quietly)
    assert r.returncode == 0 and r.stdout == "from-b\n"
    assert _last_call(io)[:3] == ("logs", "trio", "b")
    # the API server itself never guesses among several containers
    err = kc.fails("get", "--raw", f"/api/v1/namespaces/{pods}/pods/duo/log")
    assert "a container name must be specified for pod duo, choose one of: [a b]" in err
    err = kc.fails("logs", "duo", "-c", "nope", "-n", pods)
    assert "container nope is not valid for pod duo" in err


def test_logs_follow_client_going_away_ends_the_stream(kc: Kubectl, io: HostPodIO, pods: str) -> None:
    io.scripts[("web", "web")] = "echo started; exec sleep 300"
    p = subprocess.Popen(
        [KUBECTL, "--kubeconfig", str(kc.kubeconfig), "logs", "-f", "web", "-n", pods],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert p.stdout is not None
        assert p.stdout.readline() == b"started\n"
        stream = io.streams[-1]
        assert isinstance(stream, HostLogStream) and stream.proc.poll() is None
    finally:
        io.scripts[("web", "web")] = "printf 'one\\ntwo\\nthree\\n'"
        p.kill()
        p.wait()
    _wait_for("the log process to be killed", lambda: stream.proc.poll() is not None)
    assert stream.closed
    _wait_for("the request's threads to end", lambda: not _session_threads())


def test_exec_prints_both_streams_and_exits_with_the_command_code(kc: Kubectl, io: HostPodIO, pods: str) -> None:
    r = kc.run("exec", "web", "-n", pods, "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert r.returncode == 3
    assert r.stdout == "out\n"
    assert r.stderr.startswith("err\n")
    assert "command terminated with exit code 3" in r.stderr
    assert _last_call(io) == (
        "exec",
        "web",
        "web",
        {"command": ["sh", "-c", "echo out; echo err >&2; exit 3"], "stdin": False, "tty": False},
    )
    r = kc.run("exec", "web", "-n", pods, "--", "true")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")


def test_exec_start_failure_is_reported(kc: Kubectl, pods: str) -> None:
    r = kc.run("exec", "web", "-n", pods, "--", "/no/such/binary")
    assert r.returncode != 0
    assert 'exec: "/no/such/binary": executable file not found in $PATH' in r.stderr


def test_exec_stdin_is_piped_and_closed(kc: Kubectl, io: HostPodIO, pods: str) -> None:
    data = "".join(f"line {i}\n" for i in range(2000))
    r = kc.run("exec", "-i", "duo", "-c", "b", "-n", pods, "--", "cat", stdin=data)
    assert r.returncode == 0, r.stderr
    assert r.stdout == data
    assert _last_call(io) == ("exec", "duo", "b", {"command": ["cat"], "stdin": True, "tty": False})


def _set_winsize(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


TTY_CMD = ["sh", "-c", 'read line; stty size; echo "got $line"']


def test_exec_tty_with_resize(kc: Kubectl, io: HostPodIO, pods: str) -> None:
    master, slave = pty.openpty()
    _set_winsize(slave, 33, 111)
    n = len(io.streams)
    p = subprocess.Popen(
        [KUBECTL, "--kubeconfig", str(kc.kubeconfig), "exec", "-it", "web", "-n", pods, "--", *TTY_CMD],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
        preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
    )
    os.close(slave)
    out = b""
    try:
        _wait_for("the exec to start", lambda: len(io.streams) > n)
        stream = io.streams[n]
        assert isinstance(stream, HostExecStream) and stream.tty
        _wait_for("kubectl's first terminal size", lambda: (111, 33) in stream.resizes)
        _set_winsize(master, 40, 120)  # the kernel sends kubectl SIGWINCH
        _wait_for("the new terminal size", lambda: (120, 40) in stream.resizes)
        os.write(master, b"hello\r")
        deadline = time.monotonic() + 15
        while b"got hello" not in out and time.monotonic() < deadline:
            if select.select([master], [], [], 0.2)[0]:
                try:
                    out += os.read(master, 4096)
                except OSError:
                    break
        assert p.wait(timeout=15) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(master)
    assert b"got hello" in out
    assert b"40 120" in out  # stty size inside the PodIO's pty: rows cols after the resize
    assert _last_call(io)[3] == {
        "command": ["sh", "-c", 'read line; stty size; echo "got $line"'],
        "stdin": True,
        "tty": True,
    }


def test_exec_client_going_away_ends_the_process(kc: Kubectl, io: HostPodIO, pods: str) -> None:
    p = subprocess.Popen(
        [
            KUBECTL,
            "--kubeconfig",
            str(kc.kubeconfig),
            "exec",
            "web",
            "-n",
            pods,
            "--",
            "sh",
            "-c",
            "echo ready; exec sleep 300",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert p.stdout is not None
        assert p.stdout.readline() == b"ready\n"
        stream = io.streams[-1]
        assert isinstance(stream, HostExecStream) and stream.proc.poll() is None
    finally:
        p.kill()
        p.wait()
    _wait_for("the exec'd process to be killed", lambda: stream.proc.poll() is not None)
    assert stream.closed
    _wait_for("the session's threads to end", lambda: not _session_threads())


def test_exec_needs_create_on_pods_exec(srv: InProcessServer, kc: Kubectl, pods: str) -> None:
    def user(name: str) -> Kubectl:
        path = srv.data / f"{name}.kubeconfig"
        token = mint_user_token(srv.data, "podio", name, [])
        path.write_text(user_kubeconfig(srv.data, "podio", srv.url, name, token))
        return Kubectl(path)

    viewer, operator = f"viewer-{uuid.uuid4().hex[:6]}", f"operator-{uuid.uuid4().hex[:6]}"
    kc("create", "role", viewer, "--verb=get,list", "--resource=pods,pods/log", "-n", pods)
    kc("create", "rolebinding", viewer, f"--role={viewer}", f"--user={viewer}", "-n", pods)
    kc("create", "role", operator, "--verb=get", "--resource=pods", "-n", pods)
    kc("create", "role", f"{operator}-exec", "--verb=create", "--resource=pods/exec", "-n", pods)
    kc("create", "rolebinding", operator, f"--role={operator}", f"--user={operator}", "-n", pods)
    kc("create", "rolebinding", f"{operator}-exec", f"--role={operator}-exec", f"--user={operator}", "-n", pods)
    v = user(viewer)
    assert v("logs", "web", "-n", pods) == "one\ntwo\nthree\n"  # get on pods/log is enough for logs
    err = v.fails("exec", "web", "-n", pods, "--", "true")
    assert err == (
        f'error: unable to upgrade connection: pods "web" is forbidden: User "{viewer}" cannot create resource '
        f'"pods/exec" in API group "" in the namespace "{pods}"\n'
    )
    # create alone is enough for kubectl's WebSocket GET
    assert user(operator)("exec", "web", "-n", pods, "--", "echo", "hi") == "hi\n"


def _mark_running(kc: Kubectl, ns: str, pod: str) -> None:
    kc("patch", "pod", pod, "-n", ns, "--subresource=status", "--type=merge", "-p", '{"status":{"phase":"Running"}}')


def test_port_forward_upgrades_and_asks_the_kubelet(kc: Kubectl, io: HostPodIO, pods: str) -> None:
    # kubectl port-forwards to Running pods only; without a kubelet, say so by hand. The tunnel
    # is served (portforward.py); this stand-in PodIO refuses to dial, which kubectl reports.
    kc(
        "patch",
        "pod",
        "web",
        "-n",
        pods,
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status":{"phase":"Running"}}',
    )
    port = free_port()
    proc = subprocess.Popen(
        [KUBECTL, "--kubeconfig", str(kc.kubeconfig), "port-forward", "pod/web", "-n", pods, f"{port}:80"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "KUBECACHEDIR": str(kc.kubeconfig.parent / "cache")},
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == f"Forwarding from 127.0.0.1:{port} -> 80\n"
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.settimeout(10)
            assert s.recv(1) == b""  # closed: there was nothing to forward to
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    assert "error forwarding port 80 to pod web, uid " in err and "this test PodIO does not forward ports" in err
    assert ("portforward", "web", "", {"port": 80}) in io.calls


def test_attach_streams_the_main_process(kc: Kubectl, io: HostPodIO, pods: str) -> None:
    # kubectl attaches to Running pods only; without a kubelet, say so by hand
    kc(
        "patch",
        "pod",
        "duo",
        "-n",
        pods,
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status":{"phase":"Running"}}',
    )
    io.scripts[("duo", "b")] = "echo main-out; echo main-err >&2; exit 0"
    r = kc.run("attach", "duo", "-c", "b", "-n", pods)
    assert (r.returncode, r.stdout) == (0, "main-out\n")
    assert r.stderr.endswith("If you don't see a command prompt, try pressing enter.\nmain-err\n")  # kubectl's notice
    assert _last_call(io) == ("attach", "duo", "b", {"stdin": False, "tty": False})


def test_spdy_is_refused_with_a_clear_message(kc: Kubectl, pods: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")  # kubectl then speaks SPDY only
    r = kc.run("exec", "web", "-n", pods, "--", "true")
    assert r.returncode != 0
    assert "exec is served over WebSocket only (subprotocol v5.channel.k8s.io or v4.channel.k8s.io)" in r.stderr
