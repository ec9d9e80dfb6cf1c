"""Every verb, subresource, discovery and OpenAPI use of the real kubectl 1.37.

Each test is what a student or a tutorial types, with what kubectl prints against a real
cluster (kubectl's own messages: "configmap/x created", "Error from server (NotFound)",
table headers), so the oracle is kubectl's reading of our answers.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.compat.kube.conftest import Kubectl
from tests.runtime.kube.apiserver.test_pod_io import HostPodIO
from tests.runtime.kube.conftest import KUBECTL

CLIENT = "kubectl"

CM = """
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg, labels: {t: v}}
data: {a: "1"}
"""

DEPLOY = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: nginx
        image: nginx:1.27
        env: [{name: A, value: "1"}]
"""


def test_create_get_describe_delete(kubectl: Kubectl, ns: str) -> None:
    assert kubectl("create", "configmap", "c1", "-n", ns, "--from-literal=a=1").strip() == "configmap/c1 created"
    assert kubectl("get", "cm", "c1", "-n", ns, "-o", "jsonpath={.data.a}") == "1"
    table = kubectl("get", "configmaps", "-n", ns).splitlines()
    assert table[0].split() == ["NAME", "DATA", "AGE"]
    assert "Data\n====\na:\n----\n1" in kubectl("describe", "cm", "c1", "-n", ns)
    assert kubectl("delete", "cm", "c1", "-n", ns).strip() == f'configmap "c1" deleted from {ns} namespace'
    err = kubectl.fails("get", "cm", "c1", "-n", ns)
    assert err.strip() == 'Error from server (NotFound): configmaps "c1" not found'


def test_apply_client_side_then_again_then_server_side(kubectl: Kubectl, ns: str) -> None:
    assert kubectl("apply", "-n", ns, "-f", "-", stdin=CM).strip() == "configmap/cfg created"
    assert kubectl("apply", "-n", ns, "-f", "-", stdin=CM).strip() == "configmap/cfg unchanged"
    changed = CM.replace('a: "1"', 'a: "2"')
    assert kubectl("apply", "-n", ns, "-f", "-", stdin=changed).strip() == "configmap/cfg configured"
    out = kubectl("apply", "--server-side", "--force-conflicts", "-n", ns, "-f", "-", stdin=CM)
    assert out.strip() == "configmap/cfg serverside-applied"
    managers = kubectl(
        "get", "cm", "cfg", "-n", ns, "--show-managed-fields", "-o", "jsonpath={.metadata.managedFields[*].manager}"
    )
    assert "kubectl" in managers


def test_replace_is_an_update(kubectl: Kubectl, ns: str) -> None:
    kubectl("apply", "-n", ns, "-f", "-", stdin=CM)
    obj = json.loads(kubectl("get", "cm", "cfg", "-n", ns, "-o", "json"))
    obj["data"]["b"] = "2"
    assert kubectl("replace", "-f", "-", stdin=json.dumps(obj)).strip() == "configmap/cfg replaced"
    assert kubectl("get", "cm", "cfg", "-n", ns, "-o", "jsonpath={.data.b}") == "2"
    # the same stale resourceVersion again: a conflict, in kubectl's words
    err = kubectl.fails("replace", "-f", "-", stdin=json.dumps(obj))
    assert 'Operation cannot be fulfilled on configmaps "cfg": the object has been modified' in err


@pytest.mark.parametrize(
    ("typ", "patch"),
    [
        ("json", '[{"op":"add","path":"/data/b","value":"2"}]'),
        ("merge", '{"data":{"b":"2"}}'),
        ("strategic", '{"data":{"b":"2"}}'),
    ],
)
def test_patch_types(kubectl: Kubectl, ns: str, typ: str, patch: str) -> None:
    kubectl("apply", "-n", ns, "-f", "-", stdin=CM)
    assert kubectl("patch", "cm", "cfg", "-n", ns, "--type", typ, "-p", patch).strip() == "configmap/cfg patched"
    assert json.loads(kubectl("get", "cm", "cfg", "-n", ns, "-o", "jsonpath={.data}")) == {"a": "1", "b": "2"}


