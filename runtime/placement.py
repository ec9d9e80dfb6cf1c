"""Sandboxes placed by Kubernetes: ``SANDBOX_BACKEND=kubernetes`` (issue #17, docs/scaling-out.md).

Kubernetes decides where a sandbox runs and whether there is room for it; runtimed on the
chosen node builds it and keeps it isolated. Three parts, each speaking only the Kubernetes
API and runtimed's own API:

``placeholder_pod``
    The Pod the provisioning worker creates per lab session: the lab's CPU and memory as
    requests = limits (QoS Guaranteed: the scheduler and the cluster's quotas count exactly
    what the sandbox may use), the label ``kubelab.io/session``, ``priorityClassName``,
    ``nodeSelector``/tolerations for lab nodes, tolerations of ``not-ready``/``unreachable``
    for ``tolerationSeconds`` (how long a lost node keeps its sessions before they end), and
    the sandbox spec as the annotation ``kubelab.io/spec``. Its one container is the pause
    image with no command, no shell, no writable root and no capabilities: the Pod holds a
    place, it never runs student code. Student code runs only in the sandbox runtimed
    builds from the spec, behind the same walls as on one box.

``NodeAgent``
    Beside the runtimed of each lab node (``python -m runtime node-agent``): like a kubelet
    for these Pods only, it watches Pods with ``fieldSelector=spec.nodeName=<node>`` and the
    session label, builds a sandbox for each through the local runtimed (labelled with the
    Pod's UID), then records it on the Pod: the annotation ``kubelab.io/sandbox`` (the
    sandbox id on that node) and, through ``pods/status``, phase ``Running`` and the
    condition ``kubelab.io/sandbox-ready`` (``False`` with the reason when the build
    failed). A Pod deleted or evicted (drain, preemption, node lost) takes its sandbox with
    it; a sandbox whose Pod is gone is removed on every resync (runtimed restarts included).
    With ``register_node`` it also plays the kubelet's node role (Node object, status,
    ``kube-node-lease`` Lease every 10 s): for an API server with no kubelet of its own
    (``python -m runtime kube serve`` in the tests); on a real cluster the kubelet does that.

``KubernetesBackend``
    The ``SandboxBackend`` the web tier and the workers use. ``create`` makes the
    placeholder and waits: ``Pending`` with ``PodScheduled=False`` is "waiting for
    capacity" (reported through ``on_wait``), the ready condition ends the wait. Every other
    call goes to the runtimed of the Pod's node at ``https://<Node InternalIP>:<port>``,
    TLS checked against the platform's runtimed CA, with the same bearer tokens as on one
    box (admin only in provisioning; per-sandbox ``web``/``grader`` tokens elsewhere). The
    address comes from the Node object (written by the node's kubelet), never from anything
    on the Pod: an annotation cannot send the web tier elsewhere. Sandbox ids are
    ``<pod>/<node>/<id on the node>``; ``get``/``list`` check the Pod still exists, so a
    session whose Pod was evicted sees ``SandboxNotFound`` with ``NODE_LOST``.

    The per-sandbox Docker engine and lab cluster (``services``) are built by the node's
    runtimed as on one box, and the student's ``docker``/``kubectl`` inside reach them there.
    Graders on other machines reach them through that node's runtimed
    (``/v1/sandboxes/<id>/kube-api``, ``/docker-api``: runtime.relay): ``kubeconfig`` is a
    kubeconfig whose ``server`` is that route, ``docker_url`` its docker counterpart, both
    with the session's sandbox token (a token for one sandbox opens no other) and the
    runtimed CA; the relay itself speaks to the cluster with the cluster's grader credential.

Not done here (docs/scaling-out.md): the sandbox's cgroup is runtimed's own, not the
placeholder Pod's (the kubelet's accounting counts the requests, not the usage); the relay
carries plain HTTP only (no exec/attach/port-forward upgrades through it).
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import contextlib
import ipaddress
import json
import logging
import os
import re
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import yaml

from runtime import errors
from runtime.backends import AttachStream, SandboxBackend
from runtime.client import AsyncClient, Client, ExecResult, PreviewResponse, PreviewSocket
from runtime.kernel.clock import micro_ts, now_ts

log = logging.getLogger(__name__)

Json = dict[str, Any]

NAMESPACE = "kubelab-sandboxes"
LABEL_SESSION = "kubelab.io/session"
LABEL_LAB_NODE = "kubelab.io/lab-node"
ANNOTATION_SPEC = "kubelab.io/spec"
ANNOTATION_SANDBOX = "kubelab.io/sandbox"
CONDITION_READY = "kubelab.io/sandbox-ready"
# the sandbox's label on its node naming the Pod it belongs to (runtimed's own labels)
SANDBOX_POD_LABEL = "kubelab.pod-uid"
PRIORITY_CLASS = "kubelab-lab"
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
RUNTIMED_PORT = 7443
TOLERATION_SECONDS = 30
NODE_LEASE_SECONDS = 40
HEARTBEAT = 10.0
# a Node's name: a DNS subdomain (RFC 1123), as the API server validates it
_NODE_NAME = re.compile(r"(?=.{1,253}\Z)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")

NODE_LOST = (
    "The machine running your lab was taken out of service (node {node}: {why}). "
    "Your sandbox is gone; start the lab again and it will run on another machine."
)
WAITING = "Waiting for capacity: every lab machine is full ({why}). Your lab starts as soon as room frees up."


def _cpu(cpus: float) -> str:
    return f"{max(1, round(float(cpus) * 1000))}m"


def placeholder_pod(
    spec: Mapping[str, Any],
    *,
    session: str,
    priority_class: str = PRIORITY_CLASS,
    pause_image: str = PAUSE_IMAGE,
    toleration_seconds: int = TOLERATION_SECONDS,
) -> Json:
    """The Pod that asks Kubernetes for room for one sandbox (module docstring)."""
    from runtime.sandbox.spec import SandboxSpec

    s = SandboxSpec.from_json(dict(spec))  # validated here too: the node builds exactly this
    resources = {"cpu": _cpu(s.cpus), "memory": str(int(s.memory))}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "kl-sandbox-",
            "labels": {LABEL_SESSION: session},
            "annotations": {ANNOTATION_SPEC: json.dumps(s.to_json(), sort_keys=True)},
        },
        "spec": {
            "priorityClassName": priority_class,
            "nodeSelector": {LABEL_LAB_NODE: "true"},
            "tolerations": [
                {"key": LABEL_LAB_NODE, "operator": "Exists", "effect": "NoSchedule"},
                {
                    "key": "node.kubernetes.io/not-ready",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": toleration_seconds,
                },
                {
                    "key": "node.kubernetes.io/unreachable",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": toleration_seconds,
                },
            ],
            "readinessGates": [{"conditionType": CONDITION_READY}],
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 0,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 65535, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "hold",
                    "image": pause_image,
                    "imagePullPolicy": "IfNotPresent",
                    "resources": {"requests": dict(resources), "limits": dict(resources)},
                    "securityContext": {
                        "readOnlyRootFilesystem": True,
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }


def condition(pod: Mapping[str, Any], kind: str) -> Json | None:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == kind:
            return dict(c)
    return None


# -- the Kubernetes API --------------------------------------------------------------------------
SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TOKEN_RELOAD = 60.0  # seconds between reads of a token file (client-go's cachingTokenSource: a minute)


class TokenFile(httpx.Auth):
    """A bearer token kept in a file that is replaced while we run (the projected service
    account token, which the kubelet rotates well before it expires; a kubeconfig's
    ``tokenFile``): read again at most every TOKEN_RELOAD seconds, as client-go does, instead
    of once at start. If a read fails, the token read last is used until one succeeds."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._token = ""
        self._read_at = 0.0

    def token(self) -> str:
        with self._lock:
            now = time.monotonic()
            if not self._token or now - self._read_at >= TOKEN_RELOAD:
                try:
                    self._token = self.path.read_text().strip()
                    self._read_at = now
                except OSError as e:
                    if not self._token:
                        raise errors.NotAvailable(f"the Kubernetes API token {self.path} cannot be read: {e}") from None
                    log.warning(
                        "the Kubernetes API token %s cannot be read again (%s): using the last one", self.path, e
                    )
            return self._token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.token()}"
        yield request


