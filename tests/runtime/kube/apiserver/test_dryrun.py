"""The lab editor's dry run (runtime/kube/apiserver/dryrun.py) against an in-process lab cluster: the
answers are the cluster's own (strict decoding, validation, unknown kinds), an object that
exists is checked as applying it again would be, and nothing is ever stored."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runtime.kube.apiserver.cluster import Cluster
from runtime.kube.apiserver.dryrun import validate, validate_all
from runtime.kube.apiserver.provision import clusters_dir, create_cluster
from runtime.kube.controllers.manager import Controllers
from runtime.kube.meta import Request, User

ADMIN = User("admin", ("system:masters", "system:authenticated"))


@pytest.fixture
def cluster(tmp_path: Path) -> Cluster:
    create_cluster(tmp_path, "lab", "https://127.0.0.1:1", controllers=Controllers)
    return Cluster("lab", clusters_dir(tmp_path) / "lab", controllers=Controllers)


def deployment(**spec_changes: Any) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}
    obj: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [container]}},
        },
    }
    container.update(spec_changes)
    return obj


def create(cluster: Cluster, path: str, obj: dict[str, Any]) -> None:
    reply = cluster.handle(
        Request("POST", path, {}, {"content-type": "application/json"}, json.dumps(obj).encode(), ADMIN)
    )
    assert reply.status == 201, reply.body  # type: ignore[union-attr]


def causes(result: dict[str, Any]) -> list[tuple[str, str]]:
    return [(c["field"], c["message"]) for c in result["status"]["details"]["causes"]]


def test_a_valid_manifest_passes_and_nothing_is_stored(cluster: Cluster) -> None:
    rv = cluster.store.rv
    assert validate(cluster, deployment()) == {"code": 201, "status": None, "warnings": []}
    assert cluster.store.list("deployments.apps") == [] and cluster.store.rv == rv


def test_the_answers_are_the_clusters_validation(cluster: Cluster) -> None:
    bad_port = validate(cluster, deployment(ports=[{"containerPort": 99999}]))
    assert bad_port["code"] == 422
    assert causes(bad_port) == [
        (
            "spec.template.spec.containers[0].ports[0].containerPort",
            "Invalid value: 99999: must be between 1 and 65535, inclusive",
        )
    ]
    no_image = deployment()
    del no_image["spec"]["template"]["spec"]["containers"][0]["image"]
    assert ("spec.template.spec.containers[0].image", "Required value") in causes(validate(cluster, no_image))

    unknown = validate(cluster, deployment(imagePullPolicyy="Always"))
    assert unknown["code"] == 400
    assert 'unknown field "spec.template.spec.containers[0].imagePullPolicyy"' in unknown["status"]["message"]

    no_kind = validate(cluster, {"apiVersion": "apps/v1", "kind": "Deploymnt", "metadata": {"name": "x"}})
    assert (
        no_kind["code"] == 404
        and 'no matches for kind "Deploymnt" in version "apps/v1"' in (no_kind["status"]["message"])
    )


def test_an_existing_object_is_checked_as_applying_it_again(cluster: Cluster) -> None:
    create(cluster, "/apis/apps/v1/namespaces/default/deployments", deployment())
    rv = cluster.store.rv
    before = cluster.store.get("deployments.apps", "default", "web")
    assert validate(cluster, deployment(image="nginx:1.28"))["status"] is None  # not "AlreadyExists"
    changed_selector = deployment()
    changed_selector["spec"]["selector"]["matchLabels"] = {"app": "other"}
    changed_selector["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    refused = validate(cluster, changed_selector)
    assert refused["code"] == 422 and "field is immutable" in refused["status"]["message"]
    assert cluster.store.rv == rv and cluster.store.get("deployments.apps", "default", "web") == before


def test_generate_name_and_every_document_of_a_file_store_nothing(cluster: Cluster) -> None:
    rv = cluster.store.rv
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "p-"}}
    pod["spec"] = {"containers": [{"name": "c", "image": "busybox"}]}
    objects: list[Any] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": "team"}},
        pod,
        deployment(),
    ]
    results = validate_all(cluster, objects)
    # the ConfigMap's namespace is created by the file itself: not an error, as kubectl apply -f
    assert [r["status"] for r in results] == [None, None, None, None]
    assert cluster.store.rv == rv
    for gr in ("namespaces", "configmaps", "pods", "deployments.apps"):
        assert not [o for o in cluster.store.list(gr) if o["metadata"]["name"] in ("team", "cm", "web")]
        assert not [o for o in cluster.store.list(gr) if o["metadata"]["name"].startswith("p-")]


def test_a_value_of_the_wrong_type_is_refused_as_decoding_into_go_refuses_it(cluster: Cluster) -> None:
    """kube-apiserver decodes into its Go structs before validating: `replicas: three`, a label
    `version: 1`, `containers` written as a map are 400s in encoding/json's words, as
    kube-apiserver answers them, with the field's path for the editor's mark."""
    three = deployment()
    three["spec"]["replicas"] = "three"
    label = deployment()
    label["metadata"]["labels"] = {"version": 1}
    as_map = deployment()
    as_map["spec"]["template"]["spec"]["containers"] = {"name": "web", "image": "nginx"}
    half = deployment()
    half["spec"]["replicas"] = 2.5
    huge = deployment()
    huge["spec"]["replicas"] = 2**31
    cases = [
        (three, "string into Go struct field DeploymentSpec.spec.replicas of type int32", "spec.replicas"),
        (label, "number into Go struct field ObjectMeta.metadata.labels of type string", "metadata.labels[version]"),
        (
            as_map,
            "object into Go struct field PodSpec.spec.template.spec.containers of type []v1.Container",
            "spec.template.spec.containers",
        ),
        (half, "number 2.5 into Go struct field DeploymentSpec.spec.replicas of type int32", "spec.replicas"),
        (huge, "number 2147483648 into Go struct field DeploymentSpec.spec.replicas of type int32", "spec.replicas"),
    ]
    # an IntOrString is a JSON string or else an int32 (intstr's UnmarshalJSON decodes into
    # its IntVal): anything else fails in the int32's words, at the IntOrString's field
    surge = "RollingUpdateDeployment.spec.strategy.rollingUpdate.maxSurge"
    for value, got in (
        ([1], "array"),
        ({"x": 1}, "object"),
        (True, "bool"),
        (1.5, "number 1.5"),
        (2**31, "number 2147483648"),
    ):
        bad = deployment()
        bad["spec"]["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": value}}
        cases.append((bad, f"{got} into Go struct field {surge} of type int32", "spec.strategy.rollingUpdate.maxSurge"))
    for obj, words, field in cases:
        result = validate(cluster, obj)
        assert result["code"] == 400
        assert result["status"]["message"] == (
            f'Deployment in version "v1" cannot be handled as a Deployment: json: cannot unmarshal {words}'
        )
        assert result["status"]["details"]["causes"][0]["field"] == field
    # what decodes fine stays fine: quantities as numbers, int-or-string either way, nulls
    fine = deployment(resources={"limits": {"cpu": 1, "memory": "64Mi"}}, env=None)
    fine["spec"]["strategy"] = {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}}
    assert validate(cluster, fine)["status"] is None
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"k": "aGk="}}
    assert validate(cluster, secret)["status"] is None
