"""Every served kind through the typed ``kubernetes`` Python client: create, get, list, watch.

The typed client deserialises each response into the model generated from the official
OpenAPI, and its models refuse a missing required field (``client_side_validation``):
a DaemonSet answered with ``status: {}`` fails here with ``ValueError: Invalid value for
`current_number_scheduled`, must not be `None```, as it would against any server that
left out what kube-apiserver's Go encoding always writes. The bodies below are minimal
valid objects written from the API reference; the list of kinds is checked against what
the server's discovery says it serves, so a kind added later without a row here fails.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

CLIENT = "kubernetes-python"

Body = Callable[[str, str], dict[str, Any]]


def _tmpl(app: str) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": app}},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36", "command": ["sleep", "3600"]}]},
    }


def _workload(extra: dict[str, Any] | None = None) -> Body:
    def body(name: str, ns: str) -> dict[str, Any]:
        spec = {"selector": {"matchLabels": {"app": name}}, "template": _tmpl(name), **(extra or {})}
        return {"metadata": {"name": name}, "spec": spec}

    return body


@dataclass(frozen=True)
class Kind:
    api: str  # client class, e.g. AppsV1Api
    snake: str  # method suffix, e.g. daemon_set
    group_version: str
    kind: str
    namespaced: bool
    body: Body


K = Kind
KINDS = [
    K("CoreV1Api", "namespace", "v1", "Namespace", False, lambda n, ns: {"metadata": {"name": n}}),
    K("CoreV1Api", "config_map", "v1", "ConfigMap", True, lambda n, ns: {"metadata": {"name": n}, "data": {"a": "1"}}),
    K("CoreV1Api", "secret", "v1", "Secret", True, lambda n, ns: {"metadata": {"name": n}, "stringData": {"a": "1"}}),
    K("CoreV1Api", "service_account", "v1", "ServiceAccount", True, lambda n, ns: {"metadata": {"name": n}}),
    K(
        "CoreV1Api",
        "pod",
        "v1",
        "Pod",
        True,
        lambda n, ns: {"metadata": {"name": n}, "spec": _tmpl(n)["spec"]},
    ),
    K(
        "CoreV1Api",
        "service",
        "v1",
        "Service",
        True,
        lambda n, ns: {"metadata": {"name": n}, "spec": {"selector": {"app": n}, "ports": [{"port": 80}]}},
    ),
    K(
        "CoreV1Api",
        "endpoints",
        "v1",
        "Endpoints",
        True,
        lambda n, ns: {
            "metadata": {"name": n},
            "subsets": [{"addresses": [{"ip": "10.244.0.77"}], "ports": [{"port": 80}]}],
        },
    ),
    K(
        "CoreV1Api",
        "node",
        "v1",
        "Node",
        False,
        # tainted so that nothing is ever scheduled to it
        lambda n, ns: {"metadata": {"name": n}, "spec": {"taints": [{"key": "compat", "effect": "NoSchedule"}]}},
    ),
    K(
        "CoreV1Api",
        "event",
        "v1",
        "Event",
        True,
        lambda n, ns: {
            "metadata": {"name": n},
            "involvedObject": {"kind": "Pod", "name": "x", "namespace": ns},
            "reason": "Compat",
            "message": "hello",
            "type": "Normal",
        },
    ),
    K(
        "CoreV1Api",
        "limit_range",
        "v1",
        "LimitRange",
        True,
        lambda n, ns: {"metadata": {"name": n}, "spec": {"limits": [{"type": "Container", "max": {"cpu": "4"}}]}},
    ),
    K(
        "CoreV1Api",
        "persistent_volume",
        "v1",
        "PersistentVolume",
        False,
        lambda n, ns: {
            "metadata": {"name": n},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "manual",
                "local": {"path": "/mnt/compat"},
                "nodeAffinity": {
                    "required": {
                        "nodeSelectorTerms": [
                            {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["x"]}]}
                        ]
                    }
                },
            },
        },
    ),
    K(
        "CoreV1Api",
        "persistent_volume_claim",
        "v1",
        "PersistentVolumeClaim",
        True,
        lambda n, ns: {
            "metadata": {"name": n},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        },
    ),
    K(
        "CoreV1Api",
        "resource_quota",
        "v1",
        "ResourceQuota",
        True,
        lambda n, ns: {"metadata": {"name": n}, "spec": {"hard": {"pods": "50"}}},
    ),
    K(
        "CoreV1Api",
        "replication_controller",
        "v1",
        "ReplicationController",
        True,
        lambda n, ns: {"metadata": {"name": n}, "spec": {"replicas": 1, "selector": {"app": n}, "template": _tmpl(n)}},
    ),
    K("AppsV1Api", "deployment", "apps/v1", "Deployment", True, _workload({"replicas": 1})),
    K("AppsV1Api", "replica_set", "apps/v1", "ReplicaSet", True, _workload({"replicas": 1})),
    K("AppsV1Api", "stateful_set", "apps/v1", "StatefulSet", True, _workload({"replicas": 1, "serviceName": "x"})),
    K("AppsV1Api", "daemon_set", "apps/v1", "DaemonSet", True, _workload()),
    K(
        "AppsV1Api",
        "controller_revision",
        "apps/v1",
        "ControllerRevision",
        True,
        lambda n, ns: {"metadata": {"name": n}, "data": {"spec": {}}, "revision": 1},
    ),
    K(
        "BatchV1Api",
        "job",
        "batch/v1",
        "Job",
        True,
        lambda n, ns: {
            "metadata": {"name": n},
            "spec": {"template": {"spec": {**_tmpl(n)["spec"], "restartPolicy": "Never"}}},
        },
    ),
    K(
        "BatchV1Api",
        "cron_job",
        "batch/v1",
        "CronJob",
        True,
        lambda n, ns: {
            "metadata": {"name": n},
            "spec": {
                "schedule": "0 0 1 1 *",
                "jobTemplate": {"spec": {"template": {"spec": {**_tmpl(n)["spec"], "restartPolicy": "Never"}}}},
            },
        },
    ),
    K(
        "AutoscalingV2Api",
        "horizontal_pod_autoscaler",
        "autoscaling/v2",
        "HorizontalPodAutoscaler",
        True,
        lambda n, ns: {
            "metadata": {"name": n},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": n},
                "minReplicas": 1,
                "maxReplicas": 3,
            },
        },
    ),
    K(
        "PolicyV1Api",
        "pod_disruption_budget",
        "policy/v1",
        "PodDisruptionBudget",
        True,
        lambda n, ns: {"metadata": {"name": n}, "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": n}}}},
    ),
    K(
        "SchedulingV1Api",
        "priority_class",
        "scheduling.k8s.io/v1",
        "PriorityClass",
        False,
        lambda n, ns: {"metadata": {"name": n}, "value": 1000},
    ),
    K(
        "StorageV1Api",
        "storage_class",
        "storage.k8s.io/v1",
        "StorageClass",
        False,
        lambda n, ns: {"metadata": {"name": n}, "provisioner": "example.com/none"},
    ),
    K(
        "NetworkingV1Api",
        "ingress",
        "networking.k8s.io/v1",
        "Ingress",
        True,
        lambda n, ns: {
            "metadata": {"name": n},
            "spec": {"defaultBackend": {"service": {"name": n, "port": {"number": 80}}}},
        },
    ),
    K(
        "NetworkingV1Api",
        "ingress_class",
        "networking.k8s.io/v1",
        "IngressClass",
        False,
        lambda n, ns: {"metadata": {"name": n}, "spec": {"controller": "example.com/none"}},
    ),
    K(
        "NetworkingV1Api",
        "network_policy",
        "networking.k8s.io/v1",
        "NetworkPolicy",
        True,
        lambda n, ns: {"metadata": {"name": n}, "spec": {"podSelector": {"matchLabels": {"app": n}}}},
    ),
    K(
        "DiscoveryV1Api",
        "endpoint_slice",
        "discovery.k8s.io/v1",
        "EndpointSlice",
        True,
        lambda n, ns: {
            "metadata": {"name": n},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.244.0.78"]}],
            "ports": [{"port": 80, "protocol": "TCP"}],
        },
    ),
    K(
        "RbacAuthorizationV1Api",
        "role",
        "rbac.authorization.k8s.io/v1",
        "Role",
        True,
        lambda n, ns: {
            "metadata": {"name": n},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
        },
    ),
    K(
        "RbacAuthorizationV1Api",
        "role_binding",
        "rbac.authorization.k8s.io/v1",
        "RoleBinding",
        True,
        lambda n, ns: {
            "metadata": {"name": n},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "User", "name": "someone", "apiGroup": "rbac.authorization.k8s.io"}],
        },
    ),
    K(
        "RbacAuthorizationV1Api",
        "cluster_role",
        "rbac.authorization.k8s.io/v1",
        "ClusterRole",
        False,
        lambda n, ns: {
            "metadata": {"name": n},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
        },
    ),
    K(
        "RbacAuthorizationV1Api",
        "cluster_role_binding",
        "rbac.authorization.k8s.io/v1",
        "ClusterRoleBinding",
        False,
        lambda n, ns: {
            "metadata": {"name": n},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "User", "name": "someone", "apiGroup": "rbac.authorization.k8s.io"}],
        },
    ),
    K(
        "CoordinationV1Api",
        "lease",
        "coordination.k8s.io/v1",
        "Lease",
        True,
        lambda n, ns: {"metadata": {"name": n}, "spec": {"holderIdentity": "compat", "leaseDurationSeconds": 15}},
    ),
    K(
        "ApiextensionsV1Api",
        "custom_resource_definition",
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        False,
        lambda n, ns: {
            "metadata": {"name": f"{n}s.compat.example.com"},
            "spec": {
                "group": "compat.example.com",
                "scope": "Namespaced",
                "names": {"plural": f"{n}s", "singular": n, "kind": "Widget" + n.replace("-", "")[-6:].upper()},
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                    }
                ],
            },
        },
    ),
    K(
        "ApiregistrationV1Api",
        "api_service",
        "apiregistration.k8s.io/v1",
        "APIService",
        False,
        # a local APIService (no service: served by this API server itself)
        lambda n, ns: {
            "metadata": {"name": "v1.local.compat.example.com"},
            "spec": {
                "group": "local.compat.example.com",
                "version": "v1",
                "groupPriorityMinimum": 1000,
                "versionPriority": 15,
            },
        },
    ),
]

# served for create only (reviews), or kinds the test cannot make one of on its own
NOT_STORED = {
    "Binding",
    "SelfSubjectAccessReview",
    "SelfSubjectRulesReview",
    "SubjectAccessReview",
    "LocalSubjectAccessReview",
    "SelfSubjectReview",
}


def _name() -> str:
    return f"compat-{uuid.uuid4().hex[:6]}"


def test_the_table_covers_every_kind_discovery_serves(api: Any) -> None:
    from kubernetes import client

    served: set[tuple[str, str]] = set()
    core = client.CoreV1Api(api).get_api_resources()
    served |= {("v1", r.kind) for r in core.resources if "/" not in r.name}
    for g in client.ApisApi(api).get_api_versions().groups:
        if g.name.endswith(".example.com"):
            continue  # CRDs other tests define
        for v in g.versions:
            # the client's class of the group-version: rbac.authorization.k8s.io/v1 -> RbacAuthorizationV1Api
            words = g.name.removesuffix(".k8s.io").split(".")
            cls = "".join(w.capitalize() for w in words) + v.version.capitalize() + "Api"
            body = getattr(client, cls)(api).get_api_resources()
            served |= {(v.group_version, r.kind) for r in body.resources if "/" not in r.name}
    covered = {(k.group_version, k.kind) for k in KINDS}
    missing = {s for s in served if s not in covered and s[1] not in NOT_STORED}
    assert not missing, f"served kinds without a row here: {sorted(missing)}"
    assert ("v1", "ReplicationController") in served
    assert ("apiregistration.k8s.io/v1", "APIService") in served


@pytest.mark.parametrize("k", KINDS, ids=[k.kind for k in KINDS])
def test_typed_client_deserialises_create_get_list_watch(api: Any, ns: str, k: Kind) -> None:
    from kubernetes import client, watch

    typed = getattr(client, k.api)(api)
    name = _name()
    body = k.body(name, ns)
    body = {"apiVersion": k.group_version, "kind": k.kind, **body}
    name = body["metadata"]["name"]
    scope = "namespaced_" if k.namespaced else ""
    args: tuple[str, ...] = (ns,) if k.namespaced else ()
    created = getattr(typed, f"create_{scope}{k.snake}")(*args, body)
    try:
        assert type(created).__name__.endswith(k.kind.replace("APIService", "APIService"))
        assert created.metadata.name == name
        assert created.metadata.uid and created.metadata.resource_version
        got = getattr(typed, f"read_{scope}{k.snake}")(name, *args)
        assert got.metadata.uid == created.metadata.uid
        listed = getattr(typed, f"list_{scope}{k.snake}")(*args, field_selector=f"metadata.name={name}")
        assert [o.metadata.name for o in listed.items] == [name]
        assert listed.metadata.resource_version
        w = watch.Watch()
        events = []
        for ev in w.stream(
            getattr(typed, f"list_{scope}{k.snake}"), *args, field_selector=f"metadata.name={name}", timeout_seconds=1
        ):
            events.append(ev)
            w.stop()
        assert [e["type"] for e in events] == ["ADDED"]
        assert events[0]["object"].metadata.name == name
        assert type(events[0]["object"]) is type(created)
    finally:
        getattr(typed, f"delete_{scope}{k.snake}")(name, *args)