def test_strategic_patch_adds_a_container_first(kubectl: Kubectl, ns: str) -> None:
    """The kubectl patch task's own example: a container added by a strategic merge patch is
    listed before the existing one."""
    kubectl("apply", "-n", ns, "-f", "-", stdin=DEPLOY)
    p = '{"spec":{"template":{"spec":{"containers":[{"name":"redis","image":"redis:7"}]}}}}'
    kubectl("patch", "deployment", "web", "-n", ns, "-p", p)
    names = kubectl("get", "deploy", "web", "-n", ns, "-o", "jsonpath={.spec.template.spec.containers[*].name}")
    assert names == "redis nginx"


def test_dry_run_server_and_strict_validation(kubectl: Kubectl, ns: str) -> None:
    out = kubectl("apply", "--dry-run=server", "-n", ns, "-f", "-", stdin=CM)
    assert out.strip() == "configmap/cfg created (server dry run)"
    assert kubectl.run("get", "cm", "cfg", "-n", ns).returncode != 0
    bad = CM + "bogus: 1\n"
    err = kubectl.fails("apply", "--validate=strict", "-n", ns, "-f", "-", stdin=bad)
    assert 'unknown field "bogus"' in err


def test_delete_collection_over_the_raw_api(kubectl: Kubectl, ns: str) -> None:
    for i in range(3):
        kubectl("create", "configmap", f"d{i}", "-n", ns)
    kubectl("label", "cm", "d0", "d1", "-n", ns, "gone=yes")
    kubectl("delete", "--raw", f"/api/v1/namespaces/{ns}/configmaps?labelSelector=gone%3Dyes")
    names = kubectl("get", "cm", "-n", ns, "-o", "jsonpath={.items[*].metadata.name}").split()
    assert "d2" in names and "d0" not in names and "d1" not in names


def test_delete_all_and_cascade_orphan(kubectl: Kubectl, ns: str) -> None:
    kubectl("apply", "-n", ns, "-f", "-", stdin=DEPLOY)
    kubectl("delete", "deploy", "web", "-n", ns, "--cascade=orphan")
    rs = json.loads(kubectl("get", "rs", "-n", ns, "-o", "json"))["items"]
    assert len(rs) == 1 and not rs[0]["metadata"].get("ownerReferences")
    kubectl("delete", "rs", "--all", "-n", ns)
    assert kubectl("get", "rs", "-n", ns, "-o", "name") == ""


