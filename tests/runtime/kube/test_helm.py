"""The real helm v4 (scripts/helm.py: the binary lab-base ships) against a lab cluster.

helm's release storage is the typed Secrets client of client-go: protobuf bodies on
create, update and DELETE (a ``DeleteOptions``). The lifecycle is the one the Helm lab
teaches, with the release Secrets checked at each step, then the name is reused.
Pods do not run on this API-server-only cluster: ``--wait`` is proved in a sandbox by
tests/content/test_lab_solutions.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.runtime.kube.conftest import ROOT, Kubectl

CHART = ROOT / "content/intro-to-kubernetes/08-advanced-topics/labs/01-helm-releases/files/charts/hello"


@pytest.fixture(scope="module")
def helm_bin() -> str:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "helm.py"), "--quiet"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


class Helm:
    def __init__(self, binary: str, kc: Kubectl, home: Path) -> None:
        self.binary, self.kc = binary, kc
        self.env = {
            **os.environ,
            "KUBECONFIG": str(kc.kubeconfig),
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
        }

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.binary, *args], capture_output=True, text=True, timeout=120, env=self.env, check=False
        )

    def __call__(self, *args: str) -> str:
        r = self.run(*args)
        assert r.returncode == 0, f"helm {' '.join(args)} failed: {r.stderr}"
        return r.stdout


@pytest.fixture
def helm(helm_bin: str, alpha: Kubectl, tmp_path: Path) -> Iterator[Helm]:
    yield Helm(helm_bin, alpha, tmp_path)


def release_secrets(kc: Kubectl, ns: str, name: str) -> list[str]:
    out = kc("get", "secrets", "-n", ns, "-l", f"owner=helm,name={name}", "-o", "jsonpath={.items[*].metadata.name}")
    return sorted(out.split())


def test_install_upgrade_rollback_uninstall_and_install_again(helm: Helm, alpha: Kubectl, ns: str) -> None:
    out = helm("install", "demo", str(CHART), "-n", ns)
    assert "STATUS: deployed" in out and "REVISION: 1" in out
    assert release_secrets(alpha, ns, "demo") == ["sh.helm.release.v1.demo.v1"]
    assert alpha("get", "deploy", "demo", "-n", ns, "-o", "jsonpath={.spec.replicas}") == "1"

    helm("upgrade", "demo", str(CHART), "-n", ns, "--set", "replicaCount=3")
    assert alpha("get", "deploy", "demo", "-n", ns, "-o", "jsonpath={.spec.replicas}") == "3"
    assert "replicaCount: 3" in helm("get", "values", "demo", "-n", ns)

    helm("rollback", "demo", "1", "-n", ns)
    assert alpha("get", "deploy", "demo", "-n", ns, "-o", "jsonpath={.spec.replicas}") == "1"
    history = helm("history", "demo", "-n", ns).splitlines()
    assert [line.split()[0] for line in history[1:]] == ["1", "2", "3"]
    assert "Rollback to 1" in history[3] and "deployed" in history[3]
    assert "superseded" in history[1] and "superseded" in history[2]
    assert "kind: Deployment" in helm("get", "manifest", "demo", "-n", ns)
    assert release_secrets(alpha, ns, "demo") == [f"sh.helm.release.v1.demo.v{i}" for i in (1, 2, 3)]

    assert helm("uninstall", "demo", "-n", ns).strip() == 'release "demo" uninstalled'
    assert release_secrets(alpha, ns, "demo") == []
    assert alpha("get", "deploy,svc", "-n", ns, "-o", "name") == ""
    assert helm("list", "-n", ns, "-q") == ""

    again = helm("install", "demo", str(CHART), "-n", ns)
    assert "REVISION: 1" in again
    assert release_secrets(alpha, ns, "demo") == ["sh.helm.release.v1.demo.v1"]
    assert helm("list", "-n", ns, "-q").split() == ["demo"]


def test_a_packaged_chart_installs_and_keep_history_keeps_the_secrets(
    helm: Helm, alpha: Kubectl, ns: str, tmp_path: Path
) -> None:
    out = helm("package", str(CHART), "-d", str(tmp_path))
    tgz = tmp_path / "hello-0.1.0.tgz"
    assert tgz.is_file(), out
    helm("install", "packed", str(tgz), "-n", ns, "--set", "service.type=NodePort")
    assert alpha("get", "svc", "packed", "-n", ns, "-o", "jsonpath={.spec.type}") == "NodePort"
    helm("uninstall", "packed", "-n", ns, "--keep-history")
    assert release_secrets(alpha, ns, "packed") == ["sh.helm.release.v1.packed.v1"]
    assert "uninstalled" in helm("history", "packed", "-n", ns)
    assert alpha("get", "svc", "-n", ns, "-o", "name") == ""
