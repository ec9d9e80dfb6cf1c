"""The lab cluster's kubelet: pods bound to the node run as containers of the sandbox's Docker engine.

A real node runs a kubelet that watches the pods bound to it and drives a container
runtime; here ``Kubelet`` (a thread) does the same with the sandbox's ``Engine``
(runtime/dockerapi/engine/: runc containers inside the student's sandbox), and
``ClusterHost`` is its window on the embedded API server (``apiserver.Cluster``).

The code is split as Kubernetes' kubelet is: this module keeps ``ClusterHost``, the sync loop
and deletion, and ``Kubelet`` mixes in containers.py (``ContainerRuntime``), volumes.py
(``VolumeManager``), prober.py (``Prober``) and status.py (``StatusManager``); podstate.py
holds the labels and per-pod state they share, streaming.py the exec/attach sessions.

Talking to the cluster
----------------------
The ``Cluster`` is only touched from the API server's event loop, so every
``ClusterHost`` method runs its work there (``call_on_loop``) and returns copies; with
``loop=None`` (tests) it calls directly. ``ClusterHost.attach`` sets
``cluster.kubelet_notify``, which ``Controllers.reconcile`` calls after every write: the
kubelet then syncs at once. Status writes replace the pod's ``status`` only when it
changed, through the API's status subresource as a client (apiserver/client.py), and run the
controllers, so ReplicaSets, Deployments, Jobs and Endpoints see ready pods, phases and IPs as
they would from a real kubelet.

When it syncs
-------------
Never on a fixed short period: a class of idle clusters must cost nothing. The thread
sleeps until one of: a cluster write (``notify``), the exit of a pod's container (the
engine's ``die`` event, ``Engine.listeners``: kubelet's PLEG), the earliest timer a sync
left behind (``_wake_in``: a probe's next run or initial delay, the end of a back-off, a
grace-period deadline, a retry after an engine error), or ``RESYNC_PERIOD`` (60 s, as
kubelet's ``--sync-frequency``) as a safety net for what no event reports (e.g. the student
removing a stopped container with ``docker rm``). Each sync recomputes every timer.
Hooks that need the pod network (``after_sync``) run after every sync, whatever woke it.

Containers, as dockershim named and labelled them
-------------------------------------------------
Every engine container of a pod carries the labels ``io.kubernetes.pod.name``,
``io.kubernetes.pod.namespace``, ``io.kubernetes.pod.uid``, ``io.kubernetes.container.name``
and ``io.kubernetes.container.restartCount`` and is named
``k8s_<container>_<pod>_<namespace>_<uid>_<restartCount>``. All state the kubelet needs to
carry on after a runtimed restart is in those labels (a new Kubelet adopts what it finds;
back-off timers and probe results start afresh). Engine volumes carry
``io.kubernetes.pod.uid`` (per-pod volumes) or ``io.kubernetes.pvc.namespace/name``.

Pod network: one infra container per pod (``k8s_POD_<pod>_<ns>_<uid>_0``, ``busybox:1.35``
running ``sleep infinity``) on the engine network ``kube-pods`` (10.244.0.0/24, the node's
podCIDR; created on first use); every init and app container joins its network namespace
(``Engine.create(..., internal=True)`` with ``NetworkMode: container:<infra id>``), so the
containers of a pod reach each other on localhost and share the pod IP (the infra
container's address). Each container gets its own UTS namespace with the pod's name as
hostname.

Pod DNS and Service variables: with ``cluster_dns`` (service.py passes node/dns.py's
10.96.0.10) a ``dnsPolicy: ClusterFirst`` pod (the default) gets ``nameserver 10.96.0.10``,
``search <ns>.svc.cluster.local svc.cluster.local cluster.local`` and ``options ndots:5``
(engine HostConfig ``Dns``/``DnsSearch``/``DnsOptions``); ``Default`` keeps the sandbox's
resolv.conf, ``None`` uses ``dnsConfig`` only, and ``dnsConfig`` is merged into the others
as kubelet merges it. Every container gets the Docker-link variables
(``WEB_SERVICE_HOST``, ``WEB_SERVICE_PORT``, ``WEB_PORT_80_TCP_ADDR``, ...) of the
Services of its namespace that exist when it starts (``enableServiceLinks: false``: only
``kubernetes``'s). ``after_sync`` hooks run in the sync thread after every sync (the
kube-proxy's resync, node/proxy.py).

What a sync does, per pod of the node
-------------------------------------
1. Infra container running (re-created if it died). 2. Volumes, once, before any container
starts: ``emptyDir`` (a fresh engine volume), ``configMap``/``secret``/``projected`` (files
written by the kubelet into a fresh engine volume that no container has used yet: keys or
``items`` paths, ``defaultMode``/``mode``; the service-account volume gets ``ca.crt``,
``namespace`` and a real bearer token of the pod's ServiceAccount), ``persistentVolumeClaim``
(an engine volume per claim, kept after the pod). ``hostPath`` and other kinds are refused
with a ``FailedMount`` event (the pod stays ContainerCreating). 3. ``initContainers`` one at
a time (each must exit 0), then all ``containers``: image present in the engine (catalog or
student-built; otherwise ``ErrImagePull``/``ImagePullBackOff`` naming the catalog), env
(``value``, ``valueFrom`` configMapKeyRef/secretKeyRef/fieldRef, ``envFrom``, ``$(VAR)``
expansion; a missing object or key is ``CreateContainerConfigError`` with kubelet's
message), ``command``/``args`` over ENTRYPOINT/CMD, ``workingDir``, limits, ``tty``/``stdin``,
and the security context: ``runAsUser``/``runAsGroup``, ``runAsNonRoot`` (verified against
the image's user with kubelet's messages), ``capabilities`` add/drop, ``readOnlyRootFilesystem``,
``supplementalGroups`` and ``fsGroup`` (extra groups; an emptyDir is 0777, and with ``fsGroup``
owned by that group, setgid), ``hostPort``s (published on the sandbox's address by the infra
container) and ``net.*`` sysctls (set in the pod's network namespace). What cannot be given
inside a sandbox (privileged, host namespaces, hostPath, other capabilities...) is refused at
admission (apiserver/podsecurity.py). 4. Restarts per ``restartPolicy``: the first restart at once, then
kubelet's back-off (10 s doubling to 300 s, reset after 10 min of running) shown as
``CrashLoopBackOff``; the previous instance is kept for ``logs --previous``, older ones are
removed. 5. Probes: ``exec`` probes run in the container (engine exec); ``httpGet`` and
``tcpSocket`` probes connect to the pod IP with sockets made inside the sandbox's network
namespace by a small helper child (``NetnsSockets``); readiness gates ``Ready``, a failed
liveness probe restarts the container (``Unhealthy`` then ``Killing``). ``grpc`` probes and
``startupProbe`` are not run (treated as passed). Probes run in the sync thread, bounded
by their ``timeoutSeconds``. 6. Status as a kubelet writes it (phase, conditions, container
statuses, podIP(s), hostIP(s) = the sandbox's address, startTime).

Deletion: a pod with ``deletionTimestamp`` (the API server marks bound pods while a kubelet
is attached) gets SIGTERM (``Killing`` events), SIGKILL at its grace period (a per-pod
deadline: other pods are not held up), then its containers and non-PVC volumes are removed
and ``finish_delete`` removes the object. Containers and volumes of pods that no longer
exist at all are removed the same way (also those found after a restart).

Not done: ``subPath`` mounts (``CreateContainerConfigError``), ``resourceFieldRef`` env,
ephemeral containers, ``fsGroup`` ownership of configMap/secret/PVC volumes, image pulls (the lab
has no registry), sidecar init containers
(``restartPolicy: Always`` on an init container is run as a plain init container).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Any, TypeVar

from runtime import errors
from runtime.dockerapi.engine import Engine
from runtime.kernel import children
from runtime.kernel.clock import parse_epoch
from runtime.kube import registry
from runtime.kube.apiserver.client import Client, node_user
from runtime.kube.machinery.apierrors import ApiError, bad_request
from runtime.kube.meta import Obj
from runtime.kube.node.containers import ContainerRuntime
from runtime.kube.node.podstate import (
    CONTAINER_NAME,
    INFRA,
    POD_NAME,
    POD_NAMESPACE,
    POD_UID,
    RESTART_COUNT,
    ConfigError,
    Instance,
    PodRuntime,
)
from runtime.kube.node.portforward import connect_in
from runtime.kube.node.prober import Prober
from runtime.kube.node.status import StatusManager
from runtime.kube.node.streaming import PodAttach, PodExec
from runtime.kube.node.volumes import VolumeManager
from runtime.loops import call_on_loop
from runtime.sandbox.cgexec import Placement

log = logging.getLogger("runtime.kube.node.kubelet")

T = TypeVar("T")

POD_SUBNET = "10.244.0.0/24"
SA_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
BACKOFF_INITIAL = 10.0
BACKOFF_MAX = 300.0
RETRY_PERIOD = 1.0  # a sync that failed somewhere (engine error, sandbox not made) runs again this soon
RESYNC_PERIOD = 60.0  # a full sync with nothing due and nothing changed (kubelet's --sync-frequency)

R = registry.BY_GR
PODS = R["pods"]


# -- the cluster side ------------------------------------------------------------------------------


class ClusterHost:
    """The kubelet's thread-safe window on one ``Cluster`` (see the module docstring)."""

    def __init__(self, cluster: Any, loop: asyncio.AbstractEventLoop | None) -> None:
        self.cluster = cluster
        self.loop = loop

    def _client(self, pod: Obj) -> Client:
        """The API client of the kubelet running ``pod``: field manager ``kubelet``, user
        ``system:node:<its node>`` (one kubelet runs every node of a multi-node lab cluster, so
        each write is made as the node the pod is bound to)."""
        return Client(self.cluster, "kubelet", node_user((pod.get("spec") or {}).get("nodeName") or ""))

    def call(self, fn: Callable[[], T]) -> T:
        """``fn()`` run on the cluster's loop (where its API server runs), its result; run at
        once when there is no loop (a cluster driven from one thread, as in tests)."""
        if self.loop is None:
            return fn()

        async def run() -> T:
            return fn()

        return call_on_loop(self.loop, run(), what="lab cluster", timeout=30)

    def attach(self, notify: Callable[[], None] | None) -> None:
        """Have the cluster call ``notify`` after every reconcile (None: stop)."""

        def do() -> None:
            self.cluster.kubelet_notify = notify

        self.call(do)

    def pods(self, node: str | Collection[str]) -> list[Obj]:
        """The pods bound to ``node`` (or to any of several: one kubelet runs every node of a
        multi-node lab cluster, the nodes being views of one sandbox)."""
        nodes = {node} if isinstance(node, str) else set(node)

        def do() -> list[Obj]:
            return [
                copy.deepcopy(p)
                for p in self.cluster.store.list(PODS.gr)
                if (p.get("spec") or {}).get("nodeName") in nodes
            ]

        return self.call(do)

    def list_all(self, gr: str) -> list[Obj]:
        """Every object of a resource (services, endpointslices, pods), copied."""

        def do() -> list[Obj]:
            return [copy.deepcopy(o) for o in self.cluster.store.list(gr)]

        return self.call(do)

    def get(self, gr: str, ns: str, name: str) -> Obj | None:
        """An object (configmaps, secrets, serviceaccounts, persistentvolumeclaims), copied."""

        def do() -> Obj | None:
            obj = self.cluster.store.get(gr, ns, name)
            return copy.deepcopy(obj) if obj is not None else None

        return self.call(do)

    def set_status(self, ns: str, name: str, uid: str, status: Obj) -> bool:
        """Replace the pod's status if it is still that pod (a pod recreated under the same
        name is not this one) and the status changed: the status manager's UpdateStatus, a PUT
        of pods/NAME/status at the resourceVersion read (field manager ``kubelet``), the one
        status path every component takes. A pod being deleted takes it too: it stays until
        ``finish_delete`` (its grace period is not over while the kubelet stops it)."""

        def do() -> bool:
            cur = self.cluster.store.get(PODS.gr, ns, name)
            if cur is None or cur["metadata"]["uid"] != uid or cur.get("status") == status:
                return False
            new = copy.deepcopy(cur)
            new["status"] = copy.deepcopy(status)
            # the reconcile below is the one this write causes (as in finish_delete)
            try:
                with self.cluster.quiet_writes():
                    out = self._client(cur).update_status(PODS, new)
            except ApiError as e:  # refused (e.g. invalid): the pod keeps its status, the next sync retries
                log.warning("kubelet: status of pod %s/%s refused: %s", ns, name, e.message)
                return False
            if out["metadata"].get("resourceVersion") == cur["metadata"].get("resourceVersion"):
                return False  # the same status once the server's defaults are filled in
            self.cluster.controllers.reconcile()
            return True

        return self.call(do)

    def event(self, pod: Obj, typ: str, reason: str, message: str) -> None:
        """An Event from the kubelet of the pod's node (source host and reportingInstance: the
        node), written with that kubelet's identity."""

        def do() -> None:
            node = (pod.get("spec") or {}).get("nodeName") or ""
            self.cluster.controllers.event(pod, typ, reason, message, "kubelet", host=node, client=self._client(pod))

        self.call(do)

    def finish_delete(self, ns: str, name: str, uid: str) -> None:
        """Remove the pod object once its containers are gone (if it is still that pod)."""

        def do() -> None:
            cur = self.cluster.store.get(PODS.gr, ns, name)
            if cur is None or cur["metadata"]["uid"] != uid:
                return
            # the status manager's DELETE with gracePeriodSeconds 0 and a UID precondition (a
            # finalizer still holds the object); the reconcile below is the one it causes
            with self.cluster.quiet_writes():
                self._client(cur).delete(PODS, ns, name, grace=0, uid=uid)
            self.cluster.controllers.reconcile()

        self.call(do)

    def service_account_token(self, ns: str, sa: str, ttl: float) -> str:
        """A bearer token of the pod's ServiceAccount (as the projected token volume holds)."""

        def do() -> str:
            return str(
                self.cluster.add_token(
                    f"system:serviceaccount:{ns}:{sa}",
                    ["system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated"],
                    sa=(ns, sa),
                    expires=time.time() + ttl,
                )
            )

        return self.call(do)


