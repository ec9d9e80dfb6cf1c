"""A resource's deletion, scale selector and subresource storages come from its strategy (#16),
chosen by the registry entry, never by the kind's name: the namespace's controller-held
deletion, the pod's graceful deletion, the ReplicationController's map selector and the
subresources with a REST storage of their own (pods/exec, serviceaccounts/token, ...) belong
to those built-ins only, so a custom resource that calls its kind ``Namespace``, ``Pod`` or
``ReplicationController`` behaves as any custom resource. The behaviour through the API is
tested by the kubectl / client tests (tests/compat/kube, tests/runtime/kube/test_kubectl_basics.py,
tests/security/test_kube_binding_proxy.py, test_kube_eviction.py)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from runtime.kube.apiserver import admission
from runtime.kube.machinery.apierrors import ApiError
from runtime.kube.registry import BY_GR, RESOURCES, ResourceDef, strategies
from runtime.kube.registry.rest import Strategy


def custom_like(gr: str) -> ResourceDef:
    """A custom resource of another group whose kind and plural are the built-in's."""
    return replace(BY_GR[gr], group="example.com", custom=True)


def obj(spec: dict[str, Any] | None = None, finalizers: list[str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "x"}
    if finalizers is not None:
        meta["finalizers"] = finalizers
    return {"metadata": meta, "spec": spec or {}}


def test_a_namespace_is_held_for_the_namespace_controller_and_marked_terminating() -> None:
    ns = strategies.for_resource(BY_GR["namespaces"])
    assert ns.deletion_finalizers(obj()) == ["kubernetes"]
    marked = obj()
    ns.prepare_for_delete(marked)
    assert marked["status"] == {"phase": "Terminating"}


def test_other_resources_are_held_by_their_own_finalizers_only() -> None:
    for rdef in (BY_GR["configmaps"], custom_like("namespaces")):
        s = strategies.for_resource(rdef)
        assert s.deletion_finalizers(obj()) == []
        assert s.deletion_finalizers(obj(finalizers=["example.com/keep"])) == ["example.com/keep"]
        marked = obj()
        s.prepare_for_delete(marked)
        assert "status" not in marked


def test_only_the_namespace_resource_has_immortal_names() -> None:
    with pytest.raises(ApiError) as err:
        admission.admit_delete(BY_GR["namespaces"], "kube-system")
    assert err.value.status == 403
    assert err.value.message == 'namespaces "kube-system" is forbidden: this namespace may not be deleted'
    admission.admit_delete(BY_GR["namespaces"], "scratch")
    admission.admit_delete(custom_like("namespaces"), "default")
    admission.admit_delete(BY_GR["configmaps"], "default")


def test_a_bound_pod_is_deleted_gracefully_an_unscheduled_one_at_once() -> None:
    pods = strategies.for_resource(BY_GR["pods"])
    assert pods.check_graceful_delete(obj({"containers": []}), None) == 0
    assert pods.check_graceful_delete(obj({"nodeName": "n1"}), None) == 30
    assert pods.check_graceful_delete(obj({"nodeName": "n1", "terminationGracePeriodSeconds": 5}), None) == 5
    assert pods.check_graceful_delete(obj({"nodeName": "n1", "terminationGracePeriodSeconds": 5}), 0) == 0
    assert pods.check_graceful_delete(obj({"nodeName": "n1"}), 7) == 7


def test_nothing_but_a_pod_is_deleted_gracefully() -> None:
    for rdef in (custom_like("pods"), BY_GR["deployments.apps"], BY_GR["nodes"]):
        assert strategies.for_resource(rdef).check_graceful_delete(obj({"nodeName": "n1"}), 30) == 0


def test_the_replication_controller_scale_selector_is_its_label_map() -> None:
    rc = strategies.for_resource(BY_GR["replicationcontrollers"])
    assert rc.scale_selector(obj({"selector": {"app": "web", "tier": "fe"}})) == "app=web,tier=fe"


def test_other_scale_selectors_are_label_selectors() -> None:
    sel = {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "Exists"}]}
    for rdef in (BY_GR["deployments.apps"], custom_like("replicationcontrollers")):
        assert strategies.for_resource(rdef).scale_selector(obj({"selector": sel})) == "app=web,tier"


def test_subresource_storages_are_registered_on_their_resources() -> None:
    def table(gr: str) -> dict[str, set[str]]:
        s = strategies.for_resource(BY_GR[gr])
        return {
            "connect": set(s.connect_subresources),
            "get": set(s.get_subresources),
            "create": set(s.create_subresources),
        }

    assert table("pods") == {
        "connect": set(),
        "get": {"log"},
        "create": {"exec", "attach", "portforward", "eviction", "binding"},
    }
    assert table("serviceaccounts") == {"connect": set(), "get": set(), "create": {"token"}}
    assert table("services") == {"connect": {"proxy"}, "get": set(), "create": set()}
    assert table("nodes") == {"connect": {"proxy"}, "get": set(), "create": set()}


def test_every_registered_subresource_is_routed() -> None:
    """A storage for a subresource the registry entry does not list would never be reached."""
    for rdef in RESOURCES:
        s = strategies.for_resource(rdef)
        tables = (s.connect_subresources, s.get_subresources, s.create_subresources)
        assert {k for t in tables for k in t} <= set(rdef.subresources), rdef.gr


def test_a_custom_resource_named_like_a_built_in_has_no_subresource_storages() -> None:
    for gr in ("pods", "serviceaccounts", "services", "nodes"):
        s = strategies.for_resource(custom_like(gr))
        assert not s.connect_subresources and not s.get_subresources and not s.create_subresources


def test_only_the_legacy_bindings_resource_creates_through_a_storage_of_its_own() -> None:
    virtual = [r for r in RESOURCES if r.virtual]
    own = [r.gr for r in virtual if type(strategies.for_resource(r)).create_virtual is not Strategy.create_virtual]
    assert len(virtual) > 1  # the access reviews, which the server answers
    assert own == ["bindings"]
