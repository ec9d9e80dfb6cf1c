"""The ``kubernetes`` sandbox service: runtimed serves each sandbox its own lab cluster.

Real runtimed + runc + the real kubectl 1.37 and the official ``kubernetes`` client. The
in-sandbox listener is checked from inside with busybox's ``nc`` (busybox's TLS client
has no ECDSA cipher suites, so it cannot speak to the clusters' P-256 certificates) and
with real TLS clients running in the sandbox's network namespace only (``nsenter --net``:
the host's kubectl and Python, the kubeconfig read from inside the sandbox). The test
with kubectl itself inside the sandbox uses the lab-base image when the repository's
image store has it (``make`` builds it; RUNTIME_TEST_IMAGE_ROOT overrides where).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from runtime import errors
from runtime.client import Client
from runtime.images.store import ImageStore
from tests.runtime.conftest_daemon import cleaning_client, private_daemon, real_sandboxes_available
from tests.runtime.daemon_helpers import REPO, RealDaemon

KUBECTL = str(REPO / ".venv" / "bin" / "kubectl")
IMAGES = Path(os.environ.get("RUNTIME_TEST_IMAGE_ROOT", REPO / "var/runtime/images"))
# host resources of this module's daemon: not the production defaults nor other suites'
HOST_RESOURCES = [
    "--subnet",
    "10.238.0.0/20",
    "--bridge",
    "kltestks",
    "--cgroup-parent",
    "kubelab-testks",
    "--uid-start",
    str(3_100_000_000),
]

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]


def _has_lab_base() -> bool:
    with contextlib.suppress(Exception):
        ImageStore(IMAGES).get("lab-base")
        return True
    return False


@pytest.fixture(scope="module")
def daemon() -> Iterator[RealDaemon]:
    why = real_sandboxes_available()
    if why:
        pytest.skip(why)
    with private_daemon("rtk-", HOST_RESOURCES, IMAGES if _has_lab_base() else None) as d:
        yield d


@pytest.fixture
def client(daemon: RealDaemon) -> Iterator[Client]:
    with cleaning_client(daemon.socket, timeout=60) as c:
        yield c


def sandbox(client: Client, **spec: Any) -> dict[str, Any]:
    spec.setdefault("image", "busybox")
    return client.create_sandbox(spec)


def sh(client: Client, sid: str, script: str) -> tuple[int, str]:
    r = client.exec(sid, ["/bin/sh", "-c", script], timeout=30)
    return r.exit_code or 0, r.stdout_text + r.stderr_text


def kubeconfig_inside(client: Client, sid: str, tmp: Path) -> Path:
    """The sandbox's own /root/.kube/config, read from inside, saved on the host."""
    r = client.exec(sid, ["cat", "/root/.kube/config"], timeout=30)
    assert r.exit_code == 0, r.stderr_text
    path = tmp / f"{sid}.kubeconfig"
    path.write_text(r.stdout_text)
    return path