# -- pod I/O for the API server, netns sockets ------------------------------------------------------


class _LogStream:
    """``podio.LogStream`` over the engine's log iterator (``close`` cancels a follow)."""

    def __init__(self, chunks: Iterator[bytes], cancel: threading.Event) -> None:
        self._chunks = chunks
        self._cancel = cancel

    def read(self) -> bytes | None:
        if self._cancel.is_set():
            return None
        return next(self._chunks, None)

    def close(self) -> None:
        self._cancel.set()


class KubeletIO:
    """``Cluster.pod_io`` for a Kubelet: ``runtime/kube/apiserver/podio.py``'s ``PodIO``."""

    def __init__(self, kubelet: Kubelet) -> None:
        self.kubelet = kubelet

    def logs(
        self,
        ns: str,
        pod: str,
        container: str,
        *,
        follow: bool,
        tail_lines: int | None,
        previous: bool,
        timestamps: bool,
        since_seconds: int | None,
        since_time: str | None,
        limit_bytes: int | None,
    ) -> _LogStream:
        cancel = threading.Event()
        chunks = self.kubelet.logs(
            ns,
            pod,
            container,
            follow=follow,
            tail_lines=tail_lines,
            previous=previous,
            timestamps=timestamps,
            since_seconds=since_seconds,
            since_time=since_time,
            limit_bytes=limit_bytes,
            cancel=cancel,
        )
        return _LogStream(chunks, cancel)

    def exec(self, ns: str, pod: str, container: str, command: list[str], *, stdin: bool, tty: bool) -> PodExec:
        return self.kubelet.exec(ns, pod, container, command, stdin=stdin, tty=tty)

    def attach(self, ns: str, pod: str, container: str, *, stdin: bool, tty: bool) -> PodAttach:
        return self.kubelet.attach(ns, pod, container, stdin=stdin, tty=tty)

    def port_forward(self, ns: str, pod: str, port: int) -> socket.socket:
        return self.kubelet.port_forward(ns, pod, port)


