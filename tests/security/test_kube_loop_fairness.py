"""One student cannot stall the other students' lab clusters.

Every lab cluster of a host is served by one process on one asyncio loop (server.py's
``Hub``, runtimed's loop). A request body of the maximum size (3 MiB) that is slow to decode
in Python (YAML, or protobuf of tiny fields: seconds of CPU) used to be decoded on that
loop, so one student's ``curl --data-binary`` froze every classmate's kubectl for seconds.
Bodies are now decoded in a bounded worker pool, one at a time per cluster.

The behaviour checked, by ordering and not by the clock: while the hostile request is in the
server's hands (its whole body sent), a classmate's cluster keeps answering GETs, many of
them, before the hostile request is answered. Before the fix it answered none once the
server had read the body (a handful slip in while the body is still being read).

The server is the real ``python -m runtime.kube serve`` process (one loop, as in runtimed).
"""

from __future__ import annotations

import http.client
import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.runtime.kube.conftest import Server, free_port
from tests.runtime.kube.pbwire import envelope, field

CMS = "/api/v1/namespaces/default/configmaps"
PROTOBUF = "application/vnd.kubernetes.protobuf"


@dataclass
class Cluster:
    server: Server
    name: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def request(
        self, method: str, path: str, body: bytes | None = None, content_type: str = "application/json"
    ) -> tuple[int, Any]:
        conn = _connect(self.server)
        try:
            headers = {"Authorization": f"Bearer {self.token}", "Content-Type": content_type}
            conn.request(method, f"/clusters/{self.name}{path}", body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read())
        finally:
            conn.close()


Clusters = tuple["Cluster", "Cluster", "Cluster"]  # two hostile students and a classmate


def _connect(server: Server) -> http.client.HTTPSConnection:
    # the test talks to its own server: the serving certificate is not what is under test here
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return http.client.HTTPSConnection("127.0.0.1", server.port, timeout=120, context=ctx)


@pytest.fixture(scope="module")
def clusters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Cluster, Cluster]]:
    srv = Server(tmp_path_factory.mktemp("kube-fair"), free_port())
    srv.start()
    try:
        out = []
        for name in ("hostile", "classmate", "hostile2"):
            kc = yaml.safe_load(Path(srv.new_cluster(name)).read_text())
            out.append(Cluster(srv, name, kc["users"][0]["user"]["token"]))
        yield out[0], out[1], out[2]
    finally:
        srv.stop()


def _yaml_body() -> bytes:
    """About 1 MiB of YAML of tiny fields: seconds of PyYAML."""
    lines = ["apiVersion: v1", "kind: ConfigMap", "metadata:", "  name: slow-yaml", "data:"]
    lines += [f"  k{i}: v" for i in range(90000)]
    return "\n".join(lines).encode()


def _protobuf_body() -> bytes:
    """Near the 3 MiB request limit of protobuf labels of one byte each."""
    labels = b"".join(field(11, field(1, "a") + field(2, "b")) for _ in range(300000))
    return envelope("v1", "ConfigMap", field(1, field(1, "slow-protobuf") + labels))


BODIES = {"yaml": (_yaml_body, "application/yaml"), "protobuf": (_protobuf_body, PROTOBUF)}


@pytest.mark.parametrize("kind", sorted(BODIES))
def test_a_slow_body_in_one_cluster_does_not_stall_another_clusters_reads(clusters: Clusters, kind: str) -> None:
    hostile, classmate, _ = clusters
    make, ctype = BODIES[kind]
    body = make()
    assert len(body) < 3 << 20  # under the request limit: the server must decode all of it
    sent, done = threading.Event(), threading.Event()
    result: dict[str, Any] = {}

    def attack() -> None:
        conn = _connect(hostile.server)
        try:
            headers = {"Authorization": f"Bearer {hostile.token}", "Content-Type": ctype}
            conn.request("POST", f"/clusters/{hostile.name}{CMS}", body=body, headers=headers)
            sent.set()  # the whole body is in the socket: the server has it, or is reading it
            resp = conn.getresponse()
            result["status"], result["body"] = resp.status, json.loads(resp.read())
        finally:
            sent.set()
            done.set()
            conn.close()

    t = threading.Thread(target=attack)
    t.start()
    assert sent.wait(60)
    answered = 0
    conn = _connect(classmate.server)  # one kept-alive connection, as kubectl's
    try:
        while not done.is_set():
            conn.request("GET", f"/clusters/{classmate.name}{CMS}/kube-root-ca.crt", headers=classmate.headers)
            resp = conn.getresponse()
            obj = json.loads(resp.read())
            assert resp.status == 200 and obj["metadata"]["name"] == "kube-root-ca.crt", obj
            if not done.is_set():
                answered += 1
    finally:
        conn.close()
    t.join(60)
    # the hostile request got the real server's answer (stored, or refused in its words)
    assert result["status"] in (201, 500), result
    assert result["body"]["kind"] in ("ConfigMap", "Status"), result
    # ordering: the classmate was served all along, not once after the attacker
    print(f"{kind}: {answered} GETs of the classmate answered during the hostile request")
    assert answered >= 10, f"the classmate's cluster answered {answered} GETs during the hostile request"
    hostile.request("DELETE", f"{CMS}/slow-{kind}")


