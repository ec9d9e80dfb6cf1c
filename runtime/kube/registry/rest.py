"""The strategy of one resource: what the generic REST verbs ask of each kind.

kube-apiserver hangs one strategy on each resource's registry entry
(k8s.io/apiserver/pkg/registry/rest: RESTCreateStrategy, RESTUpdateStrategy, plus the
scheme's defaulting) instead of choosing behaviour by kind name. The API server's create
and update paths (apiserver/cluster.py) call, in this order:

- create: ``default`` (the scheme's SetDefaults), admission's mutation, ``prepare_for_create``
  (status reset, allocations, finalizers, generated selectors), then ``validate``;
- update: ``keep_on_update`` (a plain update only), ``default``, ``validate`` and
  ``validate_update``, admission, then, when the update
  is written (not for a dry run, not for a no-op), ``prepare_for_update``; an update of the
  status subresource first takes what ``prepare_for_status_update`` lets through;
- reads asking for a Table (``kubectl get``): ``convert_to_table``, with the columns of the
  strategy's ``printer`` (printers.py);
- delete (RESTDeleteStrategy, RESTGracefulDeleteStrategy): ``check_graceful_delete`` when a
  kubelet runs (a bound pod is only marked, for its node to stop), then
  ``deletion_finalizers`` (what keeps the object, marked, until removed) and
  ``prepare_for_delete`` when it is marked; on every written update of a marked object,
  ``should_delete_during_update`` (whether it now goes);
- the scale subresource: ``scale_selector``;
- subresources with a REST storage of their own (pods/exec, serviceaccounts/token, ...): the
  ``connect_subresources``, ``get_subresources`` and ``create_subresources`` tables, and a
  virtual resource's ``create_virtual``.

The base does nothing and finds nothing wrong; each group's module (core.py, apps.py,
batch.py, ... as pkg/registry/<group>/) subclasses it per resource, and strategies.py maps
the registry entries to them. Metadata validation (kinds.validate_meta) is the same for every
kind and stays with the caller.

The ``Cluster`` handed to the prepare hooks and subresource storages is the API server's (a
type only here): a strategy reads the store through it and uses the allocators it owns
(apiserver/allocator.py), as upstream's REST storage does; it never calls controllers. The
subresource storages registered in core.py call the server's code for them
(apiserver/subresources.py, reached through ``Cluster.subresources``), which stays there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, TypeAlias

from runtime.kube.machinery.apierrors import FieldError
from runtime.kube.machinery.selectors import selector_string
from runtime.kube.meta import Obj, Reply, Request
from runtime.kube.registry import ResourceDef, printers

if TYPE_CHECKING:
    from runtime.kube.apiserver.cluster import Cluster

# the REST storage of one subresource (upstream's ExecREST, EvictionREST, TokenREST, ...):
# called with the cluster, the request, the resource, namespace, name and subresource
SubresourceREST: TypeAlias = Callable[["Cluster", Request, ResourceDef, str, str, str], Reply]

_NONE: Mapping[str, SubresourceREST] = MappingProxyType({})


class Strategy:
    """A resource without behaviour of its own: no defaults, no mutation, no validation,
    the default table columns."""

    printer: printers.Printer = printers.DEFAULT
    # where the object holds the pod it describes: the ``{metadata, spec}`` PodSecurity
    # admission judges (upstream's PodSpecExtractor); () for a Pod itself, None for kinds
    # that describe no pod
    pod_template_path: tuple[str, ...] | None = None
    # the subresources served by REST storages of their own, registered beside the resource's
    # (upstream's storage map: "pods/exec", "pods/eviction", "serviceaccounts/token", ...), by
    # how they are reached: ``connect_subresources`` by every method, after authorization
    # (rest.Connecter: services|nodes/proxy), ``get_subresources`` by GET (pods/log),
    # ``create_subresources`` by POST (a WebSocket GET of exec/attach/portforward is one).
    connect_subresources: Mapping[str, SubresourceREST] = _NONE
    get_subresources: Mapping[str, SubresourceREST] = _NONE
    create_subresources: Mapping[str, SubresourceREST] = _NONE

    def default(self, obj: Obj) -> None:
        """The scheme's defaulting (SetDefaults_<Kind>), on create and on every update."""

    def prepare_for_create(self, cluster: Cluster, obj: Obj) -> None:
        """PrepareForCreate: what the server sets on a new object (status, allocations...)."""

    def prepare_for_update(self, cluster: Cluster, new: Obj, old: Obj) -> None:
        """PrepareForUpdate: what the server carries over or allocates when an update is written."""

    def keep_on_update(self, new: Obj, old: Obj) -> None:
        """The part of PrepareForUpdate that resets what a plain update (PUT, PATCH, apply; not
        a subresource's) may not change to its stored value, before defaulting and validation,
        so a dry run and the no-op check see the object as it will be written."""

    def prepare_for_status_update(self, new: Obj, body: Obj) -> None:
        """The status strategy's PrepareForUpdate, for an update of the status subresource:
        ``new`` is the stored object with ``body``'s status; what else of ``body`` such an
        update may change (nothing, by default: spec and metadata stay as stored)."""

    def validate(self, obj: Obj) -> list[FieldError]:
        """Validate: the kind's own field errors (metadata is validated by the caller)."""
        return []

    def validate_update(self, new: Obj, old: Obj) -> list[FieldError]:
        """ValidateUpdate: what may not change between ``old`` and ``new``."""
        return []

    def convert_to_table(self, rdef: ResourceDef, objs: list[Obj], include_object: str, meta: Obj) -> Obj:
        """ConvertToTable (the REST storage's TableConvertor): the ``meta.k8s.io/v1 Table`` of
        ``objs`` that ``kubectl get`` renders, with this resource's printer's columns."""
        return printers.table(self.printer, objs, include_object, meta)

    def check_graceful_delete(self, obj: Obj, grace: int | None) -> int:
        """CheckGracefulDelete (RESTGracefulDeleteStrategy): the seconds a deleted object stays,
        marked, for its node to stop it, given DeleteOptions.gracePeriodSeconds ``grace``
        (None: not given); 0 when it is removed at once (or held only by its finalizers)."""
        return 0

    def deletion_finalizers(self, obj: Obj) -> list[str]:
        """The finalizers that keep a deleted object, marked, until they are gone: its
        ``metadata.finalizers``; with none it is removed at once."""
        return list(obj["metadata"].get("finalizers") or [])

    def prepare_for_delete(self, obj: Obj) -> None:
        """What the server sets on an object it marks for deletion (beside deletionTimestamp)."""

    def should_delete_during_update(self, new: Obj, old: Obj) -> bool:
        """ShouldDeleteDuringUpdate (the generic store's default): an update of an object marked
        for deletion removes it when no finalizer is left in ``new`` and ``old`` has no grace
        period left (deletionGracePeriodSeconds 0 or unset). A pod a kubelet is still stopping
        (grace > 0) stays through its status updates; the kubelet's final DELETE removes it."""
        if new["metadata"].get("finalizers") or not old["metadata"].get("deletionTimestamp"):
            return False
        return not int(old["metadata"].get("deletionGracePeriodSeconds") or 0)

    def create_virtual(self, cluster: Cluster, req: Request, rdef: ResourceDef, ns: str) -> Reply | None:
        """The create of a virtual resource (nothing stored) that is a REST storage of its own
        (the legacy ``bindings``); None: the server answers it (the access reviews, rbac.py)."""
        return None

    def scale_selector(self, obj: Obj) -> str:
        """The ``status.selector`` of the object's ``scale`` subresource (each ScaleREST builds
        it from its kind's selector): ``spec.selector`` as a LabelSelector."""
        return selector_string((obj.get("spec") or {}).get("selector"))


class Printed(Strategy):
    """A resource whose only behaviour of its own is its table columns."""

    def __init__(self, printer: printers.Printer) -> None:
        self.printer = printer


class CustomResourceStrategy(Strategy):
    """Custom resources: defaulting, pruning and validation come from the CRD's schema (crd.py,
    called by the server), the table from its additionalPrinterColumns."""

    def convert_to_table(self, rdef: ResourceDef, objs: list[Obj], include_object: str, meta: Obj) -> Obj:
        return printers.custom_table(rdef, objs, include_object, meta)


class WorkloadStatusReset(Strategy):
    """Controllers' objects start with an empty status the controller fills (the strategies'
    ``obj.Status = Status{}`` in PrepareForCreate); their pods come from ``spec.template``."""

    pod_template_path: tuple[str, ...] | None = ("spec", "template")

    def prepare_for_create(self, cluster: Cluster, obj: Obj) -> None:
        obj["status"] = {}
