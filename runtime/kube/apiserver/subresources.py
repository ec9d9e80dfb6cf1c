"""The subresources with a REST storage of their own, over a ``Cluster``'s public methods.

kube-apiserver registers these beside their resource's store (pkg/registry/core/pod/storage:
LogREST, ExecREST, AttachREST, PortForwardREST, EvictionREST, BindingREST; serviceaccount's
TokenREST; the legacy ``bindings``). Here the resources' strategies list them
(registry/core.py's ``connect_subresources``/``get_subresources``/``create_subresources``
tables and ``create_virtual``) and reach them through ``Cluster.subresources`` (the registry
does not import the API server); ``Cluster`` itself routes to them and keeps the generic verbs.
``scale_of`` is the generic ``scale`` subresource's view of an object.
"""

from __future__ import annotations

import copy
import datetime
from typing import TYPE_CHECKING, Any

from runtime.kernel.clock import format_ts, now_ts
from runtime.kube import registry
from runtime.kube.apiserver.podio import ExecCall, LogCall
from runtime.kube.apiserver.request import json_body, truthy
from runtime.kube.machinery.apierrors import (
    ApiError,
    FieldError,
    bad_request,
    conflict,
    invalid,
    invalid_error,
    method_not_allowed,
    required,
)
from runtime.kube.machinery.selectors import selector_from_match
from runtime.kube.meta import Obj, Reply, Request
from runtime.kube.node.portforward import PortForwardCall
from runtime.kube.registry import ResourceDef, crd, strategies

if TYPE_CHECKING:
    from runtime.kube.apiserver.cluster import Cluster

_EVICTION_REFUSED = "Cannot evict pod as it would violate the pod's disruption budget."


def scale_of(rdef: ResourceDef, obj: Obj) -> Obj:
    """The ``autoscaling/v1 Scale`` of ``obj`` (its scale subresource, read or patched)."""
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


class Subresources:
    """The REST storages of one cluster's pods/log, exec, attach, portforward, eviction and
    binding, of the legacy ``bindings`` and of serviceaccounts/token."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def pod_stream(self, req: Request, rdef: ResourceDef, ns: str, name: str, sub: str) -> Reply:
        """logs/exec/attach/portforward: the checks kube-apiserver makes before it proxies to
        the kubelet (pod bound to a node, container defaulted and validated, options), then a
        ``Reply`` whose body is a ``podio.LogCall``/``ExecCall`` that apiserver/server.py streams
        through the cluster's ``pod_io``. Without a PodIO (no kubelet yet) pods never start, and the
        answers are those of a pod whose containers are still being created."""
        obj = self.cluster.must_get(rdef, ns, name)
        spec = obj.get("spec") or {}
        if sub == "portforward":
            if self.cluster.pod_io is None or not spec.get("nodeName"):
                raise bad_request(f"pod {name} does not have a host assigned")
            return Reply(
                200,
                PortForwardCall(
                    self.cluster.pod_io, ns, name, obj["metadata"].get("uid", ""), self.cluster.forward_budget
                ),
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
        if self.cluster.pod_io is None or not spec.get("nodeName"):
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
                    self.cluster.pod_io,
                    ns,
                    name,
                    cname,
                    follow=truthy(q.get("follow")),
                    tail_lines=ints["tailLines"],
                    previous=truthy(q.get("previous")),
                    timestamps=truthy(q.get("timestamps")),
                    since_seconds=ints["sinceSeconds"],
                    since_time=since_time,
                    limit_bytes=ints["limitBytes"],
                ),
            )
        stdin, stdout, stderr = truthy(q.get("stdin")), truthy(q.get("stdout")), truthy(q.get("stderr"))
        tty = truthy(q.get("tty"))
        if not (stdin or stdout or stderr):
            raise bad_request("you must specify at least 1 of stdin, stdout, stderr")
        # the command is a repeated query parameter: apiserver/server.py fills it in (Request.query
        # keeps the last value of each parameter only)
        return Reply(
            200,
            ExecCall(
                self.cluster.pod_io,
                sub,
                ns,
                name,
                cname,
                [],
                stdin=stdin,
                stdout=stdout,
                stderr=stderr and not tty,
                tty=tty,
            ),
        )

    def evict(self, req: Request, rdef: ResourceDef, ns: str, name: str) -> Reply:
        """``POST pods/NAME/eviction`` (policy/v1 Eviction; ``kubectl drain``), as the pod
        registry's EvictionREST: the pod is deleted (gracefully, with the Eviction's
        deleteOptions) unless the one PodDisruptionBudget selecting it allows no disruption
        now (429 with a DisruptionBudget cause); a pod that is terminal, pending or already
        terminating is deleted without asking; two budgets for one pod are a 500, as upstream."""
        body = json_body(req, self.cluster.limits, ("Eviction",)) if req.body else {}
        if not isinstance(body, dict):
            raise bad_request("the body of the request was in an unknown format")
        ev_meta = body.get("metadata") or {}
        if ev_meta.get("namespace") and ev_meta["namespace"] != ns:  # EnsureObjectNamespaceMatchesRequestNamespace
            raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
        ev_name = ev_meta.get("name", "")
        if ev_name and ev_name != name:
            raise bad_request("name in URL does not match name in Eviction object")
        pod = self.cluster.must_get(rdef, ns, name)
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
                for b in self.cluster.store.list(pdb_def.gr, ns)
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
        self.cluster.delete(
            rdef,
            ns,
            name,
            str(opts.get("propagationPolicy") or ""),
            dry_run=dry,
            preconditions=opts.get("preconditions"),
            grace=grace if isinstance(grace, int) else None,
        )
        return Reply(201, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})

    def legacy_bind(self, req: Request, ns: str) -> Reply:
        """The legacy ``bindings`` resource (POST .../bindings, the pod named by the body's
        metadata.name): pods/binding under another route."""
        body = json_body(req, self.cluster.limits, ("Binding",))
        target = (body.get("metadata") or {}).get("name", "") if isinstance(body, dict) else ""
        if not target:
            raise invalid_error("Binding", "", "", [required("metadata.name", "name or generateName is required")])
        return self.bind_request(req, registry.BY_GR["pods"], ns, str(target), body)

    def bind_request(self, req: Request, rdef: ResourceDef, ns: str, name: str, body: Any = None) -> Reply:
        """``POST pods/NAME/binding`` (a scheduler's Binding, as BindingREST/assignPod): the
        pod is bound to the target node once; binding it again is a 409."""
        if body is None:
            body = json_body(req, self.cluster.limits, ("Binding",))
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
        pod = self.cluster.must_get(rdef, ns, name)
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
        self.cluster.mark_dirty()
        return self.cluster.store.put(rdef.gr, new, "MODIFIED", user=self.cluster.request_state.requester is not None)

    def token_request(self, req: Request, rdef: ResourceDef, ns: str, name: str) -> Reply:
        """serviceaccounts/token (TokenREST): a TokenRequest for the service account."""
        self.cluster.must_get(rdef, ns, name)
        body = json_body(req, expect=("TokenRequest",)) if req.body else {}
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
        tok = self.cluster.add_token(f"system:serviceaccount:{ns}:{name}", [], sa=(ns, name), expires=exp.timestamp())
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
