"""RBAC authorization as kube-apiserver's RBAC authorizer evaluates it, and the review APIs.

A request is allowed when any rule of any role bound to the user (by name,
group or ServiceAccount identity) through a ClusterRoleBinding, or a
RoleBinding in the request's namespace, covers (verb, apiGroup, resource[/sub],
resourceName). ``system:masters`` bypasses RBAC, as in a real cluster.
Non-resource requests (discovery, /version, /openapi) are allowed for every
authenticated user, which is what the default ``system:discovery`` and
``system:public-info-viewer`` bindings grant.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from runtime.kube.machinery.apierrors import forbidden, not_found
from runtime.kube.meta import Obj, User
from runtime.kube.registry import ResourceDef

if TYPE_CHECKING:
    from runtime.kube.apiserver.cluster import Cluster


def _subject_matches(s: Obj, user: User, ns: str) -> bool:
    kind = s.get("kind")
    if kind == "User":
        return bool(s.get("name") == user.name)
    if kind == "Group":
        return s.get("name") in user.groups
    if kind == "ServiceAccount":
        sns = s.get("namespace") or ns
        return user.name == f"system:serviceaccount:{sns}:{s.get('name')}"
    return False


def _rule_matches(r: Obj, verb: str, group: str, resource: str, sub: str, name: str) -> bool:
    verbs = r.get("verbs") or []
    if "*" not in verbs and verb not in verbs:
        return False
    groups = r.get("apiGroups") or []
    if "*" not in groups and group not in groups:
        return False
    res = r.get("resources") or []
    full = f"{resource}/{sub}" if sub else resource
    ok = False
    for x in res:
        if x == "*" or x == full or (sub and (x == f"*/{sub}" or x == f"{resource}/*")):
            ok = True
    if not ok:
        return False
    names = r.get("resourceNames") or []
    return not names or name in names


def _role_rules(cluster: Cluster, ref: Obj, ns: str) -> list[Obj]:
    if ref.get("kind") == "ClusterRole":
        role = cluster.store.get("clusterroles.rbac.authorization.k8s.io", "", ref.get("name", ""))
    else:
        role = cluster.store.get("roles.rbac.authorization.k8s.io", ns, ref.get("name", ""))
    if role is None:
        return []
    return list(role.get("rules") or [])


def applicable(cluster: Cluster, user: User, ns: str) -> Iterator[tuple[Obj, str, Obj]]:
    """(binding, kind of binding, rule) for every rule that applies to user in ns."""
    for b in cluster.store.list("clusterrolebindings.rbac.authorization.k8s.io"):
        if any(_subject_matches(s, user, "") for s in b.get("subjects") or []):
            for r in _role_rules(cluster, b.get("roleRef") or {}, ""):
                yield b, "ClusterRoleBinding", r
    if ns:
        for b in cluster.store.list("rolebindings.rbac.authorization.k8s.io", ns):
            if any(_subject_matches(s, user, ns) for s in b.get("subjects") or []):
                for r in _role_rules(cluster, b.get("roleRef") or {}, ns):
                    yield b, "RoleBinding", r


def decide(
    cluster: Cluster, user: User, verb: str, group: str, resource: str, ns: str, name: str, sub: str
) -> tuple[bool, str]:
    if "system:masters" in user.groups:
        return True, ""
    for b, bkind, r in applicable(cluster, user, ns):
        if _rule_matches(r, verb, group, resource, sub, name):
            ref = b.get("roleRef") or {}
            where = f' in namespace "{ns}"' if bkind == "RoleBinding" else ""
            return True, (
                f'RBAC: allowed by {bkind} "{b["metadata"]["name"]}/{ns}" of '
                f'{ref.get("kind")} "{ref.get("name")}" to {user.name}{where}'
                if bkind == "RoleBinding"
                else f'RBAC: allowed by {bkind} "{b["metadata"]["name"]}" of '
                f'{ref.get("kind")} "{ref.get("name")}" to {user.name}'
            )
    return False, ""


def allowed(cluster: Cluster, user: User, verb: str, group: str, resource: str, ns: str, name: str, sub: str) -> bool:
    return decide(cluster, user, verb, group, resource, ns, name, sub)[0]


def _non_resource_allowed(user: User, path: str, verb: str) -> bool:
    if "system:masters" in user.groups:
        return True
    if verb != "get":
        return False
    public = ("/api", "/apis", "/version", "/healthz", "/livez", "/readyz", "/openapi")
    return any(path == p or path.startswith(p + "/") for p in public)


def review(cluster: Cluster, user: User, rdef: ResourceDef, ns: str, body: Any) -> Obj:
    body = body if isinstance(body, dict) else {}
    spec = body.get("spec") or {}
    kind = rdef.kind
    out: Obj = {
        "kind": kind,
        "apiVersion": rdef.group_version,
        "metadata": {"creationTimestamp": None},
        "spec": spec,
    }
    if kind == "SelfSubjectReview":
        out["status"] = {"userInfo": {"username": user.name, "groups": list(user.groups)}}
        return out
    subject = user
    if kind in ("SubjectAccessReview", "LocalSubjectAccessReview"):
        subject = User(spec.get("user", ""), tuple(spec.get("groups") or []))
    if kind == "SelfSubjectRulesReview":
        out["status"] = rules_review(cluster, subject, spec.get("namespace", ""))
        return out
    ra = spec.get("resourceAttributes")
    nra = spec.get("nonResourceAttributes")
    if isinstance(ra, dict):
        rns = ra.get("namespace", "") if kind != "LocalSubjectAccessReview" else ns
        ok, reason = decide(
            cluster,
            subject,
            ra.get("verb", ""),
            ra.get("group", ""),
            ra.get("resource", ""),
            rns,
            ra.get("name", ""),
            ra.get("subresource", ""),
        )
    elif isinstance(nra, dict):
        ok = _non_resource_allowed(subject, nra.get("path", ""), nra.get("verb", ""))
        reason = ""
    else:
        ok, reason = False, ""
    status: Obj = {"allowed": ok}
    if reason:
        status["reason"] = reason
    out["status"] = status
    return out


def rules_review(cluster: Cluster, user: User, ns: str) -> Obj:
    rules: list[Obj] = []
    if "system:masters" in user.groups:
        rules.append({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]})
    for _, _, r in applicable(cluster, user, ns):
        rr = {k: r[k] for k in ("verbs", "apiGroups", "resources", "resourceNames") if r.get(k)}
        if "resources" in rr and rr not in rules:
            rules.append(rr)
    rules += [
        {
            "verbs": ["create"],
            "apiGroups": ["authorization.k8s.io"],
            "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
        },
        {"verbs": ["create"], "apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"]},
    ]
    non = [
        {
            "verbs": ["get"],
            "nonResourceURLs": [
                "/api",
                "/api/*",
                "/apis",
                "/apis/*",
                "/healthz",
                "/livez",
                "/openapi",
                "/openapi/*",
                "/readyz",
                "/version",
                "/version/",
            ],
        },
    ]
    if "system:masters" in user.groups:
        non.insert(0, {"verbs": ["*"], "nonResourceURLs": ["*"]})
    return {"resourceRules": rules, "nonResourceRules": non, "incomplete": False}


# -- escalation prevention (pkg/registry/rbac/{role,clusterrole,rolebinding}/policybased) ----------


def _go_quote_list(xs: list[str]) -> str:
    """Go's %q of a []string: ["a" "b"]."""
    return "[" + " ".join(json.dumps(x) for x in xs) + "]"


