"""PersistentVolumes and claims (binding, dynamic provisioning, protection), Ingress, NetworkPolicy."""

from __future__ import annotations

import json

import yaml

from tests.runtime.kube.conftest import Kubectl


def _rows(out: str) -> list[list[str]]:
    return [line.split() for line in out.strip().splitlines() if line.strip()]


def _pvc(name: str, size: str, cls: str | None = None) -> dict[str, object]:
    spec: dict[str, object] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}
    if cls is not None:
        spec["storageClassName"] = cls
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name}, "spec": spec}


def test_default_storage_class_provisions_and_binds(alpha: Kubectl, ns: str) -> None:
    sc = _rows(alpha("get", "storageclass"))
    assert sc[0] == ["NAME", "PROVISIONER", "RECLAIMPOLICY", "VOLUMEBINDINGMODE", "ALLOWVOLUMEEXPANSION", "AGE"]
    assert sc[1][:2] == ["standard", "(default)"]
    alpha("apply", "-n", ns, "-f", "-", stdin=json.dumps(_pvc("data", "1Gi")))
    rows = _rows(alpha("get", "pvc", "data", "-n", ns))
    assert rows[0] == [
        "NAME",
        "STATUS",
        "VOLUME",
        "CAPACITY",
        "ACCESS",
        "MODES",
        "STORAGECLASS",
        "VOLUMEATTRIBUTESCLASS",
        "AGE",
    ]
    assert rows[1][1] == "Bound" and rows[1][2].startswith("pvc-") and rows[1][3:6] == ["1Gi", "RWO", "standard"]
    pv_name = rows[1][2]
    pv = _rows(alpha("get", "pv", pv_name))[1]
    assert pv[1:6] == ["1Gi", "RWO", "Delete", "Bound", f"{ns}/data"]
    # reclaimPolicy Delete: deleting the claim deletes the volume
    alpha("delete", "pvc", "data", "-n", ns)
    assert alpha.fails("get", "pv", pv_name).strip() == (
        f'Error from server (NotFound): persistentvolumes "{pv_name}" not found'
    )


def test_static_volume_binds_by_class_and_is_released(alpha: Kubectl, ns: str) -> None:
    pv = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": f"manual-{ns}"},
        "spec": {
            "capacity": {"storage": "5Gi"},
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": f"manual-{ns}",
            "hostPath": {"path": "/data"},
        },
    }
    alpha("apply", "-f", "-", stdin=json.dumps(pv))
    assert _rows(alpha("get", "pv", f"manual-{ns}"))[1][4] == "Available"
    alpha("apply", "-n", ns, "-f", "-", stdin=json.dumps(_pvc("small", "2Gi", f"manual-{ns}")))
    claim = json.loads(alpha("get", "pvc", "small", "-n", ns, "-o", "json"))
    assert claim["spec"]["volumeName"] == f"manual-{ns}" and claim["status"]["capacity"] == {"storage": "5Gi"}
    alpha("delete", "pvc", "small", "-n", ns)
    assert _rows(alpha("get", "pv", f"manual-{ns}"))[1][4] == "Released"
    alpha("delete", "pv", f"manual-{ns}")


def test_claim_in_use_stays_terminating(alpha: Kubectl, ns: str) -> None:
    alpha("apply", "-n", ns, "-f", "-", stdin=json.dumps(_pvc("used", "1Gi")))
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "user"},
        "spec": {
            "containers": [{"name": "c", "image": "busybox", "volumeMounts": [{"name": "d", "mountPath": "/d"}]}],
            "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "used"}}],
        },
    }
    alpha("apply", "-n", ns, "-f", "-", stdin=json.dumps(pod))
    alpha("delete", "pvc", "used", "-n", ns, "--wait=false")
    assert _rows(alpha("get", "pvc", "used", "-n", ns))[1][1] == "Terminating"
    alpha("delete", "pod", "user", "-n", ns)
    assert alpha("get", "pvc", "-n", ns, "-o", "name") == ""


def test_ingress_and_network_policy(alpha: Kubectl, ns: str) -> None:
    out = alpha("create", "ingress", "web", "-n", ns, "--class=nginx", "--rule=shop.example.com/*=web:80,tls=cert")
    assert out == "ingress.networking.k8s.io/web created\n"
    rows = _rows(alpha("get", "ingress", "-n", ns))
    assert rows[0] == ["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"]
    assert rows[1][:3] == ["web", "nginx", "shop.example.com"] and rows[1][3:5] == ["80,", "443"]
    ing = json.loads(alpha("get", "ingress", "web", "-n", ns, "-o", "json"))
    path = ing["spec"]["rules"][0]["http"]["paths"][0]
    assert path == {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}}
    netpol = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "db-only-from-api"},
        "spec": {
            "podSelector": {"matchLabels": {"app": "db"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "api"}}}], "ports": [{"port": 5432}]}],
        },
    }
    alpha("apply", "-n", ns, "-f", "-", stdin=yaml.safe_dump(netpol))
    # ingress rules are an atomic list: a defaulted protocol inside it makes every re-apply
    # "configured", exactly as on a real cluster; spelling the default out makes it "unchanged"
    assert "configured" in alpha("apply", "-n", ns, "-f", "-", stdin=yaml.safe_dump(netpol))
    netpol["spec"]["ingress"][0]["ports"][0]["protocol"] = "TCP"  # type: ignore[index]
    alpha("apply", "-n", ns, "-f", "-", stdin=yaml.safe_dump(netpol))
    assert alpha("apply", "-n", ns, "-f", "-", stdin=yaml.safe_dump(netpol)) == (
        "networkpolicy.networking.k8s.io/db-only-from-api unchanged\n"
    )
    rows = _rows(alpha("get", "netpol", "-n", ns))
    assert rows[0] == ["NAME", "POD-SELECTOR", "AGE"] and rows[1][:2] == ["db-only-from-api", "app=db"]
    np = json.loads(alpha("get", "netpol", "db-only-from-api", "-n", ns, "-o", "json"))
    assert np["spec"]["policyTypes"] == ["Ingress"]
    assert np["spec"]["ingress"][0]["ports"] == [{"port": 5432, "protocol": "TCP"}]
