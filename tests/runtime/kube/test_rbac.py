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
