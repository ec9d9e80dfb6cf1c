"""RBAC with the default ClusterRoles, impersonation and kubectl auth can-i."""

from __future__ import annotations

import json

from tests.runtime.kube.conftest import Kubectl


def test_admin_can_do_everything(alpha: Kubectl) -> None:
    assert alpha("auth", "can-i", "create", "deployments") == "yes\n"
    assert alpha("auth", "can-i", "*", "*") == "yes\n"


def test_unbound_user_is_forbidden_with_the_real_message(alpha: Kubectl, ns: str) -> None:
    r = alpha.run("auth", "can-i", "list", "pods", "-n", ns, "--as=mallory")
    assert r.returncode == 1 and r.stdout == "no\n"
    err = alpha.fails("get", "pods", "-n", ns, "--as=mallory")
    assert err.strip() == (
        'Error from server (Forbidden): pods is forbidden: User "mallory" cannot list resource '
        f'"pods" in API group "" in the namespace "{ns}"'
    )
    err = alpha.fails("get", "deploy", "x", "-n", ns, "--as=mallory")
    assert err.strip() == (
        'Error from server (Forbidden): deployments.apps "x" is forbidden: User "mallory" cannot '
        f'get resource "deployments" in API group "apps" in the namespace "{ns}"'
    )


def test_rolebinding_to_edit_grants_within_its_namespace_only(alpha: Kubectl, ns: str) -> None:
    alpha("create", "rolebinding", "alice-edit", "--clusterrole=edit", "--user=alice", "-n", ns)
    assert alpha("auth", "can-i", "create", "deployments", "-n", ns, "--as=alice") == "yes\n"
    assert alpha("auth", "can-i", "delete", "secrets", "-n", ns, "--as=alice") == "yes\n"
    assert alpha.run("auth", "can-i", "create", "rolebindings", "-n", ns, "--as=alice").stdout == "no\n"
    assert alpha.run("auth", "can-i", "create", "deployments", "-n", "default", "--as=alice").stdout == "no\n"
    assert alpha.run("auth", "can-i", "list", "nodes", "--as=alice").stdout == "no\n"
    out = alpha("create", "deployment", "by-alice", "--image=nginx", "-n", ns, "--as=alice")
    assert out == "deployment.apps/by-alice created\n"


def test_view_role_is_read_only_and_group_subjects_work(alpha: Kubectl, ns: str) -> None:
    alpha("create", "rolebinding", "viewers", "--clusterrole=view", "--group=auditors", "-n", ns)
    assert alpha("auth", "can-i", "list", "pods", "-n", ns, "--as=bob", "--as-group=auditors") == "yes\n"
    assert alpha.run("auth", "can-i", "create", "pods", "-n", ns, "--as=bob", "--as-group=auditors").stdout == "no\n"
    assert alpha.run("auth", "can-i", "get", "secrets", "-n", ns, "--as=bob", "--as-group=auditors").stdout == "no\n"


def test_role_with_resource_names(alpha: Kubectl, ns: str) -> None:
    alpha("create", "role", "one-cm", "--verb=get", "--resource=configmaps", "--resource-name=allowed", "-n", ns)
    alpha("create", "rolebinding", "carol-one", "--role=one-cm", "--user=carol", "-n", ns)
    alpha("create", "configmap", "allowed", "-n", ns)
    alpha("create", "configmap", "other", "-n", ns)
    assert alpha("get", "cm", "allowed", "-n", ns, "--as=carol", "-o", "name") == ("configmap/allowed\n")
    assert "Forbidden" in alpha.fails("get", "cm", "other", "-n", ns, "--as=carol")
    assert alpha.run("auth", "can-i", "get", "configmaps/allowed", "-n", ns, "--as=carol").stdout == "yes\n"


def test_service_account_subjects_and_whoami(alpha: Kubectl, ns: str) -> None:
    alpha("create", "sa", "bot", "-n", ns)
    alpha("create", "clusterrolebinding", f"bot-view-{ns}", "--clusterrole=view", f"--serviceaccount={ns}:bot")
    sa = f"system:serviceaccount:{ns}:bot"
    assert alpha("auth", "can-i", "list", "deployments", "-A", f"--as={sa}") == "yes\n"
    out = alpha("auth", "whoami", f"--as={sa}")
    assert sa in out and "system:serviceaccounts" in out
    listing = alpha("auth", "can-i", "--list", "-n", ns, f"--as={sa}")
    assert "deployments.apps" in listing
    alpha("delete", "clusterrolebinding", f"bot-view-{ns}")


def test_service_account_token_authenticates(alpha: Kubectl, ns: str, tmp_path) -> None:
    import yaml

    alpha("create", "sa", "tok", "-n", ns)
    alpha("create", "rolebinding", "tok-view", "--clusterrole=view", f"--serviceaccount={ns}:tok", "-n", ns)
    token = alpha("create", "token", "tok", "-n", ns).strip()
    cfg = yaml.safe_load(alpha.kubeconfig.read_text())
    cfg["users"][0]["user"]["token"] = token
    path = tmp_path / "sa.kubeconfig"
    path.write_text(yaml.safe_dump(cfg))
    sa = Kubectl(path)
    assert sa("get", "cm", "-n", ns, "-o", "name") == "configmap/kube-root-ca.crt\n"
    err = sa.fails("create", "configmap", "x", "-n", ns)
    assert f'configmaps is forbidden: User "system:serviceaccount:{ns}:tok" cannot create' in err


