"""What every controller shares: the manager's state (its Cluster, the scheduler's queue), writes
through the API (``_create``, ``_create_pod``, ``delete_pod``), events, pod templates and
ControllerRevision history (pkg/controller/history), and the helpers of more than one controller.
"""

from __future__ import annotations

import copy
import json
import secrets
import time
from typing import TYPE_CHECKING, Any

from runtime.kernel.clock import now_ts, parse_time
from runtime.kube import registry, scheduler
from runtime.kube.apiserver.client import CONTROLLER_MANAGER, SCHEDULER, Client
from runtime.kube.machinery.apierrors import ApiError
from runtime.kube.meta import Obj
from runtime.kube.registry import ResourceDef

if TYPE_CHECKING:
    from runtime.kube.apiserver.cluster import Cluster


CHANGE_CAUSE = "kubernetes.io/change-cause"
ALNUM = "bcdfghjklmnpqrstvwxz2456789"
R = registry.BY_GR
PODS = R["pods"]
RS = R["replicasets.apps"]
RC = R["replicationcontrollers"]
DEPLOY = R["deployments.apps"]
NS = R["namespaces"]
SVC = R["services"]
EVENTS = R["events"]
CR = R["controllerrevisions.apps"]
POD_REVISION = "controller-revision-hash"


def fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def _go_sorted(v: Any) -> Any:
    """A JSON value with map keys in the order Go's encoding/json writes them (sorted)."""
    if isinstance(v, dict):
        return {k: _go_sorted(v[k]) for k in sorted(v)}
    if isinstance(v, list):
        return [_go_sorted(x) for x in v]
    return v


def history_patch(template: Obj) -> Obj:
    """ControllerRevision.data of a StatefulSet/DaemonSet: a strategic patch replacing the template.

    kube 1.37 omits a zero ``creationTimestamp``; dropping our ``null`` keeps the bytes equal to
    kubectl's own encoding of the template.
    """
    t = copy.deepcopy(template)
    if (t.get("metadata") or {}).get("creationTimestamp", "") is None:
        del t["metadata"]["creationTimestamp"]
    t["$patch"] = "replace"
    out: Obj = _go_sorted({"spec": {"template": t}})
    return out


def _data_hash(data: Obj, collisions: int) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    if collisions:
        raw += str(collisions).encode()
    return "".join(ALNUM[ord(c) % len(ALNUM)] for c in str(fnv32a(raw)))


def owner_ref(obj: Obj, block: bool = True) -> Obj:
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": block,
    }


def controlled_by(obj: Obj, owner: Obj) -> bool:
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("controller") and ref.get("uid") == owner["metadata"]["uid"]:
            return True
    return False


