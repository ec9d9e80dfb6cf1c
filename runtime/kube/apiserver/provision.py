"""Provisioning lab clusters: what ``new-cluster`` and runtimed's kube service write on disk.

``create_cluster`` makes a cluster's directory (its CA and serving certificate, its
cluster.json, its first objects: nodes, default RBAC, kube-system's DNS Service), ``kubeconfig``
and ``user_kubeconfig`` the kubeconfigs that reach it through server.py's listener
(``server: https://HOST:PORT/clusters/NAME``, ``tls-server-name: NAME.cluster.kubelab``),
``mint_user_token`` a token of one user of one cluster. Nothing here serves HTTP.
"""

from __future__ import annotations

import json
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from runtime.kernel.clock import now_ts
from runtime.kube import registry
from runtime.kube.apiserver import pki, rbac
from runtime.kube.apiserver.auth import write_token
from runtime.kube.apiserver.cluster import Cluster, ControllerFactory
from runtime.kube.machinery.apierrors import ApiError
from runtime.kube.machinery.limits import Limits
from runtime.kube.node import dns

SNI_SUFFIX = ".cluster.kubelab"
ADMIN_USER = "kubernetes-admin"
_NAME_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def valid_cluster_name(name: str) -> bool:
    return len(name) <= 63 and bool(_NAME_RE.fullmatch(name))


def clusters_dir(data: Path) -> Path:
    return data / "clusters"


class _KubeconfigDumper(yaml.SafeDumper):
    """Quotes every string Go's YAML would read as something else. kubectl parses a
    kubeconfig with go-yaml (YAML 1.1 and its own number rules): a cluster named after a
    sandbox id such as ``019738323812`` or ``1234e5678901`` is a number to it although
    PyYAML writes it plain, and kubectl then refuses the whole file ("cannot unmarshal
    number into ... NamedCluster.clusters.name of type string"; 1 student in 50 in a
    bench/classroom.py run)."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    ambiguous = re.fullmatch(r"[0-9eE+\-._:]*", value) is not None or value.lower() in _YAML11_WORDS
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"' if ambiguous else None)


_YAML11_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"}
_KubeconfigDumper.add_representer(str, _represent_str)


def kubeconfig(name: str, server: str, ca_pem: bytes, token: str, user: str = ADMIN_USER) -> str:
    import base64

    ctx = f"{user}@{name}"
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": name,
                "cluster": {
                    "server": f"{server.rstrip('/')}/clusters/{name}",
                    "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                    "tls-server-name": f"{name}{SNI_SUFFIX}",
                },
            }
        ],
        "users": [{"name": f"{user}@{name}", "user": {"token": token}}],
        "contexts": [{"name": ctx, "context": {"cluster": name, "user": f"{user}@{name}", "namespace": "default"}}],
        "current-context": ctx,
        "preferences": {},
    }
    return yaml.dump(doc, Dumper=_KubeconfigDumper, sort_keys=False)


MAX_NODES = 5  # a lab's ``nodes:`` (courses/content.py) and SandboxSpec.kube_nodes say 1..5


def node_names(cluster: str, count: int) -> list[str]:
    """The nodes of a cluster of ``count`` nodes, named as kind names them: the control plane,
    then ``-worker``, ``-worker2``, ..."""
    return [f"{cluster}-control-plane"] + [f"{cluster}-worker{i if i > 1 else ''}" for i in range(1, count)]


# what a healthy kubelet posts (kubelet's setNodeReadyCondition and the pressure conditions)
NODE_CONDITIONS = (
    ("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
    ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
)
DEFAULT_CAPACITY = {"cpu": "2", "ephemeral-storage": "20Gi", "memory": "4Gi"}  # no sandbox behind


def node_capacity(cpus: float, memory: int, disk: int, count: int) -> dict[str, str]:
    """A node's share of a sandbox's limits when ``count`` nodes split them: the sum over the
    nodes is what the sandbox has (its cgroup bounds them all together), so requests that the
    scheduler lets in fit the sandbox."""
    milli = max(1, int(cpus * 1000) // count)
    return {
        "cpu": str(milli // 1000) if milli % 1000 == 0 else f"{milli}m",
        "ephemeral-storage": f"{disk // count // 1024}Ki",
        "memory": f"{memory // count // 1024}Ki",
    }


def _node(name: str, index: int = 0, count: int = 1, capacity: dict[str, str] | None = None) -> dict[str, Any]:
    """Node ``index`` of a cluster of ``count`` (0: the control plane). Every node is a view of
    the one sandbox: ``capacity`` is its share of the sandbox's limits (``node_capacity``;
    without a sandbox, ``DEFAULT_CAPACITY``), its InternalIP its own (172.18.0.2, .3, ... as
    kind's); only a multi-node cluster taints its control plane NoSchedule, as kind does."""
    resources = {**(capacity or DEFAULT_CAPACITY), "pods": "110"}
    labels = {
        "beta.kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
    }
    spec: dict[str, Any] = {}
    if index == 0:
        labels["node-role.kubernetes.io/control-plane"] = ""
        # every pod of the sandbox is on the one engine network 10.244.0.0/24, so only one
        # node claims it (a second podCIDR would be a range no pod ever gets an address in)
        spec = {"podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24"]}
        if count > 1:
            spec["taints"] = [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": f"172.18.0.{2 + index}"},
                {"type": "Hostname", "address": name},
            ],
            "allocatable": dict(resources),
            "capacity": dict(resources),
            "conditions": [
                {
                    "type": kind,
                    "status": status,
                    "reason": reason,
                    "message": message,
                    "lastHeartbeatTime": now_ts(),
                    "lastTransitionTime": now_ts(),
                }
                for kind, status, reason, message in NODE_CONDITIONS
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "architecture": "amd64",
                "bootID": str(uuid.uuid4()),
                "containerRuntimeVersion": "containerd://2.1.0",
                "kernelVersion": "6.1.0-kubelab",
                "kubeProxyVersion": "",
                "kubeletVersion": "v1.37.1",
                "machineID": uuid.uuid4().hex,
                "operatingSystem": "linux",
                "osImage": "Debian GNU/Linux 12 (bookworm)",
                "systemUUID": str(uuid.uuid4()),
            },
        },
    }