def _nested(depth: int) -> Any:
    v: Any = "x"
    for _ in range(depth):
        v = {"a": v}
    return v


@pytest.mark.parametrize("depth", [129, 5000, 200000])
def test_a_body_nested_past_the_limit_is_a_bad_request(clusters: Clusters, depth: int) -> None:
    hostile, _, _ = clusters
    text = '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"deep"},"data":' + '{"a":' * depth
    text += '"x"' + "}" * depth + "}"
    status, st = hostile.request("POST", CMS, text.encode())
    assert status == 400 and st["kind"] == "Status" and st["reason"] == "BadRequest", st
    assert "exceeded max depth" in st["message"]
    status, _ = hostile.request("GET", f"{CMS}/deep")
    assert status == 404


@pytest.mark.parametrize("depth", [129, 5000])
def test_a_yaml_body_nested_past_the_limit_is_a_bad_request(clusters: Clusters, depth: int) -> None:
    hostile, _, _ = clusters
    text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: deep-yaml\ndata: " + "[" * depth + "]" * depth
    status, st = hostile.request("PUT", f"{CMS}/deep-yaml", text.encode(), "application/yaml")
    assert status == 400 and st["kind"] == "Status" and st["reason"] == "BadRequest", st
    assert "exceeded max depth" in st["message"]


def test_a_patch_nested_past_the_limit_is_a_bad_request_and_changes_nothing(clusters: Clusters) -> None:
    hostile, _, _ = clusters
    doc = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "patched"}, "data": {"k": "v"}}
    status, _ = hostile.request("POST", CMS, json.dumps(doc).encode())
    assert status == 201
    patch = json.dumps({"metadata": {"annotations": _nested(300)}}).encode()
    status, st = hostile.request("PATCH", f"{CMS}/patched", patch, "application/merge-patch+json")
    assert status == 400 and st["reason"] == "BadRequest", st
    status, obj = hostile.request("GET", f"{CMS}/patched")
    assert status == 200 and obj["data"] == {"k": "v"} and "annotations" not in obj["metadata"]
    hostile.request("DELETE", f"{CMS}/patched")


def test_a_body_nested_within_the_limit_is_read(clusters: Clusters) -> None:
    """Nesting alone is not refused below the cap: the body reaches the resource's own checks."""
    hostile, _, _ = clusters
    doc = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "deepish"}, "data": _nested(100)}
    status, st = hostile.request("POST", CMS, json.dumps(doc).encode())
    assert status != 500 and "exceeded max depth" not in st.get("message", ""), st
    hostile.request("DELETE", f"{CMS}/deepish")


def test_hostile_bodies_holding_every_decode_thread_do_not_delay_a_classmates_write(
    clusters: Clusters,
) -> None:
    """Two students' slow bodies occupy both decoding threads; a classmate's ordinary write
    (a small body, decoded on the loop) is answered while both are still in flight."""
    hostile, classmate, hostile2 = clusters
    body = _yaml_body()
    done = [threading.Event(), threading.Event()]
    sent = [threading.Event(), threading.Event()]

    def attack(c: Cluster, i: int) -> None:
        conn = _connect(c.server)
        try:
            headers = {"Authorization": f"Bearer {c.token}", "Content-Type": "application/yaml"}
            conn.request("POST", f"/clusters/{c.name}{CMS}", body=body, headers=headers)
            sent[i].set()
            conn.getresponse().read()
        finally:
            sent[i].set()
            done[i].set()
            conn.close()

    threads = [threading.Thread(target=attack, args=(c, i)) for i, c in enumerate((hostile, hostile2))]
    for t in threads:
        t.start()
    assert all(e.wait(60) for e in sent)
    doc = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ordinary"}, "data": {"k": "v"}}
    status, obj = classmate.request("POST", CMS, json.dumps(doc).encode())
    in_flight = not done[0].is_set() and not done[1].is_set()
    for t in threads:
        t.join(120)
    assert status == 201 and obj["metadata"]["name"] == "ordinary", obj
    assert in_flight, "the classmate's write was answered only after a hostile request"
    classmate.request("DELETE", f"{CMS}/ordinary")
    for c in (hostile, hostile2):
        c.request("DELETE", f"{CMS}/slow-yaml")
