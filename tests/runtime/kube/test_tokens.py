"""``kubectl create token``: TokenRequest expiry, honoured by authentication."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

from runtime.kube.apiserver import Cluster
from runtime.kube.server import clusters_dir, create_cluster
from tests.runtime.kube.conftest import Kubectl


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
    create_cluster(tmp_path, "c", "https://127.0.0.1:1")
    cluster = Cluster("c", clusters_dir(tmp_path) / "c")
    tok = cluster.add_token("system:serviceaccount:default:default", [], sa=("default", "default"), expires=1000.0)
    user = cluster.authenticate(tok, now=999.0)
    assert user is not None and user.name == "system:serviceaccount:default:default"
    assert cluster.authenticate(tok, now=1000.0) is None
    # the expiry survives a restart (tokens.json), and minting another prunes the dead one
    again = Cluster("c", clusters_dir(tmp_path) / "c")
    assert again.authenticate(tok, now=999.0) is not None
    again.add_token("someone", [])
    assert len(json.loads((clusters_dir(tmp_path) / "c" / "tokens.json").read_text())) == 2  # admin + someone
    cluster.store.close()
    again.store.close()