def test_clusterrole_aggregation_extends_view(alpha: Kubectl, ns: str) -> None:
    alpha("create", "rolebinding", "dave-view", "--clusterrole=view", "--user=dave", "-n", ns)
    assert alpha.run("auth", "can-i", "list", "nodes", "--as=dave").stdout == "no\n"
    assert alpha.run("auth", "can-i", "list", "secrets", "-n", ns, "--as=dave").stdout == "no\n"
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {
            "name": f"secrets-reader-{ns}",
            "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"},
        },
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}],
    }
    alpha("apply", "-f", "-", stdin=json.dumps(role))
    assert alpha("auth", "can-i", "list", "secrets", "-n", ns, "--as=dave") == "yes\n"
    # edit and admin aggregate view, so they gain it too
    view_rules = json.loads(alpha("get", "clusterrole", "admin", "-o", "json"))["rules"]
    assert {"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]} in view_rules
    alpha("delete", "clusterrole", f"secrets-reader-{ns}")
    assert alpha.run("auth", "can-i", "list", "secrets", "-n", ns, "--as=dave").stdout == "no\n"


def _delegate_rbac(alpha: Kubectl, ns: str, user: str) -> None:
    """user may read pods and write Roles/RoleBindings in ns, nothing else."""
    alpha("create", "role", "pod-reader", "--verb=get,list", "--resource=pods", "-n", ns)
    alpha("create", "rolebinding", f"{user}-pods", "--role=pod-reader", f"--user={user}", "-n", ns)
    alpha("create", "role", "rbac-writer", "--verb=get,create,update,patch", "--resource=roles,rolebindings", "-n", ns)
    alpha("create", "rolebinding", f"{user}-rbac", "--role=rbac-writer", f"--user={user}", "-n", ns)


def test_creating_a_role_beyond_ones_own_rights_is_refused(alpha: Kubectl, ns: str) -> None:
    _delegate_rbac(alpha, ns, "dave")
    err = alpha.fails("create", "role", "snoop", "--verb=get,list", "--resource=secrets,pods", "-n", ns, "--as=dave")
    assert err.strip() == (
        'Error from server (Forbidden): roles.rbac.authorization.k8s.io "snoop" is forbidden: user "dave" '
        '(groups=["system:authenticated"]) is attempting to grant RBAC permissions not currently held:\n'
        '{APIGroups:[""], Resources:["secrets"], Verbs:["get" "list"]}'
    )
    # a subset of what dave holds is fine
    out = alpha("create", "role", "mine", "--verb=get", "--resource=pods", "-n", ns, "--as=dave")
    assert out == "role.rbac.authorization.k8s.io/mine created\n"
    # widening it afterwards is refused too (updates are checked, not only creates)
    patch = '{"rules":[{"apiGroups":[""],"resources":["pods"],"verbs":["get","delete"]}]}'
    err = alpha.fails("patch", "role", "mine", "-n", ns, "--type=merge", "-p", patch, "--as=dave")
    assert err.strip().endswith(
        "is attempting to grant RBAC permissions not currently held:\n"
        '{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}'
    )


def test_escalate_verb_allows_creating_any_role(alpha: Kubectl, ns: str) -> None:
    _delegate_rbac(alpha, ns, "erin")
    alpha("create", "role", "escalator", "--verb=escalate", "--resource=roles", "-n", ns)
    alpha("create", "rolebinding", "erin-esc", "--role=escalator", "--user=erin", "-n", ns)
    out = alpha("create", "role", "snoop", "--verb=get", "--resource=secrets", "-n", ns, "--as=erin")
    assert out == "role.rbac.authorization.k8s.io/snoop created\n"


def test_binding_requires_holding_the_role_or_bind(alpha: Kubectl, ns: str) -> None:
    _delegate_rbac(alpha, ns, "fay")
    ok = alpha("create", "rolebinding", "gus-pods", "--role=pod-reader", "--user=gus", "-n", ns, "--as=fay")
    assert ok == "rolebinding.rbac.authorization.k8s.io/gus-pods created\n"
    err = alpha.fails("create", "rolebinding", "gus-admin", "--clusterrole=admin", "--user=gus", "-n", ns, "--as=fay")
    first = err.strip().splitlines()[0]
    assert first == (
        'error: failed to create rolebinding: rolebindings.rbac.authorization.k8s.io "gus-admin" is forbidden: '
        'user "fay" (groups=["system:authenticated"]) is attempting to grant RBAC permissions not currently held:'
    )
    secrets = [line for line in err.splitlines() if line.startswith('{APIGroups:[""], Resources:["secrets"], Verbs:[')]
    assert len(secrets) == 1 and '"get"' in secrets[0] and '"create"' in secrets[0]
    # what fay holds (get, list pods) is not listed as missing
    pods = [line for line in err.splitlines() if line.startswith('{APIGroups:[""], Resources:["pods"], Verbs:[')]
    assert len(pods) == 1 and '"create"' in pods[0] and '"get"' not in pods[0] and '"list"' not in pods[0]
    alpha("create", "role", "binder", "--verb=bind", "--resource=clusterroles", "--resource-name=admin", "-n", ns)
    alpha("create", "rolebinding", "fay-bind", "--role=binder", "--user=fay", "-n", ns)
    ok = alpha("create", "rolebinding", "gus-admin", "--clusterrole=admin", "--user=gus", "-n", ns, "--as=fay")
    assert ok == "rolebinding.rbac.authorization.k8s.io/gus-admin created\n"
    # bind is per role name: another ClusterRole is still refused
    assert "not currently held" in alpha.fails(
        "create", "rolebinding", "gus-edit", "--clusterrole=edit", "--user=gus", "-n", ns, "--as=fay"
    )
