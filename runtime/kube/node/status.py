"""The kubelet's status manager: the pod status a kubelet posts (phase, conditions, container
statuses, podIP(s), hostIP(s), startTime), computed from the engine's containers of the pod
(kubelet's pkg/kubelet/status and generateAPIPodStatus). ``StatusManager`` is a part of
``Kubelet``, which mixes it in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runtime.kernel.clock import engine_time, now_ts
from runtime.kube.meta import Obj
from runtime.kube.node.podstate import Instance, PodRuntime

if TYPE_CHECKING:
    from runtime.dockerapi.engine import Engine


class StatusManager:
    """Pod status computation; a part of ``Kubelet``."""

    engine: Engine

    if TYPE_CHECKING:  # Kubelet's

        def _instances(self, cs: list[dict[str, Any]], name: str) -> list[Instance]: ...

    def _container_status(
        self, pod: Obj, rt: PodRuntime, c: Obj, inst: list[Instance], init: bool, started_inits: bool
    ) -> Obj:
        name = c["name"]
        cur = inst[-1] if inst else None
        st: Obj = {"name": name, "image": c.get("image", ""), "imageID": "", "ready": False, "restartCount": 0}
        if cur is None:
            reason, msg = rt.waiting.get(
                name, ("PodInitializing" if init or not started_inits else "ContainerCreating", "")
            )
            st["state"] = {"waiting": {"reason": reason, **({"message": msg} if msg else {})}}
            st["lastState"] = {}
            st["started"] = False
            return st
        st["imageID"] = cur.image
        st["containerID"] = f"docker://{cur.id}"
        st["restartCount"] = cur.restarts
        if cur.running:
            probe = rt.probes.get(cur.id)
            ready = (probe.ready if probe is not None else "readinessProbe" not in c) and not init
            st["state"] = {"running": {"startedAt": engine_time(cur.started)}}
            st["ready"] = ready
            st["started"] = True
        elif name in rt.waiting:
            reason, msg = rt.waiting[name]
            st["state"] = {"waiting": {"reason": reason, "message": msg}}
            st["started"] = False
        else:
            st["state"] = {"terminated": _terminated(cur)}
            st["ready"] = False
            st["started"] = False
        if name in rt.waiting and not cur.running:
            st["lastState"] = {"terminated": _terminated(cur)}
        elif len(inst) > 1:
            st["lastState"] = {"terminated": _terminated(inst[-2])}
        else:
            st["lastState"] = {}
        if init:
            st["ready"] = not cur.running and cur.exit_code == 0 and name not in rt.waiting
        return st

    def _status(
        self, pod: Obj, rt: PodRuntime, cs: list[dict[str, Any]], infra: str | None, pod_ip: str, failed_init: bool
    ) -> Obj:
        spec = pod.get("spec") or {}
        old = pod.get("status") or {}
        policy = spec.get("restartPolicy", "Always")
        inits = spec.get("initContainers") or []
        init_st = [self._container_status(pod, rt, c, self._instances(cs, c["name"]), True, True) for c in inits]
        initialized = all("terminated" in s["state"] and s["state"]["terminated"]["exitCode"] == 0 for s in init_st)
        app_st = [
            self._container_status(pod, rt, c, self._instances(cs, c["name"]), False, initialized)
            for c in spec.get("containers") or []
        ]
        if not initialized:
            for s in app_st:
                if "waiting" in s["state"]:
                    s["state"]["waiting"] = {"reason": "PodInitializing"}
        # phase
        states = [s["state"] for s in app_st]
        if failed_init:
            phase = "Failed"
        elif not initialized or any(not s.get("containerID") for s in app_st):
            phase = "Pending"
        elif all("terminated" in s for s in states) and app_st:
            codes = [s["terminated"]["exitCode"] for s in states]
            if all(code == 0 for code in codes) and policy != "Always":
                phase = "Succeeded"
            elif policy == "Never":
                phase = "Failed"
            else:
                phase = "Running"
        else:
            phase = "Running"
        ready = phase == "Running" and all(s["ready"] for s in app_st)
        ts = now_ts()
        old_conds = {c.get("type"): c for c in old.get("conditions") or []}

        def cond(typ: str, ok: bool, reason: str = "", message: str = "") -> Obj:
            prev = old_conds.get(typ) or {}
            status = "True" if ok else "False"
            out: Obj = {
                "type": typ,
                "status": status,
                "lastProbeTime": None,
                "lastTransitionTime": prev.get("lastTransitionTime") if prev.get("status") == status else ts,
            }
            if reason:
                out["reason"] = reason
            if message:
                out["message"] = message
            return out

        terminal = phase in ("Succeeded", "Failed")
        unready = [s["name"] for s in app_st if not s["ready"]]
        not_init = [s["name"] for s in init_st if not s["ready"]]
        why = "PodCompleted" if terminal else ""
        conds = [
            cond("PodReadyToStartContainers", infra is not None and not terminal),
            cond(
                "Initialized",
                initialized,
                why if initialized else "ContainersNotInitialized",
                "" if initialized else f"containers with incomplete status: [{' '.join(not_init)}]",
            ),
            cond(
                "Ready",
                ready,
                why or ("" if ready else "ContainersNotReady"),
                "" if ready or why else f"containers with unready status: [{' '.join(unready)}]",
            ),
            cond(
                "ContainersReady",
                ready,
                why or ("" if ready else "ContainersNotReady"),
                "" if ready or why else f"containers with unready status: [{' '.join(unready)}]",
            ),
        ]
        if "PodScheduled" in old_conds:
            conds.append(old_conds["PodScheduled"])
        ip = pod_ip or str(old.get("podIP") or "")
        new: Obj = {
            "phase": phase,
            "conditions": conds,
            "hostIP": self.engine.ctx.ip,
            "hostIPs": [{"ip": self.engine.ctx.ip}],
            "startTime": old.get("startTime") or ts,
            "containerStatuses": app_st,
            "qosClass": old.get("qosClass", "BestEffort"),
        }
        if ip:
            new["podIP"] = ip
            new["podIPs"] = [{"ip": ip}]
        if init_st:
            new["initContainerStatuses"] = init_st
        return new


def _terminated(i: Instance) -> Obj:
    reason = "OOMKilled" if i.oom else ("Completed" if i.exit_code == 0 else "Error")
    return {
        "exitCode": i.exit_code,
        "reason": reason,
        "startedAt": engine_time(i.started),
        "finishedAt": engine_time(i.finished),
        "containerID": f"docker://{i.id}",
    }
