"""Strategies of the core group (pkg/registry/core/<resource>/strategy.go)."""

from __future__ import annotations

import secrets
from types import MappingProxyType
from typing import TYPE_CHECKING

from runtime.kube.machinery.apierrors import ApiError, FieldError
from runtime.kube.machinery.quantity import canonical_list
from runtime.kube.machinery.selectors import selector_string
from runtime.kube.meta import GENERATE_ALPHABET, Obj, Reply, Request
from runtime.kube.registry import ResourceDef, kinds, printers
from runtime.kube.registry.rest import Printed, Strategy, SubresourceREST, WorkloadStatusReset

if TYPE_CHECKING:
    from runtime.kube.apiserver.cluster import Cluster

DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"


def default_storage_class(classes: list[Obj]) -> Obj | None:
    """The StorageClass annotated as the default one (the DefaultStorageClass admission's pick)."""
    for sc in classes:
        if (sc["metadata"].get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION) == "true":
            return sc
    return None


def _add_finalizer(obj: Obj, name: str) -> None:
    fins = obj["metadata"].setdefault("finalizers", [])
    if name not in fins:
        fins.append(name)


def inject_service_account_volume(pod: Obj) -> None:
    """The ServiceAccount admission's projected token volume, mounted in every container."""
    spec = pod["spec"]
    if spec.get("automountServiceAccountToken") is False:
        return
    name = "kube-api-access-" + "".join(secrets.choice(GENERATE_ALPHABET) for _ in range(5))
    spec.setdefault("volumes", []).append(
        {
            "name": name,
            "projected": {
                "defaultMode": 420,
                "sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {
                        "downwardAPI": {
                            "items": [
                                {
                                    "path": "namespace",
                                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                                }
                            ]
                        }
                    },
                ],
            },
        }
    )
    for c in spec.get("containers") or []:
        c.setdefault("volumeMounts", []).append(
            {"name": name, "readOnly": True, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}
        )


# -- the subresources' REST storages (pkg/registry/core/<resource>/storage): the API server's
# code behind them (apiserver/subresources.py), registered here on their resource


def _pod_stream(c: Cluster, req: Request, rdef: ResourceDef, ns: str, name: str, sub: str) -> Reply:
    """pods/log, exec, attach, portforward (LogREST, ExecREST, AttachREST, PortForwardREST)."""
    return c.subresources.pod_stream(req, rdef, ns, name, sub)


def _pod_eviction(c: Cluster, req: Request, rdef: ResourceDef, ns: str, name: str, sub: str) -> Reply:
    return c.subresources.evict(req, rdef, ns, name)


def _pod_binding(c: Cluster, req: Request, rdef: ResourceDef, ns: str, name: str, sub: str) -> Reply:
    return c.subresources.bind_request(req, rdef, ns, name)


def _serviceaccount_token(c: Cluster, req: Request, rdef: ResourceDef, ns: str, name: str, sub: str) -> Reply:
    return c.subresources.token_request(req, rdef, ns, name)


def _proxy_refused(rdef: ResourceDef, what: str, hint: str) -> ApiError:
    return ApiError(
        503,
        "ServiceUnavailable",
        f"the {rdef.resource}/proxy subresource is not served by this lab cluster (its API server does "
        f"not proxy into your sandbox): reach the {what} from your sandbox's shell instead{hint}",
    )


def _service_proxy(c: Cluster, req: Request, rdef: ResourceDef, ns: str, name: str, sub: str) -> Reply:
    raise _proxy_refused(rdef, "service", ", e.g. curl http://NAME.NAMESPACE.svc:PORT/, or use kubectl port-forward")


def _node_proxy(c: Cluster, req: Request, rdef: ResourceDef, ns: str, name: str, sub: str) -> Reply:
    raise _proxy_refused(rdef, "node", "")


class PodStrategy(Strategy):
    printer = printers.POD
    pod_template_path = ()
    get_subresources: MappingProxyType[str, SubresourceREST] = MappingProxyType({"log": _pod_stream})
    create_subresources: MappingProxyType[str, SubresourceREST] = MappingProxyType(
        {
            "exec": _pod_stream,
            "attach": _pod_stream,
            "portforward": _pod_stream,
            "eviction": _pod_eviction,
            "binding": _pod_binding,
        }
    )

    def default(self, obj: Obj) -> None:
        kinds.default_pod(obj)

    def prepare_for_create(self, cluster: Cluster, obj: Obj) -> None:
        spec = obj.get("spec") or {}
        inject_service_account_volume(obj)
        obj["status"] = {"phase": "Pending", "qosClass": kinds.qos_class(spec)}

    def validate(self, obj: Obj) -> list[FieldError]:
        return kinds.validate_pod_spec(obj.get("spec"), "spec")

    def validate_update(self, new: Obj, old: Obj) -> list[FieldError]:
        return kinds.validate_pod_update(new, old)

    def check_graceful_delete(self, obj: Obj, grace: int | None) -> int:
        # an unscheduled pod has no kubelet to stop it: removed at once; a bound one keeps its
        # own terminationGracePeriodSeconds (default 30) unless the DeleteOptions say otherwise
        spec = obj.get("spec") or {}
        if not spec.get("nodeName"):
            return 0
        return int(spec.get("terminationGracePeriodSeconds", 30)) if grace is None else grace


