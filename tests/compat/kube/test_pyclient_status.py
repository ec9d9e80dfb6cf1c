"""``Status`` error bodies, byte for byte as kube-apiserver writes them.

What a real server sends (k8s.io/apimachinery): ``metav1.Status`` encoded by Go's
encoding/json, so its fields come in struct order (kind, apiVersion, metadata, status,
message, reason, details, code), every optional one left out when empty, ``metadata`` is
``{}``; ``details`` is StatusDetails in its own order (name, group, kind, uid, causes,
retryAfterSeconds), each cause (reason, message, field); the JSON serializer's
``json.Encoder`` ends the body with a newline; ``Content-Type: application/json``.
Errors built by NewGenericServerResponse (an unknown path, a method a route lacks) carry
an empty ``details: {}``. ``?pretty=true`` (and curl) get two-space indentation without the
newline (``json.MarshalIndent``). The expected bodies below are written from those rules
and the messages of apimachinery's constructors, not read back from our server.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from tests.compat.kube.conftest import Raw

CLIENT = "kubernetes-python"

HEAD = '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'


def _body(message: str, reason: str, code: int, details: str | None = None) -> bytes:
    det = f',"details":{details}' if details is not None else ""
    return (HEAD + f'"message":{json.dumps(message)},"reason":"{reason}"{det},"code":{code}}}\n').encode()


def _cm(name: str, data: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data or {}}


def test_404_not_found(raw: Raw, ns: str) -> None:
    status, headers, body = raw("GET", f"/api/v1/namespaces/{ns}/configmaps/nope")
    assert status == 404
    assert headers["content-type"] == "application/json"
    assert body == _body('configmaps "nope" not found', "NotFound", 404, '{"name":"nope","kind":"configmaps"}')


def test_404_of_a_group_resource_names_the_group(raw: Raw, ns: str) -> None:
    status, _, body = raw("GET", f"/apis/apps/v1/namespaces/{ns}/deployments/nope")
    assert status == 404
    assert body == _body(
        'deployments.apps "nope" not found', "NotFound", 404, '{"name":"nope","group":"apps","kind":"deployments"}'
    )


def test_404_unknown_path_has_empty_details(raw: Raw) -> None:
    status, _, body = raw("GET", "/apis/no.such.group/v1/things")
    assert status == 404
    assert body == _body("the server could not find the requested resource", "NotFound", 404, "{}")


def test_409_already_exists_details_in_struct_order(raw: Raw, ns: str) -> None:
    dep = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "twice"},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "twice"}},
            "template": {
                "metadata": {"labels": {"app": "twice"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            },
        },
    }
    assert raw("POST", f"/apis/apps/v1/namespaces/{ns}/deployments", dep)[0] == 201
    status, _, body = raw("POST", f"/apis/apps/v1/namespaces/{ns}/deployments", dep)
    assert status == 409
    assert body == _body(
        'deployments.apps "twice" already exists',
        "AlreadyExists",
        409,
        '{"name":"twice","group":"apps","kind":"deployments"}',
    )


def test_409_conflict_on_a_stale_resource_version(raw: Raw, ns: str) -> None:
    status, _, created = raw("POST", f"/api/v1/namespaces/{ns}/configmaps", _cm("stale"))
    assert status == 201
    cm = json.loads(created)
    cm["data"] = {"a": "1"}
    assert raw("PUT", f"/api/v1/namespaces/{ns}/configmaps/stale", cm)[0] == 200
    cm["data"] = {"a": "2"}  # still the first resourceVersion
    status, _, body = raw("PUT", f"/api/v1/namespaces/{ns}/configmaps/stale", cm)
    assert status == 409
    assert body == _body(
        'Operation cannot be fulfilled on configmaps "stale": the object has been modified; '
        "please apply your changes to the latest version and try again",
        "Conflict",
        409,
        '{"name":"stale","kind":"configmaps"}',
    )


def test_422_invalid_with_causes(raw: Raw, ns: str) -> None:
    status, _, body = raw("POST", f"/api/v1/namespaces/{ns}/configmaps", _cm("bad", {"bad key": "x"}))
    assert status == 422
    why = (
        "a valid config key must consist of alphanumeric characters, '-', '_' or '.' "
        "(e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
    )
    cause = {"reason": "FieldValueInvalid", "message": f'Invalid value: "bad key": {why}', "field": "data[bad key]"}
    details = {"name": "bad", "kind": "ConfigMap", "causes": [cause]}
    assert body == _body(
        f'ConfigMap "bad" is invalid: data[bad key]: Invalid value: "bad key": {why}',
        "Invalid",
        422,
        json.dumps(details, separators=(",", ":")),
    )


def test_403_forbidden(raw: Raw) -> None:
    status, _, body = raw("DELETE", "/api/v1/namespaces/default")
    assert status == 403
    assert body == _body(
        'namespaces "default" is forbidden: this namespace may not be deleted',
        "Forbidden",
        403,
        '{"name":"default","kind":"namespaces"}',
    )


def test_400_bad_request_has_no_details(raw: Raw, ns: str) -> None:
    status, _, body = raw("GET", f"/api/v1/namespaces/{ns}/configmaps?fieldSelector=nosuch%3Dx")
    assert status == 400
    assert body == _body("field label not supported: nosuch", "BadRequest", 400)


def test_405_method_not_allowed_has_empty_details(raw: Raw, ns: str) -> None:
    status, _, body = raw("PUT", f"/api/v1/namespaces/{ns}/configmaps", _cm("x"))
    assert status == 405
    assert body == _body(
        "the server does not allow this method on the requested resource", "MethodNotAllowed", 405, "{}"
    )


def test_410_expired_resource_version(small_api: Any) -> None:
    raw = Raw(small_api)
    for _ in range(10):  # past the 8 events this cluster's watch cache keeps
        raw("POST", "/api/v1/namespaces/default/configmaps", _cm(f"w-{uuid.uuid4().hex[:6]}"))
    # kube-apiserver's watch cache accepts the watch and sends the 410 as its one ERROR event
    # (cacher.go: newErrWatcher, "to match the uncached watch implementation"), then ends
    status, _, body = raw("GET", "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=1")
    assert status == 200
    (line,) = body.splitlines()
    event = json.loads(line)
    assert event["type"] == "ERROR"
    msg = event["object"]["message"]
    assert msg.startswith("too old resource version: 1 (")
    assert line + b"\n" == b'{"type":"ERROR","object":' + _body(msg, "Expired", 410).rstrip(b"\n") + b"}\n"
    # the official client's Watch retries once, then raises the 410 for its caller to re-list
    core = client.CoreV1Api(small_api)
    with pytest.raises(ApiException) as exc:
        for _ in watch.Watch().stream(
            core.list_namespaced_config_map, "default", resource_version="1", timeout_seconds=5
        ):
            pass
    assert exc.value.status == 410


def test_413_request_entity_too_large(small_api: Any) -> None:
    raw = Raw(small_api)
    status, _, body = raw("POST", "/api/v1/namespaces/default/configmaps", _cm("big", {"k": "x" * 8192}))
    assert status == 413
    assert body == _body("Request entity too large: limit is 4096", "RequestEntityTooLarge", 413)


def test_429_too_many_requests_carries_retry_after(small_api: Any) -> None:
    from kubernetes import client

    core = client.CoreV1Api(small_api)
    first: Any = core.list_namespaced_config_map("default", watch=True, timeout_seconds=30, _preload_content=False)
    try:
        status, headers, body = Raw(small_api)("GET", "/api/v1/namespaces/default/configmaps?watch=1")
    finally:
        first.release_conn()
    assert status == 429
    assert headers["retry-after"] == "1"
    msg = json.loads(body)["message"]
    assert body == _body(msg, "TooManyRequests", 429, '{"retryAfterSeconds":1}')


def test_go_escapes_html_characters_and_keeps_utf8(raw: Raw, ns: str) -> None:
    status, _, body = raw("GET", f"/api/v1/namespaces/{ns}/configmaps/a%3Cb%3E%26%C3%A9")
    assert status == 404
    assert b'configmaps \\"a\\u003cb\\u003e\\u0026\xc3\xa9\\" not found' in body


def test_pretty_is_indented_without_a_trailing_newline(raw: Raw, ns: str) -> None:
    status, _, body = raw("GET", f"/api/v1/namespaces/{ns}/configmaps/nope?pretty=true")
    assert status == 404
    want = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'configmaps "nope" not found',
        "reason": "NotFound",
        "details": {"name": "nope", "kind": "configmaps"},
        "code": 404,
    }
    assert body == json.dumps(want, indent=2).encode()


def test_the_typed_client_reads_the_status(api: Any, ns: str) -> None:
    from kubernetes import client

    with pytest.raises(client.ApiException) as e:
        client.CoreV1Api(api).read_namespaced_config_map("nope", ns)
    assert e.value.status == 404
    assert json.loads(e.value.body or "")["details"] == {"name": "nope", "kind": "configmaps"}


def test_a_lone_surrogate_comes_back_as_go_writes_it(raw: Raw, ns: str) -> None:
    """JSON may escape a lone surrogate; Go decodes it to U+FFFD and writes valid UTF-8."""
    status, _, _ = raw("POST", f"/api/v1/namespaces/{ns}/configmaps", _cm("sur", {"k": "a\ud800b"}))
    assert status == 201
    status, _, body = raw("GET", f"/api/v1/namespaces/{ns}/configmaps/sur")
    assert status == 200
    assert json.loads(body.decode("utf-8"))["data"]["k"] == "a\ufffdb"


def test_watch_events_are_encoded_as_go_writes_them(raw: Raw, ns: str) -> None:
    """One compact JSON event per line (json.Encoder.Encode), HTML characters escaped and
    other text as UTF-8, as the watch encoder writes them."""
    cm = _cm("w", {"k": "é<"})
    assert raw("POST", f"/api/v1/namespaces/{ns}/configmaps", cm)[0] == 201
    status, _, body = raw(
        "GET", f"/api/v1/namespaces/{ns}/configmaps?watch=1&timeoutSeconds=1&fieldSelector=metadata.name%3Dw"
    )
    assert status == 200
    lines = body.split(b"\n")
    assert lines[-1] == b"" and len(lines) == 2
    assert lines[0].startswith(b'{"type":"ADDED","object":{')
    assert '"data":{"k":"é\\u003c"}'.encode() in lines[0]
