"""The kubelet's prober: liveness and readiness probes of running containers (kubelet's
pkg/kubelet/prober). ``exec`` probes run in the container (engine exec); ``httpGet`` and
``tcpSocket`` probes connect to the pod IP with a socket made in the sandbox's network
namespace (kubelet.py's ``NetnsSockets``). ``Prober`` is a part of ``Kubelet``, which
mixes it in.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

from runtime import errors
from runtime.kube.meta import Obj
from runtime.kube.node.podstate import Instance, PodRuntime, Probe
from runtime.kube.node.streaming import PodExec

if TYPE_CHECKING:
    from runtime.dockerapi.engine import Engine
    from runtime.kube.node.kubelet import ClusterHost, NetnsSockets


class Prober:
    """Probes, run in the sync thread; a part of ``Kubelet``."""

    engine: Engine
    host: ClusterHost
    _sockets: NetnsSockets

    if TYPE_CHECKING:  # Kubelet's

        def _wake_in(self, seconds: float) -> None: ...
        def notify(self) -> None: ...

    def _probe(self, pod: Obj, rt: PodRuntime, c: Obj, cur: Instance, pod_ip: str) -> None:
        st = rt.probes.get(cur.id)
        if st is None:
            st = rt.probes[cur.id] = Probe(started=time.monotonic(), ready="readinessProbe" not in c)
        for kind in ("livenessProbe", "readinessProbe"):
            pr = c.get(kind)
            if not pr or st.killing:
                continue
            now = time.monotonic()
            period = float(pr.get("periodSeconds", 10))
            first = st.started + float(pr.get("initialDelaySeconds", 0))
            if now < first:
                self._wake_in(first - now)
                continue
            if now - st.last.get(kind, -1e9) < period:
                self._wake_in(st.last[kind] + period - now)
                continue
            st.last[kind] = now
            self._wake_in(period)  # the next run of this probe
            ok, out = self._run_probe(c, cur.id, pr, pod_ip)
            word = "Liveness" if kind == "livenessProbe" else "Readiness"
            if ok:
                st.failures[kind] = 0
                st.successes[kind] = st.successes.get(kind, 0) + 1
                if kind == "readinessProbe" and st.successes[kind] >= int(pr.get("successThreshold", 1)):
                    st.ready = True
                continue
            st.successes[kind] = 0
            st.failures[kind] = st.failures.get(kind, 0) + 1
            self.host.event(pod, "Warning", "Unhealthy", f"{word} probe failed: {out}".rstrip())
            if st.failures[kind] < int(pr.get("failureThreshold", 3)):
                continue
            if kind == "readinessProbe":
                st.ready = False
                continue
            st.killing = True
            self.host.event(pod, "Normal", "Killing", f"Container {c['name']} failed liveness probe, will be restarted")
            grace = int(pr.get("terminationGracePeriodSeconds") or rt.grace)
            threading.Thread(
                target=self._stop_quietly, args=(cur.id, grace), daemon=True, name=f"kill-{cur.id[:12]}"
            ).start()

    def _stop_quietly(self, cid: str, grace: int) -> None:
        with contextlib.suppress(errors.RuntimeError):
            self.engine.stop(cid, timeout=grace)
        self.notify()

    def _run_probe(self, c: Obj, cid: str, pr: Obj, pod_ip: str) -> tuple[bool, str]:
        timeout = float(pr.get("timeoutSeconds", 1))
        if "exec" in pr:
            return self._exec_probe(cid, [str(x) for x in pr["exec"].get("command") or []], timeout)
        if "httpGet" in pr or "tcpSocket" in pr:
            try:
                sock = self._sockets.socket()
            except OSError as exc:
                return False, str(exc)
            if "tcpSocket" in pr:
                return _tcp_check(sock, pod_ip, _port(c, pr["tcpSocket"].get("port")), timeout)
            return _http_check(sock, pod_ip, _port(c, pr["httpGet"].get("port")), pr["httpGet"], timeout)
        return True, ""  # grpc probes are not run: treated as passing

    def _exec_probe(self, cid: str, cmd: list[str], timeout: float) -> tuple[bool, str]:
        try:
            eid = self.engine.exec_create(cid, {"Cmd": cmd, "AttachStdout": True, "AttachStderr": True})
            stream = self.engine.exec_start(eid, detach=False, tty=False)
        except errors.RuntimeError as exc:
            return False, str(exc)
        assert stream is not None
        px = PodExec(self.engine, eid, stream)
        out = b""
        deadline = time.monotonic() + timeout
        while True:
            try:
                item = px.read(timeout=max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                px.close()
                return False, f"command {' '.join(cmd)!r} timed out"
            if item is None:
                break
            out += item[1]
        return px.exit_code() == 0, out.decode(errors="replace")[-1024:]


def _port(c: Obj, port: Any) -> int:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, str) and not port.isdigit():
        for cp in c.get("ports") or []:
            if cp.get("name") == port:
                return int(cp.get("containerPort", 0))
        return 0
    return int(port or 0)


def _connect(sock: socket.socket, ip: str, port: int, timeout: float) -> socket.socket:
    sock.settimeout(timeout)
    try:
        sock.connect((ip, port))
    except BaseException:
        sock.close()
        raise
    return sock


def _tcp_check(sock: socket.socket, ip: str, port: int, timeout: float) -> tuple[bool, str]:
    try:
        _connect(sock, ip, port, timeout).close()
    except OSError as exc:
        return False, f"dial tcp {ip}:{port}: connect: {exc.strerror or exc}"
    return True, ""


def _http_check(sock: socket.socket, ip: str, port: int, hg: Obj, timeout: float) -> tuple[bool, str]:
    """kube-probe's GET: 200-399 passes. ``host`` other than the pod IP is not supported."""
    path = str(hg.get("path") or "/")
    url = f"http://{ip}:{port}{path}"
    headers = "".join(f"{h['name']}: {h['value']}\r\n" for h in hg.get("httpHeaders") or [])
    try:
        with _connect(sock, ip, port, timeout) as s:
            s.sendall(
                f"GET {path} HTTP/1.1\r\nHost: {ip}:{port}\r\nUser-Agent: kube-probe/1.37\r\n"
                f"{headers}Accept: */*\r\nConnection: close\r\n\r\n".encode()
            )
            head = s.recv(4096).split(b"\r\n", 1)[0].decode(errors="replace")
    except OSError as exc:
        return False, f'Get "{url}": dial tcp {ip}:{port}: connect: {exc.strerror or exc}'
    parts = head.split()
    code = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    if 200 <= code < 400:
        return True, ""
    return False, f"HTTP probe failed with statuscode: {code}"
