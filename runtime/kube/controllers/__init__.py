"""kube-controller-manager: one module per controller, as pkg/controller/<name>.

``manager.Controllers`` combines them and runs them to quiescence after every write (so a
client never observes a half-reconciled cluster), and on the server's 10 s tick when a
clock-driven step falls due (``has_timers``/``next_due``: a CronJob's next minute, a
progress deadline, minReadySeconds, a node's Lease). Each controller is level-triggered,
bounded in passes, and writes only when something differs. ``base.ControllerBase`` holds
what they share (the Cluster, events, pod creation through the API's admission, pod
templates, ControllerRevision history).

Modules: namespace, garbagecollector, deployment, replicaset (+ReplicationController),
statefulset, daemonset, job, cronjob, endpoints, endpointslice, volume (PV/PVC binding,
dynamic provisioning, protection finalizers), podautoscaler, disruption, resourcequota,
clusterroleaggregation, apiservice (kube-aggregator's autoregister/availability),
apiextensions (CRD status and cleanup), nodelifecycle (Lease-based node health and
taint-based eviction), nodetaints (cordon <-> unschedulable taint), podgc.
"""

from __future__ import annotations