class KubeAPI:
    """Just enough of a Kubernetes client (JSON in, JSON out) over httpx: from a kubeconfig
    (token or client certificate), else the in-cluster service account. API errors are
    ``errors`` classes with the API server's own message."""

    def __init__(self, kubeconfig: str | os.PathLike[str] | None = None, *, timeout: float = 30.0) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="kl-kubeapi-")
        verify: Any = True
        cert: tuple[str, str] | None = None
        headers: dict[str, str] = {}
        auth: httpx.Auth | None = None
        if kubeconfig:
            cfg = yaml.safe_load(Path(kubeconfig).read_text())
            ctx_name = cfg.get("current-context")
            ctx = next((c["context"] for c in cfg.get("contexts") or [] if c.get("name") == ctx_name), None)
            ctx = ctx or (cfg.get("contexts") or [{}])[0].get("context") or {}
            cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx.get("cluster", c["name"]))
            user: Json = next((u["user"] for u in cfg.get("users") or [] if u["name"] == ctx.get("user")), {}) or {}
            self.server = str(cluster["server"]).rstrip("/")
            if cluster.get("certificate-authority-data"):
                verify = self._file("ca.crt", base64.b64decode(cluster["certificate-authority-data"]))
            elif cluster.get("certificate-authority"):
                verify = cluster["certificate-authority"]
            if cluster.get("tls-server-name"):
                self._sni: str | None = str(cluster["tls-server-name"])
            else:
                self._sni = None
            if user.get("token"):
                headers["Authorization"] = f"Bearer {user['token']}"
            elif user.get("tokenFile"):
                auth = TokenFile(user["tokenFile"])
            elif user.get("client-certificate-data"):
                cert = (
                    self._file("client.crt", base64.b64decode(user["client-certificate-data"])),
                    self._file("client.key", base64.b64decode(user["client-key-data"])),
                )
        else:
            host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT")
            if not host or not (SA_DIR / "token").exists():
                raise errors.NotAvailable("no kubeconfig given and not running in a Kubernetes pod")
            self.server = f"https://{host}:{port or 443}"
            verify = str(SA_DIR / "ca.crt")
            auth = TokenFile(SA_DIR / "token")
            self._sni = None
        import ssl

        ctx_ssl = ssl.create_default_context(cafile=verify) if isinstance(verify, str) else ssl.create_default_context()
        if cert:
            ctx_ssl.load_cert_chain(*cert)
        self._ssl = ctx_ssl
        if isinstance(auth, TokenFile):
            auth.token()  # an unreadable token fails here, at start, not at the first request
        self.http = httpx.Client(base_url=self.server, verify=ctx_ssl, headers=headers, auth=auth, timeout=timeout)

    def _file(self, name: str, data: bytes) -> str:
        path = Path(self._tmp.name) / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return str(path)

    def close(self) -> None:
        self.http.close()
        self._tmp.cleanup()

    def _ext(self) -> dict[str, Any]:
        return {"sni_hostname": self._sni} if self._sni else {}

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        timeout: float | None = None,
    ) -> Json:
        try:
            resp = self.http.request(
                method,
                path,
                content=None if body is None else json.dumps(body),
                headers={"Content-Type": content_type} if body is not None else {},
                params=params,
                extensions=self._ext(),
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.TransportError as e:
            raise errors.Unreachable(f"the Kubernetes API server {self.server} is not reachable: {e}") from None
        try:
            data: Json = resp.json()
        except ValueError:
            data = {"message": resp.text[:500]}
        if resp.status_code >= 400:
            message = f"Kubernetes API {method} {path}: {data.get('message') or resp.reason_phrase}"
            cls: type[errors.RuntimeError] = {
                404: errors.SandboxNotFound,
                409: errors.Conflict,
                422: errors.BadRequest,
                400: errors.BadRequest,
                403: errors.Forbidden,
                401: errors.Unauthorized,
            }.get(resp.status_code, errors.RuntimeError)
            err = cls(message)
            err.api_status = resp.status_code  # type: ignore[attr-defined]
            raise err
        return data

    def watch(self, path: str, params: Mapping[str, str], timeout: float) -> Iterator[Json]:
        """The events of one watch request (ends after ``timeout`` seconds, as a watch does)."""
        q = {**params, "watch": "true", "timeoutSeconds": str(int(timeout))}
        try:
            with self.http.stream(
                "GET", path, params=q, extensions=self._ext(), timeout=httpx.Timeout(30.0, read=timeout + 30)
            ) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise errors.RuntimeError(f"Kubernetes API watch {path}: HTTP {resp.status_code} {resp.text[:300]}")
                for line in resp.iter_lines():
                    if line.strip():
                        yield json.loads(line)
        except httpx.TransportError as e:
            raise errors.Unreachable(f"the Kubernetes API server {self.server} is not reachable: {e}") from None


def _pods_path(namespace: str, name: str = "", sub: str = "") -> str:
    path = f"/api/v1/namespaces/{namespace}/pods"
    if name:
        path += f"/{name}"
    if sub:
        path += f"/{sub}"
    return path


def _api_status(e: BaseException) -> int:
    return int(getattr(e, "api_status", 0))


# -- the node side: a kubelet for sandboxes ------------------------------------------------------
class NodeAgent:
    """Builds the sandboxes of the placeholder Pods bound to one node (module docstring)."""

    def __init__(
        self,
        *,
        node: str,
        kube: KubeAPI,
        runtime: Client,
        namespace: str = NAMESPACE,
        port: int = RUNTIMED_PORT,
        register: Mapping[str, Any] | None = None,
        builders: int = 4,
        heartbeat: float = HEARTBEAT,
    ) -> None:
        """``register``: play the kubelet's node role too, with ``{"address", "cpu", "memory",
        "pods"}`` (an API server with no kubelet); None on a real cluster."""
        self.node = node
        self.kube = kube
        self.runtime = runtime
        self.namespace = namespace
        self.port = port
        self.register = dict(register) if register else None
        self.heartbeat_every = heartbeat  # well inside the node monitor's grace period
        self._pool = ThreadPoolExecutor(max_workers=builders, thread_name_prefix=f"agent-{node}")
        self._building: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()

    # -- the node's own status (only with register) --------------------------------------------
    def _node_status(self) -> Json:
        assert self.register is not None
        ts = now_ts()
        capacity = {
            "cpu": str(self.register["cpu"]),
            "memory": str(self.register["memory"]),
            "pods": str(self.register.get("pods", 110)),
        }
        ready = {
            "type": "Ready",
            "status": "True",
            "reason": "KubeletReady",
            "message": "runtimed's node agent is posting ready status",
            "lastHeartbeatTime": ts,
            "lastTransitionTime": ts,
        }
        return {
            "capacity": capacity,
            "allocatable": capacity,
            "conditions": [ready],
            "addresses": [
                {"type": "InternalIP", "address": str(self.register["address"])},
                {"type": "Hostname", "address": self.node},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.port}},
        }

    def register_node(self) -> None:
        """Create the Node (labelled and tainted for labs) and post its status; a new Lease."""
        assert self.register is not None
        try:
            node = self.kube.request("GET", f"/api/v1/nodes/{self.node}")
        except errors.SandboxNotFound:
            node = self.kube.request(
                "POST",
                "/api/v1/nodes",
                body={
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {"name": self.node, "labels": {LABEL_LAB_NODE: "true"}},
                    "spec": {"taints": [{"key": LABEL_LAB_NODE, "value": "true", "effect": "NoSchedule"}]},
                },
            )
        self.heartbeat(node)

    def heartbeat(self, node: Json | None = None) -> None:
        """What a kubelet does every 10 s: renew the node's Lease; post its status when it
        changed or is not Ready (here: every time, the status is tiny)."""
        assert self.register is not None
        lease_path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.node}"
        lease_spec = {"holderIdentity": self.node, "leaseDurationSeconds": NODE_LEASE_SECONDS, "renewTime": micro_ts()}
        try:
            lease = self.kube.request("GET", lease_path)
            lease["spec"] = {**(lease.get("spec") or {}), **lease_spec}
            self.kube.request("PUT", lease_path, body=lease)
        except errors.SandboxNotFound:
            self.kube.request(
                "POST",
                "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
                body={
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": self.node, "namespace": "kube-node-lease"},
                    "spec": lease_spec,
                },
            )
        for attempt in range(5):
            if node is None or attempt:
                node = self.kube.request("GET", f"/api/v1/nodes/{self.node}")
            status = self._node_status()
            conds = (node.get("status") or {}).get("conditions") or []
            old_ready = next((c for c in conds if c["type"] == "Ready"), None)
            if old_ready and old_ready.get("status") == "True":
                status["conditions"][0]["lastTransitionTime"] = old_ready.get("lastTransitionTime")
            node["status"] = status
            try:
                self.kube.request("PUT", f"/api/v1/nodes/{self.node}/status", body=node)
                return
            except errors.Conflict:  # a controller wrote the Node meanwhile (a taint): read again
                continue
        raise errors.Conflict(f"node {self.node}: its status kept changing under the heartbeat")

    # -- pods -----------------------------------------------------------------------------------
    def _pods(self) -> builtins.list[Json]:
        data = self.kube.request(
            "GET",
            _pods_path(self.namespace),
            params={"fieldSelector": f"spec.nodeName={self.node}", "labelSelector": LABEL_SESSION},
        )
        return list(data.get("items") or [])

    def sync(self) -> None:
        """One level-triggered pass: a sandbox for every live Pod here, none for the others."""
        pods = self._pods()
        live = {p["metadata"]["uid"]: p for p in pods if not p["metadata"].get("deletionTimestamp")}
        boxes = self.runtime.list_sandboxes()
        by_pod: dict[str, Json] = {}
        for box in boxes:
            uid = ((box.get("spec") or {}).get("labels") or {}).get(SANDBOX_POD_LABEL)
            if not uid:
                continue  # not one of ours (a sandbox made on this node's runtimed by hand)
            if uid not in live:
                log.info("pod %s is gone: removing its sandbox %s", uid, box["id"])
                with contextlib.suppress(errors.SandboxNotFound):
                    self.runtime.remove_sandbox(box["id"])
                continue
            by_pod[uid] = box
        for uid, pod in live.items():
            ready = condition(pod, CONDITION_READY)
            if ready is not None and ready.get("status") == "False":
                continue  # failed to build: the provisioning worker reads why and deletes it
            found = by_pod.get(uid)
            if found is not None and ready is not None and ready.get("status") == "True":
                continue
            with self._lock:
                if uid in self._building:
                    continue
                self._building.add(uid)
            self._pool.submit(self._build, pod, found)

    def _build(self, pod: Json, box: Json | None) -> None:
        uid = pod["metadata"]["uid"]
        name = pod["metadata"]["name"]
        try:
            if box is None:
                try:
                    spec = json.loads(pod["metadata"].get("annotations", {}).get(ANNOTATION_SPEC) or "")
                    if not isinstance(spec, dict):
                        raise ValueError("not a JSON object")
                    spec["labels"] = {**(spec.get("labels") or {}), SANDBOX_POD_LABEL: uid}
                    box = self.runtime.create_sandbox(spec)
                except (ValueError, errors.RuntimeError) as e:
                    self._report(pod, None, ok=False, reason=type(e).__name__, message=str(e))
                    return
            self._report(pod, box["id"], ok=True, reason="SandboxRunning", message="runtimed built the sandbox")
        except errors.SandboxNotFound:
            # the Pod went away while we built: the next sync removes the sandbox
            log.info("pod %s was deleted while its sandbox was built", name)
        except Exception:
            log.exception("building the sandbox of pod %s failed", name)
        finally:
            with self._lock:
                self._building.discard(uid)
            self._wake.set()

    def _report(self, pod: Json, sid: str | None, *, ok: bool, reason: str, message: str) -> None:
        ns, name = self.namespace, pod["metadata"]["name"]
        if sid is not None:
            self.kube.request(
                "PATCH",
                _pods_path(ns, name),
                body={"metadata": {"annotations": {ANNOTATION_SANDBOX: sid}}},
                content_type="application/merge-patch+json",
            )
        for _ in range(5):
            cur = self.kube.request("GET", _pods_path(ns, name))
            if cur["metadata"]["uid"] != pod["metadata"]["uid"]:
                raise errors.SandboxNotFound(f"pod {name} was replaced")
            st = cur.setdefault("status", {})
            ts = now_ts()
            conds = [c for c in st.get("conditions") or [] if c.get("type") not in (CONDITION_READY, "Ready")]
            conds.append(
                {
                    "type": CONDITION_READY,
                    "status": "True" if ok else "False",
                    "reason": reason,
                    "message": message[-1000:],
                    "lastTransitionTime": ts,
                }
            )
            conds.append({"type": "Ready", "status": "True" if ok else "False", "lastTransitionTime": ts})
            st["conditions"] = conds
            st["phase"] = "Running" if ok else "Failed"
            if ok and self.register is not None:
                st["hostIP"] = str(self.register["address"])
            try:
                self.kube.request("PUT", _pods_path(ns, name, "status"), body=cur)
                return
            except errors.Conflict:
                continue

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> None:
        """Until ``stop()``: heartbeats (with register), a watch of this node's Pods, a
        resync on every event and at least every 30 s."""
        if self.register is not None:
            while not self._stop.is_set():
                try:
                    self.register_node()
                    break
                except errors.RuntimeError as e:
                    log.warning("node agent %s: cannot register the node yet (%s); again in 2 s", self.node, e)
                    self._stop.wait(2)
            threading.Thread(target=self._heartbeats, daemon=True, name=f"heartbeat-{self.node}").start()
        threading.Thread(target=self._watch, daemon=True, name=f"watch-{self.node}").start()
        while not self._stop.is_set():
            try:
                self.sync()
            except Exception:
                log.exception("node agent %s: sync failed", self.node)
            self._wake.wait(30)
            self._wake.clear()

    def _heartbeats(self) -> None:
        while not self._stop.wait(self.heartbeat_every):
            try:
                self.heartbeat()
            except Exception:
                log.exception("node agent %s: heartbeat failed", self.node)

    def _watch(self) -> None:
        params = {"fieldSelector": f"spec.nodeName={self.node}", "labelSelector": LABEL_SESSION}
        while not self._stop.is_set():
            try:
                for _event in self.kube.watch(_pods_path(self.namespace), params, timeout=300):
                    self._wake.set()
                    if self._stop.is_set():
                        return
            except Exception as e:
                log.warning("node agent %s: pod watch ended (%s); again in 2 s", self.node, e)
                self._stop.wait(2)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._pool.shutdown(wait=False, cancel_futures=True)


