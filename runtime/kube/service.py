"""The ``kubernetes`` sandbox service: runtimed hosts every student's lab cluster.

A sandbox created with ``services: ["kubernetes"]`` (CLI ``--service kubernetes``) gets
its own cluster in the one API server that runtimed runs on its event loop (apiserver/server.py's
``Hub`` over ``ROOT/kube``), reachable two ways:

From inside that sandbox only
    ``https://127.0.0.1:6443/clusters/<sandbox id>``. The socket listening there lives in
    the sandbox's network namespace but is served by runtimed: a short-lived helper child
    (``node/_netns_listen.py``) setns()es into ``/proc/<pid>/ns/net``, binds and listens on
    127.0.0.1:6443, and hands the listening socket back over a unix socket (SCM_RIGHTS);
    the daemon serves it with an app restricted to that one cluster (any other cluster's
    path is a 404) and that cluster's own certificate. ``/root/.kube/config`` is written
    inside the sandbox (``SandboxManager.write_file``, never following a student's
    symlink) with the cluster's CA, ``tls-server-name`` and an admin token
    (``kubernetes-admin``, system:masters). Nothing crosses the sandbox's network
    boundary: no route, no nftables hole, no proxy process per sandbox.

From the host (graders)
    runtimed also listens on a loopback TCP port of the host (``--kube-listen``, default
    ``127.0.0.1:0``: the port picked first is remembered in ``ROOT/kube/listen.json`` and
    asked for again after a restart, so kubeconfigs already handed out keep working).
    ``GET /v1/sandboxes/{id}/kubeconfig`` returns a kubeconfig for it with a token of the
    user ``kubelab-runtimed`` (system:masters) that is never shown to the student, so the
    official ``kubernetes`` client of a Celery worker can grade. Sandboxes cannot reach
    host loopback (their own network namespace; network.py drops the rest).

Per-user tokens
    ``POST /v1/sandboxes/{id}/kube-users {"user", "groups", "ttl_seconds"?}`` mints a token
    for a named user (no rights but what RBAC gives it and its groups) and returns its
    kubeconfig twice: ``kubeconfig`` for the host listener, ``kubeconfig_inside`` for
    ``https://127.0.0.1:6443`` in the sandbox (labs where the student is "jane" and must
    be granted access). ``python -m runtime kube mint-token`` does the same from a shell.

Lifecycle: the manager calls ``start(sid, pid)`` once the sandbox runs (before the lab's
setup script, which may therefore use kubectl) and writes the files it returns; it calls
``stop(sid, remove=...)`` when the sandbox stops (the listener closes) or is removed (the
cluster and its tokens are deleted too). ``start`` is idempotent per sandbox id: the
cluster and both tokens are created once and kept in ``ROOT/kube/sandboxes/<id>.json``
(root only). When runtimed restarts, ``adopt`` gives every re-adopted running sandbox its
listener back (clusters are on disk: objects, resourceVersions and tokens persist) and
deletes clusters whose sandbox is gone.
``pause`` (a paused sandbox) stops the kubelet and the listener and unloads the cluster:
its directory becomes ``.<name>.paused``, which the hub never loads, so a paused lab holds
no store in runtimed's memory whatever a grader asks; the ``start`` of the resume renames
it back and a new kubelet recreates the Pods whose containers the pause killed.

Pods run: each sandbox's cluster gets a ``Kubelet`` (node/kubelet.py) on the sandbox's own
Docker engine (``engines``: the docker service's, which the kubernetes service brings
along: ``SandboxSpec`` puts ``docker`` first), so pods are containers of the student's
sandbox, within its limits, and ``kubectl logs``/``exec``/``attach`` reach them
(``Cluster.pod_io``). The kubelet stops with the listener; the containers do not: after
a runtimed restart ``adopt`` starts a new kubelet, which adopts them by their labels.

Services work: with the kubelet come the sandbox's kube-proxy (node/proxy.py: an nftables table
in the sandbox's netns, resynced in the kubelet's thread after every sync) and its cluster
DNS (node/dns.py: 10.96.0.10:53 on the sandbox's ``lo``, sockets made by the same helper child,
served on the loop; pods get it as their nameserver). Both stop with the kubelet.

Limits: what one student's cluster may hold (objects, bytes, events, watches, request and
object sizes) is bounded as a real control plane bounds it, and answered in its words
(machinery/limits.py: the table of limits, defaults and answers). ``KubeService(..., limits=...)``
sets them for every cluster of this runtimed (default ``Limits()``: 3 MiB requests, 1.5 MiB
objects, 5000 objects and 32 MiB per cluster, 1000 events, 50 watches, a 16 MiB watch
cache); a cluster's ``cluster.json`` may override them for that cluster alone.

Threads: ``start``/``stop`` run in the manager's worker threads; everything touching the
hub or aiohttp runs on the daemon's loop through ``run_coroutine_threadsafe``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import socket
import subprocess
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import yaml
from aiohttp import web

from runtime import errors
from runtime.kernel import forkserver
from runtime.kube.apiserver.dryrun import validate_all
from runtime.kube.apiserver.provision import (
    clusters_dir,
    create_cluster,
    kubeconfig,
    mint_user_token,
    node_capacity,
    node_names,
    user_kubeconfig,
)
from runtime.kube.apiserver.server import Hub, make_app
from runtime.kube.controllers.manager import Controllers
from runtime.kube.machinery.apierrors import ApiError
from runtime.kube.machinery.limits import Limits
from runtime.kube.node import dns
from runtime.kube.node.ingress import IngressController
from runtime.kube.node.kubelet import ClusterHost, Kubelet, KubeletIO
from runtime.kube.node.netpol import NetworkPolicyAgent, probe
from runtime.kube.node.proxy import Proxy
from runtime.loops import call_on_loop

if TYPE_CHECKING:
    from runtime.dockerapi.engine import Engine
    from runtime.sandbox.spec import SandboxSpec

log = logging.getLogger("runtime.kube.service")

NAME = "kubernetes"
SANDBOX_HOST = "127.0.0.1"
SANDBOX_PORT = 6443
SANDBOX_SERVER = f"https://{SANDBOX_HOST}:{SANDBOX_PORT}"
KUBECONFIG_PATH = ".kube/config"  # under /root, where kubectl looks ($HOME/.kube/config)
GRADER_USER = "kubelab-runtimed"
# connections to one sandbox's API listener at once: each is a descriptor of runtimed's one
# process, shared by every sandbox (kubectl and a watch or two need a handful)
MAX_CONNECTIONS = 256
HELPER_TIMEOUT = 10.0
LOOP_TIMEOUT = 30.0

T = TypeVar("T")


def parse_listen(value: str) -> tuple[str, int] | None:
    """``HOST:PORT`` (port 0: pick one, then keep it across restarts), or ``off``."""
    if value.strip().lower() in ("off", "none", ""):
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"expected HOST:PORT or off, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


@dataclass
class _Listener:
    runner: web.AppRunner
    pid: int


class CappedListener(socket.socket):
    """A listening socket that counts its accepted connections from accept to close and
    closes at once what comes past ``limit`` (asyncio's accept loop takes the
    ConnectionAbortedError and goes on). Counted at accept, before TLS, so a client stalling
    its handshake counts too. Used on the event loop only: no lock."""

    def __init__(self, sock: socket.socket, limit: int) -> None:
        super().__init__(sock.family, sock.type, sock.proto, fileno=sock.detach())
        self.limit = limit
        self.open = 0

    def accept(self) -> tuple[socket.socket, Any]:
        fd, addr = self._accept()  # type: ignore[attr-defined]
        if self.open >= self.limit:
            os.close(fd)
            raise ConnectionAbortedError(f"at most {self.limit} connections to this sandbox's API at once")
        conn = _CountedConnection(self, self.family, self.type, self.proto, fileno=fd)
        self.open += 1
        return conn, addr


class _CountedConnection(socket.socket):
    def __init__(self, listener: CappedListener, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._listener: CappedListener | None = listener

    def _real_close(self, *args: Any, **kwargs: Any) -> None:
        if self._listener is not None:
            self._listener.open -= 1
            self._listener = None
        super()._real_close(*args, **kwargs)  # type: ignore[misc]


# cluster DNS's sockets in a sandbox: its service address (UDP, TCP) and one to forward from
DNS_SOCKETS = (
    (dns.DNS_IP, dns.DNS_PORT, "udp"),
    (dns.DNS_IP, dns.DNS_PORT, "tcp"),
    ("0.0.0.0", 0, "udp"),  # noqa: S104 - the sandbox's, to forward
)


def open_listener_in_netns(
    pid: int, host: str = SANDBOX_HOST, port: int = SANDBOX_PORT, proto: str = "tcp"
) -> socket.socket:
    """A socket listening on HOST:PORT (``proto`` udp: bound to it) inside the network
    namespace of ``pid`` (helper child)."""
    return open_listeners_in_netns(pid, [(host, port, proto)])[0]


def open_listeners_in_netns(
    pid: int, specs: list[tuple[str, int, str]], lo_addresses: tuple[str, ...] = ()
) -> list[socket.socket]:
    """Sockets listening on each (HOST, PORT, PROTO) inside the network namespace of ``pid``,
    in that order, made by one helper child, which first gives ``lo`` each of
    ``lo_addresses`` as a /32 (idempotent)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    args = [f"lo+{ip}" for ip in lo_addresses] + [f"{host},{port},{proto}" for host, port, proto in specs]
    try:
        proc = forkserver.spawn(  # from the fork server: no interpreter start-up per sandbox
            "runtime.kube.node._netns_listen",
            [str(pid), str(theirs.fileno()), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            pass_fds=(theirs.fileno(),),
            start_new_session=True,
        )
    finally:
        theirs.close()
    with ours:
        try:
            _out, err = proc.communicate(timeout=HELPER_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise errors.RuntimeError(f"opening the cluster listener in sandbox pid {pid} timed out") from None
        if proc.returncode != 0:
            why = err.decode(errors="replace").strip()[-300:]
            raise errors.RuntimeError(f"could not open the cluster listener in the sandbox: {why}")
        ours.settimeout(HELPER_TIMEOUT)
        _msg, fds, _flags, _addr = socket.recv_fds(ours, 16, len(specs), socket.MSG_CMSG_CLOEXEC)
    socks = [socket.socket(fileno=fd) for fd in fds]
    if len(socks) != len(specs):
        for sock in socks:
            sock.close()
        raise errors.RuntimeError(f"the netns helper sent {len(socks)} sockets, not {len(specs)}")
    for sock in socks:
        sock.set_inheritable(False)
        sock.setblocking(False)
    return socks


class KubeService:
    """Lab clusters of one runtimed; implements the manager's service hook."""

    def __init__(self, data: Path, listen: tuple[str, int] = ("127.0.0.1", 0), limits: Limits | None = None) -> None:
        self.data = data
        self.listen = listen
        # of every cluster (machinery/limits.py), unless its cluster.json says otherwise
        self.limits = limits or Limits()
        self.server = ""  # https://HOST:PORT of the host listener, once started
        self.hub: Hub | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._host: web.AppRunner | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._listeners: dict[str, _Listener] = {}
        self._state_dir = data / "sandboxes"
        # the sandbox's Docker engine, for its kubelet (None: pods are never run)
        self.engines: Callable[[str], Engine] | None = None
        # a sandbox's spec: its cluster's nodes (kube_nodes) and their share of its limits
        # (None: one node showing provision.DEFAULT_CAPACITY)
        self.spec_of: Callable[[str], SandboxSpec] | None = None
        self._kubelets: dict[str, Kubelet] = {}
        self._dns: dict[str, dns.ClusterDNS] = {}
        self._netpol: dict[str, tuple[NetworkPolicyAgent, Any]] = {}
        self._ingress: dict[str, IngressController] = {}

    # -- daemon side (on the loop) -------------------------------------------------------------
    async def start_server(self) -> None:
        """Load the hub and listen on the host's loopback port."""
        self.loop = asyncio.get_running_loop()
        await asyncio.to_thread(self._prepare_dirs)
        self.hub = hub = await asyncio.to_thread(Hub, self.data, self.limits, controllers=Controllers)
        ssl_ctx = await asyncio.to_thread(hub.default_ssl)
        runner = web.AppRunner(make_app(hub), access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        host, port = self.listen
        remembered = await asyncio.to_thread(self._remembered_port) if port == 0 else None
        site = None
        for p in [x for x in (remembered, port) if x is not None]:
            site = web.TCPSite(runner, host, p, ssl_context=ssl_ctx, backlog=512)
            try:
                await site.start()
                break
            except OSError as e:
                if p != remembered:
                    await runner.cleanup()
                    raise errors.Conflict(f"lab clusters cannot listen on {host}:{p}: {e.strerror}") from None
                log.warning("lab clusters: port %d of the last run is taken (%s); picking another", p, e.strerror)
        actual = runner.addresses[0][1]
        self._host = runner
        self.server = f"https://{host}:{actual}"
        await asyncio.to_thread(self._remember_port, host, actual)
        self._ticker = asyncio.create_task(hub.tick())
        log.info("lab clusters (kubernetes service) served on %s from %s", self.server, self.data)

    async def close(self) -> None:
        """Close every listener (sandboxes keep running; the next runtimed re-opens them)."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        for sid in list(self._kubelets):
            await asyncio.to_thread(self._stop_kubelet, sid)
        for sid in list(self._listeners):
            await self._close_listener(sid)
        if self.hub is not None:
            self.hub.close()
        if self._host is not None:
            await self._host.cleanup()
            self._host = None

    def adopt(self, sandboxes: list[tuple[str, int | None, str]]) -> None:
        """After a restart (a worker thread): re-open the listener of each running sandbox with
        the service ``(id, pid, status)``; delete clusters whose sandbox no longer exists."""
        known = {sid for sid, _pid, _status in sandboxes}
        for sid, pid, status in sandboxes:
            if status == "running" and pid is not None and self._state_path(sid).exists():
                try:
                    self._open_all(sid, pid)
                except errors.RuntimeError as e:
                    log.warning("sandbox %s: lab cluster listener not restored: %s", sid, e)
        for path in sorted(self._state_dir.glob("*.json")):
            if path.stem not in known:
                log.info("deleting the lab cluster of sandbox %s (the sandbox is gone)", path.stem)
                self._delete(path.stem)
        for doomed in clusters_dir(self.data).glob(".*.deleted-*"):  # a removal cut short
            shutil.rmtree(doomed, ignore_errors=True)

    def kubeconfig_for_host(self, sid: str) -> dict[str, str]:
        """The host-side kubeconfig of a sandbox's cluster (graders), as the API returns it."""
        st = self._load(sid)
        if st is None:
            raise errors.NotAvailable(f"sandbox {sid} has no lab cluster (was it created with the kubernetes service?)")
        name = st["cluster"]
        ca = (clusters_dir(self.data) / name / "ca.crt").read_bytes()
        text = kubeconfig(name, self.server, ca, st["grader_token"], user=GRADER_USER)
        return {"cluster": name, "server": f"{self.server}/clusters/{name}", "kubeconfig": text}

    def connectivity(
        self, sid: str, namespace: str, pod: str, host: str, port: int, protocol: str, timeout: float
    ) -> dict[str, str]:
        """One connection from a pod of the sandbox's cluster to ``host:port`` (netpol.probe:
        the graders' ``connectivity`` check, proof by real traffic)."""
        if self.engines is None or self._load(sid) is None:
            raise errors.NotAvailable(f"sandbox {sid} has no lab cluster running pods")
        return probe(self.engines(sid), namespace, pod, host, port, protocol, timeout)

    def dry_run(self, sid: str, objects: list[Any]) -> list[dict[str, Any]]:
        """Validate manifests against the sandbox's cluster, storing nothing (apiserver/dryrun.py: the lab
        editor's validation as you type); one answer per object, in order."""
        st = self._load(sid)
        if st is None:
            raise errors.NotAvailable(f"sandbox {sid} has no lab cluster (was it created with the kubernetes service?)")
        return self._on_loop(self._dry_run(st["cluster"], objects))

    async def _dry_run(self, name: str, objects: list[Any]) -> list[dict[str, Any]]:
        return validate_all(await self._cluster(name), objects)

    def user_kubeconfig(self, sid: str, user: str, groups: list[str], ttl_seconds: int | None) -> dict[str, str]:
        """Mint a token of the sandbox's cluster for ``user`` (a worker thread); return its
        kubeconfig for the host listener and for use inside the sandbox."""
        st = self._load(sid)
        if st is None:
            raise errors.NotAvailable(f"sandbox {sid} has no lab cluster (was it created with the kubernetes service?)")
        name = st["cluster"]
        try:
            token = mint_user_token(self.data, name, user, groups, ttl_seconds)
        except ApiError as e:
            raise errors.BadRequest(e.message) from None
        return {
            "cluster": name,
            "user": user,
            "kubeconfig": user_kubeconfig(self.data, name, self.server, user, token),
            "kubeconfig_inside": user_kubeconfig(self.data, name, SANDBOX_SERVER, user, token),
        }

    # -- the manager's hook (worker threads) ---------------------------------------------------
    def start(self, sid: str, pid: int) -> dict[str, str]:
        """Create the sandbox's cluster if needed and open its listener; return the files to
        place under /root (the student's kubeconfig)."""
        name = self._cluster_name(sid)
        if name is not None:
            self._on_loop(self._unpark(name))
        st = self._load(sid) or self._create(sid)
        self._open_all(sid, pid)
        name = st["cluster"]
        ca = (clusters_dir(self.data) / name / "ca.crt").read_bytes()
        return {KUBECONFIG_PATH: kubeconfig(name, SANDBOX_SERVER, ca, st["token"])}

    def stop(self, sid: str, *, remove: bool) -> None:
        self._stop_kubelet(sid)
        self._on_loop(self._close_listener(sid))
        if remove:
            self._delete(sid)

    def pause(self, sid: str) -> None:
        """The sandbox is being paused: stop its kubelet and listener and take its cluster out
        of memory. Its directory is renamed ``.<name>.paused`` in the same step on the loop,
        so nothing (a grader's request on the host listener) loads it again; ``start``
        renames it back at the resume, and the new kubelet brings the Pods back."""
        self._stop_kubelet(sid)
        self._on_loop(self._close_listener(sid))
        name = self._cluster_name(sid)
        if name is not None:
            self._on_loop(self._park(name))

    def loaded(self, sid: str) -> bool:
        """Whether the sandbox's cluster is in memory (its store loaded in the hub)."""
        name = self._cluster_name(sid)
        return name is not None and self.hub is not None and name in self.hub.clusters

    # -- internals -----------------------------------------------------------------------------
    def _prepare_dirs(self) -> None:
        self.data.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._state_dir.mkdir(mode=0o700, exist_ok=True)

    def _remembered_port(self) -> int | None:
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            return int(json.loads((self.data / "listen.json").read_text())["port"])
        return None

    def _remember_port(self, host: str, port: int) -> None:
        tmp = self.data / "listen.json.tmp"
        tmp.write_text(json.dumps({"host": host, "port": port, "server": self.server}))
        tmp.replace(self.data / "listen.json")

    def _state_path(self, sid: str) -> Path:
        if not sid or not all(c in "0123456789abcdefghijklmnopqrstuvwxyz-" for c in sid):
            raise errors.BadRequest(f"bad sandbox id {sid!r}")
        return self._state_dir / f"{sid}.json"

    def _load(self, sid: str) -> dict[str, str] | None:
        try:
            st = json.loads(self._state_path(sid).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(st, dict) or not (clusters_dir(self.data) / str(st.get("cluster")) / "cluster.json").exists():
            return None
        return {k: str(v) for k, v in st.items()}

    def _create(self, sid: str) -> dict[str, str]:
        name = sid
        spec = self.spec_of(sid) if self.spec_of is not None else None
        nodes = spec.kube_nodes if spec is not None else 1
        capacity = node_capacity(spec.cpus, spec.memory, spec.disk, nodes) if spec is not None else None
        try:
            doc = yaml.safe_load(
                create_cluster(self.data, name, SANDBOX_SERVER, nodes=nodes, capacity=capacity, controllers=Controllers)
            )
            token: str | None = doc["users"][0]["user"]["token"]
        except ApiError as e:
            if e.status != 409:
                raise errors.RuntimeError(f"could not create the lab cluster: {e.message}") from None
            token = None  # left by an interrupted start: keep its objects, mint new tokens
        student, grader = self._on_loop(self._mint(name, token is None))
        st = {"cluster": name, "token": token or student, "grader_token": grader, "nodes": str(nodes)}
        path = self._state_path(sid)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(st, fh)
        tmp.replace(path)
        log.info("sandbox %s: lab cluster %s created", sid, name)
        return st

    async def _mint(self, name: str, student_too: bool) -> tuple[str, str]:
        assert self.hub is not None
        cluster = self.hub.get(name)
        if cluster is None:
            raise errors.RuntimeError(f"lab cluster {name} vanished while it was being created")
        student = (
            cluster.add_token("kubernetes-admin", ["system:masters", "kubeadm:cluster-admins"]) if student_too else ""
        )
        return student, cluster.add_token(GRADER_USER, ["system:masters"])

    def _open_all(self, sid: str, pid: int) -> None:
        """The API listener and the kubelet with cluster DNS, their sockets (and DNS's address)
        made by one helper child when both are needed (a sandbox start; issue #13: one Python
        start-up fewer per student); if that helper fails, each is made on its own as before,
        so a DNS problem still costs only DNS (logged), never the cluster."""
        current = self._listeners.get(sid)
        socks: list[socket.socket] = []
        if (current is None or current.pid != pid) and self.engines is not None and sid not in self._kubelets:
            try:
                socks = open_listeners_in_netns(pid, [(SANDBOX_HOST, SANDBOX_PORT, "tcp"), *DNS_SOCKETS], (dns.DNS_IP,))
            except errors.RuntimeError as e:
                log.info("sandbox %s: listeners in one helper failed (%s); opening them one by one", sid, e)
        try:
            self._open(sid, pid, socks[0] if socks else None)
        except BaseException:
            for sock in socks[1:]:
                sock.close()
            raise
        self._start_kubelet(sid, socks[1:] if socks else None)

    def _start_kubelet(self, sid: str, dns_socks: list[socket.socket] | None = None) -> None:
        """Run the pods of the sandbox's cluster on the sandbox's engine (once per sandbox).
        ``dns_socks``: DNS_SOCKETS already made in the sandbox (its address on lo too)."""
        st = self._load(sid)
        if self.engines is None or sid in self._kubelets or st is None:
            for sock in dns_socks or ():
                sock.close()
            if st is None and self.engines is not None and sid not in self._kubelets:
                raise errors.RuntimeError(f"sandbox {sid} has no lab cluster")
            return
        try:
            engine = self.engines(sid)
            cluster = self._on_loop(self._cluster(st["cluster"]))
        except BaseException:
            for sock in dns_socks or ():
                sock.close()
            raise
        host = ClusterHost(cluster, self.loop)
        # one kubelet runs the pods of every node: the nodes are views of this one sandbox
        names = node_names(st["cluster"], int(st.get("nodes") or 1))
        kubelet = Kubelet(host, engine, names[0], also=names[1:], cluster_dns=dns.DNS_IP)
        kubelet.after_sync.append(Proxy(host, engine).sync)  # kube-proxy, in the kubelet's thread
        netpol = NetworkPolicyAgent(host, engine)  # the CNI's policy agent (node/netpol.py), its own thread
        kubelet.after_sync.append(netpol.notify)
        cluster.pod_io = KubeletIO(kubelet)
        try:
            self._start_dns(sid, engine, cluster, dns_socks)
        except errors.RuntimeError as e:
            log.warning("sandbox %s: cluster DNS not started: %s", sid, e)
        kubelet.start()
        netpol.start(cluster)
        self._netpol[sid] = (netpol, cluster)
        self._kubelets[sid] = kubelet
        ingress = IngressController(host, engine)  # ingress-nginx (node/ingress.py), its own thread
        ingress.start()
        self._ingress[sid] = ingress

    def _start_dns(self, sid: str, engine: Engine, cluster: Any, socks: list[socket.socket] | None = None) -> None:
        """Cluster DNS on 10.96.0.10:53 in the sandbox's netns, served on the loop (node/dns.py);
        ``socks``: its DNS_SOCKETS, made already (None: made here)."""
        pid = engine.ctx.pid
        if socks is None:
            dns.add_address(pid)
            socks = open_listeners_in_netns(pid, list(DNS_SOCKETS))
        made = socks

        async def start(server: dns.ClusterDNS) -> None:
            dns.ensure_kube_dns_service(cluster)
            await server.start(*made)

        try:
            server = dns.ClusterDNS(cluster.store, dns.upstreams(engine.ctx.dir / "rootfs"))
            self._on_loop(start(server))
        except BaseException:
            for sock in socks:
                sock.close()
            raise
        self._dns[sid] = server

    def _stop_kubelet(self, sid: str) -> None:
        """Stop syncing the sandbox's pods (their containers stay, for the next kubelet)."""
        agent = self._netpol.pop(sid, None)
        if agent is not None:
            agent[0].close(agent[1])
        ingress = self._ingress.pop(sid, None)
        if ingress is not None:
            ingress.close()
        server = self._dns.pop(sid, None)
        if server is not None:
            with contextlib.suppress(errors.RuntimeError):
                self._on_loop(server.close())
        kubelet = self._kubelets.pop(sid, None)
        if kubelet is not None:
            kubelet.close()
            with contextlib.suppress(errors.RuntimeError):
                self._on_loop(self._detach_pod_io(kubelet))

    async def _cluster(self, name: str) -> Any:
        assert self.hub is not None
        cluster = self.hub.get(name)
        if cluster is None:
            raise errors.RuntimeError(f"lab cluster {name} cannot be loaded")
        return cluster

    async def _detach_pod_io(self, kubelet: Kubelet) -> None:
        cluster = kubelet.host.cluster
        if isinstance(cluster.pod_io, KubeletIO) and cluster.pod_io.kubelet is kubelet:
            cluster.pod_io = None

    def _open(self, sid: str, pid: int, sock: socket.socket | None = None) -> None:
        """Serve the cluster's API on SANDBOX_HOST:SANDBOX_PORT in the sandbox (``sock``:
        that listener, made already)."""
        current = self._listeners.get(sid)
        if current is not None and current.pid == pid:
            if sock is not None:
                sock.close()
            return
        sock = sock or open_listener_in_netns(pid)
        try:
            self._on_loop(self._serve(sid, pid, sock))
        except BaseException:
            sock.close()
            raise

    async def _serve(self, sid: str, pid: int, sock: socket.socket) -> None:
        assert self.hub is not None
        st = self._load(sid)
        if st is None:
            raise errors.RuntimeError(f"sandbox {sid} has no lab cluster")
        ssl_ctx = self.hub.ssl_for(st["cluster"])
        if ssl_ctx is None:
            raise errors.RuntimeError(f"lab cluster {st['cluster']} has no serving certificate")
        await self._close_listener(sid)
        runner = web.AppRunner(
            make_app(self.hub, only=st["cluster"]), access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await runner.setup()
        try:
            await web.SockSite(runner, CappedListener(sock, MAX_CONNECTIONS), ssl_context=ssl_ctx).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._listeners[sid] = _Listener(runner, pid)

    async def _close_listener(self, sid: str) -> None:
        lst = self._listeners.pop(sid, None)
        if lst is not None:
            await lst.runner.cleanup()

    def _delete(self, sid: str) -> None:
        st = self._load(sid)
        name = st["cluster"] if st else (self._cluster_name(sid) or sid)
        doomed = self._on_loop(self._unload(name))
        if doomed is not None:
            shutil.rmtree(doomed, ignore_errors=True)
        shutil.rmtree(self._parked_dir(name), ignore_errors=True)  # removed while paused
        self._state_path(sid).unlink(missing_ok=True)

    def _cluster_name(self, sid: str) -> str | None:
        """The cluster's name from the sandbox's state file (whether or not it is loaded)."""
        try:
            name = json.loads(self._state_path(sid).read_text()).get("cluster")
        except (OSError, ValueError, AttributeError):
            return None
        return name if isinstance(name, str) and name and "/" not in name and not name.startswith(".") else None

    def _parked_dir(self, name: str) -> Path:
        return clusters_dir(self.data) / f".{name}.paused"

    async def _park(self, name: str) -> None:
        """Unload a paused sandbox's cluster and hide its files from the hub, in one step."""
        d = clusters_dir(self.data) / name
        with contextlib.suppress(FileNotFoundError):
            d.rename(self._parked_dir(name))
        if self.hub is not None:
            self.hub.unload(name)

    async def _unpark(self, name: str) -> None:
        parked = self._parked_dir(name)
        d = clusters_dir(self.data) / name
        if parked.exists() and not d.exists():
            parked.rename(d)

    async def _unload(self, name: str) -> Path | None:
        """Move the cluster's directory out of the hub's sight and forget it, in one step
        on the loop: no request can load it again in between."""
        d = clusters_dir(self.data) / name
        doomed = d.with_name(f".{name}.deleted-{os.urandom(4).hex()}")
        try:
            d.rename(doomed)
        except FileNotFoundError:
            return None
        finally:
            if self.hub is not None:
                self.hub.unload(name)
        return doomed

    def _on_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        return call_on_loop(self.loop, coro, what="lab cluster service", timeout=LOOP_TIMEOUT)


async def start_for_daemon(daemon: Any, data: Path, listen: str, limits: Limits | None = None) -> KubeService:
    """Start the service in runtimed (``Daemon``): serve the host listener, register the
    manager's hook, give re-adopted sandboxes their listeners back, expose it to the API.
    ``limits``: of every lab cluster (default ``Limits()``, see machinery/limits.py)."""
    try:
        parsed = parse_listen(listen)
    except ValueError as e:
        raise errors.BadRequest(f"--kube-listen: {e}") from None
    if parsed is None:
        raise errors.BadRequest("--kube-listen is off: the kubernetes service is disabled")
    svc = KubeService(data, parsed, limits)
    docker = getattr(daemon, "docker", None)
    if docker is not None:
        svc.engines = docker.engine
    svc.spec_of = lambda sid: daemon.manager.get(sid).spec
    await svc.start_server()
    try:
        await asyncio.to_thread(daemon.manager.register_service, NAME, svc)
    except BaseException:
        await svc.close()
        raise
    daemon.kube = svc
    return svc
