"""The in-process API client controllers, the scheduler and the kubelet write through (#16).

A real kube-controller-manager, kube-scheduler or kubelet is an API client: each of its
writes is a request with an identity, and takes the path every request takes (validation,
admission where Kubernetes applies it, generation, resourceVersion, managedFields recorded
under the client's field manager). ``Client`` is that for the lab cluster's own components:
it serves each write through the ``Cluster``'s create/update paths under a ``RequestState``
of its own (apiserver/cluster.py), never through ``store.put``.

Status has one path, as in Kubernetes: ``update_status`` is an update of the status
subresource (only ``.status`` of the body is taken; the rest of the object is left as stored).

The component's writes are trusted as kube-controller-manager's are (its bootstrap RBAC role
allows them), so they carry no requester: no RBAC check and no per-student write quota apply,
as before; the identity shows as the field manager (``kube-controller-manager``,
``kube-scheduler``, ``kubelet``), as ``kubectl get -o yaml --show-managed-fields`` shows on a
real cluster.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from runtime.kube.apiserver.cluster import Cluster, RequestState
from runtime.kube.meta import Obj

if TYPE_CHECKING:
    from runtime.kube.registry import ResourceDef


class Client:
    """Writes into ``cluster`` as the component whose field manager is ``manager``."""

    def __init__(self, cluster: Cluster, manager: str) -> None:
        self.cluster = cluster
        self.manager = manager

    @contextmanager
    def _acting(self) -> Iterator[RequestState]:
        with self.cluster.acting(RequestState(manager=self.manager)) as st:
            yield st

    def create(self, rdef: ResourceDef, obj: Obj) -> Obj:
        """POST: the object as created (defaults, uid, resourceVersion, managedFields)."""
        with self._acting():
            return self.cluster.create(rdef, obj["metadata"].get("namespace", ""), obj, internal=True)

    def update(self, rdef: ResourceDef, obj: Obj) -> Obj:
        """PUT of the whole object (its status is kept as stored when the kind has a status
        subresource); a stale ``metadata.resourceVersion`` is a 409 Conflict."""
        meta = obj["metadata"]
        with self._acting():
            out, _ = self.cluster.update(rdef, meta.get("namespace", ""), meta["name"], obj)
        return out

    def update_status(self, rdef: ResourceDef, obj: Obj) -> Obj:
        """PUT .../status: only ``obj['status']`` is written; a stale resourceVersion is a 409."""
        meta = obj["metadata"]
        with self._acting():
            out, _ = self.cluster.update(rdef, meta.get("namespace", ""), meta["name"], obj, sub="status")
        return out

    def bind(self, pod: Obj, node: str) -> Obj:
        """POST pods/NAME/binding (as kube-scheduler binds): the bound pod."""
        meta = pod["metadata"]
        with self._acting():
            return self.cluster.bind(meta["namespace"], meta["name"], node)
