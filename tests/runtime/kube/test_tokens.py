"""Tokens: ``kubectl create token`` (TokenRequest expiry) and per-user tokens minted by the
platform (``python -m runtime kube mint-token``), honoured by authentication and RBAC."""

from __future__ import annotations

import datetime
import json
import subprocess
import time
import uuid
from pathlib import Path

import yaml

from runtime.kube.apiserver.cluster import Cluster
from runtime.kube.apiserver.provision import clusters_dir, create_cluster, mint_user_token
from runtime.kube.controllers.manager import Controllers
from tests.runtime.kube.conftest import PY, ROOT, Kubectl, Server


def test_create_token_duration_sets_expiry_and_token_works(alpha: Kubectl, ns: str) -> None:
    alpha("create", "sa", "bot", "-n", ns)
    before = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    tr = json.loads(alpha("create", "token", "bot", "--duration=10m", "-n", ns, "-o", "json"))
    after = datetime.datetime.now(datetime.UTC)
    assert tr["kind"] == "TokenRequest" and tr["spec"]["expirationSeconds"] == 600
    exp = datetime.datetime.strptime(tr["status"]["expirationTimestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.UTC
    )
    assert before + datetime.timedelta(seconds=600) <= exp <= after + datetime.timedelta(seconds=600)
    who = alpha("auth", "whoami", "--token", tr["status"]["token"], "-o", "jsonpath={.status.userInfo.username}")
    assert who == f"system:serviceaccount:{ns}:bot"
    default = json.loads(alpha("create", "token", "bot", "-n", ns, "-o", "json"))
    assert default["spec"]["expirationSeconds"] == 3600


def test_token_shorter_than_ten_minutes_is_invalid(alpha: Kubectl, ns: str) -> None:
    alpha("create", "sa", "bot", "-n", ns)
    err = alpha.fails("create", "token", "bot", "--duration=5m", "-n", ns)
    assert err.strip() == (
        'error: failed to create token: TokenRequest.authentication.k8s.io "bot" is invalid: '
        "spec.expirationSeconds: Invalid value: 300: may not specify a duration less than 10 minutes"
    )


def test_expired_token_is_rejected(tmp_path: Path) -> None:
    """In-process, so the clock can be moved past expiry; the server answers None with 401."""
    create_cluster(tmp_path, "c", "https://127.0.0.1:1", controllers=Controllers)
    cluster = Cluster("c", clusters_dir(tmp_path) / "c", controllers=Controllers)
    tok = cluster.add_token("system:serviceaccount:default:default", [], sa=("default", "default"), expires=1000.0)
    user = cluster.authenticate(tok, now=999.0)
    assert user is not None and user.name == "system:serviceaccount:default:default"
    assert cluster.authenticate(tok, now=1000.0) is None
    # the expiry survives a restart (tokens.json), and minting another prunes the dead one
    again = Cluster("c", clusters_dir(tmp_path) / "c", controllers=Controllers)
    assert again.authenticate(tok, now=999.0) is not None
    again.add_token("someone", [])
    assert len(json.loads((clusters_dir(tmp_path) / "c" / "tokens.json").read_text())) == 2  # admin + someone
    cluster.store.close()
    again.store.close()


def _mint(server: Server, cluster: str, user: str, *args: str) -> Kubectl:
    """``python -m runtime kube mint-token`` against the running server's data directory."""
    out = subprocess.run(
        [
            PY,
            "-m",
            "runtime",
            "kube",
            "mint-token",
            "--data",
            str(server.data),
            "--server",
            server.url,
            *args,
            cluster,
            user,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    path = server.data / f"{cluster}-{user}-{uuid.uuid4().hex[:6]}.kubeconfig"
    path.write_text(out.stdout)
    return Kubectl(path)


def test_minted_user_token_is_subject_to_rbac(server: Server, alpha: Kubectl, ns: str) -> None:
    jane = _mint(server, "alpha", "jane")
    cfg = yaml.safe_load(jane.kubeconfig.read_text())
    assert cfg["current-context"] == "jane@alpha" and cfg["users"][0]["name"] == "jane@alpha"
    assert jane("auth", "whoami", "-o", "jsonpath={.status.userInfo.username} {.status.userInfo.groups}") == (
        'jane ["system:authenticated"]'
    )
    err = jane.fails("get", "pods")
    assert err.strip() == (
        'Error from server (Forbidden): pods is forbidden: User "jane" cannot list resource "pods" '
        'in API group "" in the namespace "default"'
    )
    err = jane.fails("get", "pods", "-n", ns)
    assert f'User "jane" cannot list resource "pods" in API group "" in the namespace "{ns}"' in err
    alpha("create", "rolebinding", "jane-view", "--clusterrole=view", "--user=jane", "-n", ns)
    assert jane("get", "pods", "-n", ns).strip() == ""
    assert jane("auth", "can-i", "list", "pods", "-n", ns).strip() == "yes"
    assert jane.run("auth", "can-i", "create", "pods", "-n", ns).stdout.strip() == "no"
    err = jane.fails("create", "configmap", "x", "-n", ns)
    assert f'User "jane" cannot create resource "configmaps" in API group "" in the namespace "{ns}"' in err


def test_minted_token_groups_are_bound_by_group(server: Server, alpha: Kubectl, ns: str) -> None:
    dev = _mint(server, "alpha", "dev1", "--group", "devs", "--group", "qa", "--ttl", "1h")
    who = dev("auth", "whoami", "-o", "jsonpath={.status.userInfo.groups}")
    assert who == '["devs","qa","system:authenticated"]'
    alpha("create", "rolebinding", "devs-edit", "--clusterrole=edit", "--group=devs", "-n", ns)
    assert dev("create", "configmap", "made-by-dev", "-n", ns) == "configmap/made-by-dev created\n"


def test_minted_token_of_one_cluster_is_unknown_to_another(server: Server, alpha: Kubectl, beta: Kubectl) -> None:
    jane = _mint(server, "alpha", "jane")
    token = yaml.safe_load(jane.kubeconfig.read_text())["users"][0]["user"]["token"]
    beta("api-resources")  # discovery cached (as after any earlier use), so the request itself answers
    err = beta.fails("get", "pods", "--token", token)
    assert err.strip() == "error: You must be logged in to the server (Unauthorized)"
    assert jane.run("auth", "whoami").returncode == 0


def test_mint_token_rejects_bad_input(server: Server, alpha: Kubectl) -> None:
    def mint(*args: str) -> str:
        r = subprocess.run(
            [PY, "-m", "runtime.kube", "mint-token", "--data", str(server.data), "--server", server.url, *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode != 0 and r.stdout == ""
        return r.stderr

    assert mint("nosuch", "jane").strip() == 'error: cluster "nosuch" not found'
    assert "use `kubectl create token`" in mint("alpha", "system:serviceaccount:default:default")
    assert "invalid duration '0s'" in mint("--ttl", "0s", "alpha", "jane")
    assert "invalid duration 'soon'" in mint("--ttl", "soon", "alpha", "jane")


def test_minted_token_expires_after_its_ttl(tmp_path: Path) -> None:
    """In-process, so the clock can be moved past the ttl."""
    create_cluster(tmp_path, "c", "https://127.0.0.1:1", controllers=Controllers)
    cluster = Cluster("c", clusters_dir(tmp_path) / "c", controllers=Controllers)
    before = time.time()
    tok = mint_user_token(tmp_path, "c", "jane", ["devs"], ttl_seconds=3600)
    user = cluster.authenticate(tok)  # minted after the cluster was loaded: re-read from tokens.json
    assert user is not None and (user.name, user.groups) == ("jane", ("devs", "system:authenticated"))
    assert cluster.authenticate(tok, now=before + 3599) is not None
    assert cluster.authenticate(tok, now=time.time() + 3600) is None
    forever = mint_user_token(tmp_path, "c", "sam", [])
    assert cluster.authenticate(forever, now=time.time() + 10**9) is not None
    cluster.store.close()
