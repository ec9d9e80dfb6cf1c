"""The kubelet's pod status writes, seen through the official Python client (#16).

A kubelet's status manager writes a pod's status as an API client: PUT .../pods/NAME/status
(the status subresource), recorded in managedFields under the field manager ``kubelet`` with
``subresource: status``, without touching ``metadata.generation`` (a status write is no spec
change). A pod being deleted gracefully (deletionTimestamp, deletionGracePeriodSeconds > 0)
still takes the kubelet's final status and stays until the kubelet deletes it with grace 0
(the watch then sees DELETED); a pod recreated under the same name is never written with the
old pod's status. The kubelet writes as ``system:node:<node>`` (group ``system:nodes``): its
Events name the node (source.host, reportingInstance), and NodeRestriction lets a node update
the status of, and delete, only the pods bound to it. Expectations follow the API reference (Pod, ManagedFieldsEntry,
DeleteOptions), not our implementation; ``ClusterHost`` is the kubelet's side, driven on the
server's loop as the kubelet thread drives it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from runtime.kube.node.kubelet import ClusterHost
from tests.runtime.kube.apiserver.test_pod_io import HostPodIO, InProcessServer

NODE = "kind-worker"


@pytest.fixture(scope="module")
def lab(compat_server: InProcessServer) -> Iterator[tuple[Any, ClusterHost]]:
    """A cluster of its own whose pods a kubelet runs (``ClusterHost.attach``), and its host."""
    kc = compat_server.cluster_with("kubelet-status", HostPodIO())
    cluster = compat_server.hub.get("kubelet-status")
    host = ClusterHost(cluster, compat_server.loop)
    host.attach(lambda: None)
    api = config.new_client_from_config(config_file=str(kc.kubeconfig))
    yield api, host
    host.attach(None)
    api.close()


def _pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"nodeName": NODE, "containers": [{"name": "c", "image": "busybox"}]},
    }


def _running(ip: str) -> dict[str, Any]:
    return {
        "phase": "Running",
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": "True"}],
        "containerStatuses": [
            {
                "name": "c",
                "ready": True,
                "restartCount": 0,
                "image": "busybox",
                "imageID": "",
                "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}},
            }
        ],
    }


@pytest.fixture
def ns(lab: tuple[Any, ClusterHost]) -> Iterator[str]:
    api, _ = lab
    name = f"k-{uuid.uuid4().hex[:8]}"
    core: Any = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": name}})
    yield name


def test_the_kubelets_status_write_is_a_status_subresource_update(lab: tuple[Any, ClusterHost], ns: str) -> None:
    api, host = lab
    core: Any = client.CoreV1Api(api)
    before = core.create_namespaced_pod(ns, _pod("web"))
    assert host.set_status(ns, "web", before.metadata.uid, _running("10.244.0.7"))
    got = core.read_namespaced_pod("web", ns)
    assert got.status.phase == "Running" and got.status.pod_ip == "10.244.0.7"
    assert got.status.container_statuses[0].ready is True
    assert got.metadata.generation == before.metadata.generation  # a status write is no spec change
    assert int(got.metadata.resource_version) > int(before.metadata.resource_version)
    entries = {(m.manager, m.operation, m.subresource) for m in got.metadata.managed_fields}
    assert ("kubelet", "Update", "status") in entries
    # the same status again is no write
    assert not host.set_status(ns, "web", before.metadata.uid, _running("10.244.0.7"))
    assert core.read_namespaced_pod("web", ns).metadata.resource_version == got.metadata.resource_version


def test_a_terminating_pod_takes_the_final_status_and_goes_on_the_kubelets_delete(
    lab: tuple[Any, ClusterHost], ns: str
) -> None:
    api, host = lab
    core: Any = client.CoreV1Api(api)
    pod = core.create_namespaced_pod(ns, _pod("job"))
    uid = pod.metadata.uid
    assert host.set_status(ns, "job", uid, _running("10.244.0.8"))
    core.delete_namespaced_pod("job", ns)  # graceful: terminationGracePeriodSeconds 30
    marked = core.read_namespaced_pod("job", ns)
    assert marked.metadata.deletion_timestamp is not None
    assert marked.metadata.deletion_grace_period_seconds == 30
    final = _running("10.244.0.8")
    final["phase"] = "Succeeded"
    final["conditions"] = [{"type": "Ready", "status": "False", "reason": "PodCompleted"}]
    final["containerStatuses"][0]["ready"] = False
    final["containerStatuses"][0]["state"] = {
        "terminated": {
            "exitCode": 0,
            "reason": "Completed",
            "startedAt": "2026-01-01T00:00:00Z",
            "finishedAt": "2026-01-01T00:00:05Z",
        }
    }
    assert host.set_status(ns, "job", uid, final)
    after = core.read_namespaced_pod("job", ns)  # still there, with the kubelet's final status
    assert after.status.phase == "Succeeded"
    assert after.status.container_statuses[0].state.terminated.exit_code == 0
    assert after.metadata.deletion_timestamp is not None

    w = watch.Watch()
    events = w.stream(
        core.list_namespaced_pod,
        ns,
        field_selector="metadata.name=job",
        resource_version=after.metadata.resource_version,
        timeout_seconds=10,
    )
    host.finish_delete(ns, "job", uid)  # its containers are gone: DELETE with grace 0
    seen = next(events)
    w.stop()
    assert seen["type"] == "DELETED" and seen["object"].metadata.uid == uid
    assert [p.metadata.name for p in core.list_namespaced_pod(ns).items] == []


def test_a_pod_recreated_under_the_same_name_is_not_written_with_the_old_ones_status(
    lab: tuple[Any, ClusterHost], ns: str
) -> None:
    api, host = lab
    core: Any = client.CoreV1Api(api)
    old = core.create_namespaced_pod(ns, _pod("again"))
    core.delete_namespaced_pod("again", ns, grace_period_seconds=0)
    new = core.create_namespaced_pod(ns, _pod("again"))
    assert not host.set_status(ns, "again", old.metadata.uid, _running("10.244.0.9"))
    got = core.read_namespaced_pod("again", ns)
    assert got.metadata.uid == new.metadata.uid and got.status.phase == "Pending"
    assert got.metadata.resource_version == new.metadata.resource_version


def test_the_kubelets_events_name_its_node(lab: tuple[Any, ClusterHost], ns: str) -> None:
    api, host = lab
    core: Any = client.CoreV1Api(api)
    pod = core.create_namespaced_pod(ns, _pod("ev"))
    host.event(api.sanitize_for_serialization(pod), "Normal", "Pulled", 'Container image "busybox" already present')
    (ev,) = [e for e in core.list_namespaced_event(ns).items if e.involved_object.name == "ev"]
    assert ev.source.component == "kubelet" and ev.source.host == NODE
    assert ev.reporting_component == "kubelet" and ev.reporting_instance == NODE


def _as_node(api: Any, node: str) -> Any:
    """The same credentials impersonating a node's kubelet (Impersonate-User/-Group headers)."""
    other = client.ApiClient(api.configuration)
    other.set_default_header("Impersonate-User", f"system:node:{node}")
    other.set_default_header("Impersonate-Group", "system:nodes")
    return other


