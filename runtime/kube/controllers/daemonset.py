"""The DaemonSet controller (pkg/controller/daemon): one pod per eligible node, maxUnavailable."""

from __future__ import annotations

import copy

from runtime.kube import scheduler
from runtime.kube.controllers.base import POD_REVISION, PODS, ControllerBase, R, controlled_by, pct, pod_available
from runtime.kube.meta import Obj


class DaemonSetController(ControllerBase):
    def _ds_rolling_update(self, ds: Obj, pods: list[Obj], wanted: list[Obj], rev: str) -> None:
        """daemonset rollingUpdate (maxSurge 0): replace old pods node by node, deleting an
        available old pod only while fewer than maxUnavailable nodes are unavailable; an
        unavailable old pod goes at once. The new pod is created once the old one is gone."""
        ns = ds["metadata"]["namespace"]
        ru = (ds["spec"].get("updateStrategy") or {}).get("rollingUpdate") or {}
        max_unavailable = pct(ru.get("maxUnavailable", 1), len(wanted), True) or 1
        min_ready = int(ds["spec"].get("minReadySeconds", 0))
        by_node: dict[str, list[Obj]] = {}
        for p in pods:
            by_node.setdefault(_ds_node(p), []).append(p)
        unavailable = sum(
            1
            for n in wanted
            if not any(
                pod_available(p, min_ready) and not p["metadata"].get("deletionTimestamp")
                for p in by_node.get(n["metadata"]["name"], [])
            )
        )
        for node in wanted:
            here = [p for p in by_node.get(node["metadata"]["name"], []) if not p["metadata"].get("deletionTimestamp")]
            old = [p for p in here if (p["metadata"].get("labels") or {}).get(POD_REVISION) != rev]
            if not old or len(old) < len(here):
                continue
            victim = old[0]
            if pod_available(victim, min_ready):
                if unavailable >= max_unavailable:
                    continue
                unavailable += 1
            self.delete_pod(ns, victim["metadata"]["name"])
            self.event(
                ds, "Normal", "SuccessfulDelete", f"Deleted pod: {victim['metadata']['name']}", "daemonset-controller"
            )

    def _daemonsets(self) -> None:
        DS = R["daemonsets.apps"]
        nodes = self.c.store.list(R["nodes"].gr)
        for ds in self.c.store.list(DS.gr):
            meta, spec = ds["metadata"], ds["spec"]
            if meta.get("deletionTimestamp"):
                continue
            ns, name = meta["namespace"], meta["name"]
            pods = [p for p in self.c.store.list(PODS.gr, ns) if controlled_by(p, ds)]
            running = {str((p["metadata"].get("labels") or {}).get(POD_REVISION, "")) for p in pods}
            _, rev = self._sync_history(ds, POD_REVISION, {f"{name}-{h}" for h in running})
            # NodeShouldRunDaemonPod: the template's node selector and affinity, and its taints
            # tolerated (with the tolerations the controller adds: a cordoned node keeps its
            # daemon pod); a pod stays while no NoExecute taint it does not tolerate appears
            tspec = copy.deepcopy((spec.get("template") or {}).get("spec") or {})
            tspec["tolerations"] = [*(tspec.get("tolerations") or []), *_DS_TOLERATIONS]
            eligible = [n for n in nodes if scheduler.affinity_matches(tspec, n)]
            wanted = [n for n in eligible if _taints_tolerated(n, tspec, ("NoSchedule", "NoExecute"))]
            keep = {n["metadata"]["name"] for n in eligible if _taints_tolerated(n, tspec, ("NoExecute",))}
            for p in pods:
                if p["metadata"].get("deletionTimestamp") or _ds_node(p) in keep:
                    continue
                self.delete_pod(ns, p["metadata"]["name"])
                self.event(
                    ds, "Normal", "SuccessfulDelete", f"Deleted pod: {p['metadata']['name']}", "daemonset-controller"
                )
            pods = [p for p in self.c.store.list(PODS.gr, ns) if controlled_by(p, ds)]
            strategy = spec.get("updateStrategy") or {}
            if strategy.get("type", "RollingUpdate") == "RollingUpdate":
                self._ds_rolling_update(ds, pods, wanted, rev)
                pods = [p for p in self.c.store.list(PODS.gr, ns) if controlled_by(p, ds)]
            for node in wanted:
                nname = node["metadata"]["name"]
                if any(_ds_node(p) == nname for p in pods):
                    continue
                pod = self._new_pod(
                    ds,
                    None,
                    {"controller-revision-hash": rev, "pod-template-generation": str(meta.get("generation", 1))},
                )
                pod["spec"]["affinity"] = {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [
                                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [nname]}]}
                            ]
                        }
                    }
                }
                pod["spec"].setdefault("tolerations", []).extend(copy.deepcopy(_DS_TOLERATIONS))
                created = self._create_pod(ds, pod, "daemonset-controller")
                if created is None:
                    break
                pods.append(created)
                self.event(
                    ds,
                    "Normal",
                    "SuccessfulCreate",
                    f"Created pod: {created['metadata']['name']}",
                    "daemonset-controller",
                )
            live = [p for p in self.c.store.list(PODS.gr, ns) if controlled_by(p, ds)]
            ready = sum(1 for p in live if self._ready(p))
            updated = sum(1 for p in live if (p["metadata"].get("labels") or {}).get(POD_REVISION) == rev)
            wanted_names = {n["metadata"]["name"] for n in wanted}
            misplaced = sum(1 for p in live if _ds_node(p) not in wanted_names)
            st: Obj = {
                "currentNumberScheduled": len(live) - misplaced,
                "desiredNumberScheduled": len(wanted),
                "numberMisscheduled": misplaced,
                "numberReady": ready,
                "observedGeneration": meta.get("generation", 1),
                "updatedNumberScheduled": updated,
            }
            if ready:
                st["numberAvailable"] = ready
            if len(wanted) - ready > 0:
                st["numberUnavailable"] = len(wanted) - ready
            cur = self.c.store.get(DS.gr, ns, name)
            if cur is not None and cur.get("status") != st:
                n = copy.deepcopy(cur)
                n["status"] = st
                self.client.update_status(DS, n)


# what the daemonset controller adds to every daemon pod (util.AddOrUpdateDaemonPodTolerations)
_DS_TOLERATIONS: list[Obj] = [
    {"key": key, "operator": "Exists", "effect": effect}
    for key, effect in (
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    )
]


def _taints_tolerated(node: Obj, spec: Obj, effects: tuple[str, ...]) -> bool:
    tolerations = spec.get("tolerations") or []
    return all(
        scheduler.tolerated(t, tolerations)
        for t in (node.get("spec") or {}).get("taints") or []
        if t.get("effect") in effects
    )


def _ds_node(p: Obj) -> str:
    aff = ((p.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {}
    terms = (aff.get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get("nodeSelectorTerms") or []
    for t in terms:
        for f in t.get("matchFields") or []:
            if f.get("key") == "metadata.name" and f.get("values"):
                return str(f["values"][0])
    return str((p.get("spec") or {}).get("nodeName") or "")
