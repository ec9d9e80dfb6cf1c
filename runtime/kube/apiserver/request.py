"""A request's body and options as kube-apiserver decodes them, before any resource is known.

``decode_body`` decodes a body ahead, off the loop (apiserver/server.py runs it in a worker
thread); ``json_body`` is what an endpoint reads (JSON, YAML or, for the built-in types the
endpoint decodes into, Kubernetes protobuf: machinery/protobuf.py), with the limits the real
server has (depth, YAML aliasing); ``delete_options`` reads a DELETE's DeleteOptions from its
body or query. Used by the generic verbs (cluster.py) and the subresource storages
(subresources.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import yaml

from runtime.kube.machinery import protobuf
from runtime.kube.machinery.apierrors import ApiError, bad_request, invalid, invalid_error, not_supported
from runtime.kube.machinery.limits import Limits, expanded_size
from runtime.kube.meta import Decoded, Request


def is_protobuf(req: Request) -> bool:
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
    if is_protobuf(req):
        req.decoded = protobuf.predecode(req.body)
        return
    try:
        req.decoded = Decoded(_text_body(req.body, limits))
    except ApiError as e:
        req.decoded = Decoded(error=e)


def json_body(req: Request, limits: Limits | None = None, expect: tuple[str, ...] = ()) -> Any:
    """The request body as JSON data, from JSON, YAML or (for the kinds in ``expect``, the
    types this endpoint decodes into) Kubernetes protobuf. Uses what ``decode_body`` made of
    it, once (a second call decodes afresh: callers may change what they got)."""
    if not req.body:
        raise bad_request("the body of the request was in an unknown format")
    ahead, req.decoded = req.decoded, None
    if is_protobuf(req):
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


def truthy(v: str | None) -> bool:
    return v in ("true", "1", "True")


@dataclass(frozen=True)
class DeleteOpts:
    policy: str = ""
    grace: int | None = None
    preconditions: Any = None
    dry_run: bool = False


PROPAGATION_POLICIES = ["Foreground", "Background", "Orphan"]


def delete_options(req: Request, limits: Limits) -> DeleteOpts:
    """DELETE's options as kube-apiserver's DeleteResource reads them: the body (a
    DeleteOptions in JSON, YAML or protobuf, as client-go's typed clients send it) when there
    is one, else the query; then ValidateDeleteOptions."""
    grace: Any
    if req.body:
        body = json_body(req, limits, ("DeleteOptions",))
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