def create_cluster(
    data: Path,
    name: str,
    server: str,
    limits: dict[str, Any] | None = None,
    nodes: int = 1,
    capacity: dict[str, str] | None = None,
    *,
    controllers: ControllerFactory,
) -> str:
    """Create cluster NAME under data and return an admin kubeconfig for it (its first objects
    reconciled by ``controllers``, the kube-controller-manager the caller hands in). ``limits``
    overrides the server's limits (machinery/limits.py) for this cluster alone, e.g.
    ``{"max_objects": 100}``; kept in its cluster.json. ``nodes`` (1..MAX_NODES): a control
    plane and ``nodes - 1`` workers (``node_names``), each with ``capacity`` (a node's share
    of the sandbox's limits, ``node_capacity``; default ``DEFAULT_CAPACITY``)."""
    try:
        Limits.from_dict(limits or {})
    except ValueError as e:
        raise ApiError(422, "Invalid", str(e)) from None
    if not valid_cluster_name(name):
        raise ApiError(422, "Invalid", f"invalid cluster name {name!r}: must be a lowercase RFC 1123 label")
    if isinstance(nodes, bool) or not isinstance(nodes, int) or not 1 <= nodes <= MAX_NODES:
        raise ApiError(422, "Invalid", f"invalid node count {nodes!r}: must be 1 to {MAX_NODES}")
    root = clusters_dir(data)
    root.mkdir(parents=True, exist_ok=True)
    final = root / name
    if final.exists():
        raise ApiError(409, "AlreadyExists", f'cluster "{name}" already exists')
    tmp = root / f".{name}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.mkdir(mode=0o700)
    try:
        ca_pem, ca_key = pki.make_ca(f"kubelab-ca-{name}")
        crt, key = pki.make_serving_cert(
            ca_pem,
            ca_key,
            [
                f"{name}{SNI_SUFFIX}",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
                "localhost",
            ],
            ["127.0.0.1", "10.96.0.1"],
        )
        (tmp / "ca.crt").write_bytes(ca_pem)
        (tmp / "ca.key").write_bytes(ca_key)
        (tmp / "tls.crt").write_bytes(crt)
        (tmp / "tls.key").write_bytes(key)
        for f in ("ca.key", "tls.key"):
            (tmp / f).chmod(0o600)
        meta: dict[str, Any] = {"name": name, "uid": str(uuid.uuid4()), "created": now_ts()}
        if limits:
            meta["limits"] = limits
        (tmp / "cluster.json").write_text(json.dumps(meta))
        (tmp / "tokens.json").write_text("{}")
        c = Cluster(name, tmp, controllers=controllers)
        token = c.add_token(ADMIN_USER, ["system:masters", "kubeadm:cluster-admins"])
        R = registry.BY_GR
        for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
            c.create(R["namespaces"], "", {"metadata": {"name": ns}}, internal=True)
        for gr, obj in rbac.default_objects():
            c.create(R[gr], "", obj, internal=True)
        for i, node_name in enumerate(node_names(name, nodes)):
            c.create(R["nodes"], "", _node(node_name, i, nodes, capacity), internal=True)
        sc = {
            "metadata": {
                "name": "standard",
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
            },
            "provisioner": "kubelab.io/hostpath",
            "reclaimPolicy": "Delete",
            "volumeBindingMode": "Immediate",
        }
        c.create(R["storageclasses.storage.k8s.io"], "", sc, internal=True)
        for pc_name, value in (("system-cluster-critical", 2000000000), ("system-node-critical", 2000001000)):
            pc = {
                "metadata": {"name": pc_name},
                "value": value,
                "description": "Used for system critical pods that must run in the cluster, "
                "but can be moved to another node if necessary."
                if pc_name == "system-cluster-critical"
                else "Used for system critical pods that must not be moved from their current node.",
            }
            c.create(R["priorityclasses.scheduling.k8s.io"], "", pc, internal=True)
        svc = {
            "metadata": {
                "name": "kubernetes",
                "namespace": "default",
                "labels": {"component": "apiserver", "provider": "kubernetes"},
            },
            "spec": {
                "clusterIP": "10.96.0.1",
                "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}],
                "type": "ClusterIP",
            },
        }
        c.create(R["services"], "default", svc, internal=True)
        c.create(R["services"], "kube-system", dns.kube_dns_service(), internal=True)
        ep = {
            "metadata": {
                "name": "kubernetes",
                "namespace": "default",
                "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"},
            },
            "subsets": [
                {
                    "addresses": [{"ip": "172.18.0.2"}],
                    "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}],
                }
            ],
        }
        c.create(R["endpoints"], "default", ep, internal=True)
        # kube-apiserver keeps this slice itself (no managed-by label: not the controller's)
        eps = {
            "metadata": {
                "name": "kubernetes",
                "namespace": "default",
                "labels": {"kubernetes.io/service-name": "kubernetes"},
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["172.18.0.2"], "conditions": {"ready": True}}],
            "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}],
        }
        c.create(R["endpointslices.discovery.k8s.io"], "default", eps, internal=True)
        c.controllers.reconcile()
        c.store.close()
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return kubeconfig(name, server, ca_pem, token)