def test_node_restriction_keys_on_the_nodes_user(lab: tuple[Any, ClusterHost], ns: str) -> None:
    api, _ = lab
    rbac: Any = client.RbacAuthorizationV1Api(api)
    name = f"nodes-admin-{ns}"
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:nodes"}],
        }
    )
    try:
        admin: Any = client.CoreV1Api(api)
        admin.create_namespaced_pod(ns, _pod("bound"))
        other: Any = client.CoreV1Api(_as_node(api, "elsewhere"))
        own: Any = client.CoreV1Api(_as_node(api, NODE))
        patch = {"status": {"phase": "Running"}}
        with pytest.raises(ApiException) as e:
            other.patch_namespaced_pod_status("bound", ns, patch)
        assert e.value.status == 403
        assert json.loads(str(e.value.body))["message"] == (
            'pods "bound" is forbidden: node "elsewhere" can only update pod status for pods with '
            "spec.nodeName set to itself"
        )
        with pytest.raises(ApiException) as e:
            other.delete_namespaced_pod("bound", ns)
        assert json.loads(str(e.value.body))["message"] == (
            'pods "bound" is forbidden: node "elsewhere" can only delete pods with spec.nodeName set to itself'
        )
        assert own.patch_namespaced_pod_status("bound", ns, patch).status.phase == "Running"
        own.delete_namespaced_pod("bound", ns, grace_period_seconds=0)
    finally:
        rbac.delete_cluster_role_binding(name)
