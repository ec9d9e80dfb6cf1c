"""A real multi-node topology on this machine (issue #17): ``python -m runtime kube serve`` as
the platform's Kubernetes, and per lab node a runtimed (its own subnet, bridge, cgroup parent,
uid range, serving TLS on its own loopback address) with its node agent (which registers the
Node and heartbeats like a kubelet: there is no kubelet here).

Node ``kl-node-a`` is 127.0.0.2, ``kl-node-b`` 127.0.0.3: two addresses, one port, as two
machines running the same DaemonSet would be. Host resources are this suite's own (no other
test uses 10.241.0.0/19, the bridges kltestna/kltestnb, the cgroup parents kubelab-testna/nb).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from runtime.kube.apiserver import pki
from tests.runtime.conftest_daemon import private_daemon
from tests.runtime.daemon_helpers import RealDaemon
from tests.runtime.kube.conftest import Kubectl, Server, free_port

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable
GRACE = 6  # the API server's node monitor grace period here (40 s in kube-controller-manager)
TOLERATION = 4  # the placeholders' tolerationSeconds for not-ready/unreachable (30 by default)
HEARTBEAT = 1.5  # the node agents' Lease renewals (a kubelet's 10 s against 40 s of grace)

NODES = {
    "kl-node-a": {"ip": "127.0.0.2", "subnet": "10.241.0.0/20", "bridge": "kltestna", "uid": 3_600_000_000},
    "kl-node-b": {"ip": "127.0.0.3", "subnet": "10.241.16.0/20", "bridge": "kltestnb", "uid": 3_700_000_000},
}


def port_free_on_all(ips: list[str]) -> int:
    for _ in range(50):
        with socket.socket() as s:
            s.bind((ips[0], 0))
            port = int(s.getsockname()[1])
        try:
            for ip in ips[1:]:
                with socket.socket() as s:
                    s.bind((ip, port))
            return port
        except OSError:
            continue
    raise AssertionError("no port free on every node address")


class GraceServer(Server):
    """``kube serve`` with the node monitor grace period of this suite (its own environment)."""

    def start(self) -> None:
        with open(self.data / "server.log", "ab") as log:
            self.proc = subprocess.Popen(
                [PY, "-m", "runtime.kube", "serve", "--data", str(self.data), "--listen", f"127.0.0.1:{self.port}"],
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "KUBE_NODE_MONITOR_GRACE_PERIOD": str(GRACE)},
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError((self.data / "server.log").read_text())
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("server did not start")


@dataclass
class LabNode:
    name: str
    ip: str
    daemon: RealDaemon
    agent: subprocess.Popen[bytes] | None = None
    agent_log: Path | None = None

    def stop(self) -> None:
        """The node goes away: its agent (the kubelet's heartbeat) and its runtimed stop."""
        if self.agent is not None and self.agent.poll() is None:
            self.agent.send_signal(signal.SIGKILL)
            self.agent.wait(10)
        self.daemon.stop()


@dataclass
class Topology:
    dir: Path
    server: Server
    kubeconfig: Path
    kubectl: Kubectl
    ca: Path
    port: int
    admin_token: str
    nodes: dict[str, LabNode] = field(default_factory=dict)

    def start_agent(self, node: LabNode, cpu: str, memory: str) -> None:
        node.agent_log = self.dir / f"agent-{node.name}.log"
        with node.agent_log.open("ab") as log:
            node.agent = subprocess.Popen(
                [
                    PY,
                    "-m",
                    "runtime",
                    "node-agent",
                    "--socket",
                    str(node.daemon.socket),
                    "--node",
                    node.name,
                    "--kubeconfig",
                    str(self.kubeconfig),
                    "--port",
                    str(self.port),
                    "--register-address",
                    node.ip,
                    "--register-cpu",
                    cpu,
                    "--register-memory",
                    memory,
                    # Lease renewals well inside GRACE, as a kubelet's 10 s are inside 40 s
                    "--register-heartbeat",
                    str(HEARTBEAT),
                ],
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env={**os.environ, "RUNTIME_ADMIN_TOKEN": self.admin_token},
            )

    def logs(self) -> str:
        out = [(self.dir / "kube" / "server.log").read_text(errors="replace")[-3000:]]
        for n in self.nodes.values():
            out.append(f"--- {n.name} runtimed\n{n.daemon.logs()[-3000:]}")
            if n.agent_log is not None and n.agent_log.exists():
                out.append(f"--- {n.name} agent\n{n.agent_log.read_text(errors='replace')[-3000:]}")
        return "\n".join(out)


@contextlib.contextmanager
def topology(cpu: str = "10", memory: str = "32Gi", images: Path | None = None) -> Iterator[Topology]:
    """``images``: an image store each node's runtimed gets a copy of (None: busybox only)."""
    base = Path(tempfile.mkdtemp(prefix="kl-scaleout-", dir="/tmp"))
    (base / "kube").mkdir()
    ca_crt, ca_key = pki.make_ca("kubelab-runtimed-ca")
    ca = base / "runtimed-ca.crt"
    ca.write_bytes(ca_crt)
    port = port_free_on_all([str(n["ip"]) for n in NODES.values()])
    # the platform's one admin credential, given to every node's runtimed (tests/bootstrap.py
    # gives it to every daemon of a test run) and to provisioning
    admin = os.environ["RUNTIME_ADMIN_TOKEN"]
    server = GraceServer(base / "kube", free_port())
    server.start()
    stack = contextlib.ExitStack()
    try:
        stack.callback(server.stop)
        kubeconfig = server.new_cluster("platform")
        kc = Kubectl(kubeconfig)
        kc("create", "namespace", "kubelab-sandboxes")
        kc(
            "apply",
            "-f",
            "-",
            stdin="apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: kubelab-lab}\nvalue: 1000\n",
        )
        topo = Topology(base, server, kubeconfig, kc, ca, port, admin)
        for name, n in NODES.items():
            crt, key = pki.make_serving_cert(ca_crt, ca_key, [name], [str(n["ip"])])
            (base / f"{name}.crt").write_bytes(crt)
            (base / f"{name}.key").write_bytes(key)
            (base / f"{name}.key").chmod(0o600)
            resources = [
                "--subnet",
                str(n["subnet"]),
                "--bridge",
                str(n["bridge"]),
                "--cgroup-parent",
                f"kubelab-test{str(n['bridge'])[-2:]}",
                "--uid-start",
                str(n["uid"]),
                "--listen-tls",
                f"{n['ip']}:{port}",
                "--tls-cert",
                str(base / f"{name}.crt"),
                "--tls-key",
                str(base / f"{name}.key"),
                # each node serves its sandboxes' lab clusters on its own loopback (runtime.relay
                # carries them to graders on other machines)
                "--kube-listen",
                "127.0.0.1:0",
            ]
            daemon = stack.enter_context(private_daemon(f"kl-{name}-", resources, images))
            node = LabNode(name, str(n["ip"]), daemon)
            topo.nodes[name] = node
            stack.callback(node.stop)
            topo.start_agent(node, cpu, memory)
        deadline = time.monotonic() + 60
        while True:
            out = kc("get", "nodes", "-l", "kubelab.io/lab-node=true", "-o", "name")
            if len(out.split()) == len(NODES):
                break
            assert time.monotonic() < deadline, f"nodes did not register:\n{topo.logs()}"
            time.sleep(0.2)
        yield topo
    finally:
        stack.close()
        shutil.rmtree(base, ignore_errors=True)
