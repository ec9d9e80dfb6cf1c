"""Every verb, subresource, discovery and OpenAPI endpoint through the typed Python client.

Written from the API conventions (api-conventions.md, "Patch operations", "Concurrency
control", "Lists and watches") and the official OpenAPI the client is generated from:
each call below is the client's own method for the operation, and its response is
deserialised into the client's models.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.compat.kube.conftest import Raw
from tests.runtime.kube.apiserver.test_pod_io import HostPodIO

CLIENT = "kubernetes-python"


def _core(api: Any) -> Any:
    from kubernetes import client

    return client.CoreV1Api(api)


def _apps(api: Any) -> Any:
    from kubernetes import client

    return client.AppsV1Api(api)


def _cm(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": {"t": "v"}}, "data": data}


def _deploy(name: str, replicas: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "nginx:1.27", "env": [{"name": "A", "value": "1"}]}]},
            },
        },
    }


def test_create_get_list_update_delete(api: Any, ns: str) -> None:
    from kubernetes import client

    core = _core(api)
    created = core.create_namespaced_config_map(ns, _cm("one", a="1"))
    assert type(created).__name__ == "V1ConfigMap" and created.data == {"a": "1"}
    got = core.read_namespaced_config_map("one", ns)
    assert got.metadata.resource_version == created.metadata.resource_version
    got.data["b"] = "2"
    replaced = core.replace_namespaced_config_map("one", ns, got)
    assert replaced.data == {"a": "1", "b": "2"}
    assert int(replaced.metadata.resource_version) > int(created.metadata.resource_version)
    # optimistic concurrency: the old resourceVersion is refused
    got.data["c"] = "3"
    with pytest.raises(client.ApiException) as e:
        core.replace_namespaced_config_map("one", ns, got)
    assert e.value.status == 409
    listed = core.list_namespaced_config_map(ns, label_selector="t=v")
    assert [c.metadata.name for c in listed.items] == ["one"]
    # a resource without ReturnDeletedObject answers a Success Status naming what went
    # (the client declares this response an untyped object: it hands over the JSON)
    status = core.delete_namespaced_config_map("one", ns)
    assert status == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {"name": "one", "kind": "configmaps", "uid": created.metadata.uid},
    }
    # pods are one of the resources that answer the deleted object itself
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "gone"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }
    core.create_namespaced_pod(ns, pod)
    out = core.delete_namespaced_pod("gone", ns, grace_period_seconds=0)
    assert out.kind == "Pod" and out.metadata.name == "gone"
    with pytest.raises(client.ApiException) as e:
        core.read_namespaced_config_map("one", ns)
    assert e.value.status == 404


def test_list_pagination_with_limit_and_continue(api: Any, ns: str) -> None:
    core = _core(api)
    for i in range(5):
        core.create_namespaced_config_map(ns, _cm(f"p{i}"))
    seen: list[str] = []
    cont = None
    while True:
        page = core.list_namespaced_config_map(ns, label_selector="t=v", limit=2, _continue=cont)
        seen += [c.metadata.name for c in page.items]
        cont = page.metadata._continue
        if not cont:
            break
        assert page.metadata.remaining_item_count is not None
    assert seen == [f"p{i}" for i in range(5)]


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json-patch+json", [{"op": "add", "path": "/data/b", "value": "2"}]),
        ("application/merge-patch+json", {"data": {"b": "2"}}),
        ("application/strategic-merge-patch+json", {"data": {"b": "2"}}),
        (None, {"data": {"b": "2"}}),  # the client's default for an object: strategic merge
    ],
    ids=["json", "merge", "strategic", "default"],
)
def test_patch_types(api: Any, ns: str, content_type: str | None, body: Any) -> None:
    core = _core(api)
    core.create_namespaced_config_map(ns, _cm("p", a="1"))
    kw = {"_content_type": content_type} if content_type else {}
    out = core.patch_namespaced_config_map("p", ns, body, **kw)
    assert out.data == {"a": "1", "b": "2"}


def test_strategic_merge_keeps_list_items_by_merge_key(api: Any, ns: str) -> None:
    apps = _apps(api)
    apps.create_namespaced_deployment(ns, _deploy("sm"))
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "c", "env": [{"name": "B", "value": "2"}]}]}}}}
    out = apps.patch_namespaced_deployment("sm", ns, patch)
    c = out.spec.template.spec.containers[0]
    assert c.image == "nginx:1.27"  # merged by name, not replaced
    assert [(e.name, e.value) for e in c.env] == [("B", "2"), ("A", "1")]


def test_server_side_apply_and_its_conflicts(api: Any, ns: str) -> None:
    from kubernetes import client

    core = _core(api)
    cfg = _cm("ssa", a="1")
    out = core.patch_namespaced_config_map(
        "ssa", ns, cfg, field_manager="alice", _content_type="application/apply-patch+yaml"
    )
    assert out.data == {"a": "1"}
    assert [m.manager for m in out.metadata.managed_fields] == ["alice"]
    with pytest.raises(client.ApiException) as e:
        core.patch_namespaced_config_map(
            "ssa", ns, _cm("ssa", a="2"), field_manager="bob", _content_type="application/apply-patch+yaml"
        )
    assert e.value.status == 409
    body = json.loads(e.value.body or "")
    assert body["reason"] == "Conflict"
    assert body["details"]["causes"][0]["field"] == ".data.a"
    forced = core.patch_namespaced_config_map(
        "ssa", ns, _cm("ssa", a="2"), field_manager="bob", force=True, _content_type="application/apply-patch+yaml"
    )
    assert forced.data == {"a": "2"}


def test_dry_run_stores_nothing(api: Any, ns: str) -> None:
    from kubernetes import client

    core = _core(api)
    out = core.create_namespaced_config_map(ns, _cm("dry"), dry_run="All")
    assert out.metadata.name == "dry"
    with pytest.raises(client.ApiException) as e:
        core.read_namespaced_config_map("dry", ns)
    assert e.value.status == 404


def test_field_validation_strict_refuses_unknown_fields(raw: Raw, ns: str) -> None:
    body = {**_cm("strict"), "bogus": 1}
    status, _, out = raw("POST", f"/api/v1/namespaces/{ns}/configmaps?fieldValidation=Strict", body)
    assert status == 400
    assert json.loads(out)["message"] == (
        'ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding error: unknown field "bogus"'
    )


def test_delete_collection(api: Any, ns: str) -> None:
    core = _core(api)
    for i in range(3):
        core.create_namespaced_config_map(ns, _cm(f"d{i}"))
    core.delete_collection_namespaced_config_map(ns, label_selector="t=v")
    assert core.list_namespaced_config_map(ns, label_selector="t=v").items == []


def test_delete_propagation_orphan_keeps_the_dependents(api: Any, ns: str) -> None:
    from kubernetes import client

    apps = _apps(api)
    apps.create_namespaced_deployment(ns, _deploy("orph"))
    assert len(apps.list_namespaced_replica_set(ns).items) == 1
    apps.delete_namespaced_deployment("orph", ns, body=client.V1DeleteOptions(propagation_policy="Orphan"))
    rs = apps.list_namespaced_replica_set(ns).items
    assert len(rs) == 1 and not rs[0].metadata.owner_references


def test_watch_sees_added_modified_deleted(api: Any, ns: str) -> None:
    from kubernetes import watch

    core = _core(api)
    start = core.list_namespaced_config_map(ns).metadata.resource_version
    core.create_namespaced_config_map(ns, _cm("w"))
    core.patch_namespaced_config_map("w", ns, {"data": {"x": "1"}})
    core.delete_namespaced_config_map("w", ns)
    w = watch.Watch()
    seen = []
    for ev in w.stream(core.list_namespaced_config_map, ns, resource_version=start, timeout_seconds=5):
        seen.append((ev["type"], ev["object"].metadata.name))
        if ev["type"] == "DELETED":
            w.stop()
    assert seen == [("ADDED", "w"), ("MODIFIED", "w"), ("DELETED", "w")]


def test_status_subresource(api: Any, ns: str) -> None:
    apps = _apps(api)
    apps.create_namespaced_deployment(ns, _deploy("st", replicas=0))
    st = apps.read_namespaced_deployment_status("st", ns)
    assert st.status is not None
    out = apps.patch_namespaced_deployment_status(
        "st", ns, {"status": {"conditions": [{"type": "Custom", "status": "True"}]}}
    )
    assert [c.type for c in out.status.conditions or []].count("Custom") == 1
    # the main resource's endpoint ignores status
    spec_only = apps.patch_namespaced_deployment("st", ns, {"status": {"replicas": 42}})
    assert spec_only.status.replicas != 42


def test_scale_subresource(api: Any, ns: str) -> None:

    apps = _apps(api)
    apps.create_namespaced_deployment(ns, _deploy("sc", replicas=1))
    scale = apps.read_namespaced_deployment_scale("sc", ns)
    assert type(scale).__name__ == "V1Scale" and scale.spec.replicas == 1
    assert scale.status.selector == "app=sc"
    out = apps.patch_namespaced_deployment_scale("sc", ns, {"spec": {"replicas": 3}})
    assert out.spec.replicas == 3
    assert apps.read_namespaced_deployment("sc", ns).spec.replicas == 3
    rc = {
        "apiVersion": "v1",
        "kind": "ReplicationController",
        "metadata": {"name": "rc"},
        "spec": {
            "replicas": 1,
            "template": {"metadata": {"labels": {"app": "rc"}}, "spec": _deploy("x")["spec"]["template"]["spec"]},
        },
    }
    core = _core(api)
    core.create_namespaced_replication_controller(ns, rc)
    s = core.read_namespaced_replication_controller_scale("rc", ns)
    s.spec.replicas = 2
    core.replace_namespaced_replication_controller_scale("rc", ns, s)
    deadline = time.monotonic() + 15
    while core.read_namespaced_replication_controller("rc", ns).status.replicas != 2:
        assert time.monotonic() < deadline
        time.sleep(0.1)


@pytest.fixture
def running_pod(api: Any, ns: str, pod_io: HostPodIO) -> str:
    core = _core(api)
    core.create_namespaced_pod(
        ns,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "lp"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        },
    )
    pod_io.scripts[("lp", "c")] = "printf 'first\\nsecond\\n'"
    return "lp"


def test_pod_log(api: Any, ns: str, running_pod: str) -> None:
    core = _core(api)
    assert core.read_namespaced_pod_log(running_pod, ns) == "first\nsecond\n"
    assert core.read_namespaced_pod_log(running_pod, ns, tail_lines=1) == "second\n"


def test_pod_attach(api: Any, ns: str, running_pod: str) -> None:
    from kubernetes import client
    from kubernetes.stream import stream

    resp = stream(
        client.CoreV1Api(api).connect_get_namespaced_pod_attach,
        running_pod,
        ns,
        stdin=False,
        stdout=True,
        stderr=True,
        tty=False,
        _preload_content=False,
    )
    resp.run_forever(timeout=15)
    assert resp.read_stdout() == "first\nsecond\n"


def test_privileged_pod_is_refused_as_admission_refuses(api: Any, ns: str) -> None:
    """Refused by design, in the shape kube-apiserver's admission uses: 403 Forbidden, the
    pod named in the details, the reason in the message."""
    from kubernetes import client

    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "priv"},
        "spec": {
            "hostNetwork": True,
            "containers": [{"name": "c", "image": "busybox", "securityContext": {"privileged": True}}],
        },
    }
    with pytest.raises(client.ApiException) as e:
        _core(api).create_namespaced_pod(ns, pod)
    assert e.value.status == 403
    body = json.loads(e.value.body or "")
    assert list(body) == ["kind", "apiVersion", "metadata", "status", "message", "reason", "details", "code"]
    assert body["reason"] == "Forbidden"
    assert body["details"] == {"name": "priv", "kind": "pods"}
    assert body["message"].startswith('pods "priv" is forbidden: ')
    assert "host namespaces (hostNetwork=true" in body["message"]
    assert 'privileged (container "c" must not set securityContext.privileged=true' in body["message"]


def test_discovery(api: Any) -> None:
    from kubernetes import client

    versions = client.CoreApi(api).get_api_versions()
    assert versions.versions == ["v1"]
    groups: dict[str, Any] = {g.name: g for g in client.ApisApi(api).get_api_versions().groups}
    assert groups["apps"].preferred_version.group_version == "apps/v1"
    assert "apiregistration.k8s.io" in groups
    core = {r.name: r for r in client.CoreV1Api(api).get_api_resources().resources}
    rc = core["replicationcontrollers"]
    assert (rc.kind, rc.namespaced, rc.short_names) == ("ReplicationController", True, ["rc"])
    assert core["replicationcontrollers/scale"].kind == "Scale"
    assert set(core["pods"].verbs) >= {
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    }
    reg = client.ApiregistrationV1Api(api).get_api_resources()
    assert [r.name for r in reg.resources] == ["apiservices", "apiservices/status"]
    info = client.VersionApi(api).get_code()
    assert info.major == "1" and info.git_version.startswith("v1.")


def test_openapi_v2_and_v3(raw: Raw) -> None:
    status, headers, body = raw("GET", "/openapi/v2")
    assert status == 200 and headers["content-type"].startswith("application/json")
    v2 = json.loads(body)
    assert v2["swagger"] == "2.0"
    rc = v2["definitions"]["io.k8s.api.core.v1.ReplicationController"]
    assert rc["x-kubernetes-group-version-kind"] == [{"group": "", "version": "v1", "kind": "ReplicationController"}]
    status, _, body = raw("GET", "/openapi/v3")
    paths = json.loads(body)["paths"]
    assert "apis/apiregistration.k8s.io/v1" in paths and "api/v1" in paths
    status, _, body = raw("GET", "/" + paths["apis/apiregistration.k8s.io/v1"]["serverRelativeURL"].lstrip("/"))
    assert status == 200
    schemas = json.loads(body)["components"]["schemas"]
    assert "io.k8s.kube-aggregator.pkg.apis.apiregistration.v1.APIService" in schemas


def test_binding_a_pod_of_another_scheduler(api: Any, ns: str) -> None:
    """A custom scheduler's write: POST pods/NAME/binding (the default scheduler leaves pods
    of other schedulerNames Pending); a second binding is a conflict."""
    from kubernetes import client

    core = _core(api)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "mine"},
        "spec": {"schedulerName": "my-scheduler", "containers": [{"name": "c", "image": "busybox"}]},
    }
    core.create_namespaced_pod(ns, pod)
    assert core.read_namespaced_pod("mine", ns).spec.node_name is None
    node = core.list_node().items[0].metadata.name
    binding = client.V1Binding(
        metadata=client.V1ObjectMeta(name="mine"), target=client.V1ObjectReference(kind="Node", name=node)
    )
    # kube-apiserver answers a Success Status, not the Binding the OpenAPI names, so the
    # typed client cannot deserialise it against a real server either (its users read the
    # raw response: kubernetes-client/python issues 547 and 825)
    resp = core.create_namespaced_pod_binding("mine", ns, binding, _preload_content=False)
    assert resp.status == 201
    assert json.loads(resp.data) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "code": 201,
    }
    got = core.read_namespaced_pod("mine", ns)
    assert got.spec.node_name == node
    assert any(c.type == "PodScheduled" and c.status == "True" for c in got.status.conditions or [])
    with pytest.raises(client.ApiException) as e:
        core.create_namespaced_pod_binding("mine", ns, binding)
    assert e.value.status == 409
    # the legacy collection (the pod named by the Binding's own name), as custom schedulers
    # written with this client use it
    core.create_namespaced_pod(ns, {**pod, "metadata": {"name": "legacy"}})
    legacy = client.V1Binding(
        metadata=client.V1ObjectMeta(name="legacy"), target=client.V1ObjectReference(kind="Node", name=node)
    )
    resp = core.create_namespaced_binding(ns, legacy, _preload_content=False)
    assert resp.status == 201
    assert core.read_namespaced_pod("legacy", ns).spec.node_name == node
    assert json.loads(e.value.body or "")["message"] == (
        f'Operation cannot be fulfilled on pods/binding "mine": pod mine is already assigned to node "{node}"'
    )


def test_service_proxy_is_refused_with_the_reason(raw: Raw) -> None:
    status, _, body = raw("GET", "/api/v1/namespaces/default/services/kubernetes:443/proxy/healthz")
    assert status == 503
    st = json.loads(body)
    assert st["reason"] == "ServiceUnavailable"
    assert st["message"].startswith("the services/proxy subresource is not served by this lab cluster")
