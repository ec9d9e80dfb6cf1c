"""Many clusters in one process: isolation, persistence across restarts, other clients."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
import yaml

from tests.runtime.kube.conftest import KUBECTL, PY, ROOT, Kubectl, Server, free_port


def test_clusters_cannot_see_each_other(alpha: Kubectl, beta: Kubectl) -> None:
    alpha("create", "configmap", "only-in-alpha", "-n", "default")
    err = beta.fails("get", "configmap", "only-in-alpha", "-n", "default")
    assert 'configmaps "only-in-alpha" not found' in err
    alpha("delete", "configmap", "only-in-alpha", "-n", "default")


def test_token_of_one_cluster_is_rejected_by_another(alpha: Kubectl, beta: Kubectl, tmp_path) -> None:
    a = yaml.safe_load(alpha.kubeconfig.read_text())
    b = yaml.safe_load(beta.kubeconfig.read_text())
    a["users"][0]["user"]["token"] = b["users"][0]["user"]["token"]
    mixed = tmp_path / "mixed.kubeconfig"
    mixed.write_text(yaml.safe_dump(a))
    err = Kubectl(mixed).fails("get", "ns")
    assert "You must be logged in to the server" in err or "Unauthorized" in err


def test_each_cluster_has_its_own_ca(alpha: Kubectl, beta: Kubectl, tmp_path) -> None:
    a = yaml.safe_load(alpha.kubeconfig.read_text())
    b = yaml.safe_load(beta.kubeconfig.read_text())
    assert (
        a["clusters"][0]["cluster"]["certificate-authority-data"]
        != (b["clusters"][0]["cluster"]["certificate-authority-data"])
    )
    a["clusters"][0]["cluster"]["certificate-authority-data"] = b["clusters"][0]["cluster"][
        "certificate-authority-data"
    ]
    wrong = tmp_path / "wrongca.kubeconfig"
    wrong.write_text(yaml.safe_dump(a))
    err = Kubectl(wrong).fails("get", "ns")
    assert "certificate" in err


def test_official_python_client(alpha: Kubectl) -> None:
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=str(alpha.kubeconfig))
    core = client.CoreV1Api(api)
    names = [n.metadata.name for n in core.list_namespace().items if n.metadata]
    assert "kube-system" in names
    cm = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="from-python"), data={"x": "1"})
    core.create_namespaced_config_map("default", cm)
    got = core.read_namespaced_config_map("from-python", "default")
    assert got.data == {"x": "1"} and got.metadata and got.metadata.uid
    apps = client.AppsV1Api(api)
    dep = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="py-web"),
        spec=client.V1DeploymentSpec(
            replicas=2,
            selector=client.V1LabelSelector(match_labels={"app": "py-web"}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": "py-web"}),
                spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="nginx")]),
            ),
        ),
    )
    apps.create_namespaced_deployment("default", dep)
    pods = core.list_namespaced_pod("default", label_selector="app=py-web").items
    assert len(pods) == 2
    with pytest.raises(client.ApiException) as e:
        core.read_namespaced_config_map("nope", "default")
    assert e.value.status == 404 and json.loads(e.value.body or "{}")["reason"] == "NotFound"
    apps.delete_namespaced_deployment("py-web", "default")
    core.delete_namespaced_config_map("from-python", "default")
    api.close()


def test_watch_streams_changes(alpha: Kubectl, ns: str) -> None:
    alpha("create", "configmap", "w", "-n", ns)
    proc = subprocess.Popen(
        [
            KUBECTL,
            "--kubeconfig",
            str(alpha.kubeconfig),
            "get",
            "cm",
            "w",
            "-n",
            ns,
            "-w",
            "-o",
            'jsonpath={.metadata.name}={.data.v}{"\\n"}',
            "--request-timeout=0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.0)
        alpha("patch", "cm", "w", "-n", ns, "-p", '{"data":{"v":"1"}}')
        alpha("patch", "cm", "w", "-n", ns, "-p", '{"data":{"v":"2"}}')
        time.sleep(1.0)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    assert out.splitlines() == ["w=", "w=1", "w=2"]


def test_watch_from_resource_version_replays_and_bookmarks(alpha: Kubectl, ns: str) -> None:
    alpha("create", "configmap", "r", "-n", ns)
    rv = alpha("get", "cm", "r", "-n", ns, "-o", "jsonpath={.metadata.resourceVersion}")
    alpha("label", "cm", "r", "-n", ns, "x=1")
    raw = alpha("get", "--raw", f"/api/v1/namespaces/{ns}/configmaps?watch=1&resourceVersion={rv}&timeoutSeconds=1")
    events = [json.loads(line) for line in raw.splitlines()]
    assert [(e["type"], e["object"]["metadata"]["labels"]) for e in events] == [("MODIFIED", {"x": "1"})]
    raw = alpha(
        "get",
        "--raw",
        f"/api/v1/namespaces/{ns}/configmaps?watch=1&sendInitialEvents=true"
        "&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=1",
    )
    events = [json.loads(line) for line in raw.splitlines()]
    assert [e["type"] for e in events] == ["ADDED", "ADDED", "BOOKMARK"]
    assert events[-1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    # older than the watch cache: accepted, and its one event is the 410 (as kube-apiserver's cacher)
    raw = alpha("get", "--raw", f"/api/v1/namespaces/{ns}/configmaps?watch=1&resourceVersion=1")
    (event,) = [json.loads(line) for line in raw.splitlines()]
    assert event["type"] == "ERROR" and event["object"]["code"] == 410 and event["object"]["reason"] == "Expired"
    assert event["object"]["message"].startswith("too old resource version: 1 (")


def test_restart_keeps_objects_versions_and_tokens(tmp_path) -> None:
    srv = Server(tmp_path, free_port())
    srv.start()
    try:
        k = Kubectl(srv.new_cluster("keep"))
        k("create", "deployment", "d", "--image=nginx", "--replicas=2")
        k("create", "configmap", "c", "--from-literal=a=1")
        before = json.loads(k("get", "cm", "c", "-o", "json"))["metadata"]
        pods_before = sorted(k("get", "pods", "-o", "name").split())
    finally:
        srv.stop()
    srv.port = free_port()
    srv.start()
    try:
        cfg = yaml.safe_load(k.kubeconfig.read_text())
        cfg["clusters"][0]["cluster"]["server"] = f"{srv.url}/clusters/keep"
        k.kubeconfig.write_text(yaml.safe_dump(cfg))
        after = json.loads(k("get", "cm", "c", "-o", "json"))["metadata"]
        assert after["uid"] == before["uid"]
        assert after["resourceVersion"] == before["resourceVersion"]
        assert sorted(k("get", "pods", "-o", "name").split()) == pods_before
        k("label", "cm", "c", "x=y")
        rv = k("get", "cm", "c", "-o", "jsonpath={.metadata.resourceVersion}")
        assert int(rv) > int(before["resourceVersion"])
    finally:
        srv.stop()


def test_new_cluster_name_must_be_a_dns_label(server: Server) -> None:
    r = subprocess.run(
        [PY, "-m", "runtime.kube", "new-cluster", "--data", str(server.data), "--server", server.url, "Bad_Name"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert r.returncode == 1 and "invalid cluster name" in r.stderr


def test_main_cli_mounts_kube_commands(server: Server) -> None:
    r = subprocess.run(
        [PY, "-m", "runtime", "kube", "new-cluster", "--data", str(server.data), "--server", server.url, "viamain"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr
    path = server.data / "viamain.kubeconfig"
    path.write_text(r.stdout)
    assert Kubectl(path)("get", "ns", "default", "-o", "name") == "namespace/default\n"


def test_malformed_bodies_get_status_errors(alpha: Kubectl, ns: str) -> None:
    err = alpha.fails(
        "create", "-n", ns, "-f", "-", "--validate=false", stdin='{"apiVersion":"v1","kind":"ConfigMap","metadata":"x"}'
    )
    assert "Error from server" in err or "error" in err
    # the server is still healthy afterwards
    assert alpha("get", "ns", ns, "-o", "name") == f"namespace/{ns}\n"


def test_a_killed_server_loses_no_acknowledged_write(tmp_path) -> None:
    import signal

    srv = Server(tmp_path, free_port())
    srv.start()
    try:
        k = Kubectl(srv.new_cluster("crash"))
        for i in range(20):
            k("create", "configmap", f"c{i}", f"--from-literal=i={i}")
        rv = k("get", "cm", "c19", "-o", "jsonpath={.metadata.resourceVersion}")
        assert srv.proc is not None
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait(timeout=10)
        srv.proc = None
        srv.start()  # same port: the kubeconfig stays valid
        names = k("get", "cm", "-o", "name").split()
        assert {f"configmap/c{i}" for i in range(20)} <= set(names)
        assert k("get", "cm", "c19", "-o", "jsonpath={.metadata.resourceVersion}") == rv
        assert k("get", "cm", "c7", "-o", "jsonpath={.data.i}") == "7"
    finally:
        srv.stop()
