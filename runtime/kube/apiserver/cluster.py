"""One lab cluster: authentication, the REST verbs over the generic store, controllers.

``Cluster.handle(Request)`` serves one API request and returns a ``Reply``
(or a ``WatchReply`` that apiserver/server.py streams). It is transport-free so the
same cluster can be served over TCP+TLS (apiserver/server.py) or, later, over runtimed's
unix socket. Everything runs on one asyncio loop, so there is no locking: a
request's read-modify-write is atomic by construction.
"""

from __future__ import annotations

import base64
import copy
import datetime
import json
import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from runtime.kernel.clock import format_ts, now_ts
from runtime.kube import registry
from runtime.kube.apiserver import admission, discovery, openapi, rbac
from runtime.kube.apiserver.allocator import ServiceAllocator
from runtime.kube.apiserver.auth import TokenAuthenticator
from runtime.kube.apiserver.podio import ExecCall, LogCall, PodIO
from runtime.kube.apiserver.store import Store, Watcher
from runtime.kube.machinery import protobuf, ssa
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
    not_supported,
    required,
)
from runtime.kube.machinery.limits import Limits, expanded_size
from runtime.kube.machinery.patch import (
    APPLY,
    JSONPATCH,
    MERGEPATCH,
    STRATEGIC,
    json_patch,
    merge_patch,
    strategic_merge,
)
from runtime.kube.machinery.selectors import (
    parse_field_selector,
    parse_label_selector,
    selector_from_match,
)
from runtime.kube.meta import Decoded, Obj, Reply, Request, User, WatchReply, random_suffix
from runtime.kube.node.portforward import Budget, PortForwardCall
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


def _is_protobuf(req: Request) -> bool:
    return req.headers.get("content-type", "").split(";")[0].strip().lower() == protobuf.CONTENT_TYPE


# Nesting a request body may have. Go's encoding/json stops at 10000 levels ("exceeded max
# depth"); Python's recursive decoders and every recursive walk after them (deepcopy, validation,
# managed fields) hit the interpreter's recursion limit long before that, so the cap is lower.
# Kubernetes objects nest a few dozen levels at most (a CRD's openAPIV3Schema included).
MAX_BODY_DEPTH = 128


def _too_deep(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, dict):
            if depth > limit:
                return True
            stack.extend((x, depth + 1) for x in v.values() if isinstance(x, dict | list))
        elif isinstance(v, list):
            if depth > limit:
                return True
            stack.extend((x, depth + 1) for x in v if isinstance(x, dict | list))
    return False


def _too_deep_error() -> ApiError:
    return bad_request(f"error decoding body: exceeded max depth (the body nests more than {MAX_BODY_DEPTH} levels)")


def _text_body(body: bytes, limits: Limits) -> Any:
    """A JSON or YAML body as data, or the 400 the real server answers for it."""
    try:
        doc = json.loads(body)
    except RecursionError:
        raise _too_deep_error() from None
    except ValueError:
        try:
            doc = yaml.safe_load(body)
        except RecursionError:
            raise _too_deep_error() from None
        except yaml.YAMLError as e:
            raise bad_request(f"error decoding body: {e}") from None
        # aliases are shared, not copied, until something serialises the document: bound what
        # it expands to (go-yaml refuses an alias bomb the same way)
        cap = 2 * limits.max_request_bytes
        if expanded_size(doc, cap) > cap:
            raise bad_request("error decoding body: yaml: document contains excessive aliasing") from None
    if _too_deep(doc, MAX_BODY_DEPTH):
        raise _too_deep_error()
    return doc


def decode_body(req: Request, limits: Limits) -> None:
    """Decode ``req.body`` into ``req.decoded`` as far as it can be without knowing the
    endpoint. Touches nothing but the request, so apiserver/server.py runs it in a worker thread:
    decoding 3 MiB of protobuf or YAML takes seconds of Python, which on the loop would
    stall every cluster of the host; the cluster itself is still only touched on the loop."""
    if not req.body:
        return
    if _is_protobuf(req):
        req.decoded = protobuf.predecode(req.body)
        return
    try:
        req.decoded = Decoded(_text_body(req.body, limits))
    except ApiError as e:
        req.decoded = Decoded(error=e)


