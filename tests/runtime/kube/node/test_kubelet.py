"""The lab cluster's kubelet on a real sandbox engine (runc inside a real sandbox).

A real ``Cluster`` (``create_cluster`` in a tmp dir, its controllers and scheduler) and a
real ``Engine`` on sandbox tag 252; ``ClusterHost(cluster, None)`` with the kubelet's
``sync()`` driven from the test thread (no thread races on the cluster), except the
adoption test, which runs a new Kubelet as a thread against the cluster on an asyncio loop,
as runtimed does. The back-off is shortened by the constructor (1 s doubling to 4 s; the
default stays 10 s). The tests run in file order and share the cluster and the sandbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from runtime.dockerapi.engine import Engine
from runtime.kube import registry
from runtime.kube.apiserver.cluster import Cluster
from runtime.kube.apiserver.podio import PodIO
from runtime.kube.apiserver.provision import clusters_dir, create_cluster
from runtime.kube.controllers.manager import Controllers
from runtime.kube.machinery.apierrors import ApiError
from runtime.kube.meta import Reply, Request, User
from runtime.kube.node.kubelet import ClusterHost, Kubelet, KubeletIO
from runtime.kube.node.podstate import POD_UID
from tests.runtime.conftest_daemon import real_sandboxes_available
from tests.runtime.dockerapi.engine_helpers import DockerSandbox, docker_sandbox, engine_on

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]

R = registry.BY_GR
NODE = "lab-control-plane"
T = TypeVar("T")


@dataclass
class Lab:
    sb: DockerSandbox
    engine: Engine
    cluster: Cluster
    kubelet: Kubelet

    def create(self, resource: str, obj: dict[str, Any], ns: str = "default") -> dict[str, Any]:
        out = self.cluster.create(R[resource], ns, obj)
        self.cluster.controllers.reconcile()
        return out

    def get(self, resource: str, name: str, ns: str = "default") -> dict[str, Any] | None:
        return self.cluster.store.get(R[resource].gr, ns, name)

    def pod(self, name: str) -> dict[str, Any]:
        p = self.get("pods", name)
        assert p is not None, f"pod {name} is gone"
        return p

    def until(self, what: str, fn: Callable[[], T | None], timeout: float = 40) -> T:
        """Sync the kubelet until ``fn`` returns something truthy."""
        deadline = time.monotonic() + timeout
        while True:
            self.kubelet.sync()
            got = fn()
            if got:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.2)

    def running(self, name: str) -> dict[str, Any]:
        def ok() -> dict[str, Any] | None:
            p = self.get("pods", name)
            st = (p or {}).get("status") or {}
            ready = any(c["type"] == "Ready" and c["status"] == "True" for c in st.get("conditions") or [])
            return p if st.get("phase") == "Running" and ready else None

        return self.until(f"pod {name} Running and Ready", ok)

    def events(self, name: str) -> list[tuple[str, str]]:
        return [
            (e["reason"], e["message"])
            for e in self.cluster.store.list(R["events"].gr, "default")
            if e["involvedObject"]["name"] == name
        ]

    def exec_out(self, pod: str, cmd: list[str], container: str | None = None) -> tuple[int, str]:
        s = self.kubelet.exec("default", pod, container, cmd, stdin=False, tty=False)
        out = b""
        while (item := s.read(timeout=20)) is not None:
            out += item[1]
        return s.exit_code(), out.decode()

    def logs(self, pod: str, container: str | None = None, **kw: Any) -> str:
        opts: dict[str, Any] = {
            "follow": False,
            "tail_lines": None,
            "previous": False,
            "timestamps": False,
            "since_seconds": None,
            "limit_bytes": None,
        }
        opts.update(kw)
        return b"".join(self.kubelet.logs("default", pod, container, **opts)).decode()


def pod(name: str, containers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {"containers": containers, **spec}}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    why = real_sandboxes_available()
    if why:
        pytest.skip(why)
    data = tmp_path_factory.mktemp("kube")
    create_cluster(data, "lab", "https://127.0.0.1:1", controllers=Controllers)
    cluster = Cluster("lab", clusters_dir(data) / "lab", controllers=Controllers)
    cluster.controllers.reconcile()
    with docker_sandbox(252) as sb, engine_on(sb) as engine:
        kubelet = Kubelet(ClusterHost(cluster, None), engine, NODE, backoff_initial=1.0, backoff_max=4.0)
        cluster.kubelet_notify = kubelet.notify  # what ClusterHost.attach does (start() is not used here)
        try:
            yield Lab(sb, engine, cluster, kubelet)
        finally:
            kubelet.close()
            for v in engine.volumes():
                with contextlib.suppress(Exception):
                    engine.volume_remove(v["Name"], force=True)
            cluster.store.close()


def test_pod_runs_on_the_pod_network_and_its_containers_share_localhost(lab: Lab) -> None:
    lab.create(
        "pods",
        pod(
            "web",
            [
                {
                    "name": "server",
                    "image": "busybox:1.35",
                    "command": ["sh", "-c", "echo hello-from-server > /tmp/index.html; exec httpd -f -p 8080 -h /tmp"],
                    "ports": [{"name": "http", "containerPort": 8080}],
                    # from the sandbox's network namespace to the pod IP, by the port's name
                    "readinessProbe": {"httpGet": {"path": "/index.html", "port": "http"}, "periodSeconds": 1},
                    "livenessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
                },
                {
                    "name": "client",
                    "image": "busybox",
                    "command": ["sh", "-c"],
                    "args": ["while true; do wget -qO- http://127.0.0.1:8080/index.html; sleep 1; done"],
                },
            ],
        ),
    )
    p = lab.running("web")
    st = p["status"]
    assert ipaddress.ip_address(st["podIP"]) in ipaddress.ip_network("10.244.0.0/24")
    assert st["podIPs"] == [{"ip": st["podIP"]}]
    assert st["hostIP"] == lab.sb.ctx.ip
    assert st["qosClass"] == "BestEffort" and st["startTime"]
    assert {c["type"]: c["status"] for c in st["conditions"]} == {
        "PodReadyToStartContainers": "True",
        "Initialized": "True",
        "Ready": "True",
        "ContainersReady": "True",
        "PodScheduled": "True",
    }
    cs = {c["name"]: c for c in st["containerStatuses"]}
    assert set(cs) == {"server", "client"}
    for c in cs.values():
        assert c["ready"] and c["started"] and c["restartCount"] == 0
        assert c["containerID"].startswith("docker://") and c["imageID"].startswith("sha256:")
        assert "startedAt" in c["state"]["running"]
    # the client reaches the server on localhost: one network namespace per pod
    lab.until("the client's wget output", lambda: "hello-from-server" in lab.logs("web", "client"))
    # the pod's hostname is its name
    assert lab.exec_out("web", ["hostname"], "server") == (0, "web\n")
    reasons = [r for r, _ in lab.events("web")]
    assert ("Started", "Started container server") in lab.events("web")
    assert ("Created", "Created container: client") in lab.events("web")
    assert ("Pulled", 'Container image "busybox:1.35" already present on machine') in lab.events("web")
    assert "Scheduled" in reasons


def test_logs_and_exec_errors_use_kubelets_messages(lab: Lab) -> None:
    code, out = lab.exec_out("web", ["sh", "-c", "echo out; echo err >&2; exit 3"], "server")
    assert code == 3 and "out\n" in out and "err\n" in out
    with pytest.raises(
        ApiError, match=r"a container name must be specified for pod web, choose one of: \[server client\]"
    ):
        lab.logs("web")
    with pytest.raises(ApiError, match='previous terminated container "client" in pod "web" not found'):
        lab.logs("web", "client", previous=True)
    assert lab.logs("web", "client", tail_lines=1).count("hello-from-server") == 1
    assert lab.logs("web", "client", limit_bytes=5) == "hello"
    with pytest.raises(ApiError, match="executable file not found"):
        lab.kubelet.exec("default", "web", "server", ["no-such-cmd"], stdin=False, tty=False)


def test_pod_io_for_the_api_server_follows_and_closes(lab: Lab) -> None:
    io: PodIO = KubeletIO(lab.kubelet)  # what Cluster.pod_io gets (podio.py's Protocol)
    log = io.logs(
        "default",
        "web",
        "client",
        follow=True,
        tail_lines=0,
        previous=False,
        timestamps=True,
        since_seconds=None,
        since_time=None,
        limit_bytes=None,
    )
    chunk = log.read()  # the next line the client prints, with its timestamp
    assert chunk is not None and b"Z hello-from-server" in chunk
    log.close()
    assert log.read() is None
    s = io.exec("default", "web", "server", ["cat"], stdin=True, tty=False)
    s.write(b"ping\n")
    assert s.read() == (1, b"ping\n")
    s.close_stdin()
    assert s.read() is None and s.exit_code() == 0
    s = io.exec("default", "web", "server", ["sleep", "600"], stdin=False, tty=False)
    s.close()  # the client went away: the process is killed
    assert s.read() is None
    deadline = time.monotonic() + 10
    while "sleep 600" in lab.exec_out("web", ["ps"], "server")[1]:
        assert time.monotonic() < deadline, "the exec'd sleep survived close()"
        time.sleep(0.2)
    a = io.attach("default", "web", "client", stdin=False, tty=False)
    assert a.read() == (1, b"hello-from-server\n")
    a.close()
    assert a.read() is None and a.exit_code() == 0


def test_deployment_of_two_becomes_available(lab: Lab) -> None:
    labels = {"app": "shop"}
    lab.create(
        "deployments.apps",
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "shop"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [
                            {
                                "name": "app",
                                "image": "busybox:1.35",
                                "command": ["sh", "-c", "touch /tmp/ready; exec sleep 3600"],
                                "readinessProbe": {"exec": {"command": ["cat", "/tmp/ready"]}, "periodSeconds": 1},
                            }
                        ]
                    },
                },
            },
        },
    )

    def ready() -> dict[str, Any] | None:
        d = lab.get("deployments.apps", "shop")
        st = (d or {}).get("status") or {}
        return st if st.get("readyReplicas") == 2 and st.get("availableReplicas") == 2 else None

    lab.until("deployment shop 2/2 ready", ready, timeout=60)
    pods = [p for p in lab.cluster.store.list(R["pods"].gr, "default") if p["metadata"]["name"].startswith("shop-")]
    ips = {p["status"]["podIP"] for p in pods}
    assert len(pods) == 2 and len(ips) == 2  # one sandbox (and address) per pod


def test_crashing_container_goes_into_crash_loop_back_off(lab: Lab) -> None:
    lab.create("pods", pod("crash", [{"name": "c", "image": "busybox", "command": ["sh", "-c", "echo boom; exit 3"]}]))
    seen: list[str] = []

    def looping() -> dict[str, Any] | None:
        p = lab.pod("crash")
        cs = (p["status"].get("containerStatuses") or [{}])[0]
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") == "CrashLoopBackOff":
            seen.append(waiting["message"])
        return cs if cs.get("restartCount", 0) >= 2 and seen else None

    cs = lab.until("restartCount >= 2 and CrashLoopBackOff", looping, timeout=60)
    uid = lab.pod("crash")["metadata"]["uid"]
    assert any(f"restarting failed container=c pod=crash_default({uid})" in m and "back-off " in m for m in seen)
    assert cs["lastState"]["terminated"]["exitCode"] == 3
    assert cs["lastState"]["terminated"]["reason"] == "Error"
    assert lab.pod("crash")["status"]["phase"] == "Running"
    assert "boom" in lab.logs("crash", previous=True)
    assert any(
        r == "BackOff" and "Back-off restarting failed container c in pod crash_default" in m
        for r, m in lab.events("crash")
    )
    # only the current and the previous instance are kept
    mine = [c for c in lab.engine.list(all=True) if c["Labels"].get(POD_UID) == uid and "_c_" in c["Names"][0]]
    assert len(mine) <= 2


def test_failing_liveness_probe_restarts_and_readiness_gates_ready(lab: Lab) -> None:
    lab.create(
        "pods",
        pod(
            "sick",
            [
                {
                    "name": "app",
                    "image": "busybox",
                    "command": ["sh", "-c", "touch /tmp/alive; sleep 2; rm /tmp/alive; exec sleep 3600"],
                    "livenessProbe": {"exec": {"command": ["cat", "/tmp/alive"]}, "periodSeconds": 1},
                    "readinessProbe": {"httpGet": {"path": "/", "port": 9999}, "periodSeconds": 1},
                }
            ],
            terminationGracePeriodSeconds=1,
        ),
    )

    def restarted() -> dict[str, Any] | None:
        cs = (lab.pod("sick")["status"].get("containerStatuses") or [{}])[0]
        return cs if cs.get("restartCount", 0) >= 1 else None

    cs = lab.until("a liveness restart", restarted, timeout=40)
    assert cs["ready"] is False  # nothing listens on 9999: never ready
    assert cs["lastState"]["terminated"]["exitCode"] == 137  # SIGKILL after the 1 s grace period
    ev = lab.events("sick")
    assert ("Killing", "Container app failed liveness probe, will be restarted") in ev
    assert any(r == "Unhealthy" and m.startswith("Liveness probe failed: cat: can't open '/tmp/alive'") for r, m in ev)
    assert any(r == "Unhealthy" and m.startswith('Readiness probe failed: Get "http://') for r, m in ev)
    ready = {c["type"]: c for c in lab.pod("sick")["status"]["conditions"]}["Ready"]
    assert ready["status"] == "False" and ready["message"] == "containers with unready status: [app]"
    # kubectl delete --grace-period=0 --force: DeleteOptions through the API, removed at once
    body = json.dumps({"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0}).encode()
    admin = User("kubernetes-admin", ("system:masters", "system:authenticated"))
    reply = lab.cluster.handle(Request("DELETE", "/api/v1/namespaces/default/pods/sick", body=body, user=admin))
    assert isinstance(reply, Reply) and reply.status == 200
    assert lab.get("pods", "sick") is None


def test_job_pod_succeeds_and_the_job_completes(lab: Lab) -> None:
    lab.create(
        "jobs.batch",
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "once"},
            "spec": {
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "w", "image": "busybox", "command": ["sh", "-c", "echo done"]}],
                    }
                }
            },
        },
    )

    def complete() -> dict[str, Any] | None:
        j = lab.get("jobs.batch", "once")
        conds = ((j or {}).get("status") or {}).get("conditions") or []
        return j if any(c["type"] == "Complete" and c["status"] == "True" for c in conds) else None

    job = lab.until("job once Complete", complete)
    assert job["status"]["succeeded"] == 1 and "active" not in job["status"]
    pods = [p for p in lab.cluster.store.list(R["pods"].gr, "default") if p["metadata"]["name"].startswith("once-")]
    assert len(pods) == 1 and pods[0]["status"]["phase"] == "Succeeded"
    term = pods[0]["status"]["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 0 and term["reason"] == "Completed"
    assert lab.logs(pods[0]["metadata"]["name"]) == "done\n"


def test_missing_image_is_err_image_pull_naming_the_catalog(lab: Lab) -> None:
    lab.create("pods", pod("nope", [{"name": "web", "image": "nginx:1.27"}]))

    def waiting() -> dict[str, Any] | None:
        cs = (lab.pod("nope")["status"].get("containerStatuses") or [{}])[0]
        return ((cs.get("state") or {}).get("waiting") or {}) or None

    w = lab.until("ErrImagePull", waiting)
    assert w["reason"] in ("ErrImagePull", "ImagePullBackOff")
    assert lab.pod("nope")["status"]["phase"] == "Pending"
    msgs = [m for r, m in lab.events("nope") if r == "Failed"]
    assert any(m.startswith('Failed to pull image "nginx:1.27"') and "busybox:1.35" in m for m in msgs)
    with pytest.raises(ApiError, match='container "web" in pod "nope" is waiting to start'):
        lab.logs("nope")


def test_missing_configmap_blocks_the_pod_until_it_exists(lab: Lab) -> None:
    lab.create(
        "pods",
        pod(
            "cfg",
            [
                {
                    "name": "app",
                    "image": "busybox",
                    "command": ["sleep", "3600"],
                    "env": [
                        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "shop-config", "key": "MODE"}}},
                        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        {"name": "GREETING", "value": "hi-$(POD)"},
                    ],
                    "volumeMounts": [{"name": "conf", "mountPath": "/etc/shop"}],
                    "resources": {"limits": {"memory": "64Mi", "cpu": "500m"}},
                    "securityContext": {"runAsUser": 1000, "runAsGroup": 1000},
                }
            ],
            volumes=[{"name": "conf", "configMap": {"name": "files", "items": [{"key": "a", "path": "sub/a.txt"}]}}],
            terminationGracePeriodSeconds=2,
        ),
    )
    lab.create(
        "configmaps", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "files"}, "data": {"a": "A!"}}
    )

    def waiting() -> dict[str, Any] | None:
        cs = (lab.pod("cfg")["status"].get("containerStatuses") or [{}])[0]
        w = (cs.get("state") or {}).get("waiting") or {}
        return w if w.get("reason") == "CreateContainerConfigError" else None

    assert lab.until("CreateContainerConfigError", waiting)["message"] == 'configmap "shop-config" not found'
    lab.create(
        "configmaps", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "shop-config"}, "data": {"X": "1"}}
    )
    msg = lab.until(
        "the missing key", lambda: (waiting() or {}).get("message", "").startswith("couldn't") and waiting()
    )
    assert msg["message"] == "couldn't find key MODE in ConfigMap default/shop-config"
    cm = lab.get("configmaps", "shop-config")
    assert cm is not None
    cm = dict(cm, data={"MODE": "prod"})
    lab.cluster.store.put(R["configmaps"].gr, cm, "MODIFIED")
    lab.running("cfg")
    code, out = lab.exec_out("cfg", ["sh", "-c", 'echo "$MODE $POD $GREETING"; cat /etc/shop/sub/a.txt'])
    assert (code, out) == (0, "prod cfg hi-cfg\nA!")
    code, out = lab.exec_out("cfg", ["cat", "/var/run/secrets/kubernetes.io/serviceaccount/namespace"])
    assert (code, out) == (0, "default")
    code, _ = lab.exec_out("cfg", ["sh", "-c", "echo x > /etc/shop/new"])
    assert code != 0  # configMap volumes are read-only
    assert lab.exec_out("cfg", ["id", "-u"]) == (0, "1000\n")
    cid = lab.pod("cfg")["status"]["containerStatuses"][0]["containerID"].removeprefix("docker://")
    hc = lab.engine.inspect(cid)["HostConfig"]
    assert (hc["Memory"], hc["NanoCpus"]) == (64 * 2**20, 500_000_000)


def test_init_containers_run_first_and_volumes_are_shared_and_kept(lab: Lab) -> None:
    lab.create(
        "persistentvolumeclaims",
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        },
    )
    mounts = [{"name": "scratch", "mountPath": "/scratch"}, {"name": "data", "mountPath": "/data"}]
    lab.create(
        "pods",
        pod(
            "staged",
            [
                {
                    "name": "app",
                    "image": "busybox",
                    "command": ["sh", "-c", "cat /scratch/step; echo app >> /data/log; exec sleep 3600"],
                    "volumeMounts": mounts,
                }
            ],
            initContainers=[
                {
                    "name": "prepare",
                    "image": "busybox",
                    "command": ["sh", "-c", "echo prepared > /scratch/step; echo init >> /data/log"],
                    "volumeMounts": mounts,
                }
            ],
            volumes=[
                {"name": "scratch", "emptyDir": {}},
                {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
            ],
            terminationGracePeriodSeconds=0,
        ),
    )
    st = lab.running("staged")["status"]
    init = st["initContainerStatuses"][0]
    assert init["state"]["terminated"]["reason"] == "Completed" and init["ready"] is True
    # Running means the app container started, not that its first command has written yet
    assert lab.until("the app's output", lambda: lab.logs("staged", "app") or None).startswith("prepared")
    assert lab.logs("staged", "prepare") == ""
    assert lab.exec_out("staged", ["cat", "/data/log"], "app") == (0, "init\napp\n")
    lab.cluster.delete(R["pods"], "default", "staged")
    lab.until("pod staged removed", lambda: lab.get("pods", "staged") is None, timeout=30)
    names = [v["Name"] for v in lab.engine.volumes()]
    assert "k8s-pvc_default_data" in names  # the claim's data outlives the pod
    assert not [n for n in names if n.endswith("_scratch")]


def test_deletion_stops_and_removes_containers_and_volumes(lab: Lab) -> None:
    uid = lab.pod("cfg")["metadata"]["uid"]
    mine = [c["Id"] for c in lab.engine.list(all=True) if c["Labels"].get(POD_UID) == uid]
    vols = [v["Name"] for v in lab.engine.volumes() if (v.get("Labels") or {}).get(POD_UID) == uid]
    assert len(mine) == 2 and len(vols) == 2  # infra + app; the configMap and the token volumes
    lab.cluster.delete(R["pods"], "default", "cfg")  # graceful: a kubelet is attached
    lab.cluster.controllers.reconcile()
    marked = lab.pod("cfg")["metadata"]
    assert marked["deletionTimestamp"] and marked["deletionGracePeriodSeconds"] == 2
    # sleep as PID 1 ignores SIGTERM: SIGKILL after the 2 s grace period, then the object goes
    lab.until("pod cfg removed", lambda: lab.get("pods", "cfg") is None, timeout=30)
    assert ("Killing", "Stopping container app") in lab.events("cfg")
    assert not [c for c in lab.engine.list(all=True) if c["Labels"].get(POD_UID) == uid]
    assert not [v for v in lab.engine.volumes() if (v.get("Labels") or {}).get(POD_UID) == uid]


def test_a_new_kubelet_adopts_running_pods_and_cleans_up_removed_ones(lab: Lab) -> None:
    lab.kubelet.close()
    web = lab.pod("web")
    before = {c["name"]: c["containerID"] for c in web["status"]["containerStatuses"]}
    crash_uid = lab.pod("crash")["metadata"]["uid"]
    lab.cluster.store.remove(R["pods"].gr, "default", "crash")  # gone while no kubelet ran
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    kubelet = Kubelet(ClusterHost(lab.cluster, loop), lab.engine, NODE)
    kubelet.start()
    try:

        def on_loop(fn: Callable[[], T]) -> T:
            async def run() -> T:
                return fn()

            return asyncio.run_coroutine_threadsafe(run(), loop).result(10)

        assert on_loop(lambda: lab.cluster.kubelet_notify) is not None
        deadline = time.monotonic() + 30
        while [c for c in lab.engine.list(all=True) if c["Labels"].get(POD_UID) == crash_uid]:
            assert time.monotonic() < deadline, "the removed pod's containers are still there"
            time.sleep(0.2)
        after = on_loop(lambda: lab.pod("web"))
        assert {c["name"]: c["containerID"] for c in after["status"]["containerStatuses"]} == before
        assert after["status"]["phase"] == "Running"
        # a write through the cluster wakes the new kubelet: a pod started without sync() calls
        on_loop(
            lambda: lab.create("pods", pod("late", [{"name": "s", "image": "busybox", "command": ["sleep", "60"]}]))
        )
        deadline = time.monotonic() + 30
        while on_loop(lambda: (lab.pod("late")["status"]).get("phase")) != "Running":
            assert time.monotonic() < deadline, "pod late did not start"
            time.sleep(0.2)
    finally:
        kubelet.close()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
    assert lab.cluster.kubelet_notify is None
