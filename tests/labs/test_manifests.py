"""labs/manifests.py: a manifest file read as kubectl apply -f reads it, and a field path of
the cluster's answer found at the line and column where the student wrote it."""

from __future__ import annotations

import pytest

from labs import manifests

FILE = """\
apiVersion: v1
kind: Namespace
metadata: {name: team}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: team
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx
        ports:
        - containerPort: 99999
"""


def test_every_document_is_an_object_with_the_lines_of_its_fields() -> None:
    ns, dep = manifests.parse(FILE)
    assert ns.obj == {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}
    assert dep.obj["spec"]["template"]["spec"]["containers"][0]["ports"] == [{"containerPort": 99999}]
    span, whole = manifests.locate(dep, "spec.template.spec.containers[0].ports[0].containerPort")
    assert whole and span == (23, 25, 23, 30)  # the value 99999
    # a missing field: at the nearest parent that is written, its key's line
    span, whole = manifests.locate(dep, "spec.template.spec.containers[0].resources.limits")
    assert not whole and span[0] == 20
    # an unknown field is marked on its key
    span, _ = manifests.locate(dep, "spec.replicas", key=True)
    assert span == (11, 2, 11, 10)


def test_the_clusters_answer_becomes_marks_at_lines() -> None:
    (dep,) = manifests.parse(FILE.split("---\n")[1])
    status = {
        "message": 'Deployment.apps "web" is invalid: ...',
        "details": {
            "causes": [
                {
                    "field": "spec.template.spec.containers[0].ports[0].containerPort",
                    "message": "Invalid value: 99999: must be between 1 and 65535, inclusive",
                }
            ]
        },
    }
    (mark,) = manifests.diagnostics(dep, {"code": 422, "status": status, "warnings": []})
    assert (mark.line, mark.col, mark.severity) == (19, 25, "error")
    assert mark.message.endswith("must be between 1 and 65535, inclusive")
    unknown = {
        "message": 'Deployment in version "v1" cannot be handled as a Deployment: strict decoding '
        'error: unknown field "spec.template.spec.containers[0].imagee", unknown field "spec.foo"'
    }
    text = FILE.split("---\n")[1].replace("image: nginx", "imagee: nginx").replace("  replicas: 2", "  foo: 1")
    (dep,) = manifests.parse(text)
    marks = manifests.diagnostics(dep, {"code": 400, "status": unknown, "warnings": []})
    assert [(m.line, m.col) for m in marks] == [(17, 8), (7, 2)]
    assert manifests.diagnostics(dep, {"code": 201, "status": None, "warnings": []}) == []


def test_a_list_is_its_items_with_their_own_lines() -> None:
    text = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n"
    text += "  metadata: {name: a}\n  data:\n    k: 1\n"
    (item,) = manifests.parse(text)
    assert item.obj["kind"] == "ConfigMap"
    assert manifests.locate(item, "data[k]")[0][:2] == (8, 7)


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ("kind: Pod\nmetadata:\n  name: a\n name: b\n", 4, "yaml: line 4"),
        ("kind: Pod\nmetadata: {name: a\n", 3, "yaml: line 3"),
        ("kind: Pod\nkind: Service\n", 2, 'key "kind" already set in map'),
        ("kind: !!python/object/apply:os.system [id]\n", 1, "could not determine a constructor"),
    ],
)
def test_a_yaml_error_is_at_its_line_without_asking_the_cluster(text: str, line: int, needle: str) -> None:
    with pytest.raises(manifests.ManifestError) as caught:
        manifests.parse(text)
    assert caught.value.diagnostic.line == line and needle in caught.value.diagnostic.message


def test_yaml_scalars_are_read_as_kubectl_reads_them() -> None:
    (doc,) = manifests.parse("a: 1\nb: '1'\nc: true\nd: null\ne: 1.5\nf: 2026-01-01\n<<: {g: x}\n")
    assert doc.obj == {"a": 1, "b": "1", "c": True, "d": None, "e": 1.5, "f": "2026-01-01", "g": "x"}


def test_a_large_file_without_aliases_is_read_whole_and_never_called_an_alias_bomb() -> None:
    data = "".join(f"  key-{i}: value-{i}\n" for i in range(4000))
    text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: big}\ndata:\n" + data
    assert len(text) < manifests.MAX_TEXT
    (doc,) = manifests.parse(text)
    assert len(doc.obj["data"]) == 4000 and manifests.locate(doc, "data[key-3999]")[0][0] == 4004
    flat = "a: [" + "1," * 60_000 + "1]\n"
    try:
        manifests.parse(flat)
    except manifests.ManifestError as e:
        assert "alias" not in e.diagnostic.message