def _compact_string(r: Obj) -> str:
    parts = []
    for key, label in (
        ("apiGroups", "APIGroups"),
        ("resources", "Resources"),
        ("nonResourceURLs", "NonResourceURLs"),
        ("resourceNames", "ResourceNames"),
        ("verbs", "Verbs"),
    ):
        if r.get(key):
            parts.append(f"{label}:{_go_quote_list(list(r[key]))}")
    return "{" + ", ".join(parts) + "}"


def _breakdown(rule: Obj) -> list[Obj]:
    out: list[Obj] = []
    for g in rule.get("apiGroups") or []:
        for res in rule.get("resources") or []:
            for v in rule.get("verbs") or []:
                names = rule.get("resourceNames") or []
                if names:
                    out += [{"apiGroups": [g], "resources": [res], "verbs": [v], "resourceNames": [n]} for n in names]
                else:
                    out.append({"apiGroups": [g], "resources": [res], "verbs": [v]})
    for url in rule.get("nonResourceURLs") or []:
        out += [{"nonResourceURLs": [url], "verbs": [v]} for v in rule.get("verbs") or []]
    return out


def _covers(owner: Obj, sub: Obj) -> bool:
    """ruleCovers: does one held rule cover one broken-down rule."""
    ov, og, ors = owner.get("verbs") or [], owner.get("apiGroups") or [], owner.get("resources") or []
    if "*" not in ov and not set(sub.get("verbs") or []) <= set(ov):
        return False
    if "*" not in og and not set(sub.get("apiGroups") or []) <= set(og):
        return False
    if "*" not in ors:
        for path in sub.get("resources") or []:
            if path in ors:
                continue
            if "/" not in path or "*/" + path.split("/", 1)[1] not in ors:
                return False
    urls = owner.get("nonResourceURLs") or []
    for u in sub.get("nonResourceURLs") or []:
        if not any(x == u or x == "*" or (x.endswith("*") and u.startswith(x[:-1])) for x in urls):
            return False
    names = owner.get("resourceNames") or []
    if not sub.get("resourceNames"):
        return not names
    return not names or set(sub["resourceNames"]) <= set(names)


