"""The Deployment controller, a port of pkg/controller/deployment (rolling.go, recreate.go,
sync.go, progress.go): see manager.py's docstring for the rollout rules it follows.
"""

from __future__ import annotations

import copy
import datetime
import json
from collections.abc import Sequence

from runtime.kernel.clock import now_ts, parse_time
from runtime.kube.controllers.base import (
    ALNUM,
    DEPLOY,
    PODS,
    RS,
    ControllerBase,
    controlled_by,
    fnv32a,
    get_cond,
    has_deadline,
    owner_ref,
    pct,
    status_int,
)
from runtime.kube.meta import Obj

REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
HASH_LABEL = "pod-template-hash"


def template_hash(template: Obj, collisions: int = 0) -> str:
    """pod-template-hash the way the deployment controller encodes it (SafeEncodeString)."""
    t = copy.deepcopy(template)
    (t.get("metadata") or {}).get("labels", {}).pop(HASH_LABEL, None)
    raw = json.dumps(t, sort_keys=True, separators=(",", ":")).encode()
    if collisions:
        raw += str(collisions).encode()
    digits = str(fnv32a(raw))
    return "".join(ALNUM[ord(c) % len(ALNUM)] for c in digits)


def _strip_hash(template: Obj) -> Obj:
    t = copy.deepcopy(template)
    labels = (t.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(HASH_LABEL, None)
    (t.get("metadata") or {}).pop("creationTimestamp", None)
    return t


class DeploymentController(ControllerBase):
    def _deployments(self) -> None:
        for d in self.c.store.list(DEPLOY.gr):
            if d["metadata"].get("deletionTimestamp"):
                continue
            self._sync_deployment(copy.deepcopy(d))

    def _owned_rs(self, d: Obj) -> list[Obj]:
        ns = d["metadata"]["namespace"]
        return [rs for rs in self.c.store.list(RS.gr, ns) if controlled_by(rs, d)]

    def _sync_deployment(self, d: Obj) -> None:
        """syncDeployment: paused conditions, then sync (paused or scaling) or one rollout step."""
        self._check_paused_conditions(d)
        spec = d["spec"]
        if spec.get("paused") or self._is_scaling_event(d):
            self._sync_scale(d)
        elif (spec.get("strategy") or {}).get("type") == "Recreate":
            self._rollout_recreate(d)
        else:
            self._rollout_rolling(d)

    def _write_deploy_status(self, d: Obj) -> None:
        """UpdateStatus: store ``d``'s status and revision annotation, if they differ, in one
        write of the status subresource (the Deployment's status strategy lets annotations
        through), as syncRolloutStatus/getAllReplicaSetsAndSyncRevision write them upstream."""
        cur = self.c.store.get(DEPLOY.gr, d["metadata"]["namespace"], d["metadata"]["name"])
        if cur is None or cur["metadata"]["uid"] != d["metadata"]["uid"]:
            return
        rev = (d["metadata"].get("annotations") or {}).get(REVISION)
        status = copy.deepcopy(d.get("status") or {})

        def set_status(n: Obj) -> bool:
            if n["metadata"]["uid"] != d["metadata"]["uid"]:
                return False
            changed = False
            ann = n["metadata"].get("annotations") or {}
            if rev is not None and ann.get(REVISION) != rev:
                n["metadata"]["annotations"] = {**ann, REVISION: rev}
                changed = True
            if n.get("status") != status:
                n["status"] = copy.deepcopy(status)
                changed = True
            return changed

        self.client.modify(DEPLOY, d["metadata"]["namespace"], d["metadata"]["name"], set_status, status=True)

    def _check_paused_conditions(self, d: Obj) -> None:
        if not has_deadline(d):
            return
        st = d.setdefault("status", {})
        cond = get_cond(st, "Progressing")
        if cond is not None and cond.get("reason") == "ProgressDeadlineExceeded":
            return
        exists = cond is not None and cond.get("reason") == "DeploymentPaused"
        if d["spec"].get("paused") and not exists:
            _set_cond(st, _new_cond("Progressing", "Unknown", "DeploymentPaused", "Deployment is paused"))
        elif not d["spec"].get("paused") and exists:
            _set_cond(st, _new_cond("Progressing", "Unknown", "DeploymentResumed", "Deployment is resumed"))
        else:
            return
        self._write_deploy_status(d)

    def _is_scaling_event(self, d: Obj) -> bool:
        new_rs, old = self._new_rs(d, False)
        replicas = int(d["spec"].get("replicas", 1))
        for rs in _active([*old, new_rs]):
            desired = (rs["metadata"].get("annotations") or {}).get(DESIRED)
            if desired is not None and desired.isdigit() and int(desired) != replicas:
                return True
        return False

    def _new_rs(self, d: Obj, create: bool) -> tuple[Obj | None, list[Obj]]:
        """getAllReplicaSetsAndSyncRevision: the new ReplicaSet (created if asked) and the old ones."""
        ns, spec = d["metadata"]["namespace"], d["spec"]
        owned = sorted(self._owned_rs(d), key=lambda r: (r["metadata"]["creationTimestamp"], r["metadata"]["name"]))
        want = _strip_hash(spec["template"])
        new_rs = next((rs for rs in owned if _strip_hash(rs["spec"]["template"]) == want), None)
        old = [rs for rs in owned if rs is not new_rs]
        new_revision = str(max((_revision(rs) for rs in old), default=0) + 1)
        st = d.setdefault("status", {})
        if new_rs is not None:
            mrs = int(spec.get("minReadySeconds", 0))

            def sync_rs(n: Obj) -> bool:
                changed = _set_new_rs_annotations(d, n, new_revision, exists=True)
                if int(n["spec"].get("minReadySeconds", 0)) != mrs:
                    changed = True  # the API server bumps generation: a spec change
                    if mrs:
                        n["spec"]["minReadySeconds"] = mrs
                    else:
                        n["spec"].pop("minReadySeconds", None)
                return changed

            rs_meta = new_rs["metadata"]
            new_rs = self.client.modify(RS, rs_meta["namespace"], rs_meta["name"], sync_rs) or new_rs
            need = _set_deploy_revision(d, (new_rs["metadata"].get("annotations") or {}).get(REVISION, ""))
            if has_deadline(d) and get_cond(st, "Progressing") is None:
                msg = f'Found new replica set "{new_rs["metadata"]["name"]}"'
                _set_cond(st, _new_cond("Progressing", "True", "FoundNewReplicaSet", msg))
                need = True
            if need:
                self._write_deploy_status(d)
            return new_rs, old
        if not create:
            return None, old
        while True:
            collisions = int(st.get("collisionCount", 0))
            h = template_hash(spec["template"], collisions)
            name = f"{d['metadata']['name']}-{h}"
            if self.c.store.get(RS.gr, ns, name) is None:
                break
            st["collisionCount"] = collisions + 1  # hash collision with a different template
        tmpl = copy.deepcopy(spec["template"])
        tmpl.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = h
        sel = copy.deepcopy(spec["selector"])
        sel.setdefault("matchLabels", {})[HASH_LABEL] = h
        rs: Obj = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": name,
                "namespace": ns,
                "labels": copy.deepcopy(tmpl["metadata"]["labels"]),
                "annotations": {},
                "ownerReferences": [owner_ref(d)],
            },
            "spec": {"replicas": 0, "selector": sel, "template": tmpl},
        }
        if spec.get("minReadySeconds"):
            rs["spec"]["minReadySeconds"] = spec["minReadySeconds"]
        rs["spec"]["replicas"] = _new_rs_replicas(d, [*old, rs], rs)
        _set_new_rs_annotations(d, rs, new_revision, exists=False)
        new_rs = self._create(RS, rs)
        count = int(new_rs["spec"]["replicas"])
        if count > 0:
            self.event(
                d,
                "Normal",
                "ScalingReplicaSet",
                f"Scaled up replica set {name} from 0 to {count}",
                "deployment-controller",
            )
        _set_deploy_revision(d, new_revision)
        if has_deadline(d):
            msg = f'Created new replica set "{name}"'
            _set_cond(st, _new_cond("Progressing", "True", "NewReplicaSetCreated", msg))
        self._write_deploy_status(d)
        return new_rs, old

    def _scale_rs(self, rs: Obj, n: int, d: Obj, force_op: str = "") -> tuple[bool, Obj]:
        """scaleReplicaSet: replicas and the desired/max-replicas annotations, with kube's event."""
        old_n = _replicas(rs)
        replicas = int(d["spec"].get("replicas", 1))
        max_replicas = replicas + _max_surge(d)
        ann_changed = _set_replicas_annotations(copy.deepcopy(rs), replicas, max_replicas)
        if old_n == n and not ann_changed:
            return False, rs

        def scale(new: Obj) -> bool:
            changed = _set_replicas_annotations(new, replicas, max_replicas)
            if _replicas(new) != n:
                new["spec"]["replicas"] = n  # the API server bumps generation: a spec change
                changed = True
            return changed

        out = self.client.modify(RS, rs["metadata"]["namespace"], rs["metadata"]["name"], scale) or rs
        if old_n != n:
            op = force_op or ("up" if old_n < n else "down")
            self.event(
                d,
                "Normal",
                "ScalingReplicaSet",
                f"Scaled {op} replica set {rs['metadata']['name']} from {old_n} to {n}",
                "deployment-controller",
            )
        return old_n != n, out

    def _scale_rs_and_record(self, rs: Obj, n: int, d: Obj) -> tuple[bool, Obj]:
        if _replicas(rs) == n:
            return False, rs
        return self._scale_rs(rs, n, d)

    def _rollout_rolling(self, d: Obj) -> None:
        new_rs, old = self._new_rs(d, True)
        assert new_rs is not None
        all_rs = [*old, new_rs]
        scaled, new_rs = self._reconcile_new_rs(all_rs, new_rs, d)
        if scaled:
            self._sync_rollout_status([*old, new_rs], new_rs, d)
            return
        if self._reconcile_old_rs([*old, new_rs], _active(old), new_rs, d):
            self._sync_rollout_status(self._refresh([*old, new_rs]), new_rs, d)
            return
        if _deployment_complete(d, d.get("status") or {}):
            self._cleanup_deployment(old, d)
        self._sync_rollout_status(self._refresh([*old, new_rs]), new_rs, d)

    def _refresh(self, rss: list[Obj]) -> list[Obj]:
        out = []
        for rs in rss:
            cur = self.c.store.get(RS.gr, rs["metadata"]["namespace"], rs["metadata"]["name"])
            if cur is not None:
                out.append(cur)
        return out

    def _reconcile_new_rs(self, all_rs: list[Obj], new_rs: Obj, d: Obj) -> tuple[bool, Obj]:
        replicas = int(d["spec"].get("replicas", 1))
        if _replicas(new_rs) == replicas:
            return False, new_rs
        if _replicas(new_rs) > replicas:
            return self._scale_rs_and_record(new_rs, replicas, d)
        return self._scale_rs_and_record(new_rs, _new_rs_replicas(d, all_rs, new_rs), d)

    def _reconcile_old_rs(self, all_rs: list[Obj], old: list[Obj], new_rs: Obj, d: Obj) -> bool:
        """Scale old ReplicaSets down as far as maxUnavailable allows (unhealthy replicas first)."""
        if sum(_replicas(rs) for rs in old) == 0:
            return False
        all_count = sum(_replicas(rs) for rs in all_rs)
        min_available = int(d["spec"].get("replicas", 1)) - _max_unavailable(d)
        new_unavailable = _replicas(new_rs) - status_int(new_rs, "availableReplicas")
        max_scaled_down = all_count - min_available - new_unavailable
        if max_scaled_down <= 0:
            return False
        old, cleaned = self._cleanup_unhealthy(old, d, max_scaled_down)
        scaled = self._scale_down_old_for_rolling([*old, new_rs], old, d)
        return cleaned + scaled > 0

    def _cleanup_unhealthy(self, old: list[Obj], d: Obj, max_cleanup: int) -> tuple[list[Obj], int]:
        old = sorted(old, key=_by_creation)
        total = 0
        for i, rs in enumerate(old):
            if total >= max_cleanup:
                break
            if _replicas(rs) == 0 or _replicas(rs) == status_int(rs, "availableReplicas"):
                continue
            down = min(max_cleanup - total, _replicas(rs) - status_int(rs, "availableReplicas"))
            _, old[i] = self._scale_rs_and_record(rs, _replicas(rs) - down, d)
            total += down
        return old, total

    def _scale_down_old_for_rolling(self, all_rs: list[Obj], old: list[Obj], d: Obj) -> int:
        min_available = int(d["spec"].get("replicas", 1)) - _max_unavailable(d)
        available = sum(status_int(rs, "availableReplicas") for rs in all_rs)
        if available <= min_available:
            return 0
        want = available - min_available
        total = 0
        for rs in sorted(old, key=_by_creation):
            if total >= want:
                break
            if _replicas(rs) == 0:
                continue
            down = min(_replicas(rs), want - total)
            self._scale_rs_and_record(rs, _replicas(rs) - down, d)
            total += down
        return total

    def _rollout_recreate(self, d: Obj) -> None:
        new_rs, old = self._new_rs(d, False)
        scaled = False
        for rs in _active(old):
            s, _ = self._scale_rs_and_record(rs, 0, d)
            scaled = scaled or s
        old = self._refresh(old)
        if scaled or self._old_pods_running(d, old):
            self._sync_rollout_status([*old, *([new_rs] if new_rs else [])], new_rs, d)
            return
        if new_rs is None:
            new_rs, old = self._new_rs(d, True)
            assert new_rs is not None
        _, new_rs = self._scale_rs_and_record(new_rs, int(d["spec"].get("replicas", 1)), d)
        if _deployment_complete(d, d.get("status") or {}):
            self._cleanup_deployment(old, d)
        self._sync_rollout_status(self._refresh([*old, new_rs]), new_rs, d)

    def _old_pods_running(self, d: Obj, old: list[Obj]) -> bool:
        """oldPodsRunning: an old ReplicaSet still has pods that have not finished (terminating included)."""
        if sum(status_int(rs, "replicas") for rs in old) > 0:
            return True
        for p in self.c.store.list(PODS.gr, d["metadata"]["namespace"]):
            if any(controlled_by(p, rs) for rs in old) and (p.get("status") or {}).get("phase") not in (
                "Failed",
                "Succeeded",
            ):
                return True
        return False

    def _sync_scale(self, d: Obj) -> None:
        """sync: proportional scaling (also while paused), history cleanup when paused, status."""
        new_rs, old = self._new_rs(d, False)
        self._scale(d, new_rs, old)
        old = self._refresh(old)
        if d["spec"].get("paused"):
            self._cleanup_deployment(old, d)
            old = self._refresh(old)
        if new_rs is not None:
            fresh = self._refresh([new_rs])
            new_rs = fresh[0] if fresh else None
        all_rs = [*old, *([new_rs] if new_rs else [])]
        st = _calculate_status(all_rs, new_rs, d)
        if st != d.get("status"):
            d["status"] = st
            self._write_deploy_status(d)

    def _scale(self, d: Obj, new_rs: Obj | None, old: list[Obj]) -> None:
        replicas = int(d["spec"].get("replicas", 1))
        latest = _find_active_or_latest(new_rs, old)
        if latest is not None:
            if _replicas(latest) != replicas:
                self._scale_rs_and_record(latest, replicas, d)
            return
        if _is_saturated(d, new_rs):
            for rs in _active(old):
                self._scale_rs_and_record(rs, 0, d)
            return
        if (d["spec"].get("strategy") or {}).get("type") == "Recreate":
            return
        all_rs = _active([*old, new_rs])
        total = sum(_replicas(rs) for rs in all_rs)
        allowed = replicas + _max_surge(d) if replicas > 0 else 0
        to_add = allowed - total
        op = ""
        if to_add > 0:  # ReplicaSetsBySizeNewer
            all_rs.sort(key=lambda r: (_replicas(r), r["metadata"]["creationTimestamp"]), reverse=True)
            op = "up"
        elif to_add < 0:  # ReplicaSetsBySizeOlder
            all_rs.sort(key=lambda r: (-_replicas(r), r["metadata"]["creationTimestamp"]))
            op = "down"
        added = 0
        sizes: dict[str, int] = {}
        for rs in all_rs:
            if to_add:
                prop = _rs_proportion(rs, d, to_add, added)
                sizes[rs["metadata"]["name"]] = _replicas(rs) + prop
                added += prop
            else:
                sizes[rs["metadata"]["name"]] = _replicas(rs)
        for i, rs in enumerate(all_rs):
            name = rs["metadata"]["name"]
            if i == 0 and to_add:
                sizes[name] = max(0, sizes[name] + to_add - added)
            self._scale_rs(rs, sizes[name], d, op)

    def _cleanup_deployment(self, old: list[Obj], d: Obj) -> None:
        """revisionHistoryLimit: delete the oldest old ReplicaSets that run nothing."""
        limit = d["spec"].get("revisionHistoryLimit")
        if limit is None:
            return
        cleanable = [rs for rs in self._refresh(old) if not rs["metadata"].get("deletionTimestamp")]
        diff = len(cleanable) - int(limit)
        if diff <= 0:
            return
        cleanable.sort(key=lambda r: (_revision(r), r["metadata"]["creationTimestamp"]))
        for rs in cleanable[:diff]:
            if status_int(rs, "replicas") != 0 or _replicas(rs) != 0:
                continue
            if int(rs["metadata"].get("generation", 1)) > status_int(rs, "observedGeneration"):
                continue
            meta = rs["metadata"]
            self.client.delete(RS, meta["namespace"], meta["name"], uid=meta["uid"])

    def _sync_rollout_status(self, all_rs: list[Obj], new_rs: Obj | None, d: Obj) -> None:
        st = _calculate_status(all_rs, new_rs, d)
        old_st = d.get("status") or {}
        if not has_deadline(d):
            _remove_cond(st, "Progressing")
        cur = get_cond(old_st, "Progressing")
        complete = (
            st.get("replicas", 0) == st.get("updatedReplicas", 0)
            and cur is not None
            and cur.get("reason") == "NewReplicaSetAvailable"
        )
        dname = d["metadata"]["name"]
        what = f'ReplicaSet "{new_rs["metadata"]["name"]}"' if new_rs is not None else f'Deployment "{dname}"'
        if has_deadline(d) and not complete:
            if _deployment_complete(d, st):
                msg = f"{what} has successfully progressed."
                _set_cond(st, _new_cond("Progressing", "True", "NewReplicaSetAvailable", msg))
            elif _deployment_progressing(old_st, st):
                cond = _new_cond("Progressing", "True", "ReplicaSetUpdated", f"{what} is progressing.")
                if cur is not None:
                    if cur.get("status") == "True":
                        cond["lastTransitionTime"] = cur.get("lastTransitionTime")
                    _remove_cond(st, "Progressing")
                _set_cond(st, cond)
            elif _deployment_timed_out(d, st):
                msg = f"{what} has timed out progressing."
                _set_cond(st, _new_cond("Progressing", "False", "ProgressDeadlineExceeded", msg))
        # the new ReplicaSet's failures over old ones' (getReplicaFailures)
        failures = _replica_failures([new_rs] if new_rs is not None else []) or _replica_failures(all_rs)
        if failures:
            f = failures[0]
            t = f.get("lastTransitionTime")
            _set_cond(
                st,
                {
                    "type": "ReplicaFailure",
                    "status": f.get("status"),
                    "lastUpdateTime": t,
                    "lastTransitionTime": t,
                    "reason": f.get("reason"),
                    "message": f.get("message"),
                },
            )
        else:
            _remove_cond(st, "ReplicaFailure")
        if st != old_st:
            d["status"] = st
            self._write_deploy_status(d)