def in_netns(pid: int, argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Run a host program in the sandbox's network namespace only (its own loopback)."""
    return subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", *argv], capture_output=True, text=True, timeout=60)


_GET = """
import http.client, ssl, sys
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
c = http.client.HTTPSConnection("127.0.0.1", 6443, context=ctx, timeout=10)
c.request("GET", sys.argv[1], headers={"Authorization": "Bearer " + sys.argv[2]})
print(c.getresponse().status)
"""


def status_in_netns(pid: int, path: str, token: str) -> int:
    """HTTP status of GET https://127.0.0.1:6443<path> from inside the sandbox's netns."""
    r = in_netns(pid, [sys.executable, "-I", "-c", _GET, path, token])
    assert r.returncode == 0, r.stderr
    return int(r.stdout.strip())


def token_of(kubeconfig: str | Path) -> str:
    text = Path(kubeconfig).read_text() if isinstance(kubeconfig, Path) else kubeconfig
    return str(yaml.safe_load(text)["users"][0]["user"]["token"])


def kube_api(kubeconfig: str) -> Any:
    import kubernetes

    api = kubernetes.config.new_client_from_config_dict(yaml.safe_load(kubeconfig))
    return kubernetes.client.CoreV1Api(api)


def test_sandbox_gets_a_kubeconfig_and_its_cluster_on_its_own_loopback(client: Client, tmp_path: Path) -> None:
    box = sandbox(client, services=["kubernetes"])
    sid = box["id"]
    kc = kubeconfig_inside(client, sid, tmp_path)
    doc = yaml.safe_load(kc.read_text())
    cluster = doc["clusters"][0]["cluster"]
    assert cluster["server"] == f"https://127.0.0.1:6443/clusters/{sid}"
    assert cluster["tls-server-name"] == f"{sid}.cluster.kubelab"
    assert doc["current-context"] == f"kubernetes-admin@{sid}"
    # the listener is inside the sandbox: busybox nc connects to its own 127.0.0.1:6443
    code, out = sh(client, sid, "nc -w 5 127.0.0.1 6443 </dev/null && echo CONNECTED")
    assert code == 0 and "CONNECTED" in out, out
    # real kubectl with that kubeconfig, verifying TLS against the cluster CA, in that netns
    r = in_netns(box["pid"], [KUBECTL, "--kubeconfig", str(kc), "get", "ns", "-o", "name"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [
        "namespace/default",
        "namespace/kube-node-lease",
        "namespace/kube-public",
        "namespace/kube-system",
    ]
    r = in_netns(
        box["pid"], [KUBECTL, "--kubeconfig", str(kc), "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"]
    )
    assert r.returncode == 0 and r.stdout == "kubernetes-admin", r.stderr


def test_classmate_cannot_use_or_reach_another_cluster(client: Client, tmp_path: Path) -> None:
    a = sandbox(client, services=["kubernetes"])
    b = sandbox(client, services=["kubernetes"])
    ta = token_of(kubeconfig_inside(client, a["id"], tmp_path))
    tb = token_of(kubeconfig_inside(client, b["id"], tmp_path))
    assert ta != tb
    ns = "/api/v1/namespaces"
    assert status_in_netns(a["pid"], f"/clusters/{a['id']}{ns}", ta) == 200
    # B's token is worthless on A's cluster; A's listener serves no other cluster at all
    assert status_in_netns(a["pid"], f"/clusters/{a['id']}{ns}", tb) == 401
    assert status_in_netns(b["pid"], f"/clusters/{a['id']}{ns}", ta) == 404
    assert status_in_netns(b["pid"], f"/clusters/{b['id']}{ns}", tb) == 200
    # and through the host listener (graders'), B's student token still cannot read A
    import kubernetes

    host_a = client.kubeconfig(a["id"])
    doc = yaml.safe_load(host_a)
    doc["users"][0]["user"]["token"] = tb
    api = kubernetes.client.CoreV1Api(kubernetes.config.new_client_from_config_dict(doc))
    with pytest.raises(kubernetes.client.ApiException) as exc:
        api.list_namespace()
    assert exc.value.status == 401


def test_sandbox_without_the_service_has_no_listener_and_no_kubeconfig(client: Client, daemon: RealDaemon) -> None:
    box = sandbox(client)
    code, out = sh(client, box["id"], "nc -w 3 127.0.0.1 6443 </dev/null && echo CONNECTED; ls /root/.kube")
    assert "CONNECTED" not in out and "No such file" in out, out
    with pytest.raises(errors.NotAvailable, match="kubernetes service"):
        client.kubeconfig(box["id"])
    # the host's listener is on the host's loopback: not reachable from a sandbox
    port = int(client.healthz()["kube_server"].rsplit(":", 1)[1])
    code, out = sh(client, box["id"], f"nc -w 3 127.0.0.1 {port} </dev/null && echo CONNECTED")
    assert code != 0 and "CONNECTED" not in out, out


def test_host_kubeconfig_works_with_the_official_client(client: Client, tmp_path: Path) -> None:
    box = sandbox(client, services=["kubernetes"])
    host_kc = client.kubeconfig(box["id"])
    server = yaml.safe_load(host_kc)["clusters"][0]["cluster"]["server"]
    assert server == f"{client.healthz()['kube_server']}/clusters/{box['id']}"
    assert server.startswith("https://127.0.0.1:") and ":6443/" not in server
    v1 = kube_api(host_kc)
    assert {n.metadata.name for n in v1.list_namespace().items} >= {"default", "kube-system"}
    v1.create_namespaced_config_map("default", {"metadata": {"name": "from-grader"}, "data": {"answer": "42"}})
    # the student sees it from inside their sandbox
    kc = kubeconfig_inside(client, box["id"], tmp_path)
    r = in_netns(
        box["pid"], [KUBECTL, "--kubeconfig", str(kc), "get", "cm", "from-grader", "-o", "jsonpath={.data.answer}"]
    )
    assert r.returncode == 0 and r.stdout == "42", r.stderr
    # the grader's token is not the student's
    assert token_of(host_kc) != token_of(kc)


def test_minted_user_kubeconfigs_for_host_and_inside_are_subject_to_rbac(client: Client, tmp_path: Path) -> None:
    box = sandbox(client, services=["kubernetes"])
    sid = box["id"]
    minted = client.kube_user(sid, "jane", ["students"], ttl=3600)
    assert minted["cluster"] == sid and minted["user"] == "jane"
    host = yaml.safe_load(minted["kubeconfig"])
    inside = yaml.safe_load(minted["kubeconfig_inside"])
    assert host["clusters"][0]["cluster"]["server"] == f"{client.healthz()['kube_server']}/clusters/{sid}"
    assert inside["clusters"][0]["cluster"]["server"] == f"https://127.0.0.1:6443/clusters/{sid}"
    assert token_of(minted["kubeconfig"]) == token_of(minted["kubeconfig_inside"])
    host_kc = tmp_path / "jane-host.kubeconfig"
    host_kc.write_text(minted["kubeconfig"])
    inside_kc = tmp_path / "jane-inside.kubeconfig"
    inside_kc.write_text(minted["kubeconfig_inside"])
    forbidden = (
        'Error from server (Forbidden): pods is forbidden: User "jane" cannot list resource "pods" '
        'in API group "" in the namespace "default"'
    )
    r = subprocess.run([KUBECTL, "--kubeconfig", str(host_kc), "get", "pods"], capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.strip() == forbidden, r.stderr
    r = in_netns(box["pid"], [KUBECTL, "--kubeconfig", str(inside_kc), "get", "pods"])
    assert r.returncode == 1 and r.stderr.strip() == forbidden, r.stderr
    admin = tmp_path / "admin.kubeconfig"
    admin.write_text(client.kubeconfig(sid))
    grant = ["create", "rolebinding", "students", "--clusterrole=view", "--group=students", "-n", "default"]
    r = subprocess.run([KUBECTL, "--kubeconfig", str(admin), *grant], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = in_netns(box["pid"], [KUBECTL, "--kubeconfig", str(inside_kc), "get", "pods"])
    assert r.returncode == 0 and "No resources found in default namespace." in r.stderr, r.stderr
    # the token is for this sandbox's cluster only
    other = sandbox(client, services=["kubernetes"])
    assert status_in_netns(other["pid"], f"/clusters/{other['id']}/api/v1/namespaces", token_of(inside_kc)) == 401
    with pytest.raises(errors.BadRequest, match="use `kubectl create token`"):
        client.kube_user(sid, "system:serviceaccount:default:default")
    plain = sandbox(client)
    with pytest.raises(errors.NotAvailable, match="kubernetes service"):
        client.kube_user(plain["id"], "jane")


def test_removing_the_sandbox_deletes_its_cluster(client: Client, daemon: RealDaemon) -> None:
    box = sandbox(client, services=["kubernetes"])
    sid = box["id"]
    host_kc = client.kubeconfig(sid)
    kube_api(host_kc).list_namespace()
    cluster_dir = daemon.root / "kube" / "clusters" / sid
    assert (cluster_dir / "store.jsonl").exists()
    client.remove_sandbox(sid)
    assert not cluster_dir.exists()
    assert not (daemon.root / "kube" / "sandboxes" / f"{sid}.json").exists()
    # the cluster's certificate went with it (the host listener falls back to its default
    # one), and without TLS verification its token is refused
    import httpx
    import urllib3

    with pytest.raises(urllib3.exceptions.MaxRetryError, match="CERTIFICATE_VERIFY_FAILED"):
        kube_api(host_kc).list_namespace()
    server = yaml.safe_load(host_kc)["clusters"][0]["cluster"]["server"]
    r = httpx.get(f"{server}/api/v1/namespaces", headers={"Authorization": f"Bearer {token_of(host_kc)}"}, verify=False)
    assert r.status_code == 401


def test_a_stopped_sandbox_keeps_its_cluster_for_grading(client: Client, daemon: RealDaemon) -> None:
    box = sandbox(client, services=["kubernetes"])
    kube_api(client.kubeconfig(box["id"])).create_namespaced_config_map("default", {"metadata": {"name": "work"}})
    client.stop_sandbox(box["id"])
    items = kube_api(client.kubeconfig(box["id"])).list_namespaced_config_map("default").items
    assert "work" in [m.metadata.name for m in items]
    assert (daemon.root / "kube" / "clusters" / box["id"]).is_dir()


def test_daemon_restart_keeps_the_cluster_and_restores_the_listener(daemon: RealDaemon, tmp_path: Path) -> None:
    with Client(daemon.socket, timeout=60) as c:
        box = sandbox(c, services=["kubernetes"])
        sid = box["id"]
        server = c.healthz()["kube_server"]
        kube_api(c.kubeconfig(sid)).create_namespaced_config_map("default", {"metadata": {"name": "kept"}})
        kc = kubeconfig_inside(c, sid, tmp_path)
    try:
        assert daemon.stop() == 0
        # runtimed is down: the sandbox runs on, its listener went with the daemon
        r = in_netns(box["pid"], [KUBECTL, "--kubeconfig", str(kc), "get", "ns", "--request-timeout=5s"])
        assert r.returncode != 0
        daemon.start()
        with Client(daemon.socket, timeout=60) as c:
            assert c.healthz()["kube_server"] == server  # same port: handed-out kubeconfigs still work
            r = in_netns(box["pid"], [KUBECTL, "--kubeconfig", str(kc), "get", "cm", "kept", "-o", "name"])
            assert r.returncode == 0 and r.stdout.strip() == "configmap/kept", r.stderr
            names = [m.metadata.name for m in kube_api(c.kubeconfig(sid)).list_namespaced_config_map("default").items]
            assert "kept" in names
    finally:
        if daemon.proc is None or daemon.proc.poll() is not None:
            daemon.start()
        with Client(daemon.socket, timeout=60) as c, contextlib.suppress(errors.RuntimeError):
            c.remove_sandbox(sid)


def test_cli_run_with_the_service(daemon: RealDaemon) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "runtime", "--socket", str(daemon.socket), "run", *args],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
        )

    r = cli(
        "--service",
        "kubernetes",
        "--",
        "sh",
        "-c",
        "grep -c 'server: https://127.0.0.1:6443/clusters/' /root/.kube/config"
        " && nc -w 5 127.0.0.1 6443 </dev/null && echo UP",
    )
    assert r.returncode == 0 and r.stdout.split() == ["1", "UP"], r.stdout + r.stderr
    clusters = daemon.root / "kube" / "clusters"
    assert sorted(p.name for p in clusters.iterdir() if not p.name.startswith(".")) == sorted(
        json.loads(p.read_text())["cluster"] for p in (daemon.root / "kube" / "sandboxes").glob("*.json")
    )


@pytest.mark.skipif(not _has_lab_base(), reason=f"no lab-base image in {IMAGES} (make builds it)")
def test_kubectl_inside_lab_base(client: Client, daemon: RealDaemon) -> None:
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "runtime",
            "--socket",
            str(daemon.socket),
            "run",
            "--image",
            "lab-base",
            "--service",
            "kubernetes",
            "--",
            "sh",
            "-c",
            "kubectl get ns && kubectl create configmap made-inside --from-literal=k=v"
            " && kubectl get cm made-inside -o name",
        ],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "kube-system" in r.stdout and "configmap/made-inside" in r.stdout
    # a lab setup script runs after the cluster is up, so it may use kubectl
    box = client.create_sandbox(
        {"image": "lab-base", "services": ["kubernetes"], "setup": "kubectl create namespace lab-ready"}
    )
    names = [n.metadata.name for n in kube_api(client.kubeconfig(box["id"])).list_namespace().items]
    assert "lab-ready" in names


@pytest.mark.skipif(not _has_lab_base(), reason=f"no lab-base image in {IMAGES} (make builds it)")
def test_pods_run_on_the_sandboxs_engine_and_survive_a_runtimed_restart(daemon: RealDaemon) -> None:
    """The whole path a student takes: kubectl in the sandbox, the sandbox's cluster, its
    kubelet running the pod as a container of the sandbox's own engine; logs and exec
    through the API server; pod-to-pod traffic on the pod network; a runtimed restart
    that the pods and a new kubelet survive."""
    script = """
set -e
kubectl run web --image=busybox:1.35 -- sh -c 'echo hello from web; exec httpd -f -p 8080 -h /etc'
kubectl wait --for=condition=Ready pod/web --timeout=90s >/dev/null
ip=$(kubectl get pod web -o jsonpath='{.status.podIP}')
echo "ip=$ip"
echo "logs=$(kubectl logs web)"
echo "exec=$(kubectl exec web -- hostname)"
kubectl run client --image=busybox:1.35 --restart=Never -- wget -qO- "http://$ip:8080/hostname"
kubectl wait --for=jsonpath='{.status.phase}'=Succeeded pod/client --timeout=90s >/dev/null
echo "fetched=$(kubectl logs client)"
echo "docker=$(docker ps --format '{{.Names}}' | grep -c '^k8s_web_web_default_')"
"""
    with Client(daemon.socket, timeout=60) as c:
        box = c.create_sandbox({"image": "lab-base", "services": ["kubernetes"]})
        sid = box["id"]
    try:
        assert box["spec"]["services"] == ["docker", "kubernetes"]
        with Client(daemon.socket, timeout=200) as c:
            r = c.exec(sid, ["bash", "-c", script], timeout=180)
        assert r.exit_code == 0, r.stdout_text + r.stderr_text
        out = dict(line.split("=", 1) for line in r.stdout_text.splitlines() if "=" in line)
        assert out["ip"].startswith("10.244.0.")
        assert out["logs"] == "hello from web"
        assert out["exec"] == "web"
        assert out["fetched"] == "web"
        assert out["docker"] == "1"

        assert daemon.stop() == 0
        daemon.start()
        with Client(daemon.socket, timeout=200) as c:
            again = "kubectl exec web -- echo still-$((1+1)); kubectl get pod web -o jsonpath='{.status.phase}'"
            r = c.exec(sid, ["bash", "-c", again], timeout=120)
        assert r.exit_code == 0, r.stdout_text + r.stderr_text
        assert r.stdout_text.split() == ["still-2", "Running"]
    finally:
        if daemon.proc is None or daemon.proc.poll() is not None:
            daemon.start()
        with Client(daemon.socket, timeout=60) as c, contextlib.suppress(errors.RuntimeError):
            c.remove_sandbox(sid)