def _confirm_no_escalation(cluster: Cluster, user: User, ns: str, rules: list[Obj]) -> str:
    """ConfirmNoEscalation: "" when the user holds every rule, else kube-apiserver's message."""
    held = [r for _, _, r in applicable(cluster, user, ns)]
    missing = [sub for rule in rules for sub in _breakdown(rule) if not any(_covers(h, sub) for h in held)]
    if not missing:
        return ""
    # CompactRules: single group/resource(/name) rules that differ only by verb merge
    merged: dict[tuple[str, str, str], Obj] = {}
    descs: set[str] = set()
    for m in missing:
        if m.get("nonResourceURLs"):
            descs.add(_compact_string(m))
            continue
        key = (m["apiGroups"][0], m["resources"][0], (m.get("resourceNames") or [""])[0])
        if key in merged:
            merged[key]["verbs"] = [*merged[key]["verbs"], *m["verbs"]]
        else:
            merged[key] = copy.deepcopy(m)
    descs |= {_compact_string(r) for r in merged.values()}
    groups = _go_quote_list(list(user.groups))
    return (
        f"user {json.dumps(user.name)} (groups={groups}) is attempting to grant RBAC permissions not "
        "currently held:\n" + "\n".join(sorted(descs))
    )


def check_escalation(cluster: Cluster, user: User, rdef: ResourceDef, ns: str, obj: Obj) -> None:
    """Refuse a Role/ClusterRole or binding write that would grant more than the user holds.

    Roles: allowed with the ``escalate`` verb on the role resource, else every rule must be
    covered by the user's own. Bindings: allowed with ``bind`` on the referenced role, else
    the referenced role's rules must be covered. system:masters is exempt, as in kube.
    """
    if rdef.group != "rbac.authorization.k8s.io" or "system:masters" in user.groups:
        return
    name = obj["metadata"].get("name", "")
    gr = f"{rdef.resource}.{rdef.group}"
    if rdef.kind in ("Role", "ClusterRole"):
        if allowed(cluster, user, "escalate", rdef.group, rdef.resource, ns, "", ""):
            return
        if rdef.kind == "ClusterRole" and obj.get("aggregationRule"):
            msg = "must have cluster-admin privileges to use the aggregationRule"
        else:
            msg = _confirm_no_escalation(cluster, user, ns, list(obj.get("rules") or []))
    elif rdef.kind in ("RoleBinding", "ClusterRoleBinding"):
        ref = obj.get("roleRef") or {}
        ref_res = "clusterroles" if ref.get("kind") == "ClusterRole" else "roles"
        if allowed(cluster, user, "bind", rdef.group, ref_res, ns, str(ref.get("name", "")), ""):
            return
        role_ns = "" if ref_res == "clusterroles" else ns
        role = cluster.store.get(f"{ref_res}.{rdef.group}", role_ns, str(ref.get("name", "")))
        if role is None:
            raise not_found(ref_res, rdef.group, str(ref.get("name", "")))
        msg = _confirm_no_escalation(cluster, user, ns, list(role.get("rules") or []))
    else:
        return
    if msg:
        raise forbidden(rdef.resource, rdef.group, name, f'{gr} "{name}" is forbidden: {msg}')


