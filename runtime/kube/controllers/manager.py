"""The controllers of kube-controller-manager, run to quiescence after every write.

A real control plane runs these loops in kube-controller-manager and reacts
within milliseconds; here ``reconcile()`` runs synchronously after each
mutating request, so a client never observes a half-reconciled cluster
(e.g. ``kubectl create deployment`` then ``kubectl get pods`` always shows the
pods). Each loop is level-triggered (it looks at the whole state, not at the
event), bounded in passes, and writes only when something differs.

Rollouts follow kube-controller-manager: the Deployment controller is a port of
pkg/controller/deployment (rolling.go, recreate.go, sync.go, progress.go): the new
ReplicaSet grows by at most maxSurge over replicas, old ones shrink (oldest first,
unhealthy replicas first) keeping replicas - maxUnavailable available pods, Recreate
waits for every old pod to be gone, paused deployments only scale proportionally, and
the Available/Progressing conditions, events and revision bookkeeping are kube's, so
``kubectl rollout status|history|undo|pause|resume`` behave as on a real cluster.
Availability comes from pods' Ready condition as the kubelet (node/kubelet.py) or anyone
writing the status subresource sets it; with no kubelet no pod is ever ready and a
rollout waits, as it would on a cluster without nodes. Controllers delete pods through
``Cluster.delete`` so that, with a kubelet, they terminate gracefully. StatefulSets roll
from the highest ordinal one Running-and-Ready pod at a time; DaemonSets honour
maxUnavailable. Clock-driven steps (progressDeadlineSeconds, minReadySeconds) run on
the server's periodic tick (``has_timers``).
"""

from __future__ import annotations

import datetime
import time

from runtime.kernel.clock import parse_time
from runtime.kube import scheduler
from runtime.kube.controllers import apiservice, clusterroleaggregation, nodelifecycle, nodetaints, podgc
from runtime.kube.controllers.apiextensions import CRDController
from runtime.kube.controllers.base import (
    DEPLOY,
    PODS,
    RS,
    R,
    controlled_by,
    get_cond,
    has_deadline,
    ready_since,
    status_int,
)
from runtime.kube.controllers.cronjob import CronJobController
from runtime.kube.controllers.daemonset import DaemonSetController
from runtime.kube.controllers.deployment import DeploymentController
from runtime.kube.controllers.disruption import DisruptionController
from runtime.kube.controllers.endpoints import EndpointsController
from runtime.kube.controllers.endpointslice import EndpointSliceController
from runtime.kube.controllers.garbagecollector import GarbageCollector
from runtime.kube.controllers.job import JobController
from runtime.kube.controllers.namespace import NamespaceController
from runtime.kube.controllers.podautoscaler import HorizontalPodAutoscalerController
from runtime.kube.controllers.replicaset import ReplicaSetController
from runtime.kube.controllers.resourcequota import ResourceQuotaController
from runtime.kube.controllers.statefulset import StatefulSetController
from runtime.kube.controllers.volume import PersistentVolumeController
from runtime.kube.machinery.cron import CronError, Schedule


