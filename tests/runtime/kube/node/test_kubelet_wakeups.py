"""What wakes the lab cluster's kubelet, run as runtimed runs it: a thread, the cluster on an
asyncio loop, nobody calling ``sync()``.

An idle node must not sync at all (a class of idle clusters costs nothing), and yet every
clock- or process-driven step still happens on its own: a crashed container is restarted
after its back-off (the engine's exit event, then the back-off's timer), probes run at their
period (a readiness probe passes once the container makes it pass, with no cluster write),
a liveness failure restarts the container, and a deleted pod whose process ignores SIGTERM
is killed at its grace deadline and removed. A real sandbox engine (runc inside sandbox tag
251) and a real ``Cluster``; the back-off is shortened by the constructor (1 s doubling to 2 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from runtime.dockerapi.engine import Engine
from runtime.kube import registry
from runtime.kube.apiserver.cluster import Cluster
from runtime.kube.apiserver.provision import clusters_dir, create_cluster
from runtime.kube.controllers.manager import Controllers
from runtime.kube.node.kubelet import ClusterHost, Kubelet
from tests.runtime.conftest_daemon import real_sandboxes_available
from tests.runtime.dockerapi.engine_helpers import docker_sandbox, engine_on

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]

R = registry.BY_GR
NODE = "lab-control-plane"
T = TypeVar("T")


@dataclass
class Node:
    cluster: Cluster
    engine: Engine
    kubelet: Kubelet
    loop: asyncio.AbstractEventLoop

    def on_loop(self, fn: Callable[[], T]) -> T:
        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def create_pod(self, name: str, containers: list[dict[str, Any]], **spec: Any) -> None:
        spec = {"containers": containers, **spec}
        body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}

        def do() -> None:
            self.cluster.create(R["pods"], "default", body)
            self.cluster.controllers.reconcile()

        self.on_loop(do)

    def pod(self, name: str) -> dict[str, Any] | None:
        return self.on_loop(lambda: self.cluster.store.get(R["pods"].gr, "default", name))

    def until(self, what: str, fn: Callable[[], Any], timeout: float = 60) -> Any:
        """Wait (without syncing anything) until ``fn`` returns something truthy."""
        deadline = time.monotonic() + timeout
        while True:
            got = fn()
            if got:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.1)

    def container_status(self, name: str) -> dict[str, Any]:
        st = (self.pod(name) or {}).get("status") or {}
        return ((st.get("containerStatuses") or [{}]) or [{}])[0]

    def ready(self, name: str) -> bool:
        st = (self.pod(name) or {}).get("status") or {}
        return any(c["type"] == "Ready" and c["status"] == "True" for c in st.get("conditions") or [])


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    why = real_sandboxes_available()
    if why:
        pytest.skip(why)
    data = tmp_path_factory.mktemp("kube")
    create_cluster(data, "lab", "https://127.0.0.1:1", controllers=Controllers)
    cluster = Cluster("lab", clusters_dir(data) / "lab", controllers=Controllers)
    cluster.controllers.reconcile()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    with docker_sandbox(251) as sb, engine_on(sb) as engine:
        kubelet = Kubelet(ClusterHost(cluster, loop), engine, NODE, backoff_initial=1.0, backoff_max=2.0)
        kubelet.start()
        try:
            yield Node(cluster, engine, kubelet, loop)
        finally:
            kubelet.close()
            for v in engine.volumes():
                with contextlib.suppress(Exception):
                    engine.volume_remove(v["Name"], force=True)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5)
            loop.close()
            cluster.store.close()


def test_an_idle_node_does_not_sync(node: Node) -> None:
    node.create_pod("quiet", [{"name": "s", "image": "busybox", "command": ["sleep", "3600"]}])
    node.until("pod quiet Ready", lambda: node.ready("quiet"))
    # settled: some 3 s window with no sync at all comes within 30 s (a periodic sync, as
    # the old 1 s poll, never leaves one), and the pod is still running after it
    deadline = time.monotonic() + 30
    while True:
        before = node.kubelet.syncs
        time.sleep(3)
        if node.kubelet.syncs == before:
            break
        assert time.monotonic() < deadline, "the kubelet of an idle node keeps syncing"
    assert node.ready("quiet")
    # and a write wakes it at once: a new pod starts with nobody calling sync()
    node.create_pod("woken", [{"name": "s", "image": "busybox", "command": ["sleep", "3600"]}])
    node.until("pod woken Ready", lambda: node.ready("woken"))


def test_a_crashing_container_is_restarted_after_each_back_off_without_writes(node: Node) -> None:
    node.create_pod("crashy", [{"name": "c", "image": "busybox", "command": ["sh", "-c", "sleep 0.5; exit 3"]}])
    # each restart needs the exit (engine event) and then the end of its back-off (a timer)
    node.until("three restarts", lambda: node.container_status("crashy").get("restartCount", 0) >= 3)
    last = (node.container_status("crashy").get("lastState") or {}).get("terminated") or {}
    assert last.get("exitCode") == 3


def test_probes_run_at_their_period_and_liveness_restarts(node: Node) -> None:
    probe = {"exec": {"command": ["test", "-f", "/tmp/ready"]}, "periodSeconds": 1}
    node.create_pod(
        "probed",
        [{"name": "app", "image": "busybox", "command": ["sleep", "3600"], "readinessProbe": probe}],
    )
    node.until("probed running", lambda: "running" in (node.container_status("probed").get("state") or {}))
    assert not node.ready("probed")
    # make the probe pass from inside the container: no cluster write, only the probe's timer
    cid = str(node.container_status("probed")["containerID"]).removeprefix("docker://")
    eid = node.engine.exec_create(cid, {"Cmd": ["touch", "/tmp/ready"]})
    node.engine.exec_start(eid, detach=True, tty=False)
    node.until("probed Ready by its readiness probe", lambda: node.ready("probed"))

    liveness = {"exec": {"command": ["false"]}, "periodSeconds": 1, "failureThreshold": 2}
    node.create_pod(
        "unlive",
        [{"name": "app", "image": "busybox", "command": ["sleep", "3600"], "livenessProbe": liveness}],
        terminationGracePeriodSeconds=1,
    )
    node.until("unlive restarted by its liveness probe", lambda: node.container_status("unlive").get("restartCount"))


def test_a_pod_that_ignores_sigterm_goes_at_its_grace_deadline(node: Node) -> None:
    # sleep as PID 1 has no SIGTERM handler: only the SIGKILL at the deadline (a timer) ends it
    def delete() -> None:
        node.cluster.delete(R["pods"], "default", "quiet", grace=2)
        node.cluster.controllers.reconcile()

    node.on_loop(delete)
    assert (node.pod("quiet") or {}).get("metadata", {}).get("deletionTimestamp")
    node.until("pod quiet removed", lambda: node.pod("quiet") is None, timeout=30)