def _json_body(req: Request, limits: Limits | None = None, expect: tuple[str, ...] = ()) -> Any:
    """The request body as JSON data, from JSON, YAML or (for the kinds in ``expect``, the
    types this endpoint decodes into) Kubernetes protobuf. Uses what ``decode_body`` made of
    it, once (a second call decodes afresh: callers may change what they got)."""
    if not req.body:
        raise bad_request("the body of the request was in an unknown format")
    ahead, req.decoded = req.decoded, None
    if _is_protobuf(req):
        if not expect:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types include: "
                "application/json, application/yaml",
            )
        try:
            pre = ahead if isinstance(ahead, protobuf.Decoded) else protobuf.predecode(req.body)
            return pre.result(expect)
        except protobuf.DecodeError as e:
            raise bad_request(f"error decoding body: {e}") from None
        except protobuf.UnsupportedError as e:
            raise ApiError(415, "UnsupportedMediaType", str(e)) from None
    if isinstance(ahead, Decoded):
        if ahead.error is not None:
            raise ahead.error
        return ahead.value
    return _text_body(req.body, limits or Limits())


def _truthy(v: str | None) -> bool:
    return v in ("true", "1", "True")


def _builtin_kind(rdef: ResourceDef) -> tuple[str, ...]:
    """The kinds a create/update of ``rdef`` decodes from protobuf: its own for built-in types;
    none for custom resources (kube-apiserver serves those as JSON and YAML only)."""
    return () if rdef.custom else (rdef.kind,)


@dataclass(frozen=True)
class DeleteOpts:
    policy: str = ""
    grace: int | None = None
    preconditions: Any = None
    dry_run: bool = False


PROPAGATION_POLICIES = ["Foreground", "Background", "Orphan"]