def mint_user_token(data: Path, name: str, user: str, groups: list[str], ttl_seconds: int | None = None) -> str:
    """Mint a bearer token of cluster NAME for USER in GROUPS (plus system:authenticated,
    which every authenticated request gets), valid for ``ttl_seconds`` or until the cluster
    is deleted. The platform's per-user tokens: RBAC decides what the user may do."""
    d = clusters_dir(data) / name
    if not valid_cluster_name(name) or not (d / "cluster.json").exists():
        raise ApiError(404, "NotFound", f'cluster "{name}" not found')
    if not user or user != user.strip():
        raise ApiError(422, "Invalid", f"invalid user name {user!r}: must be non-empty, without surrounding spaces")
    if user.startswith("system:serviceaccount:"):
        raise ApiError(
            422, "Invalid", f"{user} is a ServiceAccount: use `kubectl create token` for ServiceAccount tokens"
        )
    bad = [g for g in groups if not g or g != g.strip()]
    if bad:
        raise ApiError(422, "Invalid", f"invalid group name {bad[0]!r}: must be non-empty, without surrounding spaces")
    if ttl_seconds is not None and ttl_seconds <= 0:
        raise ApiError(422, "Invalid", f"invalid ttl {ttl_seconds}: must be a positive number of seconds")
    entry: dict[str, Any] = {"user": user, "groups": [g for g in dict.fromkeys(groups) if g != "system:authenticated"]}
    if ttl_seconds is not None:
        entry["exp"] = time.time() + ttl_seconds
    return write_token(d, entry)


def user_kubeconfig(data: Path, name: str, server: str, user: str, token: str) -> str:
    """A kubeconfig of cluster NAME at SERVER for a token minted by ``mint_user_token``."""
    return kubeconfig(name, server, (clusters_dir(data) / name / "ca.crt").read_bytes(), token, user=user)
