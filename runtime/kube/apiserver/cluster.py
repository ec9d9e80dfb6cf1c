"""One lab cluster: authentication, the REST verbs over the generic store, controllers.

``Cluster.handle(Request)`` serves one API request and returns a ``Reply``
(or a ``WatchReply`` that apiserver/server.py streams). It is transport-free so the
same cluster can be served over TCP+TLS (apiserver/server.py) or, later, over runtimed's
unix socket. Everything runs on one asyncio loop, so there is no locking: a
request's read-modify-write is atomic by construction.

Here: the routing, the generic verbs' writes (create, update, patch and apply, delete) and
the status and scale subresources. Beside it: request.py decodes bodies and DeleteOptions,
listwatch.py answers list and watch, subresources.py holds the subresources with a REST
storage of their own (pods/exec, eviction, binding, serviceaccounts/token...).
"""

from __future__ import annotations

import copy
import json
import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from runtime.kernel.clock import now_ts
from runtime.kube import registry
from runtime.kube.apiserver import admission, discovery, listwatch, openapi, rbac
from runtime.kube.apiserver.allocator import ServiceAllocator
from runtime.kube.apiserver.auth import TokenAuthenticator
from runtime.kube.apiserver.podio import PodIO
from runtime.kube.apiserver.request import delete_options, is_protobuf, json_body, truthy
from runtime.kube.apiserver.store import Store
from runtime.kube.apiserver.subresources import Subresources, scale_of
from runtime.kube.machinery import ssa
from runtime.kube.machinery.apierrors import (
    MODIFIED,
    ApiError,
    FieldError,
    already_exists,
    bad_request,
    conflict,
    forbidden,
    forbidden_message,
    invalid,
    invalid_error,
    method_not_allowed,
    not_found,
)
from runtime.kube.machinery.limits import Limits
from runtime.kube.machinery.patch import (
    APPLY,
    JSONPATCH,
    MERGEPATCH,
    STRATEGIC,
    json_patch,
    merge_patch,
    strategic_merge,
)
from runtime.kube.meta import Obj, Reply, Request, User, WatchReply, random_suffix
from runtime.kube.node.portforward import Budget
from runtime.kube.registry import ResourceDef, crd, kinds, strategies

log = logging.getLogger(__name__)

KUBE_VERSION = {
    "major": "1",
    "minor": "37",
    "emulationMajor": "1",
    "emulationMinor": "37",
    "minCompatibilityMajor": "1",
    "minCompatibilityMinor": "36",
    "gitVersion": "v1.37.1",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.25.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}


def _builtin_kind(rdef: ResourceDef) -> tuple[str, ...]:
    """The kinds a create/update of ``rdef`` decodes from protobuf: its own for built-in types;
    none for custom resources (kube-apiserver serves those as JSON and YAML only)."""
    return () if rdef.custom else (rdef.kind,)


class ControllerManager(Protocol):
    """What the API server asks of kube-controller-manager (controllers/manager.py's
    ``Controllers``): run the loops after a write or when the clock says so (``next_due``:
    when), orphan an owner's dependents on a ``propagationPolicy: Orphan`` delete, and record
    Events for the node's agents (kubelet, ingress, NetworkPolicy: ``host`` their node,
    ``client`` the agent's own API client, so the write carries its identity). Whoever builds a
    ``Cluster`` hands in the factory, so the API server does not import controllers/ (#16)."""

    def reconcile(self) -> None: ...

    def has_timers(self) -> bool: ...

    def next_due(self) -> float | None: ...

    def orphan(self, owner: Obj) -> None: ...

    def event(
        self, obj: Obj, typ: str, reason: str, message: str, component: str, *, host: str = "", client: Any = None
    ) -> None: ...


ControllerFactory = Callable[["Cluster"], ControllerManager]


@dataclass
class RequestState:
    """Who writes, and how, in one request (or one controller pass): the field manager of the
    write in progress (machinery/ssa.py), whether it is a server-side apply and its config, the
    authenticated user (None while controllers write) and the Warning headers gathered so far.

    It lives in a ContextVar rather than on the long-lived Cluster, so two requests served at
    the same time (threads, or a reconcile run by the kubelet's thread during a request) never
    see each other's user or field manager. A ContextVar rather than an argument because the
    state is read deep inside create/update/delete, admission and pod security, which are also
    called by controllers and would all need a new parameter."""

    manager: str = "kube-controller-manager"
    requester: User | None = None
    applying: bool = False
    apply_config: Obj | None = None
    warnings: list[str] = field(default_factory=list)
    # the identity of the lab's own component writing (an apiserver/client.py Client:
    # system:kube-controller-manager, system:kube-scheduler, system:node:<node>); its writes are
    # trusted, so ``requester`` (what RBAC, escalation checks and the student quota key on)
    # stays None for them
    component: User | None = None

    @property
    def user(self) -> User | None:
        """Who writes: the request's authenticated user, or the component (admission keys on it)."""
        return self.requester if self.requester is not None else self.component


# (cluster, its state) of the request or controller pass this thread/task is serving
_STATE: ContextVar[tuple[Cluster, RequestState] | None] = ContextVar("kube_request_state", default=None)


