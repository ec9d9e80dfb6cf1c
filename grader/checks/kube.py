"""``kube`` and ``rbac``: the lab cluster through the official ``kubernetes`` client.

The client talks to whichever cluster the target's kubeconfig names — the
embedded lab cluster or an external one — unchanged. Fetching is a thin layer
over the dynamic client; the decisions are the pure functions
``evaluate_kube`` and ``evaluate_rbac`` (unit-tested on canned API objects
until the lab cluster is wired to sessions).

``kube``: ``apiVersion`` (default v1), ``kind``, ``name`` or ``selector``
(label selector), ``namespace`` (default "default"), ``exists`` (default
true), ``count`` (with a selector: an exact number, or {gte, lte}), ``expect``
(a list of {path, equals|contains|matches|gte|lte}), ``condition`` ({type, status}).

``rbac``: ``user`` or ``serviceaccount`` ("ns:name"), ``groups``, ``verb``,
``resource``, ``subresource``, ``group`` (API group), ``namespace``, ``name``,
``allowed`` (default true) — asked with a SubjectAccessReview.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from grader.checks.base import (
    CheckError,
    InfrastructureError,
    Outcome,
    Target,
    TargetUnavailable,
    as_list,
    register,
    shorten,
)
from grader.checks.jsonpath import compare, resolve


def _api_client(target: Target, timeout: float) -> Any:
    from kubernetes import config as kube_config

    if not target.kubeconfig:
        raise TargetUnavailable("This check needs the lab's Kubernetes cluster, and this lab has none running.")
    try:
        if "\n" in target.kubeconfig:  # the kubeconfig itself (runtimed hands out YAML text), not a path
            import yaml

            return kube_config.new_client_from_config_dict(
                yaml.safe_load(target.kubeconfig), context=target.kube_context
            )
        return kube_config.new_client_from_config(config_file=target.kubeconfig, context=target.kube_context)
    except Exception as exc:  # the loader raises ConfigException, OSError, yaml errors
        raise TargetUnavailable(f"The lab cluster's kubeconfig cannot be used: {exc}") from exc


def _transport_failure(exc: Exception, timeout: float) -> Outcome:
    """A connection that failed or timed out: a timeout outcome, or InfrastructureError.

    The cluster's API server is runtimed's (or an operator's cluster): a refused or cut
    connection means the platform is down or restarting, not that the student did something,
    so the grading is retried (grader.tasks) rather than ended as ``error``. A deleted
    sandbox's cluster answers 404, which the checks read as "nothing there".
    urllib3 reports a refused connection as MaxRetryError, which is not an OSError.
    """
    import urllib3

    reason = getattr(exc, "reason", None) or exc
    if isinstance(reason, urllib3.exceptions.NewConnectionError):  # (a subclass of ConnectTimeoutError)
        raise InfrastructureError(f"The lab cluster is not reachable: {reason}") from exc
    if isinstance(exc, urllib3.exceptions.TimeoutError | TimeoutError) or isinstance(
        reason, urllib3.exceptions.TimeoutError | TimeoutError
    ):
        return Outcome(False, f"The cluster did not answer within {timeout:g} s.", timed_out=True)
    if isinstance(exc, OSError) and "timed out" in str(exc).lower():
        return Outcome(False, f"The cluster did not answer within {timeout:g} s.", timed_out=True)
    raise InfrastructureError(f"The lab cluster is not reachable: {reason}") from exc


def _refused(exc: Any, what: str) -> Exception:
    """An API error other than 404: a server error (5xx, e.g. 503 while runtimed restarts)
    is the platform's and is retried; anything else ends the check as ``error``."""
    if int(getattr(exc, "status", 0) or 0) >= 500:
        return InfrastructureError(f"The lab cluster failed{what}: {exc.status} {exc.reason}")
    return TargetUnavailable(f"The lab cluster refused{what}: {exc.status} {exc.reason}")


def _describe(spec: Mapping[str, Any], *, namespaced: bool) -> str:
    what = f"{spec.get('kind')} {spec.get('name') or 'with selector ' + str(spec.get('selector'))}"
    return f"{what} in namespace {spec.get('namespace', 'default')}" if namespaced else what


def evaluate_kube(spec: Mapping[str, Any], objects: list[Mapping[str, Any]], *, namespaced: bool = True) -> Outcome:
    """Decide a ``kube`` check on the objects found (already fetched); ``namespaced``
    says whether the kind lives in namespaces (a Node or a Namespace does not)."""
    what = _describe(spec, namespaced=namespaced)
    want_exists = bool(spec.get("exists", True))
    if not objects:
        return Outcome(not want_exists, f"There is no {what}.")
    if not want_exists:
        return Outcome(False, f"{what} exists but should not.")
    problems: list[str] = []
    if "count" in spec:
        want = spec["count"]
        n = len(objects)
        if isinstance(want, Mapping):
            if ("gte" in want and n < int(want["gte"])) or ("lte" in want and n > int(want["lte"])):
                problems.append(f"found {n} objects, expected {dict(want)}")
        elif n != int(want):
            problems.append(f"found {n} objects, expected {int(want)}")
    for obj in objects:
        label = f"{obj.get('kind', spec.get('kind'))} {(obj.get('metadata') or {}).get('name', '?')}"
        for expectation in as_list(spec.get("expect")):
            if not isinstance(expectation, Mapping) or "path" not in expectation:
                raise CheckError("each `expect` item needs a `path`")
            problem = compare(resolve(obj, str(expectation["path"])), expectation)
            if problem:
                problems.append(f"{label}: {expectation['path']} {problem}")
        if "condition" in spec:
            cond = spec["condition"]
            if not isinstance(cond, Mapping) or "type" not in cond:
                raise CheckError("`condition` needs a `type`")
            conditions = (obj.get("status") or {}).get("conditions") or []
            found = [c for c in conditions if isinstance(c, Mapping) and c.get("type") == cond["type"]]
            want_status = str(cond.get("status", "True"))
            if not found:
                problems.append(f"{label} has no {cond['type']} condition yet")
            elif str(found[0].get("status")) != want_status:
                reason = found[0].get("message") or found[0].get("reason") or ""
                problems.append(
                    f"{label}: condition {cond['type']} is {found[0].get('status')}, expected {want_status}"
                    + (f" ({shorten(reason)})" if reason else "")
                )
    if problems:
        return Outcome(False, "\n".join(problems))
    return Outcome(True, f"{what}: as expected.")


@register(
    "kube",
    required={"kind"},
    optional={"apiVersion", "name", "selector", "namespace", "exists", "count", "expect", "condition"},
    service="kubernetes",
)
def check_kube(spec: Mapping[str, Any], target: Target, timeout: float) -> Outcome:
    from kubernetes import dynamic
    from kubernetes.client import exceptions as kube_exc

    if not spec.get("kind") or not (spec.get("name") or spec.get("selector")):
        raise CheckError("a kube check needs a `kind` and a `name` or `selector`")
    import urllib3

    api = _api_client(target, timeout)
    try:
        try:
            client = dynamic.DynamicClient(api)  # discovery: requests too
            resource = client.resources.get(api_version=spec.get("apiVersion", "v1"), kind=spec["kind"])
        except urllib3.exceptions.HTTPError:
            raise
        except kube_exc.ApiException as exc:  # discovery refused (401) or failed (5xx)
            raise _refused(exc, "") from exc
        except Exception as exc:  # ResourceNotFoundError and friends
            raise CheckError(f"the cluster has no kind {spec.get('apiVersion', 'v1')}/{spec['kind']}: {exc}") from exc
        namespace = spec.get("namespace", "default") if resource.namespaced else None
        try:
            if spec.get("name"):
                objects = [resource.get(name=spec["name"], namespace=namespace, _request_timeout=timeout).to_dict()]
            else:
                listed = resource.get(
                    namespace=namespace, label_selector=str(spec["selector"]), _request_timeout=timeout
                ).to_dict()
                objects = list(listed.get("items") or [])
        except kube_exc.ApiException as exc:
            if exc.status == 404:
                objects = []
            else:
                raise _refused(exc, "") from exc
        return evaluate_kube(spec, objects, namespaced=bool(resource.namespaced))
    except (OSError, urllib3.exceptions.HTTPError) as exc:
        return _transport_failure(exc, timeout)
    finally:
        api.close()


def access_review_body(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The SubjectAccessReview an ``rbac`` check asks."""
    if not spec.get("verb") or not spec.get("resource"):
        raise CheckError("an rbac check needs a `verb` and a `resource`")
    if spec.get("serviceaccount"):
        ns, _, name = str(spec["serviceaccount"]).partition(":")
        if not name:
            raise CheckError("`serviceaccount` is written namespace:name")
        user = f"system:serviceaccount:{ns}:{name}"
        groups = ["system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated"]
    elif spec.get("user"):
        user = str(spec["user"])
        groups = ["system:authenticated"]
    else:
        raise CheckError("an rbac check needs a `user` or a `serviceaccount`")
    groups += [str(g) for g in as_list(spec.get("groups"))]
    attributes: dict[str, Any] = {"verb": str(spec["verb"]), "resource": str(spec["resource"])}
    for key, out in (("subresource", "subresource"), ("namespace", "namespace"), ("name", "name"), ("group", "group")):
        if spec.get(key):
            attributes[out] = str(spec[key])
    return {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {"user": user, "groups": groups, "resourceAttributes": attributes},
    }


def evaluate_rbac(spec: Mapping[str, Any], status: Mapping[str, Any]) -> Outcome:
    """Decide an ``rbac`` check on the SubjectAccessReview's status."""
    body = access_review_body(spec)
    who = body["spec"]["user"]
    attrs = body["spec"]["resourceAttributes"]
    action = f"{attrs['verb']} {attrs['resource']}" + (f"/{attrs['subresource']}" if "subresource" in attrs else "")
    where = f" in namespace {attrs['namespace']}" if "namespace" in attrs else " cluster-wide"
    allowed = bool(status.get("allowed")) and not status.get("denied")
    want = bool(spec.get("allowed", True))
    verdict = "may" if allowed else "may not"
    reason = status.get("reason") or status.get("evaluationError") or ""
    message = f"{who} {verdict} {action}{where}" + (f" ({shorten(reason)})" if reason else "") + "."
    return Outcome(allowed == want, message)


@register(
    "rbac",
    required={"verb", "resource", "allowed"},
    optional={"user", "serviceaccount", "groups", "group", "subresource", "namespace", "name"},
    service="kubernetes",
)
def check_rbac(spec: Mapping[str, Any], target: Target, timeout: float) -> Outcome:
    import urllib3
    from kubernetes.client import exceptions as kube_exc

    body = access_review_body(spec)
    api = _api_client(target, timeout)
    try:
        from kubernetes.client import AuthorizationV1Api

        # The generated client serializes a plain mapping as well as its model class.
        review = AuthorizationV1Api(api).create_subject_access_review(body, _request_timeout=timeout)  # type: ignore[arg-type]
        response = api.sanitize_for_serialization(review)
        return evaluate_rbac(spec, (response or {}).get("status") or {})
    except kube_exc.ApiException as exc:
        raise _refused(exc, " the access review") from exc
    except (OSError, urllib3.exceptions.HTTPError) as exc:
        return _transport_failure(exc, timeout)
    finally:
        api.close()
