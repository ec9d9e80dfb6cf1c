"""Discovery, CRUD, errors and output formats, through the real kubectl."""

from __future__ import annotations

import json

import yaml

from tests.runtime.kube.conftest import Kubectl


def test_version_reports_1_37(alpha: Kubectl) -> None:
    out = json.loads(alpha("version", "-o", "json"))
    assert out["serverVersion"]["gitVersion"] == "v1.37.1"
    assert out["serverVersion"]["minor"] == "37"


def test_api_resources_lists_core_and_apps_kinds(alpha: Kubectl) -> None:
    out = alpha("api-resources", "--no-headers")
    rows = {line.split()[0]: line.split() for line in out.splitlines()}
    assert rows["deployments"][1:] == ["deploy", "apps/v1", "true", "Deployment"]
    assert rows["pods"][1:] == ["po", "v1", "true", "Pod"]
    assert rows["namespaces"][1:] == ["ns", "v1", "false", "Namespace"]
    assert "clusterroles" in rows


def test_new_cluster_has_system_namespaces_and_a_node(alpha: Kubectl) -> None:
    names = alpha("get", "ns", "-o", "name").split()
    for n in ("default", "kube-system", "kube-public", "kube-node-lease"):
        assert f"namespace/{n}" in names
    assert alpha("get", "nodes", "--no-headers").split()[1] == "Ready"
    assert alpha("get", "sa", "default", "-n", "kube-system", "-o", "name") == ("serviceaccount/default\n")
    svc = alpha("get", "svc", "kubernetes", "-n", "default", "-o", "jsonpath={.spec.clusterIP}")
    assert svc == "10.96.0.1"


def test_get_missing_pod_prints_not_found(alpha: Kubectl, ns: str) -> None:
    err = alpha.fails("get", "pod", "nope", "-n", ns)
    assert err.strip() == 'Error from server (NotFound): pods "nope" not found'
    err = alpha.fails("get", "deploy", "nope", "-n", ns)
    assert err.strip() == 'Error from server (NotFound): deployments.apps "nope" not found'


def test_create_twice_is_already_exists(alpha: Kubectl, ns: str) -> None:
    assert alpha("create", "configmap", "x", "-n", ns, "--from-literal=a=b") == "configmap/x created\n"
    err = alpha.fails("create", "configmap", "x", "-n", ns, "--from-literal=a=b")
    assert err.strip() == 'error: failed to create configmap: configmaps "x" already exists'


def test_invalid_name_is_rejected_with_the_real_message(alpha: Kubectl, ns: str) -> None:
    err = alpha.fails("create", "configmap", "Bad_Name", "-n", ns)
    assert 'ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": ' in err
    assert "a lowercase RFC 1123 subdomain must consist of" in err


def test_invalid_manifest_lists_causes(alpha: Kubectl, ns: str) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}}
    err = alpha.fails("create", "-n", ns, "-f", "-", stdin=json.dumps(pod))
    assert 'The Pod "p" is invalid: spec.containers[0].image: Required value' in err


def test_unknown_field_fails_strict_validation(alpha: Kubectl, ns: str) -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "s"}, "dat": {"a": "b"}}
    err = alpha.fails("create", "-n", ns, "-f", "-", stdin=json.dumps(cm))
    assert 'strict decoding error: unknown field "dat"' in err
    assert alpha("create", "-n", ns, "--validate=false", "-f", "-", stdin=json.dumps(cm)) == ("configmap/s created\n")


def test_configmap_output_formats(alpha: Kubectl, ns: str) -> None:
    alpha("create", "configmap", "cfg", "-n", ns, "--from-literal=color=blue", "--from-literal=n=1")
    assert alpha("get", "cm", "cfg", "-n", ns, "-o", "jsonpath={.data.color}") == "blue"
    assert alpha("get", "cm", "cfg", "-n", ns, "-o", "name") == "configmap/cfg\n"
    doc = yaml.safe_load(alpha("get", "cm", "cfg", "-n", ns, "-o", "yaml"))
    assert doc["data"] == {"color": "blue", "n": "1"}
    assert doc["metadata"]["uid"] and int(doc["metadata"]["resourceVersion"]) > 0
    obj = json.loads(alpha("get", "cm", "cfg", "-n", ns, "-o", "json"))
    assert obj["kind"] == "ConfigMap" and obj["metadata"]["namespace"] == ns
    table = alpha("get", "cm", "cfg", "-n", ns).splitlines()
    assert table[0].split() == ["NAME", "DATA", "AGE"]
    assert table[1].split()[:2] == ["cfg", "2"]
    cc = alpha("get", "cm", "cfg", "-n", ns, "-o", "custom-columns=N:.metadata.name,C:.data.color")
    assert cc.splitlines() == ["N     C", "cfg   blue"]


