"""The strategy of one resource: what the generic REST verbs ask of each kind.

kube-apiserver hangs one strategy on each resource's registry entry
(k8s.io/apiserver/pkg/registry/rest: RESTCreateStrategy, RESTUpdateStrategy, plus the
scheme's defaulting) instead of choosing behaviour by kind name. The API server's create
and update paths (apiserver/cluster.py) call, in this order:

- create: ``default`` (the scheme's SetDefaults), admission's mutation, ``prepare_for_create``
  (status reset, allocations, finalizers, generated selectors), then ``validate``;
- update: ``default``, ``validate`` and ``validate_update``, admission, then, when the update
  is written (not for a dry run, not for a no-op), ``prepare_for_update``.

The base does nothing and finds nothing wrong; each group's module (core.py, apps.py,
batch.py, ... as pkg/registry/<group>/) subclasses it per resource, and strategies.py maps
the registry entries to them. Metadata validation (kinds.validate_meta) is the same for every
kind and stays with the caller.

The ``Cluster`` handed to the prepare hooks is the API server's (a type only here): a strategy
reads the store through it and uses the allocators it owns (apiserver/allocator.py), as
upstream's REST storage does; it never calls controllers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runtime.kube.machinery.apierrors import FieldError
from runtime.kube.meta import Obj

if TYPE_CHECKING:
    from runtime.kube.apiserver.cluster import Cluster


class Strategy:
    """A resource without behaviour of its own: no defaults, no mutation, no validation."""

    def default(self, obj: Obj) -> None:
        """The scheme's defaulting (SetDefaults_<Kind>), on create and on every update."""

    def prepare_for_create(self, cluster: Cluster, obj: Obj) -> None:
        """PrepareForCreate: what the server sets on a new object (status, allocations...)."""

    def prepare_for_update(self, cluster: Cluster, new: Obj, old: Obj) -> None:
        """PrepareForUpdate: what the server carries over or allocates when an update is written."""

    def validate(self, obj: Obj) -> list[FieldError]:
        """Validate: the kind's own field errors (metadata is validated by the caller)."""
        return []

    def validate_update(self, new: Obj, old: Obj) -> list[FieldError]:
        """ValidateUpdate: what may not change between ``old`` and ``new``."""
        return []


class WorkloadStatusReset(Strategy):
    """Controllers' objects start with an empty status the controller fills (the strategies'
    ``obj.Status = Status{}`` in PrepareForCreate)."""

    def prepare_for_create(self, cluster: Cluster, obj: Obj) -> None:
        obj["status"] = {}