class NetnsSockets:
    """TCP sockets made inside the sandbox's network namespace (httpGet/tcpSocket probes).

    A socket keeps the namespace it was created in, so a small helper child (kernel work
    happens in child processes) enters ``/proc/<sandbox pid>/ns/net`` once and hands out a
    fresh socket per request over a unix socket pair (SCM_RIGHTS); the kubelet connects it to
    the pod IP from its own thread. The child ends when its end of the pair closes."""

    def __init__(self, sandbox_pid: int, cgroup_path: str) -> None:
        self._pid = sandbox_pid
        # the helper works for this sandbox: it runs in the sandbox's cgroup (runtime.sandbox.cgexec)
        self._placement = Placement(cgroup_path)
        self._lock = threading.Lock()
        self._chan: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def _start(self) -> socket.socket:
        ours, theirs = socket.socketpair()
        try:
            self._proc = self._placement.popen(
                children.helper_argv(
                    "runtime.kube.node._netns_sockets", ["sandbox", str(self._pid), str(theirs.fileno())]
                ),
                env=children.helper_env(),
                pass_fds=(theirs.fileno(),),
                close_fds=True,
                start_new_session=True,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
            )
        finally:
            theirs.close()
        ours.settimeout(5)
        self._chan = ours
        return ours

    def socket(self) -> socket.socket:
        with self._lock:
            for _ in range(2):
                chan = self._chan or self._start()
                try:
                    chan.sendall(b"s")
                    _, fds, _, _ = socket.recv_fds(chan, 1, 1)
                except OSError:
                    fds = []
                if fds:
                    return socket.socket(fileno=fds[0])
                self.close()
            raise OSError("cannot make a socket in the sandbox's network namespace")

    def close(self) -> None:
        if self._chan is not None:
            self._chan.close()
            self._chan = None
        if self._proc is not None:
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None


