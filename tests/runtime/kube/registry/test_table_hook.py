"""The ``kubectl get`` Table of each resource comes from its strategy's printer (#16): the
columns are upstream's (pkg/printers/internalversion/printers.go), chosen by the resource's
registry entry, never by its kind's name, so a custom resource that happens to be called
``Pod`` prints its CRD's columns and a built-in without columns of its own prints the default."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from runtime.kube.registry import BY_GR, RESOURCES, printers, strategies
from runtime.kube.registry.rest import Printed

OBJ: dict[str, Any] = {
    "metadata": {"name": "x", "namespace": "n", "creationTimestamp": "2026-01-01T00:00:00Z"},
    "spec": {},
    "status": {},
}


def names(gr: str, wide: bool = False) -> list[str]:
    rdef = BY_GR[gr]
    t = strategies.for_resource(rdef).convert_to_table(rdef, [OBJ], "None", {})
    return [c["name"] for c in t["columnDefinitions"] if wide or c["priority"] == 0]


@pytest.mark.parametrize(
    ("gr", "cols"),
    [
        ("pods", ["Name", "Ready", "Status", "Restarts", "Age"]),
        ("deployments.apps", ["Name", "Ready", "Up-to-date", "Available", "Age"]),
        ("services", ["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age"]),
        ("nodes", ["Name", "Status", "Roles", "Age", "Version"]),
        ("leases.coordination.k8s.io", ["Name", "Holder", "Age"]),
        ("endpointslices.discovery.k8s.io", ["Name", "AddressType", "Ports", "Endpoints", "Age"]),
        ("roles.rbac.authorization.k8s.io", ["Name", "Created At"]),
        ("clusterroles.rbac.authorization.k8s.io", ["Name", "Created At"]),
        ("rolebindings.rbac.authorization.k8s.io", ["Name", "Role", "Age"]),
        ("clusterrolebindings.rbac.authorization.k8s.io", ["Name", "Role", "Age"]),
    ],
)
def test_built_in_resources_print_upstream_columns(gr: str, cols: list[str]) -> None:
    assert names(gr) == cols


def test_wide_columns_come_with_the_printer() -> None:
    assert names("pods", wide=True)[5:] == ["IP", "Node", "Nominated Node", "Readiness Gates"]


def test_a_resource_without_columns_of_its_own_prints_the_default() -> None:
    assert names("limitranges") == ["Name", "Created At"]


def test_a_custom_resource_named_like_a_built_in_prints_its_crd_columns() -> None:
    col = {"name": "Phase", "type": "string", "jsonPath": ".status.phase"}
    pod_like = replace(BY_GR["pods"], group="example.com", custom=True, printer_columns=(col,))
    obj = {**OBJ, "status": {"phase": "Brewing"}}
    t = strategies.for_resource(pod_like).convert_to_table(pod_like, [obj], "Object", {})
    assert [c["name"] for c in t["columnDefinitions"]] == ["Name", "Phase"]
    assert t["rows"] == [{"cells": ["x", "Brewing"], "object": obj}]


def test_a_custom_resource_without_printer_columns_prints_its_age() -> None:
    plain = replace(BY_GR["configmaps"], group="example.com", custom=True)
    t = strategies.for_resource(plain).convert_to_table(plain, [OBJ], "Metadata", {})
    assert [c["name"] for c in t["columnDefinitions"]] == ["Name", "Age"]
    assert t["rows"][0]["object"] == {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": OBJ["metadata"],
    }


def test_every_built_in_printer_is_reached_through_a_strategy() -> None:
    """No printer in printers.py is left unreachable (it was a dict keyed by kind before #16)."""
    defined = {k: v for k, v in vars(printers).items() if isinstance(v, printers.Printer) and k.isupper()}
    reached = {id(strategies.for_resource(r).printer) for r in RESOURCES if not r.custom}
    assert [k for k, v in defined.items() if id(v) not in reached] == []
    assert not hasattr(printers, "PRINTERS")


def test_printer_only_entries_list_nothing_but_a_printer() -> None:
    for gr, s in strategies.STRATEGIES.items():
        if isinstance(s, Printed):
            assert s.printer is not printers.DEFAULT, gr