def _replicas(rs: Obj) -> int:
    return int(rs["spec"].get("replicas", 1))


def _revision(rs: Obj) -> int:
    v = str((rs["metadata"].get("annotations") or {}).get(REVISION, "0"))
    return int(v) if v.isdigit() else 0


def _by_creation(rs: Obj) -> tuple[str, str]:
    return (str(rs["metadata"].get("creationTimestamp", "")), str(rs["metadata"]["name"]))


def _active(rss: Sequence[Obj | None]) -> list[Obj]:
    """FilterActiveReplicaSets: the ReplicaSets that want pods."""
    return [rs for rs in rss if rs is not None and _replicas(rs) > 0]


def _fenceposts(d: Obj) -> tuple[int, int]:
    """ResolveFenceposts: maxSurge rounded up, maxUnavailable rounded down, never both zero."""
    replicas = int(d["spec"].get("replicas", 1))
    ru = (d["spec"].get("strategy") or {}).get("rollingUpdate") or {}
    surge = pct(ru.get("maxSurge", "25%"), replicas, True)
    unavailable = pct(ru.get("maxUnavailable", "25%"), replicas, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def _rolling(d: Obj) -> bool:
    return str((d["spec"].get("strategy") or {}).get("type", "RollingUpdate")) == "RollingUpdate"


def _max_surge(d: Obj) -> int:
    return _fenceposts(d)[0] if _rolling(d) else 0


def _max_unavailable(d: Obj) -> int:
    replicas = int(d["spec"].get("replicas", 1))
    if not _rolling(d) or replicas == 0:
        return 0
    return min(_fenceposts(d)[1], replicas)


def _new_rs_replicas(d: Obj, all_rs: list[Obj], new_rs: Obj) -> int:
    """NewRSNewReplicas: how far the new ReplicaSet may grow now."""
    replicas = int(d["spec"].get("replicas", 1))
    if not _rolling(d):
        return replicas
    current = sum(_replicas(rs) for rs in all_rs)
    max_total = replicas + _max_surge(d)
    if current >= max_total:
        return _replicas(new_rs)
    return _replicas(new_rs) + min(max_total - current, replicas - _replicas(new_rs))


def _set_replicas_annotations(rs: Obj, desired: int, max_replicas: int) -> bool:
    ann = rs["metadata"].setdefault("annotations", {})
    changed = False
    for k, v in ((DESIRED, str(desired)), (MAX_REPLICAS, str(max_replicas))):
        if ann.get(k) != v:
            ann[k] = v
            changed = True
    return changed


_SKIP_COPY = (LAST_APPLIED, REVISION, REVISION_HISTORY, DESIRED, MAX_REPLICAS, "deprecated.deployment.rollback.to")


def _set_new_rs_annotations(d: Obj, rs: Obj, new_revision: str, exists: bool) -> bool:
    """SetNewReplicaSetAnnotations: copied deployment annotations, revision and its history."""
    ann = rs["metadata"].setdefault("annotations", {})
    changed = False
    for k, v in (d["metadata"].get("annotations") or {}).items():
        if k not in _SKIP_COPY and ann.get(k) != v:
            ann[k] = v
            changed = True
    old_rev = ann.get(REVISION)
    old_int = int(old_rev) if old_rev and old_rev.isdigit() else 0
    if old_int < int(new_revision):
        ann[REVISION] = new_revision
        changed = True
        if old_rev:
            hist = [x for x in str(ann.get(REVISION_HISTORY, "")).split(",") if x]
            ann[REVISION_HISTORY] = ",".join([*hist, old_rev])
    if not exists:
        replicas = int(d["spec"].get("replicas", 1))
        changed = _set_replicas_annotations(rs, replicas, replicas + _max_surge(d)) or changed
    return changed


def _set_deploy_revision(d: Obj, revision: str) -> bool:
    ann = d["metadata"].setdefault("annotations", {})
    if revision and ann.get(REVISION) != revision:
        ann[REVISION] = revision
        return True
    return False


def _remove_cond(st: Obj, typ: str) -> None:
    conds = [c for c in st.get("conditions") or [] if c.get("type") != typ]
    if conds:
        st["conditions"] = conds
    else:
        st.pop("conditions", None)


def _new_cond(typ: str, status: str, reason: str, message: str) -> Obj:
    ts = now_ts()
    return {
        "type": typ,
        "status": status,
        "lastUpdateTime": ts,
        "lastTransitionTime": ts,
        "reason": reason,
        "message": message,
    }


def _set_cond(st: Obj, cond: Obj) -> None:
    """SetDeploymentCondition: same status and reason is no change; the transition time stays with the status."""
    cur = get_cond(st, cond["type"])
    if cur is not None and cur.get("status") == cond["status"] and cur.get("reason") == cond["reason"]:
        return
    if cur is not None and cur.get("status") == cond["status"]:
        cond["lastTransitionTime"] = cur.get("lastTransitionTime")
    st["conditions"] = [c for c in st.get("conditions") or [] if c.get("type") != cond["type"]] + [cond]


def _calculate_status(all_rs: list[Obj], new_rs: Obj | None, d: Obj) -> Obj:
    """calculateStatus: counts from the ReplicaSets, the Available condition, old conditions kept."""
    old = d.get("status") or {}
    available = sum(status_int(rs, "availableReplicas") for rs in all_rs)
    total = sum(_replicas(rs) for rs in all_rs)
    st: Obj = {}
    for k, v in (
        ("observedGeneration", int(d["metadata"].get("generation", 1))),
        ("replicas", sum(status_int(rs, "replicas") for rs in all_rs)),
        ("updatedReplicas", status_int(new_rs, "replicas") if new_rs is not None else 0),
        ("readyReplicas", sum(status_int(rs, "readyReplicas") for rs in all_rs)),
        ("availableReplicas", available),
        ("unavailableReplicas", max(0, total - available)),
    ):
        if v:
            st[k] = v
    terminating: int | None = 0  # GetTerminatingReplicaCountForReplicaSets
    for rs in all_rs:
        rst = rs.get("status") or {}
        if "terminatingReplicas" in rst:
            terminating = None if terminating is None else terminating + int(rst["terminatingReplicas"])
        elif rst.get("observedGeneration"):
            terminating = None
    if terminating is not None:
        st["terminatingReplicas"] = terminating
    if old.get("conditions"):
        st["conditions"] = copy.deepcopy(old["conditions"])
    if old.get("collisionCount"):
        st["collisionCount"] = old["collisionCount"]
    if available >= int(d["spec"].get("replicas", 1)) - _max_unavailable(d):
        msg = "Deployment has minimum availability."
        _set_cond(st, _new_cond("Available", "True", "MinimumReplicasAvailable", msg))
    else:
        msg = "Deployment does not have minimum availability."
        _set_cond(st, _new_cond("Available", "False", "MinimumReplicasUnavailable", msg))
    return st


def _replica_failures(rss: list[Obj]) -> list[Obj]:
    return [
        c for rs in rss for c in (rs.get("status") or {}).get("conditions") or [] if c.get("type") == "ReplicaFailure"
    ]


def _deployment_complete(d: Obj, st: Obj) -> bool:
    replicas = int(d["spec"].get("replicas", 1))
    return (
        int(st.get("updatedReplicas", 0)) == replicas
        and int(st.get("replicas", 0)) == replicas
        and int(st.get("availableReplicas", 0)) == replicas
        and int(st.get("observedGeneration", 0)) >= int(d["metadata"].get("generation", 1))
    )


def _deployment_progressing(old: Obj, new: Obj) -> bool:
    def g(st: Obj, k: str) -> int:
        return int(st.get(k, 0))

    return (
        g(new, "updatedReplicas") > g(old, "updatedReplicas")
        or g(new, "replicas") - g(new, "updatedReplicas") < g(old, "replicas") - g(old, "updatedReplicas")
        or g(new, "readyReplicas") > g(old, "readyReplicas")
        or g(new, "availableReplicas") > g(old, "availableReplicas")
    )


def _deployment_timed_out(d: Obj, st: Obj) -> bool:

    cond = get_cond(st, "Progressing")
    if not has_deadline(d) or cond is None or cond.get("reason") == "NewReplicaSetAvailable":
        return False
    if cond.get("reason") == "ProgressDeadlineExceeded":
        return True
    since = parse_time(cond.get("lastUpdateTime"))
    if since is None:
        return False
    deadline = since + datetime.timedelta(seconds=int(d["spec"]["progressDeadlineSeconds"]))
    return deadline < datetime.datetime.now(datetime.UTC)


def _find_active_or_latest(new_rs: Obj | None, old: list[Obj]) -> Obj | None:
    if new_rs is None and not old:
        return None
    old = sorted(old, key=_by_creation, reverse=True)
    active = _active([*old, new_rs])
    if not active:
        return new_rs if new_rs is not None else old[0]
    return active[0] if len(active) == 1 else None


def _is_saturated(d: Obj, new_rs: Obj | None) -> bool:
    if new_rs is None:
        return False
    replicas = int(d["spec"].get("replicas", 1))
    desired = (new_rs["metadata"].get("annotations") or {}).get(DESIRED)
    return (
        desired == str(replicas)
        and _replicas(new_rs) == replicas
        and status_int(new_rs, "availableReplicas") == replicas
    )


def _rs_proportion(rs: Obj, d: Obj, to_add: int, added: int) -> int:
    """GetReplicaSetProportion: this ReplicaSet's share of a scaling of the whole deployment."""
    if _replicas(rs) == 0 or to_add == 0 or to_add == added:
        return 0
    replicas = int(d["spec"].get("replicas", 1))
    if replicas == 0:
        fraction = -_replicas(rs)
    else:
        max_now = replicas + _max_surge(d)
        ann = str((rs["metadata"].get("annotations") or {}).get(MAX_REPLICAS, ""))
        before = int(ann) if ann.isdigit() else status_int(d, "replicas")
        if before == 0:
            fraction = 0
        else:
            x = _replicas(rs) * max_now / before
            fraction = int(x + 0.5) - _replicas(rs)  # integer.RoundToInt32 (sizes are positive)
    allowed = to_add - added
    return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)
