"""Namespace and CRD finalization through the API, seen by the official Python client (#16).

What the API reference and the apiserver's storage promise: deleting a Namespace marks it
(``Terminating``); the namespace controller deletes its content, then takes ``kubernetes`` out of
``spec.finalizers`` through the ``finalize`` subresource, and the Namespace goes (a watch sees
DELETED) once no finalizer is left, so another component's ``spec.finalizers`` entry holds it
until that component finalizes it too. Deleting a CustomResourceDefinition sets its
``Terminating`` condition while its finalizer deletes the custom resources through their API
(each one's own finalizers are honoured, the CRD waits for them); while it terminates its
resources are still served for get, update and delete, creating one is refused with 405
"create not allowed while custom resource definition is terminating", and discovery lists only
delete, deletecollection, get, list and watch.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException


def _watch_deleted(list_fn: Any, name: str, rv: str, act: Any, **kw: Any) -> dict[str, Any]:
    """Run ``act`` while watching from ``rv``; the first event of the object ``name``."""
    w = watch.Watch()
    stream = w.stream(list_fn, field_selector=f"metadata.name={name}", resource_version=rv, timeout_seconds=10, **kw)
    act()
    try:
        for ev in stream:
            if ev["type"] == "DELETED":
                return dict(ev)
    finally:
        w.stop()
    raise AssertionError(f"no DELETED event for {name}")


def test_a_deleted_namespace_is_finalized_through_the_api_and_goes_with_a_watch_event(api: Any) -> None:
    core: Any = client.CoreV1Api(api)
    name = f"f-{uuid.uuid4().hex[:8]}"
    created = core.create_namespace({"metadata": {"name": name}})
    assert created.spec.finalizers == ["kubernetes"]
    core.create_namespaced_config_map(name, {"metadata": {"name": "cm"}})
    rv = created.metadata.resource_version
    ev = _watch_deleted(core.list_namespace, name, rv, lambda: core.delete_namespace(name))
    assert ev["object"].metadata.uid == created.metadata.uid
    with pytest.raises(ApiException) as e:
        core.read_namespace(name)
    assert e.value.status == 404


def test_another_spec_finalizer_holds_the_namespace_until_it_is_finalized(api: Any) -> None:
    core: Any = client.CoreV1Api(api)
    name = f"f-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}, "spec": {"finalizers": ["example.com/hold"]}})
    core.create_namespaced_config_map(name, {"metadata": {"name": "cm"}})
    core.delete_namespace(name)
    held = core.read_namespace(name)  # content deleted, the controller's finalizer taken out
    assert held.status.phase == "Terminating" and held.metadata.deletion_timestamp is not None
    assert held.spec.finalizers == ["example.com/hold"]
    assert core.list_namespaced_config_map(name).items == []
    body = {"metadata": {"name": name}, "spec": {"finalizers": []}}
    ev = _watch_deleted(
        core.list_namespace, name, held.metadata.resource_version, lambda: core.replace_namespace_finalize(name, body)
    )
    assert ev["object"].metadata.name == name


def _crd(group: str) -> dict[str, Any]:
    schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return {
        "metadata": {"name": f"gadgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
            "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": schema}}],
        },
    }


def test_a_terminating_crd_deletes_its_resources_through_the_api_and_waits_for_their_finalizers(
    api: Any, ns: str
) -> None:
    ext: Any = client.ApiextensionsV1Api(api)
    co: Any = client.CustomObjectsApi(api)
    group = f"g{uuid.uuid4().hex[:6]}.example.com"
    crd_name = f"gadgets.{group}"
    ext.create_custom_resource_definition(_crd(group))

    def gadget(name: str, **meta: Any) -> dict[str, Any]:
        return {"apiVersion": f"{group}/v1", "kind": "Gadget", "metadata": {"name": name, **meta}}

    co.create_namespaced_custom_object(group, "v1", ns, "gadgets", gadget("plain"))
    co.create_namespaced_custom_object(group, "v1", ns, "gadgets", gadget("held", finalizers=["example.com/hold"]))
    ext.delete_custom_resource_definition(crd_name)

    crd = ext.read_custom_resource_definition(crd_name)  # its finalizer waits for "held"
    assert crd.metadata.deletion_timestamp is not None
    term = {c.type: c for c in crd.status.conditions}["Terminating"]
    assert term.status == "True" and term.reason == "InstanceDeletionInProgress"
    items = co.list_namespaced_custom_object(group, "v1", ns, "gadgets")["items"]
    assert [i["metadata"]["name"] for i in items] == ["held"]  # "plain" went through the delete path
    held = co.get_namespaced_custom_object(group, "v1", ns, "gadgets", "held")
    assert held["metadata"]["deletionTimestamp"]

    with pytest.raises(ApiException) as e:
        co.create_namespaced_custom_object(group, "v1", ns, "gadgets", gadget("late"))
    assert e.value.status == 405
    assert "create not allowed while custom resource definition is terminating" in str(e.value.body)
    res = {r.name: r for r in client.CustomObjectsApi(api).get_api_resources(group, "v1").resources}
    assert sorted(res["gadgets"].verbs) == ["delete", "deletecollection", "get", "list", "watch"]

    # whoever owns the finalizer lets go (an update, still served): the resource, then the CRD, go
    co.patch_namespaced_custom_object(group, "v1", ns, "gadgets", "held", {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as e:
        ext.read_custom_resource_definition(crd_name)
    assert e.value.status == 404