def test_secret_and_service_columns(alpha: Kubectl, ns: str) -> None:
    alpha("create", "secret", "generic", "pw", "-n", ns, "--from-literal=p=hunter2")
    row = alpha("get", "secret", "pw", "-n", ns, "--no-headers").split()
    assert row[:3] == ["pw", "Opaque", "1"]
    assert alpha("get", "secret", "pw", "-n", ns, "-o", "jsonpath={.data.p}") == "aHVudGVyMg=="
    alpha("create", "service", "clusterip", "web", "-n", ns, "--tcp=80:8080")
    head, svc_row = alpha("get", "svc", "web", "-n", ns, "-o", "wide").splitlines()
    assert head.split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "SELECTOR"]
    cells = svc_row.split()
    assert cells[0:2] == ["web", "ClusterIP"] and cells[2].startswith("10.96.")
    assert cells[3:5] == ["<none>", "80/TCP"] and cells[6] == "app=web"


def test_label_and_field_selectors(alpha: Kubectl, ns: str) -> None:
    for name, tier in (("a", "front"), ("b", "back"), ("c", "front")):
        alpha("create", "configmap", name, "-n", ns)
        alpha("label", "configmap", name, "-n", ns, f"tier={tier}")
    assert alpha("get", "cm", "-n", ns, "-l", "tier=front", "-o", "name").split() == ["configmap/a", "configmap/c"]
    assert alpha("get", "cm", "-n", ns, "-l", "tier in (back)", "-o", "name").split() == ["configmap/b"]
    assert alpha("get", "cm", "-n", ns, "-l", "tier!=front,tier", "-o", "name").split() == ["configmap/b"]
    assert alpha("get", "cm", "-n", ns, "--field-selector", "metadata.name=c", "-o", "name") == ("configmap/c\n")
    err = alpha.fails("get", "cm", "-n", ns, "--field-selector", "spec.x=1")
    assert "field label not supported: spec.x" in err


def test_list_pagination_with_limit_and_continue(alpha: Kubectl, ns: str) -> None:
    for i in range(5):
        alpha("create", "configmap", f"p{i}", "-n", ns)
    page = json.loads(alpha("get", "--raw", f"/api/v1/namespaces/{ns}/configmaps?limit=2"))
    assert [i["metadata"]["name"] for i in page["items"]] == ["kube-root-ca.crt", "p0"]
    assert page["metadata"]["remainingItemCount"] == 4
    cont = page["metadata"]["continue"]
    page2 = json.loads(alpha("get", "--raw", f"/api/v1/namespaces/{ns}/configmaps?limit=2&continue={cont}"))
    assert [i["metadata"]["name"] for i in page2["items"]] == ["p1", "p2"]
    # kubectl itself pages with --chunk-size and still shows everything
    names = alpha("get", "cm", "-n", ns, "--chunk-size=2", "-o", "name").split()
    assert len(names) == 6


def test_label_annotate_and_patch(alpha: Kubectl, ns: str) -> None:
    alpha("create", "configmap", "m", "-n", ns, "--from-literal=a=1")
    assert alpha("label", "cm", "m", "-n", ns, "env=dev") == "configmap/m labeled\n"
    assert alpha("annotate", "cm", "m", "-n", ns, "owner=me") == "configmap/m annotated\n"
    assert alpha("patch", "cm", "m", "-n", ns, "-p", '{"data":{"b":"2"}}') == "configmap/m patched\n"
    alpha("patch", "cm", "m", "-n", ns, "--type=json", "-p", '[{"op":"remove","path":"/data/a"}]')
    alpha("patch", "cm", "m", "-n", ns, "--type=merge", "-p", '{"data":{"c":"3"}}')
    obj = json.loads(alpha("get", "cm", "m", "-n", ns, "-o", "json"))
    assert obj["data"] == {"b": "2", "c": "3"}
    assert obj["metadata"]["labels"] == {"env": "dev"}
    assert obj["metadata"]["annotations"] == {"owner": "me"}
    # a patch that changes nothing keeps the resourceVersion
    rv = obj["metadata"]["resourceVersion"]
    assert alpha("patch", "cm", "m", "-n", ns, "-p", '{"data":{"b":"2"}}') == ("configmap/m patched (no change)\n")
    assert alpha("get", "cm", "m", "-n", ns, "-o", "jsonpath={.metadata.resourceVersion}") == rv