class ControllerBase:
    def __init__(self, cluster: Cluster) -> None:
        self.c = cluster
        self.create_error = ""  # why the last _create_pod failed ("" when it succeeded)
        # has_timers' memo: the store's resourceVersion it was computed at, and what falls due
        self._due_rv = -1
        self._due_at: float | None = None
        self.sched_queue = scheduler.Queue()  # pods that did not fit, and their backoff
        # the API clients the controllers and the scheduler write through (apiserver/client.py)
        self.client = Client(cluster, "kube-controller-manager", CONTROLLER_MANAGER)
        self.scheduler_client = Client(cluster, "kube-scheduler", SCHEDULER)

    def _def_of(self, gr: str) -> ResourceDef | None:
        """The ResourceDef of a stored group-resource, built-in or of an established CRD."""
        return R.get(gr) or next((d for d in self.c.custom_defs() if d.gr == gr), None)

    def _create(self, rdef: ResourceDef, obj: Obj) -> Obj:
        return self.client.create(rdef, obj)

    def _create_pod(self, owner: Obj, pod: Obj, component: str, prefix: str = "Error creating: ") -> Obj | None:
        """Create a pod for a controller; admission may refuse it (quota, LimitRange).

        A refusal becomes the controller's ``FailedCreate`` warning event, recorded once per
        distinct reason so the reconcile loop settles instead of logging every pass; its
        message stays in ``create_error`` (the ReplicaSet's ReplicaFailure condition).
        """
        self.create_error = ""
        try:
            return self._create(PODS, pod)
        except ApiError as e:
            self.create_error = e.message
            reason = e.message.split(" is forbidden: ", 1)[-1]
            for ev in self.c.store.list(EVENTS.gr, owner["metadata"]["namespace"]):
                if (
                    ev.get("reason") == "FailedCreate"
                    and (ev.get("involvedObject") or {}).get("uid") == owner["metadata"]["uid"]
                    and str(ev.get("message", "")).endswith(reason)
                ):
                    return None
            self.event(owner, "Warning", "FailedCreate", prefix + e.message, component)
            return None

    def event(
        self,
        obj: Obj,
        typ: str,
        reason: str,
        message: str,
        component: str,
        *,
        host: str = "",
        client: Client | None = None,
    ) -> None:
        """Record an Event as ``component`` (its source and reportingComponent; ``host`` the
        node of a node agent, also its reportingInstance), written through ``client`` (the
        component's own, so the write carries its identity; the controller manager's when None)."""
        meta = obj["metadata"]
        ns = meta.get("namespace") or "default"
        ts = now_ts()
        ev: Obj = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{meta['name']}.{secrets.token_hex(8)}",
                "namespace": ns,
            },
            "involvedObject": {
                "apiVersion": obj["apiVersion"],
                "kind": obj["kind"],
                "name": meta["name"],
                "namespace": meta.get("namespace", ""),
                "uid": meta["uid"],
                "resourceVersion": meta.get("resourceVersion", ""),
            },
            "reason": reason,
            "message": message,
            "source": {"component": component, **({"host": host} if host else {})},
            "firstTimestamp": ts,
            "lastTimestamp": ts,
            "count": 1,
            "type": typ,
            "eventTime": None,
            "reportingComponent": component,
            "reportingInstance": host,
        }
        if not meta.get("namespace"):
            del ev["involvedObject"]["namespace"]
        if self.c.store.get(NS.gr, "", ns) is None:
            return
        try:
            (client or self.client).create(EVENTS, ev)
        except ApiError:  # e.g. a count/events quota: the event is dropped, as a recorder drops it
            return

    def recorder(self, component: str, client: Client | None = None) -> Recorder:
        """An event recorder (scheduler.EventRecorder) reporting as ``component``, writing
        through ``client`` (the controller manager's when None)."""
        return Recorder(self, component, client)

    def _new_pod(self, owner: Obj, name: str | None, extra_labels: dict[str, str]) -> Obj:
        tmpl = owner["spec"].get("template") or {}
        meta = copy.deepcopy(tmpl.get("metadata") or {})
        meta.pop("creationTimestamp", None)
        meta["labels"] = {**(meta.get("labels") or {}), **extra_labels}
        if name:
            meta["name"] = name
        else:
            meta["generateName"] = owner["metadata"]["name"] + "-"
        meta["namespace"] = owner["metadata"]["namespace"]
        meta["ownerReferences"] = [owner_ref(owner)]
        return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": copy.deepcopy(tmpl.get("spec") or {})}

    @staticmethod
    def _ready(p: Obj) -> bool:
        conds = (p.get("status") or {}).get("conditions") or []
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)

    def _sync_history(self, owner: Obj, hash_label: str, live_revisions: set[str]) -> tuple[Obj, str]:
        """The owner's update revision and its hash, creating or renumbering it as controller history does.

        ``data`` is the patch the controllers store (``{"spec":{"template":{...,"$patch":"replace"}}}``)
        with Go's map key order, so ``kubectl rollout undo`` (which compares its own encoding of the
        live object's template with ``data`` byte for byte) sees "already matches" as on a real
        cluster. An equal older revision is reused with the next revision number, so undo to
        revision 1 of [1, 2] gives history [2, 3]. Revisions beyond revisionHistoryLimit that no
        live pod runs are deleted, oldest first.
        """
        meta, spec = owner["metadata"], owner["spec"]
        ns, name = meta["namespace"], meta["name"]
        data = history_patch(spec["template"])
        history = sorted(
            (r for r in self.c.store.list(CR.gr, ns) if controlled_by(r, owner)),
            key=lambda r: int(r.get("revision", 0)),
        )
        next_rev = int(history[-1].get("revision", 0)) + 1 if history else 1
        equal = [r for r in history if r.get("data") == data]
        if equal:
            update = equal[-1]
            if update is not history[-1]:

                def renumber(n: Obj) -> bool:
                    n["revision"] = next_rev
                    return True

                update = self.client.modify(CR, ns, update["metadata"]["name"], renumber) or update
        else:
            collisions = int((owner.get("status") or {}).get("collisionCount", 0))
            h = _data_hash(data, collisions)
            labels = {**((spec["template"].get("metadata") or {}).get("labels") or {}), hash_label: h}
            cr: Obj = {
                "apiVersion": "apps/v1",
                "kind": "ControllerRevision",
                "metadata": {
                    "name": f"{name[:223]}-{h}",
                    "namespace": ns,
                    "labels": labels,
                    "ownerReferences": [owner_ref(owner)],
                },
                "data": data,
                "revision": next_rev,
            }
            if meta.get("annotations"):
                cr["metadata"]["annotations"] = dict(meta["annotations"])
            update = self._create(CR, cr)
        h = (update["metadata"].get("labels") or {}).get(hash_label, "")
        keep = {update["metadata"]["name"], *live_revisions}
        history = sorted(
            (r for r in self.c.store.list(CR.gr, ns) if controlled_by(r, owner)),
            key=lambda r: int(r.get("revision", 0)),
        )
        spare = [r for r in history if r["metadata"]["name"] not in keep]
        limit = int(spec.get("revisionHistoryLimit", 10))
        for r in spare[: max(0, len(spare) - limit)]:
            self.client.delete(CR, ns, r["metadata"]["name"], uid=r["metadata"]["uid"])
        return update, h

    def delete_pod(self, ns: str, name: str) -> None:
        """Delete as a controller does: gracefully (the kubelet stops it) when a kubelet runs.

        ``Cluster.delete`` marks the cluster dirty for a reconcile after the request; this runs
        inside the reconcile loop, which goes on until nothing changes, so the mark is undone.
        """
        with self.c.quiet_writes():
            try:
                self.c.delete(PODS, ns, name)
            except ApiError:
                return