# -- default roles ------------------------------------------------------------------------

AGG = "rbac.authorization.k8s.io/aggregate-to-"

_READ = ["get", "list", "watch"]
_WRITE = ["create", "delete", "deletecollection", "patch", "update"]

_VIEW_RULES: list[Obj] = [
    {
        "apiGroups": [""],
        "resources": [
            "configmaps",
            "endpoints",
            "persistentvolumeclaims",
            "persistentvolumeclaims/status",
            "pods",
            "pods/log",
            "pods/status",
            "replicationcontrollers",
            "replicationcontrollers/scale",
            "replicationcontrollers/status",
            "serviceaccounts",
            "services",
            "services/status",
        ],
        "verbs": _READ,
    },
    {
        "apiGroups": [""],
        "resources": [
            "bindings",
            "events",
            "limitranges",
            "namespaces/status",
            "pods/log",
            "pods/status",
            "replicationcontrollers/status",
            "resourcequotas",
            "resourcequotas/status",
        ],
        "verbs": _READ,
    },
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": _READ},
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": _READ},
    {
        "apiGroups": ["apps"],
        "resources": [
            "controllerrevisions",
            "daemonsets",
            "daemonsets/status",
            "deployments",
            "deployments/scale",
            "deployments/status",
            "replicasets",
            "replicasets/scale",
            "replicasets/status",
            "statefulsets",
            "statefulsets/scale",
            "statefulsets/status",
        ],
        "verbs": _READ,
    },
    {
        "apiGroups": ["autoscaling"],
        "resources": ["horizontalpodautoscalers", "horizontalpodautoscalers/status"],
        "verbs": _READ,
    },
    {"apiGroups": ["batch"], "resources": ["cronjobs", "cronjobs/status", "jobs", "jobs/status"], "verbs": _READ},
    {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets", "poddisruptionbudgets/status"], "verbs": _READ},
    {
        "apiGroups": ["networking.k8s.io"],
        "resources": ["ingresses", "ingresses/status", "networkpolicies"],
        "verbs": _READ,
    },
]

_EDIT_RULES: list[Obj] = [
    {
        "apiGroups": [""],
        "resources": ["pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "secrets", "services/proxy"],
        "verbs": _READ,
    },
    {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["impersonate"]},
    {
        "apiGroups": [""],
        "resources": ["pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy"],
        "verbs": _WRITE,
    },
    {"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]},
    {
        "apiGroups": [""],
        "resources": [
            "configmaps",
            "events",
            "persistentvolumeclaims",
            "replicationcontrollers",
            "replicationcontrollers/scale",
            "secrets",
            "serviceaccounts",
            "services",
            "services/proxy",
        ],
        "verbs": _WRITE,
    },
    {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]},
    {
        "apiGroups": ["apps"],
        "resources": [
            "daemonsets",
            "deployments",
            "deployments/rollback",
            "deployments/scale",
            "replicasets",
            "replicasets/scale",
            "statefulsets",
            "statefulsets/scale",
        ],
        "verbs": _WRITE,
    },
    {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": _WRITE},
    {"apiGroups": ["batch"], "resources": ["cronjobs", "jobs"], "verbs": _WRITE},
    {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses", "networkpolicies"], "verbs": _WRITE},
    {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": _WRITE},
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": [*_READ, *_WRITE]},
]

_ADMIN_RULES: list[Obj] = [
    {"apiGroups": ["authorization.k8s.io"], "resources": ["localsubjectaccessreviews"], "verbs": ["create"]},
    {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["rolebindings", "roles"], "verbs": [*_WRITE, *_READ]},
]


def default_objects() -> list[tuple[str, Obj]]:
    """The ClusterRoles and ClusterRoleBindings a new cluster starts with."""
    gr_role = "clusterroles.rbac.authorization.k8s.io"
    gr_bind = "clusterrolebindings.rbac.authorization.k8s.io"
    av = "rbac.authorization.k8s.io/v1"
    boot = {"kubernetes.io/bootstrapping": "rbac-defaults"}
    auto = {"rbac.authorization.kubernetes.io/autoupdate": "true"}

    def role(name: str, rules: list[Obj], extra_labels: dict[str, str] | None = None) -> Obj:
        return {
            "apiVersion": av,
            "kind": "ClusterRole",
            "metadata": {"name": name, "labels": {**boot, **(extra_labels or {})}, "annotations": dict(auto)},
            "rules": rules,
        }

    def binding(name: str, role_name: str, subjects: list[Obj]) -> Obj:
        return {
            "apiVersion": av,
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name, "labels": dict(boot), "annotations": dict(auto)},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role_name},
            "subjects": subjects,
        }

    grp = "rbac.authorization.k8s.io"

    def aggregated(name: str, to: str, labels: dict[str, str] | None = None) -> Obj:
        r = role(name, [], labels)
        r["aggregationRule"] = {"clusterRoleSelectors": [{"matchLabels": {f"{AGG}{to}": "true"}}]}
        return r

    return [
        (gr_role, aggregated("admin", "admin")),
        (gr_role, aggregated("edit", "edit", {f"{AGG}admin": "true"})),
        (gr_role, aggregated("view", "view", {f"{AGG}edit": "true"})),
        (gr_role, role("system:aggregate-to-admin", _ADMIN_RULES, {f"{AGG}admin": "true"})),
        (gr_role, role("system:aggregate-to-edit", _EDIT_RULES, {f"{AGG}edit": "true"})),
        (gr_role, role("system:aggregate-to-view", _VIEW_RULES, {f"{AGG}view": "true"})),
        (
            gr_role,
            role(
                "cluster-admin",
                [
                    {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                    {"nonResourceURLs": ["*"], "verbs": ["*"]},
                ],
            ),
        ),
        (
            gr_role,
            role(
                "system:discovery",
                [
                    {
                        "nonResourceURLs": [
                            "/api",
                            "/api/*",
                            "/apis",
                            "/apis/*",
                            "/healthz",
                            "/livez",
                            "/openapi",
                            "/openapi/*",
                            "/readyz",
                            "/version",
                            "/version/",
                        ],
                        "verbs": ["get"],
                    },
                ],
            ),
        ),
        (
            gr_role,
            role(
                "system:basic-user",
                [
                    {
                        "apiGroups": ["authorization.k8s.io"],
                        "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                        "verbs": ["create"],
                    },
                    {"apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"], "verbs": ["create"]},
                ],
            ),
        ),
        (
            gr_bind,
            binding("cluster-admin", "cluster-admin", [{"apiGroup": grp, "kind": "Group", "name": "system:masters"}]),
        ),
        (
            gr_bind,
            binding(
                "system:discovery",
                "system:discovery",
                [{"apiGroup": grp, "kind": "Group", "name": "system:authenticated"}],
            ),
        ),
        (
            gr_bind,
            binding(
                "system:basic-user",
                "system:basic-user",
                [{"apiGroup": grp, "kind": "Group", "name": "system:authenticated"}],
            ),
        ),
    ]