class ReplicationControllerStrategy(WorkloadStatusReset):
    printer = printers.REPLICATION_CONTROLLER

    def default(self, obj: Obj) -> None:
        kinds.default_replicationcontroller(obj)

    def validate(self, obj: Obj) -> list[FieldError]:
        return kinds.validate_replicationcontroller(obj)

    def scale_selector(self, obj: Obj) -> str:
        # a plain map of labels (the RC's ScaleREST: labels.SelectorFromSet)
        return selector_string({"matchLabels": (obj.get("spec") or {}).get("selector") or {}})


class ServiceStrategy(Strategy):
    """ClusterIP and NodePort allocation is the API server's (its ``service_allocator``, as
    upstream's service REST storage): the strategy only asks for it."""

    connect_subresources: MappingProxyType[str, SubresourceREST] = MappingProxyType({"proxy": _service_proxy})

    printer = printers.SERVICE

    def default(self, obj: Obj) -> None:
        kinds.default_service(obj)

    def prepare_for_create(self, cluster: Cluster, obj: Obj) -> None:
        cluster.service_allocator.allocate(obj)

    def prepare_for_update(self, cluster: Cluster, new: Obj, old: Obj) -> None:
        spec = new.setdefault("spec", {})
        ospec = old.get("spec") or {}
        for k in ("clusterIP", "clusterIPs"):
            if k not in spec and k in ospec:
                spec[k] = ospec[k]
        cluster.service_allocator.allocate(new)

    def validate(self, obj: Obj) -> list[FieldError]:
        return kinds.validate_service(obj)

    def validate_update(self, new: Obj, old: Obj) -> list[FieldError]:
        return kinds.validate_service_update(new, old)


class ConfigMapStrategy(Strategy):
    printer = printers.CONFIG_MAP

    def validate(self, obj: Obj) -> list[FieldError]:
        return kinds.validate_data_keys(obj, "data") + kinds.validate_data_keys(obj, "binaryData")

    def validate_update(self, new: Obj, old: Obj) -> list[FieldError]:
        return kinds.validate_immutable_data(new, old)


class SecretStrategy(Strategy):
    printer = printers.SECRET

    def default(self, obj: Obj) -> None:
        kinds.default_secret(obj)

    def validate(self, obj: Obj) -> list[FieldError]:
        return kinds.validate_secret(obj)

    def validate_update(self, new: Obj, old: Obj) -> list[FieldError]:
        return kinds.validate_immutable_data(new, old)


class PersistentVolumeClaimStrategy(Strategy):
    printer = printers.PERSISTENT_VOLUME_CLAIM

    def default(self, obj: Obj) -> None:
        kinds.default_pvc(obj)

    def prepare_for_create(self, cluster: Cluster, obj: Obj) -> None:
        obj["status"] = {"phase": "Pending"}
        spec = obj.setdefault("spec", {})
        if "storageClassName" not in spec:
            default = default_storage_class(cluster.store.list("storageclasses.storage.k8s.io"))
            if default is not None:
                spec["storageClassName"] = default["metadata"]["name"]
        _add_finalizer(obj, "kubernetes.io/pvc-protection")

    def validate(self, obj: Obj) -> list[FieldError]:
        return kinds.validate_pvc(obj)

    def validate_update(self, new: Obj, old: Obj) -> list[FieldError]:
        return kinds.validate_pvc_update(new, old)


class PersistentVolumeStrategy(Strategy):
    printer = printers.PERSISTENT_VOLUME

    def default(self, obj: Obj) -> None:
        kinds.default_pv(obj)

    def prepare_for_create(self, cluster: Cluster, obj: Obj) -> None:
        obj["status"] = {"phase": "Available"}
        _add_finalizer(obj, "kubernetes.io/pv-protection")

    def validate(self, obj: Obj) -> list[FieldError]:
        return kinds.validate_pv(obj)