# -- the platform side: the backend ------------------------------------------------------------
def split_id(sandbox_id: str) -> tuple[str, str, str]:
    """``<pod>/<node>/<id on the node>`` → its parts (BadRequest when it is not one)."""
    parts = sandbox_id.split("/")
    if len(parts) != 3 or not all(parts):
        raise errors.SandboxNotFound(f"{sandbox_id!r} is not a sandbox id of the kubernetes backend")
    return parts[0], parts[1], parts[2]


class KubernetesBackend(SandboxBackend):
    """Sandboxes in placeholder Pods, reached on their node's runtimed (module docstring)."""

    name = "kubernetes"

    def __init__(
        self,
        kubeconfig: str | os.PathLike[str] | None = None,
        *,
        namespace: str = NAMESPACE,
        ca: str | None = None,
        port: int = RUNTIMED_PORT,
        token: str | None = None,
        priority_class: str = PRIORITY_CLASS,
        pause_image: str = PAUSE_IMAGE,
        toleration_seconds: int = TOLERATION_SECONDS,
        wait_timeout: float = 600.0,
        kube: KubeAPI | None = None,
    ) -> None:
        """``token``: runtimed's admin token (provisioning) or one sandbox's (``scoped``);
        ``ca``: the CA that signed every lab node's runtimed certificate."""
        self.kubeconfig_path = kubeconfig
        self.kube = kube or KubeAPI(kubeconfig)
        self._own_kube = kube is None
        self.namespace = namespace
        self.ca = ca or os.environ.get("RUNTIME_CA_FILE") or None
        if not self.ca:
            raise errors.BadRequest("the kubernetes sandbox backend needs the runtimed CA (RUNTIME_CA_FILE)")
        self.port = port
        self.token = token
        self.priority_class = priority_class
        self.pause_image = pause_image
        self.toleration_seconds = toleration_seconds
        self.wait_timeout = wait_timeout
        self._clients: dict[str, Client] = {}
        self._addresses: dict[str, tuple[float, str]] = {}
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, AsyncClient]] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    # -- where a sandbox lives ------------------------------------------------------------------
    def node_address(self, node: str) -> str:
        """``https://<InternalIP>:<port>`` of ``node``'s runtimed, from the Node object."""
        with self._lock:
            cached = self._addresses.get(node)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        # the name comes from a Pod's spec.nodeName and the address from the Node's status: both
        # are data, checked before they become a path or a URL
        if not _NODE_NAME.fullmatch(node):
            raise errors.Unreachable(f"{node!r} is not a node name (a DNS subdomain)")
        try:
            obj = self.kube.request("GET", f"/api/v1/nodes/{node}")
        except errors.SandboxNotFound:
            raise errors.SandboxNotFound(NODE_LOST.format(node=node, why="the node was removed")) from None
        addresses = (obj.get("status") or {}).get("addresses") or []
        raw = next((a.get("address") for a in addresses if a.get("type") == "InternalIP"), None)
        if not raw:
            raise errors.Unreachable(f"node {node} has no InternalIP address in its status")
        try:
            ip = ipaddress.ip_address(raw)
        except ValueError:
            raise errors.Unreachable(f"node {node}'s InternalIP {str(raw)[:64]!r} is not an IP address") from None
        host = f"[{ip}]" if ip.version == 6 else str(ip)
        address = f"https://{host}:{self.port}"
        with self._lock:
            self._addresses[node] = (time.monotonic() + 10.0, address)
        return address

    def _client(self, node: str) -> Client:
        address = self.node_address(node)
        with self._lock:
            client = self._clients.get(address)
            if client is None:
                client = self._clients[address] = Client(address, token=self.token or "", ca=self.ca)
            return client

    def _aclient(self, node: str) -> AsyncClient:
        address = self.node_address(node)
        per_loop = self._async.setdefault(asyncio.get_running_loop(), {})
        client = per_loop.get(address)
        if client is None:
            client = per_loop[address] = AsyncClient(address, token=self.token or "", ca=self.ca)
        return client

    def pod(self, pod: str, node: str = "?") -> Json:
        try:
            return self.kube.request("GET", _pods_path(self.namespace, pod))
        except errors.SandboxNotFound:
            raise errors.SandboxNotFound(
                NODE_LOST.format(node=node, why="the sandbox's placeholder Pod was evicted or deleted")
            ) from None

    def _locate(self, sandbox_id: str) -> tuple[Client, str]:
        _pod, node, sid = split_id(sandbox_id)
        return self._client(node), sid

    def _info(self, pod: str, node: str, box: Json) -> Json:
        return {**box, "id": f"{pod}/{node}/{box['id']}", "node": node}

    # -- lifecycle ------------------------------------------------------------------------------
    def create(self, spec: Mapping[str, Any], on_wait: Callable[[str], None] | None = None) -> Json:
        session = str((spec.get("labels") or {}).get("session") or "") or f"adhoc-{os.urandom(4).hex()}"
        body = placeholder_pod(
            spec,
            session=session,
            priority_class=self.priority_class,
            pause_image=self.pause_image,
            toleration_seconds=self.toleration_seconds,
        )
        # one placeholder per session: a retried provisioning (a worker lost while it waited for
        # capacity) waits on the Pod it made before instead of asking for a second place
        mine = self.kube.request(
            "GET", _pods_path(self.namespace), params={"labelSelector": f"{LABEL_SESSION}={session}"}
        )
        live = [p for p in mine.get("items") or [] if not p["metadata"].get("deletionTimestamp")]
        pod = live[0] if live else self.kube.request("POST", _pods_path(self.namespace), body=body)
        name = pod["metadata"]["name"]
        try:
            return self._wait_ready(name, pod["metadata"]["uid"], on_wait)
        except BaseException:
            with contextlib.suppress(Exception):
                self.kube.request("DELETE", _pods_path(self.namespace, name), body={"gracePeriodSeconds": 0})
            raise

    def _wait_ready(self, name: str, uid: str, on_wait: Callable[[str], None] | None) -> Json:
        deadline = time.monotonic() + self.wait_timeout
        last_wait = ""
        params = {"fieldSelector": f"metadata.name={name}"}
        while True:
            try:
                pod = self.kube.request("GET", _pods_path(self.namespace, name))
            except errors.SandboxNotFound:
                raise errors.SandboxNotFound(
                    f"the placeholder Pod {name} was evicted or deleted before its sandbox was ready"
                ) from None
            if pod["metadata"]["uid"] != uid:
                raise errors.SandboxNotFound(f"placeholder pod {name} was replaced")
            ready = condition(pod, CONDITION_READY)
            node = (pod.get("spec") or {}).get("nodeName")
            if ready is not None and ready.get("status") == "True" and node:
                sid = (pod["metadata"].get("annotations") or {}).get(ANNOTATION_SANDBOX, "")
                box = self._client(node).get_sandbox(sid)
                labels = (box.get("spec") or {}).get("labels") or {}
                if labels.get(SANDBOX_POD_LABEL) != uid:
                    # the sandbox id is only ever trusted with the Pod it was built for
                    raise errors.RuntimeError(f"pod {name} names sandbox {sid!r} on {node}, which is not its own")
                return self._info(name, node, box)
            if ready is not None and ready.get("status") == "False":
                raise errors.RuntimeError(f"node {node} could not build the sandbox: {ready.get('message')}")
            scheduled = condition(pod, "PodScheduled")
            if not node and scheduled is not None and scheduled.get("status") == "False":
                message = WAITING.format(why=scheduled.get("message") or scheduled.get("reason") or "no room")
                if message != last_wait and on_wait is not None:
                    on_wait(message)
                last_wait = message
            left = deadline - time.monotonic()
            if left <= 0:
                raise errors.LimitExceeded(
                    f"no lab machine had room for this sandbox within {self.wait_timeout:.0f}s"
                    + (f" ({last_wait})" if last_wait else "")
                )
            # woken by any change of the Pod; the watch itself times out to re-check the deadline
            with contextlib.suppress(errors.Unreachable):
                for _event in self.kube.watch(
                    _pods_path(self.namespace),
                    {**params, "resourceVersion": pod["metadata"]["resourceVersion"]},
                    timeout=max(1, min(left, 30)),
                ):
                    break

    def get(self, sid: str) -> Json:
        pod, node, box_id = split_id(sid)
        p = self.pod(pod, node)
        if (p.get("spec") or {}).get("nodeName") != node or p["metadata"].get("deletionTimestamp"):
            raise errors.SandboxNotFound(NODE_LOST.format(node=node, why="its placeholder Pod is being removed"))
        return self._info(pod, node, self._client(node).get_sandbox(box_id))

    def list(self) -> builtins.list[Json]:
        """The sandboxes of this backend's Pods that are ready (runtimed's info of each)."""
        data = self.kube.request("GET", _pods_path(self.namespace), params={"labelSelector": LABEL_SESSION})
        out = []
        for p in data.get("items") or []:
            ready = condition(p, CONDITION_READY)
            node = (p.get("spec") or {}).get("nodeName")
            sid = (p["metadata"].get("annotations") or {}).get(ANNOTATION_SANDBOX)
            if not node or not sid or ready is None or ready.get("status") != "True":
                continue
            if p["metadata"].get("deletionTimestamp"):
                continue
            try:
                box = self._client(node).get_sandbox(sid)
            except errors.RuntimeError:
                continue
            if ((box.get("spec") or {}).get("labels") or {}).get(SANDBOX_POD_LABEL) != p["metadata"]["uid"]:
                continue
            out.append(self._info(p["metadata"]["name"], node, box))
        return out

    def placements(self) -> set[str]:
        """Names of the placeholder Pods that exist and are not being deleted (one request)."""
        data = self.kube.request("GET", _pods_path(self.namespace), params={"labelSelector": LABEL_SESSION})
        return {p["metadata"]["name"] for p in data.get("items") or [] if not p["metadata"].get("deletionTimestamp")}

    def stop(self, sid: str) -> None:
        client, box = self._locate(sid)
        client.stop_sandbox(box)

    def remove(self, sid: str) -> None:
        """Delete the placeholder Pod: its room is free for the scheduler at once, and its
        node's agent removes the sandbox (the one owner of that: two removals of one sandbox
        at once race inside runtimed)."""
        pod, _node, _box = split_id(sid)
        with contextlib.suppress(errors.SandboxNotFound):
            self.kube.request("DELETE", _pods_path(self.namespace, pod), body={"gracePeriodSeconds": 0})

    def stats(self, sid: str) -> Json:
        client, box = self._locate(sid)
        return client.stats(box)

    def touch(self, sid: str) -> None:
        client, box = self._locate(sid)
        client.touch(box)

    def mint_token(self, sid: str, role: str, ttl: float) -> str:
        client, box = self._locate(sid)
        return client.mint_token(box, role=role, ttl=ttl)

    def _with_service(self, sid: str, service: str) -> tuple[str, str]:
        """(node address, id on the node) of a sandbox made with ``service``, asked of its node
        with this backend's token: NotAvailable without the service, Forbidden for a token
        without the operation (a ``web`` token gets no kubeconfig here either)."""
        client, box = self._locate(sid)
        if service == "kubernetes":
            client.kubeconfig(box)
        else:
            client.docker_socket(box)
        _pod, node, _box = split_id(sid)
        return self.node_address(node), box

    def _ca_pem(self) -> str:
        ca = str(self.ca)
        return ca if ca.lstrip().startswith("-----BEGIN") else Path(ca).read_text()

    def kubeconfig(self, sid: str) -> str:
        """A kubeconfig of the sandbox's lab cluster through its node's runtimed
        (``/v1/sandboxes/<id>/kube-api``, runtime.relay): that runtimed's certificate checked
        against the runtimed CA, this backend's sandbox token as the credential (the graders'
        role: runtimed then speaks to the cluster with the cluster's grader credential)."""
        if not self.token:
            raise errors.NotAvailable("a lab cluster's kubeconfig is given for a sandbox token (mint_token/scoped)")
        address, box = self._with_service(sid, "kubernetes")
        name = f"kubelab-{box}"
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": name,
                    "cluster": {
                        "server": f"{address}/v1/sandboxes/{box}/kube-api",
                        "certificate-authority-data": base64.b64encode(self._ca_pem().encode()).decode(),
                    },
                }
            ],
            "users": [{"name": f"grader@{name}", "user": {"token": self.token}}],
            "contexts": [
                {"name": name, "context": {"cluster": name, "user": f"grader@{name}", "namespace": "default"}}
            ],
            "current-context": name,
        }
        return yaml.safe_dump(doc, sort_keys=False)

    def docker_url(self, sid: str) -> str:
        """``https://<node>:<port>/v1/sandboxes/<id>/docker-api``: the sandbox's engine through its
        node's runtimed (runtime.relay); TLS checked against the runtimed CA, this backend's
        sandbox token as the credential (``docker_ca``)."""
        address, box = self._with_service(sid, "docker")
        return f"{address}/v1/sandboxes/{box}/docker-api"

    def docker_ca(self) -> str:
        """The PEM that signs every node's runtimed certificate, for clients of ``docker_url``."""
        return self._ca_pem()

    def scoped(self, token: str) -> KubernetesBackend:
        scoped = KubernetesBackend(
            self.kubeconfig_path,
            namespace=self.namespace,
            ca=self.ca,
            port=self.port,
            token=token,
            kube=self.kube,
        )
        # the Node addresses this process has read stay good for a scoped copy (one per terminal
        # or preview request): no extra Node lookup per connection
        scoped._addresses, scoped._lock = self._addresses, self._lock
        return scoped

    def address_of(self, sid: str) -> tuple[str, str]:
        """(runtimed address, sandbox id on it): where the web tier's own clients go."""
        _pod, node, box = split_id(sid)
        return self.node_address(node), box

    def exec(
        self,
        sid: str,
        argv: builtins.list[str],
        *,
        timeout: float = 30.0,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        stdin: bytes | str | None = None,
        max_output: int | None = None,
    ) -> ExecResult:
        client, box = self._locate(sid)
        return client.exec(box, argv, timeout=timeout, env=env, cwd=cwd, stdin=stdin, max_output=max_output)

    def kube_connectivity(
        self,
        sid: str,
        *,
        namespace: str,
        pod: str,
        host: str,
        port: int,
        protocol: str = "TCP",
        timeout: float = 2.0,
    ) -> dict[str, str]:
        client, box = self._locate(sid)
        return client.kube_connectivity(
            box, namespace=namespace, pod=pod, host=host, port=port, protocol=protocol, timeout=timeout
        )

    # -- the lab editor: the node's runtimed, with this backend's (the session's) token ------------
    def files_list(self, sid: str, path: str = "") -> Json:
        client, box = self._locate(sid)
        return client.files_list(box, path)

    def file_read(self, sid: str, path: str) -> Json:
        client, box = self._locate(sid)
        return client.file_read(box, path)

    def file_write(self, sid: str, path: str, content: str, etag: str | None) -> Json:
        client, box = self._locate(sid)
        return client.file_write(box, path, content, etag)

    def kube_validate(self, sid: str, objects: Sequence[Any]) -> Json:
        client, box = self._locate(sid)
        return client.kube_validate(box, objects)

    # -- terminals --------------------------------------------------------------------------
    async def create_session(
        self,
        sid: str,
        argv: builtins.list[str] | None = None,
        *,
        rows: int = 24,
        cols: int = 80,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> Json:
        _pod, node, box = split_id(sid)
        await asyncio.to_thread(self.node_address, node)  # the Node lookup blocks: off the loop
        return await self._aclient(node).create_session(box, argv, rows=rows, cols=cols, env=env, cwd=cwd)

    async def list_sessions(self, sid: str) -> builtins.list[Json]:
        _pod, node, box = split_id(sid)
        await asyncio.to_thread(self.node_address, node)
        return await self._aclient(node).list_sessions(box)

    async def get_session(self, sid: str, session_id: str) -> Json:
        _pod, node, box = split_id(sid)
        await asyncio.to_thread(self.node_address, node)
        return await self._aclient(node).get_session(box, session_id)

    async def resize(self, sid: str, session_id: str, rows: int, cols: int) -> None:
        _pod, node, box = split_id(sid)
        await asyncio.to_thread(self.node_address, node)
        await self._aclient(node).resize(box, session_id, rows, cols)

    async def attach(self, sid: str, session_id: str, *, read_only: bool = False) -> AttachStream:
        _pod, node, box = split_id(sid)
        await asyncio.to_thread(self.node_address, node)
        return await self._aclient(node).attach(box, session_id, read_only=read_only)

    async def remove_session(self, sid: str, session_id: str) -> None:
        _pod, node, box = split_id(sid)
        await asyncio.to_thread(self.node_address, node)
        await self._aclient(node).remove_session(box, session_id)

    # -- port preview: the node's ``/v1/preview`` over its TLS listener ----------------------------
    async def preview(
        self,
        sid: str,
        port: int,
        path: str,
        query: str,
        *,
        method: str,
        headers: Mapping[str, str],
        body: bytes,
    ) -> PreviewResponse:
        _pod, node, box = split_id(sid)
        await asyncio.to_thread(self.node_address, node)
        return await self._aclient(node).preview(box, port, path, query, method=method, headers=headers, body=body)

    async def preview_ws(
        self, sid: str, port: int, path: str, query: str, *, protocols: Sequence[str] = ()
    ) -> PreviewSocket:
        _pod, node, box = split_id(sid)
        await asyncio.to_thread(self.node_address, node)
        return await self._aclient(node).preview_ws(box, port, path, query, protocols=protocols)

    async def aclose(self) -> None:
        for client in self._async.pop(asyncio.get_running_loop(), {}).values():
            await client.close()

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for c in clients:
            c.close()
        if self._own_kube:
            self.kube.close()


# -- ``python -m runtime node-agent`` ------------------------------------------------------------
def add_node_agent_arguments(p: Any) -> None:
    p.add_argument("--node", default=os.environ.get("NODE_NAME") or None, help="this node's name (default $NODE_NAME)")
    p.add_argument(
        "--kubeconfig",
        default=os.environ.get("KUBECONFIG") or None,
        help="the platform cluster's kubeconfig (default $KUBECONFIG, else the pod's service account)",
    )
    p.add_argument("--namespace", default=os.environ.get("KUBELAB_SANDBOX_NAMESPACE") or NAMESPACE)
    p.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("RUNTIME_NODE_PORT") or RUNTIMED_PORT),
        help="the port of runtimed's TLS listener on this node",
    )
    g = p.add_argument_group(
        "node registration (only for an API server with no kubelet on this node, e.g. `runtime kube serve`)"
    )
    g.add_argument("--register-address", help="register the Node with this InternalIP and heartbeat as its kubelet")
    g.add_argument("--register-cpu", default="4", help="the Node's allocatable cpu")
    g.add_argument("--register-memory", default="8Gi", help="the Node's allocatable memory")
    g.add_argument("--register-pods", default="110", help="the Node's allocatable pod count")
    g.add_argument(
        "--register-heartbeat",
        type=float,
        default=HEARTBEAT,
        help="seconds between Lease renewals (a kubelet's 10; keep it well under the grace period)",
    )


def run_node_agent(args: Any) -> int:
    import signal

    from runtime.auth import read_admin_token
    from runtime.client import resolve_socket_path

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.node:
        log.error("node-agent: --node (or $NODE_NAME) is required")
        return 2
    socket_path = resolve_socket_path(getattr(args, "socket", None))
    token = os.environ.get("RUNTIME_ADMIN_TOKEN") or read_admin_token(socket_path) or ""
    register = (
        {
            "address": args.register_address,
            "cpu": args.register_cpu,
            "memory": args.register_memory,
            "pods": args.register_pods,
        }
        if args.register_address
        else None
    )
    kube = KubeAPI(args.kubeconfig)
    runtime = Client(socket_path, token=token, timeout=60)
    agent = NodeAgent(
        node=args.node,
        kube=kube,
        runtime=runtime,
        namespace=args.namespace,
        port=args.port,
        register=register,
        heartbeat=args.register_heartbeat,
    )
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: agent.stop())
    try:
        agent.run()
    finally:
        runtime.close()
        kube.close()
    return 0