def test_delete_namespace_terminates_its_contents(alpha: Kubectl) -> None:
    alpha("create", "namespace", "doomed")
    alpha("create", "configmap", "c", "-n", "doomed")
    assert alpha("delete", "namespace", "doomed", timeout=60) == 'namespace "doomed" deleted\n'
    err = alpha.fails("get", "namespace", "doomed")
    assert err.strip() == 'Error from server (NotFound): namespaces "doomed" not found'
    assert alpha("get", "cm", "-n", "doomed", "-o", "name") == ""


def test_create_in_missing_namespace_is_not_found(alpha: Kubectl) -> None:
    err = alpha.fails("create", "configmap", "x", "-n", "nowhere")
    assert 'namespaces "nowhere" not found' in err


def test_explain_uses_served_openapi(alpha: Kubectl) -> None:
    out = alpha("explain", "deployment.spec.replicas")
    assert "KIND:       Deployment" in out and "FIELD: replicas <integer>" in out
    assert "Number of desired pods" in out
    out = alpha("explain", "pods.spec.containers")
    assert "FIELD: containers <[]Container>" in out


def test_dry_run_server_does_not_persist(alpha: Kubectl, ns: str) -> None:
    out = alpha("create", "configmap", "dry", "-n", ns, "--dry-run=server")
    assert out == "configmap/dry created (server dry run)\n"
    assert alpha.fails("get", "cm", "dry", "-n", ns).strip() == (
        'Error from server (NotFound): configmaps "dry" not found'
    )


def test_expose_creates_service_and_endpoints(alpha: Kubectl, ns: str) -> None:
    alpha("create", "deployment", "web", "--image=nginx", "-n", ns)
    assert alpha("expose", "deployment", "web", "--port=80", "--target-port=8080", "-n", ns) == (
        "service/web exposed\n"
    )
    r = alpha.run("get", "endpoints", "-n", ns)
    assert r.returncode == 0
    assert "Warning: v1 Endpoints is deprecated in v1.33+" in r.stderr
    rows = [line.split() for line in r.stdout.splitlines()]
    assert rows[0] == ["NAME", "ENDPOINTS", "AGE"] and rows[1][:2] == ["web", "<none>"]
    alpha("delete", "svc", "web", "-n", ns)
    assert alpha("get", "endpoints", "-n", ns, "-o", "name") == ""


def test_create_quota_sends_protobuf_and_prints_columns(alpha: Kubectl, ns: str) -> None:
    assert alpha("create", "quota", "q", "--hard=pods=2", "-n", ns) == "resourcequota/q created\n"
    head = alpha("get", "quota", "-n", ns).splitlines()[0].split()
    assert head == ["NAME", "AGE", "REQUEST", "LIMIT"]
    assert alpha("get", "quota", "q", "-n", ns, "-o", "jsonpath={.spec.hard.pods}") == "2"


def test_system_namespaces_cannot_be_deleted(alpha: Kubectl) -> None:
    err = alpha.fails("delete", "namespace", "kube-system")
    assert err.strip() == (
        'Error from server (Forbidden): namespaces "kube-system" is forbidden: this namespace may not be deleted'
    )


def test_openapi_v2_is_swagger_converted_from_the_v3_sources(alpha: Kubectl) -> None:
    doc = json.loads(alpha("get", "--raw", "/openapi/v2"))
    assert doc["swagger"] == "2.0"
    dep = doc["definitions"]["io.k8s.api.apps.v1.Deployment"]
    assert dep["x-kubernetes-group-version-kind"] == [{"group": "apps", "kind": "Deployment", "version": "v1"}]
    assert dep["properties"]["metadata"]["$ref"] == "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    put = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["put"]
    assert put["parameters"][0] == {
        "name": "body",
        "in": "body",
        "required": True,
        "schema": {"$ref": "#/definitions/io.k8s.api.apps.v1.Deployment"},
    }
    assert {"name": "fieldValidation", "in": "query", "type": "string", "uniqueItems": True} in put["parameters"]
    refs: set[str] = set()

    def walk(n: object) -> None:
        if isinstance(n, dict):
            if isinstance(n.get("$ref"), str):
                refs.add(n["$ref"].removeprefix("#/definitions/"))
            for v in n.values():
                walk(v)
        elif isinstance(n, list):
            for v in n:
                walk(v)

    walk(doc)
    assert refs and refs <= set(doc["definitions"])  # no dangling reference
    # kubectl asks for v2 only as protobuf (explain --output=plaintext-openapiv2): not encoded here
    err = alpha.fails("explain", "pods", "--output=plaintext-openapiv2")
    assert "NotAcceptable" in err