class ResourceQuotaStrategy(Strategy):
    printer = printers.RESOURCE_QUOTA

    def default(self, obj: Obj) -> None:
        canonical_list((obj.get("spec") or {}).get("hard"))


class LimitRangeStrategy(Strategy):
    def default(self, obj: Obj) -> None:
        for item in (obj.get("spec") or {}).get("limits") or []:
            for fld in ("min", "max", "default", "defaultRequest", "maxLimitRequestRatio"):
                if isinstance(item, dict):
                    canonical_list(item.get(fld))
        kinds.default_limitrange(obj)


class NamespaceStrategy(Strategy):
    printer = printers.NAMESPACE

    def default(self, obj: Obj) -> None:
        obj.setdefault("status", {}).setdefault("phase", "Active")
        labels = obj["metadata"].setdefault("labels", {})
        labels["kubernetes.io/metadata.name"] = obj["metadata"].get("name", "")

    def prepare_for_create(self, cluster: Cluster, obj: Obj) -> None:
        # namespaceStrategy.PrepareForCreate: a new namespace is Active and always carries the
        # "kubernetes" finalizer (appended to any it was given); not defaulting, since it may be
        # removed over the namespace's life (by the finalize subresource)
        obj["status"] = {"phase": "Active"}
        spec = obj.setdefault("spec", {})
        fins = list(spec.get("finalizers") or [])
        if "kubernetes" not in fins:
            fins.append("kubernetes")
        spec["finalizers"] = fins

    def keep_on_update(self, new: Obj, old: Obj) -> None:
        # namespaceStrategy.PrepareForUpdate: spec.finalizers change only through the finalize
        # subresource (the namespace controller's), never by a PUT or PATCH of the namespace
        fins = (old.get("spec") or {}).get("finalizers")
        spec = new.get("spec")
        if not isinstance(spec, dict):
            spec = new["spec"] = {}
        if fins is None:
            spec.pop("finalizers", None)
        else:
            spec["finalizers"] = list(fins)

    def deletion_finalizers(self, obj: Obj) -> list[str]:
        # the namespace's own storage (registry/core/namespace/storage Delete): the first
        # DELETE always marks it, for the namespace controller, which removes its content and
        # then finalizes it; a later one removes it once spec.finalizers (and the metadata's)
        # are empty
        if not obj["metadata"].get("deletionTimestamp"):
            return ["kubernetes"]
        spec_fins = (obj.get("spec") or {}).get("finalizers") or []
        return [*spec_fins, *(obj["metadata"].get("finalizers") or [])]

    def prepare_for_delete(self, obj: Obj) -> None:
        obj.setdefault("status", {})["phase"] = "Terminating"

    def should_delete_during_update(self, new: Obj, old: Obj) -> bool:
        # ShouldDeleteNamespaceDuringUpdate: the generic rule, and spec.finalizers emptied too
        # (by the finalize subresource the namespace controller calls once the content is gone)
        if (new.get("spec") or {}).get("finalizers"):
            return False
        return super().should_delete_during_update(new, old)


class NodeStrategy(Strategy):
    printer = printers.NODE
    connect_subresources: MappingProxyType[str, SubresourceREST] = MappingProxyType({"proxy": _node_proxy})


class ServiceAccountStrategy(Strategy):
    printer = printers.SERVICE_ACCOUNT
    create_subresources: MappingProxyType[str, SubresourceREST] = MappingProxyType({"token": _serviceaccount_token})


class BindingStrategy(Strategy):
    """The legacy ``bindings`` (POST .../bindings, the pod's name in the body): pods/binding's
    REST under another route."""

    def create_virtual(self, cluster: Cluster, req: Request, rdef: ResourceDef, ns: str) -> Reply | None:
        return cluster.subresources.legacy_bind(req, ns)


STRATEGIES: dict[str, Strategy] = {
    "pods": PodStrategy(),
    "replicationcontrollers": ReplicationControllerStrategy(),
    "services": ServiceStrategy(),
    "configmaps": ConfigMapStrategy(),
    "secrets": SecretStrategy(),
    "persistentvolumeclaims": PersistentVolumeClaimStrategy(),
    "persistentvolumes": PersistentVolumeStrategy(),
    "resourcequotas": ResourceQuotaStrategy(),
    "limitranges": LimitRangeStrategy(),
    "namespaces": NamespaceStrategy(),
    "serviceaccounts": ServiceAccountStrategy(),
    "endpoints": Printed(printers.ENDPOINTS),
    "nodes": NodeStrategy(),
    "events": Printed(printers.EVENT),
    "bindings": BindingStrategy(),
}