def epoch(ts: Any) -> float:
    t = parse_time(ts) if isinstance(ts, str) else None
    return t.timestamp() if t is not None else 0.0


def ready_since(p: Obj) -> float | None:
    for c in (p.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return epoch(c.get("lastTransitionTime")) if c.get("status") == "True" else None
    return None


def pod_available(p: Obj, min_ready: int) -> bool:
    """podutil.IsPodAvailable: ready for at least minReadySeconds."""

    since = ready_since(p)
    return since is not None and (min_ready == 0 or since + min_ready <= time.time())


def job_finished(j: Obj) -> str:
    for c in (j.get("status") or {}).get("conditions") or []:
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return str(c["type"])
    return ""


def pct(v: Any, total: int, round_up: bool) -> int:
    if isinstance(v, int):
        return v
    s = str(v)
    if s.endswith("%"):
        x = int(s[:-1]) * total
        return -(-x // 100) if round_up else x // 100
    return int(s)


def status_int(obj: Obj, key: str) -> int:
    return int((obj.get("status") or {}).get(key, 0))


def has_deadline(d: Obj) -> bool:
    v = d["spec"].get("progressDeadlineSeconds")
    return v is not None and int(v) != 2**31 - 1


def get_cond(st: Obj, typ: str) -> Obj | None:
    return next((c for c in st.get("conditions") or [] if c.get("type") == typ), None)


class Recorder:
    """Records Events as one component (client-go's EventRecorder for that component)."""

    def __init__(self, ctl: ControllerBase, component: str, client: Client | None = None) -> None:
        self.ctl = ctl
        self.component = component
        self.client = client

    def event(self, obj: Obj, typ: str, reason: str, message: str) -> None:
        self.ctl.event(obj, typ, reason, message, self.component, client=self.client)