# -- the kubelet -----------------------------------------------------------------------------------


class Kubelet(ContainerRuntime, VolumeManager, Prober, StatusManager):
    """Runs the pods bound to ``node`` on ``engine``; see the module docstring."""

    def __init__(
        self,
        host: ClusterHost,
        engine: Engine,
        node: str,
        *,
        also: Sequence[str] = (),
        pod_cidr_network: str = "kube-pods",
        cluster_dns: str | None = None,
        backoff_initial: float = BACKOFF_INITIAL,
        backoff_max: float = BACKOFF_MAX,
        retry_period: float = RETRY_PERIOD,
        resync_period: float = RESYNC_PERIOD,
    ) -> None:
        self.host = host
        self.engine = engine
        self.node = node
        # a multi-node cluster's other nodes: their pods run here too, on the same engine
        # (they share the sandbox's limits and network; the nodes are views, apiserver/provision.py _node)
        self.nodes = (node, *also)
        self.network = pod_cidr_network
        self.cluster_dns = cluster_dns  # kubelet's --cluster-dns (None: ClusterFirst acts as Default)
        self.after_sync: list[Callable[[], None]] = []  # run in the sync thread (the proxy's resync)
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.retry_period = retry_period
        self.resync_period = resync_period
        self.syncs = 0  # syncs run so far (what an idle node costs: tests and bench/kube_pods.py)
        self._pods: dict[str, PodRuntime] = {}
        self._live_uids: set[str] | None = None  # the pods of the last sync that removed orphan volumes
        self._sync_lock = threading.RLock()
        self._wake = threading.Event()
        self._due_lock = threading.Lock()
        self._due: float | None = None  # monotonic time a timer (probe, back-off, grace) falls due
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sockets = NetnsSockets(engine.ctx.pid, engine.ctx.cgroup_path)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self.host.attach(self.notify)
        self.engine.listeners.append(self._on_engine_event)
        self._wake.set()  # the first sync at once: adopt what runs, catch exits missed meanwhile
        self._thread = threading.Thread(target=self._loop, daemon=True, name=f"kubelet-{self.node}")
        self._thread.start()

    def notify(self) -> None:
        """Something changed (a cluster write, a container's exit): sync now."""
        self._wake.set()

    def _on_engine_event(self, action: str, _cid: str, labels: dict[str, str]) -> None:
        # an exit of a pod's container (crash, completion, SIGKILL at the grace deadline, the
        # student's ``docker kill``) is what PLEG would relist; the student's own containers
        # and removals (ours, mostly) wake nobody
        if action == "die" and POD_UID in labels:
            self._wake.set()

    def _wake_in(self, seconds: float) -> None:
        """Have the loop sync again within ``seconds`` (the earliest of all such requests)."""
        at = time.monotonic() + max(0.0, seconds)
        with self._due_lock:
            if self._due is None or at < self._due:
                self._due = at
        if self._thread is not None and threading.current_thread() is not self._thread:
            self._wake.set()  # a sync run from another thread (tests): the loop re-reads its wait

    def close(self) -> None:
        """Stop syncing (the pods' containers keep running: a new Kubelet adopts them)."""
        self._stop.set()
        self._wake.set()
        with contextlib.suppress(ValueError):
            self.engine.listeners.remove(self._on_engine_event)
        with contextlib.suppress(errors.RuntimeError):
            self.host.attach(None)
        if self._thread is not None:
            self._thread.join(timeout=60)
        self._sockets.close()

    def _loop(self) -> None:
        """Event-driven, as kubelet's sync loop is: a sync runs when the cluster changed
        (``notify`` from the controllers), a pod's container exited (the engine's ``die``), a
        timer fell due (a probe's period, a back-off's end, a grace deadline, a retry), or
        ``resync_period`` passed with none of these. An idle node costs no wake-ups."""
        while not self._stop.is_set():
            with self._due_lock:
                due = self._due
            wait = self.resync_period if due is None else max(0.0, min(due - time.monotonic(), self.resync_period))
            self._wake.wait(wait)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.sync()
            except Exception:
                log.exception("kubelet sync of node %s failed", self.node)
                self._wake_in(self.retry_period)
            for hook in self.after_sync:
                try:
                    hook()
                except Exception:
                    log.exception("kubelet of node %s: after-sync hook failed", self.node)

    # -- engine views --------------------------------------------------------------------------

    def _engine_containers(self) -> dict[str, list[dict[str, Any]]]:
        """Pod uid -> the engine's containers of that pod (list entries, labels included)."""
        out: dict[str, list[dict[str, Any]]] = {}
        for c in self.engine.list(all=True, filters={"label": [POD_UID]}):
            out.setdefault(c["Labels"][POD_UID], []).append(c)
        return out

    def _instances(self, cs: list[dict[str, Any]], name: str) -> list[Instance]:
        """The containers of one pod container name, oldest first."""
        found: list[Instance] = []
        for c in cs:
            if c["Labels"].get(CONTAINER_NAME) != name:
                continue
            try:
                info = self.engine.inspect(c["Id"])
            except errors.RuntimeError:
                continue
            st = info["State"]
            code = int(st["ExitCode"])
            if not st["Running"] and str(st["StartedAt"]).startswith("0001") and code == 0:
                code = 128  # created but its start failed: never a success
            found.append(
                Instance(
                    id=c["Id"],
                    restarts=int(c["Labels"].get(RESTART_COUNT, "0") or 0),
                    running=bool(st["Running"]),
                    exit_code=code,
                    started=str(st["StartedAt"]),
                    finished=str(st["FinishedAt"]),
                    oom=bool(st["OOMKilled"]),
                    image=str(info["Image"]),
                )
            )
        found.sort(key=lambda i: i.restarts)
        return found

    def _ensure_network(self) -> None:
        if any(n["Name"] == self.network for n in self.engine.networks()):
            return
        body = {"Name": self.network, "IPAM": {"Config": [{"Subnet": POD_SUBNET}]}}
        with contextlib.suppress(errors.Conflict):
            self.engine.network_create(body, internal=True)

    # -- sync ------------------------------------------------------------------------------------

    def sync(self) -> None:
        """Converge the engine on the node's pods, and set the timer of what falls due next."""
        with self._sync_lock:
            self.syncs += 1
            with self._due_lock:
                self._due = None  # this sync looks at everything: it sets the timers again
            pods = self.host.pods(self.nodes)
            by_uid = self._engine_containers()
            seen: set[str] = set()
            for pod in pods:
                uid = pod["metadata"]["uid"]
                seen.add(uid)
                try:
                    if pod["metadata"].get("deletionTimestamp"):
                        self._terminate(pod, uid, by_uid.get(uid, []))
                    else:
                        self._sync_pod(pod, by_uid.get(uid, []))
                except Exception:
                    log.exception("kubelet: pod %s/%s", pod["metadata"].get("namespace"), pod["metadata"]["name"])
                    self._wake_in(self.retry_period)
            for uid, cs in by_uid.items():
                if uid not in seen:
                    try:
                        self._terminate(None, uid, cs)
                    except Exception:
                        log.exception("kubelet: removing the containers of deleted pod %s", uid)
                        self._wake_in(self.retry_period)
            gone = [uid for uid in self._pods if uid not in seen and uid not in by_uid]
            for uid in gone:
                self._pods.pop(uid, None)
            # listing every volume each second is wasted I/O: only when a pod came or went
            # (or the first sync), and again until every orphan is gone
            if seen != self._live_uids:
                if self._remove_orphan_volumes(seen):
                    self._live_uids = seen
                else:
                    self._wake_in(self.retry_period)  # one still in use: again until every orphan is gone

    def _runtime(self, pod: Obj) -> PodRuntime:
        meta = pod["metadata"]
        rt = self._pods.get(meta["uid"])
        if rt is None:
            rt = self._pods[meta["uid"]] = PodRuntime(meta["uid"], meta["namespace"], meta["name"])
        rt.grace = int((pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))
        return rt

    def _once(self, rt: PodRuntime, pod: Obj, typ: str, reason: str, message: str) -> None:
        key = f"{reason}\0{message}"
        if key not in rt.said:
            rt.said.add(key)
            self.host.event(pod, typ, reason, message)

    def _sync_pod(self, pod: Obj, cs: list[dict[str, Any]]) -> None:
        rt = self._runtime(pod)
        status = pod.get("status") or {}
        if status.get("phase") in ("Succeeded", "Failed"):
            return  # terminal: nothing runs again
        spec = pod.get("spec") or {}
        rt.waiting = {}
        ids = {c["Id"] for c in cs}
        rt.probes = {cid: st for cid, st in rt.probes.items() if cid in ids}
        infra = self._ensure_infra(pod, rt, cs)
        pod_ip = ""
        if infra is not None:
            nets = self.engine.inspect(infra)["NetworkSettings"]["Networks"]
            pod_ip = str((nets.get(self.network) or {}).get("IPAddress") or "")
        if infra is not None and not rt.volumes_ready:
            try:
                self._prepare_volumes(pod)
                rt.volumes_ready = True
            except ConfigError as exc:
                self._once(rt, pod, "Warning", "FailedMount", str(exc))
        policy = spec.get("restartPolicy", "Always")
        inits = spec.get("initContainers") or []
        initialized = True
        failed_init = False
        if infra is not None and rt.volumes_ready:
            for c in inits:
                inst = self._instances(cs, c["name"])
                cur = inst[-1] if inst else None
                if cur is not None and not cur.running and cur.exit_code == 0:
                    continue
                initialized = False
                if cur is not None and cur.running:
                    break
                if cur is not None and policy == "Never":
                    failed_init = True
                    break
                self._maybe_start(pod, rt, c, inst, infra, pod_ip, init=True)
                break
            if initialized:
                for c in spec.get("containers") or []:
                    inst = self._instances(cs, c["name"])
                    cur = inst[-1] if inst else None
                    if cur is None:
                        self._maybe_start(pod, rt, c, inst, infra, pod_ip, init=False)
                    elif cur.running:
                        self._probe(pod, rt, c, cur, pod_ip)
                    elif policy == "Always" or (policy == "OnFailure" and cur.exit_code != 0):
                        self._maybe_start(pod, rt, c, inst, infra, pod_ip, init=False)
        by_uid = self._engine_containers().get(rt.uid, [])
        new_status = self._status(pod, rt, by_uid, infra, pod_ip, failed_init)
        if new_status["phase"] in ("Succeeded", "Failed") and infra is not None:
            with contextlib.suppress(errors.RuntimeError):  # the sandbox of a finished pod stops
                self.engine.kill(infra)
        self.host.set_status(rt.ns, rt.name, rt.uid, new_status)

    # -- deletion ------------------------------------------------------------------------------

    def _terminate(self, pod: Obj | None, uid: str, cs: list[dict[str, Any]]) -> None:
        """SIGTERM now, SIGKILL at the grace deadline, then remove containers and volumes."""
        rt = self._pods.get(uid)
        if rt is None:
            labels = cs[0]["Labels"] if cs else {}
            meta = pod["metadata"] if pod else {}
            rt = PodRuntime(
                uid, meta.get("namespace", labels.get(POD_NAMESPACE, "")), meta.get("name", labels.get(POD_NAME, ""))
            )
            rt.grace = 0 if pod is None else 30
            self._pods[uid] = rt
        if pod is not None:
            rt.grace = int(pod["metadata"].get("deletionGracePeriodSeconds", rt.grace))
        apps = [c for c in cs if c["Labels"].get(CONTAINER_NAME) != INFRA and c["State"] == "running"]
        if rt.kill_deadline is None:
            rt.kill_deadline = time.time() + rt.grace
            for c in apps:
                if pod is not None:
                    self.host.event(pod, "Normal", "Killing", f"Stopping container {c['Labels'][CONTAINER_NAME]}")
                with contextlib.suppress(errors.RuntimeError):
                    self.engine.kill(c["Id"], signal="SIGTERM")
        if apps and time.time() < rt.kill_deadline:
            self._wake_in(rt.kill_deadline - time.time())  # SIGKILL then (an exit before wakes us too)
            return
        for c in cs:
            with contextlib.suppress(errors.RuntimeError):
                self.engine.remove(c["Id"], force=True)
        for v in self.engine.volumes():
            if (v.get("Labels") or {}).get(POD_UID) == uid:
                with contextlib.suppress(errors.RuntimeError):
                    self.engine.volume_remove(v["Name"])
        if pod is not None:
            self.host.finish_delete(rt.ns, rt.name, uid)
        self._pods.pop(uid, None)

    # -- logs and exec (served by the API server's pods/log and pods/exec) ------------------------

    def _find(self, ns: str, pod: str, container: str | None) -> tuple[Obj, str, list[Instance]]:
        p = next(
            (
                x
                for x in self.host.pods(self.nodes)
                if x["metadata"]["name"] == pod and x["metadata"]["namespace"] == ns
            ),
            None,
        )
        if p is None:
            raise ApiError(404, "NotFound", f'pods "{pod}" not found', {"name": pod, "kind": "pods"})
        spec = p.get("spec") or {}
        names = [c["name"] for c in spec.get("containers") or []]
        init_names = [c["name"] for c in spec.get("initContainers") or []]
        if not container:
            if len(names) != 1:
                msg = f"a container name must be specified for pod {pod}, choose one of: [{' '.join(names)}]"
                if init_names:
                    msg += f" or one of the init containers: [{' '.join(init_names)}]"
                raise bad_request(msg)
            container = names[0]
        if container not in names and container not in init_names:
            raise bad_request(f"container {container} is not valid for pod {pod}")
        cs = self._engine_containers().get(p["metadata"]["uid"], [])
        return p, container, self._instances(cs, container)

    def _waiting_reason(self, p: Obj, container: str) -> str:
        st = p.get("status") or {}
        for s in (st.get("containerStatuses") or []) + (st.get("initContainerStatuses") or []):
            if s.get("name") == container:
                return str(((s.get("state") or {}).get("waiting") or {}).get("reason") or "ContainerCreating")
        return "ContainerCreating"

    def logs(
        self,
        ns: str,
        pod: str,
        container: str | None,
        *,
        follow: bool = False,
        tail_lines: int | None = None,
        previous: bool = False,
        timestamps: bool = False,
        since_seconds: int | None = None,
        limit_bytes: int | None = None,
        since_time: str | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[bytes]:
        """``kubectl logs``: the container's output (stdout and stderr interleaved);
        ``since_time`` is RFC 3339; ``cancel`` ends a follow (within half a second)."""
        p, name, inst = self._find(ns, pod, container)
        if previous:
            if len(inst) < 2:
                raise bad_request(f'previous terminated container "{name}" in pod "{pod}" not found')
            target = inst[-2]
        else:
            if not inst:
                raise bad_request(
                    f'container "{name}" in pod "{pod}" is waiting to start: {self._waiting_reason(p, name)}'
                )
            target = inst[-1]
        since = time.time() - since_seconds if since_seconds else (parse_epoch(since_time) if since_time else 0.0)
        chunks = self.engine.logs(
            target.id,
            follow=follow and not previous,
            stdout=True,
            stderr=True,
            since=since,
            tail=tail_lines,
            timestamps=timestamps,
            cancel=cancel,
        )

        def gen() -> Iterator[bytes]:
            left = limit_bytes
            for _, data in chunks:
                if left is not None:
                    if left <= 0:
                        return
                    data = data[:left]
                    left -= len(data)
                yield data

        return gen()

    def exec(self, ns: str, pod: str, container: str | None, command: list[str], *, stdin: bool, tty: bool) -> PodExec:
        """``kubectl exec``: a process in the container (the engine's exec)."""
        _, name, inst = self._find(ns, pod, container)
        if not inst or not inst[-1].running:
            raise bad_request(f'unable to upgrade connection: container not found ("{name}")')
        if not command:
            raise bad_request("you must specify at least one command for the container")
        try:
            eid = self.engine.exec_create(
                inst[-1].id,
                {"Cmd": command, "AttachStdin": stdin, "AttachStdout": True, "AttachStderr": not tty, "Tty": tty},
            )
            stream = self.engine.exec_start(eid, detach=False, tty=tty)
        except errors.RuntimeError as exc:
            raise ApiError(
                500, "InternalError", f"Internal error occurred: error executing command in container: {exc}"
            ) from None
        assert stream is not None
        return PodExec(self.engine, eid, stream)

    def port_forward(self, ns: str, pod: str, port: int) -> socket.socket:
        """``kubectl port-forward``: a TCP socket connected to ``127.0.0.1:port`` *in the pod's
        own network namespace*, as the real kubelet dials it (node/portforward.py). The namespace is
        that of a running container of the pod, opened here by the engine's pid and checked
        against the process's start time after opening (a reused pid cannot redirect it); a
        helper child enters it only to make the socket. Nothing here comes from the request
        but ``port``, so nothing outside the pod can be reached."""
        from runtime.procfs import proc_start

        p = next(
            (
                x
                for x in self.host.pods(self.nodes)
                if x["metadata"]["name"] == pod and x["metadata"]["namespace"] == ns
            ),
            None,
        )
        if p is None:
            raise ApiError(404, "NotFound", f'pods "{pod}" not found', {"name": pod, "kind": "pods"})
        ns_fd = -1
        for c in self._engine_containers().get(p["metadata"]["uid"], []):
            try:
                pid, pid_start = self.engine.init_process(c["Id"])  # the engine's own record
            except errors.RuntimeError:
                continue
            if not pid or not pid_start:
                continue
            try:
                fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue
            if proc_start(pid) == pid_start:
                ns_fd = fd
                break
            os.close(fd)
        if ns_fd < 0:
            raise bad_request(f"unable to do port forwarding: pod {pod} has no running container")
        ours, theirs = socket.socketpair()
        try:
            proc = Placement(self.engine.ctx.cgroup_path).popen(
                children.helper_argv("runtime.kube.node._netns_sockets", ["pod", str(ns_fd), str(theirs.fileno())]),
                env=children.helper_env(),
                pass_fds=(ns_fd, theirs.fileno()),
                close_fds=True,
                start_new_session=True,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
            )
        finally:
            theirs.close()
            os.close(ns_fd)
        try:
            ours.settimeout(10)
            _, fds, _, _ = socket.recv_fds(ours, 1, 1)
        except OSError:
            fds = []
        finally:
            ours.close()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if not fds:
            raise OSError("cannot make a socket in the pod's network namespace")
        sock = socket.socket(fileno=fds[0])
        try:
            return connect_in(sock, port)
        except OSError as exc:
            why = str(exc.strerror or exc)
            why = why[:1].lower() + why[1:]  # Go's syscall error texts: "connection refused"
            raise OSError(exc.errno, f"dial tcp4 127.0.0.1:{port}: connect: {why}") from None

    def attach(self, ns: str, pod: str, container: str | None, *, stdin: bool, tty: bool) -> PodAttach:
        """``kubectl attach``: the container's own process (its output from now on)."""
        _, name, inst = self._find(ns, pod, container)
        if not inst or not inst[-1].running:
            raise bad_request(f'unable to upgrade connection: container not found ("{name}")')
        cid = inst[-1].id
        stream = self.engine.attach(cid, stdin=stdin, stdout=True, stderr=True, logs=False, stream=True)
        return PodAttach(self.engine, cid, stream)
