"""EndpointSlices (discovery.k8s.io/v1): served, printed, and kept per Service by the controller."""

from __future__ import annotations

import json

from tests.runtime.kube.conftest import Kubectl


def _rows(out: str) -> list[list[str]]:
    return [line.split() for line in out.strip().splitlines() if line.strip()]


def _ready_pod_status(alpha: Kubectl, ns: str, pod: str, ip: str) -> None:
    """Part 1 has no kubelet: give a pod the IP and Ready condition a kubelet would report."""
    status = {
        "status": {
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "conditions": [{"type": "Ready", "status": "True"}],
        }
    }
    alpha("patch", "pod", pod, "-n", ns, "--subresource=status", "--type=merge", "-p", json.dumps(status))


def test_endpointslice_is_discoverable_and_explained(alpha: Kubectl) -> None:
    res = _rows(alpha("api-resources", "--api-group=discovery.k8s.io"))
    assert res[0] == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    assert res[1] == ["endpointslices", "discovery.k8s.io/v1", "true", "EndpointSlice"]
    out = alpha("explain", "endpointslice.ports")
    assert "FIELD: ports <[]EndpointPort>" in out
    # the API server's own slice for the kubernetes service, as on a real cluster
    rows = _rows(alpha("get", "endpointslices", "-n", "default"))
    assert rows[0] == ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]
    assert rows[1][:4] == ["kubernetes", "IPv4", "6443", "172.18.0.2"]


def test_service_gets_a_placeholder_slice_without_pod_ips(alpha: Kubectl, ns: str) -> None:
    alpha("create", "deployment", "web", "--image=nginx", "--replicas=2", "-n", ns)
    alpha("expose", "deployment", "web", "--port=80", "--target-port=8080", "-n", ns)
    rows = _rows(alpha("get", "endpointslices", "-n", ns))
    assert rows[0] == ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]
    assert len(rows) == 2 and rows[1][0].startswith("web-") and len(rows[1][0]) == len("web-") + 5
    assert rows[1][1:4] == ["IPv4", "<unset>", "<unset>"]
    sl = json.loads(alpha("get", "endpointslice", rows[1][0], "-n", ns, "-o", "json"))
    svc = json.loads(alpha("get", "svc", "web", "-n", ns, "-o", "json"))
    assert sl["metadata"]["labels"] == {
        "app": "web",
        "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
        "kubernetes.io/service-name": "web",
    }
    assert sl["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "name": "web",
            "uid": svc["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert sl["endpoints"] is None and sl["ports"] is None
    # selecting by the service-name label is how clients find a service's slices
    named = alpha("get", "endpointslices", "-n", ns, "-l", "kubernetes.io/service-name=web", "-o", "name")
    assert named == f"endpointslice.discovery.k8s.io/{rows[1][0]}\n"


def test_slice_follows_pod_ips_and_readiness(alpha: Kubectl, ns: str) -> None:
    alpha("run", "a", "--image=nginx", "--labels=app=db", "-n", ns)
    alpha("run", "b", "--image=nginx", "--labels=app=db", "-n", ns)
    alpha("create", "service", "clusterip", "db", "--tcp=5432:5432", "-n", ns)
    _ready_pod_status(alpha, ns, "a", "10.244.0.7")
    alpha(
        "patch", "pod", "b", "-n", ns, "--subresource=status", "--type=merge",
        "-p", '{"status":{"podIP":"10.244.0.8","podIPs":[{"ip":"10.244.0.8"}]}}',
    )  # fmt: skip
    rows = _rows(alpha("get", "endpointslices", "-n", ns, "-l", "kubernetes.io/service-name=db"))
    assert rows[1][1:4] == ["IPv4", "5432", "10.244.0.7,10.244.0.8"]
    sl = json.loads(alpha("get", "endpointslices", "-n", ns, "-o", "json"))["items"][0]
    assert sl["ports"] == [{"name": "5432-5432", "port": 5432, "protocol": "TCP"}]
    by_pod = {e["targetRef"]["name"]: e for e in sl["endpoints"]}
    assert by_pod["a"]["conditions"] == {"ready": True, "serving": True, "terminating": False}
    assert by_pod["b"]["conditions"] == {"ready": False, "serving": False, "terminating": False}
    assert by_pod["a"]["addresses"] == ["10.244.0.7"] and by_pod["a"]["targetRef"]["kind"] == "Pod"
    desc = alpha("describe", "endpointslice", sl["metadata"]["name"], "-n", ns)
    lines = [line.rstrip() for line in desc.splitlines()]
    assert "AddressType:  IPv4" in lines
    assert "  Name       Port  Protocol" in lines and "  5432-5432  5432  TCP" in lines
    assert "  - Addresses:  10.244.0.7" in lines and "      Ready:    true" in lines
    assert "    TargetRef:  Pod/a" in lines
    # a deleted pod leaves the slice; deleting the service deletes the slice
    alpha("delete", "pod", "b", "-n", ns, "--wait=false")
    rows = _rows(alpha("get", "endpointslices", "-n", ns, "--no-headers"))
    assert rows[0][3] == "10.244.0.7"
    alpha("delete", "svc", "db", "-n", ns)
    assert alpha("get", "endpointslices", "-n", ns, "-o", "name") == ""


def test_named_target_port_resolves_against_the_pod(alpha: Kubectl, ns: str) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "labels": {"app": "api"}},
        "spec": {"containers": [{"name": "c", "image": "nginx", "ports": [{"name": "http", "containerPort": 8080}]}]},
    }
    alpha("apply", "-n", ns, "-f", "-", stdin=json.dumps(pod))
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "api"},
        "spec": {"selector": {"app": "api"}, "ports": [{"name": "web", "port": 80, "targetPort": "http"}]},
    }
    alpha("apply", "-n", ns, "-f", "-", stdin=json.dumps(svc))
    _ready_pod_status(alpha, ns, "p", "10.244.1.2")
    rows = _rows(alpha("get", "endpointslices", "-n", ns, "--no-headers"))
    assert rows[0][1:4] == ["IPv4", "8080", "10.244.1.2"]