class Controllers(
    NamespaceController,
    CRDController,
    GarbageCollector,
    DeploymentController,
    StatefulSetController,
    DaemonSetController,
    CronJobController,
    PersistentVolumeController,
    HorizontalPodAutoscalerController,
    ResourceQuotaController,
    DisruptionController,
    JobController,
    EndpointsController,
    EndpointSliceController,
    ReplicaSetController,
):
    """kube-controller-manager: one class per controller (controllers/<name>.py, as
    pkg/controller/<name>), all sharing ControllerBase; ``reconcile`` runs them in order."""

    def reconcile(self) -> None:
        # as kube-controller-manager (a fresh RequestState), whatever request or thread runs this
        with self.c.acting():
            self._reconcile()

    def _reconcile(self) -> None:
        self.sched_queue.budget = scheduler.MAX_PER_PASS  # pods the scheduler tries this reconcile
        for _ in range(10):
            before = self.c.store.rv
            self._crds()
            apiservice.reconcile(self)
            self._namespaces()
            clusterroleaggregation.aggregate(self.c, self.client)
            self._garbage_collect()
            self._deployments()
            self._replicasets()
            self._replication_controllers()
            self._cronjobs()
            self._jobs()
            self._statefulsets()
            nodetaints.reconcile(self)
            nodelifecycle.reconcile(self)
            podgc.reconcile(self)  # orphaned pods of deleted Nodes, unscheduled terminating ones
            self._daemonsets()
            scheduler.schedule(
                self.c.store,
                self.sched_queue,
                self.scheduler_client,
                self.recorder(scheduler.SCHEDULER, self.scheduler_client),
            )
            self._endpoints()
            self._endpointslices()
            self._volumes()
            self._hpas()
            self._pdbs()
            self._quotas()
            if self.c.store.rv == before:
                break
        if self.c.kubelet_notify is not None:  # the node's kubelet (node/kubelet.py) syncs its pods
            self.c.kubelet_notify()
        if self.c.network_notify is not None:  # the NetworkPolicy agent (node/netpol.py) re-renders
            self.c.network_notify()

    def has_timers(self) -> bool:
        """Whether clock-driven work is due now (the server's periodic tick asks every cluster,
        and reconciles those that answer yes). What falls due is computed once per change of
        the store (``next_due``), so an idle cluster costs one comparison per tick; a cluster
        with a CronJob is reconciled at its scheduled minutes, not on every tick."""
        rv = self.c.store.rv
        if rv != self._due_rv:
            self._due_rv, self._due_at = rv, self.next_due()
        if self._due_at is None or self._due_at > time.time():
            return False
        self._due_rv = -1  # look again after the reconcile this answer causes
        return True

    def next_due(self) -> float | None:
        """The earliest unix time at which the clock alone changes what a controller does: a
        CronJob's next scheduled minute, a rollout's progressDeadlineSeconds, a ready pod of a
        ReplicaSet becoming available after minReadySeconds (None: nothing depends on the clock)."""
        due: list[float] = []
        for cj in self.c.store.list(R["cronjobs.batch"].gr):
            meta, spec = cj["metadata"], cj.get("spec") or {}
            if meta.get("deletionTimestamp") or spec.get("suspend"):
                continue
            try:
                sched = Schedule(spec.get("schedule", ""), spec.get("timeZone"))
            except CronError:
                continue
            st = cj.get("status") or {}
            last = parse_time(st.get("lastScheduleTime")) or parse_time(meta.get("creationTimestamp"))
            nxt = sched.next_after(last or datetime.datetime.now(datetime.UTC))
            if nxt is not None:
                due.append(nxt.timestamp())
        for d in self.c.store.list(DEPLOY.gr):
            cond = get_cond(d.get("status") or {}, "Progressing")
            reason = (cond or {}).get("reason")
            if (
                has_deadline(d)
                and not d["spec"].get("paused")
                and reason in ("ReplicaSetUpdated", "NewReplicaSetCreated", "FoundNewReplicaSet", "DeploymentResumed")
            ):
                since = parse_time((cond or {}).get("lastUpdateTime"))
                due.append(since.timestamp() + int(d["spec"]["progressDeadlineSeconds"]) if since else time.time())
        for rs in self.c.store.list(RS.gr):
            min_ready = int(rs["spec"].get("minReadySeconds") or 0)
            if min_ready and status_int(rs, "readyReplicas") > status_int(rs, "availableReplicas"):
                # a ready pod counts as available min_ready after it became ready (already
                # past: the status lags, due at once, as the old every-tick check was)
                pods = [p for p in self.c.store.list(PODS.gr, rs["metadata"]["namespace"]) if controlled_by(p, rs)]
                ready = [ready_since(p) for p in pods]
                due.extend(since + min_ready for since in ready if since is not None)
                if not any(since is not None for since in ready):
                    due.append(time.time())
        due.extend(nodelifecycle.next_due(self))  # Leases running out, tolerationSeconds passing
        due.extend(podgc.next_due(self))  # a deleted Node's quarantine ending
        queued = self.sched_queue.next_due()  # a pending pod's backoff, or pods left for the next pass
        if queued is not None:
            due.append(queued)
        return min(due) if due else None
