"""What one lab cluster may hold (runtime/kube/machinery/limits.py), through the real kubectl and the
official ``kubernetes`` Python client, answered as a real API server answers."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from tests.runtime.kube.conftest import PY, ROOT, Kubectl, Server

MiB = 1024 * 1024


def limited_cluster(server: Server, name: str, **limits: int | float) -> Kubectl:
    """A cluster of ``server`` with its own limits (``new-cluster --limit``)."""
    args = [f"--limit={k}={v}" for k, v in limits.items()]
    out = subprocess.run(
        [PY, "-m", "runtime.kube", "new-cluster", "--data", str(server.data), "--server", server.url, *args, name],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=60,
    )
    path = server.data / f"{name}.kubeconfig"
    path.write_bytes(out.stdout)
    return Kubectl(path)


def api_client(kc: Kubectl, rcvbuf: int | None = None) -> client.ApiClient:
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(kc.kubeconfig), client_configuration=cfg)
    if rcvbuf is not None:  # a client that takes little off the wire: a slow watcher
        cfg.socket_options = [(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)]
    return client.ApiClient(cfg)


def status_of(e: client.ApiException) -> dict[str, Any]:
    return dict(json.loads(e.body or "{}"))


@pytest.fixture
def core(alpha: Kubectl) -> Iterator[client.CoreV1Api]:
    api = api_client(alpha)
    yield client.CoreV1Api(api)
    api.close()


def _cm(name: str, size: int = 0) -> client.V1ConfigMap:
    return client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name), data={"k": "x" * size})


def _manifest(name: str, value: str) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": value}})


def test_object_over_etcds_limit_is_refused_as_kube_apiserver_passes_it_on(
    alpha: Kubectl, ns: str, core: client.CoreV1Api, tmp_path: Path
) -> None:
    f = tmp_path / "two-mib"
    f.write_text("x" * (2 * MiB))
    err = alpha.fails("create", "configmap", "big", "-n", ns, f"--from-file=k={f}")
    assert "etcdserver: request is too large" in err
    err = alpha.fails("create", "-n", ns, "-f", "-", stdin=_manifest("big", "x" * (2 * MiB)))
    assert 'Error from server: error when creating "STDIN": etcdserver: request is too large' in err
    with pytest.raises(client.ApiException) as e:
        core.create_namespaced_config_map(ns, _cm("big2", 2 * MiB))
    st = status_of(e.value)
    assert e.value.status == 500 and st["message"] == "etcdserver: request is too large"
    assert "reason" not in st and st["kind"] == "Status" and st["code"] == 500
    # update, patch, server-side apply: the stored object is what is measured
    core.create_namespaced_config_map(ns, _cm("small", 10))
    with pytest.raises(client.ApiException) as e:
        core.replace_namespaced_config_map("small", ns, _cm("small", 2 * MiB))
    assert e.value.status == 500
    with pytest.raises(client.ApiException) as e:
        core.patch_namespaced_config_map("small", ns, {"data": {"k": "y" * (2 * MiB)}})
    assert e.value.status == 500
    manifest = (
        f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: small\n  namespace: {ns}\ndata:\n  k: {'z' * (2 * MiB)}\n"
    )
    err = alpha.fails("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=manifest)
    assert "etcdserver: request is too large" in err
    assert core.read_namespaced_config_map("small", ns).data == {"k": "x" * 10}
    core.create_namespaced_config_map(ns, _cm("just-under", MiB))  # under the limit: stored


def test_body_over_three_mib_is_413_status_for_every_kind_of_body(
    alpha: Kubectl, ns: str, core: client.CoreV1Api, tmp_path: Path
) -> None:
    f = tmp_path / "four-mib"
    f.write_text("x" * (4 * MiB))
    err = alpha.fails("create", "configmap", "huge", "-n", ns, f"--from-file=k={f}")
    assert "Request entity too large: limit is 3145728" in err
    err = alpha.fails("create", "-n", ns, "-f", "-", stdin=_manifest("huge", "x" * (4 * MiB)))
    assert (
        'Error from server (RequestEntityTooLarge): error when creating "STDIN": '
        "Request entity too large: limit is 3145728" in err
    )
    core.create_namespaced_config_map(ns, _cm("target", 1))
    with pytest.raises(client.ApiException) as e:
        core.patch_namespaced_config_map("target", ns, {"data": {"k": "y" * (4 * MiB)}})
    st = status_of(e.value)
    assert e.value.status == 413
    assert st == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "Request entity too large: limit is 3145728",
        "reason": "RequestEntityTooLarge",
        "code": 413,
    }
    api = core.api_client
    for ctype in ("application/vnd.kubernetes.protobuf", "application/yaml"):
        method, url, headers, body, _ = api.param_serialize(
            "POST",
            f"/api/v1/namespaces/{ns}/configmaps",
            header_params={"Content-Type": ctype, "Accept": "application/json"},
            body=b"a" * (3 * MiB + 1),
            auth_settings=["BearerToken"],
        )
        r = api.call_api(method, url, header_params=headers, body=body)
        r.read()
        assert r.status == 413 and json.loads(r.data)["reason"] == "RequestEntityTooLarge"
    assert core.read_namespaced_config_map("target", ns).data == {"k": "x"}


def test_object_count_quota_is_forbidden_per_cluster_and_deletes_still_work(server: Server, beta: Kubectl) -> None:
    kc = limited_cluster(server, "quota-count", max_objects=150)
    api = api_client(kc)
    core = client.CoreV1Api(api)
    made: list[str] = []
    refused: client.ApiException | None = None
    for i in range(200):
        try:
            core.create_namespaced_config_map("default", _cm(f"flood-{i}"))
        except client.ApiException as e:
            refused = e
            break
        made.append(f"flood-{i}")
    assert refused is not None, "200 creates in a cluster limited to 150 objects all succeeded"
    st = status_of(refused)
    assert refused.status == 403 and st["reason"] == "Forbidden"
    assert st["message"].startswith(f'configmaps "flood-{len(made)}" is forbidden: exceeded quota: ')
    assert "requested: count/*=1, used: count/*=150, limited: count/*=150" in st["message"]
    err = kc.fails("create", "-f", "-", stdin=_manifest("one-more", "v"))
    assert 'Error from server (Forbidden): error when creating "STDIN": configmaps "one-more" is forbidden: ' in err
    assert "exceeded quota: lab-cluster-limits" in err
    # deletes are always allowed, and free room
    kc("delete", "configmap", made[0], made[1])
    core.create_namespaced_config_map("default", _cm("after-delete"))
    # the quota is this cluster's: another cluster is not affected
    beta("create", "configmap", f"other-{uuid.uuid4().hex[:6]}")
    api.close()


def test_stored_bytes_quota_is_forbidden(server: Server) -> None:
    kc = limited_cluster(server, "quota-bytes", max_bytes=int(2.2 * MiB))
    api = api_client(kc)
    core = client.CoreV1Api(api)
    core.create_namespaced_config_map("default", _cm("a", MiB))
    core.create_namespaced_config_map("default", _cm("b", MiB))
    with pytest.raises(client.ApiException) as e:
        core.create_namespaced_config_map("default", _cm("c", MiB))
    assert e.value.status == 403
    assert "exceeded quota: lab-cluster-limits, requested: bytes/*=" in status_of(e.value)["message"]
    with pytest.raises(client.ApiException) as e:  # growing an object counts too
        core.replace_namespaced_config_map("a", "default", _cm("a", MiB + 200 * 1024))
    assert e.value.status == 403
    core.replace_namespaced_config_map("a", "default", _cm("a", 10))  # shrinking does not
    core.create_namespaced_config_map("default", _cm("c", MiB))
    api.close()


def list_rv(core: client.CoreV1Api) -> str:
    meta = core.list_namespaced_config_map("default").metadata
    assert meta is not None and meta.resource_version
    return str(meta.resource_version)


def _raw_watch(core: client.CoreV1Api, ns: str, rv: str) -> Any:
    return core.list_namespaced_config_map(
        ns, watch=True, resource_version=rv, timeout_seconds=300, _preload_content=False, _request_timeout=300
    )


def test_unread_watch_is_expired_with_410_and_the_client_relists(server: Server) -> None:
    kc = limited_cluster(server, "slow-watch", watch_cache_bytes=2 * MiB, watch_stall_seconds=3600)
    api = api_client(kc)
    core = client.CoreV1Api(api)
    slow_api = api_client(kc, rcvbuf=64 * 1024)
    slow = client.CoreV1Api(slow_api)
    core.create_namespaced_config_map("default", _cm("big", 10))
    rv = list_rv(core)
    resp = _raw_watch(slow, "default", rv)  # opened, then not read while the flood goes on
    for i in range(24):
        core.replace_namespaced_config_map("big", "default", _cm("big", MiB + i))
    lines = [json.loads(x) for x in resp.read().splitlines() if x.strip()]
    resp.release_conn()
    assert lines, "the watch sent nothing"
    assert all(x["type"] == "MODIFIED" for x in lines[:-1])
    assert len(lines) - 1 < 24, "every event reached a client that read nothing: nothing was bounded"
    last = lines[-1]
    assert last["type"] == "ERROR"
    assert last["object"]["code"] == 410 and last["object"]["reason"] == "Expired"
    assert last["object"]["message"].startswith("too old resource version: ")
    # the client re-lists and watches again from there
    listed = core.list_namespaced_config_map("default")
    assert len((listed.items[0].data or {})["k"]) == MiB + 23
    assert listed.metadata is not None and listed.metadata.resource_version
    resp = _raw_watch(core, "default", listed.metadata.resource_version)
    core.patch_namespaced_config_map("big", "default", {"data": {"k": "small"}})
    first = json.loads(next(iter(resp.stream(amt=1 << 20))).splitlines()[0])
    assert first["type"] == "MODIFIED" and first["object"]["data"] == {"k": "small"}
    resp.close()
    slow_api.close()
    api.close()


def test_number_of_watches_is_bounded(server: Server) -> None:
    kc = limited_cluster(server, "few-watches", max_watches=3)
    api = api_client(kc)
    core = client.CoreV1Api(api)
    rv = list_rv(core)
    opened = [_raw_watch(core, "default", rv) for _ in range(3)]
    with pytest.raises(client.ApiException) as e:
        _raw_watch(core, "default", rv)
    st = status_of(e.value)
    assert e.value.status == 429 and st["reason"] == "TooManyRequests"
    assert (e.value.headers or {}).get("Retry-After") == "1"
    assert core.list_namespaced_config_map("default").items is not None  # lists are not watches
    opened.pop().close()
    deadline = time.monotonic() + 60  # the server notices the closed connection on its own
    while True:
        try:
            opened.append(_raw_watch(core, "default", rv))
            break
        except client.ApiException as again:
            assert again.status == 429
            assert time.monotonic() < deadline, "a closed watch never gave its place back"
            time.sleep(0.5)
    for r in opened:
        r.close()
    api.close()
