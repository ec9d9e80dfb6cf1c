"""Two status/generation rules of upstream's registry strategies, through the Python client (#16).

- Deployments (pkg/registry/apps/deployment/strategy.go, deploymentStatusStrategy): an update
  of the ``status`` subresource keeps the stored spec and labels but lets annotations through,
  so the deployment controller writes ``deployment.kubernetes.io/revision`` and the status in
  one UpdateStatus: the first write after a create is one event carrying both.
- EndpointSlices (pkg/registry/discovery/endpointslice/strategy.go, PrepareForUpdate):
  ``metadata.generation`` goes up when anything but the metadata changes or when the labels
  change; an annotation alone leaves it.
"""

from __future__ import annotations

import uuid
from typing import Any

from kubernetes import client, watch

REVISION = "deployment.kubernetes.io/revision"


def _deployment(name: str) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}},
        },
    }


def test_the_revision_annotation_and_the_status_are_one_write(api: Any, ns: str) -> None:
    apps: Any = client.AppsV1Api(api)
    w = watch.Watch()
    created = apps.create_namespaced_deployment(ns, _deployment("web"))
    stream = w.stream(
        apps.list_namespaced_deployment,
        ns,
        field_selector="metadata.name=web",
        resource_version=created.metadata.resource_version,
        timeout_seconds=5,
    )
    first = None
    for ev in stream:
        if ev["type"] == "MODIFIED":
            first = ev["object"]
            break
    w.stop()
    assert first is not None
    assert (first.metadata.annotations or {}).get(REVISION) == "1"
    conds = {c.type: c.reason for c in first.status.conditions or []}
    assert conds.get("Progressing") == "NewReplicaSetCreated"  # the status came in the same write
    status_entry = [m for m in first.metadata.managed_fields if m.subresource == "status"]
    assert [m.manager for m in status_entry] == ["kube-controller-manager"]
    assert "f:annotations" in status_entry[0].fields_v1["f:metadata"]


def test_a_status_update_of_a_deployment_keeps_spec_and_labels_and_takes_annotations(api: Any, ns: str) -> None:
    apps: Any = client.AppsV1Api(api)
    apps.create_namespaced_deployment(ns, _deployment("api"))
    cur = apps.read_namespaced_deployment("api", ns)
    body = {
        "metadata": {"labels": {"app": "api", "extra": "no"}, "annotations": {"note": "yes"}},
        "spec": {"replicas": 5},
    }
    out = apps.patch_namespaced_deployment_status("api", ns, body)
    assert out.metadata.annotations["note"] == "yes"
    assert out.metadata.annotations[REVISION] == cur.metadata.annotations[REVISION]
    assert out.metadata.labels == {"app": "api"}
    assert out.spec.replicas == 1 and out.metadata.generation == cur.metadata.generation


def test_an_endpointslice_label_change_bumps_its_generation(api: Any, ns: str) -> None:
    disc: Any = client.DiscoveryV1Api(api)
    name = f"s-{uuid.uuid4().hex[:6]}"
    created = disc.create_namespaced_endpoint_slice(
        ns,
        {
            "metadata": {"name": name, "labels": {"tier": "a"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.0.0.1"]}],
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
        },
    )
    assert created.metadata.generation == 1
    relabelled = disc.patch_namespaced_endpoint_slice(name, ns, {"metadata": {"labels": {"tier": "b"}}})
    assert relabelled.metadata.generation == 2
    annotated = disc.patch_namespaced_endpoint_slice(name, ns, {"metadata": {"annotations": {"n": "1"}}})
    assert annotated.metadata.generation == 2
    moved = disc.patch_namespaced_endpoint_slice(name, ns, {"endpoints": [{"addresses": ["10.0.0.2"]}]})
    assert moved.metadata.generation == 3
    both = disc.patch_namespaced_endpoint_slice(
        name, ns, {"metadata": {"labels": {"tier": "c"}}, "endpoints": [{"addresses": ["10.0.0.3"]}]}
    )
    assert both.metadata.generation == 4  # one bump per update, whatever changed