def test_watch_prints_changes(kubectl: Kubectl, ns: str) -> None:
    kubectl("create", "configmap", "w0", "-n", ns)
    proc = subprocess.Popen(
        [KUBECTL, "--kubeconfig", str(kubectl.kubeconfig), "get", "cm", "-n", ns, "-w", "-o", "name"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline().strip()]
        kubectl("create", "configmap", "w1", "-n", ns)
        deadline = time.monotonic() + 15
        while "configmap/w1" not in lines and time.monotonic() < deadline:
            lines.append(proc.stdout.readline().strip())
        assert "configmap/w1" in lines
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_status_and_scale_subresources(kubectl: Kubectl, ns: str) -> None:
    kubectl("apply", "-n", ns, "-f", "-", stdin=DEPLOY)
    assert kubectl("scale", "deploy", "web", "-n", ns, "--replicas=2").strip() == "deployment.apps/web scaled"
    scale = json.loads(kubectl("get", "deploy", "web", "-n", ns, "--subresource=scale", "-o", "json"))
    assert scale["kind"] == "Scale" and scale["spec"]["replicas"] == 2
    out = kubectl(
        "patch",
        "deploy",
        "web",
        "-n",
        ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status":{"observedGeneration":99}}',
    )
    assert out.strip() == "deployment.apps/web patched"
    st = json.loads(kubectl("get", "deploy", "web", "-n", ns, "--subresource=status", "-o", "json"))
    assert st["status"]["observedGeneration"] in (99, st["metadata"]["generation"])  # the controller may catch up


def test_logs_exec_attach(kubectl: Kubectl, ns: str, pod_io: HostPodIO) -> None:
    kubectl("run", "p", "-n", ns, "--image=busybox:1.36", "--restart=Never", "--", "sleep", "3600")
    pod_io.scripts[("p", "p")] = "printf 'l1\\nl2\\n'"
    assert kubectl("logs", "p", "-n", ns) == "l1\nl2\n"
    assert kubectl("logs", "p", "-n", ns, "--tail=1") == "l2\n"
    assert kubectl("exec", "p", "-n", ns, "--", "echo", "hi") == "hi\n"
    assert kubectl("exec", "-i", "p", "-n", ns, "--", "cat", stdin="in\n") == "in\n"
    r = kubectl.run("exec", "p", "-n", ns, "--", "sh", "-c", "exit 4")
    assert r.returncode == 4
    assert kubectl("attach", "p", "-n", ns).startswith("l1\nl2\n")


def test_privileged_and_host_namespaces_are_refused_by_admission(kubectl: Kubectl, ns: str) -> None:
    pod = """
apiVersion: v1
kind: Pod
metadata: {name: priv}
spec:
  hostPID: true
  containers:
  - {name: c, image: busybox, securityContext: {privileged: true}}
"""
    err = kubectl.fails("apply", "-n", ns, "-f", "-", stdin=pod)
    assert err.startswith('Error from server (Forbidden): error when creating "STDIN": pods "priv" is forbidden: ')
    assert "host namespaces (hostPID=true" in err and 'privileged (container "c"' in err


def test_discovery(kubectl: Kubectl) -> None:
    versions = kubectl("api-versions").split()
    for gv in ("v1", "apps/v1", "apiregistration.k8s.io/v1", "batch/v1", "rbac.authorization.k8s.io/v1"):
        assert gv in versions
    res = kubectl("api-resources", "--api-group=", "-o", "wide").splitlines()
    rc = next(ln.split() for ln in res if ln.startswith("replicationcontrollers "))
    assert rc[:5] == ["replicationcontrollers", "rc", "v1", "true", "ReplicationController"]
    assert "apiservices" in kubectl("api-resources", "--api-group=apiregistration.k8s.io", "-o", "name")
    assert "Server Version: v1.37" in kubectl("version")


def test_openapi_v3_explain_and_v2_raw(kubectl: Kubectl) -> None:
    out = kubectl("explain", "rc.spec.selector")
    assert "KIND:       ReplicationController" in out and "FIELD: selector <map[string]string>" in out
    out = kubectl("explain", "apiservice.spec")
    assert "GROUP:      apiregistration.k8s.io" in out
    assert "groupPriorityMinimum\t<integer> -required-" in out
    v2 = json.loads(kubectl("get", "--raw", "/openapi/v2"))
    assert "io.k8s.api.core.v1.ReplicationController" in v2["definitions"]


def test_namespace_finalize_subresource(kubectl: Kubectl) -> None:
    """The tutorial way out of a namespace stuck in Terminating: PUT .../finalize with no
    finalizers (only spec.finalizers is taken from the body)."""
    kubectl("create", "namespace", "fin-x")
    ns = json.loads(kubectl("get", "namespace", "fin-x", "-o", "json"))
    assert ns["spec"]["finalizers"] == ["kubernetes"]
    ns["spec"]["finalizers"] = []
    ns["metadata"]["labels"]["sneaky"] = "ignored"
    out = json.loads(kubectl("replace", "--raw", "/api/v1/namespaces/fin-x/finalize", "-f", "-", stdin=json.dumps(ns)))
    assert out["kind"] == "Namespace" and out["spec"] == {}
    assert "sneaky" not in out["metadata"]["labels"]
    kubectl("delete", "namespace", "fin-x")


SA = """
apiVersion: v1
kind: ServiceAccount
metadata: {name: robot}
secrets:
- name: a
"""


def test_apply_merges_service_account_secrets_by_name(kubectl: Kubectl, ns: str) -> None:
    """ServiceAccount.secrets is patchStrategy=merge, patchMergeKey=name upstream: both
    served OpenAPI documents say so, the server merges a strategic patch by name, and a
    re-apply keeps a secret someone else added (a replaced list would drop it). (kubectl
    1.37's client-side apply also knows the tag from its compiled-in types, so the apply
    step alone does not tell whether our documents are right: hence the --raw reads.)"""
    v3 = json.loads(kubectl("get", "--raw", "/openapi/v3/api/v1"))["components"]["schemas"]
    v2 = json.loads(kubectl("get", "--raw", "/openapi/v2"))["definitions"]
    for doc in (v3, v2):
        prop = doc["io.k8s.api.core.v1.ServiceAccount"]["properties"]["secrets"]
        assert (prop["x-kubernetes-patch-strategy"], prop["x-kubernetes-patch-merge-key"]) == ("merge", "name")
    kubectl("apply", "-n", ns, "-f", "-", stdin=SA)
    kubectl("patch", "sa", "robot", "-n", ns, "--type=strategic", "-p", '{"secrets":[{"name":"b"}]}')
    got = kubectl("get", "sa", "robot", "-n", ns, "-o", "jsonpath={.secrets[*].name}").split()
    assert sorted(got) == ["a", "b"]
    kubectl("apply", "-n", ns, "-f", "-", stdin=SA + "- name: c\n")
    got = kubectl("get", "sa", "robot", "-n", ns, "-o", "jsonpath={.secrets[*].name}").split()
    assert sorted(got) == ["a", "b", "c"]


def test_strategic_patch_merges_service_ports_by_port(kubectl: Kubectl, ns: str) -> None:
    svc = (
        "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  selector: {app: s}\n"
        "  ports:\n  - {name: http, port: 80, targetPort: 8080}\n"
    )
    kubectl("apply", "-n", ns, "-f", "-", stdin=svc)
    p = '{"spec":{"ports":[{"name":"https","port":443,"targetPort":8443},{"port":80,"targetPort":9090}]}}'
    kubectl("patch", "svc", "s", "-n", ns, "--type=strategic", "-p", p)
    ports = json.loads(kubectl("get", "svc", "s", "-n", ns, "-o", "jsonpath={.spec.ports}"))
    assert sorted((q["port"], q["targetPort"], q.get("name")) for q in ports) == [
        (80, 9090, "http"),
        (443, 8443, "https"),
    ]


def test_apply_keeps_a_container_someone_else_added_in_its_place(kubectl: Kubectl, ns: str) -> None:
    """kubectl apply sends $setElementOrder; the items only the server has keep their places
    among the applied ones (strategicpatch's mergeSortedSlice), they are not moved last."""
    kubectl("apply", "-n", ns, "-f", "-", stdin=DEPLOY)
    p = '{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"busybox:1.36"}]}}}}'
    kubectl("patch", "deployment", "web", "-n", ns, "-p", p)  # sidecar first, then nginx
    kubectl("apply", "-n", ns, "-f", "-", stdin=DEPLOY.replace("nginx:1.27", "nginx:1.28"))
    spec = json.loads(kubectl("get", "deploy", "web", "-n", ns, "-o", "jsonpath={.spec.template.spec}"))
    assert [(c["name"], c["image"]) for c in spec["containers"]] == [
        ("sidecar", "busybox:1.36"),
        ("nginx", "nginx:1.28"),
    ]
