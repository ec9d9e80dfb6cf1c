"""Resource quantities: a malformed one is refused where kube-apiserver refuses it (decoding
the body into resource.Quantity fails: 400 BadRequest, apimachinery's ErrFormatWrong), and
PersistentVolume binding compares exact values (resource.Quantity.Cmp), not floats.

Driven through the real kubectl against ``python -m runtime.kube serve`` (no root needed)."""

from __future__ import annotations

import json

from tests.runtime.kube.conftest import Kubectl

QUANTITY_MSG = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"


def _bad_request(kind: str) -> str:
    return f'{kind} in version "v1" cannot be handled as a {kind}: {QUANTITY_MSG}'


def _pvc(name: str, size: str, cls: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": size}},
            "storageClassName": cls,
        },
    }


def _pv(name: str, size: str, cls: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": cls,
            "hostPath": {"path": "/data"},
        },
    }


def _phase(kc: Kubectl, kind: str, name: str, ns: str | None = None) -> str:
    args = ["get", kind, name, "-o", "json"] + (["-n", ns] if ns else [])
    return str(json.loads(kc(*args))["status"]["phase"])


def test_a_claim_with_a_malformed_storage_request_is_refused_and_binds_nothing(alpha: Kubectl, ns: str) -> None:
    cls = f"q-{ns}"
    alpha("apply", "-f", "-", stdin=json.dumps(_pv(f"q-any-{ns}", "5Gi", cls)))
    try:
        err = alpha.fails("apply", "-n", ns, "-f", "-", stdin=json.dumps(_pvc("lots", "lots", cls)))
        assert "Error from server (BadRequest)" in err
        assert _bad_request("PersistentVolumeClaim") in err
        assert "NotFound" in alpha.fails("get", "pvc", "lots", "-n", ns)
        assert _phase(alpha, "pv", f"q-any-{ns}") == "Available"
        # an update to a bad value is refused too, and the stored claim keeps its request
        alpha("apply", "-n", ns, "-f", "-", stdin=json.dumps(_pvc("ok", "1Gi", f"none-{ns}")))
        patch = {"spec": {"resources": {"requests": {"storage": "1 Gi"}}}}
        err = alpha.fails("patch", "pvc", "ok", "-n", ns, "--type=merge", "-p", json.dumps(patch))
        assert _bad_request("PersistentVolumeClaim") in err
        got = json.loads(alpha("get", "pvc", "ok", "-n", ns, "-o", "json"))
        assert got["spec"]["resources"]["requests"] == {"storage": "1Gi"}
    finally:
        alpha.run("delete", "pv", f"q-any-{ns}", "--wait=false")


def test_malformed_quantities_are_refused_in_every_kind_that_holds_them(alpha: Kubectl, ns: str) -> None:
    cases = {
        "PersistentVolume": _pv(f"q-bad-{ns}", "5Gee", "x"),
        "Pod": {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": "abc"}}}]},
        },
        "Deployment": {  # a template's quantities are decoded with the Deployment
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "d"},
            "spec": {
                "selector": {"matchLabels": {"app": "d"}},
                "template": {
                    "metadata": {"labels": {"app": "d"}},
                    "spec": {
                        "containers": [{"name": "c", "image": "busybox", "resources": {"limits": {"memory": "1 G"}}}]
                    },
                },
            },
        },
        "ResourceQuota": {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": "rq"},
            "spec": {"hard": {"requests.memory": "1GB"}},
        },
        "LimitRange": {
            "apiVersion": "v1",
            "kind": "LimitRange",
            "metadata": {"name": "lr"},
            "spec": {"limits": [{"type": "Container", "max": {"cpu": "two"}}]},
        },
    }
    for kind, body in cases.items():
        err = alpha.fails("create", "-n", ns, "-f", "-", stdin=json.dumps(body))
        assert _bad_request(kind) in err, (kind, err)
    assert alpha("get", "pods,deployments,resourcequotas,limitranges", "-n", ns, "-o", "name") == ""
    assert "NotFound" in alpha.fails("get", "pv", f"q-bad-{ns}")


def test_node_status_with_a_malformed_allocatable_is_refused(alpha: Kubectl) -> None:
    node = json.loads(alpha("get", "nodes", "-o", "json"))["items"][0]
    name = node["metadata"]["name"]
    before = node["status"]["allocatable"]
    err = alpha.fails(
        "patch",
        "node",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status":{"allocatable":{"cpu":"plenty"}}}',
    )
    assert _bad_request("Node") in err
    assert json.loads(alpha("get", "node", name, "-o", "json"))["status"]["allocatable"] == before


def test_binding_compares_exact_quantities(alpha: Kubectl, ns: str) -> None:
    cls = f"exact-{ns}"
    pvs = {
        f"mi1000-{ns}": "1000Mi",  # 1048576000 bytes: less than 1Gi
        f"big-{ns}": "9223372036854775807",  # 2**63 - 1: as a float it equals 8Ei
        f"g05-{ns}": "0.5G",  # exactly 500M
    }
    for name, size in pvs.items():
        alpha("apply", "-f", "-", stdin=json.dumps(_pv(name, size, cls)))
    try:
        # 8Ei is one byte more than the largest volume: no volume fits
        alpha("apply", "-n", ns, "-f", "-", stdin=json.dumps(_pvc("huge", "8Ei", cls)))
        assert _phase(alpha, "pvc", "huge", ns) == "Pending"
        # 1Gi fits in neither 1000Mi nor 0.5G, only in the 2**63-1 volume
        alpha("apply", "-n", ns, "-f", "-", stdin=json.dumps(_pvc("gi", "1Gi", cls)))
        claim = json.loads(alpha("get", "pvc", "gi", "-n", ns, "-o", "json"))
        assert claim["status"]["phase"] == "Bound" and claim["spec"]["volumeName"] == f"big-{ns}"
        assert _phase(alpha, "pvc", "huge", ns) == "Pending"
        # 1000Mi fits a 1000Mi volume exactly
        alpha("apply", "-n", ns, "-f", "-", stdin=json.dumps(_pvc("half", "1000Mi", cls)))
        claim = json.loads(alpha("get", "pvc", "half", "-n", ns, "-o", "json"))
        assert claim["spec"]["volumeName"] == f"mi1000-{ns}"
        # 500M is exactly 0.5G, the one volume left
        alpha("apply", "-n", ns, "-f", "-", stdin=json.dumps(_pvc("m500", "500M", cls)))
        claim = json.loads(alpha("get", "pvc", "m500", "-n", ns, "-o", "json"))
        assert claim["status"]["phase"] == "Bound" and claim["spec"]["volumeName"] == f"g05-{ns}"
        assert _phase(alpha, "pvc", "huge", ns) == "Pending"
    finally:
        alpha.run("delete", "pvc", "--all", "-n", ns, "--wait=false")
        for name in pvs:
            alpha.run("delete", "pv", name, "--wait=false")