class Cluster(TokenAuthenticator):
    """One cluster: its store, its tokens, its controllers (``controllers`` builds them)."""

    def __init__(
        self, name: str, directory: Path, limits: Limits | None = None, *, controllers: ControllerFactory
    ) -> None:
        self.name = name
        self.dir = directory
        meta = json.loads((directory / "cluster.json").read_text())
        self.uid: str = meta["uid"]
        # the server's defaults, with this cluster's own overrides (machinery/limits.py)
        self.limits = Limits.from_dict(meta.get("limits") or {}, limits)
        self.tokens: dict[str, dict[str, Any]] = {}
        self._tokens_stamp: tuple[int, int] = (0, 0)
        self._reload_tokens()
        self.store = Store(directory / "store.jsonl", self.limits, codec=_wire_defaults)
        self._dirty = False
        self._crd_key: tuple[tuple[str, str], ...] = ()
        self._crd_defs: list[ResourceDef] = []
        # the kubelet side of logs/exec/attach (apiserver/podio.py); None: pods never start
        self.pod_io: PodIO | None = None
        self.forward_budget = Budget()  # port-forward connections of all sessions (node/portforward.py)
        # the REST storages of pods/log|exec|attach|portforward|eviction|binding, the legacy bindings
        # and serviceaccounts/token (subresources.py); the strategies' tables reach them through here
        self.subresources = Subresources(self)
        # ClusterIPs and NodePorts (apiserver/allocator.py), used by the Service strategy
        self.service_allocator = ServiceAllocator(self.store)
        self.controllers: ControllerManager = controllers(self)
        # Set by the kubelet's host (node/kubelet.py) when one runs this cluster's pods: called
        # after every reconcile; with it, bound pods are deleted gracefully (see delete).
        self.kubelet_notify: Callable[[], None] | None = None
        # Set by the sandbox's NetworkPolicy agent (node/netpol.py): called after every reconcile too.
        self.network_notify: Callable[[], None] | None = None

    # -- request-scoped state (RequestState) -------------------------------------------

    @property
    def request_state(self) -> RequestState:
        """The state of the request or controller pass in progress in this context; outside
        both (a controller writing from a timer or the kubelet's thread), a fresh controller
        state, so nothing of an earlier request leaks into the write."""
        cur = _STATE.get()
        if cur is not None and cur[0] is self:
            return cur[1]
        return RequestState()

    @contextmanager
    def acting(self, state: RequestState | None = None) -> Iterator[RequestState]:
        """Serve a request (or run controllers, with the default state) as ``state``."""
        st = state if state is not None else RequestState()
        token = _STATE.set((self, st))
        try:
            yield st
        finally:
            _STATE.reset(token)

    # -- custom resources ----------------------------------------------------------

    def custom_defs(self) -> list[ResourceDef]:
        """ResourceDefs of this cluster's established CRDs (cached by the CRDs' resourceVersions)."""
        crds = self.store.list(crd.GR)
        key = tuple((c["metadata"]["name"], c["metadata"].get("resourceVersion", "")) for c in crds)
        if key != self._crd_key:
            self._crd_key = key
            self._crd_defs = crd.defs_from_crds(crds)
        return self._crd_defs

    def lookup(self, group: str, version: str, resource: str) -> ResourceDef | None:
        r = registry.BY_GVR.get((group, version, resource))
        if r is not None:
            return r
        for d in self.custom_defs():
            if (d.group, d.version, d.resource) == (group, version, resource):
                return d
        return None

    # -- auth (bearer tokens: auth.py) ----------------------------------------------

    def impersonate(self, req: Request, user: User) -> User:
        as_user = req.headers.get("impersonate-user")
        if not as_user:
            return user
        as_groups = [g.strip() for g in req.headers.get("impersonate-group", "").split(",") if g.strip()]
        if not rbac.allowed(self, user, "impersonate", "", "users", "", as_user, ""):
            raise forbidden(
                "users",
                "",
                as_user,
                f'users "{as_user}" is forbidden: User "{user.name}" cannot impersonate '
                f'resource "users" in API group "" at the cluster scope',
            )
        for g in as_groups:
            if not rbac.allowed(self, user, "impersonate", "", "groups", "", g, ""):
                raise forbidden(
                    "groups",
                    "",
                    g,
                    f'groups "{g}" is forbidden: User "{user.name}" cannot impersonate '
                    f'resource "groups" in API group "" at the cluster scope',
                )
        groups = tuple(as_groups)
        if as_user.startswith("system:serviceaccount:"):
            ns = as_user.split(":")[2]
            groups += ("system:serviceaccounts", f"system:serviceaccounts:{ns}")
        if "system:authenticated" not in groups:
            groups += ("system:authenticated",)
        return User(as_user, groups)

    # -- entry point ---------------------------------------------------------------

    def handle(self, req: Request) -> Reply | WatchReply:
        with self.acting() as st:
            try:
                reply = self._route(req)
                if isinstance(reply, Reply) and "/endpoints" in req.path and req.path.startswith("/api/"):
                    reply.warnings.append("v1 Endpoints is deprecated in v1.33+; use discovery.k8s.io/v1 EndpointSlice")
            except ApiError as e:
                reply = Reply(e.status, e.to_status())
        try:
            if isinstance(reply, Reply):
                reply.warnings[:0] = st.warnings
            return reply
        finally:
            if self._dirty:
                self._dirty = False
                try:
                    self.controllers.reconcile()
                except Exception:  # a controller bug must not fail the write that triggered it
                    log.exception("controllers of cluster %s failed", self.name)

    def _route(self, req: Request) -> Reply | WatchReply:
        p = req.path.rstrip("/") or "/"
        segs = [s for s in p.split("/") if s]
        accept = req.headers.get("accept", "")
        if p == "/version":
            return Reply(200, KUBE_VERSION)
        if p in ("/healthz", "/livez", "/readyz"):
            return Reply(200, "ok", "text/plain")
        extra = self.custom_defs()
        if segs and segs[0] == "openapi":
            return openapi.handle(segs, req.query, extra, accept)
        if p == "/api":
            if discovery.wants_aggregated(accept):
                return Reply(200, discovery.aggregated(True), discovery.AGGREGATED_CT)
            return Reply(200, discovery.api_versions(req.headers.get("host", "")))
        if p == "/apis":
            if discovery.wants_aggregated(accept):
                return Reply(200, discovery.aggregated(False, extra), discovery.AGGREGATED_CT)
            return Reply(200, discovery.api_group_list(extra))
        if segs[:2] == ["api", "v1"] and len(segs) == 2:
            doc = discovery.resource_list("", "v1")
            return Reply(200, doc)
        if segs and segs[0] == "apis" and len(segs) == 2:
            grp = discovery.api_group(segs[1], extra)
            if grp is None:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            return Reply(200, grp)
        if segs and segs[0] == "apis" and len(segs) == 3:
            doc = discovery.resource_list(segs[1], segs[2], extra)
            if doc is None:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            return Reply(200, doc)
        if segs[:2] == ["api", "v1"]:
            return self._resource(req, "", "v1", segs[2:])
        if segs and segs[0] == "apis" and len(segs) > 3:
            return self._resource(req, segs[1], segs[2], segs[3:])
        raise ApiError(404, "NotFound", "the server could not find the requested resource")

    # -- resource requests ---------------------------------------------------------

    def _resource(self, req: Request, group: str, version: str, rest: list[str]) -> Reply | WatchReply:
        ns = ""
        if len(rest) >= 3 and rest[0] == "namespaces":
            cand = self.lookup(group, version, rest[2])
            if cand is not None and cand.namespaced:
                ns = rest[1]
                rest = rest[2:]
        rdef = self.lookup(group, version, rest[0])
        proxy = len(rest) > 2 and rest[2] == "proxy"  # services/NAME[:PORT]/proxy/PATH...
        if rdef is None or (len(rest) > 3 and not proxy):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if proxy:
            rest = rest[:3]
        if rdef.deprecation_warning:
            self.request_state.warnings.append(rdef.deprecation_warning)
        name = rest[1] if len(rest) > 1 else ""
        sub = rest[2] if len(rest) > 2 else ""
        if sub and sub not in rdef.subresources:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if ns and not rdef.namespaced:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        m = req.method
        if m == "GET":
            if name:
                verb = "get"
            elif truthy(req.query.get("watch")):
                verb = "watch"
            else:
                verb = "list"
        elif m == "POST":
            verb = "create"
        elif m == "PUT":
            verb = "update"
        elif m == "PATCH":
            verb = "patch"
        elif m == "DELETE":
            verb = "delete" if name else "deletecollection"
        else:
            raise method_not_allowed("the server does not allow this method on the requested resource")
        if verb == "get" and sub in ("exec", "attach", "portforward"):
            # a WebSocket upgrade is a GET; kube-apiserver authorizes it as the create it is
            # (AuthorizePodWebsocketUpgradeCreatePermission), as SPDY's POST always was
            verb = "create"
        if rdef.terminating and verb == "create" and not sub:  # crdHandler.serveResource
            raise ApiError(
                405,
                "MethodNotAllowed",
                "create not allowed while custom resource definition is terminating",
                {"group": rdef.group, "kind": rdef.resource},
            )
        if verb not in rdef.verbs and not sub and not rdef.terminating:
            raise method_not_allowed("the server does not allow this method on the requested resource")
        if name and verb == "create" and not sub:
            raise method_not_allowed("the server does not allow this method on the requested resource")
        if not name and verb in ("update", "patch"):  # no such route on a collection
            raise method_not_allowed()
        assert req.user is not None
        ua = req.headers.get("user-agent", "").split("/", 1)[0]
        st = self.request_state
        st.manager = req.query.get("fieldManager") or ua or "unknown"
        st.applying = False
        st.apply_config = None
        st.requester = req.user
        if not rbac.allowed(self, req.user, verb, rdef.group, rdef.resource, ns, name, sub):
            raise forbidden(
                rdef.resource,
                rdef.group,
                name,
                forbidden_message(req.user.name, verb, rdef.resource, rdef.group, ns, name, sub),
            )
        strategy = strategies.for_resource(rdef)
        connect = strategy.connect_subresources.get(sub)
        if connect is not None:
            return connect(self, req, rdef, ns, name, sub)
        if rdef.virtual:
            own = strategy.create_virtual(self, req, rdef, ns)
            if own is not None:
                return own
            return Reply(201, rbac.review(self, req.user, rdef, ns, json_body(req, expect=(rdef.kind,))))
        if verb == "get":
            if sub == "scale":
                return Reply(200, scale_of(rdef, self.must_get(rdef, ns, name)))
            if sub not in ("", "status"):
                get_sub = strategy.get_subresources.get(sub)
                if get_sub is None:  # reached by other verbs only (pods/eviction, namespaces/finalize...)
                    self.must_get(rdef, ns, name)
                    raise method_not_allowed("the server does not allow this method on the requested resource")
                return get_sub(self, req, rdef, ns, name, sub)
            return self._reply_obj(req, rdef, self.must_get(rdef, ns, name), 200)
        if verb == "list":
            return listwatch.list_objects(self.store, req, rdef, ns)
        if verb == "watch":
            return listwatch.watch(self.store, req, rdef, ns, name)
        dry = req.query.get("dryRun") == "All"
        if verb == "create":
            if sub:
                return self._create_sub(req, rdef, ns, name, sub)
            obj = json_body(req, self.limits, _builtin_kind(rdef))
            out = self.create(rdef, ns, obj, dry_run=dry, validation=req.query.get("fieldValidation", ""))
            return self._reply_obj(req, rdef, out, 201)
        if verb == "update":
            # a status update carries what we do not decode from protobuf (machinery/protobuf.py): JSON only
            obj = json_body(req, self.limits, ("Scale",) if sub == "scale" else () if sub else _builtin_kind(rdef))
            if sub == "scale":
                return Reply(200, self._update_scale(rdef, ns, name, obj, dry))
            out, created = self.update(rdef, ns, name, obj, sub=sub, dry_run=dry)
            return self._reply_obj(req, rdef, out, 201 if created else 200)
        if verb == "patch":
            return self._patch(req, rdef, ns, name, sub, dry)
        if verb == "delete":
            opts = delete_options(req, self.limits)
            out = self.delete(
                rdef,
                ns,
                name,
                opts.policy,
                dry_run=dry or opts.dry_run,
                preconditions=opts.preconditions,
                grace=opts.grace,
            )
            gone = self.store.get(rdef.gr, ns, name) is None or (
                (dry or opts.dry_run) and not out["metadata"].get("finalizers")
            )
            if gone and not rdef.return_deleted_object:
                return Reply(200, _deleted_status(rdef, out))
            return self._reply_obj(req, rdef, out, 200)
        if verb == "deletecollection":
            opts = delete_options(req, self.limits)
            objs = listwatch.select(self.store, req, rdef, ns)
            for o in objs:
                self.delete(
                    rdef,
                    o["metadata"].get("namespace", ""),
                    o["metadata"]["name"],
                    opts.policy,
                    dry_run=dry or opts.dry_run,
                    grace=opts.grace,
                )
            return Reply(200, listwatch.list_body(rdef, objs, {"resourceVersion": str(self.store.rv)}))
        raise method_not_allowed("the server does not allow this method on the requested resource")

    def _reply_obj(self, req: Request, rdef: ResourceDef, obj: Obj, status: int) -> Reply:
        obj = self._served(rdef, obj)
        if "as=Table" in req.headers.get("accept", ""):
            inc = req.query.get("includeObject", "Metadata")
            t = strategies.for_resource(rdef).convert_to_table(
                rdef, [obj], inc, {"resourceVersion": obj["metadata"].get("resourceVersion", "")}
            )
            return Reply(status, t, "application/json;as=Table;v=v1;g=meta.k8s.io")
        return Reply(status, obj)

    def must_get(self, rdef: ResourceDef, ns: str, name: str) -> Obj:
        """The stored object ``ns/name`` of ``rdef``, or the 404 the real server answers."""
        obj = self.store.get(rdef.gr, ns, name)
        if obj is None:
            raise not_found(rdef.resource, rdef.group, name)
        return obj

    def mark_dirty(self) -> None:
        """Have the controllers reconcile once the request is answered (``handle``), as after
        every write of the generic verbs: for the writes of the subresource storages
        (subresources.py)."""
        self._dirty = True

    @contextmanager
    def quiet_writes(self) -> Iterator[None]:
        """Writes made inside leave the mark for a reconcile after the request as it was: for
        the writes of a reconcile itself (its loop goes on until nothing changes) and of a
        caller that reconciles on its own afterwards (the kubelet)."""
        dirty = self._dirty
        try:
            yield
        finally:
            self._dirty = dirty

    def _served(self, rdef: ResourceDef, obj: Obj) -> Obj:
        """A stored custom resource as the request's version shows it (crd.served)."""
        return crd.served(rdef, obj)

    def _stored(self, rdef: ResourceDef, obj: Obj) -> Obj:
        """A custom resource as it is stored: in the CRD's storage version."""
        if rdef.custom and rdef.storage_version:
            return crd.as_version(obj, f"{rdef.group}/{rdef.storage_version}")
        return obj

    # -- writes --------------------------------------------------------------------------

    def _check_namespace(self, rdef: ResourceDef, ns: str, name: str) -> None:
        if not rdef.namespaced:
            return
        nso = self.store.get("namespaces", "", ns)
        if nso is None:
            raise not_found("namespaces", "", ns)
        if nso["metadata"].get("deletionTimestamp"):
            raise forbidden(
                rdef.resource,
                rdef.group,
                name,
                f'{rdef.resource}{"." + rdef.group if rdef.group else ""} "{name}" is forbidden: '
                f"unable to create new content in namespace {ns} because it is being terminated",
            )

    def create(
        self,
        rdef: ResourceDef,
        ns: str,
        obj: Any,
        *,
        dry_run: bool = False,
        validation: str = "",
        internal: bool = False,
    ) -> Obj:
        if not isinstance(obj, dict):
            raise bad_request("the body of the request was in an unknown format")
        obj = copy.deepcopy(obj)
        self._check_type(rdef, obj)
        if not internal:
            self._check_value_types(rdef, obj)
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        if rdef.namespaced:
            body_ns = meta.get("namespace")
            if body_ns and ns and body_ns != ns:
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            ns = ns or body_ns or ""
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + random_suffix()
        name = meta.get("name", "")
        for k in ("uid", "resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"):
            meta.pop(k, None)
        meta.pop("managedFields", None)
        if not internal:
            self._strict_fields(rdef, obj, validation)
        meta["uid"] = str(uuid.uuid4())
        if rdef.custom:
            obj = self._prune(rdef, obj)
            meta = obj["metadata"]
        strategy = strategies.for_resource(rdef)
        strategy.default(obj)
        if self.request_state.requester is not None and not internal:
            rbac.check_escalation(self, self.request_state.requester, rdef, ns, obj)
        admission.mutate(self, rdef, obj)
        strategy.prepare_for_create(self, obj)
        errs = self._validate(rdef, obj)
        if errs:
            raise invalid_error(rdef.kind, rdef.group, name, errs)
        self._check_namespace(rdef, ns, name)
        if self.store.get(rdef.gr, ns, name) is not None:
            raise already_exists(rdef.resource, rdef.group, name)
        admission.admit(self, rdef, obj)
        meta["creationTimestamp"] = now_ts()
        if rdef.has_generation:
            meta["generation"] = 1
        if self.request_state.apply_config is not None:
            meta["managedFields"] = [
                {
                    "manager": self.request_state.manager,
                    "operation": "Apply",
                    "apiVersion": rdef.group_version,
                    "time": meta["creationTimestamp"],
                    "fieldsType": "FieldsV1",
                    "fieldsV1": ssa.to_tree(ssa.leaves(self.request_state.apply_config)),
                }
            ]
        else:
            ssa.record_update(obj, None, self.request_state.manager, rdef.group_version, meta["creationTimestamp"])
        obj = _ordered(rdef, obj)
        openapi.zero_fill_status(rdef, obj)
        if dry_run:
            return dict(obj)
        self._dirty = True
        user = self.request_state.requester is not None and not internal
        stored: Obj = self.store.put(rdef.gr, self._stored(rdef, obj), "ADDED", user=user)
        return stored

    def _prune(self, rdef: ResourceDef, obj: Obj) -> Obj:
        unknown: list[str] = []
        pruned: Obj = crd.default_and_prune(rdef.schema or {}, obj, "", unknown, top=True)
        return pruned

    def _validate(self, rdef: ResourceDef, obj: Obj, old: Obj | None = None) -> list[FieldError]:
        if rdef.custom:
            errs = kinds.validate_meta(rdef.kind, obj, rdef.namespaced) + crd.validate_cr(rdef, obj)
            return errs or crd.validate_rules(rdef, obj, old)
        return kinds.validate_meta(rdef.kind, obj, rdef.namespaced) + strategies.for_resource(rdef).validate(obj)

    def _check_value_types(self, rdef: ResourceDef, obj: Obj) -> None:
        """A value of the wrong JSON type for its field (``replicas: three``, a label ``1``):
        400, as kube-apiserver's decoding into the Go struct fails before any validation.
        The causes carry the fields' paths (the real message names them without indices),
        which the lab editor uses to mark the line."""
        if self.request_state.requester is None:  # controllers write well-typed objects
            return
        errs = openapi.type_errors(rdef, obj)
        if errs:
            raise ApiError(
                400,
                "BadRequest",
                f'{rdef.kind} in version "{rdef.version}" cannot be handled as a {rdef.kind}: {errs[0][1]}',
                {"causes": [{"reason": "FieldValueTypeInvalid", "message": m, "field": f} for f, m in errs]},
            )

    def _check_type(self, rdef: ResourceDef, obj: Obj) -> None:
        kind = obj.get("kind")
        av = obj.get("apiVersion")
        if kind and kind != rdef.kind:
            raise bad_request(
                f"the API version in the data ({av}) does not match the expected API version ({rdef.group_version})"
                if av and av != rdef.group_version
                else f'{kind} in version "{rdef.version}" cannot be handled as a {rdef.kind}: '
                "the object kind does not match"
            )
        if av and av != rdef.group_version:
            raise bad_request(
                f"the API version in the data ({av}) does not match the expected API version ({rdef.group_version})"
            )
        obj["kind"] = rdef.kind
        obj["apiVersion"] = rdef.group_version

    def _strict_fields(self, rdef: ResourceDef, obj: Obj, validation: str) -> None:
        if validation not in ("Strict", "Warn"):
            return
        if rdef.custom:
            unknown: list[str] = []
            crd.default_and_prune(rdef.schema or {}, obj, "", unknown, top=True)
        else:
            unknown = openapi.unknown_fields(rdef, obj)
        if unknown and validation == "Strict":
            agg = ", ".join(f'unknown field "{u}"' for u in unknown)
            raise bad_request(
                f'{rdef.kind} in version "{rdef.version}" cannot be handled as a {rdef.kind}: '
                f"strict decoding error: {agg}"
            )

    def update(
        self,
        rdef: ResourceDef,
        ns: str,
        name: str,
        obj: Any,
        *,
        sub: str = "",
        dry_run: bool = False,
        check_rv: bool = True,
    ) -> tuple[Obj, bool]:
        if not isinstance(obj, dict):
            raise bad_request("the body of the request was in an unknown format")
        obj = copy.deepcopy(obj)
        self._check_type(rdef, obj)
        if sub in ("", "status"):  # a status body is the whole object, decoded the same way
            self._check_value_types(rdef, obj)
        meta = obj.setdefault("metadata", {})
        if meta.get("name") and meta["name"] != name:
            raise bad_request(f"the name of the object ({meta['name']}) does not match the name on the URL ({name})")
        if rdef.namespaced:
            if meta.get("namespace") and meta["namespace"] != ns:
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = ns
        meta["name"] = name
        old = self.store.get(rdef.gr, ns, name)
        if old is None:
            raise not_found(rdef.resource, rdef.group, name)
        old = self._served(rdef, old)
        rv = meta.get("resourceVersion")
        if check_rv and rv and rv != old["metadata"].get("resourceVersion"):
            raise conflict(rdef.resource, rdef.group, name, MODIFIED)
        new = self._merge_update(rdef, old, obj, sub)
        return self._commit_update(rdef, old, new, dry_run, sub), False

    def _merge_update(self, rdef: ResourceDef, old: Obj, obj: Obj, sub: str) -> Obj:
        if sub == "status":
            new = copy.deepcopy(old)
            if "status" in obj:
                new["status"] = obj["status"]
            strategies.for_resource(rdef).prepare_for_status_update(new, obj)
            return new
        if sub == "finalize":  # namespaces: only spec.finalizers change (finalize strategy)
            new = copy.deepcopy(old)
            fins = (obj.get("spec") or {}).get("finalizers")
            spec = new.setdefault("spec", {})
            spec["finalizers"] = list(fins) if isinstance(fins, list) else []
            if not spec["finalizers"]:  # omitempty
                del spec["finalizers"]
            return new
        if sub == "ephemeralcontainers":
            new = copy.deepcopy(old)
            eph = (obj.get("spec") or {}).get("ephemeralContainers")
            for c in eph or []:
                if isinstance(c, dict):
                    kinds.default_container(c)
            if eph is not None:
                new["spec"]["ephemeralContainers"] = eph
            return new
        if sub == "resize":
            new = copy.deepcopy(old)
            by_name = {c.get("name"): c for c in (obj.get("spec") or {}).get("containers") or []}
            for c in new["spec"].get("containers") or []:
                if c.get("name") in by_name and "resources" in by_name[c["name"]]:
                    c["resources"] = by_name[c["name"]]["resources"]
            return new
        new = obj
        meta = new["metadata"]
        ometa = old["metadata"]
        for k in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"):
            if k in ometa:
                meta[k] = ometa[k]
            else:
                meta.pop(k, None)
        if not self.request_state.applying:
            if "managedFields" in ometa:
                meta["managedFields"] = ometa["managedFields"]
            else:
                meta.pop("managedFields", None)
        if rdef.status_subresource:
            if "status" in old:
                new["status"] = old["status"]
            else:
                new.pop("status", None)
        strategy = strategies.for_resource(rdef)
        strategy.keep_on_update(new, old)
        strategy.default(new)
        return new

    def _commit_update(self, rdef: ResourceDef, old: Obj, new: Obj, dry_run: bool, sub: str = "") -> Obj:
        name = new["metadata"]["name"]
        if rdef.custom:
            new = self._prune(rdef, new)
        if self.request_state.requester is not None and not sub and not _only_gc_change(new, old):
            rbac.check_escalation(self, self.request_state.requester, rdef, new["metadata"].get("namespace", ""), new)
        errs = self._validate(rdef, new, old) + strategies.for_resource(rdef).validate_update(new, old)
        if errs:
            raise invalid_error(rdef.kind, rdef.group, name, errs)
        if sub in ("", "ephemeralcontainers"):
            admission.admit_update(self, rdef, new, old)
        elif sub == "status":
            admission.node_restriction(self, rdef, old, "update")
        new["metadata"]["resourceVersion"] = old["metadata"].get("resourceVersion")
        if rdef.has_generation:
            a = {k: v for k, v in new.items() if k not in ("metadata", "status")}
            b = {k: v for k, v in old.items() if k not in ("metadata", "status")}
            if a != b:
                new["metadata"]["generation"] = int(old["metadata"].get("generation", 1)) + 1
        new = _ordered(rdef, new)
        openapi.zero_fill_status(rdef, new)
        if new == old:
            return old
        if not self.request_state.applying:
            ssa.record_update(new, old, self.request_state.manager, rdef.group_version, now_ts(), sub)
        if dry_run:
            return new
        strategies.for_resource(rdef).prepare_for_update(self, new, old)
        self._dirty = True
        user = self.request_state.requester is not None
        out = self.store.put(rdef.gr, self._stored(rdef, new), "MODIFIED", user=user)
        self._maybe_finish_delete(rdef, out, old)
        return out

    def _patch(self, req: Request, rdef: ResourceDef, ns: str, name: str, sub: str, dry: bool) -> Reply:
        ctype = req.headers.get("content-type", "").split(";")[0].strip()
        if is_protobuf(req):  # no patch type is protobuf: refused before reading it as one
            raise ApiError(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - accepted media types include: "
                f"{JSONPATCH}, {MERGEPATCH}, {STRATEGIC}, {APPLY}",
            )
        body = json_body(req, self.limits)
        if ctype == JSONPATCH and isinstance(body, list) and len(body) > self.limits.max_json_patch_operations:
            raise ApiError(
                413,
                "RequestEntityTooLarge",
                "Request entity too large: The allowed maximum operations in a JSON patch is "
                f"{self.limits.max_json_patch_operations}, got {len(body)}",
            )
        old = self.store.get(rdef.gr, ns, name)
        if old is not None:
            old = self._served(rdef, old)
        if ctype == APPLY:
            return self._apply(req, rdef, ns, name, body, old, dry)
        if old is None:
            raise not_found(rdef.resource, rdef.group, name)
        base: Any = scale_of(rdef, old) if sub == "scale" else copy.deepcopy(old)
        if ctype == JSONPATCH:
            patched = json_patch(base, body, max_copy_bytes=self.limits.json_patch_max_copy_bytes)
        elif ctype == MERGEPATCH:
            patched = merge_patch(base, body)
        elif ctype == STRATEGIC and rdef.custom:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - accepted media types include: "
                f"{JSONPATCH}, {MERGEPATCH}, {APPLY}",
            )
        elif ctype == STRATEGIC:
            patched = strategic_merge(base, body)
        else:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - accepted media types include: "
                f"{JSONPATCH}, {MERGEPATCH}, {STRATEGIC}, {APPLY}",
            )
        if not isinstance(patched, dict):
            raise bad_request("the patch produced a non-object")
        if sub == "scale":
            return Reply(200, self._update_scale(rdef, ns, name, patched, dry))
        if not sub:
            self._strict_fields(rdef, patched, req.query.get("fieldValidation", ""))
        pm = patched.setdefault("metadata", {})
        check = isinstance(body, dict) and bool((body.get("metadata") or {}).get("resourceVersion"))
        if ctype == JSONPATCH:
            check = pm.get("resourceVersion") != old["metadata"].get("resourceVersion")
        if not check:
            pm["resourceVersion"] = old["metadata"].get("resourceVersion")
        out, _ = self.update(rdef, ns, name, patched, sub=sub, dry_run=dry)
        return self._reply_obj(req, rdef, out, 200)

    def _apply(
        self, req: Request, rdef: ResourceDef, ns: str, name: str, body: Any, old: Obj | None, dry: bool
    ) -> Reply:
        """Server-side apply (see machinery/ssa.py): ownership, conflicts, removal of unapplied fields."""
        if not isinstance(body, dict):
            raise bad_request("the body of the request was in an unknown format")
        manager = req.query.get("fieldManager", "")
        if not manager:
            raise bad_request("PATCH /apply requires fieldManager to be set")
        body.setdefault("metadata", {})["name"] = name
        self._check_type(rdef, body)
        if old is None:
            self.request_state.apply_config = body
            out = self.create(rdef, ns, body, dry_run=dry, validation=req.query.get("fieldValidation", ""))
            return self._reply_obj(req, rdef, out, 201)
        self._strict_fields(rdef, body, req.query.get("fieldValidation", ""))
        merged = ssa.apply(old, body, manager, rdef.group_version, now_ts(), truthy(req.query.get("force")))
        merged["metadata"]["resourceVersion"] = old["metadata"].get("resourceVersion")
        self.request_state.applying = True
        out, _ = self.update(rdef, ns, name, merged, dry_run=dry)
        return self._reply_obj(req, rdef, out, 200)

    def delete(
        self,
        rdef: ResourceDef,
        ns: str,
        name: str,
        policy: str = "",
        *,
        dry_run: bool = False,
        preconditions: Any = None,
        grace: int | None = None,
    ) -> Obj:
        """``grace``: DeleteOptions.gracePeriodSeconds. A pod bound to a node whose kubelet
        runs (``kubelet_notify`` set) is only marked (deletionTimestamp,
        deletionGracePeriodSeconds: its own terminationGracePeriodSeconds, default 30, unless
        ``grace`` says otherwise); the kubelet stops its containers and removes the object.
        Grace 0 (``--grace-period=0 --force``) removes it at once, as without a kubelet."""
        old = self.store.get(rdef.gr, ns, name)
        if old is None:
            raise not_found(rdef.resource, rdef.group, name)
        want_uid = preconditions.get("uid") if isinstance(preconditions, dict) else None
        if want_uid and want_uid != old["metadata"]["uid"]:
            raise conflict(
                rdef.resource,
                rdef.group,
                name,
                f"Precondition failed: UID in precondition: {want_uid}, UID in object meta: {old['metadata']['uid']}",
            )
        admission.admit_delete(rdef, name)
        admission.node_restriction(self, rdef, old, "delete")
        if dry_run:
            return old
        strategy = strategies.for_resource(rdef)
        if self.kubelet_notify is not None:
            secs = strategy.check_graceful_delete(old, grace)
            prev = old["metadata"].get("deletionGracePeriodSeconds")
            if secs > 0 and (prev is None or secs < int(prev)):
                new = copy.deepcopy(old)
                new["metadata"]["deletionTimestamp"] = now_ts()
                new["metadata"]["deletionGracePeriodSeconds"] = secs
                self._dirty = True
                return self.store.put(rdef.gr, new, "MODIFIED")
            if secs > 0:  # already terminating with a grace period no longer than this one
                return old
        finalizers = strategy.deletion_finalizers(old)
        if policy == "Orphan":
            self.controllers.orphan(old)
        elif policy == "Foreground":
            finalizers.append("foregroundDeletion")
        if finalizers:
            if old["metadata"].get("deletionTimestamp"):
                if not int(old["metadata"].get("deletionGracePeriodSeconds") or 0):
                    return old
                # a pod its kubelet stopped (grace 0) but a finalizer holds: no grace period
                # is left, so the update that drops the last finalizer removes it
                new = copy.deepcopy(old)
                new["metadata"]["deletionGracePeriodSeconds"] = 0
                self._dirty = True
                return self.store.put(rdef.gr, new, "MODIFIED")
            new = copy.deepcopy(old)
            new["metadata"]["deletionTimestamp"] = now_ts()
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            if policy == "Foreground" and "foregroundDeletion" not in (new["metadata"].get("finalizers") or []):
                new["metadata"]["finalizers"] = [*new["metadata"].get("finalizers", []), "foregroundDeletion"]
            strategy.prepare_for_delete(new)
            self._dirty = True
            return self.store.put(rdef.gr, new, "MODIFIED")
        self._dirty = True
        out = self.store.remove(rdef.gr, ns, name)
        assert out is not None
        return out

    def _maybe_finish_delete(self, rdef: ResourceDef, obj: Obj, old: Obj) -> None:
        """The written update ``obj`` of ``old`` removes it when the strategy says so
        (``should_delete_during_update``: its last finalizer went, no grace period is left)."""
        if strategies.for_resource(rdef).should_delete_during_update(obj, old):
            meta = obj["metadata"]
            self.store.remove(rdef.gr, meta.get("namespace", ""), meta["name"])

    # -- subresources ------------------------------------------------------------------

    def _update_scale(self, rdef: ResourceDef, ns: str, name: str, scale: Obj, dry: bool) -> Obj:
        old = self._served(rdef, self.must_get(rdef, ns, name))
        replicas = (scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise invalid_error(
                "Scale",
                "autoscaling",
                name,
                [invalid("spec.replicas", replicas, "must be greater than or equal to 0")],
            )
        rv = (scale.get("metadata") or {}).get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise conflict(rdef.resource, rdef.group, name, MODIFIED)
        new = copy.deepcopy(old)
        if rdef.custom and rdef.scale_paths is not None:
            crd.set_spec_replicas(new, rdef.scale_paths, replicas)
        else:
            new["spec"]["replicas"] = replicas
        out = self._commit_update(rdef, old, new, dry)
        return scale_of(rdef, out)

    def _create_sub(self, req: Request, rdef: ResourceDef, ns: str, name: str, sub: str) -> Reply:
        """POST to a subresource: its REST storage, as the resource's strategy registers it
        (registry/core.py: pods exec/attach/portforward/eviction/binding, serviceaccounts/token)."""
        create = strategies.for_resource(rdef).create_subresources.get(sub)
        if create is None:
            raise method_not_allowed("the server does not allow this method on the requested resource")
        return create(self, req, rdef, ns, name, sub)


_KEY_ORDER = ["apiVersion", "kind", "metadata", "spec", "status"]


def _deleted_status(rdef: ResourceDef, obj: Obj) -> Obj:
    """What the generic store's finalizeDelete answers for an object deleted at once when the
    resource does not return deleted objects: a Success Status naming it (Kind is the
    resource, as upstream sets it)."""
    details: Obj = {"name": obj["metadata"]["name"]}
    if rdef.group:
        details["group"] = rdef.group
    details["kind"] = rdef.resource
    details["uid"] = obj["metadata"].get("uid", "")
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}


def _wire_defaults(gr: str, obj: Obj) -> None:
    """The store's codec: what the real server's Go encoding always writes (apiserver/openapi.py)."""
    rdef = registry.BY_GR.get(gr)
    if rdef is not None:
        openapi.zero_fill_status(rdef, obj)


def _only_gc_change(new: Obj, old: Obj) -> bool:
    """IsOnlyMutatingGCFields: an update touching only ownerReferences/finalizers skips RBAC checks."""
    a, b = copy.deepcopy(new), copy.deepcopy(old)
    for o in (a, b):
        for k in ("ownerReferences", "finalizers", "managedFields", "resourceVersion"):
            o["metadata"].pop(k, None)
    return a == b


def _ordered(rdef: ResourceDef, obj: Obj) -> Obj:
    """Key order as a Go struct serialises (kubectl -o json shows it)."""
    out: Obj = {}
    for k in _KEY_ORDER:
        if k in obj:
            out[k] = obj[k]
    for k, v in obj.items():
        if k not in out:
            out[k] = v
    return out
