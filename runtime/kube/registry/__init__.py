"""The resource types this API server serves, keyed by group/version/resource.

A ``ResourceDef`` says everything generic code needs about one resource:
its kind and scope for discovery, which subresources exist, whether writes
bump ``metadata.generation``, which field selectors it supports. Per-kind
behaviour lives beside this table: each resource's strategy (rest.py: Default,
PrepareForCreate, PrepareForUpdate, Validate, ValidateUpdate), one class per resource in its
group's module (core.py, apps.py, batch.py, networking.py, storage.py, autoscaling.py,
policy.py, scheduling.py, rbac.py, apiextensions.py, as upstream's pkg/registry/<group>/),
looked up from the entry by strategies.for_resource; the field-level defaulting and
validation they call (kinds.py), server-side printing columns (printers.py, each
strategy naming its printer), CustomResourceDefinitions and the kinds they define (crd.py: schemas, defaulting,
pruning, CEL rules, printer columns), APIServices (apiservice.py) and what an object counts
against a quota (quota.py).

Imports only ``meta``, ``machinery`` and itself at run time (tests/runtime/kube/test_layering.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

VERBS_ALL = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclass(frozen=True)
class ResourceDef:
    group: str
    version: str
    resource: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    has_generation: bool = False
    # status is reset from the old object on updates of the main resource
    status_subresource: bool = False
    field_selectors: tuple[str, ...] = ()
    verbs: tuple[str, ...] = tuple(VERBS_ALL)
    # virtual resources (reviews) exist only as create
    virtual: bool = False
    singular: str = ""
    extra_meta: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    # custom resources: the version's openAPIV3Schema and additionalPrinterColumns
    schema: dict[str, Any] | None = field(default=None, hash=False, compare=False)
    printer_columns: tuple[dict[str, Any], ...] = field(default=(), hash=False, compare=False)
    custom: bool = False
    # custom resources: the CRD's storage version (objects are stored as ``group/storage_version``),
    # the warning every request to a deprecated version gets, the scale subresource's paths
    storage_version: str = ""
    deprecation_warning: str = ""
    scale_paths: dict[str, str] | None = field(default=None, hash=False, compare=False)
    # a DELETE that removes the object at once answers the object (the store's
    # ReturnDeletedObject), not a Status ``Success`` with its name, kind and uid
    return_deleted_object: bool = False
    # custom resources of a CRD being deleted: still served (read, update, delete) while its
    # finalizer deletes them, but no create (discovery lists only the verbs left)
    terminating: bool = False

    @property
    def gr(self) -> str:
        """Storage key: ``resource.group`` (``pods`` for the core group)."""
        return f"{self.resource}.{self.group}" if self.group else self.resource

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular_name(self) -> str:
        return self.singular or self.kind.lower()


_CREATE_ONLY = ("create",)


def _scalable(group: str, resource: str, kind: str, short_name: str) -> ResourceDef:
    """A replicated workload (ReplicationController, Deployment, ReplicaSet, StatefulSet):
    namespaced, in ``all``, with ``status`` and ``scale`` subresources and a generation."""
    return ResourceDef(
        group,
        "v1",
        resource,
        kind,
        True,
        (short_name,),
        ("all",),
        subresources=("status", "scale"),
        has_generation=True,
        status_subresource=True,
    )


RESOURCES: list[ResourceDef] = [
    # core/v1
    ResourceDef(
        "",
        "v1",
        "namespaces",
        "Namespace",
        False,
        ("ns",),
        subresources=("status", "finalize"),
        status_subresource=True,
        field_selectors=("status.phase",),
        verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
    ),
    ResourceDef("", "v1", "configmaps", "ConfigMap", True, ("cm",)),
    ResourceDef("", "v1", "secrets", "Secret", True, field_selectors=("type",)),
    ResourceDef("", "v1", "serviceaccounts", "ServiceAccount", True, ("sa",), subresources=("token",)),
    ResourceDef(
        "",
        "v1",
        "pods",
        "Pod",
        True,
        ("po",),
        ("all",),
        subresources=(
            "status",
            "log",
            "exec",
            "attach",
            "portforward",
            "binding",
            "eviction",
            "ephemeralcontainers",
            "resize",
        ),
        has_generation=True,
        status_subresource=True,
        field_selectors=(
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ),
    ),
    _scalable("", "replicationcontrollers", "ReplicationController", "rc"),
    ResourceDef(
        "",
        "v1",
        "services",
        "Service",
        True,
        ("svc",),
        ("all",),
        subresources=("status", "proxy"),
        status_subresource=True,
    ),
    ResourceDef("", "v1", "endpoints", "Endpoints", True, ("ep",)),
    # the legacy way to bind a pod (POST .../bindings, the name in the body): pods/binding
    ResourceDef("", "v1", "bindings", "Binding", True, verbs=_CREATE_ONLY, virtual=True),
    # discovery.k8s.io/v1
    ResourceDef(
        "discovery.k8s.io",
        "v1",
        "endpointslices",
        "EndpointSlice",
        True,
        has_generation=True,
    ),
    ResourceDef(
        "",
        "v1",
        "nodes",
        "Node",
        False,
        ("no",),
        subresources=("status", "proxy"),
        status_subresource=True,
        field_selectors=("spec.unschedulable",),
    ),
    ResourceDef(
        "",
        "v1",
        "events",
        "Event",
        True,
        ("ev",),
        field_selectors=(
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ),
    ),
    ResourceDef("", "v1", "limitranges", "LimitRange", True, ("limits",)),
    ResourceDef(
        "",
        "v1",
        "persistentvolumes",
        "PersistentVolume",
        False,
        ("pv",),
        subresources=("status",),
        status_subresource=True,
    ),
    ResourceDef(
        "",
        "v1",
        "persistentvolumeclaims",
        "PersistentVolumeClaim",
        True,
        ("pvc",),
        subresources=("status",),
        status_subresource=True,
    ),
    ResourceDef(
        "",
        "v1",
        "resourcequotas",
        "ResourceQuota",
        True,
        ("quota",),
        subresources=("status",),
        status_subresource=True,
    ),
    # apps/v1
    _scalable("apps", "deployments", "Deployment", "deploy"),
    _scalable("apps", "replicasets", "ReplicaSet", "rs"),
    _scalable("apps", "statefulsets", "StatefulSet", "sts"),
    ResourceDef(
        "apps",
        "v1",
        "daemonsets",
        "DaemonSet",
        True,
        ("ds",),
        ("all",),
        subresources=("status",),
        has_generation=True,
        status_subresource=True,
    ),
    ResourceDef("apps", "v1", "controllerrevisions", "ControllerRevision", True),
    # batch/v1
    ResourceDef(
        "batch",
        "v1",
        "jobs",
        "Job",
        True,
        (),
        ("all",),
        subresources=("status",),
        has_generation=True,
        status_subresource=True,
        field_selectors=("status.successful",),
    ),
    ResourceDef(
        "batch",
        "v1",
        "cronjobs",
        "CronJob",
        True,
        ("cj",),
        ("all",),
        subresources=("status",),
        has_generation=True,
        status_subresource=True,
    ),
    # autoscaling/v2, policy/v1, scheduling.k8s.io/v1
    ResourceDef(
        "autoscaling",
        "v2",
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
        True,
        ("hpa",),
        ("all",),
        subresources=("status",),
        status_subresource=True,
    ),
    ResourceDef(
        "policy",
        "v1",
        "poddisruptionbudgets",
        "PodDisruptionBudget",
        True,
        ("pdb",),
        subresources=("status",),
        has_generation=True,
        status_subresource=True,
    ),
    ResourceDef("scheduling.k8s.io", "v1", "priorityclasses", "PriorityClass", False, ("pc",)),
    # storage.k8s.io/v1, networking.k8s.io/v1
    ResourceDef("storage.k8s.io", "v1", "storageclasses", "StorageClass", False, ("sc",)),
    ResourceDef(
        "networking.k8s.io",
        "v1",
        "ingresses",
        "Ingress",
        True,
        ("ing",),
        subresources=("status",),
        has_generation=True,
        status_subresource=True,
    ),
    ResourceDef("networking.k8s.io", "v1", "ingressclasses", "IngressClass", False),
    ResourceDef("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True, ("netpol",), has_generation=True),
    # rbac.authorization.k8s.io/v1
    ResourceDef("rbac.authorization.k8s.io", "v1", "roles", "Role", True),
    ResourceDef("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
    ResourceDef("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
    ResourceDef("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False),
    # authorization.k8s.io/v1 (virtual)
    ResourceDef(
        "authorization.k8s.io",
        "v1",
        "selfsubjectaccessreviews",
        "SelfSubjectAccessReview",
        False,
        verbs=_CREATE_ONLY,
        virtual=True,
    ),
    ResourceDef(
        "authorization.k8s.io",
        "v1",
        "selfsubjectrulesreviews",
        "SelfSubjectRulesReview",
        False,
        verbs=_CREATE_ONLY,
        virtual=True,
    ),
    ResourceDef(
        "authorization.k8s.io",
        "v1",
        "subjectaccessreviews",
        "SubjectAccessReview",
        False,
        verbs=_CREATE_ONLY,
        virtual=True,
    ),
    ResourceDef(
        "authorization.k8s.io",
        "v1",
        "localsubjectaccessreviews",
        "LocalSubjectAccessReview",
        True,
        verbs=_CREATE_ONLY,
        virtual=True,
    ),
    ResourceDef(
        "authentication.k8s.io",
        "v1",
        "selfsubjectreviews",
        "SelfSubjectReview",
        False,
        verbs=_CREATE_ONLY,
        virtual=True,
    ),
    # events.k8s.io/v1 shares storage with core events in a real server; served read-only here
    # coordination.k8s.io/v1 leases: kube-node-lease holds the node's lease
    ResourceDef("coordination.k8s.io", "v1", "leases", "Lease", True),
    ResourceDef(
        "apiregistration.k8s.io",
        "v1",
        "apiservices",
        "APIService",
        False,
        (),
        ("api-extensions",),
        subresources=("status",),
        status_subresource=True,
    ),
    ResourceDef(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        False,
        ("crd", "crds"),
        ("api-extensions",),
        subresources=("status",),
        status_subresource=True,
    ),
]

# the registries that set ReturnDeletedObject (pkg/registry/*/storage), which the official
# OpenAPI shows as a DELETE answering the kind itself; namespaces and CRDs always go through
# finalizers, so they answer the (terminating) object as well
_RETURN_DELETED = {
    "pods",
    "services",
    "serviceaccounts",
    "persistentvolumes",
    "persistentvolumeclaims",
    "resourcequotas",
    "storageclasses.storage.k8s.io",
    "namespaces",
    "customresourcedefinitions.apiextensions.k8s.io",
}
RESOURCES = [replace(r, return_deleted_object=True) if r.gr in _RETURN_DELETED else r for r in RESOURCES]

# Preferred order of groups in discovery, as kube-apiserver lists them.
GROUP_ORDER = [
    "",
    "apiregistration.k8s.io",
    "apps",
    "events.k8s.io",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "autoscaling",
    "batch",
    "networking.k8s.io",
    "policy",
    "rbac.authorization.k8s.io",
    "storage.k8s.io",
    "scheduling.k8s.io",
    "coordination.k8s.io",
    "discovery.k8s.io",
    "apiextensions.k8s.io",
]

BY_GVR: dict[tuple[str, str, str], ResourceDef] = {(r.group, r.version, r.resource): r for r in RESOURCES}
BY_GR: dict[str, ResourceDef] = {r.gr: r for r in RESOURCES}
BY_GVK: dict[tuple[str, str, str], ResourceDef] = {(r.group, r.version, r.kind): r for r in RESOURCES if not r.virtual}


def groups(extra: list[ResourceDef] | None = None) -> list[str]:
    present = {r.group for r in RESOURCES}
    out = [g for g in GROUP_ORDER if g in present]
    for r in extra or []:
        if r.group not in out:
            out.append(r.group)
    return out


def versions(group: str, extra: list[ResourceDef] | None = None) -> list[str]:
    seen: list[str] = []
    for r in [*RESOURCES, *(extra or [])]:
        if r.group == group and r.version not in seen:
            seen.append(r.version)
    return seen


def resources_of(group: str, version: str, extra: list[ResourceDef] | None = None) -> list[ResourceDef]:
    return [r for r in [*RESOURCES, *(extra or [])] if r.group == group and r.version == version]


def split_api_version(api_version: str) -> tuple[str, str]:
    if "/" in api_version:
        g, v = api_version.split("/", 1)
        return g, v
    return "", api_version
