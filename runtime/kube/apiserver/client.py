"""The in-process API client controllers, the scheduler and the kubelet write through (#16).

A real kube-controller-manager, kube-scheduler or kubelet is an API client: each of its
writes is a request with an identity, and takes the path every request takes (validation,
admission where Kubernetes applies it, generation, resourceVersion, managedFields recorded
under the client's field manager). ``Client`` is that for the lab cluster's own components:
it serves each write through the ``Cluster``'s create/update paths under a ``RequestState``
of its own (apiserver/cluster.py), never through ``store.put``.

Status has one path, as in Kubernetes: ``update_status`` is an update of the status
subresource (only ``.status`` of the body is taken; the rest of the object is left as stored).

Identity: each client acts as the user upstream authenticates the component as
(``CONTROLLER_MANAGER`` system:kube-controller-manager, ``SCHEDULER`` system:kube-scheduler,
``node_user(name)`` system:node:<name> in system:nodes for a node's kubelet); the request state
carries it as ``component`` (apiserver/cluster.py's RequestState.user), for admission that keys
on the user (NodeRestriction, admission.py). The field manager stays the component's name
(``kube-controller-manager``, ``kube-scheduler``, ``kubelet``), as ``kubectl get -o yaml
--show-managed-fields`` shows on a real cluster, and the Events a component records carry it as
their source (the kubelet's with its node as host).

Trust: upstream authorizes these users with RBAC through bootstrap roles
(system:kube-controller-manager, system:kube-scheduler, system:node, bound by
system:kube-controller-manager ... bindings). The lab cluster's RBAC (apiserver/rbac.py) has no
such roles, so the components are trusted, as before: no RBAC check, no escalation check, no
strict decoding and no per-student write quota apply to their writes (RequestState.requester
stays None; the platform's reserve above the student's limits is theirs). A student cannot get
this trust: impersonating system:kube-controller-manager or a node makes a request whose
requester is that user, which RBAC and the quota judge as any other.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from runtime.kube import registry
from runtime.kube.apiserver.admission import NODE_PREFIX, NODES_GROUP
from runtime.kube.apiserver.cluster import Cluster, RequestState
from runtime.kube.machinery.apierrors import ApiError
from runtime.kube.meta import Obj, User

if TYPE_CHECKING:
    from runtime.kube.registry import ResourceDef


# client-go's retry.DefaultRetry: Steps 5 (its 10 ms backoff is not needed here: a conflict in
# one process means the object changed between our read and our write, and a re-read sees it)
RETRY_STEPS = 5


# the users kube-apiserver authenticates the components as (their client certificates' CN/O)
CONTROLLER_MANAGER = User("system:kube-controller-manager", ("system:authenticated",))
SCHEDULER = User("system:kube-scheduler", ("system:authenticated",))


def node_user(node: str) -> User:
    """A node's kubelet: ``system:node:<node>`` in ``system:nodes`` (the Node authorizer's and
    NodeRestriction's identity of a kubelet)."""
    return User(NODE_PREFIX + node, (NODES_GROUP, "system:authenticated"))


class Client:
    """Writes into ``cluster`` as the component ``user`` whose field manager is ``manager``."""

    def __init__(self, cluster: Cluster, manager: str, user: User) -> None:
        self.cluster = cluster
        self.manager = manager
        self.user = user

    @contextmanager
    def _acting(self) -> Iterator[RequestState]:
        with self.cluster.acting(RequestState(manager=self.manager, component=self.user)) as st:
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

    def finalize(self, rdef: ResourceDef, obj: Obj) -> Obj:
        """PUT namespaces/NAME/finalize (the namespace controller's Finalize): only
        ``spec.finalizers`` of ``obj`` is written; a terminating Namespace with none left (and
        no metadata.finalizers) is removed by the API server (ShouldDeleteNamespaceDuringUpdate),
        its watchers seeing DELETED."""
        meta = obj["metadata"]
        with self._acting():
            out, _ = self.cluster.update(rdef, "", meta["name"], obj, sub="finalize")
        return out

    def remove_unserved(self, gr: str, ns: str, name: str) -> bool:
        """Remove a stored object whose kind the API no longer serves (no built-in resource, no
        CRD serving ``gr``): the one removal with no API verb behind it. Such objects are left
        when a CRD went while objects of it remained (its cleanup finalizer dropped by hand);
        kube-apiserver leaves them in etcd, unreachable, but here a terminating namespace holding
        one would wait for it forever, so the namespace controller has the server drop it. A
        kind still served is refused (False): it must take the delete path."""
        if gr in registry.BY_GR or any(d.gr == gr for d in self.cluster.custom_defs()):
            return False
        return self.cluster.store.remove(gr, ns, name) is not None

    def bind(self, pod: Obj, node: str) -> Obj:
        """POST pods/NAME/binding (as kube-scheduler binds): the bound pod."""
        meta = pod["metadata"]
        with self._acting():
            return self.cluster.subresources.bind(meta["namespace"], meta["name"], node)

    def delete(
        self, rdef: ResourceDef, ns: str, name: str, policy: str = "", *, grace: int | None = None, uid: str = ""
    ) -> Obj | None:
        """DELETE through the API's delete path (finalizers, propagation policy, a bound pod's
        grace period when a kubelet runs); ``uid`` is a Preconditions.UID (409 when the name now
        holds another object). None when the object is already gone (404), as controllers
        ignore IsNotFound on delete."""
        pre = {"uid": uid} if uid else None
        with self._acting():
            try:
                return self.cluster.delete(rdef, ns, name, policy, grace=grace, preconditions=pre)
            except ApiError as e:
                if e.status == 404:
                    return None
                raise

    def modify(
        self, rdef: ResourceDef, ns: str, name: str, change: Callable[[Obj], bool], *, status: bool = False
    ) -> Obj | None:
        """Get, change, update, retried on conflict as client-go's ``retry.RetryOnConflict``:
        ``change`` edits a copy of the current object in place and says whether there is
        anything to write; on a 409 (the object changed since it was read) it is re-read and
        the change applied again, up to ``RETRY_STEPS`` times (then the 409 is raised).
        ``status``: write through the status subresource. The written object, the current
        one when ``change`` had nothing to write, None when the object is gone."""
        for step in range(RETRY_STEPS):
            cur = self.cluster.store.get(rdef.gr, ns, name)
            if cur is None:
                return None
            new = copy.deepcopy(cur)
            if not change(new):
                return cur
            try:
                return self.update_status(rdef, new) if status else self.update(rdef, new)
            except ApiError as e:
                if e.status != 409 or e.reason != "Conflict" or step == RETRY_STEPS - 1:
                    raise
        raise AssertionError("unreachable")