def _delete_options(req: Request, limits: Limits) -> DeleteOpts:
    """DELETE's options as kube-apiserver's DeleteResource reads them: the body (a
    DeleteOptions in JSON, YAML or protobuf, as client-go's typed clients send it) when there
    is one, else the query; then ValidateDeleteOptions."""
    grace: Any
    if req.body:
        body = _json_body(req, limits, ("DeleteOptions",))
        if not isinstance(body, dict):
            raise bad_request("the body of the request was in an unknown format")
        if body.get("kind") not in (None, "", "DeleteOptions"):
            raise bad_request(f"decoded object cannot be converted to DeleteOptions (got kind {body.get('kind')!r})")
        policy, orphan, grace = (
            body.get("propagationPolicy"),
            body.get("orphanDependents"),
            body.get("gracePeriodSeconds"),
        )
        dry, pre = body.get("dryRun") or [], body.get("preconditions")
        bad_type = (
            (policy is not None and not isinstance(policy, str))
            or (orphan is not None and not isinstance(orphan, bool))
            or (grace is not None and (not isinstance(grace, int) or isinstance(grace, bool)))
            or not isinstance(dry, list)
            or (pre is not None and not isinstance(pre, dict))
        )
        if bad_type:
            raise bad_request("error decoding body: a DeleteOptions field has the wrong type")
    else:
        q = req.query
        policy, pre = q.get("propagationPolicy") or None, None
        orphan = {"true": True, "1": True, "false": False, "0": False}.get(q.get("orphanDependents", "").lower())
        dry = [q["dryRun"]] if q.get("dryRun") else []
        grace = q.get("gracePeriodSeconds") or None
        if grace is not None:
            try:
                grace = int(grace)
            except ValueError:
                raise bad_request(f'strconv.ParseInt: parsing "{grace}": invalid syntax') from None
    errs = []
    if orphan is not None and policy is not None:
        errs.append(invalid("propagationPolicy", policy, "orphanDependents and deletionPropagation cannot be both set"))
    if policy is not None and policy not in PROPAGATION_POLICIES:
        errs.append(not_supported("propagationPolicy", policy, [*PROPAGATION_POLICIES, "nil"]))
    if any(d != "All" for d in dry):
        errs.append(not_supported("dryRun", dry, ["All"]))
    if errs:
        raise invalid_error("DeleteOptions", "meta.k8s.io", "", errs)
    if orphan is not None:
        policy = "Orphan" if orphan else "Background"
    return DeleteOpts(policy=policy or "", grace=grace, preconditions=pre, dry_run=bool(dry))


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
            elif _truthy(req.query.get("watch")):
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
            return Reply(201, rbac.review(self, req.user, rdef, ns, _json_body(req, expect=(rdef.kind,))))
        if verb == "get":
            if sub == "scale":
                return Reply(200, self._scale_of(rdef, self._must_get(rdef, ns, name)))
            if sub not in ("", "status"):
                get_sub = strategy.get_subresources.get(sub)
                if get_sub is None:  # reached by other verbs only (pods/eviction, namespaces/finalize...)
                    self._must_get(rdef, ns, name)
                    raise method_not_allowed("the server does not allow this method on the requested resource")
                return get_sub(self, req, rdef, ns, name, sub)
            return self._reply_obj(req, rdef, self._must_get(rdef, ns, name), 200)
        if verb == "list":
            return self._list(req, rdef, ns)
        if verb == "watch":
            return self._watch(req, rdef, ns, name)
        dry = req.query.get("dryRun") == "All"
        if verb == "create":
            if sub:
                return self._create_sub(req, rdef, ns, name, sub)
            obj = _json_body(req, self.limits, _builtin_kind(rdef))
            out = self.create(rdef, ns, obj, dry_run=dry, validation=req.query.get("fieldValidation", ""))
            return self._reply_obj(req, rdef, out, 201)
        if verb == "update":
            # a status update carries what we do not decode from protobuf (machinery/protobuf.py): JSON only
            obj = _json_body(req, self.limits, ("Scale",) if sub == "scale" else () if sub else _builtin_kind(rdef))
            if sub == "scale":
                return Reply(200, self._update_scale(rdef, ns, name, obj, dry))
            out, created = self.update(rdef, ns, name, obj, sub=sub, dry_run=dry)
            return self._reply_obj(req, rdef, out, 201 if created else 200)
        if verb == "patch":
            return self._patch(req, rdef, ns, name, sub, dry)
        if verb == "delete":
            opts = _delete_options(req, self.limits)
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
            opts = _delete_options(req, self.limits)
            objs = self._select(req, rdef, ns)
            for o in objs:
                self.delete(
                    rdef,
                    o["metadata"].get("namespace", ""),
                    o["metadata"]["name"],
                    opts.policy,
                    dry_run=dry or opts.dry_run,
                    grace=opts.grace,
                )
            return Reply(200, self._list_body(rdef, objs, {"resourceVersion": str(self.store.rv)}))
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

    def _must_get(self, rdef: ResourceDef, ns: str, name: str) -> Obj:
        obj = self.store.get(rdef.gr, ns, name)
        if obj is None:
            raise not_found(rdef.resource, rdef.group, name)
        return obj

    def _served(self, rdef: ResourceDef, obj: Obj) -> Obj:
        """A stored custom resource as the request's version shows it (crd.as_version)."""
        return crd.as_version(obj, rdef.group_version, rdef.schema) if rdef.custom else obj

    def _stored(self, rdef: ResourceDef, obj: Obj) -> Obj:
        """A custom resource as it is stored: in the CRD's storage version."""
        if rdef.custom and rdef.storage_version:
            return crd.as_version(obj, f"{rdef.group}/{rdef.storage_version}")
        return obj

    # -- list / watch ------------------------------------------------------------------

    def _select(self, req: Request, rdef: ResourceDef, ns: str) -> list[Obj]:
        objs = self.store.list(rdef.gr, ns if ns else None)
        ls = req.query.get("labelSelector", "")
        fs = req.query.get("fieldSelector", "")
        if ls:
            lp = parse_label_selector(ls)
            objs = [o for o in objs if lp(o)]
        if fs:
            fp = parse_field_selector(fs, rdef.field_selectors)
            objs = [o for o in objs if fp(o)]
        return [self._served(rdef, o) for o in objs]

    def _list_body(self, rdef: ResourceDef, objs: list[Obj], meta: dict[str, Any]) -> Obj:
        return {
            "kind": f"{rdef.kind}List",
            "apiVersion": rdef.group_version,
            "metadata": meta,
            "items": objs,
        }

    def _list(self, req: Request, rdef: ResourceDef, ns: str) -> Reply:
        objs = self._select(req, rdef, ns)
        meta: dict[str, Any] = {"resourceVersion": str(self.store.rv)}
        cont = req.query.get("continue", "")
        if cont:
            try:
                tok = json.loads(base64.urlsafe_b64decode(cont + "=" * (-len(cont) % 4)))
                start = (tok["ns"], tok["n"])
                meta["resourceVersion"] = str(tok["rv"])
            except (ValueError, KeyError, TypeError):
                raise bad_request(
                    "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)"
                ) from None
            objs = [o for o in objs if (o["metadata"].get("namespace", ""), o["metadata"]["name"]) > start]
        limit = int(req.query.get("limit") or 0)
        if limit > 0 and len(objs) > limit:
            last = objs[limit - 1]["metadata"]
            tok = {"rv": int(meta["resourceVersion"]), "ns": last.get("namespace", ""), "n": last["name"]}
            meta["continue"] = base64.urlsafe_b64encode(json.dumps(tok).encode()).decode().rstrip("=")
            meta["remainingItemCount"] = len(objs) - limit
            objs = objs[:limit]
        if "as=Table" in req.headers.get("accept", ""):
            inc = req.query.get("includeObject", "Metadata")
            t = strategies.for_resource(rdef).convert_to_table(rdef, objs, inc, meta)
            return Reply(200, t, "application/json;as=Table;v=v1;g=meta.k8s.io")
        return Reply(200, self._list_body(rdef, objs, meta))

    def _watch(self, req: Request, rdef: ResourceDef, ns: str, name: str) -> WatchReply:
        preds = []
        ls = req.query.get("labelSelector", "")
        fs = req.query.get("fieldSelector", "")
        if ls:
            preds.append(parse_label_selector(ls))
        if fs:
            preds.append(parse_field_selector(fs, rdef.field_selectors))

        def accept(o: Obj) -> bool:
            return all(p(o) for p in preds)

        rv_s = req.query.get("resourceVersion", "")
        send_initial = _truthy(req.query.get("sendInitialEvents"))
        initial: list[tuple[str, Obj]] = []
        start = self.store.rv
        expired = False
        if rv_s in ("", "0") or send_initial:
            initial = [("ADDED", o) for o in self._select(req, rdef, ns)]
        else:
            try:
                rv = int(rv_s)
            except ValueError:
                raise bad_request(f'invalid resource version: "{rv_s}"') from None
            evs = self.store.events_since(rv)
            # Older than the watch cache: kube-apiserver's cacher accepts the watch (200) and
            # sends one ERROR event, the 410 Expired Status, then ends ("to match the uncached
            # watch implementation", cacher.go newErrWatcher); the client re-lists.
            expired = evs is None
            for e in evs or ():
                if e.gr != rdef.gr:
                    continue
                if ns and e.obj["metadata"].get("namespace", "") != ns:
                    continue
                if accept(e.obj):
                    initial.append((e.type, e.obj))
        w = Watcher(rdef.gr, ns or None, accept)
        if expired:
            w.pos, w.expired = int(rv_s), True  # the stream sends the ERROR event and ends
        else:
            self.store.add_watcher(w)
        timeout = float(req.query.get("timeoutSeconds") or 1800)
        return WatchReply(
            watcher=w,
            initial=initial,
            rdef=rdef,
            table="as=Table" in req.headers.get("accept", ""),
            include_object=req.query.get("includeObject", "Metadata"),
            timeout=timeout,
            bookmarks=_truthy(req.query.get("allowWatchBookmarks")),
            initial_end_bookmark=send_initial,
            start_rv=start,
        )

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
        strategies.for_resource(rdef).default(new)
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
        if _is_protobuf(req):  # no patch type is protobuf: refused before reading it as one
            raise ApiError(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - accepted media types include: "
                f"{JSONPATCH}, {MERGEPATCH}, {STRATEGIC}, {APPLY}",
            )
        body = _json_body(req, self.limits)
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
        base: Any = self._scale_of(rdef, old) if sub == "scale" else copy.deepcopy(old)
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
        merged = ssa.apply(old, body, manager, rdef.group_version, now_ts(), _truthy(req.query.get("force")))
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

    def _scale_of(self, rdef: ResourceDef, obj: Obj) -> Obj:
        spec = obj.get("spec") or {}
        sel = strategies.for_resource(rdef).scale_selector(obj)
        spec_replicas = spec.get("replicas", 0)
        status_replicas = (obj.get("status") or {}).get("replicas", 0)
        if rdef.custom and rdef.scale_paths is not None:
            spec_replicas, status_replicas, sel = crd.scale_from(obj, rdef.scale_paths)
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                "name": obj["metadata"]["name"],
                "namespace": obj["metadata"].get("namespace", ""),
                "uid": obj["metadata"]["uid"],
                "resourceVersion": obj["metadata"]["resourceVersion"],
                "creationTimestamp": obj["metadata"]["creationTimestamp"],
            },
            "spec": {"replicas": spec_replicas},
            "status": {"replicas": status_replicas, "selector": "" if sel == "<none>" else sel},
        }

    def _update_scale(self, rdef: ResourceDef, ns: str, name: str, scale: Obj, dry: bool) -> Obj:
        old = self._served(rdef, self._must_get(rdef, ns, name))
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
        return self._scale_of(rdef, out)

    def _pod_stream_sub(self, req: Request, rdef: ResourceDef, ns: str, name: str, sub: str) -> Reply:
        """logs/exec/attach/portforward: the checks kube-apiserver makes before it proxies to
        the kubelet (pod bound to a node, container defaulted and validated, options), then a
        ``Reply`` whose body is a ``podio.LogCall``/``ExecCall`` that apiserver/server.py streams
        through ``self.pod_io``. Without a PodIO (no kubelet yet) pods never start, and the
        answers are those of a pod whose containers are still being created."""
        obj = self._must_get(rdef, ns, name)
        spec = obj.get("spec") or {}
        if sub == "portforward":
            if self.pod_io is None or not spec.get("nodeName"):
                raise bad_request(f"pod {name} does not have a host assigned")
            return Reply(
                200, PortForwardCall(self.pod_io, ns, name, obj["metadata"].get("uid", ""), self.forward_budget)
            )
        if sub not in ("log", "exec", "attach"):
            raise method_not_allowed("the server does not allow this method on the requested resource")
        all_names = [
            c.get("name", "")
            for key in ("initContainers", "containers", "ephemeralContainers")
            for c in spec.get(key) or []
        ]
        containers = spec.get("containers") or []
        q = req.query
        cname = q.get("container", "")
        if not cname:
            if len(containers) == 1:
                cname = containers[0].get("name", "")
            elif not containers:
                raise bad_request(f"a container name must be specified for pod {name}")
            else:
                raise bad_request(
                    f"a container name must be specified for pod {name}, choose one of: [{' '.join(all_names)}]"
                )
        elif cname not in all_names:
            raise bad_request(f"container {cname} is not valid for pod {name}")
        if self.pod_io is None or not spec.get("nodeName"):
            if sub == "log":
                raise bad_request(f'container "{cname}" in pod "{name}" is waiting to start: ContainerCreating')
            raise bad_request(f"pod {name} does not have a host assigned")
        if sub == "log":
            ints: dict[str, int | None] = {}
            errs: list[FieldError] = []
            for key, least in (("tailLines", 0), ("sinceSeconds", 1), ("limitBytes", 1)):
                raw = q.get(key)
                if raw is None or raw == "":
                    ints[key] = None
                    continue
                try:
                    ints[key] = int(raw)
                except ValueError:
                    raise bad_request(f'strconv.ParseInt: parsing "{raw}": invalid syntax') from None
                if int(raw) < least:
                    detail = "must be greater than or equal to 0" if least == 0 else "must be greater than 0"
                    errs.append(invalid(key, int(raw), detail))
            since_time = q.get("sinceTime") or None
            if since_time is not None and ints["sinceSeconds"] is not None:
                both = "at most one of `sinceTime` or `sinceSeconds` may be specified"
                errs.append(invalid("sinceSeconds", ints["sinceSeconds"], both))
            if errs:
                raise invalid_error("PodLogOptions", "", name, errs)
            return Reply(
                200,
                LogCall(
                    self.pod_io,
                    ns,
                    name,
                    cname,
                    follow=_truthy(q.get("follow")),
                    tail_lines=ints["tailLines"],
                    previous=_truthy(q.get("previous")),
                    timestamps=_truthy(q.get("timestamps")),
                    since_seconds=ints["sinceSeconds"],
                    since_time=since_time,
                    limit_bytes=ints["limitBytes"],
                ),
            )
        stdin, stdout, stderr = _truthy(q.get("stdin")), _truthy(q.get("stdout")), _truthy(q.get("stderr"))
        tty = _truthy(q.get("tty"))
        if not (stdin or stdout or stderr):
            raise bad_request("you must specify at least 1 of stdin, stdout, stderr")
        # the command is a repeated query parameter: apiserver/server.py fills it in (Request.query
        # keeps the last value of each parameter only)
        return Reply(
            200,
            ExecCall(
                self.pod_io, sub, ns, name, cname, [], stdin=stdin, stdout=stdout, stderr=stderr and not tty, tty=tty
            ),
        )

    def _evict(self, req: Request, rdef: ResourceDef, ns: str, name: str) -> Reply:
        """``POST pods/NAME/eviction`` (policy/v1 Eviction; ``kubectl drain``), as the pod
        registry's EvictionREST: the pod is deleted (gracefully, with the Eviction's
        deleteOptions) unless the one PodDisruptionBudget selecting it allows no disruption
        now (429 with a DisruptionBudget cause); a pod that is terminal, pending or already
        terminating is deleted without asking; two budgets for one pod are a 500, as upstream."""
        body = _json_body(req, self.limits, ("Eviction",)) if req.body else {}
        if not isinstance(body, dict):
            raise bad_request("the body of the request was in an unknown format")
        ev_meta = body.get("metadata") or {}
        if ev_meta.get("namespace") and ev_meta["namespace"] != ns:  # EnsureObjectNamespaceMatchesRequestNamespace
            raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
        ev_name = ev_meta.get("name", "")
        if ev_name and ev_name != name:
            raise bad_request("name in URL does not match name in Eviction object")
        pod = self._must_get(rdef, ns, name)
        opts = body.get("deleteOptions") or {}
        if not isinstance(opts, dict):
            opts = {}
        dry = req.query.get("dryRun") == "All" or "All" in (opts.get("dryRun") or [])
        grace = opts.get("gracePeriodSeconds")
        phase = (pod.get("status") or {}).get("phase")
        budgets: list[Obj] = []
        if phase not in ("Succeeded", "Failed", "Pending") and not pod["metadata"].get("deletionTimestamp"):
            pdb_def = registry.BY_GR["poddisruptionbudgets.policy"]
            budgets = [
                b
                for b in self.store.list(pdb_def.gr, ns)
                if (b.get("spec") or {}).get("selector") is not None
                and selector_from_match((b.get("spec") or {}).get("selector"))(pod)
            ]
            if len(budgets) > 1:
                msg = "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
                return Reply(
                    500,
                    {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "metadata": {},
                        "status": "Failure",
                        "message": msg,
                        "code": 500,
                    },
                )
        if budgets:
            pdb = budgets[0]
            st = pdb.get("status") or {}
            pname = pdb["metadata"]["name"]
            if int(st.get("observedGeneration", 0)) < int(pdb["metadata"].get("generation", 1)):
                cause = f"The disruption budget {pname} is still being processed by the server."
                raise ApiError(
                    429,
                    "TooManyRequests",
                    _EVICTION_REFUSED,
                    {"causes": [{"reason": "DisruptionBudget", "message": cause}], "retryAfterSeconds": 10},
                )
            if int(st.get("disruptionsAllowed", 0)) <= 0:
                cause = (
                    f"The disruption budget {pname} needs {int(st.get('desiredHealthy', 0))} healthy pods "
                    f"and has {int(st.get('currentHealthy', 0))} currently"
                )
                raise ApiError(
                    429,
                    "TooManyRequests",
                    _EVICTION_REFUSED,
                    {"causes": [{"reason": "DisruptionBudget", "message": cause}]},
                )
        self.delete(
            rdef,
            ns,
            name,
            str(opts.get("propagationPolicy") or ""),
            dry_run=dry,
            preconditions=opts.get("preconditions"),
            grace=grace if isinstance(grace, int) else None,
        )
        return Reply(201, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})

    def _legacy_bind(self, req: Request, ns: str) -> Reply:
        """The legacy ``bindings`` resource (POST .../bindings, the pod named by the body's
        metadata.name): pods/binding under another route."""
        body = _json_body(req, self.limits, ("Binding",))
        target = (body.get("metadata") or {}).get("name", "") if isinstance(body, dict) else ""
        if not target:
            raise invalid_error("Binding", "", "", [required("metadata.name", "name or generateName is required")])
        return self._bind(req, registry.BY_GR["pods"], ns, str(target), body)

    def _bind(self, req: Request, rdef: ResourceDef, ns: str, name: str, body: Any = None) -> Reply:
        """``POST pods/NAME/binding`` (a scheduler's Binding, as BindingREST/assignPod): the
        pod is bound to the target node once; binding it again is a 409."""
        if body is None:
            body = _json_body(req, self.limits, ("Binding",))
        if not isinstance(body, dict):
            raise bad_request("the body of the request was in an unknown format")
        meta = body.get("metadata") or {}
        if meta.get("namespace") and meta["namespace"] != ns:
            raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
        if meta.get("name") and meta["name"] != name:
            raise bad_request("name in URL does not match name in Binding object")
        target = body.get("target") or {}
        node = target.get("name", "") if isinstance(target, dict) else ""
        if target.get("kind", "Node") not in ("", "Node"):
            raise bad_request(f"target kind must be Node, got {target.get('kind')!r}")
        if not node:
            raise invalid_error("Binding", "", name, [required("target.name")])
        self.bind(ns, name, node, dry_run=req.query.get("dryRun") == "All")
        return Reply(201, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})

    def bind(self, ns: str, name: str, node: str, *, dry_run: bool = False) -> Obj:
        """Bind pod ``ns/name`` to ``node`` (BindingREST.assignPod, for a request's Binding and
        for the scheduler's Client): the pod as bound."""
        rdef = registry.BY_GR["pods"]
        pod = self._must_get(rdef, ns, name)
        if pod["metadata"].get("deletionTimestamp"):
            raise conflict("pods/binding", "", name, f"pod {name} is being deleted, cannot be assigned to a host")
        bound = (pod.get("spec") or {}).get("nodeName")
        if bound:
            raise conflict("pods/binding", "", name, f'pod {name} is already assigned to node "{bound}"')
        new = copy.deepcopy(pod)
        new["spec"]["nodeName"] = node
        conds = [c for c in (new.get("status") or {}).get("conditions") or [] if c.get("type") != "PodScheduled"]
        conds.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": now_ts()})
        new.setdefault("status", {})["conditions"] = conds
        if dry_run:
            return new
        self._dirty = True
        return self.store.put(rdef.gr, new, "MODIFIED", user=self.request_state.requester is not None)

    def _create_sub(self, req: Request, rdef: ResourceDef, ns: str, name: str, sub: str) -> Reply:
        """POST to a subresource: its REST storage, as the resource's strategy registers it
        (registry/core.py: pods exec/attach/portforward/eviction/binding, serviceaccounts/token)."""
        create = strategies.for_resource(rdef).create_subresources.get(sub)
        if create is None:
            raise method_not_allowed("the server does not allow this method on the requested resource")
        return create(self, req, rdef, ns, name, sub)

    def _token_request(self, req: Request, rdef: ResourceDef, ns: str, name: str) -> Reply:
        """serviceaccounts/token (TokenREST): a TokenRequest for the service account."""
        self._must_get(rdef, ns, name)
        body = _json_body(req, expect=("TokenRequest",)) if req.body else {}
        spec = dict((body or {}).get("spec") or {})
        seconds = spec.get("expirationSeconds") or 3600
        if not isinstance(seconds, int) or seconds < 600:
            msg = "may not specify a duration less than 10 minutes"
            raise invalid_error(
                "TokenRequest", "authentication.k8s.io", name, [invalid("spec.expirationSeconds", seconds, msg)]
            )
        if seconds > 2**32:
            msg = "may not specify a duration larger than 2^32 seconds"
            raise invalid_error(
                "TokenRequest", "authentication.k8s.io", name, [invalid("spec.expirationSeconds", seconds, msg)]
            )
        # whole seconds, as the token's exp claim is
        exp = datetime.datetime.now(datetime.UTC).replace(microsecond=0) + datetime.timedelta(seconds=seconds)
        tok = self.add_token(f"system:serviceaccount:{ns}:{name}", [], sa=(ns, name), expires=exp.timestamp())
        spec["audiences"] = spec.get("audiences") or ["https://kubernetes.default.svc"]
        spec["expirationSeconds"] = seconds
        spec.setdefault("boundObjectRef", None)
        return Reply(
            201,
            {
                "kind": "TokenRequest",
                "apiVersion": "authentication.k8s.io/v1",
                "metadata": {"name": name, "namespace": ns, "creationTimestamp": None},
                "spec": spec,
                "status": {"token": tok, "expirationTimestamp": format_ts(exp)},
            },
        )


_KEY_ORDER = ["apiVersion", "kind", "metadata", "spec", "status"]

_EVICTION_REFUSED = "Cannot evict pod as it would violate the pod's disruption budget."


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
